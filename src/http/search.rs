//! `GET /api/v1/search`: full-text search over what the caller may see; the parameters are
//! checked here, the work runs off the async threads in `search::search`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{RequireRole, Viewer};
use crate::chat::Actor;
use crate::search::{self, HitKind, Results};
use crate::state::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// Words (all must match) and prefixes written `pump*` (at least 3 letters); at most 256
    /// bytes and 8 terms. Case and accents as typed are folded to lower case.
    pub q: Option<String>,
    /// `message`, `event` or `alarm`.
    pub kind: Option<String>,
    /// Only messages of this conversation.
    pub conv: Option<String>,
    /// Only entries by this user or device, or events and alarms of this source.
    pub author: Option<String>,
    /// Only entries logged at or after this time: RFC 3339 or integer UTC µs.
    pub since: Option<String>,
    /// Only entries logged at or before this time: RFC 3339 or integer UTC µs.
    pub until: Option<String>,
    /// 1-100, default 20.
    pub limit: Option<usize>,
    /// The `next` of a previous answer: the page after it.
    pub before: Option<u64>,
}

fn into_query(p: SearchParams) -> Result<search::Query, ApiError> {
    let kind = match p.kind.as_deref().map(str::trim) {
        None | Some("") => None,
        Some("message") => Some(HitKind::Message),
        Some("event") => Some(HitKind::Event),
        Some("alarm") => Some(HitKind::Alarm),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_kind",
                "kind is message, event or alarm",
            ));
        }
    };
    let time = |name: &str, raw: Option<String>| -> Result<Option<i64>, ApiError> {
        raw.filter(|s| !s.trim().is_empty())
            .map(|r| crate::events::parse_time(name, &r))
            .transpose()
            .map_err(ApiError::from)
    };
    let empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    Ok(search::Query {
        q: p.q.unwrap_or_default(),
        kind,
        conv: empty(p.conv),
        author: empty(p.author),
        since_us: time("since", p.since)?,
        until_us: time("until", p.until)?,
        before: p.before,
        limit: p.limit,
    })
}

#[utoipa::path(get, path = "/api/v1/search", tag = "search", params(SearchParams),
    responses((status = 200, body = Results),
        (status = 400, body = super::error::ErrorResponse, description = "invalid_query, empty_query, query_too_long, too_many_terms, prefix_too_short, invalid_limit, invalid_kind, invalid_range, invalid_time")))]
pub async fn search(
    State(state): State<AppState>,
    me: RequireRole<Viewer>,
    q: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Json<Results>, ApiError> {
    let Query(params) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let query = into_query(params)?;
    query.check()?;
    let actor = Actor::of(&me.0.user);
    let viewer = crate::audience::Viewer {
        user: actor.user,
        role: actor.role,
    };
    let log = state.log().clone();
    // What was sent before the search is found: a short lag is indexed on the spot.
    if let Err(e) = search::catch_up(&log, search::CATCH_UP).await {
        tracing::warn!(error = %e, "search could not catch the index up; answering from it as it is");
    }
    let results = tokio::task::spawn_blocking(move || {
        let rtx = log.read()?;
        search::search(&log, &rtx, &viewer, &query)
    })
    .await
    .map_err(|e| ApiError::internal(&e))?;
    match results {
        Ok(r) => Ok(Json(r)),
        Err(search::SearchError::Rejected(r)) => Err(r.into()),
        Err(search::SearchError::Store(s)) => Err(s.into()),
        Err(other) => Err(ApiError::internal(&other)),
    }
}
