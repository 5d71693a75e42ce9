//! Attachment routes: upload (raw body or multipart, bounded while it streams, never trusted for
//! its type) and download (members only, `nosniff`, a safe `Content-Disposition`, a sandbox CSP).

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::drain::Linger;
use super::error::ApiError;
use super::extract::{RequireRole, Viewer};
use crate::chat::Actor;
use crate::chat::attachments::{self, AttachmentInfo};
use crate::log::Log;
use crate::state::AppState;
use crate::store::AttachmentRow;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The file name to show (raw uploads; multipart takes the part's file name).
    pub name: Option<String>,
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("attachments are at most {limit} bytes"),
    )
}

/// After a refusal, how much more of the body is read and thrown away (by the drain layer, over
/// HTTP/1 and HTTP/2 alike) so that a client still sending reads the 413 instead of a reset or a
/// closed connection; past this the body is cut off.
const LINGER: Linger = Linger {
    bytes: 4 << 20,
    time: Duration::from_secs(2),
};

/// Reads a body stream, refusing as soon as it passes `limit`.
async fn read_bounded<S, E>(mut stream: S, limit: usize) -> Result<Vec<u8>, ApiError>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
{
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::bad_request("bad_body", "the upload was cut short"))?;
        if out.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// What multipart framing (boundaries, part headers) may add to the file itself.
const MULTIPART_FRAMING: usize = 16 * 1024;

/// A body that fails once more than `bound` bytes came in; `over` then tells the caller that the
/// multipart error it sees means "too large" (the drain layer lingers on the 413).
fn bounded_body(body: Body, bound: usize, over: Arc<AtomicBool>) -> Body {
    let start = (body.into_data_stream(), 0usize, false);
    let stream = futures_util::stream::unfold(start, move |(mut s, seen, done)| {
        let over = over.clone();
        async move {
            if done {
                return None;
            }
            match s.next().await? {
                Err(e) => Some((Err(std::io::Error::other(e)), (s, seen, true))),
                Ok(chunk) if seen + chunk.len() > bound => {
                    over.store(true, Ordering::Relaxed);
                    let e = std::io::Error::other("the request body is over its bound");
                    Some((Err(e), (s, seen, true)))
                }
                Ok(chunk) => {
                    let seen = seen + chunk.len();
                    Some((Ok(chunk), (s, seen, false)))
                }
            }
        }
    });
    Body::from_stream(stream)
}

/// The first file part of a multipart body. The file is bounded like a raw body, and the whole
/// request (every part, file or not, and the framing) by the limit plus `MULTIPART_FRAMING`.
async fn first_file(req: Request, limit: usize) -> Result<(String, Vec<u8>), ApiError> {
    let over = Arc::new(AtomicBool::new(false));
    let (parts, body) = req.into_parts();
    let body = bounded_body(body, limit + MULTIPART_FRAMING, over.clone());
    let req = Request::from_parts(parts, body);
    let refused = |e: axum::extract::multipart::MultipartError| {
        if over.load(Ordering::Relaxed) {
            too_large(limit)
        } else {
            ApiError::bad_request("bad_multipart", e.body_text())
        }
    };
    let mut form = axum::extract::Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::bad_request("bad_multipart", e.body_text()))?;
    loop {
        let field = form.next_field().await.map_err(refused)?;
        let Some(mut field) = field else {
            return Err(ApiError::bad_request(
                "no_file",
                "the form has no file part",
            ));
        };
        let Some(name) = field.file_name().map(str::to_string) else {
            // Skip other fields, but read them within the same bound.
            let mut seen = 0usize;
            while let Some(c) = field.chunk().await.map_err(refused)? {
                seen += c.len();
                if seen > limit {
                    return Err(too_large(limit));
                }
            }
            continue;
        };
        let mut data = Vec::new();
        while let Some(c) = field.chunk().await.map_err(refused)? {
            if data.len() + c.len() > limit {
                return Err(too_large(limit));
            }
            data.extend_from_slice(&c);
        }
        return Ok((name, data));
    }
}

/// Uploads a file (raw body, or multipart/form-data with one file part). Its type is found by
/// content; only images, PDF and text are kept.
#[utoipa::path(post, path = "/api/v1/attachments", tag = "attachments", params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = AttachmentInfo), (status = 413), (status = 415)))]
pub async fn upload(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Query(q): Query<UploadQuery>,
    req: Request,
) -> Response {
    match store_upload(state, me, q, req).await {
        Ok(created) => created.into_response(),
        Err(e) => {
            let refused_body = e.code == "too_large";
            let mut res = e.into_response();
            if refused_body {
                res.extensions_mut().insert(LINGER);
            }
            res
        }
    }
}

async fn store_upload(
    state: AppState,
    me: super::extract::CurrentUser,
    q: UploadQuery,
    req: Request,
) -> Result<(StatusCode, Json<AttachmentInfo>), ApiError> {
    let actor = Actor::of(&me.user);
    actor.require_poster()?;
    let limit = state.config().chat.max_attachment_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Multipart framing adds a little; the file itself is checked exactly below.
    // The drain layer then reads some of what is in flight (not from a client that waits for
    // `100 Continue`: it sends nothing more), so the 413 is read rather than reset.
    if declared.is_some_and(|n| n > (limit + MULTIPART_FRAMING) as u64) {
        return Err(too_large(limit));
    }
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    let (name, data) = if is_multipart {
        first_file(req, limit).await?
    } else {
        let data = read_bounded(req.into_body().into_data_stream(), limit).await?;
        (q.name.unwrap_or_default(), data)
    };
    let quota = state.config().attachments.quota_bytes_per_user;
    let info = attachments::store(state.log(), &actor, &name, data, quota)
        .await
        .map_err(|e| match e {
            crate::log::SubmitError::Rejected(r) if r.code == "unsupported_type" => {
                ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, r.code, r.message)
            }
            crate::log::SubmitError::Rejected(r) if r.code == "quota_exceeded" => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, r.code, r.message)
            }
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// `filename*` per RFC 8187: UTF-8, percent-encoded.
fn rfc8187(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Downloads an attachment: for its uploader and members of a conversation it was posted in.
#[utoipa::path(get, path = "/api/v1/attachments/{id}", tag = "attachments",
    params(("id" = String, Path)), responses((status = 200, content_type = "application/octet-stream"), (status = 404)))]
pub async fn download(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if id.len() > 64 {
        return Err(ApiError::not_found());
    }
    let row = attachments::open_for(state.log(), &Actor::of(&me.user).user, &id)?;
    file_response(state.log().clone(), row)
}

/// An attachment's content as a download: its sniffed type, its name, a sandboxing CSP, its
/// SHA-256 as the ETag, streamed chunk by chunk from `log` (a replica's at HQ).
pub(super) fn file_response(log: Log, row: AttachmentRow) -> Result<Response, ApiError> {
    let mime = if row.mime.starts_with("text/") {
        format!("{}; charset=utf-8", row.mime)
    } else {
        row.mime.clone()
    };
    let inline = row.mime.starts_with("image/");
    let ascii: String = row
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let disposition = format!(
        "{}; filename=\"{ascii}\"; filename*=UTF-8''{}",
        if inline { "inline" } else { "attachment" },
        rfc8187(&row.name)
    );
    let (size, etag, chunks) = (row.size, format!("\"{}\"", row.sha256), row.chunks);
    let body = futures_util::stream::iter(0..chunks).then(move |n| {
        let (log, row) = (log.clone(), row.clone());
        async move {
            attachments::chunk(&log, &row, n)
                .map(bytes::Bytes::from)
                .map_err(|e| {
                    tracing::error!(error = %e, "attachment read failed");
                    std::io::Error::other("attachment read failed")
                })
        }
    });
    let mut res = Body::from_stream(body).into_response();
    let h = res.headers_mut();
    let value =
        |s: &str| HeaderValue::from_str(s).map_err(|_| ApiError::internal(&"attachment header"));
    h.insert(header::CONTENT_TYPE, value(&mime)?);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    h.insert(header::CONTENT_DISPOSITION, value(&disposition)?);
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; img-src 'self'; sandbox"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400"),
    );
    h.insert(header::ETAG, value(&etag)?);
    Ok(res)
}
