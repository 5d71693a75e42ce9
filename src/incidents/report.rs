//! The incident report: its timeline (alarm transitions, the events it was opened from, messages,
//! answers, state changes) with the seq and hash of every entry it quotes, the people involved
//! and the durations, as JSON and as a printable HTML page (no script; `report.css` styles it).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::read::{IncidentView, may_read, view};
use super::{IncidentBody, IncidentError, no_incident};
use crate::alarms::{AlarmEntry, stream_of};
use crate::chat::{Actor, ChatBody, conv_stream};
use crate::log::{Entry, Log};

/// Most entries a report quotes.
pub const MAX_TIMELINE: usize = 20_000;

/// One quoted entry.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TimelineItem {
    pub seq: u64,
    /// SHA-256 of the entry (hex), as `audit verify` recomputes it.
    pub hash: String,
    pub prev: String,
    pub ts_us: i64,
    pub kind: String,
    pub stream: String,
    pub author: String,
    /// One line for people.
    pub summary: String,
    /// The entry's body (a redacted message without its text).
    #[schema(value_type = Object)]
    pub body: Value,
}

/// Someone involved, and how.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Person {
    pub user: String,
    /// `opener`, `member`, `assignee`, `author`, `answered`, `state`.
    pub roles: Vec<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub site: String,
    pub generated_at_us: i64,
    pub incident: IncidentView,
    pub people: Vec<Person>,
    /// From opening to leaving `open`.
    pub time_to_ack_us: Option<i64>,
    /// From opening to (the last) resolve.
    pub time_to_resolve_us: Option<i64>,
    pub timeline: Vec<TimelineItem>,
    /// Whether the timeline was cut at [`MAX_TIMELINE`] entries.
    pub truncated: bool,
}

fn summary(e: &Entry, body: &Value) -> String {
    if let Some(kind) = e.kind.strip_prefix("alarm.") {
        return match serde_json::from_value::<AlarmEntry>(body.clone()) {
            Ok(a) => format!(
                "alarm {} {kind}: {} / {} is {:?}{}",
                a.id,
                a.alarm.source,
                a.alarm.condition,
                a.state,
                a.note.map(|n| format!(" — {n}")).unwrap_or_default()
            ),
            Err(_) => format!("alarm {kind}"),
        };
    }
    if e.kind == crate::events::KIND_EVENT {
        return match serde_json::from_value::<crate::events::EventBody>(body.clone()) {
            Ok(b) => format!(
                "event {} {} ({:?}): {}",
                b.event.source, b.event.event_type, b.event.severity, b.event.message
            ),
            Err(_) => e.kind.clone(),
        };
    }
    if e.kind.starts_with("incident.") {
        return match serde_json::from_value::<IncidentBody>(body.clone()) {
            Ok(IncidentBody::Opened {
                title,
                version,
                template,
                ..
            }) => {
                format!("opened \"{title}\" with template {template} v{version}")
            }
            Ok(IncidentBody::State {
                from, to, reason, ..
            }) => format!(
                "state {} → {}{}",
                from.as_str(),
                to.as_str(),
                reason.map(|r| format!(" — {r}")).unwrap_or_default()
            ),
            Ok(IncidentBody::Assigned {
                assignee, severity, ..
            }) => format!(
                "assigned to {}, severity {}",
                assignee.as_deref().unwrap_or("nobody"),
                severity.as_str()
            ),
            Ok(IncidentBody::Answered { answers, .. }) => answers
                .iter()
                .map(|(k, v)| format!("{k} = {v}"))
                .collect::<Vec<_>>()
                .join("; "),
            Err(_) => e.kind.clone(),
        };
    }
    match serde_json::from_value::<ChatBody>(body.clone()) {
        Ok(ChatBody::Message {
            text, attachments, ..
        }) => {
            let files = attachments.len();
            if files > 0 {
                format!("{text} [{files} attachment(s)]")
            } else {
                text
            }
        }
        Ok(ChatBody::Created { members, .. }) => {
            format!("conversation with {}", members.join(", "))
        }
        Ok(ChatBody::Joined { users, .. }) => format!("joined: {}", users.join(", ")),
        Ok(ChatBody::Left { users, .. }) => format!("left: {}", users.join(", ")),
        Ok(ChatBody::Edited { target, text, .. }) => format!("edited {target}: {text}"),
        Ok(ChatBody::Redacted { target, .. }) => format!("deleted message {target}"),
        _ => e.kind.clone(),
    }
}

/// The report of incident `id` for `actor` (the incident's readers).
pub fn build(log: &Log, actor: &Actor, id: &str) -> Result<Report, IncidentError> {
    let rtx = log.read()?;
    let row = rtx.incident(id)?.ok_or_else(no_incident)?;
    if !may_read(&rtx, actor, id)? {
        return Err(no_incident().into());
    }
    let head = log.head(&rtx)?;
    let mut seqs = rtx.stream_seqs(&conv_stream(id), 1, head, MAX_TIMELINE + 1)?;
    for a in &row.alarms {
        seqs.extend(rtx.stream_seqs(&stream_of(*a), 1, head, MAX_TIMELINE + 1)?);
    }
    // The events it was opened from (site-wide entries, readable by everyone signed in).
    seqs.extend(row.events.iter().copied().filter(|&s| s <= head));
    seqs.sort_unstable();
    seqs.dedup();
    let truncated = seqs.len() > MAX_TIMELINE;
    seqs.truncate(MAX_TIMELINE);
    let mut people: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut role = |user: &str, r: &str| {
        let v = people.entry(user.to_string()).or_default();
        if !v.iter().any(|x| x == r) {
            v.push(r.to_string());
        }
    };
    if let Some(u) = row.opened_by.strip_prefix("user:") {
        role(u, "opener");
    }
    if let Some(a) = &row.assignee {
        role(a, "assignee");
    }
    for m in rtx.members(id)? {
        role(&m.user, "member");
    }
    let mut timeline = Vec::with_capacity(seqs.len());
    for seq in seqs {
        let Some(e) = log.entry(&rtx, seq)? else {
            continue;
        };
        let raw = crate::chat::replay::scrub(log, &rtx, &e)?.unwrap_or_else(|| e.body.clone());
        let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        if let Some(u) = e.author.strip_prefix("user:") {
            let r = match e.kind.as_str() {
                super::KIND_ANSWERED => "answered",
                super::KIND_STATE => "state",
                k if k.starts_with("alarm.") => "alarm",
                _ => "author",
            };
            role(u, r);
        }
        timeline.push(TimelineItem {
            summary: summary(&e, &body),
            seq: e.seq,
            hash: hex::encode(e.hash),
            prev: hex::encode(e.prev),
            ts_us: e.ts,
            kind: e.kind,
            stream: e.stream,
            author: e.author,
            body,
        });
    }
    let time_to_ack_us = row.acked_at_us.map(|t| t - row.opened_at_us);
    let time_to_resolve_us = row.resolved_at_us.map(|t| t - row.opened_at_us);
    let incident = view(log, &rtx, actor, row)?;
    Ok(Report {
        site: log.site().to_string(),
        generated_at_us: log.now_us(),
        incident,
        people: people
            .into_iter()
            .map(|(user, roles)| Person { user, roles })
            .collect(),
        time_to_ack_us,
        time_to_resolve_us,
        timeline,
        truncated,
    })
}

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn duration(us: Option<i64>) -> String {
    match us {
        None => "—".into(),
        Some(us) => {
            let s = us / 1_000_000;
            format!("{}h {:02}m {:02}s", s / 3600, (s / 60) % 60, s % 60)
        }
    }
}

/// The report as a printable page; `css` is the stylesheet's URL.
pub fn html(r: &Report, css: &str) -> String {
    let i = &r.incident;
    let mut h = String::with_capacity(8192);
    h.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    h.push_str(&format!(
        "<title>Incident {} — {}</title>",
        esc(&i.summary.id),
        esc(&i.summary.title)
    ));
    h.push_str(&format!(
        "<link rel=\"stylesheet\" href=\"{}\"></head><body class=\"report\">",
        esc(css)
    ));
    h.push_str(&format!("<h1>{}</h1>", esc(&i.summary.title)));
    h.push_str("<table class=\"facts\">");
    let rows = [
        ("Incident", i.summary.id.clone()),
        ("Site", r.site.clone()),
        ("State", i.summary.state.as_str().to_string()),
        ("Severity", i.summary.severity.clone()),
        (
            "Assignee",
            i.summary.assignee.clone().unwrap_or_else(|| "—".into()),
        ),
        (
            "Template",
            format!("{} v{}", i.summary.template, i.summary.version),
        ),
        ("Opened", crate::clock::rfc3339_us(i.summary.opened_at_us)),
        ("Opened by", i.summary.opened_by.clone()),
        ("Time to acknowledge", duration(r.time_to_ack_us)),
        ("Time to resolve", duration(r.time_to_resolve_us)),
        (
            "Alarms",
            i.summary
                .alarms
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("Generated", crate::clock::rfc3339_us(r.generated_at_us)),
    ];
    for (k, v) in rows {
        h.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v)));
    }
    h.push_str("</table><h2>Answers</h2><table class=\"answers\">");
    for q in &i.questions {
        let a = i.answers.get(&q.question.id);
        let value = a.map_or("‹unanswered›".to_string(), |a| match &a.value {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        });
        let who = a.map_or(String::new(), |a| format!("{} · seq {}", a.by, a.seq));
        h.push_str(&format!(
            "<tr><th>{}</th><td>{}</td><td class=\"who\">{}</td></tr>",
            esc(&q.label_filled),
            esc(&value),
            esc(&who)
        ));
    }
    h.push_str("</table><h2>People</h2><ul>");
    for p in &r.people {
        h.push_str(&format!(
            "<li>{} — {}</li>",
            esc(&p.user),
            esc(&p.roles.join(", "))
        ));
    }
    h.push_str("</ul><h2>Timeline</h2><table class=\"timeline\"><thead><tr><th>seq</th><th>time</th><th>who</th><th>what</th><th>hash</th></tr></thead><tbody>");
    for t in &r.timeline {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><span class=\"kind\">{}</span> {}</td><td class=\"hash\">{}</td></tr>",
            t.seq,
            esc(&crate::clock::rfc3339_us(t.ts_us)),
            esc(&t.author),
            esc(&t.kind),
            esc(&t.summary),
            esc(&t.hash)
        ));
    }
    h.push_str("</tbody></table>");
    if r.truncated {
        h.push_str(
            "<p class=\"note\">The timeline was cut; fetch the JSON report for all entries.</p>",
        );
    }
    h.push_str("<p class=\"note\">Each hash is SHA-256 over the previous hash and the entry's canonical encoding; check it with <code>plantwire audit verify</code>.</p></body></html>");
    h
}
