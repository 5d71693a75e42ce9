//! Alarm KPIs (ISA-18.2 / EEMUA 191) over a time range of the log: rates per 10 minutes, flood,
//! bad actors, chattering, stale, priority mix, time to ack; `compute` is pure, `kpis` reads.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::log::Log;
use crate::store::{AlarmRow, Priority};

use super::AlarmEntry;
use super::machine::{KIND_ACK, KIND_RAISE};
use super::read::ReadError;

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

fn annunciated(t: &Transition) -> bool {
    let a = &t.body.alarm;
    t.kind == KIND_RAISE
        && a.active
        && a.priority != Priority::Diagnostic
        && a.shelf.is_none()
        && a.out_of_service.is_none()
        && !a.suppressed
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
    let duration = until_us.saturating_sub(since_us).max(1);
    let periods = usize::try_from((duration + PERIOD_US - 1) / PERIOD_US)
        .unwrap_or(1)
        .max(1);
    let mut buckets = vec![0u64; periods];
    let mut times = Vec::new();
    let mut by_condition: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut activations: BTreeMap<(&str, &str), Vec<i64>> = BTreeMap::new();
    let mut mix = BTreeMap::new();
    let (mut ack_sum, mut acks) = (0f64, 0u64);
    for t in transitions {
        let a = &t.body.alarm;
        let key = (a.source.as_str(), a.condition.as_str());
        if t.kind == KIND_RAISE && a.active {
            activations.entry(key).or_default().push(t.ts_us);
        }
        if t.kind == KIND_ACK {
            ack_sum += (t.ts_us - a.raised_at_us) as f64 / 1e6;
            acks += 1;
        }
        if !annunciated(t) {
            continue;
        }
        let i = usize::try_from((t.ts_us - since_us) / PERIOD_US).unwrap_or(0);
        buckets[i.min(periods - 1)] += 1;
        times.push(t.ts_us);
        *by_condition.entry(key).or_default() += 1;
        *mix.entry(a.priority).or_default() += 1;
    }
    let total = times.len() as f64;
    // In flood at t when (t - 10 min, t] holds more than 10: from the 11th of such a run until
    // the first of it leaves the window.
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
    let mut actors: Vec<_> = by_condition.into_iter().collect();
    actors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    actors.truncate(10);
    let bad_actors: Vec<BadActor> = actors
        .iter()
        .map(|((s, c), n)| BadActor {
            source: s.to_string(),
            condition: c.to_string(),
            count: *n,
            share_pct: pct(*n as f64, total),
        })
        .collect();
    let top10: u64 = actors.iter().map(|(_, n)| n).sum();
    let chattering = activations
        .into_iter()
        .filter_map(|((s, c), ts)| {
            let mut most = 0;
            let mut lo = 0;
            for hi in 0..ts.len() {
                while ts[hi] - ts[lo] > CHATTER_WINDOW_US {
                    lo += 1;
                }
                most = most.max(hi - lo + 1);
            }
            (most >= CHATTER_MIN).then(|| Chattering {
                source: s.to_string(),
                condition: c.to_string(),
                max_in_60s: most as u64,
            })
        })
        .collect();
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
        priority_mix: mix,
        mean_time_to_ack_secs: (acks > 0).then(|| ack_sum / acks as f64),
        standing: now_rows.iter().filter(|r| r.active).count() as u64,
        shelved: now_rows.iter().filter(|r| r.shelf.is_some()).count() as u64,
        truncated: false,
    }
}

/// The KPIs of `[since_us, until_us]` from the log, with what stands now.
pub fn kpis(log: &Log, since_us: i64, until_us: i64) -> Result<Kpis, ReadError> {
    let rtx = log.read()?;
    let seqs = rtx.alarm_seqs_by_time(since_us, until_us, SCAN_LIMIT)?;
    let mut transitions = Vec::with_capacity(seqs.len());
    for &seq in &seqs {
        let Some(e) = log.entry(&rtx, seq)? else {
            continue;
        };
        let body: AlarmEntry =
            serde_json::from_slice(&e.body).map_err(|source| ReadError::Body { seq, source })?;
        transitions.push(Transition {
            ts_us: e.ts,
            kind: e.kind,
            body,
        });
    }
    let rows = rtx.alarm_currents(None)?;
    let mut k = compute(&transitions, since_us, until_us, &rows, log.now_us());
    k.truncated = seqs.len() >= SCAN_LIMIT;
    Ok(k)
}
