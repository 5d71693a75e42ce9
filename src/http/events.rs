//! Event ingest for devices: one event or a batch, acknowledged with seqs only after the
//! durable commit. A full writer queue answers 503 with Retry-After.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{ApiJson, DeviceAuth, Operator, RequireRole, Viewer};
use crate::events::{self, EventIn, EventWire, StoredEvent};
use crate::log::Author;
use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Published {
    pub seq: u64,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    #[schema(value_type = Vec<EventIn>)]
    pub events: Vec<EventWire>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PublishedBatch {
    pub seqs: Vec<u64>,
}

#[utoipa::path(post, path = "/api/v1/events", tag = "events", request_body = EventIn, responses((status = 201, body = Published), (status = 503, body = super::error::ErrorResponse, description = "the write queue is full; retry after Retry-After")))]
pub async fn publish_one(
    State(state): State<AppState>,
    DeviceAuth(device): DeviceAuth,
    ApiJson(event): ApiJson<EventWire>,
) -> Result<(StatusCode, Json<Published>), ApiError> {
    let event = event.into_event()?;
    let by = Author::device(&device.name);
    let stream = events::stream_of(&device.name);
    let limits = &state.config().events;
    let seqs = events::publish(state.log(), limits, &by, &stream, vec![event]).await?;
    let seq = seqs.first().copied().unwrap_or_default();
    Ok((StatusCode::CREATED, Json(Published { seq })))
}

#[utoipa::path(post, path = "/api/v1/events/batch", tag = "events", request_body = EventBatch, responses((status = 201, body = PublishedBatch)))]
pub async fn publish_batch(
    State(state): State<AppState>,
    DeviceAuth(device): DeviceAuth,
    ApiJson(batch): ApiJson<EventBatch>,
) -> Result<(StatusCode, Json<PublishedBatch>), ApiError> {
    let by = Author::device(&device.name);
    let stream = events::stream_of(&device.name);
    let limits = &state.config().events;
    let events = events::from_wire(batch.events)?;
    let seqs = events::publish(state.log(), limits, &by, &stream, events).await?;
    Ok((StatusCode::CREATED, Json(PublishedBatch { seqs })))
}

/// An operator records an event by hand (a field reading, an observation).
#[utoipa::path(post, path = "/api/v1/events/manual", tag = "events", request_body = EventIn, responses((status = 201, body = Published)))]
pub async fn publish_manual(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Operator>,
    ApiJson(event): ApiJson<EventWire>,
) -> Result<(StatusCode, Json<Published>), ApiError> {
    let event = event.into_event()?;
    let by = Author::User(crate::users::key(&me.user.username));
    let seqs = events::publish(
        state.log(),
        &state.config().events,
        &by,
        events::MANUAL_STREAM,
        vec![event],
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(Published {
            seq: seqs.first().copied().unwrap_or_default(),
        }),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only events with a seq above this.
    #[serde(default)]
    pub after: u64,
    /// Only events with a seq below this.
    pub before: Option<u64>,
    /// `asc` (oldest first, the default) or `desc` (newest first).
    pub order: Option<Order>,
    /// Only events from this source.
    pub source: Option<String>,
    /// Only events of this type.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Only events logged at or after this time (UTC µs).
    pub since_us: Option<i64>,
    /// Only events logged at or before this time (UTC µs).
    pub until_us: Option<i64>,
    /// 1-500, default 100.
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    Asc,
    Desc,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EventList {
    pub events: Vec<StoredEvent>,
    /// Present when the scan stopped at its bound (20,000 index rows) before `limit` events
    /// matched: ask again with `after` (or, newest first, `before`) set to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// Events through the event indexes, oldest first unless `order=desc`; any signed-in role may
/// read them.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(ListQuery), responses((status = 200, body = EventList)))]
pub async fn list(
    State(state): State<AppState>,
    _me: RequireRole<Viewer>,
    Query(q): Query<ListQuery>,
) -> Result<Json<EventList>, ApiError> {
    let query = events::Query {
        after: q.after,
        before: q.before,
        newest_first: q.order == Some(Order::Desc),
        source: q.source,
        event_type: q.event_type,
        since_us: q.since_us,
        until_us: q.until_us,
        limit: q.limit.unwrap_or(100).clamp(1, 500),
    };
    let page = events::list(state.log(), &query).map_err(|e| match e {
        events::ListError::Store(s) => ApiError::from(s),
        events::ListError::Submit(s) => ApiError::from(s),
        other => ApiError::internal(&other),
    })?;
    Ok(Json(EventList {
        events: page.events,
        next: page.next,
    }))
}
