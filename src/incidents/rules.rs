//! Rules from config (`[[incidents.rules]]`): an alarm occurrence raised at or above a priority
//! from a matching source opens one incident with the rule's template and members.
//!
//! Contract: one task follows the log from a cursor kept in `meta`. For the new occurrences (the
//! `alarm.*` entries whose seq is the alarm's id) that a rule matches among the entries ready, one
//! job (at most [`OPEN_BATCH`] incidents) checks each alarm → incident link, opens the incidents
//! and moves the cursor; the link makes a replay after a crash, a retried raise or a second run
//! of the job open nothing twice.

use tokio_util::sync::CancellationToken;

use futures_util::FutureExt;

use super::open::{OpenRequest, Prepared, open_in_tx, prepare};
use crate::alarms::AlarmEntry;
use crate::config::{IncidentRule, IncidentsConfig};
use crate::log::{Entry, Log, SubmitError};
use crate::store::AlarmRow;

/// How many entries without a match pass before the cursor is written anyway.
const CURSOR_EVERY: u64 = 1024;

/// `*` matches any run of characters, `?` one; everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The first rule that matches `row`.
pub fn rule_for<'a>(rules: &'a [IncidentRule], row: &AlarmRow) -> Option<&'a IncidentRule> {
    rules
        .iter()
        .find(|r| row.priority >= r.min_priority && glob(&r.source, &row.source))
}

/// The occurrence `e` raised, if `e` is the entry that raised a new one.
fn new_occurrence(e: &Entry) -> Option<AlarmRow> {
    if !e.kind.starts_with(crate::alarms::KIND_PREFIX) {
        return None;
    }
    let body: AlarmEntry = serde_json::from_slice(&e.body).ok()?;
    (body.id == e.seq).then_some(body.alarm)
}

/// Most incidents one job opens: a flood's matches are opened in few commits.
pub const OPEN_BATCH: usize = 64;

/// What a rule asks of entry `e`: the opening, checked and prepared (`None`: nothing to open).
fn wanted(log: &Log, cfg: &IncidentsConfig, e: &Entry) -> Option<Prepared> {
    let row = new_occurrence(e)?;
    let rule = rule_for(&cfg.rules, &row)?;
    let req = OpenRequest {
        template: rule.template.clone(),
        alarm: Some(row.id),
        members: cfg.members_of(rule),
        ..OpenRequest::default()
    };
    match prepare(log, req, Some(rule.name.clone())) {
        Ok(p) => Some(p),
        Err(err) => {
            tracing::warn!(rule = %rule.name, alarm = row.id, error = %err, "incident rule could not open an incident");
            None
        }
    }
}

/// Opens `batch` in one job and moves the cursor to `seq` in the same commit; an occurrence that
/// already has its incident is skipped there.
pub async fn open_batch(log: &Log, batch: Vec<Prepared>, seq: u64) -> Result<(), SubmitError> {
    log.submit(move |tx| {
        for p in &batch {
            open_in_tx(tx, p, None, true)?;
        }
        tx.views().set_incident_rules_cursor(seq)?;
        Ok(())
    })
    .await
}

async fn save_cursor(log: &Log, seq: u64) -> Result<(), SubmitError> {
    log.submit(move |tx| Ok(tx.views().set_incident_rules_cursor(seq)?))
        .await
}

/// Follows the log until `stop`, opening incidents by rule. Without rules it does nothing.
pub async fn run(log: Log, cfg: IncidentsConfig, stop: CancellationToken) {
    if cfg.rules.is_empty() {
        return;
    }
    loop {
        match follow(&log, &cfg, &stop).await {
            Ok(()) | Err(SubmitError::ShuttingDown) => return,
            Err(e) => tracing::warn!(error = %e, "incident rules stopped; restarting"),
        }
        let clock = log.clock().clone();
        let at = log.now_us().saturating_add(1_000_000);
        tokio::select! {
            () = stop.cancelled() => return,
            () = clock.sleep_until(at) => {}
        }
    }
}

async fn follow(
    log: &Log,
    cfg: &IncidentsConfig,
    stop: &CancellationToken,
) -> Result<(), SubmitError> {
    let storage = |e: crate::store::StoreError| SubmitError::Storage(e.into());
    let rtx = log.read().map_err(storage)?;
    let start = match rtx.incident_rules_cursor().map_err(storage)? {
        Some(c) => c,
        None => {
            // First run: rules apply from now on, not to the alarms of the past.
            let head = log.head(&rtx).map_err(storage)?;
            save_cursor(log, head).await?;
            head
        }
    };
    drop(rtx);
    let mut follower = log.follow(start).map_err(storage)?;
    let mut saved = start;
    loop {
        let first = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            e = follower.next() => e,
        };
        // What else is ready now joins this entry (`next` is cancel-safe: nothing is lost).
        let mut ready = vec![first];
        while ready.len() < OPEN_BATCH * 16 {
            match follower.next().now_or_never() {
                Some(e) => ready.push(e),
                None => break,
            }
        }
        let mut batch = Vec::new();
        let mut last = saved;
        let mut lost = false;
        for e in ready {
            match e {
                Ok(e) => {
                    batch.extend(wanted(log, cfg, &e));
                    last = e.seq;
                }
                Err(crate::log::FollowError::Closed) => return Ok(()),
                Err(err) => {
                    tracing::warn!(error = %err, "incident rules lost the log; resuming");
                    lost = true;
                    break;
                }
            }
            if batch.len() >= OPEN_BATCH {
                open_batch(log, std::mem::take(&mut batch), last).await?;
                saved = last;
            }
        }
        if !batch.is_empty() {
            open_batch(log, batch, last).await?;
            saved = last;
        } else if last.saturating_sub(saved) >= CURSOR_EVERY {
            save_cursor(log, last).await?;
            saved = last;
        }
        if lost {
            follower = log.follow(saved).map_err(storage)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("pump-*", "pump-7"));
        assert!(glob("*", ""));
        assert!(glob("p?mp-*7", "pump-17"));
        assert!(!glob("pump-*", "valve-1"));
        assert!(!glob("pump-?", "pump-17"));
    }
}
