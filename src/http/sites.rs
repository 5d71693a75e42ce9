//! `GET /api/v1/sites` at HQ: every enrolled site's replication status (replicated seq, head
//! hash, lag, last witnessed checkpoint), for admins; `plantwire site list --json` shows the same.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::error::ApiError;
use super::extract::{Admin, RequireRole};
use crate::replication::{ReplicationError, SiteStatus};
use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct SiteList {
    pub sites: Vec<SiteStatus>,
}

#[utoipa::path(get, path = "/api/v1/sites", tag = "admin", responses((status = 200, body = SiteList), (status = 404, body = super::error::ErrorResponse, description = "this server is not an HQ")))]
pub async fn list(
    State(state): State<AppState>,
    _admin: RequireRole<Admin>,
) -> Result<Json<SiteList>, ApiError> {
    let Some(h) = state.replication().and_then(|r| r.hq()) else {
        return Err(ApiError::not_found());
    };
    let sites = h.hq.replicas.list().await.map_err(|e| match e {
        ReplicationError::Rejected(r) => ApiError::from(r),
        other => ApiError::internal(&other),
    })?;
    Ok(Json(SiteList { sites }))
}
