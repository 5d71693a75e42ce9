//! Event ingest for devices: one event or a batch, acknowledged with seqs only after the
//! durable commit. A full writer queue answers 503 with Retry-After.

use axum::Json;
use axum::extract::rejection::QueryRejection;
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
    /// Minimum severity: `debug`, `info`, `notice`, `warning`, `error` or `critical`.
    pub severity: Option<String>,
    /// Only events this device published.
    pub device: Option<String>,
    /// Only events logged at or after this time: RFC 3339 or integer UTC µs.
    pub since: Option<String>,
    /// Only events logged at or before this time: RFC 3339 or integer UTC µs.
    pub until: Option<String>,
    /// Alias of `since` (integer µs or RFC 3339).
    pub since_us: Option<String>,
    /// Alias of `until` (integer µs or RFC 3339).
    pub until_us: Option<String>,
    /// 1-500, default 100.
    pub limit: Option<usize>,
    /// Export only: `csv` or `jsonl` (else from `Accept`).
    #[serde(default)]
    pub format: Option<String>,
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
    /// Present when more may follow (the page is full, or the scan stopped at its bound of
    /// 20,000 index rows): ask again with `after` (or, newest first, `before`) set to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

impl ListQuery {
    /// The domain query, every parameter checked: a bad one is `400` with a stable code.
    pub fn into_query(self) -> Result<events::Query, ApiError> {
        let min_severity = match self.severity.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) => Some(
                serde_json::from_value::<events::Severity>(serde_json::Value::from(
                    s.to_ascii_lowercase(),
                ))
                .map_err(|_| {
                    ApiError::bad_request(
                        "invalid_severity",
                        "severity must be debug, info, notice, warning, error or critical",
                    )
                })?,
            ),
        };
        let time = |name: &str, a: Option<String>, b: Option<String>| -> Result<_, ApiError> {
            if a.is_some() && b.is_some() {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("give {name} or {name}_us, not both"),
                ));
            }
            a.or(b)
                .map(|raw| events::parse_time(name, &raw))
                .transpose()
                .map_err(ApiError::from)
        };
        let since_us = time("since", self.since, self.since_us)?;
        let until_us = time("until", self.until, self.until_us)?;
        let empty = |v: Option<String>| v.filter(|s| !s.is_empty());
        Ok(events::Query {
            after: self.after,
            before: self.before,
            newest_first: self.order == Some(Order::Desc),
            source: empty(self.source),
            event_type: empty(self.event_type),
            min_severity,
            device: empty(self.device),
            since_us,
            until_us,
            limit: self.limit.unwrap_or(100).clamp(1, 500),
        })
    }
}

/// A query string that does not parse (an unknown parameter, a non-number seq) is `400
/// invalid_query`.
pub fn query_params(
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<events::Query, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    if q.format.is_some() {
        return Err(ApiError::bad_request(
            "invalid_query",
            "format is for /api/v1/events/export",
        ));
    }
    q.into_query()
}

/// Maps a listing failure to its answer.
pub fn list_error(e: events::ListError) -> ApiError {
    match e {
        events::ListError::Store(s) => ApiError::from(s),
        events::ListError::Submit(s) => ApiError::from(s),
        other => ApiError::internal(&other),
    }
}

/// Events through the event indexes, oldest first unless `order=desc`; any signed-in role may
/// read them.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(ListQuery), responses((status = 200, body = EventList), (status = 400, body = super::error::ErrorResponse)))]
pub async fn list(
    State(state): State<AppState>,
    _me: RequireRole<Viewer>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<EventList>, ApiError> {
    let query = query_params(q)?;
    let log = state.log().clone();
    let page = tokio::task::spawn_blocking(move || events::list(&log, &query))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(list_error)?;
    Ok(Json(EventList {
        events: page.events,
        next: page.next,
    }))
}
