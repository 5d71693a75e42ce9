//! ntfy's clear by sequence id on the publish side: `DELETE /ntfy/<topic>/<sequence_id>` and
//! `PUT|POST /ntfy/<topic>/<sequence_id>/clear` store an event that clears that alarm.

use axum::Json;
use axum::extract::{Path, State};

use super::error::ApiError;
use super::ingest::{IngestDevice, NtfyAnswer, publish, settle};
use crate::events::Accepted;
use crate::ingest::ntfy_clear::clear_event;
use crate::state::AppState;

async fn clear(
    state: &AppState,
    device: &str,
    topic: String,
    sid: String,
    deleted: bool,
) -> Result<(Json<NtfyAnswer>, usize), ApiError> {
    let keyed = clear_event(&topic, &sid, deleted)?;
    let message = keyed.event.message.clone();
    let (accepted, stored) = publish(state, device, vec![keyed]).await?;
    let a = accepted.first().copied().unwrap_or(Accepted {
        seq: 0,
        duplicate: false,
    });
    let answer = NtfyAnswer {
        id: a.seq.to_string(),
        time: state.log().clock().now_us().div_euclid(1_000_000),
        event: if deleted {
            "message_delete"
        } else {
            "message_clear"
        },
        topic,
        message,
        title: None,
        tags: Vec::new(),
        priority: None,
        sequence_id: Some(sid),
        seq: a.seq,
        duplicate: a.duplicate,
    };
    Ok((Json(answer), stored))
}

/// ntfy's delete by sequence id: clears the alarm `(topic, sequence id)`.
#[utoipa::path(delete, path = "/ntfy/{topic}/{sequence_id}", tag = "ingest",
    params(("topic" = String, Path), ("sequence_id" = String, Path)),
    responses((status = 200, body = NtfyAnswer)))]
pub async fn delete(
    State(state): State<AppState>,
    IngestDevice(device): IngestDevice,
    Path((topic, sid)): Path<(String, String)>,
) -> Result<Json<NtfyAnswer>, ApiError> {
    let outcome = clear(&state, &device.name, topic, sid, true).await;
    settle(&state, &device.name, outcome)
}

/// ntfy's clear by sequence id: clears the alarm `(topic, sequence id)`.
#[utoipa::path(method(put, post), path = "/ntfy/{topic}/{sequence_id}/clear", tag = "ingest",
    params(("topic" = String, Path), ("sequence_id" = String, Path)),
    responses((status = 200, body = NtfyAnswer)))]
pub async fn clear_put(
    State(state): State<AppState>,
    IngestDevice(device): IngestDevice,
    Path((topic, sid)): Path<(String, String)>,
) -> Result<Json<NtfyAnswer>, ApiError> {
    let outcome = clear(&state, &device.name, topic, sid, false).await;
    settle(&state, &device.name, outcome)
}
