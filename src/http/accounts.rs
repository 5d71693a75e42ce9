//! Account administration beyond the user rows: rejecting registrations, the pending count,
//! sessions (a user's own and, for admins, anyone's) and the security-event list.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Admin, CurrentUser, RequireRole};
use crate::auth::audit::{self, SecurityEvent};
use crate::auth::sessions;
use crate::log::Author;
use crate::state::AppState;
use crate::store::SessionRow;
use crate::users;

fn by(username: &str) -> Author {
    Author::User(users::key(username))
}

#[utoipa::path(post, path = "/api/v1/admin/users/{username}/reject", tag = "admin", params(("username" = String, Path)), responses((status = 204), (status = 404, body = super::error::ErrorResponse), (status = 409, body = super::error::ErrorResponse)))]
pub async fn admin_reject(
    State(state): State<AppState>,
    RequireRole(admin, _): RequireRole<Admin>,
    Path(username): Path<String>,
) -> Result<StatusCode, ApiError> {
    users::reject(state.log(), &username, &by(&admin.user.username)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What needs an admin's attention.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AdminSummary {
    /// Registrations waiting for approval or rejection.
    pub pending_registrations: usize,
}

#[utoipa::path(get, path = "/api/v1/admin/summary", tag = "admin", responses((status = 200, body = AdminSummary)))]
pub async fn admin_summary(
    State(state): State<AppState>,
    _admin: RequireRole<Admin>,
) -> Result<Json<AdminSummary>, ApiError> {
    Ok(Json(AdminSummary {
        pending_registrations: users::pending_count(state.log())?,
    }))
}

/// One open session: where it was last used from, by what, and when. Last use is the last
/// sign-in or refresh (an active client refreshes at least once per access-token lifetime).
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub id: String,
    pub created_at_us: i64,
    /// A summary of the client's `User-Agent` ("Firefox on Android"); empty when unknown.
    pub device: String,
    pub address: Option<String>,
    pub last_used_us: Option<i64>,
    /// Moves forward at each refresh.
    pub expires_at_us: i64,
    /// The session of the token that asked.
    pub current: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

fn views(rows: Vec<SessionRow>, current: &str) -> SessionList {
    SessionList {
        sessions: rows
            .into_iter()
            .map(|s| SessionView {
                current: s.id == current,
                id: s.id,
                created_at_us: s.created_at_us,
                expires_at_us: s.expires_at_us,
                device: s.device,
                address: s.address,
                last_used_us: s.last_used_us,
            })
            .collect(),
    }
}

#[utoipa::path(get, path = "/api/v1/auth/sessions", tag = "auth", responses((status = 200, body = SessionList)))]
pub async fn own_sessions(
    State(state): State<AppState>,
    me: CurrentUser,
) -> Result<Json<SessionList>, ApiError> {
    let rows = sessions::open_sessions(state.log(), &me.user.username)?;
    Ok(Json(views(rows, &me.claims.sid)))
}

#[utoipa::path(delete, path = "/api/v1/auth/sessions/{id}", tag = "auth", params(("id" = String, Path)), responses((status = 204), (status = 404, body = super::error::ErrorResponse)))]
pub async fn end_own_session(
    State(state): State<AppState>,
    me: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name = &me.user.username;
    sessions::end_session(state.log(), name, &id, &by(name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/admin/users/{username}/sessions", tag = "admin", params(("username" = String, Path)), responses((status = 200, body = SessionList), (status = 404, body = super::error::ErrorResponse)))]
pub async fn admin_sessions(
    State(state): State<AppState>,
    RequireRole(admin, _): RequireRole<Admin>,
    Path(username): Path<String>,
) -> Result<Json<SessionList>, ApiError> {
    users::get(state.log(), &username)?.ok_or_else(ApiError::not_found)?;
    let rows = sessions::open_sessions(state.log(), &username)?;
    Ok(Json(views(rows, &admin.claims.sid)))
}

#[utoipa::path(delete, path = "/api/v1/admin/users/{username}/sessions/{id}", tag = "admin", params(("username" = String, Path), ("id" = String, Path)), responses((status = 204), (status = 404, body = super::error::ErrorResponse)))]
pub async fn admin_end_session(
    State(state): State<AppState>,
    RequireRole(admin, _): RequireRole<Admin>,
    Path((username, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    sessions::end_session(state.log(), &username, &id, &by(&admin.user.username)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// A kind (`auth.login_failed`) or a prefix (`auth.*`, the default).
    pub kind: Option<String>,
    /// Only entries with a greater seq.
    pub since: Option<u64>,
    /// 1 to 1000, default 100.
    pub limit: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SecurityEvents {
    /// Newest first.
    pub events: Vec<SecurityEvent>,
}

#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "admin", params(AuditQuery), responses((status = 200, body = SecurityEvents), (status = 400, body = super::error::ErrorResponse)))]
pub async fn admin_audit(
    State(state): State<AppState>,
    _admin: RequireRole<Admin>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<SecurityEvents>, ApiError> {
    let query = audit::Query::new(q.kind.as_deref().unwrap_or("auth.*"), q.since, q.limit)?;
    let log = state.log().clone();
    // Up to 10,000 entries unsealed: on a blocking thread, not an async worker.
    let events = tokio::task::spawn_blocking(move || {
        let rtx = log.read()?;
        let head = log.head(&rtx)?;
        audit::list(&rtx, head, &query, |r, s| log.entry(r, s)).map_err(|e| ApiError::internal(&e))
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    Ok(Json(SecurityEvents { events }))
}
