//! Reading incidents: the list (members see theirs, admins all) with filters, and one incident
//! with its pinned questions filled and its current answers (who answered what, when).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::templates::{self, FilledQuestion};
use super::{Context, IncidentBody, IncidentError, KIND_ANSWERED, KIND_OPENED, State, no_incident};
use crate::chat::Actor;
use crate::log::Log;
use crate::store::{IncidentRow, Priority, ReadTx};

/// Most incidents one list returns.
pub const MAX_LIST: usize = 500;

/// `GET /api/v1/incidents` filters.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub state: Option<State>,
    pub severity: Option<Priority>,
    pub assignee: Option<String>,
    /// Only incidents opened at most this many minutes ago.
    pub max_age_minutes: Option<u64>,
    /// Only incidents opened at least this many minutes ago.
    pub min_age_minutes: Option<u64>,
}

/// An incident in a list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Summary {
    pub id: String,
    pub conversation: String,
    pub title: String,
    pub state: State,
    pub severity: String,
    pub assignee: Option<String>,
    pub template: String,
    pub version: u32,
    pub alarms: Vec<u64>,
    pub events: Vec<u64>,
    pub opened_at_us: i64,
    pub opened_by: String,
}

impl From<&IncidentRow> for Summary {
    fn from(r: &IncidentRow) -> Self {
        Self {
            id: r.id.clone(),
            conversation: r.id.clone(),
            title: r.title.clone(),
            state: State::parse(&r.state).unwrap_or(State::Open),
            severity: r.severity.clone(),
            assignee: r.assignee.clone(),
            template: r.template.clone(),
            version: r.version,
            alarms: r.alarms.clone(),
            events: r.events.clone(),
            opened_at_us: r.opened_at_us,
            opened_by: r.opened_by.clone(),
        }
    }
}

/// Whether `actor` reads incident `id`: an active member, or a site admin.
pub fn may_read(rtx: &ReadTx, actor: &Actor, id: &str) -> Result<bool, IncidentError> {
    Ok(actor.is_admin() || rtx.member(id, &actor.user)?.is_some_and(|m| m.active))
}

/// The incidents `actor` may read that pass `f`, newest first.
pub fn list(log: &Log, actor: &Actor, f: &Filter) -> Result<Vec<Summary>, IncidentError> {
    let rtx = log.read()?;
    let now = log.now_us();
    let minutes = |m: u64| i64::try_from(m.saturating_mul(60_000_000)).unwrap_or(i64::MAX);
    let assignee = f.assignee.as_deref().map(crate::users::key);
    let mut rows = Vec::new();
    let mut failed = None;
    rtx.scan_incidents(|r| {
        let pass = f.state.is_none_or(|s| s.as_str() == r.state)
            && f.severity.is_none_or(|s| s.as_str() == r.severity)
            && assignee
                .as_ref()
                .is_none_or(|a| r.assignee.as_ref() == Some(a))
            && f.max_age_minutes
                .is_none_or(|m| now.saturating_sub(r.opened_at_us) <= minutes(m))
            && f.min_age_minutes
                .is_none_or(|m| now.saturating_sub(r.opened_at_us) >= minutes(m));
        if pass {
            match may_read(&rtx, actor, &r.id) {
                Ok(true) => rows.push(r),
                Ok(false) => {}
                Err(e) => {
                    failed = Some(e);
                    return false;
                }
            }
        }
        true
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.opened_seq));
    Ok(rows.iter().take(MAX_LIST).map(Summary::from).collect())
}

/// The current answer to one question.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AnswerView {
    #[schema(value_type = Object)]
    pub value: Value,
    pub seq: u64,
    pub by: String,
    pub ts_us: i64,
}

/// One incident as its readers see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IncidentView {
    #[serde(flatten)]
    pub summary: Summary,
    pub context: Context,
    pub questions: Vec<FilledQuestion>,
    /// Question id → its current answer.
    pub answers: BTreeMap<String, AnswerView>,
    pub acked_at_us: Option<i64>,
    pub resolved_at_us: Option<i64>,
    pub closed_at_us: Option<i64>,
    /// Whether the caller may answer and change the state (an active member who may post).
    pub can_answer: bool,
    /// The seqs of its `incident.*` entries.
    pub entries: Vec<u64>,
}

/// Reads incident `id` for `actor` (404 for anyone who may not read it).
pub fn get(log: &Log, actor: &Actor, id: &str) -> Result<IncidentView, IncidentError> {
    let rtx = log.read()?;
    let row = rtx.incident(id)?.ok_or_else(no_incident)?;
    if !may_read(&rtx, actor, id)? {
        return Err(no_incident().into());
    }
    view(log, &rtx, actor, row)
}

pub(crate) fn view(
    log: &Log,
    rtx: &ReadTx,
    actor: &Actor,
    row: IncidentRow,
) -> Result<IncidentView, IncidentError> {
    let tpl = rtx
        .template(&row.template)?
        .ok_or_else(templates::no_template)?;
    let def = templates::version(log, rtx, &tpl, row.version)?
        .ok_or_else(templates::no_template)?
        .template;
    let context = match log.entry_of_kind(rtx, row.opened_seq, KIND_OPENED)? {
        Some(e) => match serde_json::from_slice(&e.body).map_err(IncidentError::Body)? {
            IncidentBody::Opened { context, .. } => *context,
            _ => Context::default(),
        },
        None => Context::default(),
    };
    let mut answers = BTreeMap::new();
    let mut bodies: BTreeMap<u64, (String, i64, BTreeMap<String, Value>)> = BTreeMap::new();
    for (qid, &seq) in &row.answers {
        if !bodies.contains_key(&seq)
            && let Some(e) = log.entry_of_kind(rtx, seq, KIND_ANSWERED)?
            && let IncidentBody::Answered { answers: a, .. } =
                serde_json::from_slice(&e.body).map_err(IncidentError::Body)?
        {
            bodies.insert(seq, (e.author.clone(), e.ts, a));
        }
        if let Some((by, ts, a)) = bodies.get(&seq)
            && let Some(v) = a.get(qid)
        {
            answers.insert(
                qid.clone(),
                AnswerView {
                    value: v.clone(),
                    seq,
                    by: by.clone(),
                    ts_us: *ts,
                },
            );
        }
    }
    let member = rtx.member(&row.id, &actor.user)?.is_some_and(|m| m.active);
    let can_answer = (member || actor.is_admin()) && actor.require_poster().is_ok();
    Ok(IncidentView {
        questions: templates::fill(&def, &context).questions,
        context,
        answers,
        acked_at_us: row.acked_at_us,
        resolved_at_us: row.resolved_at_us,
        closed_at_us: row.closed_at_us,
        can_answer,
        entries: row.entries.clone(),
        summary: Summary::from(&row),
    })
}

/// The incident alarm occurrence `alarm` opened or is linked to, for the alarm's journal.
pub fn of_alarm(log: &Log, alarm: u64) -> Result<Option<String>, IncidentError> {
    Ok(log.read()?.incident_of_alarm(alarm)?)
}
