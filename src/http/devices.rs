//! Device administration for admins: list, add (the token or certificate bundle is in the
//! answer, once) and revoke. The same domain calls as `plantwire device …`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Admin, ApiJson, RequireRole};
use crate::devices;
use crate::log::Author;
use crate::state::AppState;
use crate::store::DeviceRow;

/// A device as an admin sees it (never its token).
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeviceView {
    pub name: String,
    pub created_at_us: i64,
    pub created_by: String,
    pub revoked_at_us: Option<i64>,
    /// Ingest statistics, in memory since the server started: the last accepted publish (µs),
    /// events accepted in the last minute, and refused publishes.
    pub last_seen_us: Option<i64>,
    pub rate_per_min: u64,
    pub refused: u64,
    /// Whether the device has an API token.
    pub has_token: bool,
    /// Its certificates from the site CA, oldest first.
    pub certificates: Vec<CertView>,
}

/// A device certificate as the registry keeps it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CertView {
    pub serial: String,
    pub fingerprint_sha256: String,
    pub issued_at_us: i64,
    pub not_after_us: i64,
    pub revoked_at_us: Option<i64>,
}

impl From<&DeviceRow> for DeviceView {
    fn from(d: &DeviceRow) -> Self {
        Self {
            name: d.name.clone(),
            created_at_us: d.created_at_us,
            created_by: d.created_by.clone(),
            revoked_at_us: d.revoked_at_us,
            last_seen_us: None,
            rate_per_min: 0,
            refused: 0,
            has_token: d.token_hash != crate::device_certs::NO_TOKEN,
            certificates: Vec::new(),
        }
    }
}

impl DeviceView {
    /// The view with the device's certificates among `certs` (any device's).
    pub fn with_certs(d: &DeviceRow, certs: &[crate::store::DeviceCertRow]) -> Self {
        let mut v = Self::from(d);
        v.certificates = certs
            .iter()
            .filter(|c| c.device == d.name)
            .map(|c| CertView {
                serial: c.serial.clone(),
                fingerprint_sha256: c.fingerprint.clone(),
                issued_at_us: c.issued_at_us,
                not_after_us: c.not_after_us,
                revoked_at_us: c.revoked_at_us,
            })
            .collect();
        v.certificates.sort_by_key(|c| c.issued_at_us);
        v
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeviceList {
    pub devices: Vec<DeviceView>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    pub name: String,
    /// `token` (the default) or `certificate` (from the site CA).
    #[serde(default)]
    pub credential: Credential,
    /// With `certificate`: the device's PEM CSR; without it the server makes the key.
    pub csr: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    #[default]
    Token,
    Certificate,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WithToken {
    pub device: DeviceView,
    /// The device's API token, shown only now (credential `token`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The certificate bundle, shown only now (credential `certificate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<super::device_certs::CertBundle>,
}

fn by(admin: &crate::store::UserRow) -> Author {
    Author::User(crate::users::key(&admin.username))
}

#[utoipa::path(get, path = "/api/v1/admin/devices", tag = "admin", responses((status = 200, body = DeviceList)))]
pub async fn list(
    State(state): State<AppState>,
    _admin: RequireRole<Admin>,
) -> Result<Json<DeviceList>, ApiError> {
    let all = devices::list(state.log())?;
    let certs = state.log().read()?.device_certs()?;
    Ok(Json(DeviceList {
        devices: all
            .iter()
            .map(|d| {
                let st = state.ingest().stats(&d.name);
                DeviceView {
                    last_seen_us: st.last_seen_us,
                    rate_per_min: st.rate_per_min,
                    refused: st.refused,
                    ..DeviceView::with_certs(d, &certs)
                }
            })
            .collect(),
    }))
}

#[utoipa::path(post, path = "/api/v1/admin/devices", tag = "admin", request_body = NewDevice, responses((status = 201, body = WithToken), (status = 409, body = super::error::ErrorResponse)))]
pub async fn add(
    State(state): State<AppState>,
    RequireRole(admin, _): RequireRole<Admin>,
    ApiJson(req): ApiJson<NewDevice>,
) -> Result<(StatusCode, Json<WithToken>), ApiError> {
    let (token, certificate) = match req.credential {
        Credential::Token => {
            if req.csr.is_some() {
                return Err(ApiError::bad_request(
                    "csr_without_certificate",
                    "a CSR goes with \"credential\": \"certificate\"",
                ));
            }
            let (_, token) = devices::add(state.log(), &req.name, &by(&admin.user)).await?;
            (Some(token), None)
        }
        Credential::Certificate => {
            let ca = super::device_certs::device_ca(&state)?;
            let bundle = crate::device_certs::add(
                state.log(),
                ca,
                &req.name,
                &by(&admin.user),
                super::device_certs::enrol(req.csr),
                state.config().devices.cert_days,
            )
            .await?;
            (None, Some(bundle.into()))
        }
    };
    let row = state
        .log()
        .read()?
        .device(&req.name)?
        .ok_or_else(ApiError::not_found)?;
    let certs = state.log().read()?.device_certs()?;
    Ok((
        StatusCode::CREATED,
        Json(WithToken {
            device: DeviceView::with_certs(&row, &certs),
            token,
            certificate,
        }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/admin/devices/{name}", tag = "admin", params(("name" = String, Path)), responses((status = 204), (status = 404, body = super::error::ErrorResponse)))]
pub async fn revoke(
    State(state): State<AppState>,
    RequireRole(admin, _): RequireRole<Admin>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    devices::revoke(state.log(), &name, &by(&admin.user)).await?;
    // The new CRL for the next handshakes, and the device's open connections closed.
    if let Err(e) = state.device_revoked(&name) {
        tracing::error!(error = %e, device = %name, "device revoked, but the CRL could not be renewed");
    }
    Ok(StatusCode::NO_CONTENT)
}
