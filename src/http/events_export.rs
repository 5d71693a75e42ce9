//! Reading single events and exporting listings: `GET /api/v1/events/{seq}` with the chain fields,
//! and `GET /api/v1/events/export` streamed page by page as CSV or JSON Lines.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::error::ApiError;
use super::events::{ListQuery, list_error};
use super::extract::{RequireRole, Viewer};
use crate::events::{self, EventEntry, export::Format};
use crate::log::Log;
use crate::state::AppState;

/// Events one export step reads (one read snapshot each).
const EXPORT_PAGE: usize = 500;

/// One event with its seq, prev and hash, for the event viewer's detail pane.
#[utoipa::path(get, path = "/api/v1/events/{seq}", tag = "events", params(("seq" = u64, Path)), responses((status = 200, body = EventEntry), (status = 404, body = super::error::ErrorResponse)))]
pub async fn get(
    State(state): State<AppState>,
    _me: RequireRole<Viewer>,
    Path(seq): Path<String>,
) -> Result<Json<EventEntry>, ApiError> {
    let no_such = || {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "no_such_event",
            "no event has that seq",
        )
    };
    let seq: u64 = seq.parse().map_err(|_| no_such())?;
    let log = state.log().clone();
    tokio::task::spawn_blocking(move || events::entry(&log, seq))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(list_error)?
        .map(Json)
        .ok_or_else(no_such)
}

/// Where an export is in its walk.
struct Walk {
    log: Log,
    query: events::Query,
    format: Format,
    left: u64,
    done: bool,
}

impl Walk {
    /// The next page's rows, from a fresh read snapshot; `None` when the walk is over.
    fn step(&mut self) -> Result<Option<Vec<u8>>, events::ListError> {
        if self.done {
            return Ok(None);
        }
        self.query.limit = EXPORT_PAGE.min(usize::try_from(self.left).unwrap_or(EXPORT_PAGE));
        let page = events::list(&self.log, &self.query)?;
        let mut out = Vec::new();
        for e in &page.events {
            self.format
                .write_row(e, &mut out)
                .map_err(|source| events::ListError::Body { seq: e.seq, source })?;
        }
        self.left = self.left.saturating_sub(page.events.len() as u64);
        match page.next {
            Some(next) if self.left > 0 => {
                if self.query.newest_first {
                    self.query.before = Some(next);
                } else {
                    self.query.after = next;
                }
            }
            _ => self.done = true,
        }
        Ok(Some(out))
    }
}

/// Picks the format: `format=` wins, else `Accept`, else CSV.
fn format_of(param: Option<&str>, headers: &HeaderMap) -> Result<Format, ApiError> {
    if let Some(p) = param {
        return Format::parse(p)
            .ok_or_else(|| ApiError::bad_request("invalid_format", "format must be csv or jsonl"));
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if accept.contains("application/x-ndjson") || accept.contains("application/jsonl") {
        Ok(Format::Jsonl)
    } else {
        Ok(Format::Csv)
    }
}

/// The events a listing with the same filters gives, all of them up to `limit` (else
/// `events.export_max_rows`), streamed: each page is read from its own snapshot and written out
/// before the next is read, so memory stays at one page whatever the size of the export.
#[utoipa::path(get, path = "/api/v1/events/export", tag = "events", params(ListQuery), responses((status = 200, description = "CSV (text/csv) or JSON Lines (application/x-ndjson)"), (status = 400, body = super::error::ErrorResponse)))]
pub async fn export(
    State(state): State<AppState>,
    _me: RequireRole<Viewer>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(mut raw) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let format = format_of(raw.format.take().as_deref(), &headers)?;
    let cap = state.config().events.export_max_rows;
    let left = raw.limit.take().map_or(cap, |l| (l as u64).clamp(1, cap));
    let query = raw.into_query()?;
    let mut walk = Walk {
        log: state.log().clone(),
        query,
        format,
        left,
        done: false,
    };
    // The first page before the answer: a failing store is a 5xx, not a cut-off 200.
    let first = tokio::task::spawn_blocking(move || walk.step().map(|rows| (walk, rows)))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(list_error)?;
    let (walk, rows) = first;
    let mut head = format.header().to_vec();
    head.extend(rows.unwrap_or_default());
    let rest = futures_util::stream::unfold(Some(walk), |walk| async move {
        let mut walk = walk?;
        let stepped = tokio::task::spawn_blocking(move || walk.step().map(|rows| (walk, rows)))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r.map_err(std::io::Error::other));
        match stepped {
            Ok((walk, Some(rows))) => Some((Ok(Bytes::from(rows)), Some(walk))),
            Ok((_, None)) => None,
            Err(e) => {
                // The answer has started: cutting the body short is all that is left.
                tracing::error!(error = %e, "event export stopped");
                Some((Err(e), None))
            }
        }
    });
    let body =
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(head)) })
            .chain(rest);
    let disposition = format!("attachment; filename=\"events.{}\"", format.extension());
    let mut res = Body::from_stream(body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.media_type()),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}
