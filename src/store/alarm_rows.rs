//! Stored rows of the alarm views: one row per alarm occurrence (its two state bits and overlays),
//! versioned like every row; the alarm domain's state machine reads and writes these.

use serde::{Deserialize, Serialize};

use super::StoreError;
use super::rows::{from_versioned_json, versioned_json};

/// An alarm's priority, lowest first. `diagnostic` is journaled and never annunciated.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Diagnostic,
    Low,
    Medium,
    High,
    Critical,
}

impl Priority {
    pub const ALL: [Priority; 5] = [
        Priority::Diagnostic,
        Priority::Low,
        Priority::Medium,
        Priority::High,
        Priority::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Diagnostic => "diagnostic",
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }
}

/// How an alarm is shelved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShelveMode {
    /// Until the alarm returns to normal (or the server maximum, whichever comes first).
    OneShot,
    /// Until a time.
    Timed,
}

/// The shelved overlay: who, why, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Shelf {
    pub mode: ShelveMode,
    /// When the timer unshelves it (UTC µs); one-shot shelves carry the server maximum here.
    pub until_us: i64,
    pub reason: String,
    pub by: String,
    pub at_us: i64,
}

/// The out-of-service overlay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OutOfService {
    pub reason: String,
    pub by: String,
    pub at_us: i64,
}

/// One occurrence of an alarm condition `(source, condition)`, keyed by its id (the seq of the
/// entry that raised it). `active` × `acked` give the state; the rest are overlays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlarmRow {
    pub id: u64,
    pub source: String,
    pub condition: String,
    /// 1 for the condition's first occurrence.
    pub occurrence: u64,
    /// The id of the condition's previous occurrence.
    pub previous: Option<u64>,
    pub priority: Priority,
    pub message: String,
    /// The process input as last reported (a latched alarm stays `active` after it clears).
    pub input_active: bool,
    pub active: bool,
    pub acked: bool,
    /// Stays active after the input clears, until someone resets it.
    pub latched: bool,
    /// Suppressed by design (by a device or a rule).
    pub suppressed: bool,
    pub shelf: Option<Shelf>,
    pub out_of_service: Option<OutOfService>,
    pub raised_at_us: i64,
    pub cleared_at_us: Option<i64>,
    pub acked_at_us: Option<i64>,
    pub acked_by: Option<String>,
    pub updated_at_us: i64,
    /// The seq of the newest entry about this occurrence.
    pub last_seq: u64,
}

impl AlarmRow {
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        versioned_json(self)
    }

    pub fn decode(b: &[u8]) -> Result<Self, StoreError> {
        from_versioned_json(b, "alarm")
    }

    /// Cleared and acknowledged: the occurrence is over.
    pub fn is_normal(&self) -> bool {
        !self.active && self.acked
    }
}

impl super::table::Row for AlarmRow {
    fn encode(&self) -> Result<Vec<u8>, StoreError> {
        AlarmRow::encode(self)
    }

    fn decode(b: &[u8]) -> Result<Self, StoreError> {
        AlarmRow::decode(b)
    }
}
