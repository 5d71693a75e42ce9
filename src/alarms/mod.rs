//! Alarms the way a control room runs them (ISA-18.2 / IEC 62682): conditions raised and cleared
//! by devices and people, acknowledged, shelved, taken out of service; every transition one entry.
//!
//! The seam for other domains is [`apply_in_tx`] (inside a `log.submit` job) and
//! [`priority_of`] (the event severity → alarm priority mapping). The pure state machine is in
//! `machine.rs`, reads in `read.rs`, the shelve timer in `timers.rs`.

pub mod escalation;
pub mod kpis;
mod machine;
pub mod ntfy;
mod read;
pub mod scope;
pub mod system;
pub mod system_checks;
pub mod timers;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::AlarmsConfig;
use crate::error::Rejection;
use crate::events::{AttrValue, ConditionState, EventIn, Severity};
use crate::log::{AppendError, Author, Log, NewEntry, SubmitError, Tx};
use crate::store::StoreError;

pub use crate::store::{AlarmRow, Priority, ShelveMode};
pub use machine::{Action, State, no_such_alarm, state_of};
pub use read::{
    AlarmView, Counts, Filter, HistoryItem, HistoryPage, HistoryQuery, JournalItem, KINDS,
    ReadError, audience, counts, get, history, history_csv, list, sees,
};
pub use scope::AlarmScope;

/// The kinds of alarm entries all start with this (the `alarms` socket domain claims them).
pub const KIND_PREFIX: &str = "alarm.";

/// The stream of one occurrence's entries.
pub fn stream_of(id: u64) -> String {
    format!("alarms/{id}")
}

/// The alarm priority an event of `severity` maps to: debug is diagnostic (journaled, never
/// annunciated), info and notice low, warning medium, error high, critical critical.
pub fn priority_of(severity: Severity) -> Priority {
    match severity {
        Severity::Debug => Priority::Diagnostic,
        Severity::Info | Severity::Notice => Priority::Low,
        Severity::Warning => Priority::Medium,
        Severity::Error => Priority::High,
        Severity::Critical => Priority::Critical,
    }
}

/// The alarm an event speaks of: an event with a `condition` raises it (or, with state
/// `cleared`, clears it) on the event's source, a raise at the priority of its severity. Events without
/// a condition are only events.
pub fn signal_of_event(e: &EventIn) -> Option<Signal> {
    let condition = e.condition.clone()?;
    let active = e.state != Some(ConditionState::Cleared);
    Some(Signal {
        source: e.source.clone(),
        condition,
        active,
        // A clear keeps the alarm's priority (a clear by ntfy sequence id has no severity).
        priority: active.then(|| priority_of(e.severity)),
        message: (!e.message.is_empty()).then(|| e.message.clone()),
        attributes: e.attributes.clone(),
        latched: None,
        suppressed: None,
    })
}

/// A condition's input as a device, a rule or a person reports it.
#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Signal {
    /// What raised it, e.g. `pump-7`.
    pub source: String,
    /// The condition on that source, e.g. `pressure.high`.
    pub condition: String,
    /// `true` raises, `false` clears.
    pub active: bool,
    #[serde(default)]
    pub priority: Option<Priority>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, AttrValue>,
    /// The condition's latching setting: a latched alarm stays active until reset.
    #[serde(default)]
    pub latched: Option<bool>,
    /// Suppressed by design (set by a device or a rule).
    #[serde(default)]
    pub suppressed: Option<bool>,
}

/// What an operator does to one alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ack {
        comment: Option<String>,
    },
    Shelve {
        mode: ShelveMode,
        minutes: Option<u32>,
        reason: String,
    },
    Unshelve,
    OutOfService {
        reason: String,
    },
    ReturnToService,
    Reset,
    Comment {
        text: String,
    },
}

/// The body of every `alarm.*` entry: the occurrence as it is after the transition, and what
/// the actor said (an ack comment, a shelve or out-of-service reason, a comment's text).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlarmEntry {
    pub id: u64,
    pub state: State,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, AttrValue>,
    pub alarm: AlarmRow,
}

/// One recorded transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub seq: u64,
    pub kind: &'static str,
    pub alarm: AlarmRow,
}

/// What applying a signal or command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Changed(Transition),
    /// Nothing changed and nothing was written; the condition's current occurrence, if any.
    Unchanged(Option<AlarmRow>),
}

impl Applied {
    pub fn transition(&self) -> Option<&Transition> {
        match self {
            Applied::Changed(t) => Some(t),
            Applied::Unchanged(_) => None,
        }
    }

    pub fn alarm(&self) -> Option<&AlarmRow> {
        match self {
            Applied::Changed(t) => Some(&t.alarm),
            Applied::Unchanged(a) => a.as_ref(),
        }
    }
}

const MAX_NAME: usize = 128;
const MAX_MESSAGE: usize = 4096;
const MAX_NOTE: usize = 1000;
const MAX_ATTRS: usize = 64;

fn invalid(msg: &str) -> Rejection {
    Rejection::invalid("invalid_alarm", msg)
}

/// The server's own sources: its system alarms (`plantwire`) and, at HQ, its alarms about a site
/// (`site/<name>`). Only the server raises or clears them, so no device or person can fake or
/// silence one (a cleared "history rewritten", say).
fn reserved_source(source: &str) -> bool {
    source == system::SOURCE || scope::site_of(source).is_some()
}

/// Checks a signal's fields against the limits.
pub fn validate(s: &Signal) -> Result<(), Rejection> {
    if s.source.is_empty() || s.source.len() > MAX_NAME || s.source.chars().any(char::is_control) {
        return Err(invalid(
            "source must be 1-128 characters without control characters",
        ));
    }
    let cond_ok = !s.condition.is_empty()
        && s.condition.len() <= MAX_NAME
        && s.condition
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'));
    if !cond_ok {
        return Err(invalid(
            "condition must be 1-128 characters of A-Z a-z 0-9 . _ - : /",
        ));
    }
    if s.message.as_ref().is_some_and(|m| m.len() > MAX_MESSAGE) {
        return Err(invalid("message is longer than 4096 bytes"));
    }
    if s.attributes.len() > MAX_ATTRS
        || s.attributes.iter().any(|(k, v)| {
            k.is_empty()
                || k.len() > 64
                || matches!(v, AttrValue::Float(f) if !f.is_finite())
                || matches!(v, AttrValue::Text(t) if t.len() > 1024)
        })
    {
        return Err(invalid(
            "at most 64 attributes, names of 1-64 bytes, text of at most 1024 bytes, finite numbers",
        ));
    }
    Ok(())
}

fn note_ok(field: &str, text: &str, required: bool) -> Result<(), Rejection> {
    if required && text.trim().is_empty() {
        return Err(Rejection::invalid(
            "reason_required",
            format!("{field} must not be empty"),
        ));
    }
    if text.chars().count() > MAX_NOTE {
        return Err(invalid("comments and reasons are at most 1000 characters"));
    }
    Ok(())
}

/// Checks a command against the limits and the config before anything is queued.
pub fn check_command(cfg: &AlarmsConfig, cmd: &Command) -> Result<(), Rejection> {
    match cmd {
        Command::Ack { comment } => note_ok("comment", comment.as_deref().unwrap_or(""), false),
        Command::Shelve {
            mode,
            minutes,
            reason,
        } => {
            note_ok("reason", reason, true)?;
            match (mode, minutes) {
                (ShelveMode::Timed, None | Some(0)) => Err(Rejection::invalid(
                    "invalid_alarm",
                    "a timed shelve needs minutes (1 or more)",
                )),
                (ShelveMode::Timed, Some(m)) if *m > cfg.max_shelve_minutes => {
                    Err(Rejection::invalid(
                        "shelve_too_long",
                        format!("the longest shelve is {} minutes", cfg.max_shelve_minutes),
                    ))
                }
                (ShelveMode::OneShot, Some(_)) => Err(Rejection::invalid(
                    "invalid_alarm",
                    "a one-shot shelve takes no minutes",
                )),
                _ => Ok(()),
            }
        }
        Command::OutOfService { reason } => note_ok("reason", reason, true),
        Command::Comment { text } => note_ok("text", text, true),
        Command::Unshelve | Command::ReturnToService | Command::Reset => Ok(()),
    }
}

/// Applies `action` to `prev` and records it: one entry on the occurrence's stream and the
/// views, in the job's transaction. Checks every rule before it writes.
fn record(
    tx: &mut Tx<'_>,
    by: &Author,
    prev: Option<AlarmRow>,
    action: &Action,
    key: (&str, &str),
    note: Option<String>,
    attributes: &BTreeMap<String, AttrValue>,
) -> Result<Applied, AppendError> {
    let by_s = by.to_string();
    let new_id = tx.next_seq();
    let ctx = machine::Ctx {
        now_us: tx.now_us(),
        by: &by_s,
        new_id,
        source: key.0,
        condition: key.1,
    };
    let (kind, mut row) = match machine::step(prev.as_ref(), action, &ctx)? {
        machine::Step::Unchanged => return Ok(Applied::Unchanged(prev)),
        machine::Step::Changed { kind, row } => (kind, *row),
    };
    row.last_seq = new_id;
    let body = AlarmEntry {
        id: row.id,
        state: state_of(&row),
        note,
        attributes: attributes.clone(),
        alarm: row.clone(),
    };
    let entry = NewEntry::json(kind, &stream_of(row.id), by, &body)?;
    let seq = tx.append(entry)?;
    row.last_seq = seq;
    let ts = tx.now_us();
    let kpi = kpis::facts_of(kind, &row);
    tx.views().put_alarm(prev.as_ref(), &row, (seq, ts), kpi)?;
    Ok(Applied::Changed(Transition {
        seq,
        kind,
        alarm: row,
    }))
}

/// The seam for adapters: applies `signal` inside a `log.submit` job (validated here too), as
/// `by`. A repeat that changes nothing writes nothing.
pub fn apply_in_tx(tx: &mut Tx<'_>, by: &Author, signal: &Signal) -> Result<Applied, AppendError> {
    validate(signal)?;
    if *by != Author::System && reserved_source(&signal.source) {
        return Err(Rejection::forbidden(
            "reserved_source",
            "sources `plantwire` and `site/…` are the server's own system alarms",
        )
        .into());
    }
    let prev = match tx
        .views()
        .alarm_current(&signal.source, &signal.condition)?
    {
        Some(id) => tx.views().alarm(id)?,
        None => None,
    };
    let action = Action::Signal {
        active: signal.active,
        priority: signal.priority,
        message: signal.message.clone(),
        latched: signal.latched,
        suppressed: signal.suppressed,
    };
    record(
        tx,
        by,
        prev,
        &action,
        (&signal.source, &signal.condition),
        None,
        &signal.attributes,
    )
}

/// Raises or clears a condition as `by`.
pub async fn raise(log: &Log, by: &Author, signal: Signal) -> Result<Applied, SubmitError> {
    validate(&signal).map_err(SubmitError::Rejected)?;
    let by = by.clone();
    log.submit(move |tx| apply_in_tx(tx, &by, &signal)).await
}

/// Applies an operator's command to alarm `id` inside a job.
pub fn act_in_tx(
    tx: &mut Tx<'_>,
    cfg: &AlarmsConfig,
    by: &Author,
    id: u64,
    cmd: &Command,
) -> Result<Transition, AppendError> {
    check_command(cfg, cmd)?;
    let Some(row) = tx.views().alarm(id)? else {
        return Err(machine::no_such_alarm().into());
    };
    let current = tx.views().alarm_current(&row.source, &row.condition)?;
    if current != Some(id) && !matches!(cmd, Command::Comment { .. }) {
        return Err(Rejection::conflict(
            "superseded",
            "a newer occurrence of this condition exists; act on that one",
        )
        .into());
    }
    let now = tx.now_us();
    let max_us = i64::from(cfg.max_shelve_minutes) * 60_000_000;
    let (action, note) = match cmd {
        Command::Ack { comment } => {
            let comment = comment.clone().filter(|c| !c.trim().is_empty());
            if !row.acked && comment.is_none() && cfg.comment_required.contains(&row.priority) {
                return Err(Rejection::invalid(
                    "comment_required",
                    format!(
                        "acknowledging a {} alarm needs a comment",
                        row.priority.as_str()
                    ),
                )
                .into());
            }
            (Action::Ack, comment)
        }
        Command::Shelve {
            mode,
            minutes,
            reason,
        } => {
            let until_us = match minutes {
                Some(m) => now.saturating_add(i64::from(*m) * 60_000_000),
                None => now.saturating_add(max_us),
            };
            (
                Action::Shelve {
                    mode: *mode,
                    until_us,
                    reason: reason.clone(),
                },
                Some(reason.clone()),
            )
        }
        Command::Unshelve => (Action::Unshelve, None),
        Command::OutOfService { reason } => (
            Action::OutOfService {
                reason: reason.clone(),
            },
            Some(reason.clone()),
        ),
        Command::ReturnToService => (Action::ReturnToService, None),
        Command::Reset => (Action::Reset, None),
        Command::Comment { text } => (Action::Comment, Some(text.clone())),
    };
    let key = (row.source.clone(), row.condition.clone());
    match record(
        tx,
        by,
        Some(row),
        &action,
        (&key.0, &key.1),
        note,
        &BTreeMap::new(),
    )? {
        Applied::Changed(t) => Ok(t),
        // Every command either changes the alarm or is refused.
        Applied::Unchanged(_) => Err(StoreError::Malformed {
            what: "alarm command without effect",
        }
        .into()),
    }
}

/// Applies `cmd` to alarm `id` as `by`.
pub async fn act(
    log: &Log,
    cfg: &AlarmsConfig,
    by: &Author,
    scope: &AlarmScope,
    id: u64,
    cmd: Command,
) -> Result<Transition, SubmitError> {
    check_command(cfg, &cmd).map_err(SubmitError::Rejected)?;
    let (cfg, by, scope) = (cfg.clone(), by.clone(), scope.clone());
    log.submit(move |tx| {
        in_scope(tx, id, &scope)?;
        act_in_tx(tx, &cfg, &by, id, &cmd)
    })
    .await
}

/// An alarm out of the actor's scope (HQ's alarm about a site it has no grant on) is answered as
/// one that does not exist: nobody acts on, or learns of, another tenant's alarm.
fn in_scope(tx: &mut Tx<'_>, id: u64, scope: &AlarmScope) -> Result<(), AppendError> {
    match tx.views().alarm(id)? {
        Some(row) if !scope.sees(&row.source) => Err(machine::no_such_alarm().into()),
        _ => Ok(()),
    }
}

/// What acknowledging one of several alarms did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckResult {
    Acked(Box<Transition>),
    Refused(Rejection),
}

/// Most alarms one "ack visible" request may name.
pub const MAX_ACK_IDS: usize = 10_000;

/// Acknowledges each of `ids` in one commit; one refused (already acked, unknown) does not stop
/// the others.
pub async fn ack_many(
    log: &Log,
    cfg: &AlarmsConfig,
    by: &Author,
    scope: &AlarmScope,
    ids: Vec<u64>,
    comment: Option<String>,
) -> Result<Vec<(u64, AckResult)>, SubmitError> {
    let cmd = Command::Ack { comment };
    check_command(cfg, &cmd).map_err(SubmitError::Rejected)?;
    if ids.is_empty() || ids.len() > MAX_ACK_IDS {
        return Err(SubmitError::Rejected(Rejection::invalid(
            "invalid_alarm",
            format!("name 1-{MAX_ACK_IDS} alarm ids"),
        )));
    }
    let (cfg, by, scope) = (cfg.clone(), by.clone(), scope.clone());
    log.submit(move |tx| {
        let mut out = Vec::with_capacity(ids.len());
        for &id in &ids {
            match in_scope(tx, id, &scope).and_then(|()| act_in_tx(tx, &cfg, &by, id, &cmd)) {
                Ok(t) => out.push((id, AckResult::Acked(Box::new(t)))),
                Err(AppendError::Rejected(r)) => out.push((id, AckResult::Refused(r))),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    })
    .await
}

#[cfg(test)]
mod kpi_tests;
#[cfg(test)]
mod tests;
