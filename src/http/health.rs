//! Public operational endpoints: liveness, readiness, and the site CA certificate.
//! They reveal nothing beyond "up", "ready", the site name and the public certificates.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::ApiError;
use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    status: &'static str,
}

/// The process is alive and serving.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Ready to take work: listening, store open and taking writes, writer running, not shutting
/// down.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, body = Health), (status = 503, body = super::error::ErrorResponse)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    if !state.is_ready() {
        return Err(ApiError::unavailable("not ready"));
    }
    if state.log().storage_degraded() {
        return Err(ApiError {
            retry_after_secs: Some(5),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_degraded",
                "a commit failed (full disk or I/O error); writes are refused until the store recovers",
            )
        });
    }
    Ok(Json(Health { status: "ready" }))
}

/// What a client needs before it signs in: which site this is and the fingerprint of the
/// certificate served right now, to compare with what the browser or `plantwire discover` shows.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SiteInfo {
    site: String,
    version: &'static str,
    /// SHA-256 of the site CA certificate (DER), upper-case hex pairs joined by ':': the one to
    /// compare (it is what `plantwire discover` shows first and what the browser shows for the
    /// issuer); it stays the same when the served certificate is renewed. Absent for a configured
    /// certificate without `tls.ca_file`.
    ca_fingerprint: Option<String>,
    /// SHA-256 of the certificate served right now (DER), same form; it changes at each renewal.
    fingerprint: String,
}

/// The site, the version, and the fingerprint of the certificate served now (to compare by eye).
#[utoipa::path(get, path = "/api/v1/site", tag = "health", responses((status = 200, body = SiteInfo)))]
pub async fn site(State(state): State<AppState>) -> Json<SiteInfo> {
    Json(SiteInfo {
        site: state.log().site().to_string(),
        version: env!("CARGO_PKG_VERSION"),
        ca_fingerprint: state.tls().ca_fingerprint(),
        fingerprint: state.tls().served_fingerprint(),
    })
}

/// The CA certificate to install so clients trust this server.
#[utoipa::path(get, path = "/ca.crt", tag = "health", responses((status = 200, content_type = "application/x-pem-file", description = "the site CA certificate")))]
pub async fn ca_cert(State(state): State<AppState>) -> Response {
    match state.tls().ca_pem() {
        Some(pem) => {
            let mut res = (StatusCode::OK, pem.to_string()).into_response();
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-pem-file"),
            );
            h.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"plantwire-ca.crt\""),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            res
        }
        None => ApiError::not_found().into_response(),
    }
}
