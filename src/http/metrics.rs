//! `/metrics` (Prometheus text) for an admin or a scraper's bearer token. Every answered request
//! is counted by the edge layer (`middleware.rs`).

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::{Admin, RequireRole, bearer};
use crate::secret::{read_secret_file, token_hash};
use crate::state::AppState;

/// The content type of the Prometheus/OpenMetrics text exposition.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics, for a signed-in admin or the configured scraper token.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, content_type = "application/openmetrics-text", description = "Prometheus/OpenMetrics text"),
              (status = 401, body = super::error::ErrorResponse), (status = 403, body = super::error::ErrorResponse)))]
pub async fn metrics(State(state): State<AppState>, mut parts: Parts) -> Response {
    match authorize(&state, &mut parts).await {
        Ok(()) => {}
        Err(e) => return e.into_response(),
    }
    let log = state.log();
    let store_bytes = std::fs::metadata(log.store().path())
        .map(|m| m.len())
        .unwrap_or(0);
    match crate::alarms::counts(log) {
        Ok(c) => state.metrics().set_alarms(c.standing, c.unacked, c.shelved),
        Err(e) => tracing::warn!(error = %e, "cannot count alarms for /metrics"),
    }
    match state.metrics().render(log.queue_depth(), store_bytes) {
        Ok(text) => {
            let mut res = (StatusCode::OK, text).into_response();
            res.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
            res
        }
        Err(e) => ApiError::internal(&e).into_response(),
    }
}

async fn authorize(state: &AppState, parts: &mut Parts) -> Result<(), ApiError> {
    let cfg = &state.config().metrics;
    if !cfg.enabled {
        return Err(ApiError::not_found());
    }
    if let (Some(path), Some(given)) = (&cfg.token_file, bearer(&parts.headers)) {
        let expected = read_secret_file(path).map_err(|e| ApiError::internal(&e))?;
        let expected = String::from_utf8_lossy(&expected);
        // Compare hashes, so the time taken says nothing about the token.
        let matches = aws_lc_rs::constant_time::verify_slices_are_equal(
            &token_hash(expected.trim()),
            &token_hash(&given),
        )
        .is_ok();
        if matches && !expected.trim().is_empty() {
            return Ok(());
        }
    }
    RequireRole::<Admin>::from_request_parts(parts, state)
        .await
        .map(|_| ())
}
