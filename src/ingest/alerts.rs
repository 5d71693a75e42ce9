//! Alertmanager (webhook payload version 4) and Grafana alerting webhooks: one event per alert,
//! `firing` raises and `resolved` clears the condition named by the alert's fingerprint. Parsing
//! and mapping only; never names HTTP types.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::Rejection;
use crate::events::{AttrValue, ConditionState, EventIn, IdemKey, Keyed, Severity};

/// Which sender a webhook came from: its event type, default source and key scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Alertmanager,
    Grafana,
}

impl Sender {
    fn name(self) -> &'static str {
        match self {
            Sender::Alertmanager => "alertmanager",
            Sender::Grafana => "grafana",
        }
    }

    /// The event type of every alert from this sender.
    pub fn event_type(self) -> &'static str {
        match self {
            Sender::Alertmanager => "alertmanager.alert",
            Sender::Grafana => "grafana.alert",
        }
    }
}

/// Alerts in one notification at most.
pub const MAX_ALERTS: usize = 100;
/// Labels and annotations of one alert at most (each becomes an attribute).
pub const MAX_LABELS: usize = 32;
pub const MAX_ANNOTATIONS: usize = 16;
/// Longest label or annotation name (it is prefixed with `label.` or `annotation.`).
const MAX_NAME: usize = 48;
/// Longest label or annotation value, and the message.
const MAX_VALUE: usize = 1024;
const MAX_MESSAGE: usize = 4096;

/// The envelope both senders post. Fields not listed (`receiver`, `groupLabels`,
/// `commonLabels`, `commonAnnotations`, `externalURL`, `truncatedAlerts`, Grafana's `orgId`,
/// `title`, `state`, `message`, …) are accepted and not used: these senders add fields over time.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Webhook {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    group_key: Option<String>,
    alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: String,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    generator_url: Option<String>,
    fingerprint: String,
    /// Grafana only.
    #[serde(default)]
    value_string: Option<String>,
}

fn invalid(msg: impl Into<String>) -> Rejection {
    Rejection::invalid("invalid_alert", msg)
}

/// `labels.severity` → severity; a missing or unknown one is a warning.
pub fn severity(label: Option<&str>) -> Severity {
    match label.map(str::to_ascii_lowercase).as_deref() {
        Some("critical" | "crit" | "page" | "emergency" | "alert" | "fatal" | "disaster") => {
            Severity::Critical
        }
        Some("error" | "err" | "major" | "high") => Severity::Error,
        Some("warning" | "warn" | "minor" | "medium" | "average") => Severity::Warning,
        Some("notice") => Severity::Notice,
        Some("info" | "informational" | "information" | "low") => Severity::Info,
        Some("debug" | "none") => Severity::Debug,
        _ => Severity::Warning,
    }
}

/// Parses a webhook body into its events with their keys (fingerprint + startsAt + status).
pub fn parse(sender: Sender, body: &[u8]) -> Result<Vec<Keyed>, Rejection> {
    let hook: Webhook =
        serde_json::from_slice(body).map_err(|e| invalid(format!("invalid webhook body: {e}")))?;
    if sender == Sender::Alertmanager && hook.version.as_deref().is_some_and(|v| v != "4") {
        return Err(invalid("only webhook payload version 4 is understood"));
    }
    if hook.alerts.is_empty() {
        return Err(invalid("the notification has no alerts"));
    }
    if hook.alerts.len() > MAX_ALERTS {
        return Err(Rejection::invalid(
            "too_many_alerts",
            format!("at most {MAX_ALERTS} alerts per notification (set max_alerts on the sender)"),
        ));
    }
    hook.alerts
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            alert(sender, a, hook.group_key.as_deref()).map_err(|mut r| {
                r.message = format!("alerts[{i}]: {}", r.message);
                r
            })
        })
        .collect()
}

fn check_text(what: &str, s: &str, max: usize) -> Result<(), Rejection> {
    if s.len() > max {
        return Err(invalid(format!("{what} is longer than {max} bytes")));
    }
    Ok(())
}

fn alert(sender: Sender, a: Alert, group_key: Option<&str>) -> Result<Keyed, Rejection> {
    let state = match a.status.as_str() {
        "firing" => ConditionState::Active,
        "resolved" => ConditionState::Cleared,
        _ => return Err(invalid("status must be firing or resolved")),
    };
    let fp = &a.fingerprint;
    if fp.is_empty() || fp.len() > crate::events::MAX_CONDITION || fp.chars().any(char::is_control)
    {
        return Err(invalid("fingerprint must be 1-128 bytes"));
    }
    if a.labels.len() > MAX_LABELS {
        return Err(invalid(format!("at most {MAX_LABELS} labels")));
    }
    if a.annotations.len() > MAX_ANNOTATIONS {
        return Err(invalid(format!("at most {MAX_ANNOTATIONS} annotations")));
    }
    let starts_us =
        rfc3339_us(&a.starts_at).ok_or_else(|| invalid("startsAt is not an RFC 3339 time"))?;
    let ends_us = a.ends_at.as_deref().and_then(rfc3339_us).filter(|&t| t > 0);
    let mut attributes = BTreeMap::new();
    for (prefix, map) in [("label.", &a.labels), ("annotation.", &a.annotations)] {
        for (k, v) in map {
            if k.is_empty() || k.len() > MAX_NAME || k.chars().any(char::is_control) {
                return Err(invalid(format!(
                    "label and annotation names are 1-{MAX_NAME} bytes"
                )));
            }
            check_text("a label or annotation value", v, MAX_VALUE)?;
            attributes.insert(format!("{prefix}{k}"), AttrValue::Text(v.clone()));
        }
    }
    let mut put = |k: &str, v: Option<&str>| -> Result<(), Rejection> {
        if let Some(v) = v {
            check_text(k, v, MAX_VALUE)?;
            attributes.insert(k.to_string(), AttrValue::Text(v.to_string()));
        }
        Ok(())
    };
    put("starts_at", Some(&a.starts_at))?;
    put("generator_url", a.generator_url.as_deref())?;
    put("group_key", group_key)?;
    put("value_string", a.value_string.as_deref())?;
    let alertname = a.labels.get("alertname").map(String::as_str);
    let source = a
        .labels
        .get("instance")
        .map(String::as_str)
        .or(alertname)
        .unwrap_or(sender.name())
        .to_string();
    let message = a
        .annotations
        .get("summary")
        .or_else(|| a.annotations.get("description"))
        .map(String::as_str)
        .or(alertname)
        .unwrap_or("alert")
        .to_string();
    check_text("the summary", &message, MAX_MESSAGE)?;
    let occurred_at_us = match state {
        ConditionState::Active => Some(starts_us),
        ConditionState::Cleared => ends_us.or(Some(starts_us)),
    };
    let key = IdemKey::derived(sender.name(), format!("{fp}|{}|{}", a.starts_at, a.status));
    let event = EventIn {
        source,
        event_type: sender.event_type().to_string(),
        severity: severity(a.labels.get("severity").map(String::as_str)),
        message,
        attributes,
        occurred_at_us,
        condition: Some(a.fingerprint),
        state: Some(state),
    };
    Ok(Keyed {
        event,
        key: Some(key),
    })
}

/// An RFC 3339 time (`2024-05-01T10:00:00.123Z`, `…+02:00`) as UTC µs since the epoch; Go's zero
/// time `0001-01-01T00:00:00Z` (an alert that has not ended) gives a negative value.
pub fn rfc3339_us(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i.min(start + 6)];
        micros = frac.parse::<i64>().ok()? * 10i64.pow(6 - frac.len() as u32);
    }
    let offset_secs = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let off = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *c == b'+' { off } else { -off }
        }
        _ => return None,
    };
    // Days from the civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
    Some(secs * 1_000_000 + micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_parse_to_utc_micros() {
        assert_eq!(rfc3339_us("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_us("2024-05-01T10:00:00.123456789Z"),
            Some(1_714_557_600_123_456)
        );
        assert_eq!(
            rfc3339_us("2024-05-01T12:00:00+02:00"),
            Some(1_714_557_600_000_000)
        );
        assert!(rfc3339_us("0001-01-01T00:00:00Z").is_some_and(|t| t < 0));
        for bad in [
            "",
            "2024-05-01",
            "2024-13-01T00:00:00Z",
            "2024-05-01T10:00:00",
            "x024-05-01T10:00:00Z",
        ] {
            assert_eq!(rfc3339_us(bad), None, "{bad}");
        }
    }

    #[test]
    fn severities_map_with_warning_for_unknown() {
        assert_eq!(severity(Some("critical")), Severity::Critical);
        assert_eq!(severity(Some("Warning")), Severity::Warning);
        assert_eq!(severity(Some("info")), Severity::Info);
        assert_eq!(severity(Some("bogus")), Severity::Warning);
        assert_eq!(severity(None), Severity::Warning);
    }
}
