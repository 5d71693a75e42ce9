//! Read-only views of one site's replica at HQ: its entries (decrypted, bounded pages) and the
//! all-sites overview (status, connected, unacknowledged alarms by priority). Never writes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::ReplicationError;
use super::hq::{Replicas, SiteStatus};
use super::sites::Sites;
use crate::alarms::{AlarmEntry, KIND_PREFIX, Priority};
use crate::error::Rejection;
use crate::log::Log;
use crate::store::RecordMeta;

/// The most entries one page returns.
pub const MAX_LIMIT: usize = 500;
pub const DEFAULT_LIMIT: usize = 100;
/// The most log rows one page looks at (a `kind` filter may skip many): past it the page ends
/// early with `next` set.
pub const SCAN_BOUND: usize = 20_000;
/// The most body bytes one page carries (bodies are up to 1 MiB each): past it the page ends
/// early with `next` set. A page always holds at least one entry.
pub const PAGE_BYTES: usize = 4 << 20;
/// The most alarm entries one overview reads per site; the rest wait for the next overview.
pub const TALLY_STEP: usize = 20_000;
/// An edge sends at least an empty batch every 30 s: silent for longer than this, it counts as
/// not connected.
pub const CONNECTED_WITHIN_S: u64 = 90;

/// One replicated entry, its body opened.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SiteEntry {
    pub seq: u64,
    pub ts_us: i64,
    pub kind: String,
    pub stream: String,
    pub author: String,
    /// The body as the site wrote it (JSON; a body that is not JSON comes as a string);
    /// `null` when retention purged it or it is a stub.
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
    pub purged: bool,
    /// A stub: the site does not ship this entry's class (`[replication] ship`), so HQ holds only
    /// its seq, ts and hashes; kind, stream and author are empty.
    #[serde(default)]
    pub stub: bool,
    /// Withheld from this caller: a kind that is not site-wide (chat, contacts, users, devices,
    /// sessions, admin entries) read with a site grant below admin. Only seq, ts, kind and hash
    /// come; stream and author are empty and the body is `null` (`docs/replication.md`).
    #[serde(default)]
    pub withheld: bool,
    /// Hex of the entry's hash.
    pub hash: String,
}

/// The kinds every reader of a site gets whole: events, alarms and incidents (exact kind, or a
/// prefix ending in `.`). Everything else a grant below admin gets withheld.
pub const SITE_WIDE_KINDS: [&str; 3] = ["event", "alarm.", "incident."];

/// Whether `kind` is one every reader of a site may read.
pub fn site_wide(kind: &str) -> bool {
    SITE_WIDE_KINDS.iter().any(|k| kind_matches(Some(k), kind))
}

/// A page of entries.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EntryPage {
    pub site: String,
    pub entries: Vec<SiteEntry>,
    /// Present when more may follow: ask again with `since` (oldest first) or `before`
    /// (newest first) set to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
    /// The caller may download the attachments these entries name
    /// (`GET /api/v1/sites/{site}/attachments/{id}`): it reads every kind of the site whole.
    pub attachments: bool,
}

/// Which entries: after `since` oldest first, else before `before` (or from the head) newest
/// first; `kind` is an exact kind, or a prefix when it ends with `.` (`alarm.`).
#[derive(Debug, Clone, Default)]
pub struct EntryQuery {
    pub since: Option<u64>,
    pub before: Option<u64>,
    pub limit: Option<usize>,
    pub kind: Option<String>,
    /// The caller reads every kind whole (admins and auditors at HQ, a site grant of admin);
    /// otherwise only `SITE_WIDE_KINDS` come whole and the rest are withheld.
    pub all_kinds: bool,
}

fn kind_matches(filter: Option<&str>, kind: &str) -> bool {
    match filter {
        None => true,
        Some(f) if f.ends_with('.') => kind.starts_with(f),
        Some(f) => kind == f,
    }
}

/// Adds the entry at `seq` to `out` when its kind matches; withheld (not decrypted) when the
/// caller does not read every kind and the kind is not site-wide. Returns the body bytes added.
fn take(
    replica: &Log,
    filter: Option<&str>,
    all_kinds: bool,
    seq: u64,
    raw: &[u8],
    out: &mut Vec<SiteEntry>,
) -> Result<usize, ReplicationError> {
    let (meta, _) = RecordMeta::decode(raw).map_err(crate::store::StoreError::from)?;
    if !kind_matches(filter, &meta.kind) {
        return Ok(0);
    }
    let stub = meta.is_stub();
    if !stub && !all_kinds && !site_wide(&meta.kind) {
        out.push(SiteEntry {
            seq,
            ts_us: meta.ts,
            kind: meta.kind,
            stream: String::new(),
            author: String::new(),
            body: serde_json::Value::Null,
            purged: false,
            stub: false,
            withheld: true,
            hash: hex::encode(meta.hash),
        });
        return Ok(0);
    }
    let (body, bytes) = if meta.purged {
        (serde_json::Value::Null, 0)
    } else {
        let e = replica.decode(seq, raw)?;
        let body = serde_json::from_slice(&e.body)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&e.body).into()));
        (body, e.body.len())
    };
    out.push(SiteEntry {
        seq,
        ts_us: meta.ts,
        kind: meta.kind,
        stream: meta.stream,
        author: meta.author,
        body,
        purged: meta.purged && !stub,
        stub,
        withheld: false,
        hash: hex::encode(meta.hash),
    });
    Ok(bytes)
}

/// Checks a query's parameters: `invalid_limit`, `invalid_query`, `invalid_kind`.
pub fn check(q: &EntryQuery) -> Result<(), ReplicationError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Rejection::invalid("invalid_limit", "limit is 1-500").into());
    }
    if q.since.is_some() && q.before.is_some() {
        return Err(Rejection::invalid("invalid_query", "give since or before, not both").into());
    }
    if q.kind
        .as_deref()
        .is_some_and(|k| k.len() > crate::log::entry::MAX_KIND_LEN)
    {
        return Err(Rejection::invalid("invalid_kind", "a kind is at most 64 characters").into());
    }
    Ok(())
}

/// A page of the replica's entries.
pub fn entries(site: &str, replica: &Log, q: &EntryQuery) -> Result<EntryPage, ReplicationError> {
    check(q)?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    let filter = q.kind.as_deref().filter(|k| !k.is_empty());
    let rtx = replica.read()?;
    let head = replica.head(&rtx)?;
    let mut out = Vec::new();
    let mut scanned = 0usize;
    let mut bytes = 0usize;
    // The last seq looked at; more may follow when the page stopped before the end.
    let mut last = 0u64;
    let next = if let Some(since) = q.since {
        let mut failed = None;
        rtx.scan_log(since.saturating_add(1), |seq, raw| {
            scanned += 1;
            last = seq;
            match take(replica, filter, q.all_kinds, seq, raw, &mut out) {
                Ok(n) => bytes += n,
                Err(e) => failed = Some(e),
            }
            failed.is_none() && out.len() < limit && scanned < SCAN_BOUND && bytes < PAGE_BYTES
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        let full = out.len() >= limit || scanned >= SCAN_BOUND || bytes >= PAGE_BYTES;
        (last < head && full).then_some(last)
    } else {
        let mut seq = q.before.map_or(head, |b| b.saturating_sub(1).min(head));
        while seq > 0 && out.len() < limit && scanned < SCAN_BOUND && bytes < PAGE_BYTES {
            scanned += 1;
            last = seq;
            if let Some(raw) = rtx.log_raw(seq)? {
                bytes += take(replica, filter, q.all_kinds, seq, &raw, &mut out)?;
            }
            seq -= 1;
        }
        (seq > 0).then_some(last)
    };
    Ok(EntryPage {
        site: site.to_string(),
        entries: out,
        next,
        attachments: q.all_kinds,
    })
}

/// Unacknowledged alarm occurrences by priority.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Unacked {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub diagnostic: u64,
}

/// One site on the all-sites screen.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SiteOverview {
    #[serde(flatten)]
    pub status: SiteStatus,
    /// Heard from within the last 90 s (an idle edge sends an empty batch every 30 s) and not
    /// revoked.
    pub connected: bool,
    pub revoked: bool,
    /// Occurrences whose newest replicated entry says unacknowledged, by priority.
    pub unacked: Unacked,
    /// The seq up to which the replica's alarm entries are counted (the count catches up over
    /// later requests when a site has very many).
    pub alarms_counted_to: u64,
}

/// What the overview remembers of one site's alarm entries between requests: the seq counted
/// to and each unacknowledged occurrence's priority. Memory is bounded by the unacknowledged
/// occurrences, which a site's own alarm view bounds alike.
#[derive(Debug, Default)]
struct Tally {
    upto: u64,
    unacked: HashMap<u64, Priority>,
}

/// The per-site alarm tallies, kept by HQ's runtime.
#[derive(Debug, Default)]
pub struct Tallies {
    sites: Mutex<BTreeMap<String, Tally>>,
}

impl Tallies {
    /// Counts the alarm entries of `replica` that arrived since the last call (at most
    /// `TALLY_STEP`) and returns the counts and the seq they cover.
    pub(crate) fn update(
        &self,
        site: &str,
        replica: &Log,
    ) -> Result<(Unacked, u64), ReplicationError> {
        // The whole tally comes out, `upto` with the map: a concurrent overview meanwhile, or
        // this one failing (nothing is put back on any error path), counts the site again from
        // zero instead of keeping an advanced `upto` with an empty map.
        let Tally {
            mut upto,
            mut unacked,
        } = self
            .sites
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(site)
            .unwrap_or_default();
        let rtx = replica.read()?;
        let head = replica.head(&rtx)?;
        if head < upto {
            // The replica was replaced (restored from a backup): count again.
            upto = 0;
            unacked.clear();
        }
        let mut scanned = 0usize;
        let mut failed = None;
        rtx.scan_log(upto.saturating_add(1), |seq, raw| {
            scanned += 1;
            upto = seq;
            match alarm_of(replica, seq, raw) {
                Ok(Some(a)) => {
                    if a.alarm.acked {
                        unacked.remove(&a.id);
                    } else {
                        unacked.insert(a.id, a.alarm.priority);
                    }
                }
                Ok(None) => {}
                Err(e) => failed = Some(e),
            }
            failed.is_none() && scanned < TALLY_STEP
        })?;
        let mut counts = Unacked::default();
        for p in unacked.values() {
            let n = match p {
                Priority::Critical => &mut counts.critical,
                Priority::High => &mut counts.high,
                Priority::Medium => &mut counts.medium,
                Priority::Low => &mut counts.low,
                Priority::Diagnostic => &mut counts.diagnostic,
            };
            *n += 1;
        }
        if let Some(e) = failed {
            return Err(e);
        }
        self.sites
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(site.to_string(), Tally { upto, unacked });
        Ok((counts, upto))
    }
}

/// The alarm body of an `alarm.*` entry (a purged one, or one that does not decode, is skipped:
/// it says nothing the next entry of its occurrence does not).
fn alarm_of(replica: &Log, seq: u64, raw: &[u8]) -> Result<Option<AlarmEntry>, ReplicationError> {
    let (meta, _) = RecordMeta::decode(raw).map_err(crate::store::StoreError::from)?;
    if !meta.kind.starts_with(KIND_PREFIX) || meta.purged {
        return Ok(None);
    }
    let e = replica.decode(seq, raw)?;
    Ok(serde_json::from_slice(&e.body).ok())
}

/// The overview of the sites `allowed` lets through, in name order.
pub async fn overview(
    replicas: &Replicas,
    sites: &Sites,
    tallies: &Arc<Tallies>,
    allowed: impl Fn(&str) -> bool,
) -> Result<Vec<SiteOverview>, ReplicationError> {
    let mut out = Vec::new();
    for site in replicas.sites()?.into_iter().filter(|s| allowed(s)) {
        let status = replicas.status(&site).await?;
        let revoked = sites.record(&site)?.is_some_and(|r| r.revoked);
        let replica = replicas.replica(&site).await?;
        let contacted = replica.read()?.replication_meta("contact_us")?.is_some();
        let connected = contacted && !revoked && status.silent_seconds <= CONNECTED_WITHIN_S;
        // Up to `TALLY_STEP` reads and decrypts: off the async threads.
        let (t, name, r) = (Arc::clone(tallies), site.clone(), replica.clone());
        let (unacked, alarms_counted_to) =
            tokio::task::spawn_blocking(move || t.update(&name, &r)).await??;
        out.push(SiteOverview {
            status,
            connected,
            revoked,
            unacked,
            alarms_counted_to,
        });
    }
    Ok(out)
}
