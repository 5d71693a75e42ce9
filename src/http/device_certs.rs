//! Device certificates over HTTP: the bundle an add or renewal returns once, renewal, and the
//! site CRL at `/ca.crl` (public, DER, on both listeners).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::devices::DeviceView;
use super::error::ApiError;
use super::extract::{Admin, ApiJson, RequireRole};
use crate::device_certs::{self, Bundle, CertError, Enrol};
use crate::log::Author;
use crate::state::AppState;
use crate::tls::issue::{DeviceCa, IssueError};

/// A certificate issued just now: shown once (the key is never stored).
#[derive(Serialize, utoipa::ToSchema)]
pub struct CertBundle {
    /// Serial, lower-case hex (as the CRL lists it).
    pub serial: String,
    /// SHA-256 of the DER certificate, lower-case hex: the identity the server maps to the device.
    pub fingerprint_sha256: String,
    pub not_after_us: i64,
    pub cert_pem: String,
    pub ca_pem: String,
    /// Absent for a CSR: the key never left the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_pem: Option<String>,
    /// PKCS#12 (key, certificate, CA), base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p12_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p12_password: Option<String>,
}

impl From<Bundle> for CertBundle {
    fn from(b: Bundle) -> Self {
        let (key_pem, p12_base64, p12_password) = match b.key {
            Some(k) => (
                Some(k.key_pem),
                Some(base64::engine::general_purpose::STANDARD.encode(&k.p12)),
                Some(k.p12_password),
            ),
            None => (None, None, None),
        };
        Self {
            serial: b.issued.serial_hex,
            fingerprint_sha256: hex::encode(b.issued.fingerprint),
            not_after_us: b.issued.not_after_us,
            cert_pem: b.issued.cert_pem,
            ca_pem: b.ca_pem,
            key_pem,
            p12_base64,
            p12_password,
        }
    }
}

/// A renewal: a device's PEM CSR, or nothing for a server-made key.
#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Renew {
    pub csr: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Renewed {
    pub device: DeviceView,
    pub certificate: CertBundle,
}

impl From<CertError> for ApiError {
    fn from(e: CertError) -> Self {
        match e {
            CertError::Submit(s) => s.into(),
            CertError::Issue(IssueError::NoCaKey) => ApiError::new(
                StatusCode::CONFLICT,
                "no_site_ca",
                IssueError::NoCaKey.to_string(),
            ),
            CertError::Issue(e @ (IssueError::BadCsr(_) | IssueError::CsrTooLarge)) => {
                ApiError::bad_request("bad_csr", e.to_string())
            }
            CertError::Issue(e) => ApiError::internal(&e),
        }
    }
}

/// The CA that signs device certificates, or 409 `no_site_ca`.
pub fn device_ca(state: &AppState) -> Result<&DeviceCa, ApiError> {
    state
        .device_gate()
        .map(|g| g.ca())
        .ok_or_else(|| CertError::Issue(IssueError::NoCaKey).into())
}

pub fn enrol(csr: Option<String>) -> Enrol {
    match csr {
        Some(pem) => Enrol::Csr(pem),
        None => Enrol::ServerKey,
    }
}

pub fn by(admin: &crate::store::UserRow) -> Author {
    Author::User(crate::users::key(&admin.username))
}

#[utoipa::path(post, path = "/api/v1/admin/devices/{name}/renew", tag = "admin", params(("name" = String, Path)), request_body = Renew, responses((status = 201, body = Renewed), (status = 400, body = super::error::ErrorResponse), (status = 404, body = super::error::ErrorResponse), (status = 409, body = super::error::ErrorResponse)))]
pub async fn renew(
    State(state): State<AppState>,
    RequireRole(admin, _): RequireRole<Admin>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<Renew>,
) -> Result<(StatusCode, Json<Renewed>), ApiError> {
    let ca = device_ca(&state)?;
    let days = state.config().devices.cert_days;
    let bundle = device_certs::renew(
        state.log(),
        ca,
        &name,
        &by(&admin.user),
        enrol(req.csr),
        days,
    )
    .await?;
    let row = state
        .log()
        .read()?
        .device(&name)?
        .ok_or_else(ApiError::not_found)?;
    let certs = device_certs::certs_of(state.log(), &name)?;
    Ok((
        StatusCode::CREATED,
        Json(Renewed {
            device: DeviceView::with_certs(&row, &certs),
            certificate: bundle.into(),
        }),
    ))
}

#[utoipa::path(get, path = "/ca.crl", tag = "public", responses((status = 200, content_type = "application/pkix-crl", body = Vec<u8>), (status = 404, body = super::error::ErrorResponse)))]
pub async fn crl(State(state): State<AppState>) -> Response {
    let Some(gate) = state.device_gate() else {
        return ApiError::not_found().into_response();
    };
    let mut res = (StatusCode::OK, gate.crl().as_ref().clone()).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pkix-crl"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}
