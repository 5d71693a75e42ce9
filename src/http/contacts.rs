//! Contact routes: list, request, accept, reject, remove. Rules live in `chat::contacts`.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{ApiJson, RequireRole, Viewer};
use crate::chat::Actor;
use crate::chat::contacts::{self, Contacts};
use crate::state::AppState;
use crate::store::ContactState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactRequest {
    pub username: String,
}

/// Where the pair stands afterwards, from my side.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ContactOutcome {
    pub username: String,
    pub state: ContactState,
}

/// My contacts, and requests to and from me.
#[utoipa::path(get, path = "/api/v1/contacts", tag = "contacts", responses((status = 200, body = Contacts)))]
pub async fn list(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
) -> Result<Json<Contacts>, ApiError> {
    Ok(Json(contacts::list(
        state.log(),
        &Actor::of(&me.user).user,
    )?))
}

/// Sends a contact request (accepts theirs if they asked first).
#[utoipa::path(post, path = "/api/v1/contacts/requests", tag = "contacts",
    request_body = ContactRequest, responses((status = 200, body = ContactOutcome)))]
pub async fn request(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    ApiJson(req): ApiJson<ContactRequest>,
) -> Result<Json<ContactOutcome>, ApiError> {
    let s = contacts::request(state.log(), &Actor::of(&me.user), &req.username).await?;
    Ok(Json(ContactOutcome {
        username: crate::users::key(&req.username),
        state: s,
    }))
}

/// Accepts a pending request from `username`.
#[utoipa::path(post, path = "/api/v1/contacts/requests/{username}/accept", tag = "contacts",
    params(("username" = String, Path)), responses((status = 200, body = ContactOutcome)))]
pub async fn accept(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Path(username): Path<String>,
) -> Result<Json<ContactOutcome>, ApiError> {
    let s = contacts::accept(state.log(), &Actor::of(&me.user), &username).await?;
    Ok(Json(ContactOutcome {
        username: crate::users::key(&username),
        state: s,
    }))
}

/// Rejects a pending request from `username`.
#[utoipa::path(post, path = "/api/v1/contacts/requests/{username}/reject", tag = "contacts",
    params(("username" = String, Path)), responses((status = 200, body = ContactOutcome)))]
pub async fn reject(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Path(username): Path<String>,
) -> Result<Json<ContactOutcome>, ApiError> {
    let s = contacts::reject(state.log(), &Actor::of(&me.user), &username).await?;
    Ok(Json(ContactOutcome {
        username: crate::users::key(&username),
        state: s,
    }))
}

/// Removes a contact (or withdraws my request); hides our direct conversation for me.
#[utoipa::path(delete, path = "/api/v1/contacts/{username}", tag = "contacts",
    params(("username" = String, Path)), responses((status = 200, body = ContactOutcome)))]
pub async fn remove(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Path(username): Path<String>,
) -> Result<Json<ContactOutcome>, ApiError> {
    let s = contacts::remove(state.log(), &Actor::of(&me.user), &username).await?;
    Ok(Json(ContactOutcome {
        username: crate::users::key(&username),
        state: s,
    }))
}
