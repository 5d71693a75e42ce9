//! Changing an incident: its state (`open → investigating → resolved → closed`, reopened with a
//! reason) and structured answers. Only active members who may post (operators and admins)
//! change it; a refused reply or change writes nothing, so the chain head does not move.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::answers;
use super::templates::{self, TemplateDef};
use super::{FieldErrors, IncidentBody, IncidentError, State, no_incident};
use crate::chat::{Actor, conv_stream};
use crate::error::Rejection;
use crate::log::{AppendError, Author, Log, NewEntry, Tx};
use crate::store::{IncidentRow, MemberRole, Priority, UserStatus};

const MAX_REASON: usize = 1000;

/// `POST /api/v1/incidents/{id}/answers`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    /// Question id → value (`null` clears an optional answer).
    #[schema(value_type = Object)]
    pub answers: BTreeMap<String, Value>,
}

/// A stored reply.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Answered {
    pub id: String,
    pub seq: u64,
    pub version: u32,
    /// The questions answered by this reply.
    pub questions: Vec<String>,
}

/// `POST /api/v1/incidents/{id}/state`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StateRequest {
    pub state: State,
    /// Required to reopen a resolved or closed incident.
    #[serde(default)]
    pub reason: Option<String>,
}

/// What a state change did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StateChanged {
    pub id: String,
    pub from: State,
    pub to: State,
    pub seq: u64,
}

/// `POST /api/v1/incidents/{id}/assign`: a new assignee (`""` for none) and/or severity.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub severity: Option<Priority>,
}

/// What an assignment did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Assigned {
    pub id: String,
    pub assignee: Option<String>,
    pub severity: Priority,
    pub seq: u64,
}

fn state_of(row: &IncidentRow) -> State {
    State::parse(&row.state).unwrap_or(State::Open)
}

/// The pinned template version of incident `id`, read before the job is queued; `404` for
/// whoever may not read the incident, so that no refusal tells them its questions (the job checks
/// membership again).
fn pinned(log: &Log, actor: &Actor, id: &str) -> Result<(IncidentRow, TemplateDef), IncidentError> {
    let rtx = log.read()?;
    let row = rtx.incident(id)?.ok_or_else(no_incident)?;
    if !super::read::may_read(&rtx, actor, id)? {
        return Err(no_incident().into());
    }
    let tpl = rtx
        .template(&row.template)?
        .ok_or_else(templates::no_template)?;
    let def = templates::version(log, &rtx, &tpl, row.version)?
        .ok_or_else(templates::no_template)?
        .template;
    Ok((row, def))
}

/// The incident, for an active member who may post; 404 for anyone who is not a member.
fn changer(tx: &mut Tx<'_>, id: &str, actor: &Actor) -> Result<IncidentRow, AppendError> {
    actor.require_poster()?;
    let row = tx.views().incident(id)?.ok_or_else(no_incident)?;
    let member = tx
        .views()
        .member(id, &actor.user)?
        .is_some_and(|m| m.active);
    if !member && !actor.is_admin() {
        return Err(no_incident().into());
    }
    Ok(row)
}

fn append(
    tx: &mut Tx<'_>,
    row: &mut IncidentRow,
    by: &str,
    body: &IncidentBody,
) -> Result<u64, AppendError> {
    let seq = tx.append(NewEntry::json(
        body.kind(),
        &conv_stream(&row.id),
        &Author::user(by),
        body,
    )?)?;
    row.entries.push(seq);
    if let Some(mut conv) = tx.views().conv(&row.id)? {
        conv.last_seq = seq;
        tx.views().put_conv(&conv)?;
    }
    Ok(seq)
}

fn invalid_answers(fields: FieldErrors) -> IncidentError {
    IncidentError::Fields {
        code: "invalid_answers",
        fields,
    }
}

/// Stores a reply (all questions or some) after checking it against the incident's pinned
/// template version; on any refused field nothing is stored.
pub async fn answer(
    log: &Log,
    actor: &Actor,
    id: &str,
    req: AnswerRequest,
) -> Result<Answered, IncidentError> {
    actor.require_poster()?;
    let (row, def) = pinned(log, actor, id)?;
    let checked = answers::check(&def, &req.answers).map_err(invalid_answers)?;
    let (actor, id) = (actor.clone(), id.to_string());
    let version = row.version;
    let outcome = log
        .submit(move |tx| {
            let mut row = changer(tx, &id, &actor)?;
            if row.version != version {
                return Err(Rejection::conflict("retry", "the incident changed; retry").into());
            }
            if state_of(&row) == State::Closed {
                return Err(Rejection::conflict(
                    "incident_closed",
                    "a closed incident takes no answers; reopen it first",
                )
                .into());
            }
            // Files: each must be an attachment the member may use, of an allowed type and size.
            let mut errs = FieldErrors::new();
            let mut atts = Vec::new();
            for (qid, att) in &checked.files {
                let Some(q) = def.questions.iter().find(|q| &q.id == qid) else {
                    continue;
                };
                match crate::chat::attachments::usable(tx, att, &actor.user) {
                    Ok(a) => match answers::check_file(q, &a) {
                        Ok(()) => atts.push(a.id),
                        Err(e) => {
                            errs.insert(qid.clone(), e);
                        }
                    },
                    Err(AppendError::Rejected(r)) => {
                        errs.insert(qid.clone(), r.message);
                    }
                    Err(e) => return Err(e),
                }
            }
            if !errs.is_empty() {
                return Ok(Err(errs));
            }
            let body = IncidentBody::Answered {
                incident: id.clone(),
                version,
                answers: checked.answers.clone(),
            };
            let seq = append(tx, &mut row, &actor.user, &body)?;
            for (qid, v) in &checked.answers {
                if v.is_null() {
                    row.answers.remove(qid);
                } else {
                    row.answers.insert(qid.clone(), seq);
                }
            }
            for a in &atts {
                tx.views().put_attachment_conv(a, &id)?;
                tx.views().put_attachment_ref(seq, a)?;
            }
            tx.views().put_incident(&row)?;
            Ok(Ok(Answered {
                id: id.clone(),
                seq,
                version,
                questions: checked.answers.keys().cloned().collect(),
            }))
        })
        .await?;
    outcome.map_err(invalid_answers)
}

/// Whether `from → to` is allowed: forward along the chain (steps may be skipped), or back to
/// `open` / `investigating` from `resolved` or `closed` (a reopen, which needs a reason).
fn allowed(from: State, to: State) -> Result<bool, Rejection> {
    if from == to {
        return Err(Rejection::conflict(
            "same_state",
            format!("the incident is already {}", to.as_str()),
        ));
    }
    if to > from {
        return Ok(false);
    }
    if from >= State::Resolved && to <= State::Investigating {
        return Ok(true);
    }
    Err(Rejection::conflict(
        "invalid_transition",
        format!(
            "an incident goes from {} to {} only by reopening it",
            from.as_str(),
            to.as_str()
        ),
    ))
}

/// Changes the state as `actor`; resolving needs every required question answered.
pub async fn set_state(
    log: &Log,
    actor: &Actor,
    id: &str,
    req: StateRequest,
) -> Result<StateChanged, IncidentError> {
    actor.require_poster()?;
    let reason = req
        .reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    if reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REASON || !crate::chat::clean_text(r))
    {
        return Err(Rejection::invalid(
            "invalid_reason",
            format!("a reason is at most {MAX_REASON} characters"),
        )
        .into());
    }
    let (_, def) = pinned(log, actor, id)?;
    let (actor, id, to) = (actor.clone(), id.to_string(), req.state);
    let outcome = log
        .submit(move |tx| {
            let mut row = changer(tx, &id, &actor)?;
            let from = state_of(&row);
            let reopen = allowed(from, to)?;
            if reopen && reason.is_none() {
                return Err(Rejection::invalid(
                    "reason_required",
                    "reopening an incident needs a reason",
                )
                .into());
            }
            if to >= State::Resolved && from < State::Resolved {
                let missing = answers::missing_required(&def, &row.answers);
                if !missing.is_empty() {
                    return Ok(Err(missing));
                }
            }
            let body = IncidentBody::State {
                incident: id.clone(),
                from,
                to,
                reason: reason.clone(),
            };
            let seq = append(tx, &mut row, &actor.user, &body)?;
            let now = tx.now_us();
            if from == State::Open && row.acked_at_us.is_none() {
                row.acked_at_us = Some(now);
            }
            match to {
                State::Resolved => row.resolved_at_us = Some(now),
                State::Closed => {
                    row.closed_at_us = Some(now);
                    row.resolved_at_us.get_or_insert(now);
                }
                State::Open | State::Investigating => {
                    row.resolved_at_us = None;
                    row.closed_at_us = None;
                }
            }
            row.state = to.as_str().to_string();
            tx.views().put_incident(&row)?;
            Ok(Ok(StateChanged {
                id: id.clone(),
                from,
                to,
                seq,
            }))
        })
        .await?;
    outcome.map_err(invalid_answers)
}

/// Assigns the incident (the assignee becomes a member if not one) and/or sets its severity.
pub async fn assign(
    log: &Log,
    actor: &Actor,
    id: &str,
    req: AssignRequest,
) -> Result<Assigned, IncidentError> {
    actor.require_poster()?;
    if req.assignee.is_none() && req.severity.is_none() {
        return Err(
            Rejection::invalid("invalid_assignment", "name an assignee or a severity").into(),
        );
    }
    let (actor, id) = (actor.clone(), id.to_string());
    let assignee = req.assignee.map(|a| crate::users::key(&a));
    Ok(log
        .submit(move |tx| {
            let mut row = changer(tx, &id, &actor)?;
            let severity = req.severity.unwrap_or_else(|| severity_of(&row));
            let new_assignee = match assignee.as_deref() {
                // The assignee kept, unless they are to come back as a member of an incident
                // about a site they may no longer read: then none.
                None => match row.assignee.clone() {
                    Some(a) if !kept_in_scope(tx, &id, &a)? => None,
                    kept => kept,
                },
                Some("") => None,
                Some(a) => {
                    match tx.views().user(a)? {
                        Some(u) if u.status == UserStatus::Active => {
                            let site = super::site_scope::site_of(tx.views(), &id)?;
                            if !super::site_scope::may_take_part(tx.views(), site.as_deref(), a)? {
                                return Err(super::site_scope::not_granted(a).into());
                            }
                        }
                        _ => {
                            return Err(Rejection::not_found(
                                "no_such_user",
                                format!("no active user {a:?}"),
                            )
                            .into());
                        }
                    }
                    Some(a.to_string())
                }
            };
            if let Some(a) = &new_assignee
                && !tx.views().member(&id, a)?.is_some_and(|m| m.active)
            {
                let mut conv = tx
                    .views()
                    .conv(&id)?
                    .ok_or_else(crate::chat::no_conversation)?;
                let joined = crate::chat::ChatBody::Joined {
                    conv: id.clone(),
                    users: vec![a.clone()],
                    by: actor.user.clone(),
                };
                let seq = crate::chat::append(tx, &actor.user, &joined)?;
                crate::chat::conversations::admit(tx, &mut conv, a, MemberRole::Member, seq)?;
                conv.last_seq = seq;
                tx.views().put_conv(&conv)?;
            }
            let body = IncidentBody::Assigned {
                incident: id.clone(),
                assignee: new_assignee.clone(),
                severity,
            };
            let seq = append(tx, &mut row, &actor.user, &body)?;
            row.assignee = new_assignee.clone();
            row.severity = severity.as_str().to_string();
            tx.views().put_incident(&row)?;
            Ok(Assigned {
                id: id.clone(),
                assignee: new_assignee.clone(),
                severity,
                seq,
            })
        })
        .await?)
}

/// Whether the kept assignee `a` of incident `id` may stay so: an active member, or one who may
/// take part in it (`site_scope`), as they would come back as a member.
fn kept_in_scope(tx: &mut Tx<'_>, id: &str, a: &str) -> Result<bool, AppendError> {
    if tx.views().member(id, a)?.is_some_and(|m| m.active) {
        return Ok(true);
    }
    let site = super::site_scope::site_of(tx.views(), id)?;
    Ok(super::site_scope::may_take_part(
        tx.views(),
        site.as_deref(),
        a,
    )?)
}

/// The incident's severity (medium if the stored one is unknown).
fn severity_of(row: &IncidentRow) -> Priority {
    Priority::ALL
        .into_iter()
        .find(|p| p.as_str() == row.severity)
        .unwrap_or(Priority::Medium)
}

/// Clears `user` as the assignee of incident `id` (they were just taken out of it) with an
/// `incident.assigned` entry by `by` naming no assignee; `false` when they are not its assignee.
pub(super) fn unassign_in_tx(
    tx: &mut Tx<'_>,
    id: &str,
    user: &str,
    by: &str,
) -> Result<bool, AppendError> {
    let Some(mut row) = tx.views().incident(id)? else {
        return Ok(false);
    };
    if row.assignee.as_deref() != Some(user) {
        return Ok(false);
    }
    let body = IncidentBody::Assigned {
        incident: id.to_string(),
        assignee: None,
        severity: severity_of(&row),
    };
    append(tx, &mut row, by, &body)?;
    row.assignee = None;
    tx.views().put_incident(&row)?;
    Ok(true)
}
