//! The subscribe side of ntfy for alarm topics: `GET /ntfy/<topic>/json` (newline-delimited
//! JSON), `/ntfy/<topic>/sse` (Server-Sent Events) and `/ntfy/<topic>/ws` (WebSocket, one JSON
//! event a text message), with `poll=1` and `since=`. Streams end when the server shuts down.
//! Users of any role by Bearer access token or HTTP Basic ([`NtfyUser`]); at most
//! [`MAX_PER_USER`] open each. A stream ends once its user is disabled or their password changes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde::Deserialize;

use super::error::ApiError;
use super::ntfy_auth::NtfyUser;
use crate::alarms::ntfy::{
    KEEPALIVE_SECS, MAX_BACKLOG, NtfyEvent, keepalive, message_of, open, parse_since, start_after,
    topic_floor,
};
use crate::log::{Follower, Log};
use crate::state::AppState;
use crate::store::Priority;

/// Most subscriptions one user may hold open at once.
pub const MAX_PER_USER: usize = 8;
/// Largest frame a subscriber may send (ntfy clients send none; pings and closes fit).
const WS_MAX_FRAME: usize = 4096;
/// Bytes tungstenite allocates up front for a subscriber's incoming frames; its default is
/// 128 KiB, held by every open subscription for frames that never come.
const WS_READ_BUFFER: usize = 1024;

type OpenCounts = Arc<Mutex<HashMap<String, usize>>>;

/// One open subscription of a user, counted in the server's `Sockets`; dropping it (the client
/// went away) frees the slot.
struct Slot {
    counts: OpenCounts,
    user: String,
}

impl Slot {
    fn take(counts: &OpenCounts, user: &str) -> Result<Self, ApiError> {
        let mut m = counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(user.to_string()).or_default();
        if *n >= MAX_PER_USER {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_subscriptions",
                format!("at most {MAX_PER_USER} open subscriptions per user"),
            ));
        }
        *n += 1;
        Ok(Self {
            counts: counts.clone(),
            user: user.to_string(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.user);
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct SubscribeQuery {
    #[serde(default)]
    poll: Option<String>,
    #[serde(default)]
    since: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Sse,
}

fn encode(format: Format, e: &NtfyEvent) -> Bytes {
    let json = serde_json::to_string(e).unwrap_or_default();
    Bytes::from(match format {
        Format::Json => format!("{json}\n"),
        Format::Sse if e.event == "message" => format!("id: {}\ndata: {json}\n\n", e.id),
        Format::Sse => format!("event: {}\ndata: {json}\n\n", e.event),
    })
}

struct Sub {
    log: Log,
    follower: Follower,
    topic: String,
    floor: Priority,
    format: Format,
    poll: bool,
    ready: VecDeque<Bytes>,
    keepalive: tokio::time::Interval,
    done: bool,
    closing: tokio_util::sync::CancellationToken,
    /// The user's key and the `auth_version` their credential was checked against.
    user: String,
    /// The alarms the user may see (HQ's alarms about a site need a grant on it).
    scope: crate::alarms::AlarmScope,
    auth_version: u64,
    _slot: Slot,
}

impl Sub {
    /// Whether the user is still active with the credential's `auth_version`; a read failure
    /// keeps the stream (it says nothing about the user).
    fn still_valid(&self) -> bool {
        match self.log.read().and_then(|r| r.user(&self.user)) {
            Ok(Some(u)) => {
                u.status == crate::store::UserStatus::Active && u.auth_version == self.auth_version
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "ntfy subscription: user check failed");
                true
            }
        }
    }

    fn push(&mut self, e: &crate::log::Entry) {
        if e.stream == crate::users::STREAM && !self.still_valid() {
            self.done = true;
            return;
        }
        self.scope.follow(&self.user, e);
        if let Some(m) = message_of(e, &self.topic, self.floor, &self.scope) {
            self.ready.push_back(encode(self.format, &m));
        }
    }

    /// The next chunk of the body, or `None` at the end (a poll is over, the log closed).
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(b) = self.ready.pop_front() {
                return Some(b);
            }
            if self.done {
                return None;
            }
            if self.poll {
                match self.follower.replay_batch() {
                    Ok(Some(batch)) => batch.iter().for_each(|e| self.push(e)),
                    Ok(None) => self.done = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "ntfy poll read failed");
                        self.done = true;
                    }
                }
                continue;
            }
            tokio::select! {
                () = self.closing.cancelled() => self.done = true,
                _ = self.keepalive.tick() => {
                    if !self.still_valid() {
                        self.done = true;
                        continue;
                    }
                    let k = keepalive(&self.topic, self.log.now_us());
                    self.ready.push_back(encode(self.format, &k));
                }
                r = self.follower.next() => match r {
                    Ok(e) => self.push(&e),
                    Err(e) => {
                        tracing::debug!(error = %e, "ntfy subscription ends");
                        self.done = true;
                    }
                },
            }
        }
    }
}

/// Checks the request and opens the follower: the subscription, `open` queued unless polling.
fn prepare(
    state: &AppState,
    me: &NtfyUser,
    topic: String,
    q: SubscribeQuery,
    format: Format,
) -> Result<Sub, ApiError> {
    let floor = topic_floor(&topic)?;
    let log = state.log().clone();
    let since = parse_since(q.since.as_deref(), log.now_us())?;
    let poll = matches!(q.poll.as_deref(), Some("1" | "true" | "yes"));
    let user = crate::users::key(&me.user.username);
    let slot = Slot::take(&state.sockets().ntfy_open, &user)?;
    let mut follower = log.follow(0)?;
    let head = follower.head();
    let scope = crate::alarms::AlarmScope::of(&log.read()?, &user, me.user.role)?;
    let seqs = match follower.snapshot() {
        Some(rtx) => {
            let after = start_after(rtx, since, head)?;
            rtx.alarm_seqs(after.saturating_add(1), head, MAX_BACKLOG)?
        }
        None => Vec::new(),
    };
    follower.only(seqs);
    let period = Duration::from_secs(KEEPALIVE_SECS);
    let mut sub = Sub {
        log: log.clone(),
        follower,
        topic: topic.clone(),
        floor,
        format,
        poll,
        ready: VecDeque::new(),
        keepalive: tokio::time::interval_at(tokio::time::Instant::now() + period, period),
        done: false,
        closing: state.sockets().closing.clone(),
        user,
        scope,
        auth_version: me.auth_version,
        _slot: slot,
    };
    if !poll {
        sub.ready
            .push_back(encode(format, &open(&topic, log.now_us())));
    }
    Ok(sub)
}

fn subscribe(
    state: &AppState,
    me: &NtfyUser,
    topic: String,
    q: SubscribeQuery,
    format: Format,
) -> Result<Response, ApiError> {
    let sub = prepare(state, me, topic, q, format)?;
    let body = Body::from_stream(stream::unfold(sub, |mut sub| async move {
        let chunk = sub.next().await?;
        Some((Ok::<_, std::io::Error>(chunk), sub))
    }));
    let content_type = match format {
        Format::Json => "application/x-ndjson; charset=utf-8",
        Format::Sse => "text/event-stream; charset=utf-8",
    };
    let mut res = body.into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(res)
}

/// ntfy's JSON stream of an alarm topic: `open`, then messages and `keepalive`s, one JSON
/// object a line; `poll=1` answers what `since` names and ends.
#[utoipa::path(get, path = "/ntfy/{topic}/json", tag = "alarms",
    params(("topic" = String, Path, description = "alarms or alarms-low|medium|high|critical"),
        ("poll" = Option<String>, Query), ("since" = Option<String>, Query, description = "all, a duration, a Unix time or a message id")),
    responses((status = 200, content_type = "application/x-ndjson", body = String),
        (status = 404, description = "no_such_topic"), (status = 429, description = "too_many_subscriptions")))]
pub async fn json(
    State(state): State<AppState>,
    me: NtfyUser,
    Path(topic): Path<String>,
    Query(q): Query<SubscribeQuery>,
) -> Result<Response, ApiError> {
    subscribe(&state, &me, topic, q, Format::Json)
}

/// ntfy's Server-Sent Events stream of an alarm topic (same events as the JSON stream).
#[utoipa::path(get, path = "/ntfy/{topic}/sse", tag = "alarms",
    params(("topic" = String, Path), ("poll" = Option<String>, Query), ("since" = Option<String>, Query)),
    responses((status = 200, content_type = "text/event-stream", body = String)))]
pub async fn sse(
    State(state): State<AppState>,
    me: NtfyUser,
    Path(topic): Path<String>,
    Query(q): Query<SubscribeQuery>,
) -> Result<Response, ApiError> {
    subscribe(&state, &me, topic, q, Format::Sse)
}

/// ntfy's WebSocket of an alarm topic: each event (`open`, `keepalive`, `message`) one JSON
/// text message.
#[utoipa::path(get, path = "/ntfy/{topic}/ws", tag = "alarms",
    params(("topic" = String, Path), ("since" = Option<String>, Query)),
    responses((status = 101, description = "switching to the WebSocket protocol")))]
pub async fn ws(
    State(state): State<AppState>,
    me: NtfyUser,
    Path(topic): Path<String>,
    Query(q): Query<SubscribeQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let mut sub = prepare(&state, &me, topic, q, Format::Json)?;
    Ok(upgrade
        .max_message_size(WS_MAX_FRAME)
        .max_frame_size(WS_MAX_FRAME)
        .read_buffer_size(WS_READ_BUFFER)
        .on_upgrade(move |mut socket| async move {
            loop {
                tokio::select! {
                    chunk = sub.next() => {
                        let Some(b) = chunk else { break };
                        let text = String::from_utf8_lossy(b.trim_ascii_end()).into_owned();
                        if socket.send(Message::Text(text.into())).await.is_err() {
                            break;
                        }
                    }
                    m = socket.recv() => match m {
                        Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                        Some(Ok(_)) => {}
                    },
                }
            }
        }))
}
