//! People directory for signed-in users (search, profile) and user administration for admins:
//! list, create, approve, disable, enable, role, one-time password reset.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Admin, ApiJson, RequireRole, Viewer};
use crate::error::Rejection;
use crate::log::Author;
use crate::state::AppState;
use crate::store::{Role, UserRow, UserStatus};
use crate::users;

/// What any signed-in user sees of another.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Profile {
    pub username: String,
    pub display_name: String,
    pub role: Role,
}

impl From<&UserRow> for Profile {
    fn from(u: &UserRow) -> Self {
        Self {
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            role: u.role,
        }
    }
}

/// What an admin sees.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AdminView {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub status: UserStatus,
    pub must_change_password: bool,
    pub created_at_us: i64,
    pub last_seen_us: Option<i64>,
}

impl From<&UserRow> for AdminView {
    fn from(u: &UserRow) -> Self {
        Self {
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            role: u.role,
            status: u.status,
            must_change_password: u.must_change_password,
            created_at_us: u.created_at_us,
            last_seen_us: u.last_seen_us,
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// A prefix of a username, a display name or a word of it (at most 64 characters); empty
    /// lists everyone active.
    #[serde(default)]
    pub q: String,
    /// Users per page, 1-100 (default 20; outside the range it is clamped).
    pub limit: Option<usize>,
    /// The cursor: the page continues after this username (the previous page's `next`).
    pub after: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Profiles {
    /// In username order.
    pub users: Vec<Profile>,
    /// When more users match: pass it as `after` for the next page.
    pub next: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(SearchQuery), responses((status = 200, body = Profiles)))]
pub async fn search(
    State(state): State<AppState>,
    _me: RequireRole<Viewer>,
    Query(q): Query<SearchQuery>,
) -> Result<Json<Profiles>, ApiError> {
    if q.q.chars().count() > 64 {
        return Err(ApiError::bad_request(
            "invalid_query",
            "q is at most 64 characters",
        ));
    }
    if q.after
        .as_ref()
        .is_some_and(|a| a.is_empty() || a.len() > 64)
    {
        return Err(ApiError::bad_request(
            "invalid_after",
            "after is a username of 1-64 bytes",
        ));
    }
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let mut found = users::search(state.log(), &q.q, q.after.as_deref(), limit + 1)?;
    let next = if found.len() > limit {
        found.truncate(limit);
        found.last().map(|u| u.username.clone())
    } else {
        None
    };
    Ok(Json(Profiles {
        users: found.iter().map(Profile::from).collect(),
        next,
    }))
}

#[utoipa::path(get, path = "/api/v1/users/{username}", tag = "users", params(("username" = String, Path)), responses((status = 200, body = Profile), (status = 404, body = super::error::ErrorResponse)))]
pub async fn profile(
    State(state): State<AppState>,
    _me: RequireRole<Viewer>,
    Path(username): Path<String>,
) -> Result<Json<Profile>, ApiError> {
    match users::get(state.log(), &username)? {
        Some(u) if u.status == UserStatus::Active => Ok(Json(Profile::from(&u))),
        _ => Err(ApiError::not_found()),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub status: Option<UserStatus>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AdminList {
    pub users: Vec<AdminView>,
}

#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin", params(ListQuery), responses((status = 200, body = AdminList)))]
pub async fn admin_list(
    State(state): State<AppState>,
    _admin: RequireRole<Admin>,
    Query(q): Query<ListQuery>,
) -> Result<Json<AdminList>, ApiError> {
    let all = users::list(state.log(), q.status)?;
    Ok(Json(AdminList {
        users: all.iter().map(AdminView::from).collect(),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub username: String,
    pub display_name: String,
    pub role: Role,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WithPassword {
    pub user: AdminView,
    /// Shown only now; it must be changed at first sign-in.
    pub one_time_password: String,
}

#[utoipa::path(post, path = "/api/v1/admin/users", tag = "admin", request_body = CreateUser, responses((status = 201, body = WithPassword)))]
pub async fn admin_create(
    State(state): State<AppState>,
    RequireRole(admin, _): RequireRole<Admin>,
    ApiJson(req): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<WithPassword>), ApiError> {
    let (otp, hash) = users::one_time_password(state.auth())
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let row = users::create(
        state.log(),
        users::NewUser {
            username: req.username,
            display_name: req.display_name,
            password_hash: hash,
            role: req.role,
            status: UserStatus::Active,
            must_change_password: true,
        },
        &by(&admin.user),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(WithPassword {
            user: AdminView::from(&row),
            one_time_password: otp,
        }),
    ))
}

fn by(u: &UserRow) -> Author {
    Author::User(users::key(&u.username))
}

fn not_self(admin: &UserRow, target: &str) -> Result<(), ApiError> {
    if users::key(&admin.username) == users::key(target) {
        return Err(Rejection::forbidden(
            "cannot_change_self",
            "you cannot do this to your own account",
        )
        .into());
    }
    Ok(())
}

async fn set_status(
    state: &AppState,
    admin: &UserRow,
    target: &str,
    s: UserStatus,
) -> Result<Json<AdminView>, ApiError> {
    let row = users::set_status(state.log(), target, s, &by(admin)).await?;
    Ok(Json(AdminView::from(&row)))
}

#[utoipa::path(post, path = "/api/v1/admin/users/{username}/approve", tag = "admin", params(("username" = String, Path)), responses((status = 200, body = AdminView)))]
pub async fn admin_approve(
    State(state): State<AppState>,
    RequireRole(admin, _): RequireRole<Admin>,
    Path(username): Path<String>,
) -> Result<Json<AdminView>, ApiError> {
    let current = users::get(state.log(), &username)?.ok_or_else(ApiError::not_found)?;
    if current.status != UserStatus::Pending {
        return Err(
            Rejection::conflict("not_pending", "this account is not waiting for approval").into(),
        );
    }
    set_status(&state, &admin.user, &username, UserStatus::Active).await
}

#[utoipa::path(post, path = "/api/v1/admin/users/{username}/disable", tag = "admin", params(("username" = String, Path)), responses((status = 200, body = AdminView)))]
pub async fn admin_disable(
    State(state): State<AppState>,
    RequireRole(admin, _): RequireRole<Admin>,
    Path(username): Path<String>,
) -> Result<Json<AdminView>, ApiError> {
    not_self(&admin.user, &username)?;
    set_status(&state, &admin.user, &username, UserStatus::Disabled).await
}

#[utoipa::path(post, path = "/api/v1/admin/users/{username}/enable", tag = "admin", params(("username" = String, Path)), responses((status = 200, body = AdminView)))]
pub async fn admin_enable(
    State(state): State<AppState>,
    RequireRole(admin, _): RequireRole<Admin>,
    Path(username): Path<String>,
) -> Result<Json<AdminView>, ApiError> {
    not_self(&admin.user, &username)?;
    set_status(&state, &admin.user, &username, UserStatus::Active).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    pub role: Role,
}

#[utoipa::path(put, path = "/api/v1/admin/users/{username}/role", tag = "admin", params(("username" = String, Path)), request_body = RoleChange, responses((status = 200, body = AdminView)))]
pub async fn admin_role(
    State(state): State<AppState>,
    RequireRole(admin, _): RequireRole<Admin>,
    Path(username): Path<String>,
    ApiJson(req): ApiJson<RoleChange>,
) -> Result<Json<AdminView>, ApiError> {
    not_self(&admin.user, &username)?;
    let row = users::set_role(state.log(), &username, req.role, &by(&admin.user)).await?;
    Ok(Json(AdminView::from(&row)))
}

#[utoipa::path(post, path = "/api/v1/admin/users/{username}/reset-password", tag = "admin", params(("username" = String, Path)), responses((status = 200, body = WithPassword)))]
pub async fn admin_reset_password(
    State(state): State<AppState>,
    RequireRole(admin, _): RequireRole<Admin>,
    Path(username): Path<String>,
) -> Result<Json<WithPassword>, ApiError> {
    not_self(&admin.user, &username)?;
    let otp = users::reset_password(state.log(), state.auth(), &username, &by(&admin.user)).await?;
    let row = users::get(state.log(), &username)?.ok_or_else(ApiError::not_found)?;
    Ok(Json(WithPassword {
        user: AdminView::from(&row),
        one_time_password: otp,
    }))
}
