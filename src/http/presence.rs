//! Presence route: online/away/offline and last seen of the people who share a conversation with
//! the caller (or a named subset of them).

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{RequireRole, Viewer};
use crate::chat::{Actor, PresenceStatus};
use crate::state::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PresenceQuery {
    /// Comma-separated usernames; default: everyone who shares a conversation with me.
    pub users: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserPresence {
    pub username: String,
    pub status: PresenceStatus,
    /// When their last connection closed (UTC µs), if ever.
    pub last_seen_us: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PresenceList {
    pub users: Vec<UserPresence>,
}

/// Presence of the people I share a conversation with.
#[utoipa::path(get, path = "/api/v1/presence", tag = "presence", params(PresenceQuery),
    responses((status = 200, body = PresenceList)))]
pub async fn list(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Query(q): Query<PresenceQuery>,
) -> Result<Json<PresenceList>, ApiError> {
    let me = Actor::of(&me.user).user;
    let mut peers = crate::chat::conversations::peers(state.log(), &me)?;
    let rtx = state.log().read()?;
    if let Some(list) = q.users {
        let wanted: BTreeSet<String> = list
            .split(',')
            .filter(|s| !s.is_empty())
            .take(1000)
            .map(crate::users::key)
            .collect();
        peers.retain(|p| wanted.contains(p));
    }
    let mut users = Vec::with_capacity(peers.len());
    for p in peers {
        let last_seen_us = rtx.user(&p)?.and_then(|u| u.last_seen_us);
        users.push(UserPresence {
            status: state.live().status(&p),
            username: p,
            last_seen_us,
        });
    }
    Ok(Json(PresenceList { users }))
}
