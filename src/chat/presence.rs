//! Live, unpersisted state: who is connected (presence, per user over all their connections) and
//! ephemeral signals (typing, presence changes) fanned out on a bounded channel that never blocks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// How long a typing signal lasts unless repeated (clients repeat it while typing).
pub const TYPING_TTL_MS: u64 = 6000;
/// Ephemeral signals kept for slow connections; older ones are dropped for them (typing and
/// presence are best-effort; presence can be re-read with GET /api/v1/presence).
const EPHEMERAL_CAPACITY: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    Online,
    Away,
    Offline,
}

/// A signal that is delivered live and never stored.
#[derive(Debug, Clone)]
pub enum Ephemeral {
    Typing {
        conv: String,
        user: String,
    },
    Presence {
        user: String,
        status: PresenceStatus,
        /// The user's conversations: only people who share one hear of it.
        convs: Arc<[String]>,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("too many open connections for this user (limit {0})")]
pub struct TooManyConnections(pub usize);

/// The registry of live connections and the ephemeral fan-out.
#[derive(Debug)]
pub struct Live {
    conns: Mutex<HashMap<String, HashMap<u64, PresenceStatus>>>,
    tx: broadcast::Sender<Arc<Ephemeral>>,
    next_id: AtomicU64,
    max_per_user: usize,
    open: AtomicU64,
}

fn aggregate(conns: Option<&HashMap<u64, PresenceStatus>>) -> PresenceStatus {
    match conns {
        None => PresenceStatus::Offline,
        Some(c) if c.is_empty() => PresenceStatus::Offline,
        Some(c) if c.values().any(|s| *s == PresenceStatus::Online) => PresenceStatus::Online,
        Some(_) => PresenceStatus::Away,
    }
}

impl Live {
    pub fn new(max_per_user: usize) -> Self {
        let (tx, _) = broadcast::channel(EPHEMERAL_CAPACITY);
        Self {
            conns: Mutex::new(HashMap::new()),
            tx,
            next_id: AtomicU64::new(1),
            max_per_user: max_per_user.max(1),
            open: AtomicU64::new(0),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Ephemeral>> {
        self.tx.subscribe()
    }

    /// Open WebSocket connections right now.
    pub fn open_connections(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<u64, PresenceStatus>>> {
        // A panic while holding this lock aborts the process (panic = abort), so poison is moot.
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection (online). Fails when the user has too many open.
    pub fn connect(
        self: &Arc<Self>,
        user: &str,
        convs: Arc<[String]>,
    ) -> Result<Connection, TooManyConnections> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let changed = {
            let mut all = self.lock();
            let mine = all.entry(user.to_string()).or_default();
            if mine.len() >= self.max_per_user {
                return Err(TooManyConnections(self.max_per_user));
            }
            let before = aggregate(Some(mine));
            mine.insert(id, PresenceStatus::Online);
            before != PresenceStatus::Online
        };
        self.open.fetch_add(1, Ordering::Relaxed);
        if changed {
            self.announce(user, PresenceStatus::Online, convs);
        }
        Ok(Connection {
            live: self.clone(),
            user: user.to_string(),
            id,
            closed: false,
        })
    }

    /// The user's status over all their connections.
    pub fn status(&self, user: &str) -> PresenceStatus {
        aggregate(self.lock().get(user))
    }

    fn set(&self, user: &str, id: u64, status: Option<PresenceStatus>, convs: Arc<[String]>) {
        let (before, after) = {
            let mut all = self.lock();
            let mine = all.entry(user.to_string()).or_default();
            let before = aggregate(Some(mine));
            match status {
                Some(s) => {
                    if let Some(slot) = mine.get_mut(&id) {
                        *slot = s;
                    }
                }
                None => {
                    mine.remove(&id);
                }
            }
            let after = aggregate(Some(mine));
            if mine.is_empty() {
                all.remove(user);
            }
            (before, after)
        };
        if before != after {
            self.announce(user, after, convs);
        }
    }

    fn announce(&self, user: &str, status: PresenceStatus, convs: Arc<[String]>) {
        // No receivers only means nobody is connected.
        let _ = self.tx.send(Arc::new(Ephemeral::Presence {
            user: user.to_string(),
            status,
            convs,
        }));
    }

    /// Tells the members of `conv` that `user` is typing.
    pub fn typing(&self, conv: &str, user: &str) {
        let _ = self.tx.send(Arc::new(Ephemeral::Typing {
            conv: conv.to_string(),
            user: user.to_string(),
        }));
    }
}

/// One registered connection; dropping it unregisters it (and may turn the user offline).
#[derive(Debug)]
pub struct Connection {
    live: Arc<Live>,
    user: String,
    id: u64,
    closed: bool,
}

impl Connection {
    /// Online or away, as the client says.
    pub fn set_status(&self, status: PresenceStatus, convs: Arc<[String]>) {
        let s = if status == PresenceStatus::Away {
            PresenceStatus::Away
        } else {
            PresenceStatus::Online
        };
        self.live.set(&self.user, self.id, Some(s), convs);
    }

    /// Unregisters with the user's current conversations as the audience of a final "offline".
    pub fn close(mut self, convs: Arc<[String]>) {
        self.unregister(convs);
    }

    fn unregister(&mut self, convs: Arc<[String]>) {
        if !self.closed {
            self.closed = true;
            self.live.set(&self.user, self.id, None, convs);
            self.live.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Reached only when the task ended without `close` (aborted): nobody hears "offline"
        // live, but the registry is right for the next GET /api/v1/presence.
        self.unregister(Arc::from(Vec::new()));
    }
}
