//! The embedded UI as plain HTTP (a strict CSP on index.html, versioned assets served immutable,
//! ETag revalidation, the SPA fallback, `/api/*` still JSON 404s) and the shape of its JS modules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use http_body_util::Full;
use hyper::Method;

use crate::support::{Client, Resp, TestServer};

async fn get_with(client: &Client, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut b = client.request(Method::GET, path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    client.send(b.body(Full::default()).unwrap()).await
}

fn header<'a>(r: &'a Resp, name: &str) -> &'a str {
    r.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_str()
        .unwrap()
}

/// The asset URLs index.html refers to.
fn asset_urls(html: &str) -> Vec<String> {
    html.split('"')
        .filter(|s| s.starts_with("/assets/"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_has_a_strict_csp_and_is_revalidated() {
    let server = TestServer::start().await;
    let c = server.client();
    let r = get_with(&c, "/", &[("accept", "text/html")]).await;
    assert_eq!(r.status, 200);
    assert!(header(&r, "content-type").starts_with("text/html"));
    assert_eq!(header(&r, "cache-control"), "no-cache");
    let csp = header(&r, "content-security-policy");
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    let html = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(!html.contains("__VERSION__"));
    // No inline script or style, nothing from another host.
    assert!(!html.contains("<style") && !html.contains("style=") && !html.contains("http"));
    assert!(
        html.matches("<script").count()
            == html
                .matches("<script type=\"module\" src=\"/assets/")
                .count()
    );

    let etag = header(&r, "etag").to_string();
    let again = get_with(
        &c,
        "/",
        &[("accept", "text/html"), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(header(&again, "etag"), etag);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_are_versioned_immutable_and_revalidate_with_etags() {
    let server = TestServer::start().await;
    let c = server.client();
    let html = String::from_utf8(c.get("/").await.body.to_vec()).unwrap();
    let urls = asset_urls(&html);
    assert!(urls.iter().any(|u| u.ends_with("/js/app.js")), "{urls:?}");
    assert!(urls.iter().any(|u| u.ends_with("/app.css")), "{urls:?}");
    for url in &urls {
        let r = c.get(url).await;
        assert_eq!(r.status, 200, "{url}");
        assert_eq!(
            header(&r, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        let etag = header(&r, "etag").to_string();
        let again = get_with(&c, url, &[("if-none-match", &etag)]).await;
        assert_eq!(again.status, 304, "{url}");
    }
    let js = urls.iter().find(|u| u.ends_with("/js/app.js")).unwrap();
    assert!(header(&c.get(js).await, "content-type").starts_with("text/javascript"));
    // Modules import each other relatively, so they resolve inside the same version.
    let dom = js.replace("/app.js", "/dom.js");
    assert_eq!(c.get(&dom).await.status, 200);
    // Another version, or an unversioned path, is not served.
    let version = js.split('/').nth(2).unwrap();
    assert_eq!(
        c.get(&js.replace(version, "0000000000000000")).await.status,
        404
    );
    assert_eq!(c.get("/assets/js/app.js").await.status, 404);
    assert_eq!(
        c.get(&format!("/assets/{version}/README.md")).await.status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_paths_fall_back_to_the_app_and_the_api_keeps_json_404s() {
    let server = TestServer::start().await;
    let c = server.client();
    let r = get_with(&c, "/c/dm:alice:bob", &[("accept", "text/html,*/*")]).await;
    assert_eq!(r.status, 200);
    assert!(header(&r, "content-type").starts_with("text/html"));
    assert!(header(&r, "content-security-policy").contains("script-src 'self'"));

    // Not a browser asking for a page: a JSON 404.
    let r = get_with(&c, "/nothing-here", &[("accept", "application/json")]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "not_found");

    for path in ["/api/v1/nope", "/api/nope", "/api"] {
        let r = get_with(&c, path, &[("accept", "text/html")]).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.error_code(), "not_found");
        assert!(header(&r, "content-type").starts_with("application/json"));
    }
    // Only GET and HEAD reach the UI.
    let r = c
        .send(
            c.request(Method::POST, "/")
                .header("accept", "text/html")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "not_found");
}

// ---- The module graph of `assets/js` (the files `src/http/ui.rs` embeds) ----

/// Every `.js` file under `assets/`, keyed by its path relative to `assets/` with `/` separators
/// (the path it is served under), with its source.
fn js_sources() -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|x| x == "js") {
                let rel = p
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets");
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

/// The first quoted string after `after` in `s`, if a quote comes right after it.
fn quoted_after(s: &str, after: &str) -> Option<String> {
    let rest = s.split_once(after)?.1.trim_start();
    let q = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    rest[1..].split(q).next().map(str::to_string)
}

/// The specifiers of a module's static `import … from '…'`, bare `import '…'` and
/// `export … from '…'` statements, which may span lines (`import {⏎ a,⏎ b⏎ } from './x.js';`).
fn import_specifiers(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stmt: Option<String> = None;
    for line in src.lines() {
        let t = line.trim();
        if stmt.is_none() {
            // `export function`, `export const`, … declare; only `export {…}`/`export *` can re-export.
            let reexport = t.starts_with("export {") || t.starts_with("export *");
            if t.starts_with("import ") || t.starts_with("import{") || reexport {
                stmt = Some(String::new());
            }
        }
        let Some(s) = stmt.as_mut() else { continue };
        s.push_str(t);
        s.push(' ');
        if let Some(spec) = quoted_after(s, " from ")
            .or_else(|| quoted_after(s, "from'"))
            .or_else(|| quoted_after(s, "import "))
        {
            out.push(spec);
            stmt = None;
        } else if s.starts_with("export") && t.ends_with(';') {
            stmt = None; // `export { a, b };`: no module named
        }
    }
    out
}

/// `spec` (relative to the module at `from`) as a path relative to `assets/`; None when it climbs
/// out of `assets/` or is not relative at all.
fn resolve(from: &str, spec: &str) -> Option<String> {
    if !(spec.starts_with("./") || spec.starts_with("../")) {
        return None;
    }
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop();
    for seg in spec.split('/') {
        match seg {
            "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

/// The import graph: module -> the modules it imports (all checked to be embedded files).
fn import_graph(sources: &BTreeMap<String, String>) -> BTreeMap<String, Vec<String>> {
    let mut graph = BTreeMap::new();
    for (path, src) in sources {
        let mut edges = Vec::new();
        for spec in import_specifiers(src) {
            let target = resolve(path, &spec).unwrap_or_else(|| {
                panic!("{path}: import '{spec}' is not relative inside assets/ (versioned URLs)")
            });
            assert!(
                sources.contains_key(&target),
                "{path}: import '{spec}' names {target}, which is not an embedded .js file"
            );
            edges.push(target);
        }
        graph.insert(path.clone(), edges);
    }
    graph
}

/// One import cycle, as the list of modules around it, if there is any.
fn find_cycle(graph: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        OnPath,
        Done,
    }
    fn visit<'a>(
        n: &'a str,
        graph: &'a BTreeMap<String, Vec<String>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match marks.get(n) {
            Some(Mark::Done) => return None,
            Some(Mark::OnPath) => {
                let start = path.iter().position(|p| *p == n).unwrap_or(0);
                let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(n, Mark::OnPath);
        path.push(n);
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, marks, path) {
                return Some(c);
            }
        }
        path.pop();
        marks.insert(n, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut marks, &mut Vec::new()))
}

#[test]
fn the_import_parser_and_cycle_finder_see_what_they_must() {
    let src = "// import nothing from './comment.js'\nimport { a } from './a.js';\nimport * as b from \"../b.js\";\n\
               import {\n  c,\n  d,\n} from './c.js';\nimport './side.js';\nexport { e } from './e.js';\n\
               export function f() { return 'import x from \\'./no.js\\''; }\nexport { g };\n";
    assert_eq!(
        import_specifiers(src),
        ["./a.js", "../b.js", "./c.js", "./side.js", "./e.js"]
    );
    assert_eq!(
        resolve("js/reducers/chat.js", "../model.js").as_deref(),
        Some("js/model.js")
    );
    assert_eq!(
        resolve("js/app.js", "./api/auth.js").as_deref(),
        Some("js/api/auth.js")
    );
    assert_eq!(resolve("js/app.js", "/assets/x.js"), None);

    let g = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().push(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert_eq!(find_cycle(&g(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
    assert_eq!(
        find_cycle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

/// Modules that import each other (round 1's `app.js` <-> `chat.js`) only work by the luck of
/// evaluation order; the UI's module graph must be a DAG, with every import a relative path to an
/// embedded file.
#[test]
fn ui_modules_import_each_other_without_cycles() {
    let sources = js_sources();
    assert!(sources.contains_key("js/app.js"), "{:?}", sources.keys());
    for (path, src) in &sources {
        // Dynamic imports would be edges this check cannot see.
        assert!(!src.contains("import("), "{path}: dynamic import()");
    }
    let graph = import_graph(&sources);
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle in assets/: {}", cycle.join(" -> "));
    }
}

/// Every REST and WebSocket path lives in one resource module under `assets/js/api/`; views, the
/// model and the live link call those functions instead of building `/api/v1/…` strings inline.
#[test]
fn api_paths_are_built_only_in_the_api_modules() {
    for (path, src) in js_sources() {
        if path.starts_with("js/api/") {
            continue;
        }
        if let Some(line) = src.lines().find(|l| l.contains("/api/v1")) {
            panic!("{path} names an API path; call a function of js/api/<resource>.js: {line}");
        }
    }
}
