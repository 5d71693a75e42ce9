//! The WebSocket `/api/v1/ws` (protocol in docs/protocol.md): replay from `since` then live
//! entries, typing and presence; sends and read markers from the client. A connection that falls
//! behind the hub's bounded ring, or does not take a frame in time, is told so and closed.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use futures_util::SinkExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use super::error::ApiError;
use super::extract::{CurrentUser, check_origin};
use crate::audience::{Plan, Viewer, ViewerFilter};
use crate::auth::{AccessClaims, AuthError, sessions};
use crate::chat::messages::{self, SendMessage};
use crate::chat::presence::{Connection, TYPING_TTL_MS};
use crate::chat::replay::{self, Visibility};
use crate::chat::{Actor, Ephemeral, PresenceStatus, validate_conv_id};
use crate::log::{Entry, FollowError, Follower, Live, Log};
use crate::state::AppState;
use crate::store::{Role, StoreError};

/// Version of the frame protocol in `hello`.
pub const PROTOCOL: u32 = 1;
/// Close codes beyond the standard ones.
const CLOSE_TOO_SLOW: u16 = 4008;
const CLOSE_SESSION_ENDED: u16 = 4401;
/// Hub entries taken at once for one socket (and written with one flush) when it holds several.
const LIVE_BATCH: usize = 64;
/// Typing signals one connection may pass on per second, over all conversations.
const TYPING_PER_SECOND: u32 = 5;
/// Bytes tungstenite allocates up front for a socket's incoming frames, and the most one read
/// from the TLS stream takes. It does not bound a frame: a longer one grows the buffer to its
/// length (up to `chat.ws_max_frame_bytes`). Every idle socket keeps this buffer, and a client
/// frame (`send`, `read`, `typing`) is usually well under 1 KiB, so 1 KiB saves ~3 KiB per socket
/// over 4 KiB; a large frame costs only more (cheap, in-memory) reads from the TLS layer.
const WS_READ_BUFFER: usize = 1024;

/// Frames the client sends. `id`, when given, is echoed in the reply.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    Subscribe {
        since: u64,
        /// The domains to follow (`chat`, `events`, `admin`); omitted: `chat`.
        #[serde(default)]
        domains: Vec<String>,
    },
    Send {
        id: Option<u64>,
        conv: String,
        key: String,
        #[serde(default)]
        text: String,
        #[serde(default)]
        reply_to: Option<u64>,
        #[serde(default)]
        attachments: Vec<String>,
    },
    Read {
        id: Option<u64>,
        conv: String,
        seq: u64,
    },
    Typing {
        conv: String,
    },
    Presence {
        status: PresenceStatus,
    },
    Ping {
        id: Option<u64>,
    },
}

const CLIENT_TYPES: [&str; 6] = ["subscribe", "send", "read", "typing", "presence", "ping"];

#[derive(Deserialize)]
struct FrameHead {
    #[serde(rename = "type")]
    kind: String,
    id: Option<u64>,
}

/// Frames the server sends (entries are rendered by `entry_frame` without re-parsing bodies).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ServerFrame<'a> {
    Hello {
        protocol: u32,
        user: &'a str,
        head: u64,
        max_frame_bytes: usize,
        typing_ttl_ms: u64,
    },
    CaughtUp {
        head: u64,
    },
    Resync {
        head: u64,
        reason: &'static str,
    },
    Ack {
        id: Option<u64>,
        conv: &'a str,
        seq: u64,
        key: &'a str,
        duplicate: bool,
    },
    ReadAck {
        id: Option<u64>,
        conv: &'a str,
        last_read_seq: u64,
        unread: u64,
    },
    Typing {
        conv: &'a str,
        user: &'a str,
        expires_in_ms: u64,
    },
    Presence {
        user: &'a str,
        status: PresenceStatus,
    },
    Pong {
        id: Option<u64>,
    },
    Error {
        id: Option<u64>,
        code: &'a str,
        message: &'a str,
    },
}

/// Upgrades to a WebSocket. Cookie-authenticated upgrades must come from this server's pages.
#[utoipa::path(get, path = "/api/v1/ws", tag = "realtime",
    responses((status = 101, description = "switching to the WebSocket protocol in docs/protocol.md"),
              (status = 429, description = "too many connections for this user")))]
pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    me: CurrentUser,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    if me.via_cookie {
        check_origin(&headers, &uri)?;
    }
    let actor = Actor::of(&me.user);
    let viewer = Viewer {
        user: actor.user.clone(),
        role: actor.role,
    };
    // Follow the log from now on (no replay), so membership changes keep typing and presence
    // right before the client subscribes; `subscribe` starts a new follower from its `since`.
    let mut follower = state.log().follow(u64::MAX)?;
    let head = follower.head();
    let rtx = match follower.take_snapshot() {
        Some(rtx) => rtx,
        None => state.log().read()?,
    };
    let filter = state.audiences().for_viewer(&rtx, &viewer, &[])?;
    // Typing and presence follow chat membership whatever domains the socket subscribes to.
    let members = Visibility::load(&rtx, &actor.user)?;
    drop(rtx);
    let convs = members.convs();
    let conn = state.live().connect(&actor.user, convs).map_err(|e| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            e.to_string(),
        )
    })?;
    let chat = &state.config().chat;
    let token = state.sockets().tasks.token();
    // One boxed capture instead of seven: a future keeps its captures for its whole life, even
    // once moved into `Conn`, so inline they would sit beside `Conn` in every socket's task
    // (about 1 KB of each idle socket's memory).
    let parts = Box::new((
        state.clone(),
        actor,
        me.claims,
        conn,
        filter,
        members,
        follower,
    ));
    Ok(ws
        .max_message_size(chat.ws_max_frame_bytes)
        .max_frame_size(chat.ws_max_frame_bytes)
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(4096)
        .max_write_buffer_size(chat.ws_max_frame_bytes.max(64 << 10) * 4)
        .on_upgrade(move |socket| async move {
            let (state, actor, claims, conn, filter, members, follower) = *parts;
            let mut c = Conn {
                state,
                socket,
                actor,
                claims,
                conn: Some(conn),
                filter,
                chat: members,
                follower,
                subscribed: false,
                typing: HashMap::new(),
            };
            let abort = c.state.sockets().abort.clone();
            // Counted in `websocket_clients` for as long as the task lives.
            let _gauge = c.state.metrics().websocket_client();
            tokio::select! {
                () = c.run(head) => {}
                // Past the drain deadline: the task ends; the registry entry goes with `Drop`.
                () = abort.cancelled() => {}
            }
            drop(token);
        }))
}

struct Conn {
    state: AppState,
    socket: WebSocket,
    actor: Actor,
    /// The access token's claims: every write re-checks the session they name.
    claims: AccessClaims,
    conn: Option<Connection>,
    /// What this viewer may see, per domain.
    filter: ViewerFilter,
    /// The viewer's conversations now, for typing and presence (kept whatever the domains).
    chat: Visibility,
    /// The log from the connection (or the subscription) on.
    follower: Follower,
    subscribed: bool,
    typing: HashMap<String, Instant>,
}

/// Why the loop ends.
enum End {
    Gone,
    Close(u16, &'static str),
}

/// Renders a batch of replayed entries, scrubbing what was redacted since.
fn replay_frames(log: &Log, entries: &[Entry]) -> Result<Vec<String>, StoreError> {
    let rtx = log.read()?;
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let body = replay::scrub(log, &rtx, entry)?;
        out.push(entry_frame(entry, body.as_deref()));
    }
    Ok(out)
}

fn frame_text(f: &ServerFrame<'_>) -> String {
    // Serializing these plain structs cannot fail; an empty object keeps the stream well-formed.
    serde_json::to_string(f).unwrap_or_else(|_| "{}".into())
}

/// The `entry` frame of a live entry, rendered once for every socket that takes it: the frame
/// depends on the entry alone (what a viewer may see is decided before), and every socket sends
/// the same reference-counted bytes. Replay renders its own (a redaction since may scrub it).
fn live_frame(e: &Live) -> Utf8Bytes {
    e.shared(|e| WsEntryFrame(Utf8Bytes::from(entry_frame(e, None))))
        .0
}

/// The shared slot's key: private to this file, so no other caller of `Live::shared` can get (or
/// fill) the WebSocket frame by asking for the same type.
#[derive(Clone)]
struct WsEntryFrame(Utf8Bytes);

/// One `entry` frame. `author` is the name within its kind (a username for people) and
/// `author_kind` says which kind: `user`, `device`, `cli`, `site`, `system` or `anonymous`.
fn entry_frame(e: &Entry, body: Option<&[u8]>) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let body = std::str::from_utf8(body.unwrap_or(&e.body)).unwrap_or("null");
    let by = e.by();
    format!(
        r#"{{"type":"entry","seq":{},"ts_us":{},"kind":{},"stream":{},"author":{},"author_kind":{},"body":{}}}"#,
        e.seq,
        e.ts,
        q(&e.kind),
        q(&e.stream),
        q(by.name()),
        q(by.kind()),
        body
    )
}

impl Conn {
    async fn run(&mut self, head: u64) {
        let chat = self.state.config().chat.clone();
        let hello = frame_text(&ServerFrame::Hello {
            protocol: PROTOCOL,
            user: &self.actor.user,
            head,
            max_frame_bytes: chat.ws_max_frame_bytes,
            typing_ttl_ms: TYPING_TTL_MS,
        });
        let end = if self.send_text(hello).await {
            self.serve(Duration::from_secs(chat.ws_ping_secs)).await
        } else {
            End::Gone
        };
        if let End::Close(code, reason) = end {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                self.socket.send(Message::Close(Some(frame))),
            )
            .await;
        }
        if let Some(conn) = self.conn.take() {
            conn.close(self.chat.convs());
        }
        if self.state.live().status(&self.actor.user) == PresenceStatus::Offline {
            let _ = crate::users::touch_last_seen(self.state.log(), &self.actor.user).await;
        }
    }

    async fn serve(&mut self, ping_every: Duration) -> End {
        let closing = self.state.sockets().closing.clone();
        // Waited on across iterations: a fresh wait per wake-up would register with (and then
        // leave) the token's one lock, shared by every socket, for each entry each socket takes.
        let closed = closing.cancelled();
        tokio::pin!(closed);
        let mut ephemeral = self.state.live().subscribe();
        let mut ticker = tokio::time::interval(ping_every);
        ticker.tick().await;
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                incoming = self.socket.recv() => {
                    last_heard = Instant::now();
                    match incoming {
                        None => return End::Gone,
                        Some(Err(e)) => {
                            tracing::debug!(user = %self.actor.user, error = %e, "websocket read failed");
                            return End::Close(1009, "frame too large or malformed");
                        }
                        Some(Ok(Message::Text(t))) => {
                            // Boxed, as is `on_entries`: their states are the largest of this
                            // loop, and inline they would size every idle socket's task.
                            if let Some(end) = Box::pin(self.on_text(t.as_str())).await {
                                return end;
                            }
                        }
                        Some(Ok(Message::Binary(b))) => {
                            tracing::debug!(user = %self.actor.user, len = b.len(), "binary frame refused");
                            if !self.error(None, "binary_not_supported", "frames are JSON text").await {
                                return End::Gone;
                            }
                        }
                        Some(Ok(Message::Close(_))) => return End::Gone,
                        Some(Ok(_)) => {}
                    }
                }
                entry = self.follower.recv_live() => {
                    if let Some(end) = Box::pin(self.on_entries(entry)).await {
                        return end;
                    }
                }
                signal = ephemeral.recv() => match signal {
                    Ok(s) => {
                        if !self.on_ephemeral(&s).await {
                            return End::Gone;
                        }
                    }
                    // Typing and presence are best-effort; presence can be re-read over REST.
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return End::Close(1001, "server shutting down"),
                },
                _ = ticker.tick() => {
                    if last_heard.elapsed() > ping_every * 3 {
                        tracing::debug!(user = %self.actor.user, "websocket peer silent; dropping");
                        return End::Gone;
                    }
                    if !self.session_alive() {
                        return End::Close(CLOSE_SESSION_ENDED, "session ended");
                    }
                    if !self.send(Message::Ping(Default::default())).await {
                        return End::Gone;
                    }
                }
                () = &mut closed => return End::Close(1001, "server shutting down"),
            }
        }
    }

    /// Sends `first` and whatever else the ring already holds (up to [`LIVE_BATCH`] entries,
    /// seen or not) that this viewer may see, then flushes once: one write for a burst instead of
    /// one per entry, and a bounded amount of work before the task yields. An entry that may end
    /// this user's sessions (sign-out, disable, role or password change) re-checks the session at
    /// once, so the socket closes with the change, not at the next ping.
    async fn on_entries(&mut self, first: Result<Arc<Live>, FollowError>) -> Option<End> {
        let mut next = Some(first);
        let mut taken = 0usize;
        let mut fed = 0usize;
        while let Some(entry) = next.take() {
            taken += 1;
            match entry {
                Ok(e) => {
                    if sessions::may_end_sessions_of(&e).as_deref()
                        == Some(self.actor.user.as_str())
                        && !self.session_alive_strict()
                    {
                        return Some(End::Close(CLOSE_SESSION_ENDED, "session ended"));
                    }
                    self.chat.observe(&e);
                    if self.filter.admit(&e) && self.subscribed {
                        let frame = Message::Text(live_frame(&e));
                        if !self.feed(frame).await {
                            return Some(End::Close(CLOSE_TOO_SLOW, "too slow"));
                        }
                        fed += 1;
                    }
                }
                Err(FollowError::Lagged { missed }) => {
                    tracing::info!(user = %self.actor.user, missed, "websocket client too slow; disconnecting");
                    let _ = self
                        .error(
                            None,
                            "too_slow",
                            "you fell behind; reconnect and subscribe from your last seq",
                        )
                        .await;
                    return Some(End::Close(CLOSE_TOO_SLOW, "too slow"));
                }
                Err(e) => {
                    tracing::debug!(user = %self.actor.user, error = %e, "websocket follower ended");
                    return Some(End::Close(1001, "server shutting down"));
                }
            }
            if taken < LIVE_BATCH {
                next = self.follower.try_recv_live();
            }
        }
        if fed > 0 && !self.flush().await {
            return Some(End::Close(CLOSE_TOO_SLOW, "too slow"));
        }
        None
    }

    /// The one session check (`sessions::check_session`): the session is live and the user
    /// active with the token's version. A role change also ends the session, so the role the
    /// socket holds is always the current one. A storage fault is not a verdict: the socket stays.
    fn session_alive(&mut self) -> bool {
        match sessions::check_session(self.state.log(), &self.claims) {
            Ok(user) => {
                self.actor = Actor::of(&user);
                true
            }
            Err(AuthError::Store(e)) => {
                tracing::warn!(user = %self.actor.user, error = %e, "session check could not read the store");
                true
            }
            Err(_) => false,
        }
    }

    /// The session check after an entry that may have ended this very session: here a storage
    /// fault is not given the benefit of the doubt (the client reconnects and signs in anew).
    fn session_alive_strict(&mut self) -> bool {
        match sessions::check_session(self.state.log(), &self.claims) {
            Ok(user) => {
                self.actor = Actor::of(&user);
                true
            }
            Err(_) => false,
        }
    }

    async fn send(&mut self, m: Message) -> bool {
        self.within_deadline(|socket| socket.send(m)).await
    }

    /// Queues a frame in the socket's bounded write buffer (written out once it fills).
    async fn feed(&mut self, m: Message) -> bool {
        self.within_deadline(|socket| socket.feed(m)).await
    }

    async fn flush(&mut self) -> bool {
        self.within_deadline(|socket| socket.flush()).await
    }

    /// Runs a write on the socket within the configured send deadline. The deadline's timer is
    /// made only if the write does not complete at its first poll: a frame fed into the buffer,
    /// or a flush to a socket with room, is most writes, and a timer per write per socket was a
    /// measurable part of a fan-out (docs/benchmarks.md, issue 16 round 7).
    async fn within_deadline<'a, F>(&'a mut self, op: impl FnOnce(&'a mut WebSocket) -> F) -> bool
    where
        F: Future<Output = Result<(), axum::Error>> + 'a,
    {
        let limit = Duration::from_secs(self.state.config().chat.ws_send_timeout_secs);
        let user = &self.actor.user;
        let mut op = std::pin::pin!(op(&mut self.socket));
        let first = std::future::poll_fn(|cx| Poll::Ready(op.as_mut().poll(cx))).await;
        let done = match first {
            Poll::Ready(r) => Ok(r),
            Poll::Pending => tokio::time::timeout(limit, op).await,
        };
        match done {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                tracing::info!(user = %user, "websocket client did not take a frame in time; disconnecting");
                false
            }
        }
    }

    async fn send_text(&mut self, text: String) -> bool {
        self.send(Message::Text(text.into())).await
    }

    async fn send_frame(&mut self, f: &ServerFrame<'_>) -> bool {
        self.send_text(frame_text(f)).await
    }

    async fn error(&mut self, id: Option<u64>, code: &str, message: &str) -> bool {
        self.send_frame(&ServerFrame::Error { id, code, message })
            .await
    }

    /// Handles one client frame; `Some` ends the connection.
    async fn on_text(&mut self, text: &str) -> Option<End> {
        let head = match serde_json::from_str::<FrameHead>(text) {
            Ok(h) => h,
            Err(_) => {
                tracing::debug!(user = %self.actor.user, len = text.len(), "malformed websocket frame");
                return self
                    .reply_error(
                        None,
                        "bad_frame",
                        "a frame is a JSON object with a \"type\"",
                    )
                    .await;
            }
        };
        if !CLIENT_TYPES.contains(&head.kind.as_str()) {
            tracing::debug!(user = %self.actor.user, len = text.len(), "unknown websocket frame type");
            return self
                .reply_error(head.id, "unknown_type", "unknown frame type")
                .await;
        }
        let frame = match serde_json::from_str::<ClientFrame>(text) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(user = %self.actor.user, len = text.len(), "invalid websocket frame");
                let msg = format!("invalid {} frame: {e}", head.kind);
                return self.reply_error(head.id, "bad_frame", &msg).await;
            }
        };
        let conv = match &frame {
            ClientFrame::Send { conv, .. }
            | ClientFrame::Read { conv, .. }
            | ClientFrame::Typing { conv } => Some(conv.as_str()),
            _ => None,
        };
        if let Some(Err(r)) = conv.map(validate_conv_id) {
            return self.reply_error(head.id, r.code, &r.message).await;
        }
        // Every write, and the subscription (which reads history), is authorised against the
        // session and role as stored now: a socket whose session ended (sign-out, disable,
        // demotion, expiry) writes and reads nothing more and closes.
        let checked = !matches!(frame, ClientFrame::Ping { .. });
        if checked && !self.session_alive() {
            return Some(End::Close(CLOSE_SESSION_ENDED, "session ended"));
        }
        let ok = match frame {
            ClientFrame::Subscribe { since, domains } => self.subscribe(since, domains).await,
            ClientFrame::Send {
                id,
                conv,
                key,
                text,
                reply_to,
                attachments,
            } => {
                let msg = SendMessage {
                    key,
                    text,
                    reply_to,
                    attachments,
                };
                match messages::send(
                    self.state.log(),
                    &self.state.config().chat,
                    &self.actor,
                    &conv,
                    msg,
                )
                .await
                {
                    Ok(sent) => {
                        let f = ServerFrame::Ack {
                            id,
                            conv: &sent.conv,
                            seq: sent.seq,
                            key: &sent.key,
                            duplicate: sent.duplicate,
                        };
                        self.send_frame(&f).await
                    }
                    Err(e) => self.submit_error(id, e).await,
                }
            }
            ClientFrame::Read { id, conv, seq } => {
                match messages::mark_read(self.state.log(), &self.actor, &conv, seq).await {
                    Ok(m) => {
                        let f = ServerFrame::ReadAck {
                            id,
                            conv: &m.conv,
                            last_read_seq: m.last_read_seq,
                            unread: m.unread,
                        };
                        self.send_frame(&f).await
                    }
                    Err(e) => self.submit_error(id, e).await,
                }
            }
            ClientFrame::Typing { conv } => {
                self.typing(conv);
                true
            }
            ClientFrame::Presence { status } => {
                // Presence changes what others see: an auditor changes nothing.
                if let Err(r) = self.actor.require_not_auditor() {
                    return self.reply_error(None, r.code, &r.message).await;
                }
                if let Some(c) = &self.conn {
                    c.set_status(status, self.chat.convs());
                }
                true
            }
            ClientFrame::Ping { id } => self.send_frame(&ServerFrame::Pong { id }).await,
        };
        if ok { None } else { Some(End::Gone) }
    }

    async fn reply_error(&mut self, id: Option<u64>, code: &str, message: &str) -> Option<End> {
        if self.error(id, code, message).await {
            None
        } else {
            Some(End::Gone)
        }
    }

    async fn submit_error(&mut self, id: Option<u64>, e: crate::log::SubmitError) -> bool {
        let api = ApiError::from(e);
        let (code, message) = (api.code, api.message.clone());
        self.error(id, code, &message).await
    }

    /// Announces typing, at most once a second per conversation, members with posting rights only.
    fn typing(&mut self, conv: String) {
        if self.actor.role < Role::Operator || !self.is_member(&conv) {
            return;
        }
        // At most one signal per conversation per second, and TYPING_PER_SECOND in all: the map
        // only holds the last second, so it stays that small.
        let now = Instant::now();
        self.typing
            .retain(|_, t| now.duration_since(*t) < Duration::from_secs(1));
        if self.typing.contains_key(&conv) || self.typing.len() >= TYPING_PER_SECOND as usize {
            return;
        }
        self.state.live().typing(&conv, &self.actor.user);
        self.typing.insert(conv, now);
    }

    async fn on_ephemeral(&mut self, s: &Ephemeral) -> bool {
        match s {
            Ephemeral::Typing { conv, user } => {
                if *user == self.actor.user || !self.is_member(conv) {
                    return true;
                }
                self.send_frame(&ServerFrame::Typing {
                    conv,
                    user,
                    expires_in_ms: TYPING_TTL_MS,
                })
                .await
            }
            Ephemeral::Presence {
                user,
                status,
                convs,
            } => {
                let shared = convs.iter().any(|c| self.is_member(c));
                if *user == self.actor.user || !shared {
                    return true;
                }
                self.send_frame(&ServerFrame::Presence {
                    user,
                    status: *status,
                })
                .await
            }
        }
    }

    /// Whether the viewer is in `conv` now (typing and presence follow chat membership).
    fn is_member(&self, conv: &str) -> bool {
        self.chat.is_member(conv)
    }

    /// Replays what the viewer could see after `since` in the named domains, then goes live
    /// without a gap or a repeat (the follower's contract).
    async fn subscribe(&mut self, since: u64, domains: Vec<String>) -> bool {
        if self.subscribed {
            return self
                .error(None, "already_subscribed", "subscribe once per connection")
                .await;
        }
        if let Err(e) = self.state.audiences().check(&domains) {
            return self.error(None, "unknown_domain", &e.to_string()).await;
        }
        let viewer = Viewer {
            user: self.actor.user.clone(),
            role: self.actor.role,
        };
        let state = self.state.clone();
        let log = state.log();
        let prepared = (|| {
            let mut follower = log.follow(since)?;
            let head = follower.head();
            let rtx = match follower.take_snapshot() {
                Some(rtx) => rtx,
                None => log.read()?,
            };
            let filter = state.audiences().for_viewer(&rtx, &viewer, &domains)?;
            let chat = Visibility::load(&rtx, &viewer.user)?;
            let plan = filter.plan(&rtx, since.min(head), head)?;
            Ok::<_, StoreError>((follower, head, filter, chat, plan))
        })();
        let (follower, head, filter, chat, plan) = match prepared {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "replay planning failed");
                return self
                    .error(None, "internal", "internal error; see the server log")
                    .await;
            }
        };
        self.follower = follower;
        self.filter = filter;
        self.chat = chat;
        self.subscribed = true;
        match plan {
            Plan::Seqs(s) => self.follower.only(s),
            Plan::TooFar => {
                self.follower.only(Vec::new());
                return self
                    .send_frame(&ServerFrame::Resync {
                        head,
                        reason: "too_far_behind",
                    })
                    .await;
            }
        }
        // Each batch reads from a fresh snapshot: a slow reader does not pin an old one while it
        // takes its frames.
        loop {
            if self.state.sockets().closing.is_cancelled() {
                return false;
            }
            let frames = match self.follower.replay_batch() {
                Ok(None) => break,
                Ok(Some(batch)) => replay_frames(log, &batch).map_err(ReplayError::from),
                Err(e) => Err(ReplayError::from(e)),
            };
            let frames = match frames {
                Ok(f) => f,
                Err(e) => {
                    // Going live past a hole would lose entries for good: end the connection,
                    // so the client resumes from the last seq it processed.
                    tracing::error!(error = %e, "replay read failed; closing the socket");
                    let _ = self
                        .error(
                            None,
                            "storage_unavailable",
                            "the replay could not be read; reconnect and subscribe from your last seq",
                        )
                        .await;
                    return false;
                }
            };
            for f in frames {
                if !self.send_text(f).await {
                    return false;
                }
            }
        }
        self.send_frame(&ServerFrame::CaughtUp { head }).await
    }
}

#[derive(Debug, thiserror::Error)]
enum ReplayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Read(#[from] crate::log::read::ReadError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &str) -> Entry {
        Entry {
            site: "p1".into(),
            seq: 42,
            ts: 1_700_000_000_000_000,
            kind: "chat.message".into(),
            stream: "conv\"1".into(),
            author: "user:ann".into(),
            body: body.as_bytes().to_vec(),
            prev: [0; 32],
            hash: [1; 32],
            chain: crate::log::entry::ChainVersion::V2,
        }
    }

    /// The shared frame is the per-socket rendering, byte for byte, and the same bytes for every
    /// socket that asks.
    #[test]
    fn the_shared_frame_is_the_per_socket_rendering() {
        let body = r#"{"conv":"c","text":"quote \" ünï ⚙"}"#;
        let e = entry(body);
        let live = Live::new(e.clone());
        let one = live_frame(&live);
        let two = live_frame(&live);
        assert_eq!(one.as_str(), entry_frame(&e, None));
        assert_eq!(
            one.as_bytes().as_ptr(),
            two.as_bytes().as_ptr(),
            "not rendered twice"
        );
        assert_eq!(
            one.as_str(),
            r#"{"type":"entry","seq":42,"ts_us":1700000000000000,"kind":"chat.message","stream":"conv\"1","author":"ann","author_kind":"user","body":{"conv":"c","text":"quote \" ünï ⚙"}}"#
        );
    }
}
