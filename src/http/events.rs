//! Event ingest for devices: one event or a batch, acknowledged with seqs only after the
//! durable commit. A full writer queue answers 503 with Retry-After.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::extract::{ApiJson, DeviceAuth, Operator, RequireRole, Viewer};
use crate::error::ApiError;
use crate::events::{self, EventIn, EventWire, StoredEvent};
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

#[utoipa::path(post, path = "/api/v1/events", tag = "events", request_body = EventIn, responses((status = 201, body = Published), (status = 503, body = crate::error::ErrorResponse, description = "the write queue is full; retry after Retry-After")))]
pub async fn publish_one(
    State(state): State<AppState>,
    DeviceAuth(device): DeviceAuth,
    ApiJson(event): ApiJson<EventWire>,
) -> Result<(StatusCode, Json<Published>), ApiError> {
    let event = event.into_event()?;
    let core = state.core();
    let limits = core.events_limits();
    let by = format!("device:{}", device.name);
    let stream = events::stream_of(&device.name);
    let seqs = events::publish(&core.sequencer, &by, &stream, vec![event], &limits).await?;
    let seq = seqs.first().copied().unwrap_or_default();
    Ok((StatusCode::CREATED, Json(Published { seq })))
}

#[utoipa::path(post, path = "/api/v1/events/batch", tag = "events", request_body = EventBatch, responses((status = 201, body = PublishedBatch)))]
pub async fn publish_batch(
    State(state): State<AppState>,
    DeviceAuth(device): DeviceAuth,
    ApiJson(batch): ApiJson<EventBatch>,
) -> Result<(StatusCode, Json<PublishedBatch>), ApiError> {
    let core = state.core();
    let by = format!("device:{}", device.name);
    let stream = events::stream_of(&device.name);
    let limits = core.events_limits();
    let events = events::from_wire(batch.events)?;
    let seqs = events::publish(&core.sequencer, &by, &stream, events, &limits).await?;
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
    let core = state.core();
    let limits = core.events_limits();
    let by = format!("user:{}", crate::users::key(&me.user.username));
    let seqs = events::publish(
        &core.sequencer,
        &by,
        events::MANUAL_STREAM,
        vec![event],
        &limits,
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
    #[serde(default)]
    pub after: u64,
    pub limit: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EventList {
    pub events: Vec<StoredEvent>,
}

/// Events after a seq, oldest first; any signed-in role may read them.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(ListQuery), responses((status = 200, body = EventList)))]
pub async fn list(
    State(state): State<AppState>,
    _me: RequireRole<Viewer>,
    Query(q): Query<ListQuery>,
) -> Result<Json<EventList>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let events = events::list(state.core(), q.after, limit)?;
    Ok(Json(EventList { events }))
}
