//! The audit routes: the site's public key (public, for auditors) and the admin's audit export,
//! streamed page by page as JSON Lines (format in docs/log-format.md).

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{Admin, RequireRole};
use crate::audit::{Bound, ExportError, ExportRequest, SiteKey, Walk};
use crate::state::AppState;

/// The site's checkpoint-signing public key as one verifier key line
/// (`plantwire/<site>+<key id>+<base64>`), what `plantwire audit verify --public-key` reads.
#[utoipa::path(get, path = "/api/v1/site/key", tag = "audit", responses((status = 200, content_type = "text/plain", description = "the verifier key line and a newline")))]
pub async fn site_key(State(state): State<AppState>) -> Response {
    let key = SiteKey::new(state.log().site(), state.signer().public_key());
    let mut res = (StatusCode::OK, format!("{}\n", key.vkey())).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// `from` and `to`: a seq or an RFC 3339 time; both optional (the oldest, the newest entry).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    from: Option<String>,
    to: Option<String>,
    /// Open only this stream's bodies.
    stream: Option<String>,
}

fn export_error(e: ExportError) -> ApiError {
    match e {
        ExportError::Rejected(r) => r.into(),
        ExportError::Store(s) => s.into(),
        ExportError::Checkpoint(s) => s.into(),
        other => ApiError::internal(&other),
    }
}

/// A range of the log with its signed checkpoints, as JSON Lines (admins). The body streams: each
/// page of entries is read from its own snapshot and written before the next is read.
#[utoipa::path(get, path = "/api/v1/audit/export", tag = "audit", params(ExportQuery), responses((status = 200, content_type = "application/x-ndjson", description = "the export (docs/log-format.md)"), (status = 400, body = super::error::ErrorResponse), (status = 403, body = super::error::ErrorResponse)))]
pub async fn export(
    State(state): State<AppState>,
    _admin: RequireRole<Admin>,
    q: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let bound = |name: &str, raw: &Option<String>| {
        raw.as_deref()
            .map(|r| Bound::parse(name, r))
            .transpose()
            .map_err(ApiError::from)
    };
    let req = ExportRequest {
        from: bound("from", &q.from)?,
        to: bound("to", &q.to)?,
        stream: q.stream,
    };
    let plan = crate::audit::prepare(state.log(), state.signer(), &req)
        .await
        .map_err(export_error)?;
    let filename = format!(
        "attachment; filename=\"audit-{}-{}-{}.jsonl\"",
        plan.header.site, plan.header.from, plan.header.to
    );
    let walk = Walk::new(state.log().clone(), plan);
    let body = futures_util::stream::unfold(Some(walk), |walk| async move {
        let mut walk = walk?;
        let stepped = tokio::task::spawn_blocking(move || walk.step().map(|lines| (walk, lines)))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r.map_err(std::io::Error::other));
        match stepped {
            Ok((walk, Some(lines))) => Some((Ok(Bytes::from(lines)), Some(walk))),
            Ok((_, None)) => None,
            Err(e) => {
                // The answer has started: cutting it short is all that is left (the check notices).
                tracing::error!(error = %e, "audit export stopped");
                Some((Err(e), None))
            }
        }
    })
    .boxed();
    let mut res = Body::from_stream(body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    if let Ok(v) = HeaderValue::from_str(&filename) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}
