//! HQ's grant routes: `GET /api/v1/sites/{site}/grants` (admins and auditors), `PUT` and `DELETE
//! /api/v1/sites/{site}/grants/{user}` (admins). The same domain functions and log entries as
//! `plantwire site grant|ungrant|grants`; 404 when not an HQ.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{ApiJson, CurrentUser};
use super::sites::{hq, replication_error, unknown_site};
use crate::log::Author;
use crate::replication::grants::{self, GrantRole, SiteScope};
use crate::state::AppState;
use crate::store::{Role, SiteGrantRow};

/// One grant of a site.
#[derive(Serialize, utoipa::ToSchema)]
pub struct GrantView {
    /// The HQ user (lower-cased).
    pub user: String,
    pub role: Role,
    pub granted_at_us: i64,
    /// Who granted it (`user:<name>` or `system`).
    pub granted_by: String,
}

impl From<&SiteGrantRow> for GrantView {
    fn from(g: &SiteGrantRow) -> Self {
        Self {
            user: g.user.clone(),
            role: g.role,
            granted_at_us: g.granted_at_us,
            granted_by: g.granted_by.clone(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct GrantList {
    pub site: String,
    /// In user order.
    pub grants: Vec<GrantView>,
    /// More grants exist than one answer lists (`grants::MAX_LISTED`).
    pub capped: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    #[schema(value_type = String, example = "viewer")]
    pub role: GrantRole,
}

/// A site the caller may not read answers as one that does not exist (as every site route);
/// past that, the caller must hold `allowed` roles.
fn check(state: &AppState, me: &CurrentUser, site: &str, allowed: &[Role]) -> Result<(), ApiError> {
    if !SiteScope::of(state.log(), &me.user)?.allows(site) {
        return Err(unknown_site());
    }
    if !allowed.contains(&me.user.role) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "your role does not allow this",
        ));
    }
    Ok(())
}

fn by(me: &CurrentUser) -> Author {
    Author::User(crate::users::key(&me.user.username))
}

#[utoipa::path(get, path = "/api/v1/sites/{site}/grants", tag = "sites", params(("site" = String, Path, description = "the site's name")), responses((status = 200, body = GrantList, description = "the site's grants (admins and auditors)"), (status = 403, body = super::error::ErrorResponse, description = "`forbidden`: not an admin or auditor"), (status = 404, body = super::error::ErrorResponse, description = "`unknown_site`: no such site, or not one the caller may read; `not_found`: not an HQ")))]
pub async fn list(
    State(state): State<AppState>,
    me: CurrentUser,
    Path(site): Path<String>,
) -> Result<Json<GrantList>, ApiError> {
    let h = hq(&state)?;
    check(&state, &me, &site, &[Role::Admin, Role::Auditor])?;
    if !h
        .hq
        .replicas
        .sites()
        .map_err(replication_error)?
        .contains(&site)
    {
        return Err(unknown_site());
    }
    let (rows, capped) = grants::list(state.log(), Some(&site))?;
    Ok(Json(GrantList {
        site,
        grants: rows.iter().map(GrantView::from).collect(),
        capped,
    }))
}

#[utoipa::path(put, path = "/api/v1/sites/{site}/grants/{user}", tag = "sites", params(("site" = String, Path, description = "an enrolled site"), ("user" = String, Path, description = "an HQ user")), request_body = GrantRequest, responses((status = 200, body = GrantView, description = "granted (or the role changed); a `site.granted` entry"), (status = 400, body = super::error::ErrorResponse, description = "`invalid_json`: no such role"), (status = 403, body = super::error::ErrorResponse, description = "`forbidden`: not an admin; `read_only_role`: an auditor"), (status = 404, body = super::error::ErrorResponse, description = "`unknown_site`, `no_such_user`; `not_found`: not an HQ")))]
pub async fn put(
    State(state): State<AppState>,
    me: CurrentUser,
    Path((site, user)): Path<(String, String)>,
    body: Result<ApiJson<GrantRequest>, ApiError>,
) -> Result<Json<GrantView>, ApiError> {
    let h = hq(&state)?;
    // The body is judged after the site: a site out of scope answers as one that is not there.
    check(&state, &me, &site, &[Role::Admin])?;
    let ApiJson(req) = body?;
    let row = grants::grant(
        state.log(),
        &h.hq.replicas,
        &site,
        &user,
        req.role,
        &by(&me),
    )
    .await
    .map_err(replication_error)?;
    Ok(Json(GrantView::from(&row)))
}

#[utoipa::path(delete, path = "/api/v1/sites/{site}/grants/{user}", tag = "sites", params(("site" = String, Path, description = "an enrolled site"), ("user" = String, Path, description = "an HQ user")), responses((status = 204, description = "taken back; a `site.ungranted` entry"), (status = 403, body = super::error::ErrorResponse, description = "`forbidden`: not an admin; `read_only_role`: an auditor"), (status = 404, body = super::error::ErrorResponse, description = "`no_grant`: the user holds no grant on the site; `not_found`: not an HQ")))]
pub async fn delete(
    State(state): State<AppState>,
    me: CurrentUser,
    Path((site, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    hq(&state)?;
    check(&state, &me, &site, &[Role::Admin])?;
    grants::ungrant(state.log(), &site, &user, &by(&me))
        .await
        .map_err(replication_error)?;
    Ok(StatusCode::NO_CONTENT)
}
