//! Device administration for admins: list, add (the token is in the answer, once) and revoke.
//! The same domain calls as `plantwire device …`.

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
        }
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
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WithToken {
    pub device: DeviceView,
    /// The device's API token, shown only now.
    pub token: String,
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
    Ok(Json(DeviceList {
        devices: all
            .iter()
            .map(|d| {
                let st = state.ingest().stats(&d.name);
                DeviceView {
                    last_seen_us: st.last_seen_us,
                    rate_per_min: st.rate_per_min,
                    refused: st.refused,
                    ..DeviceView::from(d)
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
    let (_, token) = devices::add(state.log(), &req.name, &by(&admin.user)).await?;
    let row = state
        .log()
        .read()?
        .device(&req.name)?
        .ok_or_else(ApiError::not_found)?;
    Ok((
        StatusCode::CREATED,
        Json(WithToken {
            device: DeviceView::from(&row),
            token,
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
    Ok(StatusCode::NO_CONTENT)
}
