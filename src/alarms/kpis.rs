//! Alarm KPIs (ISA-18.2 / EEMUA 191) over a time range of the log: rates per 10 minutes, flood,
//! bad actors, chattering, stale, priority mix, time to ack; `compute` is pure, `kpis` reads
//! the KPI rows (fast) or, for entries logged before they existed, every alarm entry.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::log::Log;
use crate::store::{AlarmRow, KPI_ACK, KPI_ACTIVATION, KPI_ANNUNCIATED, Priority};

use super::AlarmEntry;
use super::machine::{KIND_ACK, KIND_RAISE};
use super::read::ReadError;
use super::scope::AlarmScope;

/// The period the rates count over: 10 minutes.
pub const PERIOD_US: i64 = 10 * 60_000_000;
/// More annunciations than this in one period is a flood.
pub const FLOOD_OVER: usize = 10;
/// Activations within this window that make an alarm chattering …
pub const CHATTER_WINDOW_US: i64 = 60_000_000;
/// … when there are at least this many.
pub const CHATTER_MIN: usize = 3;
/// Active longer than this is stale.
pub const STALE_US: i64 = 24 * 3600 * 1_000_000;
/// Ranges of at most this many periods carry the per-period counts (`per_10min`).
pub const MAX_BUCKETS: usize = 10_000;
/// Alarm entries one KPI read visits at most; more sets `truncated`.
const SCAN_LIMIT: usize = 2_000_000;

/// One alarm entry as the KPIs see it.
#[derive(Debug, Clone)]
pub struct Transition {
    pub ts_us: i64,
    pub kind: String,
    pub body: AlarmEntry,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BadActor {
    pub source: String,
    pub condition: String,
    pub count: u64,
    /// Share of all annunciations in the range, in percent.
    pub share_pct: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Chattering {
    pub source: String,
    pub condition: String,
    /// The most activations within any 60 s.
    pub max_in_60s: u64,
}

/// The KPIs of one range.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Kpis {
    pub since_us: i64,
    pub until_us: i64,
    /// Activations that were annunciated: not diagnostic, shelved, out of service or suppressed.
    pub annunciated: u64,
    /// 10-minute periods in the range (the last one may be partial).
    pub periods: u64,
    pub per_10min_avg: f64,
    pub per_10min_max: u64,
    /// Annunciations in each 10-minute period from `since`, for the rate chart; empty when the
    /// range has more than 10,000 periods.
    pub per_10min: Vec<u64>,
    /// Periods with more than 10 annunciations, in percent of all periods.
    pub periods_over_10_pct: f64,
    /// Time in flood (more than 10 annunciations in the 10 minutes before), in percent.
    pub flood_time_pct: f64,
    /// The 10 conditions with the most annunciations, most first.
    pub bad_actors: Vec<BadActor>,
    /// Their share of all annunciations, in percent.
    pub top10_share_pct: f64,
    /// Conditions with 3 or more activations within 60 s.
    pub chattering: Vec<Chattering>,
    /// Alarms active now for more than 24 h.
    pub stale: u64,
    /// Annunciations by priority.
    pub priority_mix: BTreeMap<Priority, u64>,
    /// Mean time from raise to acknowledgement of the acks in the range, in seconds.
    pub mean_time_to_ack_secs: Option<f64>,
    /// Alarms active now, and shelved now.
    pub standing: u64,
    pub shelved: u64,
    /// Set when the range held more alarm entries than one read visits.
    pub truncated: bool,
}

fn pct(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part * 100.0 / whole
    } else {
        0.0
    }
}

fn annunciated(kind: &str, a: &AlarmRow) -> bool {
    kind == KIND_RAISE
        && a.active
        && a.priority != Priority::Diagnostic
        && a.shelf.is_none()
        && a.out_of_service.is_none()
        && !a.suppressed
}

/// The KPI flags (`store::KPI_*`) of an entry of `kind` that left the occurrence as `row`: what
/// its KPI row records, 0 for entries the KPIs do not count.
pub fn facts_of(kind: &str, row: &AlarmRow) -> u8 {
    let mut f = 0;
    if kind == KIND_RAISE && row.active {
        f |= KPI_ACTIVATION;
        if annunciated(kind, row) {
            f |= KPI_ANNUNCIATED;
        }
    }
    if kind == KIND_ACK {
        f |= KPI_ACK;
    }
    f
}

/// What the KPIs use of one alarm entry.
#[derive(Debug, Clone, Copy)]
struct Point {
    ts_us: i64,
    flags: u8,
    priority: Priority,
    raised_at_us: i64,
}

/// Condition names by dense index, so the KPI loop counts in vectors instead of maps. One hash
/// of both names finds the index; the names themselves are compared only on a hit.
#[derive(Default)]
struct Names {
    ids: FnvMap<u64, Vec<u32>>,
    names: Vec<(String, String)>,
}

impl Names {
    fn id(&mut self, source: &str, condition: &str) -> usize {
        use std::hash::Hasher;
        let mut h = Fnv::default();
        h.write(source.as_bytes());
        h.write(&[0xff]);
        h.write(condition.as_bytes());
        let same = self.ids.entry(h.finish()).or_default();
        for &k in same.iter() {
            let (s, c) = &self.names[k as usize];
            if s == source && c == condition {
                return k as usize;
            }
        }
        let k = self.names.len();
        same.push(u32::try_from(k).unwrap_or(u32::MAX));
        self.names.push((source.to_string(), condition.to_string()));
        k
    }
}

/// The KPIs of `transitions` (oldest first, all within `[since_us, until_us]`) and the current
/// occurrences `now_rows` at `now_us`.
pub fn compute(
    transitions: &[Transition],
    since_us: i64,
    until_us: i64,
    now_rows: &[AlarmRow],
    now_us: i64,
) -> Kpis {
    let mut acc = Acc::new(since_us, until_us);
    for t in transitions {
        let a = &t.body.alarm;
        let key = acc.names.id(&a.source, &a.condition);
        acc.add(
            key,
            Point {
                ts_us: t.ts_us,
                flags: facts_of(&t.kind, a),
                priority: a.priority,
                raised_at_us: a.raised_at_us,
            },
        );
    }
    acc.finish(now_rows, now_us)
}

/// The KPIs of one range, taken in one pass over its entries (oldest first).
struct Acc {
    since_us: i64,
    until_us: i64,
    names: Names,
    buckets: Vec<u64>,
    /// Annunciation times, for the time in flood.
    times: Vec<i64>,
    /// Per condition: annunciations, activations still within 60 s of its newest, the most
    /// activations seen within 60 s.
    by_condition: Vec<u64>,
    recent: Vec<std::collections::VecDeque<i64>>,
    most: Vec<usize>,
    mix: BTreeMap<Priority, u64>,
    ack_sum: f64,
    acks: u64,
}

impl Acc {
    fn new(since_us: i64, until_us: i64) -> Acc {
        let duration = until_us.saturating_sub(since_us).max(1);
        let periods = usize::try_from((duration + PERIOD_US - 1) / PERIOD_US)
            .unwrap_or(1)
            .max(1);
        Acc {
            since_us,
            until_us,
            names: Names::default(),
            buckets: vec![0; periods],
            times: Vec::new(),
            by_condition: Vec::new(),
            recent: Vec::new(),
            most: Vec::new(),
            mix: BTreeMap::new(),
            ack_sum: 0.0,
            acks: 0,
        }
    }

    fn add(&mut self, k: usize, t: Point) {
        if k >= self.by_condition.len() {
            self.by_condition.resize(k + 1, 0);
            self.recent.resize(k + 1, Default::default());
            self.most.resize(k + 1, 0);
        }
        if t.flags & KPI_ACTIVATION != 0 {
            let window = &mut self.recent[k];
            window.push_back(t.ts_us);
            while window
                .front()
                .is_some_and(|&f| t.ts_us - f > CHATTER_WINDOW_US)
            {
                window.pop_front();
            }
            self.most[k] = self.most[k].max(window.len());
        }
        if t.flags & KPI_ACK != 0 {
            self.ack_sum += (t.ts_us - t.raised_at_us) as f64 / 1e6;
            self.acks += 1;
        }
        if t.flags & KPI_ANNUNCIATED == 0 {
            return;
        }
        let periods = self.buckets.len();
        let i = usize::try_from((t.ts_us - self.since_us) / PERIOD_US).unwrap_or(0);
        self.buckets[i.min(periods - 1)] += 1;
        self.times.push(t.ts_us);
        self.by_condition[k] += 1;
        *self.mix.entry(t.priority).or_default() += 1;
    }

    fn finish(self, now_rows: &[AlarmRow], now_us: i64) -> Kpis {
        let (since_us, until_us) = (self.since_us, self.until_us);
        let duration = until_us.saturating_sub(since_us).max(1);
        let periods = self.buckets.len();
        let times = &self.times;
        let total = times.len() as f64;
        // In flood at t when (t - 10 min, t] holds more than 10: from the 11th of such a run
        // until the first of it leaves the window.
        let mut flood_us = 0i64;
        let mut covered_to = i64::MIN;
        for j in FLOOD_OVER..times.len() {
            let start = times[j].max(covered_to).max(since_us);
            let end = (times[j - FLOOD_OVER] + PERIOD_US).min(until_us);
            if end > start {
                flood_us += end - start;
                covered_to = end;
            }
        }
        let names = &self.names.names;
        let mut actors: Vec<(&(String, String), u64)> = names
            .iter()
            .zip(self.by_condition.iter().copied())
            .filter(|(_, n)| *n > 0)
            .collect();
        actors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        actors.truncate(10);
        let bad_actors: Vec<BadActor> = actors
            .iter()
            .map(|((s, c), n)| BadActor {
                source: s.clone(),
                condition: c.clone(),
                count: *n,
                share_pct: pct(*n as f64, total),
            })
            .collect();
        let top10: u64 = actors.iter().map(|(_, n)| n).sum();
        let mut chattering: Vec<Chattering> = names
            .iter()
            .zip(self.most.iter().copied())
            .filter(|(_, m)| *m >= CHATTER_MIN)
            .map(|((source, condition), m)| Chattering {
                source: source.clone(),
                condition: condition.clone(),
                max_in_60s: m as u64,
            })
            .collect();
        chattering.sort_by(|a, b| (&a.source, &a.condition).cmp(&(&b.source, &b.condition)));
        let buckets = &self.buckets;
        Kpis {
            since_us,
            until_us,
            annunciated: times.len() as u64,
            periods: periods as u64,
            per_10min_avg: total / periods as f64,
            per_10min_max: buckets.iter().copied().max().unwrap_or(0),
            per_10min: if periods <= MAX_BUCKETS {
                buckets.clone()
            } else {
                Vec::new()
            },
            periods_over_10_pct: pct(
                buckets.iter().filter(|&&n| n > FLOOD_OVER as u64).count() as f64,
                periods as f64,
            ),
            flood_time_pct: pct(flood_us as f64, duration as f64),
            bad_actors,
            top10_share_pct: pct(top10 as f64, total),
            chattering,
            stale: now_rows
                .iter()
                .filter(|r| r.active && now_us - r.raised_at_us > STALE_US)
                .count() as u64,
            priority_mix: self.mix,
            mean_time_to_ack_secs: (self.acks > 0).then(|| self.ack_sum / self.acks as f64),
            standing: now_rows.iter().filter(|r| r.active).count() as u64,
            shelved: now_rows.iter().filter(|r| r.shelf.is_some()).count() as u64,
            truncated: false,
        }
    }
}

/// The KPIs of `[since_us, until_us]` from the log, with what stands now: from the KPI rows
/// when they cover the range, else from every alarm entry in it. Alarms out of `scope` count
/// nowhere.
pub fn kpis(
    log: &Log,
    since_us: i64,
    until_us: i64,
    scope: &AlarmScope,
) -> Result<Kpis, ReadError> {
    if log.read()?.alarm_kpis_cover(since_us, until_us)? {
        kpis_fast(log, since_us, until_us, scope)
    } else {
        kpis_full(log, since_us, until_us, scope)
    }
}

/// FNV-1a: condition names are short and come from our own store, so a cheap hash will do.
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FnvMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fnv>>;

/// The KPIs from the KPI rows alone: no entry is unsealed or decoded.
pub fn kpis_fast(
    log: &Log,
    since_us: i64,
    until_us: i64,
    scope: &AlarmScope,
) -> Result<Kpis, ReadError> {
    let rtx = log.read()?;
    let mut acc = Acc::new(since_us, until_us);
    let visited = rtx.alarm_kpi_facts(since_us, until_us, SCAN_LIMIT, |f| {
        if !scope.sees(f.source) {
            return;
        }
        let key = acc.names.id(f.source, f.condition);
        acc.add(
            key,
            Point {
                ts_us: f.ts_us,
                flags: f.flags,
                priority: f.priority,
                raised_at_us: f.raised_at_us,
            },
        );
    })?;
    let mut rows = rtx.alarm_currents(None)?;
    rows.retain(|r| scope.sees(&r.source));
    let mut k = acc.finish(&rows, log.now_us());
    k.truncated = visited >= SCAN_LIMIT;
    Ok(k)
}

/// The KPIs from every alarm entry in the range, unsealed and decoded.
pub fn kpis_full(
    log: &Log,
    since_us: i64,
    until_us: i64,
    scope: &AlarmScope,
) -> Result<Kpis, ReadError> {
    let rtx = log.read()?;
    let seqs = rtx.alarm_seqs_by_time(since_us, until_us, SCAN_LIMIT)?;
    let mut transitions = Vec::with_capacity(seqs.len());
    for &seq in &seqs {
        let Some(e) = log.entry(&rtx, seq)? else {
            continue;
        };
        let body: AlarmEntry =
            serde_json::from_slice(&e.body).map_err(|source| ReadError::Body { seq, source })?;
        if !scope.sees(&body.alarm.source) {
            continue;
        }
        transitions.push(Transition {
            ts_us: e.ts,
            kind: e.kind,
            body,
        });
    }
    let mut rows = rtx.alarm_currents(None)?;
    rows.retain(|r| scope.sees(&r.source));
    let mut k = compute(&transitions, since_us, until_us, &rows, log.now_us());
    k.truncated = seqs.len() >= SCAN_LIMIT;
    Ok(k)
}
