//! `plantwire bench query`: filtered event listings over a scratch log of a million entries
//! (events of 100 devices among chat entries), in process, p50/p99 per query shape.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::clock::SystemClock;
use crate::config::EventsConfig;
use crate::events::{self, AttrValue, EventIn, Query, Severity};
use crate::log::{Author, Log, LogOptions, NewEntry};

use super::{Latencies, percentiles};

#[derive(Debug, Clone)]
pub struct QueryBench {
    /// Directory for the scratch store (removed afterwards).
    pub dir: PathBuf,
    /// Log entries to seed; 4 of every 5 are events.
    pub entries: u64,
    /// Runs of each query shape.
    pub runs: usize,
}

#[derive(Debug)]
pub struct QueryResult {
    pub name: &'static str,
    pub found: usize,
    pub latency: Latencies,
}

const DEVICES: u64 = 100;
const EVENTS_PER_BATCH: u64 = 1000;
const NOISE_PER_BATCH: u64 = 250;

/// The severity of the `n`th event: 1 % critical, 4 % error, 10 % warning, the rest info.
fn severity(n: u64) -> Severity {
    match n % 100 {
        0 => Severity::Critical,
        1..=4 => Severity::Error,
        5..=14 => Severity::Warning,
        _ => Severity::Info,
    }
}

async fn seed(log: &Log, entries: u64) -> anyhow::Result<(i64, i64)> {
    let limits = EventsConfig {
        max_batch: EVENTS_PER_BATCH as usize,
        ..EventsConfig::default()
    };
    let rounds = entries / (EVENTS_PER_BATCH + NOISE_PER_BATCH);
    let first_us = crate::clock::Clock::now_us(&SystemClock);
    let mut n = 0u64;
    for round in 0..rounds {
        let device = format!("dev-{}", round % DEVICES);
        let batch: Vec<EventIn> = (0..EVENTS_PER_BATCH)
            .map(|i| {
                n += 1;
                let mut attributes = BTreeMap::new();
                attributes.insert("n".to_string(), AttrValue::Int(n as i64));
                attributes.insert("bar".to_string(), AttrValue::Float(1.0 + i as f64 / 10.0));
                EventIn {
                    source: format!("{device}/sensor-{}", i % 8),
                    event_type: if i % 10 == 0 {
                        "pressure.high"
                    } else {
                        "reading"
                    }
                    .to_string(),
                    severity: severity(n),
                    message: format!("reading {n} from {device}"),
                    attributes,
                    condition: None,
                    state: None,
                    occurred_at_us: None,
                }
            })
            .collect();
        let by = Author::device(&device);
        events::publish(log, &limits, &by, &events::stream_of(&device), batch).await?;
        log.submit(move |tx| {
            for k in 0..NOISE_PER_BATCH {
                tx.append(NewEntry::json(
                    "chat.message",
                    "conv/g-noise",
                    &Author::user("alice"),
                    &serde_json::json!({"type": "message", "conv": "g-noise", "key": format!("k{round}-{k}"), "text": "noise", "mentions": []}),
                )?)?;
            }
            Ok(())
        })
        .await?;
    }
    Ok((first_us, crate::clock::Clock::now_us(&SystemClock)))
}

/// Seeds a scratch log, then times each query shape `runs` times (a fresh read snapshot each).
pub async fn run(b: &QueryBench) -> anyhow::Result<(f64, Vec<QueryResult>)> {
    let opts = LogOptions {
        cache_bytes: 64 << 20,
        queue_capacity: 64,
        max_batch: 64,
        hub_capacity: 16,
        clock_step_us: i64::MAX,
        quick_repair: false,
    };
    let (_scratch, log) = super::scratch_log(&b.dir, "query", &opts, Arc::new(SystemClock))?;
    let seeding = Instant::now();
    let (first_us, last_us) = seed(&log, b.entries).await?;
    let seed_secs = seeding.elapsed().as_secs_f64();
    let mid_us = first_us + (last_us - first_us) / 2;
    let q = |f: &dyn Fn(&mut Query)| {
        let mut q = Query {
            newest_first: true,
            limit: 100,
            ..Query::default()
        };
        f(&mut q);
        q
    };
    let shapes: Vec<(&'static str, Query)> = vec![
        ("newest 100, no filter", q(&|_| {})),
        ("device=dev-42", q(&|q| q.device = Some("dev-42".into()))),
        (
            "severity=critical",
            q(&|q| q.min_severity = Some(Severity::Critical)),
        ),
        (
            "severity=error&type=pressure.high",
            q(&|q| {
                q.min_severity = Some(Severity::Error);
                q.event_type = Some("pressure.high".into());
            }),
        ),
        (
            "device=dev-42&severity=critical",
            q(&|q| {
                q.device = Some("dev-42".into());
                q.min_severity = Some(Severity::Critical);
            }),
        ),
        (
            "source=dev-7/sensor-3&since=mid",
            q(&|q| {
                q.source = Some("dev-7/sensor-3".into());
                q.since_us = Some(mid_us);
                q.newest_first = false;
            }),
        ),
        (
            "severity=warning&since=mid&until=mid+1s",
            q(&|q| {
                q.min_severity = Some(Severity::Warning);
                q.since_us = Some(mid_us);
                q.until_us = Some(mid_us + 1_000_000);
            }),
        ),
    ];
    let mut out = Vec::new();
    for (name, query) in shapes {
        let mut lat = Vec::with_capacity(b.runs);
        let mut found = 0;
        for _ in 0..b.runs {
            let log = log.clone();
            let query = query.clone();
            let t = Instant::now();
            let page = tokio::task::spawn_blocking(move || events::list(&log, &query)).await??;
            lat.push(t.elapsed().as_micros() as u64);
            found = page.events.len();
        }
        out.push(QueryResult {
            name,
            found,
            latency: percentiles(lat),
        });
    }
    log.close().await;
    Ok((seed_secs, out))
}
