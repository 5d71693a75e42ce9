//! The HTTP surface: every route in one table, and the layers every response passes through
//! (request id, JSON error bodies, security headers, body limit, access log).

mod events;
mod extract;
mod health;
mod middleware;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::state::AppState;

pub use extract::{ApiJson, DeviceAuth};
pub use middleware::RequestId;

/// Builds the router. Public routes are listed first; everything under `/api/v1` authenticates.
pub fn router(state: AppState) -> Router {
    let max_body = state.config().server.max_body_bytes;
    Router::new()
        // Public: health, readiness and the site CA certificate.
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/ca.crt", get(health::ca_cert))
        // Devices (API token).
        .route("/api/v1/events", post(events::publish_one))
        .route("/api/v1/events/batch", post(events::publish_batch))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(middleware::security_headers))
        .layer(axum::middleware::from_fn(middleware::finish))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}
