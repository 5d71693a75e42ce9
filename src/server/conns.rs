//! The table of open connections: admission under the global and per-address caps (evicting the
//! connection idle the longest before refusing), and each connection's idle clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// One open connection, shared by its task, its request counter and the table.
#[derive(Debug)]
pub struct Conn {
    id: u64,
    ip: IpAddr,
    /// Requests being served (a WebSocket stays one until it closes).
    in_flight: AtomicU32,
    /// Microseconds since the table's epoch when `in_flight` last fell to zero (or it opened).
    idle_since_us: AtomicU64,
    /// Whether any request has started on it yet.
    served: AtomicBool,
    /// Cancelled to ask the connection to close (it was evicted for a newcomer).
    pub evicted: CancellationToken,
    epoch: Instant,
}

impl Conn {
    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Starts the idle clock afresh (the handshake is done; the first request is due).
    pub fn restart_clock(&self) {
        self.idle_since_us.store(self.now_us(), Ordering::Release);
    }

    /// A request starts: the connection is busy until the returned guard is dropped.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.served.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight {
            conn: Some(self.clone()),
        }
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Resolves once the connection has had nothing in flight for the deadline: `first` until
    /// its first request starts, `idle` after that.
    pub async fn idle_for(&self, first: Duration, idle: Duration) {
        loop {
            let wait = if self.is_idle() {
                let limit = if self.served.load(Ordering::Relaxed) {
                    idle
                } else {
                    first
                };
                let since = self.idle_since_us.load(Ordering::Acquire);
                let idle_us = self.now_us().saturating_sub(since);
                let limit_us = u64::try_from(limit.as_micros()).unwrap_or(u64::MAX);
                if idle_us >= limit_us && self.is_idle() {
                    return;
                }
                Duration::from_micros(limit_us - idle_us.min(limit_us))
            } else {
                // Busy: look again later; the deadline counts from when it next falls idle.
                idle.min(first)
            };
            tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
        }
    }
}

/// Marks one request in flight; dropping it (when the response body is done or the request is
/// abandoned) may make the connection idle. `upgraded` keeps it busy for good.
#[derive(Debug)]
pub struct InFlight {
    conn: Option<Arc<Conn>>,
}

impl InFlight {
    /// The connection now carries an upgraded protocol (a WebSocket): busy until it closes.
    pub fn upgraded(mut self) {
        self.conn = None;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let now = conn.now_us();
            // Stamp first so that a watcher that sees zero also sees when it became zero.
            conn.idle_since_us.store(now, Ordering::Release);
            conn.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every slot is taken and every connection has a request in flight.
    Full,
    /// This address holds its share and all of them are busy.
    PerAddress,
}

#[derive(Debug, Default)]
struct Inner {
    conns: HashMap<u64, Arc<Conn>>,
    per_ip: HashMap<IpAddr, usize>,
    next_id: u64,
}

impl Inner {
    fn remove(&mut self, id: u64) -> Option<Arc<Conn>> {
        let conn = self.conns.remove(&id)?;
        if let Some(n) = self.per_ip.get_mut(&conn.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&conn.ip);
            }
        }
        Some(conn)
    }

    /// Evicts the connection idle the longest among those `from` accepts; false if none is idle.
    fn evict_idlest(&mut self, from: impl Fn(&Conn) -> bool) -> bool {
        let victim = self
            .conns
            .values()
            .filter(|c| from(c) && c.is_idle())
            .min_by_key(|c| (c.idle_since_us.load(Ordering::Acquire), c.id))
            .map(|c| c.id);
        match victim.and_then(|id| self.remove(id)) {
            Some(conn) => {
                conn.evicted.cancel();
                true
            }
            None => false,
        }
    }
}

/// The open connections and the caps they live under.
#[derive(Debug)]
pub struct Table {
    inner: Mutex<Inner>,
    max: usize,
    per_address: usize,
    epoch: Instant,
}

impl Table {
    pub fn new(max: usize, per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner::default()),
            max,
            per_address,
            epoch: Instant::now(),
        })
    }

    /// Admits a connection from `ip`. At either cap the connection idle the longest (of that
    /// address, or of all) is closed to make room; only when none is idle is the newcomer refused.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let ip = ip.to_canonical();
        let mut inner = self.inner.lock().map_err(|_| Refused::Full)?;
        if inner.per_ip.get(&ip).copied().unwrap_or(0) >= self.per_address {
            if !inner.evict_idlest(|c| c.ip == ip) {
                return Err(Refused::PerAddress);
            }
            tracing::debug!(%ip, "per-address cap: closed this address's idlest connection");
        }
        if inner.conns.len() >= self.max {
            if !inner.evict_idlest(|_| true) {
                return Err(Refused::Full);
            }
            tracing::debug!(%ip, "connection cap: closed the idlest connection");
        }
        inner.next_id += 1;
        let conn = Arc::new(Conn {
            id: inner.next_id,
            ip,
            in_flight: AtomicU32::new(0),
            idle_since_us: AtomicU64::new(0),
            served: AtomicBool::new(false),
            evicted: CancellationToken::new(),
            epoch: self.epoch,
        });
        conn.idle_since_us.store(conn.now_us(), Ordering::Release);
        inner.conns.insert(conn.id, conn.clone());
        *inner.per_ip.entry(ip).or_insert(0) += 1;
        Ok(Slot {
            table: self.clone(),
            conn,
        })
    }

    /// Open connections now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map(|i| i.conns.len()).unwrap_or(0)
    }
}

/// A connection's place in the table, given back when dropped. It travels with the socket, so
/// an upgraded connection (a WebSocket) keeps its slot for as long as it is open.
#[derive(Debug)]
pub struct Slot {
    table: Arc<Table>,
    pub conn: Arc<Conn>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.table.inner.lock() {
            inner.remove(self.conn.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_full_table_evicts_the_idlest_and_refuses_when_all_are_busy() {
        let t = Table::new(2, 2);
        let a = t.admit(ip("10.0.0.1")).unwrap();
        let b = t.admit(ip("10.0.0.2")).unwrap();
        let _busy_a = a.conn.request();
        let c = t.admit(ip("10.0.0.3")).unwrap();
        assert!(b.conn.evicted.is_cancelled(), "the idle one made room");
        assert!(!a.conn.evicted.is_cancelled());
        let _busy_c = c.conn.request();
        assert_eq!(t.admit(ip("10.0.0.4")).unwrap_err(), Refused::Full);
        drop(b);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn one_address_is_held_to_its_share() {
        let t = Table::new(10, 2);
        let a = t.admit(ip("10.0.0.1")).unwrap();
        let b = t.admit(ip("::ffff:10.0.0.1")).unwrap();
        let _ga = a.conn.request();
        let _gb = b.conn.request();
        assert_eq!(t.admit(ip("10.0.0.1")).unwrap_err(), Refused::PerAddress);
        assert!(t.admit(ip("10.0.0.2")).is_ok());
        // An upgraded request keeps its connection busy for good.
        let c = t.admit(ip("10.0.0.9")).unwrap();
        c.conn.request().upgraded();
        assert!(!c.conn.is_idle());
    }
}
