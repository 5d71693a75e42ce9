//! Events published by machines: their shape, validation, and the append of one or many in a
//! single commit (a batch is all-or-nothing and gets consecutive seqs).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::audience::{Audience, SiteWide, Viewer};
use crate::config::EventsConfig;
use crate::error::Rejection;
use crate::log::{Author, Log, SubmitError};
use crate::store::{EventIndex, EventRange, ReadTx, StoreError};

pub mod export;
mod keyed;
mod query;
pub use keyed::{Accepted, IdemKey, Keyed, PRUNE_BATCH, prune_keys, prune_loop, publish_keyed};
pub use query::{
    EventEntry, ListError, Page, Query, SCAN_LIMIT, backfill, entry, list, parse_time,
};

pub const KIND_EVENT: &str = "event";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Debug,
    #[default]
    Info,
    Notice,
    Warning,
    Error,
    Critical,
}

impl Severity {
    /// 0 (`debug`) to 5 (`critical`): the order a minimum-severity filter compares by.
    pub fn rank(self) -> u8 {
        self as u8
    }
}

/// A scalar attribute value; placeholders in templates are filled from these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum AttrValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

/// One event as a machine sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventIn {
    /// What raised it, e.g. `pump-7` or `plc-3/di-12`.
    pub source: String,
    /// A dotted type such as `pressure.high`.
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub severity: Severity,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, AttrValue>,
    /// When it happened by the device's clock (UTC µs); the log's own `ts` is the server's.
    #[serde(default)]
    pub occurred_at_us: Option<i64>,
    /// The identity of a condition at its source (an ntfy sequence id, an Alertmanager
    /// fingerprint): later events with the same one update or clear it. At most 128 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Whether this event raises or clears `condition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ConditionState>,
}

/// The state of a condition an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConditionState {
    Active,
    Cleared,
}

/// One event as it arrives over HTTP: attribute values stay JSON text until `into_event` reads
/// them, so a number is taken exactly as written or refused, never silently rounded or retyped.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventWire {
    source: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    severity: Severity,
    #[serde(default)]
    message: String,
    #[serde(default)]
    attributes: BTreeMap<String, Box<serde_json::value::RawValue>>,
    #[serde(default)]
    occurred_at_us: Option<i64>,
    #[serde(default)]
    condition: Option<String>,
    #[serde(default)]
    state: Option<ConditionState>,
    /// The client's idempotency key for this event (not stored in the body).
    #[serde(default)]
    event_id: Option<String>,
}

impl EventWire {
    /// The event with every attribute read, and its `event_id`; an unrepresentable number is
    /// `number_out_of_range`.
    pub fn into_keyed(mut self) -> Result<(EventIn, Option<String>), Rejection> {
        let id = self.event_id.take();
        Ok((self.into_event()?, id))
    }

    /// The event with every attribute read; an unrepresentable number is `number_out_of_range`.
    fn into_event(self) -> Result<EventIn, Rejection> {
        let mut attributes = BTreeMap::new();
        for (name, raw) in self.attributes {
            let value = attr_from_json(raw.get()).map_err(|(code, why)| {
                Rejection::invalid(code, format!("attribute `{name}`: {why}"))
            })?;
            attributes.insert(name, value);
        }
        Ok(EventIn {
            source: self.source,
            event_type: self.event_type,
            severity: self.severity,
            message: self.message,
            attributes,
            occurred_at_us: self.occurred_at_us,
            condition: self.condition,
            state: self.state,
        })
    }
}

/// One attribute value from its JSON text (already valid JSON, checked by the parser). A number
/// with `.`, `e` or `E` is a float, read with correct rounding, and must be finite (`1e400` is
/// refused); any other number is an integer and must fit an i64 (it never becomes a float).
fn attr_from_json(raw: &str) -> Result<AttrValue, (&'static str, &'static str)> {
    const OUT_OF_RANGE: &str = "number_out_of_range";
    match raw.as_bytes().first() {
        Some(b'"') => serde_json::from_str(raw)
            .map(AttrValue::Text)
            .map_err(|_| ("invalid_event", "the text is not a valid JSON string")),
        Some(b't') => Ok(AttrValue::Bool(true)),
        Some(b'f') => Ok(AttrValue::Bool(false)),
        Some(b'-' | b'0'..=b'9') if raw.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) => {
            match raw.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(AttrValue::Float(f)),
                _ => Err((
                    OUT_OF_RANGE,
                    "the number is beyond the range of a 64-bit float",
                )),
            }
        }
        Some(b'-' | b'0'..=b'9') => raw.parse::<i64>().map(AttrValue::Int).map_err(|_| {
            (
                OUT_OF_RANGE,
                "the integer is outside the signed 64-bit range; send it as a string",
            )
        }),
        _ => Err((
            "invalid_event",
            "values must be a string, a number or a boolean",
        )),
    }
}

/// What is stored as the body of an `event` entry.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventBody {
    /// Who published it: `device:<name>` or `user:<name>`.
    pub by: String,
    #[serde(flatten)]
    pub event: EventIn,
}

/// The stream operators' manual events go to.
pub const MANUAL_STREAM: &str = "events/manual";

const MAX_SOURCE: usize = 128;
const MAX_TYPE: usize = 128;
const MAX_MESSAGE: usize = 4096;
const MAX_ATTRS: usize = 64;
const MAX_ATTR_KEY: usize = 64;
const MAX_ATTR_TEXT: usize = 1024;
/// Longest condition identity, in bytes.
pub const MAX_CONDITION: usize = 128;

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Checks one event against the limits; the message says which field is wrong.
pub fn validate(ev: &EventIn, limits: &EventsConfig) -> Result<(), Rejection> {
    let bad = |msg: &str| Err(Rejection::invalid("invalid_event", msg));
    if ev.source.is_empty() || ev.source.len() > MAX_SOURCE || has_control(&ev.source) {
        return bad("source must be 1-128 characters without control characters");
    }
    let type_ok = !ev.event_type.is_empty()
        && ev.event_type.len() <= MAX_TYPE
        && ev
            .event_type
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'));
    if !type_ok {
        return bad("type must be 1-128 characters of A-Z a-z 0-9 . _ - : /");
    }
    if ev.message.len() > MAX_MESSAGE {
        return bad("message is longer than 4096 bytes");
    }
    if let Some(c) = &ev.condition
        && (c.is_empty() || c.len() > MAX_CONDITION || has_control(c))
    {
        return bad("condition must be 1-128 bytes without control characters");
    }
    if ev.attributes.len() > MAX_ATTRS {
        return bad("at most 64 attributes");
    }
    for (k, v) in &ev.attributes {
        if k.is_empty() || k.len() > MAX_ATTR_KEY || has_control(k) {
            return bad("attribute names must be 1-64 characters without control characters");
        }
        if let AttrValue::Text(t) = v
            && t.len() > MAX_ATTR_TEXT
        {
            return bad("attribute text values are at most 1024 bytes");
        }
        if let AttrValue::Float(f) = v
            && !f.is_finite()
        {
            return bad("attribute numbers must be finite");
        }
    }
    let size = json_size(ev);
    if size > limits.max_event_bytes {
        return Err(Rejection::invalid(
            "event_too_large",
            format!(
                "the event is {size} bytes; the limit is {}",
                limits.max_event_bytes
            ),
        ));
    }
    Ok(())
}

/// The length of `ev`'s JSON, counted while serialising instead of building it (`usize::MAX` if
/// it cannot be serialised).
fn json_size(ev: &EventIn) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, ev) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// The stream a device's events go to.
pub fn stream_of(device: &str) -> String {
    format!("events/{device}")
}

/// Validates every event, then appends them all to `stream` in one commit, authored by `by`;
/// returns their seqs in order.
pub async fn publish(
    log: &Log,
    limits: &EventsConfig,
    by: &Author,
    stream: &str,
    events: Vec<EventIn>,
) -> Result<Vec<u64>, SubmitError> {
    let items = events
        .into_iter()
        .map(|event| Keyed { event, key: None })
        .collect();
    let accepted = publish_keyed(log, limits, by, stream, items).await?;
    Ok(accepted.into_iter().map(|a| a.seq).collect())
}

/// An event as read back.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoredEvent {
    pub seq: u64,
    pub ts_us: i64,
    #[serde(flatten)]
    pub body: EventBody,
}

/// The event domain's kinds on a socket.
pub const KINDS: &[&str] = &[KIND_EVENT];

/// The event domain's audience factory, registered in the composition root as domain `events`.
/// Everyone signed in at the site sees events; replay reads the event index.
pub fn audience(_rtx: &ReadTx, _viewer: &Viewer) -> Result<Box<dyn Audience>, StoreError> {
    Ok(Box::new(SiteWide(|rtx, lo, hi, limit| {
        let range = EventRange {
            lo,
            hi,
            newest_first: false,
            limit,
        };
        rtx.event_seqs(&EventIndex::All, range)
    })))
}

#[cfg(test)]
mod tests;
