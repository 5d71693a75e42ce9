//! On-call escalation: an alarm at or above a priority still unacknowledged after N minutes is
//! sent to each person on the roster as a direct message from `system`, then every M minutes.
//!
//! Contract (like the shelve timer's): one task per log; it reads the current alarms in a read
//! snapshot, never holding the writer while it scans or waits; each commit escalates at most
//! [`ESCALATION_BATCH`] alarms, each one `alarm.escalate` entry on the alarm's stream plus one
//! message per roster member, and records the notice in the escalation view, so a restart
//! neither repeats nor forgets a notice. It waits on the injectable clock.

use std::collections::BTreeMap;

use tokio_util::sync::CancellationToken;

use crate::chat::system_dm;
use crate::config::EscalationConfig;
use crate::log::{AppendError, Author, Log, NewEntry, SubmitError, Tx};
use crate::store::{AlarmRow, Priority, StoreError};

use super::{AlarmEntry, state_of, stream_of};

/// Most alarms one commit escalates.
pub const ESCALATION_BATCH: usize = 32;
/// The kind of an escalation entry.
pub const KIND_ESCALATE: &str = "alarm.escalate";

const MINUTE_US: i64 = 60_000_000;
/// How long the task waits after a failed round before it tries again (µs of the log's clock).
const RETRY_US: i64 = 5_000_000;

/// Whether `row` is an alarm the roster hears about: unacknowledged, annunciated (not shelved,
/// out of service, suppressed or diagnostic), at or above the configured priority.
fn eligible(cfg: &EscalationConfig, row: &AlarmRow) -> bool {
    !row.acked
        && row.priority != Priority::Diagnostic
        && row.priority >= cfg.min_priority
        && row.shelf.is_none()
        && row.out_of_service.is_none()
        && !row.suppressed
}

/// When alarm `row` with `sent` notices so far (`(count, last µs)`) is next due, if ever.
fn due_at(cfg: &EscalationConfig, row: &AlarmRow, sent: Option<(u32, i64)>) -> Option<i64> {
    match sent {
        None => Some(
            row.raised_at_us
                .saturating_add(i64::from(cfg.after_minutes) * MINUTE_US),
        ),
        Some(_) if cfg.repeat_minutes == 0 => None,
        Some((_, last)) => Some(last.saturating_add(i64::from(cfg.repeat_minutes) * MINUTE_US)),
    }
}

/// The text each roster member receives.
fn notice_text(row: &AlarmRow, n: u32, now_us: i64) -> String {
    let mins = now_us.saturating_sub(row.raised_at_us) / MINUTE_US;
    let again = if n > 1 {
        format!(" (notice {n})")
    } else {
        String::new()
    };
    format!(
        "Alarm {} unacknowledged for {mins} min{again}: {} / {} — {} [alarm {}]",
        row.priority.as_str(),
        row.source,
        row.condition,
        row.message,
        row.id
    )
}

/// Escalates alarm `id` inside the job if it is still due: one `alarm.escalate` entry and one
/// direct message per roster member. An alarm acknowledged meanwhile loses its view row.
fn escalate_in_tx(
    tx: &mut Tx<'_>,
    cfg: &EscalationConfig,
    roster: &[String],
    id: u64,
) -> Result<bool, AppendError> {
    let Some(row) = tx.views().alarm(id)? else {
        return Ok(false);
    };
    let sent = tx.views().alarm_escalation(id)?;
    if !eligible(cfg, &row) {
        if sent.is_some() {
            tx.views().remove_alarm_escalation(id)?;
        }
        return Ok(false);
    }
    let now = tx.now_us();
    if due_at(cfg, &row, sent).is_none_or(|d| d > now) {
        return Ok(false);
    }
    let n = sent.map_or(1, |(c, _)| c.saturating_add(1));
    let text = notice_text(&row, n, now);
    let mut told = Vec::new();
    for user in roster {
        let key = format!("alarm-{id}-{n}");
        if system_dm::send_in_tx(tx, user, &key, &text)?.is_some() {
            told.push(user.as_str());
        }
    }
    let body = AlarmEntry {
        id,
        state: state_of(&row),
        note: Some(format!("notice {n} to {}", told.join(", "))),
        attributes: BTreeMap::new(),
        alarm: row,
    };
    let seq = tx.append(NewEntry::json(
        KIND_ESCALATE,
        &stream_of(id),
        &Author::System,
        &body,
    )?)?;
    tx.views().put_alarm_escalation(id, n, seq, now)?;
    Ok(true)
}

/// What one scan of the current alarms found.
#[derive(Debug, Default)]
struct Scan {
    /// Due now.
    due: Vec<u64>,
    /// Escalated before, no longer eligible (acknowledged, shelved, …): their view rows go.
    done: Vec<u64>,
    /// The earliest time one not yet due will be.
    next: Option<i64>,
}

fn scan(log: &Log, cfg: &EscalationConfig, now: i64) -> Result<Scan, StoreError> {
    let rtx = log.read()?;
    let Scan {
        mut due,
        mut done,
        mut next,
    } = Scan::default();
    for row in rtx.alarm_currents(None)? {
        let sent = rtx.alarm_escalation(row.id)?;
        if !eligible(cfg, &row) {
            if sent.is_some() {
                done.push(row.id);
            }
            continue;
        }
        let Some(at) = due_at(cfg, &row, sent) else {
            continue;
        };
        if at <= now {
            due.push(row.id);
        } else {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
    }
    Ok(Scan { due, done, next })
}

/// Escalates every alarm due now, in commits of at most [`ESCALATION_BATCH`]; returns how many
/// were escalated and when the next one will be due (as far as the alarms standing now go).
pub async fn escalate_due(
    log: &Log,
    cfg: &EscalationConfig,
) -> Result<(usize, Option<i64>), SubmitError> {
    if cfg.roster.is_empty() {
        return Ok((0, None));
    }
    let roster: Vec<String> = cfg.roster.iter().map(|u| crate::users::key(u)).collect();
    let Scan { due, done, next } =
        scan(log, cfg, log.now_us()).map_err(|e| SubmitError::Storage(e.into()))?;
    for chunk in done.chunks(ESCALATION_BATCH) {
        let ids = chunk.to_vec();
        log.submit(move |tx| {
            for &id in &ids {
                tx.views().remove_alarm_escalation(id)?;
            }
            Ok(())
        })
        .await?;
    }
    let mut total = 0;
    for chunk in due.chunks(ESCALATION_BATCH) {
        let (cfg, roster, ids) = (cfg.clone(), roster.clone(), chunk.to_vec());
        total += log
            .submit(move |tx| {
                let mut n = 0;
                for &id in &ids {
                    n += usize::from(escalate_in_tx(tx, &cfg, &roster, id)?);
                }
                Ok(n)
            })
            .await?;
    }
    Ok((total, next))
}

/// Runs escalation until `stop`: at each wake escalates what is due, then sleeps until the next
/// notice is due or, at the latest, one `after_minutes` later (nothing raised after this wake can
/// be due before that).
pub async fn run(log: Log, cfg: EscalationConfig, stop: CancellationToken) {
    if cfg.roster.is_empty() {
        return;
    }
    let horizon = i64::from(cfg.after_minutes) * MINUTE_US;
    loop {
        let now = log.now_us();
        let wake_at = match escalate_due(&log, &cfg).await {
            Ok((n, next)) => {
                if n > 0 {
                    tracing::info!(escalated = n, "unacknowledged alarms escalated");
                }
                let latest = now.saturating_add(horizon);
                next.map_or(latest, |at| at.min(latest))
            }
            Err(SubmitError::ShuttingDown) => return,
            Err(e) => {
                tracing::warn!(error = %e, "alarm escalation failed; retrying");
                log.now_us().saturating_add(RETRY_US)
            }
        };
        let clock = log.clock().clone();
        tokio::select! {
            () = stop.cancelled() => return,
            () = clock.sleep_until(wake_at) => {}
        }
    }
}
