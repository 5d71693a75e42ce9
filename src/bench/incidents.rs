//! `plantwire bench incidents`: in process on a scratch store, a flood of alarms raised by
//! closed-loop publishers while the incident rules follow the log; a tenth of the alarms match the
//! rule, and each opens one incident. Reports the open latency (raise answered → `incident.opened`
//! committed, p50/p99) and the cost of checking one reply against a template (µs per reply), then
//! the end-to-end answer latency.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::alarms::{self, Signal};
use crate::chat::Actor;
use crate::clock::SystemClock;
use crate::config::{IncidentRule, IncidentsConfig};
use crate::incidents::templates::{self, NewTemplate, TemplateDef};
use crate::incidents::{IncidentBody, KIND_OPENED, answers, lifecycle};
use crate::log::{Author, LogOptions};
use crate::store::{Priority, Role};

use super::{Latencies, percentiles};

#[derive(Debug, Clone)]
pub struct IncidentBench {
    /// Directory for the scratch store (removed afterwards).
    pub dir: PathBuf,
    /// Alarms in the flood.
    pub alarms: usize,
    /// Every `every`-th alarm matches the rule (10: 1,000 incidents of 10,000 alarms).
    pub every: usize,
    /// Concurrent raisers.
    pub publishers: usize,
    /// Replies checked in the pure validation loop.
    pub replies: usize,
}

#[derive(Debug)]
pub struct IncidentResult {
    pub alarms: usize,
    pub incidents: usize,
    pub flood_secs: f64,
    /// Raise answered → incident opened (committed), µs.
    pub open: Latencies,
    /// Checking one full reply (8 questions of every type but file), µs per reply.
    pub check_us: f64,
    /// `answers` end to end in process (check, job, durable commit), µs.
    pub answer: Latencies,
}

fn template() -> NewTemplate {
    let v = json!({
        "id": "pump-trip", "name": "Pump trip",
        "title": "{source} tripped at {attr.bar} bar ({priority})",
        "questions": [
            {"id": "wo", "label": "Work order for {source}", "type": "text", "pattern": "WO-\\d{4,6}", "required": true},
            {"id": "bar", "label": "Pressure", "type": "number", "min": 0, "max": 16, "decimals": 1},
            {"id": "cause", "label": "Cause", "type": "choice", "options": ["seal", "bearing", "motor", "other"]},
            {"id": "checks", "label": "Checks", "type": "multi_choice", "options": ["valves", "filter", "motor"]},
            {"id": "restarted", "label": "Restarted", "type": "boolean"},
            {"id": "at", "label": "Restarted at", "type": "datetime"},
            {"id": "notes", "label": "Notes", "type": "text", "max_length": 2000},
            {"id": "flow", "label": "Flow", "type": "number", "unit": "m3/h"}
        ]
    });
    serde_json::from_value(v).unwrap_or_else(|_| NewTemplate {
        id: None,
        name: String::new(),
        title: String::new(),
        questions: Vec::new(),
    })
}

fn reply() -> BTreeMap<String, serde_json::Value> {
    serde_json::from_value(json!({
        "wo": "WO-12345", "bar": 12.4, "cause": "seal", "checks": ["valves", "motor"],
        "restarted": true, "at": "2026-12-01T06:30:00Z",
        "notes": "seal replaced, pump restarted and running at nominal pressure", "flow": 41.5
    }))
    .unwrap_or_default()
}

/// Runs the flood and the reply checks on a scratch store under `b.dir`.
pub async fn run(b: &IncidentBench) -> anyhow::Result<IncidentResult> {
    if b.alarms == 0 || b.every == 0 || b.publishers == 0 {
        bail!("--alarms, --every and --publishers must be at least 1");
    }
    let opts = LogOptions {
        cache_bytes: 64 << 20,
        queue_capacity: 1024,
        max_batch: 256,
        hub_capacity: 4096,
        clock_step_us: i64::MAX,
        quick_repair: false,
    };
    let (_scratch, log) = super::scratch_log(&b.dir, "incidents", &opts, Arc::new(SystemClock))?;
    let admin = Author::user("bench-admin");
    templates::create(&log, &admin, template())
        .await
        .context("creating the template")?;
    let cfg = IncidentsConfig {
        rules: vec![IncidentRule {
            name: "pumps".into(),
            min_priority: Priority::High,
            source: "pump-*".into(),
            template: "pump-trip".into(),
            members: Vec::new(),
            roster: None,
        }],
        ..IncidentsConfig::default()
    };
    let stop = CancellationToken::new();
    let rules = tokio::spawn(crate::incidents::rules::run(log.clone(), cfg, stop.clone()));
    // The rules task starts at the head: wait until it has written its cursor.
    while log.read()?.incident_rules_cursor()?.is_none() {
        tokio::task::yield_now().await;
    }

    let expected = b.alarms.div_ceil(b.every);
    let mut follower = log.follow(log.head(&log.read()?)?)?;
    let answered: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..b.publishers {
        let (log, answered, every, total, publishers) = (
            log.clone(),
            answered.clone(),
            b.every,
            b.alarms,
            b.publishers,
        );
        tasks.push(tokio::spawn(async move {
            let by = Author::device("plc-bench");
            let mut i = p;
            while i < total {
                let matching = i % every == 0;
                let mut attributes = BTreeMap::new();
                attributes.insert("bar".to_string(), crate::events::AttrValue::Float(12.4));
                let signal = Signal {
                    source: if matching {
                        format!("pump-{i}")
                    } else {
                        format!("valve-{i}")
                    },
                    condition: "pressure.high".into(),
                    active: true,
                    priority: Some(Priority::High),
                    message: Some("alarm flood benchmark".into()),
                    attributes,
                    latched: None,
                    suppressed: None,
                };
                let applied = alarms::raise(&log, &by, signal).await?;
                if matching && let Some(a) = applied.alarm() {
                    answered
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .insert(a.id, Instant::now());
                }
                i += publishers;
            }
            anyhow::Ok(())
        }));
    }
    let mut open = Vec::with_capacity(expected);
    let mut ids = Vec::with_capacity(expected);
    while open.len() < expected {
        let e = follower.next().await?;
        if e.kind != KIND_OPENED {
            continue;
        }
        let seen = Instant::now();
        if let Ok(IncidentBody::Opened {
            incident, alarms, ..
        }) = serde_json::from_slice(&e.body)
        {
            ids.push(incident);
            // The raise may be answered a moment after the rule saw its commit: that counts as 0.
            let at = alarms
                .first()
                .and_then(|a| answered.lock().ok().and_then(|m| m.get(a).copied()));
            open.push(at.map_or(0, |t| seen.saturating_duration_since(t).as_micros() as u64));
        }
    }
    for t in tasks {
        t.await??;
    }
    let flood_secs = started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = rules.await;

    // The pure check of one full reply against the pinned definition.
    let def: TemplateDef = {
        let rtx = log.read()?;
        let row = rtx.template("pump-trip")?.context("template")?;
        templates::version(&log, &rtx, &row, 1)?
            .context("version")?
            .template
    };
    let r = reply();
    let t = Instant::now();
    let mut ok = 0usize;
    for _ in 0..b.replies {
        ok += usize::from(answers::check(&def, &r).is_ok());
    }
    let check_us = t.elapsed().as_secs_f64() * 1e6 / b.replies.max(1) as f64;
    if ok != b.replies {
        bail!("the sample reply was refused");
    }

    // End to end: one reply to each of the first 1,000 incidents, as an admin.
    let actor = Actor {
        user: "bench-admin".into(),
        role: Role::Admin,
    };
    let mut answer = Vec::new();
    for id in ids.iter().take(1000) {
        let t = Instant::now();
        lifecycle::answer(
            &log,
            &actor,
            id,
            lifecycle::AnswerRequest { answers: r.clone() },
        )
        .await?;
        answer.push(t.elapsed().as_micros() as u64);
    }
    log.close().await;
    Ok(IncidentResult {
        alarms: b.alarms,
        incidents: open.len(),
        flood_secs,
        open: percentiles(open),
        check_us,
        answer: percentiles(answer),
    })
}
