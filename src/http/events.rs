//! Event ingest for devices: one event or a batch, acknowledged with seqs only after the
//! durable commit. A full writer queue answers 503 with Retry-After.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::extract::{ApiJson, DeviceAuth};
use crate::error::ApiError;
use crate::events::{self, EventIn};
use crate::state::AppState;

#[derive(Serialize)]
pub struct Published {
    pub seq: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    pub events: Vec<EventIn>,
}

#[derive(Serialize)]
pub struct PublishedBatch {
    pub seqs: Vec<u64>,
}

pub async fn publish_one(
    State(state): State<AppState>,
    DeviceAuth(device): DeviceAuth,
    ApiJson(event): ApiJson<EventIn>,
) -> Result<(StatusCode, Json<Published>), ApiError> {
    let core = state.core();
    let mut limits = core.events_limits();
    limits.max_batch = 1;
    let seqs = events::publish(&core.sequencer, &device.name, vec![event], &limits).await?;
    let seq = seqs.first().copied().unwrap_or_default();
    Ok((StatusCode::CREATED, Json(Published { seq })))
}

pub async fn publish_batch(
    State(state): State<AppState>,
    DeviceAuth(device): DeviceAuth,
    ApiJson(batch): ApiJson<EventBatch>,
) -> Result<(StatusCode, Json<PublishedBatch>), ApiError> {
    let core = state.core();
    let seqs = events::publish(
        &core.sequencer,
        &device.name,
        batch.events,
        &core.events_limits(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(PublishedBatch { seqs })))
}
