//! Conversation routes: list mine, open a direct conversation, create groups and channels, browse
//! channels, members (add, remove, join, leave) and renaming. Rules live in `chat::conversations`.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{ApiJson, RequireRole, Viewer};
use crate::chat::conversations::{self, ChannelInfo, ConvDetail, ConvSummary};
use crate::chat::{Actor, validate_conv_id};
use crate::state::AppState;
use crate::store::ConvKind;

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ConvList {
    pub conversations: Vec<ConvSummary>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ChannelList {
    pub channels: Vec<ChannelInfo>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConversation {
    /// `group` or `channel`.
    pub kind: ConvKind,
    pub name: String,
    /// Usernames to invite (groups only).
    #[serde(default)]
    pub members: Vec<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewName {
    pub name: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMembers {
    pub users: Vec<String>,
}

fn detail(state: &AppState, actor: &Actor, id: &str) -> Result<Json<ConvDetail>, ApiError> {
    Ok(Json(conversations::get(state.log(), actor, id)?))
}

/// My conversations, most recently active first, with unread and mention counts.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "conversations",
    responses((status = 200, body = ConvList)))]
pub async fn list(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
) -> Result<Json<ConvList>, ApiError> {
    let conversations = conversations::list_mine(state.log(), &Actor::of(&me.user).user)?;
    Ok(Json(ConvList { conversations }))
}

/// Opens the direct conversation with a user (made on first use; one per pair).
#[utoipa::path(post, path = "/api/v1/conversations/direct/{username}", tag = "conversations",
    params(("username" = String, Path)),
    responses((status = 200, body = ConvDetail), (status = 403, description = "not a contact (direct_messages = contacts)")))]
pub async fn open_direct(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Path(username): Path<String>,
) -> Result<Json<ConvDetail>, ApiError> {
    let actor = Actor::of(&me.user);
    let (conv, _) =
        conversations::open_direct(state.log(), &state.config().chat, &actor, &username).await?;
    detail(&state, &actor, &conv.id)
}

/// Creates a group (owner invites) or a channel (anyone may join).
#[utoipa::path(post, path = "/api/v1/conversations", tag = "conversations",
    request_body = NewConversation, responses((status = 201, body = ConvDetail)))]
pub async fn create(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    ApiJson(req): ApiJson<NewConversation>,
) -> Result<(axum::http::StatusCode, Json<ConvDetail>), ApiError> {
    let actor = Actor::of(&me.user);
    let conv = conversations::create(
        state.log(),
        &state.config().chat,
        &actor,
        req.kind,
        &req.name,
        req.members,
    )
    .await?;
    Ok((
        axum::http::StatusCode::CREATED,
        detail(&state, &actor, &conv.id)?,
    ))
}

/// Every channel of the site, with whether I am in it.
#[utoipa::path(get, path = "/api/v1/channels", tag = "conversations",
    responses((status = 200, body = ChannelList)))]
pub async fn channels(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
) -> Result<Json<ChannelList>, ApiError> {
    let channels = conversations::channels(state.log(), &Actor::of(&me.user).user)?;
    Ok(Json(ChannelList { channels }))
}

/// One conversation with its members and their read positions ("seen by").
#[utoipa::path(get, path = "/api/v1/conversations/{id}", tag = "conversations",
    params(("id" = String, Path)), responses((status = 200, body = ConvDetail), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Path(id): Path<String>,
) -> Result<Json<ConvDetail>, ApiError> {
    validate_conv_id(&id)?;
    detail(&state, &Actor::of(&me.user), &id)
}

/// Renames a group or channel (its owner or an admin).
#[utoipa::path(put, path = "/api/v1/conversations/{id}/name", tag = "conversations",
    params(("id" = String, Path)), request_body = NewName, responses((status = 200, body = ConvDetail)))]
pub async fn rename(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<NewName>,
) -> Result<Json<ConvDetail>, ApiError> {
    validate_conv_id(&id)?;
    let actor = Actor::of(&me.user);
    conversations::rename(state.log(), &actor, &id, &req.name).await?;
    detail(&state, &actor, &id)
}

/// Adds members: to a group by its owner, to a channel by any member.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/members", tag = "conversations",
    params(("id" = String, Path)), request_body = NewMembers, responses((status = 200, body = ConvDetail)))]
pub async fn add_members(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<NewMembers>,
) -> Result<Json<ConvDetail>, ApiError> {
    validate_conv_id(&id)?;
    let actor = Actor::of(&me.user);
    conversations::add_members(state.log(), &state.config().chat, &actor, &id, req.users).await?;
    detail(&state, &actor, &id)
}

/// Removes a member (the owner or an admin; anyone may remove themself). Delivery stops at once.
#[utoipa::path(delete, path = "/api/v1/conversations/{id}/members/{username}", tag = "conversations",
    params(("id" = String, Path), ("username" = String, Path)), responses((status = 204)))]
pub async fn remove_member(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Path((id, username)): Path<(String, String)>,
) -> Result<axum::http::StatusCode, ApiError> {
    validate_conv_id(&id)?;
    conversations::remove_member(state.log(), &Actor::of(&me.user), &id, &username).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Joins a channel.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/join", tag = "conversations",
    params(("id" = String, Path)), responses((status = 200, body = ConvDetail)))]
pub async fn join(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Path(id): Path<String>,
) -> Result<Json<ConvDetail>, ApiError> {
    validate_conv_id(&id)?;
    let actor = Actor::of(&me.user);
    conversations::join(state.log(), &state.config().chat, &actor, &id).await?;
    detail(&state, &actor, &id)
}

/// Leaves a group or channel; on a direct conversation, hides it.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/leave", tag = "conversations",
    params(("id" = String, Path)), responses((status = 204)))]
pub async fn leave(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Path(id): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    validate_conv_id(&id)?;
    let actor = Actor::of(&me.user);
    let user = actor.user.clone();
    conversations::remove_member(state.log(), &actor, &id, &user).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
