//! Retention policy: `inherit | forever | N days` (Zulip's meanings) per stream class, a site
//! default, per-stream (conversation, incident) overrides and legal holds, and the `[retention]`
//! configuration. Pure rules; no I/O.

use serde::{Deserialize, Serialize};

use crate::log::checkpoint::KIND_CHECKPOINT;
use crate::log::checkpoint::KIND_SIGNING_KEY;

/// How long payloads of a class or stream are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Keep {
    /// Whatever the level above says (class → site default).
    Inherit,
    Forever,
    Days(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not `inherit`, `forever` or `N days` (N from 1 to 36500)")]
pub struct KeepError(pub String);

impl Keep {
    pub fn parse(raw: &str) -> Result<Self, KeepError> {
        let t = raw.trim().to_ascii_lowercase();
        match t.as_str() {
            "inherit" => return Ok(Self::Inherit),
            "forever" => return Ok(Self::Forever),
            _ => {}
        }
        let n = t
            .strip_suffix("days")
            .or_else(|| t.strip_suffix("day"))
            .or_else(|| t.strip_suffix('d'))
            .unwrap_or(&t)
            .trim();
        match n.parse::<u32>() {
            Ok(d) if (1..=36_500).contains(&d) => Ok(Self::Days(d)),
            _ => Err(KeepError(raw.to_string())),
        }
    }

    /// µs after which a payload is due, `None` for forever (and for an unresolved inherit).
    pub fn micros(self) -> Option<i64> {
        match self {
            Self::Days(d) => Some(i64::from(d) * 86_400_000_000),
            _ => None,
        }
    }
}

impl TryFrom<String> for Keep {
    type Error = KeepError;
    fn try_from(s: String) -> Result<Self, KeepError> {
        Self::parse(&s)
    }
}

impl From<Keep> for String {
    fn from(k: Keep) -> String {
        match k {
            Keep::Inherit => "inherit".into(),
            Keep::Forever => "forever".into(),
            Keep::Days(d) => format!("{d} days"),
        }
    }
}

/// The class of a stream, by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Events,
    Alarms,
    Incidents,
    Chat,
    /// Everything else: administration, security, system (forever by default).
    Admin,
}

impl Class {
    pub const ALL: [Class; 5] = [
        Self::Events,
        Self::Alarms,
        Self::Incidents,
        Self::Chat,
        Self::Admin,
    ];

    /// The name used in config and commands.
    pub fn name(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::Alarms => "alarms",
            Self::Incidents => "incidents",
            Self::Chat => "chat",
            Self::Admin => "admin",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// [`Class::parse`], refusing an unknown name with `invalid_class`.
    pub fn parse_or_reject(name: &str) -> Result<Self, crate::error::Rejection> {
        Self::parse(name).ok_or_else(|| {
            crate::error::Rejection::invalid(
                "invalid_class",
                "a class is one of events, alarms, incidents, chat, admin",
            )
        })
    }

    pub fn of(stream: &str) -> Self {
        let prefix = stream.split('/').next().unwrap_or_default();
        match prefix {
            "events" => Self::Events,
            "alarms" => Self::Alarms,
            "incidents" => Self::Incidents,
            // An incident is a conversation whose id starts `i-` (`incidents::open`).
            "conv" if stream.starts_with("conv/i-") => Self::Incidents,
            "conv" | "contacts" => Self::Chat,
            _ => Self::Admin,
        }
    }
}

/// `[retention]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// The site default, what `inherit` means for a class.
    pub default: Keep,
    pub events: Keep,
    pub alarms: Keep,
    pub incidents: Keep,
    pub chat: Keep,
    /// Administration, security and system entries.
    pub admin: Keep,
    /// Days a purged payload stays restorable (0: removed at once).
    pub grace_days: u32,
    /// Legal hold on the whole site: nothing is purged.
    pub legal_hold: bool,
    /// Entries purged per write transaction.
    pub batch: usize,
    /// Pause between two batches (ms), so the writer serves others in between.
    pub pause_ms: u64,
    /// Seconds between two purge passes.
    pub interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            default: Keep::Forever,
            events: Keep::Inherit,
            alarms: Keep::Inherit,
            incidents: Keep::Inherit,
            chat: Keep::Inherit,
            admin: Keep::Forever,
            grace_days: 7,
            legal_hold: false,
            batch: 200,
            pause_ms: 50,
            interval_secs: 3600,
        }
    }
}

impl RetentionConfig {
    /// A bad value: the key and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.default == Keep::Inherit {
            return Err(("retention.default", "must be `forever` or `N days`".into()));
        }
        if !(1..=10_000).contains(&self.batch) {
            return Err((
                "retention.batch",
                format!("{} is outside 1..=10000", self.batch),
            ));
        }
        if self.grace_days > 3650 {
            return Err(("retention.grace_days", "at most 3650".into()));
        }
        if !(1..=604_800).contains(&self.interval_secs) {
            return Err(("retention.interval_secs", "1 to 604800".into()));
        }
        if self.pause_ms > 60_000 {
            return Err(("retention.pause_ms", "at most 60000".into()));
        }
        Ok(())
    }

    /// The keep of class `c` for a site whose scope row is `site`: its class override, else the
    /// config's.
    pub fn class_for(&self, site: &ScopeRow, c: Class) -> Keep {
        match site.classes.get(c) {
            Some(Keep::Inherit) | None => self.class(c),
            Some(k) => k,
        }
    }

    fn class(&self, c: Class) -> Keep {
        match c {
            Class::Events => self.events,
            Class::Alarms => self.alarms,
            Class::Incidents => self.incidents,
            Class::Chat => self.chat,
            Class::Admin => self.admin,
        }
    }
}

/// A stored override of one scope (`site` or `stream:<name>`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeRow {
    /// Overrides the class policy (`None`: no override).
    #[serde(default)]
    pub keep: Option<Keep>,
    /// Legal hold: nothing of this scope is purged while set.
    #[serde(default)]
    pub hold: bool,
    /// Per-class keeps of the site scope (`retention set --site --class C`); at HQ these are a
    /// site's bounds. Absent or `inherit`: the config's class keep.
    #[serde(default, skip_serializing_if = "ClassKeeps::is_empty")]
    pub classes: ClassKeeps,
}

/// A keep per stream class; `None` leaves the class to the config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassKeeps {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Keep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarms: Option<Keep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incidents: Option<Keep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<Keep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<Keep>,
}

impl ClassKeeps {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    pub fn get(&self, c: Class) -> Option<Keep> {
        match c {
            Class::Events => self.events,
            Class::Alarms => self.alarms,
            Class::Incidents => self.incidents,
            Class::Chat => self.chat,
            Class::Admin => self.admin,
        }
    }

    /// Sets one class's keep; `inherit` removes it.
    pub fn set(&mut self, c: Class, keep: Keep) {
        let k = (keep != Keep::Inherit).then_some(keep);
        match c {
            Class::Events => self.events = k,
            Class::Alarms => self.alarms = k,
            Class::Incidents => self.incidents = k,
            Class::Chat => self.chat = k,
            Class::Admin => self.admin = k,
        }
    }
}

/// The scope key of a stream's override row.
pub fn stream_scope(stream: &str) -> String {
    format!("stream:{stream}")
}

/// The scope key of the site-wide row.
pub const SITE_SCOPE: &str = "site";

/// How long an entry's payload is kept (µs), `None` for never purged. Chain-bearing entries
/// (checkpoints, signing keys) are never purged, whatever the policy.
pub fn keep_us(
    config: &RetentionConfig,
    site: &ScopeRow,
    stream_row: Option<&ScopeRow>,
    kind: &str,
    stream: &str,
) -> Option<i64> {
    if kind == KIND_CHECKPOINT || kind == KIND_SIGNING_KEY || stream.starts_with("system/") {
        return None;
    }
    if config.legal_hold || site.hold || stream_row.is_some_and(|r| r.hold) {
        return None;
    }
    let default = site
        .keep
        .filter(|k| *k != Keep::Inherit)
        .unwrap_or(config.default);
    let class = config.class_for(site, Class::of(stream));
    let keep = match stream_row.and_then(|r| r.keep) {
        Some(Keep::Inherit) | None => class,
        Some(k) => k,
    };
    match keep {
        Keep::Inherit => default.micros(),
        k => k.micros(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_parses_zulip_meanings_and_resolves_through_the_levels() {
        assert_eq!(Keep::parse("inherit"), Ok(Keep::Inherit));
        assert_eq!(Class::of("conv/i-0a1b"), Class::Incidents);
        assert_eq!(Class::of("conv/g-0a1b"), Class::Chat);
        assert_eq!(Class::of("events/pump-7"), Class::Events);
        assert_eq!(Class::of("templates/pump-trip"), Class::Admin);
        assert_eq!(Keep::parse("Forever"), Ok(Keep::Forever));
        assert_eq!(Keep::parse("30 days"), Ok(Keep::Days(30)));
        assert_eq!(Keep::parse("30d"), Ok(Keep::Days(30)));
        assert_eq!(Keep::parse("7"), Ok(Keep::Days(7)));
        assert!(Keep::parse("0 days").is_err() && Keep::parse("soon").is_err());
        let day = 86_400_000_000;
        let mut c = RetentionConfig {
            default: Keep::Days(90),
            chat: Keep::Days(30),
            ..RetentionConfig::default()
        };
        let site = ScopeRow::default();
        assert_eq!(
            keep_us(&c, &site, None, "chat.message", "conv/x"),
            Some(30 * day)
        );
        assert_eq!(
            keep_us(&c, &site, None, "event", "events/p"),
            Some(90 * day)
        );
        assert_eq!(keep_us(&c, &site, None, "user.added", "admin/users"), None);
        assert_eq!(
            keep_us(&c, &site, None, KIND_CHECKPOINT, "system/checkpoints"),
            None
        );
        let row = ScopeRow {
            keep: Some(Keep::Forever),
            hold: false,
            ..Default::default()
        };
        assert_eq!(
            keep_us(&c, &site, Some(&row), "chat.message", "conv/x"),
            None
        );
        let held = ScopeRow {
            keep: Some(Keep::Days(1)),
            hold: true,
            ..Default::default()
        };
        assert_eq!(
            keep_us(&c, &site, Some(&held), "chat.message", "conv/x"),
            None
        );
        c.legal_hold = true;
        assert_eq!(keep_us(&c, &site, None, "chat.message", "conv/x"), None);
    }
}
