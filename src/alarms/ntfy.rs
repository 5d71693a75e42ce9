//! The subscribe side of ntfy for alarm topics: which topics exist, the ntfy message an alarm
//! entry becomes, and where a `since` starts. Pure mapping; the HTTP layer streams.
//!
//! Topics: `alarms` is every annunciated alarm (raise into `unack`, a shelve timer that brings one
//! back unacknowledged, an escalation notice); `alarms-<priority>` the same at or above
//! `low | medium | high | critical`. Message ids are `a<seq>` (the alarm entry's seq).

use serde::Serialize;

use crate::error::Rejection;
use crate::log::Entry;
use crate::store::{Priority, ReadTx, StoreError};

use super::AlarmEntry;
use super::escalation::KIND_ESCALATE;

/// The topic of every annunciated alarm.
pub const TOPIC: &str = "alarms";
/// ntfy's keepalive period.
pub const KEEPALIVE_SECS: u64 = 45;
/// Most messages a `since` replays (the oldest first).
pub const MAX_BACKLOG: usize = 1000;

/// One ntfy event as its JSON stream, SSE and WebSocket send it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NtfyEvent {
    pub id: String,
    /// Unix seconds.
    pub time: i64,
    /// `open`, `keepalive` or `message`.
    pub event: &'static str,
    pub topic: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// 1 (min) to 5 (max).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// The lowest priority a topic carries, or 404 `no_such_topic`.
pub fn topic_floor(topic: &str) -> Result<Priority, Rejection> {
    let p = match topic.strip_prefix(TOPIC) {
        Some("") => Some(Priority::Low),
        Some(rest) => rest
            .strip_prefix('-')
            .and_then(|p| Priority::ALL.into_iter().find(|x| x.as_str() == p))
            .filter(|p| *p != Priority::Diagnostic),
        None => None,
    };
    p.ok_or_else(|| {
        Rejection::not_found(
            "no_such_topic",
            "alarm topics are alarms and alarms-low|medium|high|critical",
        )
    })
}

/// ntfy's priority for an alarm priority: low 2, medium 3, high 4, critical 5.
pub fn ntfy_priority(p: Priority) -> u8 {
    match p {
        Priority::Diagnostic => 1,
        Priority::Low => 2,
        Priority::Medium => 3,
        Priority::High => 4,
        Priority::Critical => 5,
    }
}

fn control(event: &'static str, topic: &str, now_us: i64) -> NtfyEvent {
    NtfyEvent {
        id: format!("{event}{}", now_us.div_euclid(1000)),
        time: now_us.div_euclid(1_000_000),
        event,
        topic: topic.to_string(),
        message: None,
        title: None,
        priority: None,
        tags: Vec::new(),
    }
}

/// The first event of every subscription.
pub fn open(topic: &str, now_us: i64) -> NtfyEvent {
    control("open", topic, now_us)
}

pub fn keepalive(topic: &str, now_us: i64) -> NtfyEvent {
    control("keepalive", topic, now_us)
}

/// The message an alarm entry is on `topic` (floor `floor`) for a subscriber who sees `scope`,
/// if it is one there.
pub fn message_of(
    e: &Entry,
    topic: &str,
    floor: Priority,
    scope: &super::AlarmScope,
) -> Option<NtfyEvent> {
    if !e.kind.starts_with(super::KIND_PREFIX) {
        return None;
    }
    let body: AlarmEntry = serde_json::from_slice(&e.body).ok()?;
    let a = &body.alarm;
    if !scope.sees(&a.source) {
        return None;
    }
    let annunciated = a.priority != Priority::Diagnostic
        && a.priority >= floor
        && a.shelf.is_none()
        && a.out_of_service.is_none()
        && !a.suppressed;
    let what = match e.kind.as_str() {
        "alarm.raise" if a.active && !a.acked => "raised",
        "alarm.expire" if a.active && !a.acked => "back from shelve",
        k if k == KIND_ESCALATE => "escalated: still unacknowledged",
        _ => return None,
    };
    if !annunciated {
        return None;
    }
    let text = if a.message.is_empty() {
        format!("{} / {}", a.source, a.condition)
    } else {
        format!("{} / {}: {}", a.source, a.condition, a.message)
    };
    Some(NtfyEvent {
        id: format!("a{}", e.seq),
        time: e.ts.div_euclid(1_000_000),
        event: "message",
        topic: topic.to_string(),
        message: Some(text),
        title: Some(format!(
            "{} alarm {what} ({})",
            a.priority.as_str(),
            a.source
        )),
        priority: Some(ntfy_priority(a.priority)),
        tags: vec![
            "rotating_light".to_string(),
            a.priority.as_str().to_string(),
        ],
    })
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// Only what comes next (no `since`).
    New,
    All,
    /// After this message id's seq.
    After(u64),
    /// From this log time (µs) on.
    At(i64),
}

fn bad_since() -> Rejection {
    Rejection::invalid(
        "invalid_since",
        "since is all, a duration (30s, 10m, 2h, 1d), a Unix time in seconds or a message id",
    )
}

/// Reads ntfy's `since`: `all`, a duration back from `now_us`, a Unix time, or a message id.
pub fn parse_since(s: Option<&str>, now_us: i64) -> Result<Since, Rejection> {
    let Some(s) = s.map(str::trim) else {
        return Ok(Since::New);
    };
    if s == "all" {
        return Ok(Since::All);
    }
    if let Some(seq) = s.strip_prefix('a') {
        return seq.parse().map(Since::After).map_err(|_| bad_since());
    }
    if let Ok(secs) = s.parse::<i64>() {
        return secs
            .checked_mul(1_000_000)
            .map(Since::At)
            .ok_or_else(bad_since);
    }
    let unit = match s.chars().last() {
        Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        _ => return Err(bad_since()),
    };
    let n: i64 = s[..s.len() - 1].parse().map_err(|_| bad_since())?;
    let back = n
        .checked_mul(unit)
        .and_then(|x| x.checked_mul(1_000_000))
        .filter(|x| *x >= 0)
        .ok_or_else(bad_since)?;
    Ok(Since::At(now_us.saturating_sub(back)))
}

/// The seq after which a subscription replays (in snapshot `rtx` with head `head`).
pub fn start_after(rtx: &ReadTx, since: Since, head: u64) -> Result<u64, StoreError> {
    Ok(match since {
        Since::New => head,
        Since::All => 0,
        Since::After(seq) => seq.min(head),
        Since::At(t) => match rtx.alarm_seqs_by_time(t, i64::MAX, 1)?.first() {
            Some(&seq) => seq.saturating_sub(1),
            None => head,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_since_parse() {
        assert_eq!(topic_floor("alarms").unwrap(), Priority::Low);
        assert_eq!(topic_floor("alarms-high").unwrap(), Priority::High);
        assert!(topic_floor("alarms-diagnostic").is_err());
        assert!(topic_floor("alarmsx").is_err());
        assert!(topic_floor("pump").is_err());
        let now = 10_000 * 1_000_000;
        assert_eq!(parse_since(None, now).unwrap(), Since::New);
        assert_eq!(parse_since(Some("all"), now).unwrap(), Since::All);
        assert_eq!(parse_since(Some("a42"), now).unwrap(), Since::After(42));
        assert_eq!(
            parse_since(Some("10m"), now).unwrap(),
            Since::At(now - 600 * 1_000_000)
        );
        assert_eq!(
            parse_since(Some("1635528757"), now).unwrap(),
            Since::At(1_635_528_757_000_000)
        );
        for bad in ["", "x", "10y", "ax", "-5m"] {
            assert!(parse_since(Some(bad), now).is_err(), "{bad}");
        }
    }
}
