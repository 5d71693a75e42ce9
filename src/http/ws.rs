//! The WebSocket `/api/v1/ws` (protocol in docs/protocol.md): replay from `since` then live
//! entries, typing and presence; sends and read markers from the client. A connection that falls
//! behind the hub's bounded ring, or does not take a frame in time, is told so and closed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use futures_util::SinkExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::extract::{CurrentUser, check_origin};
use crate::chat::messages::{self, SendMessage};
use crate::chat::presence::{Connection, TYPING_TTL_MS};
use crate::chat::replay::{self, Plan, Visibility};
use crate::chat::{Actor, Ephemeral, PresenceStatus, validate_conv_id};
use crate::error::ApiError;
use crate::log::Entry;
use crate::state::AppState;
use crate::store::{Role, UserStatus};

/// Version of the frame protocol in `hello`.
pub const PROTOCOL: u32 = 1;
/// Close codes beyond the standard ones.
const CLOSE_TOO_SLOW: u16 = 4008;
const CLOSE_SESSION_ENDED: u16 = 4401;
/// Hub entries taken at once for one socket (and written with one flush) when it holds several.
const LIVE_BATCH: usize = 64;
/// Typing signals one connection may pass on per second, over all conversations.
const TYPING_PER_SECOND: u32 = 5;
/// Entries read per snapshot while replaying.
const REPLAY_BATCH: usize = 256;

/// Frames the client sends. `id`, when given, is echoed in the reply.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    Subscribe {
        since: u64,
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
    let core = state.core();
    let (vis, head) = {
        let rtx = core.store.read()?;
        let head = rtx.chain_head()?.map_or(0, |h| h.seq);
        (Visibility::load(&rtx, &actor.user)?, head)
    };
    // Follow the hub from this snapshot on, so membership changes keep typing and presence right
    // before the client subscribes; `subscribe` takes a fresh receiver and snapshot for entries.
    let hub = core.hub.subscribe();
    let conn = core.live.connect(&actor.user, vis.convs()).map_err(|e| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            e.to_string(),
        )
    })?;
    let chat = &state.config().chat;
    let session = Session {
        sid: me.claims.sid.clone(),
        auth_version: me.claims.ver,
    };
    let token = state.sockets().tasks.token();
    let st = state.clone();
    Ok(ws
        .max_message_size(chat.ws_max_frame_bytes)
        .max_frame_size(chat.ws_max_frame_bytes)
        .read_buffer_size(4096)
        .write_buffer_size(4096)
        .max_write_buffer_size(chat.ws_max_frame_bytes.max(64 << 10) * 4)
        .on_upgrade(move |socket| async move {
            let mut c = Conn {
                state: st,
                socket,
                actor,
                session,
                conn: Some(conn),
                vis,
                hub,
                live_from: head,
                subscribed: false,
                typing: HashMap::new(),
            };
            let abort = c.state.sockets().abort.clone();
            // Counted in `websocket_clients` for as long as the task lives.
            let _gauge = c.state.core().metrics.websocket_client();
            tokio::select! {
                () = c.run(head) => {}
                // Past the drain deadline: the task ends; the registry entry goes with `Drop`.
                () = abort.cancelled() => {}
            }
            drop(token);
        }))
}

struct Session {
    sid: String,
    auth_version: u64,
}

struct Conn {
    state: AppState,
    socket: WebSocket,
    actor: Actor,
    session: Session,
    conn: Option<Connection>,
    vis: Visibility,
    hub: tokio::sync::broadcast::Receiver<Arc<Entry>>,
    /// Entries up to here were covered by replay (or predate the connection).
    live_from: u64,
    subscribed: bool,
    typing: HashMap<String, Instant>,
}

/// Why the loop ends.
enum End {
    Gone,
    Close(u16, &'static str),
}

/// Renders a batch of replayed entries, scrubbing what was redacted since.
fn replay_frames(core: &crate::state::Core, seqs: &[u64]) -> Result<Vec<String>, ReplayError> {
    let rtx = core.store.read()?;
    let mut out = Vec::with_capacity(seqs.len());
    for &seq in seqs {
        let Some(entry) = crate::log::read::entry(&rtx, &core.site, &core.key, seq)? else {
            continue;
        };
        let body = replay::scrub(core, &rtx, &entry)?;
        out.push(entry_frame(&entry, body.as_deref()));
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
enum ReplayError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Read(#[from] crate::log::read::ReadError),
}

fn frame_text(f: &ServerFrame<'_>) -> String {
    // Serializing these plain structs cannot fail; an empty object keeps the stream well-formed.
    serde_json::to_string(f).unwrap_or_else(|_| "{}".into())
}

fn entry_frame(e: &Entry, body: Option<&[u8]>) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let body = std::str::from_utf8(body.unwrap_or(&e.body)).unwrap_or("null");
    format!(
        r#"{{"type":"entry","seq":{},"ts_us":{},"kind":{},"stream":{},"author":{},"body":{}}}"#,
        e.seq,
        e.ts,
        q(&e.kind),
        q(&e.stream),
        q(&e.author),
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
            conn.close(self.vis.convs());
        }
        let core = self.state.core();
        if core.live.status(&self.actor.user) == PresenceStatus::Offline {
            let _ = crate::users::touch_last_seen(core, &self.actor.user).await;
        }
    }

    async fn serve(&mut self, ping_every: Duration) -> End {
        let closing = self.state.sockets().closing.clone();
        let mut ephemeral = self.state.core().live.subscribe();
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
                            if let Some(end) = self.on_text(t.as_str()).await {
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
                entry = self.hub.recv() => {
                    if let Some(end) = self.on_entries(entry).await {
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
                () = closing.cancelled() => return End::Close(1001, "server shutting down"),
            }
        }
    }

    /// Sends `first` and whatever else the hub already holds (up to [`LIVE_BATCH`] entries, seen
    /// or not) that this user may see, then flushes once: one write for a burst instead of one
    /// per entry, and a bounded amount of work before the task yields.
    async fn on_entries(&mut self, first: Result<Arc<Entry>, RecvError>) -> Option<End> {
        let mut next = Some(first);
        let mut taken = 0usize;
        let mut fed = 0usize;
        while let Some(entry) = next.take() {
            taken += 1;
            match entry {
                Ok(e) => {
                    if e.seq > self.live_from && self.vis.admit(&e) && self.subscribed {
                        let frame = Message::Text(entry_frame(&e, None).into());
                        if !self.feed(frame).await {
                            return Some(End::Gone);
                        }
                        fed += 1;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::info!(user = %self.actor.user, missed = n, "websocket client too slow; disconnecting");
                    let _ = self
                        .error(
                            None,
                            "too_slow",
                            "you fell behind; reconnect and subscribe from your last seq",
                        )
                        .await;
                    return Some(End::Close(CLOSE_TOO_SLOW, "too slow"));
                }
                Err(RecvError::Closed) => return Some(End::Close(1001, "server shutting down")),
            }
            if taken < LIVE_BATCH {
                next = match self.hub.try_recv() {
                    Ok(e) => Some(Ok(e)),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
                    Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
                };
            }
        }
        if fed > 0 && !self.flush().await {
            return Some(End::Gone);
        }
        None
    }

    /// Whether the user is still active and the session neither revoked nor outdated.
    fn session_alive(&self) -> bool {
        let core = self.state.core();
        let Ok(rtx) = core.store.read() else {
            return true;
        };
        let user_ok = rtx.user(&self.actor.user).ok().flatten().is_some_and(|u| {
            u.status == UserStatus::Active && u.auth_version == self.session.auth_version
        });
        let session_ok = rtx
            .session(&self.session.sid)
            .ok()
            .flatten()
            .is_some_and(|s| s.revoked_at_us.is_none());
        user_ok && session_ok
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

    /// Runs a write on the socket within the configured send deadline.
    async fn within_deadline<'a, F>(&'a mut self, op: impl FnOnce(&'a mut WebSocket) -> F) -> bool
    where
        F: Future<Output = Result<(), axum::Error>> + 'a,
    {
        let limit = Duration::from_secs(self.state.config().chat.ws_send_timeout_secs);
        let user = &self.actor.user;
        match tokio::time::timeout(limit, op(&mut self.socket)).await {
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
        let ok = match frame {
            ClientFrame::Subscribe { since } => self.subscribe(since).await,
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
                match messages::send(self.state.core(), &self.actor, &conv, msg).await {
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
                match messages::mark_read(self.state.core(), &self.actor, &conv, seq).await {
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
                if let Some(c) = &self.conn {
                    c.set_status(status, self.vis.convs());
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
        if self.actor.role < Role::Operator || !self.vis.is_member(&conv) {
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
        self.state.core().live.typing(&conv, &self.actor.user);
        self.typing.insert(conv, now);
    }

    async fn on_ephemeral(&mut self, s: &Ephemeral) -> bool {
        match s {
            Ephemeral::Typing { conv, user } => {
                if *user == self.actor.user || !self.vis.is_member(conv) {
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
                let shared = convs.iter().any(|c| self.vis.is_member(c));
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

    /// Replays what the user could see after `since`, then goes live without a gap or a repeat.
    async fn subscribe(&mut self, since: u64) -> bool {
        if self.subscribed {
            return self
                .error(None, "already_subscribed", "subscribe once per connection")
                .await;
        }
        let state = self.state.clone();
        let core = state.core();
        // A fresh receiver first, then the snapshot: whatever commits after it reaches the receiver.
        self.hub = core.hub.subscribe();
        let rtx = match core.store.read() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "replay snapshot failed");
                return self
                    .error(None, "internal", "internal error; see the server log")
                    .await;
            }
        };
        let prepared = (|| {
            let head = rtx.chain_head()?.map_or(0, |h| h.seq);
            let vis = Visibility::load(&rtx, &self.actor.user)?;
            let plan = replay::plan(&rtx, &self.actor.user, since.min(head), head)?;
            Ok::<_, crate::store::StoreError>((head, vis, plan))
        })();
        let (head, vis, plan) = match prepared {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "replay planning failed");
                return self
                    .error(None, "internal", "internal error; see the server log")
                    .await;
            }
        };
        self.vis = vis;
        self.live_from = head;
        self.subscribed = true;
        let seqs = match plan {
            Plan::Seqs(s) => s,
            Plan::TooFar => {
                return self
                    .send_frame(&ServerFrame::Resync {
                        head,
                        reason: "too_far_behind",
                    })
                    .await;
            }
        };
        drop(rtx);
        // Entries never change once written, so each batch reads from a fresh snapshot: a slow
        // reader does not pin an old one while it takes its frames.
        for batch in seqs.chunks(REPLAY_BATCH) {
            if self.state.sockets().closing.is_cancelled() {
                return false;
            }
            let frames = match replay_frames(core, batch) {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(error = %e, "replay read failed");
                    return self
                        .error(None, "internal", "internal error; see the server log")
                        .await;
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
