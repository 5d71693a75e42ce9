//! `plantwire bench kpis`: the alarm KPI query over a scratch log of a million alarm transitions
//! (raise, ack, clear cycles of 2,000 conditions over 4 weeks), in process, p50/p99.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::alarms::{self, Command, Signal, kpis};
use crate::clock::{Clock, ManualClock};
use crate::config::AlarmsConfig;
use crate::log::{Author, Log, LogOptions};
use crate::store::Priority;

use super::{Latencies, percentiles};

#[derive(Debug, Clone)]
pub struct KpiBench {
    /// Directory for the scratch store (removed afterwards).
    pub dir: PathBuf,
    /// Alarm transitions to seed.
    pub transitions: u64,
    /// Runs of the fast query per range (the full read runs 3 times).
    pub runs: usize,
}

#[derive(Debug)]
pub struct KpiResult {
    pub name: String,
    pub annunciated: u64,
    pub latency: Latencies,
}

const SOURCES: u64 = 200;
const CONDITIONS: u64 = 10;
/// Transitions per commit while seeding, and the clock step between commits.
const PER_JOB: u64 = 999;
const STEP_US: i64 = 40 * 60_000_000;
const T0: i64 = 1_893_456_000_000_000;

/// Seeds `n` transitions: each job raises, acks and clears 333 conditions in turn.
async fn seed(log: &Log, clock: &ManualClock, n: u64) -> anyhow::Result<()> {
    let cfg = AlarmsConfig::default();
    let by = Author::device("plc-bench");
    let op = Author::user("olga");
    let mut done = 0u64;
    let mut next = 0u64;
    while done < n {
        let count = PER_JOB.min(n - done) / 3;
        if count == 0 {
            break;
        }
        let first = next;
        next += count;
        let (cfg, by, op) = (cfg.clone(), by.clone(), op.clone());
        log.submit(move |tx| {
            for i in first..first + count {
                let c = i % (SOURCES * CONDITIONS);
                let signal = |active| Signal {
                    source: format!("line-{}", c / CONDITIONS),
                    condition: format!("cond-{}", c % CONDITIONS),
                    active,
                    priority: Some(Priority::ALL[1 + (i % 4) as usize]),
                    message: None,
                    attributes: Default::default(),
                    latched: None,
                    suppressed: None,
                };
                let applied = alarms::apply_in_tx(tx, &by, &signal(true))?;
                if let Some(a) = applied.alarm() {
                    let id = a.id;
                    alarms::act_in_tx(tx, &cfg, &op, id, &Command::Ack { comment: None })?;
                }
                alarms::apply_in_tx(tx, &by, &signal(false))?;
            }
            Ok(())
        })
        .await?;
        done += count * 3;
        clock.advance_us(STEP_US);
    }
    Ok(())
}

/// Seeds a scratch log, then times the KPI query over the whole range and over its last 24 h.
pub async fn run(b: &KpiBench) -> anyhow::Result<(f64, Vec<KpiResult>)> {
    let opts = LogOptions {
        cache_bytes: 64 << 20,
        queue_capacity: 64,
        max_batch: 64,
        hub_capacity: 16,
        clock_step_us: i64::MAX,
        quick_repair: false,
    };
    let clock = Arc::new(ManualClock::new(T0));
    let (_scratch, log) = super::scratch_log(&b.dir, "kpis", &opts, clock.clone())?;
    let seeding = Instant::now();
    seed(&log, &clock, b.transitions).await?;
    let seed_secs = seeding.elapsed().as_secs_f64();
    let end = clock.now_us();
    let day = 24 * 3600 * 1_000_000;
    let mut out = Vec::new();
    type Read = fn(&Log, i64, i64, &alarms::AlarmScope) -> Result<kpis::Kpis, alarms::ReadError>;
    let shapes: [(&str, i64, Read, usize); 3] = [
        ("whole range, KPI rows", T0, kpis::kpis_fast, b.runs),
        ("last 24 h, KPI rows", end - day, kpis::kpis_fast, b.runs),
        ("whole range, full read (before)", T0, kpis::kpis_full, 3),
    ];
    for (name, since, read, runs) in shapes {
        let mut lat = Vec::with_capacity(runs);
        let mut annunciated = 0;
        for _ in 0..runs {
            let log = log.clone();
            let t = Instant::now();
            let k = tokio::task::spawn_blocking(move || {
                read(&log, since, end, &alarms::AlarmScope::All)
            })
            .await??;
            lat.push(t.elapsed().as_micros() as u64);
            annunciated = k.annunciated;
        }
        out.push(KpiResult {
            name: name.to_string(),
            annunciated,
            latency: percentiles(lat),
        });
    }
    log.close().await;
    Ok((seed_secs, out))
}
