//! The alarm state machine as one pure function (no I/O, no clock): an occurrence and an action
//! in; the next occurrence and the kind of the one entry that records it out.

use crate::error::Rejection;
use crate::store::{AlarmRow, OutOfService, Priority, Shelf, ShelveMode};

/// What happens to an alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The process input as a device, a rule or a person reports it. `None` fields keep what
    /// the alarm has.
    Signal {
        active: bool,
        priority: Option<Priority>,
        message: Option<String>,
        latched: Option<bool>,
        suppressed: Option<bool>,
    },
    Ack,
    /// `until_us` is when a timed shelve ends, or the server maximum for a one-shot shelve.
    Shelve {
        mode: ShelveMode,
        until_us: i64,
        reason: String,
    },
    /// By hand: the alarm comes back acknowledged (ISA-18.2 §11.7.3).
    Unshelve,
    /// The shelve timer ran out: the alarm comes back unacknowledged if it is active.
    Expire,
    OutOfService {
        reason: String,
    },
    ReturnToService,
    /// Ends a latched alarm whose input has cleared.
    Reset,
    Comment,
}

/// The facts a step needs besides the row.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub now_us: i64,
    /// The stored author (`user:alice`, `device:plc-1`, `system`).
    pub by: &'a str,
    /// The id a new occurrence gets (the seq of the entry about to record it).
    pub new_id: u64,
    /// The condition, for a first occurrence.
    pub source: &'a str,
    pub condition: &'a str,
}

/// The result of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing changes; nothing is written.
    Unchanged,
    /// One entry of `kind` records the transition to `row`.
    Changed {
        kind: &'static str,
        row: Box<AlarmRow>,
    },
}

pub const KIND_RAISE: &str = "alarm.raise";
pub const KIND_CLEAR: &str = "alarm.clear";
pub const KIND_PRIORITY: &str = "alarm.priority";
pub const KIND_SUPPRESS: &str = "alarm.suppress";
pub const KIND_LATCH: &str = "alarm.latch";
pub const KIND_ACK: &str = "alarm.ack";
pub const KIND_SHELVE: &str = "alarm.shelve";
pub const KIND_UNSHELVE: &str = "alarm.unshelve";
pub const KIND_EXPIRE: &str = "alarm.expire";
pub const KIND_OOS: &str = "alarm.oos";
pub const KIND_RTS: &str = "alarm.rts";
pub const KIND_RESET: &str = "alarm.reset";
pub const KIND_COMMENT: &str = "alarm.comment";

/// The priority a condition gets when its first raise names none.
pub const DEFAULT_PRIORITY: Priority = Priority::Medium;

/// The state the two bits give.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Normal,
    Unack,
    Acked,
    RtnUnack,
}

pub fn state_of(row: &AlarmRow) -> State {
    match (row.active, row.acked) {
        (false, true) => State::Normal,
        (true, false) => State::Unack,
        (true, true) => State::Acked,
        (false, false) => State::RtnUnack,
    }
}

/// One transition. A refusal changes nothing.
pub fn step(prev: Option<&AlarmRow>, action: &Action, ctx: &Ctx<'_>) -> Result<Step, Rejection> {
    let (kind, mut row) = match action {
        Action::Signal {
            active,
            priority,
            message,
            latched,
            suppressed,
        } => match signal(
            prev,
            *active,
            *priority,
            message,
            *latched,
            *suppressed,
            ctx,
        ) {
            Some(t) => t,
            None => return Ok(Step::Unchanged),
        },
        other => {
            let Some(p) = prev else {
                return Err(no_such_alarm());
            };
            let mut row = p.clone();
            let kind = command(&mut row, other, ctx)?;
            match kind {
                Some(k) => (k, row),
                None => return Ok(Step::Unchanged),
            }
        }
    };
    row.updated_at_us = ctx.now_us;
    if row.is_normal()
        && row
            .shelf
            .as_ref()
            .is_some_and(|s| s.mode == ShelveMode::OneShot)
    {
        row.shelf = None;
    }
    Ok(Step::Changed {
        kind,
        row: Box::new(row),
    })
}

pub fn no_such_alarm() -> Rejection {
    Rejection::not_found("no_such_alarm", "no such alarm")
}

fn signal(
    prev: Option<&AlarmRow>,
    active: bool,
    priority: Option<Priority>,
    message: &Option<String>,
    latched: Option<bool>,
    suppressed: Option<bool>,
    ctx: &Ctx<'_>,
) -> Option<(&'static str, AlarmRow)> {
    if active && prev.is_none_or(AlarmRow::is_normal) {
        // A new occurrence; the condition's settings and lasting overlays carry over.
        let mut row = AlarmRow {
            id: ctx.new_id,
            source: prev.map_or(ctx.source, |p| p.source.as_str()).to_string(),
            condition: prev
                .map_or(ctx.condition, |p| p.condition.as_str())
                .to_string(),
            occurrence: prev.map_or(1, |p| p.occurrence + 1),
            previous: prev.map(|p| p.id),
            priority: priority
                .or(prev.map(|p| p.priority))
                .unwrap_or(DEFAULT_PRIORITY),
            message: message.clone().unwrap_or_default(),
            input_active: true,
            active: true,
            acked: false,
            latched: latched.or(prev.map(|p| p.latched)).unwrap_or(false),
            suppressed: suppressed.or(prev.map(|p| p.suppressed)).unwrap_or(false),
            shelf: prev.and_then(|p| p.shelf.clone()),
            out_of_service: prev.and_then(|p| p.out_of_service.clone()),
            raised_at_us: ctx.now_us,
            cleared_at_us: None,
            acked_at_us: None,
            acked_by: None,
            updated_at_us: ctx.now_us,
            last_seq: 0,
        };
        if row
            .shelf
            .as_ref()
            .is_some_and(|s| s.mode == ShelveMode::OneShot)
        {
            row.shelf = None;
        }
        return Some((KIND_RAISE, row));
    }
    let mut row = prev?.clone();
    let mut kind = None;
    if active != row.input_active {
        row.input_active = active;
        if active {
            row.active = true;
            row.cleared_at_us = None;
            kind = Some(KIND_RAISE);
        } else {
            if !row.latched {
                row.active = false;
                row.cleared_at_us = Some(ctx.now_us);
            }
            kind = Some(KIND_CLEAR);
        }
    }
    if let Some(p) = priority
        && p != row.priority
    {
        row.priority = p;
        kind.get_or_insert(KIND_PRIORITY);
    }
    if let Some(s) = suppressed
        && s != row.suppressed
    {
        row.suppressed = s;
        kind.get_or_insert(KIND_SUPPRESS);
    }
    if let Some(l) = latched
        && l != row.latched
    {
        row.latched = l;
        if !l && !row.input_active && row.active {
            row.active = false;
            row.cleared_at_us = Some(ctx.now_us);
        }
        kind.get_or_insert(KIND_LATCH);
    }
    let kind = kind?;
    if let Some(m) = message {
        row.message.clone_from(m);
    }
    Some((kind, row))
}

fn command(
    row: &mut AlarmRow,
    action: &Action,
    ctx: &Ctx<'_>,
) -> Result<Option<&'static str>, Rejection> {
    let kind = match action {
        Action::Signal { .. } => return Ok(None),
        Action::Ack => {
            if row.acked {
                return Err(Rejection::conflict(
                    "already_acked",
                    "the alarm is already acknowledged",
                ));
            }
            acknowledge(row, ctx);
            KIND_ACK
        }
        Action::Shelve {
            mode,
            until_us,
            reason,
        } => {
            if row.shelf.is_some() {
                return Err(Rejection::conflict(
                    "already_shelved",
                    "the alarm is already shelved; unshelve it first",
                ));
            }
            if *mode == ShelveMode::OneShot && row.is_normal() {
                return Err(Rejection::conflict(
                    "alarm_normal",
                    "a one-shot shelve needs an alarm that is not back to normal",
                ));
            }
            row.shelf = Some(Shelf {
                mode: *mode,
                until_us: *until_us,
                reason: reason.clone(),
                by: ctx.by.to_string(),
                at_us: ctx.now_us,
            });
            KIND_SHELVE
        }
        Action::Unshelve => {
            if row.shelf.take().is_none() {
                return Err(Rejection::conflict(
                    "not_shelved",
                    "the alarm is not shelved",
                ));
            }
            if !row.acked {
                acknowledge(row, ctx);
            }
            KIND_UNSHELVE
        }
        Action::Expire => {
            if row.shelf.as_ref().is_none_or(|s| s.until_us > ctx.now_us) {
                return Ok(None);
            }
            row.shelf = None;
            if row.active {
                row.acked = false;
                row.acked_at_us = None;
                row.acked_by = None;
            }
            KIND_EXPIRE
        }
        Action::OutOfService { reason } => {
            if row.out_of_service.is_some() {
                return Err(Rejection::conflict(
                    "already_out_of_service",
                    "the alarm is already out of service",
                ));
            }
            row.out_of_service = Some(OutOfService {
                reason: reason.clone(),
                by: ctx.by.to_string(),
                at_us: ctx.now_us,
            });
            KIND_OOS
        }
        Action::ReturnToService => {
            if row.out_of_service.take().is_none() {
                return Err(Rejection::conflict(
                    "not_out_of_service",
                    "the alarm is in service",
                ));
            }
            KIND_RTS
        }
        Action::Reset => {
            if !(row.latched && row.active && !row.input_active) {
                return Err(Rejection::conflict(
                    "nothing_to_reset",
                    "only a latched alarm whose input has cleared can be reset",
                ));
            }
            row.active = false;
            row.cleared_at_us = Some(ctx.now_us);
            KIND_RESET
        }
        Action::Comment => KIND_COMMENT,
    };
    Ok(Some(kind))
}

fn acknowledge(row: &mut AlarmRow, ctx: &Ctx<'_>) {
    row.acked = true;
    row.acked_at_us = Some(ctx.now_us);
    row.acked_by = Some(ctx.by.to_string());
}
