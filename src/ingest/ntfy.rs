//! The ntfy-compatible publish: a message as a body plus header or query parameters under ntfy's
//! aliases, or ntfy's JSON form, mapped to one event. Parsing only; never names HTTP types.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::error::Rejection;
use crate::events::{AttrValue, EventIn, IdemKey, Keyed, Severity};

/// The event type every ntfy message gets.
pub const EVENT_TYPE: &str = "ntfy.message";
/// What ntfy itself sends when a message is empty.
const EMPTY_MESSAGE: &str = "triggered";
/// ntfy's limits (v2.28): a title of at most 1 KB, all tags together at most 512 bytes.
const MAX_TITLE: usize = 1024;
const MAX_TAGS: usize = 512;
/// ntfy turns a longer body into an attachment; we take no attachments.
const MAX_MESSAGE: usize = 4096;

/// The parameters of a publish: header and query pairs, names lower-cased, headers first.
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn push(&mut self, name: &str, value: String) {
        self.pairs.push((name.to_ascii_lowercase(), value));
    }

    /// The first value under any of `aliases` (lower-case), headers before the query.
    fn get(&self, aliases: &[&str]) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| aliases.contains(&k.as_str()))
            .map(|(_, v)| v.as_str())
    }
}

const TITLE: &[&str] = &["x-title", "title", "t"];
const MESSAGE: &[&str] = &["x-message", "message", "m"];
const PRIORITY: &[&str] = &["x-priority", "priority", "prio", "p"];
const TAGS: &[&str] = &["x-tags", "tags", "tag", "ta"];
const SEQUENCE_ID: &[&str] = &["x-sequence-id", "sequence-id", "sid"];
/// plantwire's own addition: when the message happened, Unix seconds.
const TIME: &[&str] = &["x-time", "time"];
const IDEMPOTENCY_KEY: &[&str] = &["idempotency-key"];

fn invalid(msg: impl Into<String>) -> Rejection {
    Rejection::invalid("invalid_ntfy", msg)
}

/// What a publish said, before it becomes an event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    pub topic: String,
    pub message: String,
    pub title: Option<String>,
    pub tags: Vec<String>,
    /// 1-5.
    pub priority: Option<u8>,
    pub sequence_id: Option<String>,
    pub time_secs: Option<i64>,
    pub idempotency_key: Option<String>,
}

/// A topic as ntfy allows it: 1-64 of `A-Z a-z 0-9 _ -`.
pub fn check_topic(topic: &str) -> Result<(), Rejection> {
    let ok = !topic.is_empty()
        && topic.len() <= 64
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(invalid("a topic is 1-64 characters of A-Z a-z 0-9 _ -"))
    }
}

/// 1-5 or a name: min, low, default, high, max, urgent (ntfy's set).
fn priority(p: &str) -> Result<u8, Rejection> {
    match p.trim().to_ascii_lowercase().as_str() {
        "1" | "min" => Ok(1),
        "2" | "low" => Ok(2),
        "3" | "default" => Ok(3),
        "4" | "high" => Ok(4),
        "5" | "max" | "urgent" => Ok(5),
        _ => Err(invalid(
            "priority must be 1-5 or min, low, default, high, max, urgent",
        )),
    }
}

fn tags(list: impl IntoIterator<Item = String>) -> Result<Vec<String>, Rejection> {
    let tags: Vec<String> = list
        .into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if tags.iter().map(|t| t.len() + 1).sum::<usize>() > MAX_TAGS + 1 {
        return Err(invalid("the tags together are longer than 512 bytes"));
    }
    Ok(tags)
}

/// A publish to `/ntfy/<topic>`: the body is the message unless a message parameter is given.
pub fn from_publish(topic: &str, body: &[u8], params: &Params) -> Result<Message, Rejection> {
    check_topic(topic)?;
    let message = match params.get(MESSAGE) {
        Some(m) => m.to_string(),
        None => std::str::from_utf8(body)
            .map_err(|_| {
                invalid("the message body must be UTF-8 text (attachments are not taken)")
            })?
            .to_string(),
    };
    let time_secs = params
        .get(TIME)
        .map(|t| {
            t.trim()
                .parse::<i64>()
                .map_err(|_| invalid("X-Time must be Unix seconds"))
        })
        .transpose()?;
    Ok(Message {
        topic: topic.to_string(),
        message,
        title: params.get(TITLE).map(str::to_string),
        tags: tags(
            params
                .get(TAGS)
                .unwrap_or_default()
                .split(',')
                .map(str::to_string),
        )?,
        priority: params.get(PRIORITY).map(priority).transpose()?,
        sequence_id: params.get(SEQUENCE_ID).map(str::to_string),
        time_secs,
        idempotency_key: params.get(IDEMPOTENCY_KEY).map(str::to_string),
    })
}

/// ntfy's JSON publish body. Fields ntfy defines that plantwire does not use are accepted and
/// ignored; any other field is refused, so a typo is not silently lost.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPublish {
    topic: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    priority: Option<u8>,
    #[serde(default)]
    sequence_id: Option<String>,
    #[serde(default)]
    time: Option<i64>,
    #[serde(default)]
    #[serde(rename = "actions")]
    _actions: Option<IgnoredAny>,
    #[serde(default)]
    #[serde(rename = "click")]
    _click: Option<IgnoredAny>,
    #[serde(default)]
    #[serde(rename = "attach")]
    _attach: Option<IgnoredAny>,
    #[serde(default)]
    #[serde(rename = "markdown")]
    _markdown: Option<IgnoredAny>,
    #[serde(default)]
    #[serde(rename = "icon")]
    _icon: Option<IgnoredAny>,
    #[serde(default)]
    #[serde(rename = "filename")]
    _filename: Option<IgnoredAny>,
    #[serde(default)]
    #[serde(rename = "delay")]
    _delay: Option<IgnoredAny>,
    #[serde(default)]
    #[serde(rename = "email")]
    _email: Option<IgnoredAny>,
    #[serde(default)]
    #[serde(rename = "call")]
    _call: Option<IgnoredAny>,
    #[serde(default)]
    #[serde(rename = "cache")]
    _cache: Option<IgnoredAny>,
    #[serde(default)]
    #[serde(rename = "firebase")]
    _firebase: Option<IgnoredAny>,
}

/// The JSON form (`POST /ntfy` with `{topic, message, …}`); `Idempotency-Key` comes from `params`.
pub fn from_json(body: &[u8], params: &Params) -> Result<Message, Rejection> {
    let j: JsonPublish =
        serde_json::from_slice(body).map_err(|e| invalid(format!("invalid JSON publish: {e}")))?;
    check_topic(&j.topic)?;
    if let Some(p) = j.priority
        && !(1..=5).contains(&p)
    {
        return Err(invalid("priority must be 1-5"));
    }
    Ok(Message {
        topic: j.topic,
        message: j.message.unwrap_or_default(),
        title: j.title,
        tags: tags(j.tags)?,
        priority: j.priority,
        sequence_id: j.sequence_id,
        time_secs: j.time,
        idempotency_key: params.get(IDEMPOTENCY_KEY).map(str::to_string),
    })
}

/// ntfy priority → severity: 1 debug, 2 and 3 info, 4 warning, 5 critical.
pub fn severity(priority: Option<u8>) -> Severity {
    match priority {
        Some(1) => Severity::Debug,
        Some(4) => Severity::Warning,
        Some(5) => Severity::Critical,
        _ => Severity::Info,
    }
}

impl Message {
    /// The event and its idempotency key: `Idempotency-Key` if given, else the sequence id
    /// together with the message time when both are given; otherwise none (every publish is new).
    pub fn into_keyed(self) -> Result<Keyed, Rejection> {
        if self.message.len() > MAX_MESSAGE {
            return Err(invalid("the message is longer than 4096 bytes"));
        }
        if self.title.as_ref().is_some_and(|t| t.len() > MAX_TITLE) {
            return Err(invalid("the title is longer than 1024 bytes"));
        }
        let key = match (&self.idempotency_key, &self.sequence_id, self.time_secs) {
            (Some(k), _, _) => Some(IdemKey::client("ntfy", k)?),
            (None, Some(sid), Some(t)) => Some(IdemKey::client("ntfy", &format!("{sid}@{t}"))?),
            _ => None,
        };
        let mut attributes = BTreeMap::new();
        if let Some(t) = self.title {
            attributes.insert("title".to_string(), AttrValue::Text(t));
        }
        if !self.tags.is_empty() {
            attributes.insert("tags".to_string(), AttrValue::Text(self.tags.join(",")));
        }
        if let Some(p) = self.priority {
            attributes.insert("priority".to_string(), AttrValue::Int(i64::from(p)));
        }
        let message = if self.message.is_empty() {
            EMPTY_MESSAGE.to_string()
        } else {
            self.message
        };
        let event = EventIn {
            source: self.topic,
            event_type: EVENT_TYPE.to_string(),
            severity: severity(self.priority),
            message,
            attributes,
            occurred_at_us: self.time_secs.map(|t| t.saturating_mul(1_000_000)),
            condition: self.sequence_id,
            state: None,
        };
        Ok(Keyed { event, key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_win_over_the_query_and_aliases_are_read() {
        let mut p = Params::default();
        p.push("Priority", "high".into());
        p.push("Tags", "pump, pressure".into());
        p.push("t", "query title".into());
        p.push("p", "1".into());
        let m = from_publish("pump-7", b"Pump 7 pressure high", &p).unwrap();
        assert_eq!(m.priority, Some(4));
        assert_eq!(m.tags, ["pump", "pressure"]);
        assert_eq!(m.title.as_deref(), Some("query title"));
        let k = m.into_keyed().unwrap();
        assert_eq!(k.event.severity, Severity::Warning);
        assert!(k.key.is_none());
    }

    #[test]
    fn bad_topics_priorities_and_bodies_are_refused() {
        let p = Params::default();
        assert!(from_publish("a/b", b"x", &p).is_err());
        assert!(from_publish("", b"x", &p).is_err());
        assert!(from_publish("ok", &[0xff, 0xfe], &p).is_err());
        let mut bad = Params::default();
        bad.push("x-priority", "6".into());
        assert!(from_publish("ok", b"x", &bad).is_err());
        assert!(from_json(br#"{"topic":"ok","priority":9}"#, &p).is_err());
        assert!(from_json(br#"{"topic":"ok","colour":"red"}"#, &p).is_err());
        assert!(from_json(br#"{"topic":"ok","click":"https://x","markdown":true}"#, &p).is_ok());
    }
}
