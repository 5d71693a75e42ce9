//! Opening an incident: the context comes from the alarm occurrence (its raising entry's
//! attributes) or event, the template's current version is pinned, and one job writes the
//! conversation (`chat.created`, kind `incident`), `incident.opened`, the incident row and the
//! alarm → incident link, which makes an occurrence open at most one incident.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::templates::{self, FilledQuestion, TemplateDef};
use super::{Context, IncidentBody, IncidentError, State};
use crate::alarms::{AlarmEntry, no_such_alarm};
use crate::chat::conversations::{admit, new_conv};
use crate::chat::{ChatBody, conv_stream};
use crate::error::Rejection;
use crate::events::{AttrValue, EventBody, KIND_EVENT};
use crate::log::{AppendError, Author, Log, NewEntry, Tx};
use crate::store::{ConvKind, IncidentRow, MemberRole, Priority, ReadTx, UserStatus};

const MAX_TITLE: usize = 200;
/// Most people an incident is opened with.
pub const MAX_MEMBERS: usize = 100;

/// `POST /api/v1/incidents`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenRequest {
    /// The template's id.
    pub template: String,
    /// The alarm occurrence it concerns.
    #[serde(default)]
    pub alarm: Option<u64>,
    /// The event it concerns.
    #[serde(default)]
    pub event_seq: Option<u64>,
    /// Replaces the template's title (placeholders are filled too).
    #[serde(default)]
    pub title: Option<String>,
    /// Usernames called in besides the opener.
    #[serde(default)]
    pub members: Vec<String>,
    /// Default: the alarm's priority, else medium.
    #[serde(default)]
    pub severity: Option<Priority>,
    #[serde(default)]
    pub assignee: Option<String>,
}

/// What opening answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Opened {
    pub id: String,
    pub conversation: String,
    pub template: String,
    pub version: u32,
    pub title: String,
    pub questions: Vec<FilledQuestion>,
    pub state: State,
    pub severity: Priority,
    /// The seq of `incident.opened`.
    pub seq: u64,
}

fn attr_text(v: &AttrValue) -> String {
    match v {
        AttrValue::Bool(b) => b.to_string(),
        AttrValue::Int(i) => i.to_string(),
        AttrValue::Float(f) => f.to_string(),
        AttrValue::Text(t) => t.clone(),
    }
}

fn attrs(a: &BTreeMap<String, AttrValue>) -> BTreeMap<String, String> {
    a.iter().map(|(k, v)| (k.clone(), attr_text(v))).collect()
}

/// The context of alarm occurrence `id`: the row, and the attributes of the entry that raised it.
pub fn alarm_context(
    log: &Log,
    rtx: &ReadTx,
    id: u64,
) -> Result<(Context, Priority), IncidentError> {
    let row = rtx.alarm(id)?.ok_or_else(no_such_alarm)?;
    let raised = log.entry(rtx, id)?;
    let attributes = raised
        .and_then(|e| serde_json::from_slice::<AlarmEntry>(&e.body).ok())
        .map(|b| attrs(&b.attributes))
        .unwrap_or_default();
    Ok((
        Context {
            source: Some(row.source.clone()),
            condition: Some(row.condition.clone()),
            priority: Some(row.priority.as_str().to_string()),
            site: Some(log.site().to_string()),
            occurred_at: Some(crate::clock::rfc3339_us(row.raised_at_us)),
            attributes,
        },
        row.priority,
    ))
}

/// The context of the event at `seq`.
pub fn event_context(
    log: &Log,
    rtx: &ReadTx,
    seq: u64,
) -> Result<(Context, Priority), IncidentError> {
    let no_event = || Rejection::not_found("no_such_event", "no event with this seq");
    let e = log
        .entry_of_kind(rtx, seq, KIND_EVENT)?
        .ok_or_else(no_event)?;
    let body: EventBody = serde_json::from_slice(&e.body).map_err(IncidentError::Body)?;
    let ev = body.event;
    let priority = crate::alarms::priority_of(ev.severity);
    Ok((
        Context {
            source: Some(ev.source.clone()),
            condition: Some(ev.condition.clone().unwrap_or(ev.event_type.clone())),
            priority: Some(priority.as_str().to_string()),
            site: Some(log.site().to_string()),
            occurred_at: Some(crate::clock::rfc3339_us(ev.occurred_at_us.unwrap_or(e.ts))),
            attributes: attrs(&ev.attributes),
        },
        priority,
    ))
}

/// Everything the opening job needs, read and checked before it is queued.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub template: String,
    pub version: u32,
    pub def: TemplateDef,
    pub context: Context,
    pub title: String,
    pub severity: Priority,
    pub assignee: Option<String>,
    pub members: Vec<String>,
    pub alarm: Option<u64>,
    pub event: Option<u64>,
    pub rule: Option<String>,
}

/// Reads the template's current version and the context; checks the request's shape.
pub fn prepare(
    log: &Log,
    req: OpenRequest,
    rule: Option<String>,
) -> Result<Prepared, IncidentError> {
    let rtx = log.read()?;
    let row = rtx
        .template(&req.template)?
        .ok_or_else(templates::no_template)?;
    if row.archived {
        return Err(Rejection::conflict(
            "template_archived",
            "this template is archived; it opens no new incident",
        )
        .into());
    }
    let version = u32::try_from(row.versions.len()).unwrap_or(u32::MAX);
    let def = templates::version(log, &rtx, &row, version)?
        .ok_or_else(templates::no_template)?
        .template;
    let (context, priority) = match (req.alarm, req.event_seq) {
        (Some(a), _) => alarm_context(log, &rtx, a)?,
        (None, Some(e)) => event_context(log, &rtx, e)?,
        (None, None) => (
            Context {
                site: Some(log.site().to_string()),
                ..Context::default()
            },
            Priority::Medium,
        ),
    };
    if let Some(e) = req.event_seq
        && req.alarm.is_some()
    {
        event_context(log, &rtx, e)?;
    }
    let raw_title = req.title.unwrap_or_else(|| def.title.clone());
    let title_ok = (1..=MAX_TITLE).contains(&raw_title.trim().chars().count())
        && crate::chat::clean_text(&raw_title)
        && !raw_title.contains(['\n', '\r'])
        && super::placeholders::check(&raw_title).is_ok();
    if !title_ok {
        return Err(IncidentError::Fields {
            code: "invalid_incident",
            fields: BTreeMap::from([(
                "title".to_string(),
                format!("1-{MAX_TITLE} characters on one line, known placeholders only"),
            )]),
        });
    }
    let title: String = super::placeholders::fill(&raw_title, &context)
        .chars()
        .take(MAX_TITLE * 2)
        .collect();
    let mut members: Vec<String> = req.members.iter().map(|m| crate::users::key(m)).collect();
    let assignee = req.assignee.as_deref().map(crate::users::key);
    members.extend(assignee.clone());
    members.sort();
    members.dedup();
    if members.len() > MAX_MEMBERS {
        return Err(Rejection::invalid(
            "too_many_members",
            format!("at most {MAX_MEMBERS} members"),
        )
        .into());
    }
    Ok(Prepared {
        template: req.template,
        version,
        def,
        context,
        title,
        severity: req
            .severity
            .unwrap_or(if req.alarm.is_some() || req.event_seq.is_some() {
                priority
            } else {
                Priority::Medium
            }),
        assignee,
        members,
        alarm: req.alarm,
        event: req.event_seq,
        rule,
    })
}

/// Writes the incident in the job. `opener` is the user who opens it (`None`: a rule, as
/// `system`). `Ok(None)` when the alarm occurrence already has an incident and `quiet` is set
/// (rules); without `quiet` that is a conflict.
pub fn open_in_tx(
    tx: &mut Tx<'_>,
    p: &Prepared,
    opener: Option<&str>,
    quiet: bool,
) -> Result<Option<(IncidentRow, u64)>, AppendError> {
    if let Some(a) = p.alarm
        && let Some(existing) = tx.views().incident_of_alarm(a)?
    {
        if quiet {
            return Ok(None);
        }
        return Err(Rejection::conflict(
            "alarm_has_incident",
            format!("this alarm occurrence already has incident {existing}"),
        )
        .into());
    }
    let mut tpl = tx
        .views()
        .template(&p.template)?
        .ok_or_else(templates::no_template)?;
    if tpl.archived {
        return Err(Rejection::conflict("template_archived", "this template is archived").into());
    }
    // About a site: only who may read it takes part (a rule leaves the others out).
    let site = match p.alarm {
        Some(a) => crate::alarms::scope::site_of_alarms(tx.views(), &[a])?,
        None => None,
    };
    // The opener too: the HTTP check ran before this job, and a grant may be gone since.
    if let Some(o) = opener
        && !super::site_scope::may_take_part(tx.views(), site.as_deref(), o)?
    {
        return Err(super::site_scope::not_granted(o).into());
    }
    let mut people: Vec<String> = Vec::new();
    for m in &p.members {
        match tx.views().user(m)? {
            Some(u) if u.status == UserStatus::Active => {
                if super::site_scope::may_take_part(tx.views(), site.as_deref(), m)? {
                    people.push(m.clone());
                } else if !quiet {
                    return Err(super::site_scope::not_granted(m).into());
                }
            }
            _ if quiet => {}
            _ => {
                return Err(
                    Rejection::not_found("no_such_user", format!("no active user {m:?}")).into(),
                );
            }
        }
    }
    // An assignee left out (a rule naming someone out of the site's scope) is not recorded.
    let assignee = p
        .assignee
        .clone()
        .filter(|a| people.contains(a) || Some(a.as_str()) == opener);
    let id = crate::chat::random_id("i")?;
    let author = opener.map_or(Author::System, Author::user);
    let mut all: Vec<String> = opener.map(str::to_string).into_iter().collect();
    all.extend(
        people
            .iter()
            .filter(|m| Some(m.as_str()) != opener)
            .cloned(),
    );
    let created = ChatBody::Created {
        conv: id.clone(),
        conv_kind: ConvKind::Incident,
        name: p.title.clone(),
        members: all.clone(),
    };
    let stream = conv_stream(&id);
    let seq = tx.append(NewEntry::json(created.kind(), &stream, &author, &created)?)?;
    let now = tx.now_us();
    let by = opener.unwrap_or("system");
    let mut conv = new_conv(
        id.clone(),
        ConvKind::Incident,
        p.title.clone(),
        by,
        now,
        seq,
    );
    for (i, m) in all.iter().enumerate() {
        let role = if i == 0 && opener.is_some() {
            MemberRole::Owner
        } else {
            MemberRole::Member
        };
        admit(tx, &mut conv, m, role, seq)?;
    }
    let body = IncidentBody::Opened {
        incident: id.clone(),
        template: p.template.clone(),
        version: p.version,
        title: p.title.clone(),
        severity: p.severity,
        assignee: assignee.clone(),
        context: Box::new(p.context.clone()),
        alarms: p.alarm.into_iter().collect(),
        events: p.event.into_iter().collect(),
        rule: p.rule.clone(),
    };
    let opened = tx.append(NewEntry::json(body.kind(), &stream, &author, &body)?)?;
    conv.last_seq = opened;
    tx.views().put_conv(&conv)?;
    let row = IncidentRow {
        id: id.clone(),
        template: p.template.clone(),
        version: p.version,
        title: p.title.clone(),
        state: State::Open.as_str().to_string(),
        severity: p.severity.as_str().to_string(),
        assignee: assignee.clone(),
        alarms: p.alarm.into_iter().collect(),
        events: p.event.into_iter().collect(),
        opened_seq: opened,
        opened_at_us: now,
        opened_by: author.to_string(),
        acked_at_us: None,
        resolved_at_us: None,
        closed_at_us: None,
        answers: BTreeMap::new(),
        entries: vec![opened],
    };
    tx.views().put_incident(&row)?;
    if let Some(a) = p.alarm {
        tx.views().put_incident_alarm(a, &id)?;
    }
    tpl.incidents += 1;
    tx.views().put_template(&tpl)?;
    Ok(Some((row, opened)))
}

/// Opens an incident by hand as `user` (an operator or admin: the caller checks the role).
pub async fn open(log: &Log, user: &str, req: OpenRequest) -> Result<Opened, IncidentError> {
    let p = prepare(log, req, None)?;
    let me = user.to_string();
    let job = p.clone();
    let (row, seq) = log
        .submit(move |tx| {
            open_in_tx(tx, &job, Some(&me), false)?
                .ok_or_else(|| AppendError::from(no_such_alarm()))
        })
        .await?;
    let filled = templates::fill(&p.def, &p.context);
    Ok(Opened {
        conversation: row.id.clone(),
        id: row.id,
        template: p.template,
        version: p.version,
        title: row.title,
        questions: filled.questions,
        state: State::Open,
        severity: p.severity,
        seq,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::log::SubmitError;
    use crate::metrics::Metrics;
    use crate::store::{DataKey, Role};

    /// HQ with bravo's lag alarm (source `site/bravo`) standing, template `lag`, operator bob
    /// (no grant on bravo) and admin boss; the log and the alarm's id.
    async fn hq(dir: &std::path::Path) -> (Log, u64) {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000_000));
        let log = Log::open(
            &dir.join("plantwire.redb"),
            "hq",
            DataKey::from_bytes(&[7u8; 32]).unwrap(),
            clock,
            &crate::log::tests::options(),
            Arc::new(Metrics::new()),
        )
        .unwrap();
        let signal = crate::alarms::system_checks::lag_signal("bravo", 900, 600, "hq");
        crate::alarms::raise(&log, &Author::System, signal)
            .await
            .unwrap();
        let alarm = log
            .read()
            .unwrap()
            .alarm_current("site/bravo", "replication.lag.bravo")
            .unwrap()
            .unwrap();
        let t = serde_json::from_value(serde_json::json!({
            "id": "lag", "name": "Lag", "title": "{source} lagging",
            "questions": [{"id": "notes", "label": "Notes", "type": "text"}]
        }))
        .unwrap();
        templates::create(&log, &Author::System, t).await.unwrap();
        for (name, role) in [("bob", Role::Operator), ("boss", Role::Admin)] {
            let new = crate::users::NewUser {
                username: name.into(),
                display_name: name.into(),
                password_hash: "x".into(),
                role,
                status: UserStatus::Active,
                must_change_password: false,
            };
            crate::users::create(&log, new, &Author::System)
                .await
                .unwrap();
        }
        (log, alarm)
    }

    fn request(alarm: u64) -> OpenRequest {
        serde_json::from_value(serde_json::json!({ "template": "lag", "alarm": alarm })).unwrap()
    }

    /// The opener is checked inside the write (the HTTP check ran before it, and a grant may be
    /// gone since): an opener who may not read the site is refused and nothing is written.
    #[tokio::test]
    async fn an_opener_out_of_the_site_scope_is_refused_inside_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let (log, alarm) = hq(dir.path()).await;
        let head = |log: &Log| {
            let rtx = log.read().unwrap();
            log.head(&rtx).unwrap()
        };
        let before = head(&log);
        match open(&log, "bob", request(alarm)).await {
            Err(IncidentError::Submit(SubmitError::Rejected(r))) => {
                assert_eq!(r.code, "not_granted");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(head(&log), before);
        assert!(
            log.read()
                .unwrap()
                .incident_of_alarm(alarm)
                .unwrap()
                .is_none()
        );
        let opened = open(&log, "boss", request(alarm)).await.unwrap();
        assert_eq!(
            log.read().unwrap().incident_of_alarm(alarm).unwrap(),
            Some(opened.id)
        );
    }

    /// A rule (quiet, no opener) naming an assignee out of the site's scope leaves them out of
    /// the members and records no assignee.
    #[tokio::test]
    async fn a_rule_records_no_assignee_it_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let (log, alarm) = hq(dir.path()).await;
        let mut req = request(alarm);
        req.assignee = Some("bob".into());
        let p = prepare(&log, req, None).unwrap();
        let (row, _) = log
            .submit(move |tx| open_in_tx(tx, &p, None, true))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.assignee, None);
        let rtx = log.read().unwrap();
        assert_eq!(rtx.incident(&row.id).unwrap().unwrap().assignee, None);
        assert!(rtx.member(&row.id, "bob").unwrap().is_none());
    }
}
