//! Event ingest for devices: one event or a batch, acknowledged with seqs only after the
//! durable commit. A full writer queue answers 503 with Retry-After.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use axum::http::HeaderMap;

use super::error::ApiError;
use super::extract::{ApiJson, DeviceAuth, Operator, RequireRole, Viewer};
use super::ingest;
use crate::events::{self, Accepted, EventIn, EventWire, IdemKey, Keyed, StoredEvent};
use crate::log::Author;
use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Published {
    pub seq: u64,
    /// True when the idempotency key had already been accepted (the answer is then 200 and
    /// `seq` is the first one).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
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
    /// Per event, whether it had been stored before under its key; absent when none had.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<Vec<bool>>,
}

/// The `Idempotency-Key` header, if any.
fn header_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => v.to_str().map(|k| Some(k.to_string())).map_err(|_| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                "an idempotency key is 1-256 printable ASCII characters",
            )
        }),
    }
}

/// The event's key: its `event_id`, else the header's (with `#<i>` per event in a batch).
fn keyed(
    event: EventIn,
    event_id: Option<String>,
    header: Option<&str>,
    index: Option<usize>,
) -> Result<Keyed, ApiError> {
    let key = match (event_id, header, index) {
        (Some(id), _, _) => Some(IdemKey::client("native", &id)?),
        (None, Some(h), None) => Some(IdemKey::client("native", h)?),
        (None, Some(h), Some(i)) => Some(IdemKey::client("native", &format!("{h}#{i}"))?),
        (None, None, _) => None,
    };
    Ok(Keyed { event, key })
}

#[utoipa::path(post, path = "/api/v1/events", tag = "events", request_body = EventIn,
    params(("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key is stored once")),
    responses((status = 201, body = Published), (status = 200, body = Published, description = "a duplicate of an earlier key"),
        (status = 409, body = super::error::ErrorResponse, description = "idempotency_key_reused"),
        (status = 429, body = super::error::ErrorResponse, description = "past the device's rate; retry after Retry-After"),
        (status = 503, body = super::error::ErrorResponse, description = "the write queue is full; retry after Retry-After")))]
pub async fn publish_one(
    State(state): State<AppState>,
    DeviceAuth(device): DeviceAuth,
    headers: HeaderMap,
    body: Result<ApiJson<EventWire>, ApiError>,
) -> Result<(StatusCode, Json<Published>), ApiError> {
    let outcome = async {
        let ApiJson(wire) = body?;
        let (event, id) = wire.into_keyed()?;
        let item = keyed(event, id, header_key(&headers)?.as_deref(), None)?;
        let (accepted, stored) = ingest::publish(&state, &device.name, vec![item]).await?;
        let a = accepted.first().copied().unwrap_or(Accepted {
            seq: 0,
            duplicate: false,
        });
        let status = if a.duplicate {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        let published = Published {
            seq: a.seq,
            duplicate: a.duplicate,
        };
        Ok(((status, Json(published)), stored))
    }
    .await;
    ingest::settle(&state, &device.name, outcome)
}

#[utoipa::path(post, path = "/api/v1/events/batch", tag = "events", request_body = EventBatch,
    params(("Idempotency-Key" = Option<String>, Header, description = "keys event i as `<key>#<i>` unless it has an event_id")),
    responses((status = 201, body = PublishedBatch), (status = 200, body = PublishedBatch, description = "every event was a duplicate")))]
pub async fn publish_batch(
    State(state): State<AppState>,
    DeviceAuth(device): DeviceAuth,
    headers: HeaderMap,
    body: Result<ApiJson<EventBatch>, ApiError>,
) -> Result<(StatusCode, Json<PublishedBatch>), ApiError> {
    let outcome = async {
        let ApiJson(batch) = body?;
        let header = header_key(&headers)?;
        let mut items = Vec::with_capacity(batch.events.len());
        for (i, wire) in batch.events.into_iter().enumerate() {
            let (event, id) = wire.into_keyed().map_err(|mut r| {
                r.message = format!("events[{i}]: {}", r.message);
                r
            })?;
            items.push(keyed(event, id, header.as_deref(), Some(i))?);
        }
        let (accepted, stored) = ingest::publish(&state, &device.name, items).await?;
        let any_dup = accepted.iter().any(|a| a.duplicate);
        let status = if stored == 0 {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        let answer = PublishedBatch {
            seqs: accepted.iter().map(|a| a.seq).collect(),
            duplicate: any_dup.then(|| accepted.iter().map(|a| a.duplicate).collect()),
        };
        Ok(((status, Json(answer)), stored))
    }
    .await;
    ingest::settle(&state, &device.name, outcome)
}

/// An operator records an event by hand (a field reading, an observation). `Idempotency-Key` or
/// `event_id` make a retry safe as for devices, keyed per user; no device rate limit applies.
#[utoipa::path(post, path = "/api/v1/events/manual", tag = "events", request_body = EventIn, responses((status = 201, body = Published), (status = 200, body = Published, description = "a duplicate of an earlier key")))]
pub async fn publish_manual(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Operator>,
    headers: HeaderMap,
    ApiJson(event): ApiJson<EventWire>,
) -> Result<(StatusCode, Json<Published>), ApiError> {
    let (event, id) = event.into_keyed()?;
    let item = keyed(event, id, header_key(&headers)?.as_deref(), None)?;
    let by = Author::User(crate::users::key(&me.user.username));
    let accepted = events::publish_keyed(
        state.log(),
        &state.config().events,
        &by,
        events::MANUAL_STREAM,
        vec![item],
    )
    .await?;
    let a = accepted.first().copied().unwrap_or(Accepted {
        seq: 0,
        duplicate: false,
    });
    let status = if a.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(Published {
            seq: a.seq,
            duplicate: a.duplicate,
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
