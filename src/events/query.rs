//! Reading events back: filtered, cursor-paged listings through the event indexes, one event with
//! its chain fields, and the backfills that index events logged before an index existed.

use serde::Serialize;

use super::{EventBody, KIND_EVENT, Severity, StoredEvent, stream_of};
use crate::error::Rejection;
use crate::log::read::ReadError;
use crate::log::{Author, Log, SubmitError};
use crate::store::{EventIndex, EventRange, StoreError};

/// What a listing asks for. Every field narrows; one index is read and the rest are checked on
/// what it gives (see [`list`]).
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Only events with a seq above this.
    pub after: u64,
    /// Only events with a seq below this.
    pub before: Option<u64>,
    /// Newest first (and then `limit` takes the newest).
    pub newest_first: bool,
    pub source: Option<String>,
    pub event_type: Option<String>,
    /// Only events of this severity or above.
    pub min_severity: Option<Severity>,
    /// Only events this device published (its stream, authored by it).
    pub device: Option<String>,
    /// Log time bounds, UTC µs, inclusive.
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
    pub limit: usize,
}

/// Index rows one listing reads at most before it answers with what it found.
pub const SCAN_LIMIT: usize = 20_000;

/// Why a listing or the backfill failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("entry {seq} is indexed as an event but its body is not one: {source}")]
    Body {
        seq: u64,
        #[source]
        source: serde_json::Error,
    },
}

/// A page of a listing.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub events: Vec<StoredEvent>,
    /// Set when more may follow (the page is full, or the scan stopped at its bound): continue
    /// with `after = next` (oldest first) or `before = next` (newest first).
    pub next: Option<u64>,
}

/// A time bound as a query gives it: integer UTC µs, or RFC 3339 (`2026-12-01T03:00:00Z`).
pub fn parse_time(name: &str, raw: &str) -> Result<i64, Rejection> {
    let raw = raw.trim();
    if let Ok(us) = raw.parse::<i64>() {
        return Ok(us);
    }
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1000).ok())
        .ok_or_else(|| {
            Rejection::invalid(
                "invalid_time",
                format!("{name} must be RFC 3339 (2026-12-01T03:00:00Z) or integer UTC µs"),
            )
        })
}

impl Query {
    /// The one index this query reads: the most specific filter given.
    fn index(&self) -> EventIndex {
        if let Some(s) = &self.source {
            EventIndex::Source(s.clone())
        } else if let Some(d) = &self.device {
            EventIndex::Stream(stream_of(d))
        } else if let Some(t) = &self.event_type {
            EventIndex::Type(t.clone())
        } else if let Some(min) = self.min_severity.filter(|s| s.rank() > 0) {
            EventIndex::MinSeverity(min.rank())
        } else {
            EventIndex::All
        }
    }

    fn wants(&self, ts: i64, author: &str, body: &EventBody) -> bool {
        let ev = &body.event;
        self.source.as_ref().is_none_or(|s| *s == ev.source)
            && self.event_type.as_ref().is_none_or(|t| *t == ev.event_type)
            && self
                .min_severity
                .is_none_or(|m| ev.severity.rank() >= m.rank())
            && self
                .device
                .as_ref()
                .is_none_or(|d| author == Author::device(d).to_string())
            && self.since_us.is_none_or(|t| ts >= t)
            && self.until_us.is_none_or(|t| ts <= t)
    }
}

/// Events matching `q`, through the event indexes: cost follows the events read, never the size
/// of the log around them. A time window narrows the seq range of whichever index is read (`ts`
/// never decreases along the log). At most [`SCAN_LIMIT`] index rows are read; `Page::next` says
/// where to go on.
pub fn list(log: &Log, q: &Query) -> Result<Page, ListError> {
    let rtx = log.read()?;
    let mut lo = q.after.saturating_add(1);
    let mut hi = q.before.map_or(u64::MAX, |b| b.saturating_sub(1));
    if q.since_us.is_some() || q.until_us.is_some() {
        let window = rtx.event_time_window(
            q.since_us.unwrap_or(i64::MIN),
            q.until_us.unwrap_or(i64::MAX),
        )?;
        let Some((first, last)) = window else {
            return Ok(Page::default());
        };
        lo = lo.max(first);
        hi = hi.min(last);
    }
    let index = q.index();
    // A minimum severity that the index read does not already give is checked on the severity
    // index before any entry is read.
    let severity_check = q
        .min_severity
        .map(Severity::rank)
        .filter(|&r| r > 0 && !matches!(index, EventIndex::MinSeverity(_)));
    let newest_first = q.newest_first;
    let mut out = Vec::new();
    let mut scanned = 0usize;
    // Index rows are read in growing chunks, so a page that fills early reads little of the index.
    let mut chunk = q.limit.saturating_mul(2).clamp(64, SCAN_LIMIT);
    while lo <= hi {
        let want = chunk.min(SCAN_LIMIT - scanned);
        let range = EventRange {
            lo,
            hi,
            newest_first,
            limit: want,
        };
        let seqs = rtx.event_seqs(&index, range)?;
        scanned += seqs.len();
        let full = seqs.len() >= want;
        let Some(&last) = seqs.last() else {
            break;
        };
        let mut candidates = seqs;
        if let Some(min) = severity_check {
            rtx.retain_min_severity(&mut candidates, min)?;
        }
        for &seq in &candidates {
            let Some(e) = log.entry_of_kind(&rtx, seq, KIND_EVENT)? else {
                continue;
            };
            let body: EventBody = serde_json::from_slice(&e.body)
                .map_err(|source| ListError::Body { seq, source })?;
            if q.wants(e.ts, &e.author, &body) {
                out.push(StoredEvent {
                    seq,
                    ts_us: e.ts,
                    body,
                });
                if out.len() >= q.limit {
                    let more = full || seq != last;
                    return Ok(Page {
                        events: out,
                        next: more.then_some(seq),
                    });
                }
            }
        }
        if !full {
            break;
        }
        if scanned >= SCAN_LIMIT {
            return Ok(Page {
                events: out,
                next: Some(last),
            });
        }
        if newest_first {
            let Some(h) = last.checked_sub(1) else {
                break;
            };
            hi = h;
        } else {
            let Some(l) = last.checked_add(1) else {
                break;
            };
            lo = l;
        }
        chunk = chunk.saturating_mul(4);
    }
    Ok(Page {
        events: out,
        next: None,
    })
}

/// One event entry with its place in the chain, as the event viewer's detail pane shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventEntry {
    pub seq: u64,
    pub ts_us: i64,
    pub kind: String,
    pub stream: String,
    pub author: String,
    /// Hash of the previous entry, hex.
    pub prev: String,
    /// This entry's chain hash, hex.
    pub hash: String,
    pub body: EventBody,
}

/// The event at `seq`, or `None` when that entry is absent or not an event.
pub fn entry(log: &Log, seq: u64) -> Result<Option<EventEntry>, ListError> {
    let rtx = log.read()?;
    let Some(e) = log.entry_of_kind(&rtx, seq, KIND_EVENT)? else {
        return Ok(None);
    };
    let body: EventBody =
        serde_json::from_slice(&e.body).map_err(|source| ListError::Body { seq, source })?;
    Ok(Some(EventEntry {
        seq,
        ts_us: e.ts,
        kind: e.kind,
        stream: e.stream,
        author: e.author,
        prev: hex::encode(e.prev),
        hash: hex::encode(e.hash),
        body,
    }))
}

/// Index rows one backfill job writes; a job is one commit, so the writer is never held long.
const BACKFILL_BATCH: u64 = 2_000;

/// After the v4 migration, indexes the events that were in the log before it; after v5, gives
/// every already indexed event its severity row. Small commits through the writer; a no-op once
/// done (and for stores created at v5).
pub async fn backfill(log: &Log) -> Result<(), ListError> {
    backfill_v4(log).await?;
    backfill_severity(log).await
}

async fn backfill_v4(log: &Log) -> Result<(), ListError> {
    let mut from = 1u64;
    loop {
        let rtx = log.read()?;
        let Some(to) = rtx.event_backfill_to()? else {
            return Ok(());
        };
        let hi = to.min(from.saturating_add(BACKFILL_BATCH - 1));
        let mut rows = Vec::new();
        for seq in from..=hi {
            let Some(e) = log.entry_of_kind(&rtx, seq, KIND_EVENT)? else {
                continue;
            };
            if let Ok(body) = serde_json::from_slice::<EventBody>(&e.body) {
                let rank = body.event.severity.rank();
                rows.push((seq, e.ts, body.event.source, body.event.event_type, rank));
            }
        }
        drop(rtx);
        let done = hi >= to;
        log.submit(move |tx| {
            for (seq, ts, source, event_type, rank) in &rows {
                tx.views().put_event_index(*seq, *ts, source, event_type)?;
                tx.views().put_event_severity(*seq, *rank)?;
            }
            tx.views()
                .set_event_backfill_to(if done { None } else { Some(to) })?;
            Ok(())
        })
        .await?;
        if done {
            tracing::info!(through = to, "event index backfilled");
            return Ok(());
        }
        from = hi + 1;
    }
}

/// v5: events indexed before the severity index existed get their row. Every event written by
/// this build has one already, so the walk ends at the newest event seen when it starts.
async fn backfill_severity(log: &Log) -> Result<(), ListError> {
    let rtx = log.read()?;
    if rtx.event_severity_indexed()? {
        return Ok(());
    }
    let to = rtx.last_event_seq()?.unwrap_or(0);
    drop(rtx);
    let mut after = 0u64;
    loop {
        let rtx = log.read()?;
        let seqs = rtx.event_seqs_after(after, BACKFILL_BATCH as usize)?;
        let mut rows = Vec::new();
        for &seq in seqs.iter().filter(|&&s| s <= to) {
            let Some(e) = log.entry_of_kind(&rtx, seq, KIND_EVENT)? else {
                continue;
            };
            if let Ok(body) = serde_json::from_slice::<EventBody>(&e.body) {
                rows.push((seq, body.event.severity.rank()));
            }
        }
        drop(rtx);
        let last = seqs.last().copied().unwrap_or(to);
        let done = seqs.len() < BACKFILL_BATCH as usize || last >= to;
        log.submit(move |tx| {
            for (seq, rank) in &rows {
                tx.views().put_event_severity(*seq, *rank)?;
            }
            if done {
                tx.views().set_event_severity_indexed()?;
            }
            Ok(())
        })
        .await?;
        if done {
            if to > 0 {
                tracing::info!(through = to, "event severity index backfilled");
            }
            return Ok(());
        }
        after = last;
    }
}
