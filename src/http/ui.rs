//! The operator web UI: files from `assets/` embedded at compile time, served under a versioned
//! path (`/assets/<version>/…`, immutable) with `index.html` (no-cache) as the SPA fallback. It never
//! answers `/api/*` (those stay JSON 404s) and never sends HTML to a client that did not ask for it.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use include_dir::{Dir, include_dir};
use std::collections::HashMap;

use super::error::ApiError;

static ASSETS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/assets");

/// The placeholder in `index.html` replaced by the versioned asset prefix.
const PREFIX_MARK: &str = "/assets/__VERSION__/";

/// The UI's policy: scripts, styles and connections only from this origin (`'self'` covers the
/// same host's `wss:` in CSP 3); images also from `blob:`/`data:` for previews before upload.
pub const UI_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' blob: data:; connect-src 'self'; manifest-src 'self'; frame-ancestors 'none'; \
base-uri 'none'; form-action 'self'; worker-src 'self'";

/// The service worker's path: at the root so its scope is the whole UI (no
/// `Service-Worker-Allowed` needed), `no-cache` so a new build's worker is picked up at once.
const WORKER_PATH: &str = "/sw.js";
/// The worker's own policy: it only fetches this origin's shell.
const WORKER_CSP: &str = "default-src 'none'; connect-src 'self'";

struct Asset {
    body: bytes::Bytes,
    mime: &'static str,
    etag: HeaderValue,
}

/// The embedded files, hashed once on first use ([`Ui::get`]).
pub struct Ui {
    version: String,
    index: Asset,
    worker: Asset,
    files: HashMap<String, Asset>,
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref())
}

fn mime_of(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") | Some("webmanifest") => "application/manifest+json",
        _ => "text/plain; charset=utf-8",
    }
}

fn asset(body: bytes::Bytes, mime: &'static str) -> Asset {
    let tag = format!("\"{}\"", &sha256_hex(&body)[..32]);
    Asset {
        body,
        mime,
        etag: HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"0\"")),
    }
}

fn walk<'a>(dir: &'a Dir<'a>, out: &mut Vec<&'a include_dir::File<'a>>) {
    out.extend(dir.files());
    for d in dir.dirs() {
        walk(d, out);
    }
}

/// The version in the UI's asset URLs (`/assets/<version>/…`), computed once.
pub fn version() -> &'static str {
    &Ui::get().version
}

impl Ui {
    /// The embedded UI, hashed on first use (the first page asked for, or a report naming its
    /// stylesheet): a server that serves no browser never reads the files, so they stay out of
    /// its memory. It depends on the binary alone, so one per process serves every router.
    pub fn get() -> &'static Ui {
        static UI: std::sync::OnceLock<Ui> = std::sync::OnceLock::new();
        UI.get_or_init(Ui::build)
    }

    /// Hashes every embedded file; the version is the hash of all of them, so any change to any
    /// file gives every URL a new name and browsers may cache each one forever. The files are
    /// served from the binary's read-only data, not copied to the heap.
    fn build() -> Self {
        let mut all = Vec::new();
        walk(&ASSETS, &mut all);
        all.sort_by_key(|f| f.path());
        let mut whole = Vec::new();
        let mut files = HashMap::new();
        let mut index_src: &[u8] = &[];
        let mut worker_src: &[u8] = &[];
        for f in all {
            let path = f.path().to_string_lossy().replace('\\', "/");
            if path == "index.html" {
                index_src = f.contents();
                continue;
            }
            if path == "sw.js" {
                worker_src = f.contents();
                whole.extend_from_slice(worker_src);
                continue;
            }
            if path.ends_with(".md") {
                continue;
            }
            whole.extend_from_slice(path.as_bytes());
            whole.extend_from_slice(sha256_hex(f.contents()).as_bytes());
            let body = bytes::Bytes::from_static(f.contents());
            files.insert(path.clone(), asset(body, mime_of(&path)));
        }
        whole.extend_from_slice(index_src);
        let version = sha256_hex(&whole)[..16].to_string();
        let index =
            String::from_utf8_lossy(index_src).replace(PREFIX_MARK, &format!("/assets/{version}/"));
        // The worker learns this build's version and its shell: every versioned file.
        let mut shell: Vec<String> = files
            .keys()
            .map(|p| format!("\"/assets/{version}/{p}\""))
            .collect();
        shell.sort();
        let worker = String::from_utf8_lossy(worker_src)
            .replace("__VERSION__", &version)
            .replace("__SHELL__", &format!("[{}]", shell.join(", ")));
        Self {
            version,
            index: asset(index.into_bytes().into(), "text/html; charset=utf-8"),
            worker: asset(worker.into_bytes().into(), "text/javascript; charset=utf-8"),
            files,
        }
    }

    /// The router's fallback: UI files, the SPA fallback, or the API's JSON 404 (answered
    /// without building the UI, so API clients never make it read the files).
    pub fn serve(req: &Request) -> Response {
        let path = req.uri().path();
        if (req.method() != Method::GET && req.method() != Method::HEAD)
            || path == "/api"
            || path.starts_with("/api/")
        {
            return ApiError::not_found().into_response();
        }
        Self::get().serve_file(req, path)
    }

    /// A UI file, the SPA's index for a page, or a 404.
    fn serve_file(&self, req: &Request, path: &str) -> Response {
        if path == WORKER_PATH {
            let mut res = respond(&self.worker, req.headers(), "no-cache");
            res.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(WORKER_CSP),
            );
            return res;
        }
        if let Some(rest) = path.strip_prefix("/assets/") {
            return match rest.split_once('/') {
                Some((v, file)) if v == self.version => match self.files.get(file) {
                    Some(a) => respond(a, req.headers(), "public, max-age=31536000, immutable"),
                    None => ApiError::not_found().into_response(),
                },
                _ => ApiError::not_found().into_response(),
            };
        }
        let wants_html = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
        if path == "/" || path == "/index.html" || wants_html {
            let mut res = respond(&self.index, req.headers(), "no-cache");
            if let Ok(v) = HeaderValue::from_str(UI_CSP) {
                res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
            }
            return res;
        }
        ApiError::not_found().into_response()
    }
}

fn respond(a: &Asset, headers: &HeaderMap, cache: &'static str) -> Response {
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == "*" || t.trim().trim_start_matches("W/") == a.etag)
        });
    let mut res = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Response::new(Body::from(a.body.clone()));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(a.mime));
        r
    };
    let h = res.headers_mut();
    h.insert(header::ETAG, a.etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file is served from the binary's own bytes (no heap copy per file), and the version
    /// that `version()` gives is the one the index links to.
    #[test]
    fn files_are_served_from_the_embedded_bytes() {
        let ui = Ui::get();
        let mut all = Vec::new();
        walk(&ASSETS, &mut all);
        let css = all
            .iter()
            .find(|f| f.path().to_string_lossy() == "app.css")
            .map(|f| f.contents());
        let served = ui.files.get("app.css").map(|a| a.body.as_ptr());
        assert_eq!(served, css.map(<[u8]>::as_ptr), "app.css is not copied");
        let index = std::str::from_utf8(&ui.index.body).unwrap_or_default();
        assert!(index.contains(&format!("/assets/{}/", version())));
        assert!(!index.contains(PREFIX_MARK));
    }
}
