//! Message routes: history pages, send (idempotent), edit, redact, reactions and read markers.
//! Rules live in `chat::messages`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{ApiJson, RequireRole, Viewer};
use crate::chat::messages::{self, History, Page, ReadMarker, SendMessage, Sent};
use crate::chat::{Actor, validate_conv_id};
use crate::state::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Messages with a smaller seq (newest of them first, returned oldest first).
    pub before: Option<u64>,
    /// Messages with a larger seq.
    pub after: Option<u64>,
    /// 1-200, default 50.
    pub limit: Option<usize>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditMessage {
    pub text: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reaction {
    pub emoji: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    pub seq: u64,
}

/// The seq of the entry a change was recorded as; `null` when nothing changed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Recorded {
    pub seq: Option<u64>,
}

/// A page of history: the latest edit of each message, redacted text hidden.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/messages", tag = "messages",
    params(("id" = String, Path), HistoryQuery), responses((status = 200, body = History)))]
pub async fn history(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<History>, ApiError> {
    validate_conv_id(&id)?;
    let page = Page {
        before: q.before,
        after: q.after,
        limit: q.limit,
    };
    Ok(Json(messages::history(
        state.log(),
        &Actor::of(&me.user).user,
        &id,
        page,
    )?))
}

/// Sends a message; answered after it is durable. A retried `key` returns the same seq.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", tag = "messages",
    params(("id" = String, Path)), request_body = SendMessage,
    responses((status = 201, body = Sent), (status = 200, body = Sent, description = "a retry of a key already used")))]
pub async fn send(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SendMessage>,
) -> Result<(StatusCode, Json<Sent>), ApiError> {
    validate_conv_id(&id)?;
    let sent = messages::send(
        state.log(),
        &state.config().chat,
        &Actor::of(&me.user),
        &id,
        req,
    )
    .await?;
    let status = if sent.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(sent)))
}

/// Edits one's own message.
#[utoipa::path(put, path = "/api/v1/conversations/{id}/messages/{seq}", tag = "messages",
    params(("id" = String, Path), ("seq" = u64, Path)), request_body = EditMessage,
    responses((status = 200, body = Recorded)))]
pub async fn edit(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Path((id, seq)): Path<(String, u64)>,
    ApiJson(req): ApiJson<EditMessage>,
) -> Result<Json<Recorded>, ApiError> {
    validate_conv_id(&id)?;
    let s = messages::edit(
        state.log(),
        &state.config().chat,
        &Actor::of(&me.user),
        &id,
        seq,
        &req.text,
    )
    .await?;
    Ok(Json(Recorded { seq: Some(s) }))
}

/// Deletes a message's content (its author or an admin); the log keeps the entry.
#[utoipa::path(delete, path = "/api/v1/conversations/{id}/messages/{seq}", tag = "messages",
    params(("id" = String, Path), ("seq" = u64, Path)), responses((status = 200, body = Recorded)))]
pub async fn redact(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Path((id, seq)): Path<(String, u64)>,
) -> Result<Json<Recorded>, ApiError> {
    validate_conv_id(&id)?;
    let s = messages::redact(state.log(), &Actor::of(&me.user), &id, seq).await?;
    Ok(Json(Recorded { seq: Some(s) }))
}

/// Adds my reaction to a message.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages/{seq}/reactions", tag = "messages",
    params(("id" = String, Path), ("seq" = u64, Path)), request_body = Reaction,
    responses((status = 200, body = Recorded)))]
pub async fn react(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Path((id, seq)): Path<(String, u64)>,
    ApiJson(req): ApiJson<Reaction>,
) -> Result<Json<Recorded>, ApiError> {
    validate_conv_id(&id)?;
    let s = messages::react(
        state.log(),
        &Actor::of(&me.user),
        &id,
        seq,
        &req.emoji,
        true,
    )
    .await?;
    Ok(Json(Recorded { seq: s }))
}

/// Removes my reaction from a message.
#[utoipa::path(delete, path = "/api/v1/conversations/{id}/messages/{seq}/reactions/{emoji}", tag = "messages",
    params(("id" = String, Path), ("seq" = u64, Path), ("emoji" = String, Path)),
    responses((status = 200, body = Recorded)))]
pub async fn unreact(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Path((id, seq, emoji)): Path<(String, u64, String)>,
) -> Result<Json<Recorded>, ApiError> {
    validate_conv_id(&id)?;
    let s = messages::react(state.log(), &Actor::of(&me.user), &id, seq, &emoji, false).await?;
    Ok(Json(Recorded { seq: s }))
}

/// Moves my read marker forward (other members see it as "seen by").
#[utoipa::path(post, path = "/api/v1/conversations/{id}/read", tag = "messages",
    params(("id" = String, Path)), request_body = ReadRequest, responses((status = 200, body = ReadMarker)))]
pub async fn read(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ReadRequest>,
) -> Result<Json<ReadMarker>, ApiError> {
    validate_conv_id(&id)?;
    Ok(Json(
        messages::mark_read(state.log(), &Actor::of(&me.user), &id, req.seq).await?,
    ))
}
