//! Thin handlers for the ingest adapters (ntfy publish, Alertmanager and Grafana webhooks) and
//! the gate every device publish passes: rate limit (429 + Retry-After), then statistics and
//! per-device refusal counts. Parsing and mapping live in `crate::ingest`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::Serialize;

use super::error::ApiError;
use super::extract::DeviceAuth;
use crate::devices;
use crate::events::{self, Accepted, Keyed};
use crate::ingest::alerts::{self, Sender};
use crate::ingest::{GRAFANA_SIGNATURE_HEADER, ntfy, signature};
use crate::log::Author;
use crate::state::AppState;
use crate::store::DeviceRow;

/// A device by its token as Bearer (through [`DeviceAuth`]) or as the password of HTTP Basic
/// with any user name, as ntfy clients send it.
pub struct IngestDevice(pub DeviceRow);

impl FromRequestParts<AppState> for IngestDevice {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(token) = basic_password(&parts.headers) {
            return match devices::authenticate(state.log(), state.device_auth(), &token)? {
                Some(d) => Ok(Self(d)),
                None => Err(ApiError::unauthorized("unknown or revoked device token")),
            };
        }
        DeviceAuth::from_request_parts(parts, state)
            .await
            .map(|DeviceAuth(d)| Self(d))
    }
}

fn basic_password(headers: &HeaderMap) -> Option<String> {
    use base64::Engine;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (_, password) = text.split_once(':')?;
    Some(password.to_string())
}

/// Takes `events` from the device's token bucket: past its rate, `429 rate_limited`.
pub fn admit(state: &AppState, device: &str, events: usize) -> Result<(), ApiError> {
    state.ingest().admit(device, events).map_err(|l| ApiError {
        retry_after_secs: Some(l.retry_after_secs),
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "this device publishes faster than its limit; retry after the indicated delay",
        )
    })
}

/// Records the outcome of one publish of `device`: stored events in the statistics, a refusal
/// (any code) in the statistics and in `plantwire_ingest_refused_total{device,code}`.
pub fn settle<T>(
    state: &AppState,
    device: &str,
    outcome: Result<(T, usize), ApiError>,
) -> Result<T, ApiError> {
    match outcome {
        Ok((v, stored)) => {
            // A duplicate is still a use: it moves `last_seen_us` but adds no events.
            state.ingest().published(device, stored);
            Ok(v)
        }
        Err(e) => {
            state.ingest().refused(device);
            state.metrics().ingest_refused(device, e.code);
            Err(e)
        }
    }
}

/// Publishes `items` for `device` (rate limit first) and returns the outcomes and how many
/// were newly stored.
pub async fn publish(
    state: &AppState,
    device: &str,
    items: Vec<Keyed>,
) -> Result<(Vec<Accepted>, usize), ApiError> {
    admit(state, device, items.len())?;
    let by = Author::device(device);
    let stream = events::stream_of(device);
    let accepted =
        events::publish_keyed(state.log(), &state.config().events, &by, &stream, items).await?;
    let stored = accepted.iter().filter(|a| !a.duplicate).count();
    Ok((accepted, stored))
}

fn bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the request body is larger than the server accepts",
            )
        } else {
            ApiError::bad_request("bad_body", "the request body could not be read")
        }
    })
}

/// ntfy's answer to a publish, plus our `seq` and `duplicate`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NtfyAnswer {
    /// The message id (the seq, as text).
    pub id: String,
    /// Unix seconds.
    pub time: i64,
    /// Always `message`.
    pub event: &'static str,
    pub topic: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence_id: Option<String>,
    pub seq: u64,
    /// True when the idempotency key had already been accepted: nothing new was stored.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

fn params(headers: &HeaderMap, query: Vec<(String, String)>) -> ntfy::Params {
    let mut p = ntfy::Params::default();
    for (name, value) in headers {
        // Credentials never enter the parameters (nor anything that could print them).
        if name == header::AUTHORIZATION || name == header::COOKIE {
            continue;
        }
        if let Ok(v) = value.to_str() {
            p.push(name.as_str(), v.to_string());
        }
    }
    for (k, v) in query {
        p.push(&k, v);
    }
    p
}

async fn ntfy_publish(
    state: &AppState,
    device: &str,
    parsed: Result<ntfy::Message, crate::error::Rejection>,
) -> Result<(Json<NtfyAnswer>, usize), ApiError> {
    let msg = parsed?;
    let keyed = msg.clone().into_keyed()?;
    let message = keyed.event.message.clone();
    let (accepted, stored) = publish(state, device, vec![keyed]).await?;
    let a = accepted.first().copied().unwrap_or(Accepted {
        seq: 0,
        duplicate: false,
    });
    let answer = NtfyAnswer {
        id: a.seq.to_string(),
        time: state.log().clock().now_us().div_euclid(1_000_000),
        event: "message",
        topic: msg.topic,
        message,
        title: msg.title,
        tags: msg.tags,
        priority: msg.priority,
        sequence_id: msg.sequence_id,
        seq: a.seq,
        duplicate: a.duplicate,
    };
    Ok((Json(answer), stored))
}

type QueryPairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

fn query_pairs(q: QueryPairs) -> Result<Vec<(String, String)>, ApiError> {
    q.map(|Query(p)| p)
        .map_err(|_| ApiError::bad_request("invalid_ntfy", "the query string is malformed"))
}

/// ntfy-compatible publish: the body is the message; title, priority, tags, sequence id from
/// ntfy's headers or query parameters. Answers 200 as ntfy does, also for a duplicate.
#[utoipa::path(method(put, post), path = "/ntfy/{topic}", tag = "ingest",
    params(("topic" = String, Path, description = "becomes the event's source")),
    request_body(content = String, content_type = "text/plain"),
    responses((status = 200, body = NtfyAnswer), (status = 429, body = super::error::ErrorResponse, description = "past the device's rate; retry after Retry-After")))]
pub async fn ntfy_topic(
    State(state): State<AppState>,
    IngestDevice(device): IngestDevice,
    Path(topic): Path<String>,
    query: QueryPairs,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<NtfyAnswer>, ApiError> {
    let outcome = async {
        let body = bytes(body)?;
        let p = params(&headers, query_pairs(query)?);
        ntfy_publish(&state, &device.name, ntfy::from_publish(&topic, &body, &p)).await
    }
    .await;
    settle(&state, &device.name, outcome)
}

/// ntfy's JSON publish: `{topic, message, title, tags, priority, …}` (any content type).
#[utoipa::path(post, path = "/ntfy", tag = "ingest",
    request_body(content = String, content_type = "application/json", description = "ntfy's JSON publish"),
    responses((status = 200, body = NtfyAnswer)))]
pub async fn ntfy_json(
    State(state): State<AppState>,
    IngestDevice(device): IngestDevice,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<NtfyAnswer>, ApiError> {
    let outcome = async {
        let body = bytes(body)?;
        let p = params(&headers, Vec::new());
        ntfy_publish(&state, &device.name, ntfy::from_json(&body, &p)).await
    }
    .await;
    settle(&state, &device.name, outcome)
}

/// What a webhook answers: one outcome per alert, in order.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookAnswer {
    pub seqs: Vec<u64>,
    /// Per alert: already stored under its key (fingerprint, startsAt, status).
    pub duplicate: Vec<bool>,
}

async fn webhook(
    state: &AppState,
    device: &str,
    sender: Sender,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<((StatusCode, Json<WebhookAnswer>), usize), ApiError> {
    let body = bytes(body)?;
    if sender == Sender::Grafana {
        check_grafana_signature(state, headers, &body)?;
    }
    let items = alerts::parse(sender, &body)?;
    let (accepted, stored) = publish(state, device, items).await?;
    let status = if stored > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let answer = WebhookAnswer {
        seqs: accepted.iter().map(|a| a.seq).collect(),
        duplicate: accepted.iter().map(|a| a.duplicate).collect(),
    };
    Ok(((status, Json(answer)), stored))
}

fn check_grafana_signature(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    let Some(secret) = state.ingest().grafana_secret() else {
        return Ok(());
    };
    let cfg = &state.config().ingest.grafana;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let refuse = |e: signature::SignatureError| {
        ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", e.to_string())
    };
    let sig_name = cfg
        .signature_header
        .as_deref()
        .unwrap_or(GRAFANA_SIGNATURE_HEADER);
    let given = header(sig_name).ok_or(refuse(signature::SignatureError::Missing))?;
    let timestamp = match &cfg.timestamp_header {
        Some(name) => {
            Some(header(name).ok_or(refuse(signature::SignatureError::MissingTimestamp))?)
        }
        None => None,
    };
    signature::verify(secret, body, timestamp, given).map_err(refuse)
}

/// Prometheus Alertmanager's webhook (payload version 4): one event per alert. 201 when any
/// alert was new, 200 when every one had been stored before.
#[utoipa::path(post, path = "/api/v1/ingest/alertmanager", tag = "ingest",
    request_body(content = String, content_type = "application/json", description = "Alertmanager webhook payload v4"),
    responses((status = 201, body = WebhookAnswer), (status = 200, body = WebhookAnswer, description = "every alert was a duplicate")))]
pub async fn alertmanager(
    State(state): State<AppState>,
    IngestDevice(device): IngestDevice,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<WebhookAnswer>), ApiError> {
    let outcome = webhook(&state, &device.name, Sender::Alertmanager, &headers, body).await;
    settle(&state, &device.name, outcome)
}

/// Grafana alerting's webhook contact point; its HMAC signature is checked when
/// `[ingest.grafana]` has a secret (401 `bad_signature`).
#[utoipa::path(post, path = "/api/v1/ingest/grafana", tag = "ingest",
    request_body(content = String, content_type = "application/json", description = "Grafana webhook payload"),
    responses((status = 201, body = WebhookAnswer), (status = 200, body = WebhookAnswer, description = "every alert was a duplicate"), (status = 401, body = super::error::ErrorResponse)))]
pub async fn grafana(
    State(state): State<AppState>,
    IngestDevice(device): IngestDevice,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<WebhookAnswer>), ApiError> {
    let outcome = webhook(&state, &device.name, Sender::Grafana, &headers, body).await;
    settle(&state, &device.name, outcome)
}
