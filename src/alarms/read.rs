//! Reading alarms: the current occurrences with filters, one alarm with its journal (its stream),
//! the history of transitions by time, and the live-socket audience of the `alarms` domain.

use std::collections::HashMap;

use serde::Serialize;

use crate::audience::{Audience, SiteWide, Viewer};
use crate::log::{Entry, Log};
use crate::store::{AlarmRow, LogRecord, Priority, ReadTx, StoreError};

use super::machine::{State, state_of};
use super::scope::AlarmScope;
use super::{AlarmEntry, KIND_PREFIX, stream_of};

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Entry(#[from] crate::log::read::ReadError),
    #[error("entry {seq} is indexed as an alarm entry but its body is not one: {source}")]
    Body {
        seq: u64,
        #[source]
        source: serde_json::Error,
    },
}

/// One alarm as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AlarmView {
    pub state: State,
    pub shelved: bool,
    #[serde(flatten)]
    pub alarm: AlarmRow,
}

impl From<AlarmRow> for AlarmView {
    fn from(alarm: AlarmRow) -> Self {
        Self {
            state: state_of(&alarm),
            shelved: alarm.shelf.is_some(),
            alarm,
        }
    }
}

/// What a listing narrows to.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Without it, alarms back to normal are left out unless shelved or out of service.
    pub state: Option<State>,
    pub priority: Option<Priority>,
    pub source: Option<String>,
    pub shelved: Option<bool>,
}

/// The newest occurrence of every condition that matches and is in `scope`, highest priority
/// first, then newest.
pub fn list(log: &Log, f: &Filter, scope: &AlarmScope) -> Result<Vec<AlarmView>, ReadError> {
    let rtx = log.read()?;
    let mut out: Vec<AlarmView> = rtx
        .alarm_currents(f.source.as_deref())?
        .into_iter()
        .filter(|r| scope.sees(&r.source))
        .map(AlarmView::from)
        .filter(|v| match f.state {
            Some(s) => v.state == s,
            None => v.state != State::Normal || v.shelved || v.alarm.out_of_service.is_some(),
        })
        .filter(|v| f.priority.is_none_or(|p| v.alarm.priority == p))
        .filter(|v| f.shelved.is_none_or(|s| v.shelved == s))
        .collect();
    out.sort_by(|a, b| {
        b.alarm
            .priority
            .cmp(&a.alarm.priority)
            .then(b.alarm.raised_at_us.cmp(&a.alarm.raised_at_us))
            .then(b.alarm.id.cmp(&a.alarm.id))
    });
    Ok(out)
}

/// One transition in an alarm's journal.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JournalItem {
    pub seq: u64,
    pub ts_us: i64,
    pub kind: String,
    /// `user:<name>`, `device:<name>` or `system`.
    pub by: String,
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Most journal entries one read returns (the newest are kept).
const MAX_JOURNAL: usize = 1000;

fn body(e: &Entry) -> Result<AlarmEntry, ReadError> {
    serde_json::from_slice(&e.body).map_err(|source| ReadError::Body { seq: e.seq, source })
}

/// Whether alarm `id` exists and `scope` sees it (an incident opened from it shows its source,
/// condition and attributes, so opening one needs the alarm in scope).
pub fn sees(log: &Log, id: u64, scope: &AlarmScope) -> Result<bool, StoreError> {
    Ok(log
        .read()?
        .alarm(id)?
        .is_some_and(|r| scope.sees(&r.source)))
}

/// Alarm `id` with its journal, oldest first; `None` also when it is out of `scope`.
pub fn get(
    log: &Log,
    id: u64,
    scope: &AlarmScope,
) -> Result<Option<(AlarmView, Vec<JournalItem>)>, ReadError> {
    let rtx = log.read()?;
    let Some(row) = rtx.alarm(id)?.filter(|r| scope.sees(&r.source)) else {
        return Ok(None);
    };
    let head = log.head(&rtx)?;
    let mut seqs = rtx.stream_seqs_newest(&stream_of(id), 0, head, MAX_JOURNAL)?;
    seqs.reverse();
    let mut journal = Vec::with_capacity(seqs.len());
    for seq in seqs {
        let Some(e) = log.entry(&rtx, seq)? else {
            continue;
        };
        let b = body(&e)?;
        journal.push(JournalItem {
            seq,
            ts_us: e.ts,
            kind: e.kind,
            by: e.author,
            state: b.state,
            note: b.note,
        });
    }
    Ok(Some((row.into(), journal)))
}

/// What a history read asks for.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
    pub source: Option<String>,
    pub priority: Option<Priority>,
    /// Only transitions after this seq (the `next` of the page before).
    pub after: Option<u64>,
    pub limit: usize,
}

/// One transition in the history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryItem {
    pub seq: u64,
    pub ts_us: i64,
    pub kind: String,
    pub by: String,
    pub id: u64,
    pub source: String,
    pub condition: String,
    pub priority: Priority,
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One page of the history: `next` is set whenever more may follow (ask again with
/// `after = next`).
#[derive(Debug, Clone, Default)]
pub struct HistoryPage {
    pub items: Vec<HistoryItem>,
    pub next: Option<u64>,
}

/// Index rows one history read visits at most.
const SCAN_LIMIT: usize = 50_000;

/// Alarm transitions logged in the time range, oldest first, at most `q.limit` per page. At most
/// [`SCAN_LIMIT`] index rows are read; `next` says where to go on, so a wide filtered range is
/// never cut short silently. Transitions of alarms out of `scope` are left out.
pub fn history(log: &Log, q: &HistoryQuery, scope: &AlarmScope) -> Result<HistoryPage, ReadError> {
    let rtx = log.read()?;
    let until = q.until_us.unwrap_or(i64::MAX);
    let mut from = (q.since_us.unwrap_or(i64::MIN), 0u64);
    if let Some(after) = q.after {
        // `ts` never decreases along the log, so the cursor entry's time bounds the rest.
        let after_ts = match log.entry(&rtx, after)? {
            Some(e) => e.ts,
            None => i64::MIN,
        };
        from = from.max((after_ts, after.saturating_add(1)));
    }
    let mut out = Vec::new();
    let mut scanned = 0usize;
    let mut chunk = q.limit.saturating_mul(2).clamp(64, SCAN_LIMIT);
    loop {
        let want = chunk.min(SCAN_LIMIT - scanned);
        let rows = rtx.alarm_times_from(from, until, want)?;
        scanned += rows.len();
        let full = rows.len() >= want;
        let Some(&(last_ts, last)) = rows.last() else {
            break;
        };
        for &(_, seq) in &rows {
            if q.after.is_some_and(|a| seq <= a) {
                continue;
            }
            let Some(e) = log.entry(&rtx, seq)? else {
                continue;
            };
            let b = body(&e)?;
            if q.source.as_ref().is_some_and(|s| *s != b.alarm.source)
                || !scope.sees(&b.alarm.source)
                || q.priority.is_some_and(|p| p != b.alarm.priority)
            {
                continue;
            }
            out.push(HistoryItem {
                seq,
                ts_us: e.ts,
                kind: e.kind,
                by: e.author,
                id: b.id,
                source: b.alarm.source,
                condition: b.alarm.condition,
                priority: b.alarm.priority,
                state: b.state,
                note: b.note,
            });
            if out.len() >= q.limit {
                let more = full || seq != last;
                return Ok(HistoryPage {
                    items: out,
                    next: more.then_some(seq),
                });
            }
        }
        if !full {
            break;
        }
        if scanned >= SCAN_LIMIT {
            return Ok(HistoryPage {
                items: out,
                next: Some(last),
            });
        }
        let Some(l) = last.checked_add(1) else {
            break;
        };
        from = (last_ts, l);
        chunk = chunk.saturating_mul(4);
    }
    Ok(HistoryPage {
        items: out,
        next: None,
    })
}

/// The alarm domain's kinds on a socket.
pub const KINDS: &[&str] = &[KIND_PREFIX];

/// The alarm domain's audience factory, registered in the composition root as domain `alarms`.
/// Everyone signed in sees every alarm transition in their [`AlarmScope`]; replay reads the
/// alarm index; for a narrowed viewer, replay and `admit` leave out the alarms out of scope.
pub fn audience(rtx: &ReadTx, viewer: &Viewer) -> Result<Box<dyn Audience>, StoreError> {
    let index = SiteWide(|rtx, lo, hi, limit| rtx.alarm_seqs(lo, hi, limit));
    Ok(Box::new(Scoped {
        scope: AlarmScope::of(rtx, &viewer.user, viewer.role)?,
        user: viewer.user.clone(),
        index,
    }))
}

/// The alarms audience of one socket: the alarm index, narrowed to the viewer's scope, which
/// follows the grant entries passing through the socket.
struct Scoped {
    scope: AlarmScope,
    user: String,
    index: SiteWide,
}

impl Audience for Scoped {
    fn observe(&mut self, e: &Entry) {
        self.scope.follow(&self.user, e);
    }

    fn admit(&mut self, e: &Entry) -> bool {
        match self.scope {
            AlarmScope::All => true,
            // An undecodable alarm entry is not shown to a narrowed viewer.
            AlarmScope::Sites(_) => serde_json::from_slice::<AlarmEntry>(&e.body)
                .is_ok_and(|b| self.scope.sees(&b.alarm.source)),
        }
    }

    fn replay(
        &self,
        rtx: &ReadTx,
        since: u64,
        head: u64,
        room: usize,
    ) -> Result<Option<Vec<u64>>, StoreError> {
        let Some(mut seqs) = self.index.replay(rtx, since, head, room)? else {
            return Ok(None);
        };
        if self.scope != AlarmScope::All {
            // Each entry's stream names its occurrence, whose row names the source: only the
            // record's clear header and the alarm rows are read, never a body.
            let mut seen: HashMap<u64, bool> = HashMap::new();
            let mut keep = Vec::with_capacity(seqs.len());
            for seq in seqs {
                let Some(raw) = rtx.log_raw(seq)? else {
                    continue;
                };
                let Some(id) = LogRecord::decode(&raw)
                    .ok()
                    .and_then(|r| r.stream.strip_prefix("alarms/")?.parse::<u64>().ok())
                else {
                    continue;
                };
                let visible = match seen.get(&id) {
                    Some(v) => *v,
                    None => {
                        let v = rtx
                            .alarm(id)?
                            .is_some_and(|row| self.scope.sees(&row.source));
                        seen.insert(id, v);
                        v
                    }
                };
                if visible {
                    keep.push(seq);
                }
            }
            seqs = keep;
        }
        Ok(Some(seqs))
    }
}

/// One CSV field of text someone wrote: the event export's formula guard and RFC 4180 quoting.
fn csv_field(s: &str) -> String {
    crate::events::export::csv_field(&crate::events::export::text_cell(s))
}

/// The history as CSV with a header row.
pub fn history_csv(items: &[HistoryItem]) -> String {
    let mut out = String::from("seq,ts_us,kind,by,id,source,condition,priority,state,note\n");
    for i in items {
        let state = serde_json::to_value(i.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let row = [
            i.seq.to_string(),
            i.ts_us.to_string(),
            csv_field(&i.kind),
            csv_field(&i.by),
            i.id.to_string(),
            csv_field(&i.source),
            csv_field(&i.condition),
            i.priority.as_str().to_string(),
            state,
            csv_field(i.note.as_deref().unwrap_or("")),
        ];
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

/// How many alarms stand, wait for an acknowledgement and are shelved now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub standing: u64,
    pub unacked: u64,
    pub shelved: u64,
}

/// The instantaneous counts (for the Prometheus gauges), from the current occurrences.
pub fn counts(log: &Log) -> Result<Counts, ReadError> {
    let rows = log.read()?.alarm_currents(None)?;
    let n = |f: &dyn Fn(&AlarmRow) -> bool| rows.iter().filter(|r| f(r)).count() as u64;
    Ok(Counts {
        standing: n(&|r| r.active),
        unacked: n(&|r| !r.acked),
        shelved: n(&|r| r.shelf.is_some()),
    })
}
