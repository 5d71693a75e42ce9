//! Incidents: a conversation of kind `incident` opened from an alarm or event (by hand or by a
//! rule) with a pinned version of a question template; state, structured answers, report.
//!
//! Every change is an `incident.*` entry on the conversation's stream (so chat's audience, its
//! membership, receipts and resume apply), with the incident view row updated in the same job.
//! Answers are checked against the pinned version before anything is queued, and attachments in
//! the job; a refused reply writes nothing.

pub mod answers;
pub mod lifecycle;
pub mod open;
pub mod pattern;
pub mod placeholders;
pub mod read;
pub mod report;
pub mod rules;
pub mod site_scope;
pub mod templates;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::log::SubmitError;
use crate::log::read::ReadError;
use crate::store::{Priority, StoreError};

pub use placeholders::Context;

/// Question id (or definition field) → why it was refused.
pub type FieldErrors = BTreeMap<String, String>;

pub const KIND_OPENED: &str = "incident.opened";
pub const KIND_STATE: &str = "incident.state";
pub const KIND_ANSWERED: &str = "incident.answered";
pub const KIND_ASSIGNED: &str = "incident.assigned";

/// Why an incident or template request failed.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// Refused field by field (422): nothing was stored.
    #[error("{code}: {} field(s) refused", fields.len())]
    Fields {
        code: &'static str,
        fields: FieldErrors,
    },
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("an entry body does not decode")]
    Body(#[source] serde_json::Error),
}

impl From<crate::error::Rejection> for IncidentError {
    fn from(r: crate::error::Rejection) -> Self {
        Self::Submit(SubmitError::Rejected(r))
    }
}

/// Where an incident stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Open,
    Investigating,
    Resolved,
    Closed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Investigating => "investigating",
            State::Resolved => "resolved",
            State::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "open" => State::Open,
            "investigating" => State::Investigating,
            "resolved" => State::Resolved,
            "closed" => State::Closed,
            _ => return None,
        })
    }
}

/// The body of every `incident.*` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum IncidentBody {
    Opened {
        incident: String,
        template: String,
        version: u32,
        title: String,
        severity: Priority,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assignee: Option<String>,
        context: Box<Context>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        alarms: Vec<u64>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        events: Vec<u64>,
        /// The config rule that opened it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
    },
    State {
        incident: String,
        from: State,
        to: State,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A new assignee and/or severity.
    Assigned {
        incident: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assignee: Option<String>,
        severity: Priority,
    },
    Answered {
        incident: String,
        version: u32,
        /// Question id → value; `null` cleared an optional answer.
        answers: BTreeMap<String, serde_json::Value>,
    },
}

impl IncidentBody {
    pub fn kind(&self) -> &'static str {
        match self {
            IncidentBody::Opened { .. } => KIND_OPENED,
            IncidentBody::State { .. } => KIND_STATE,
            IncidentBody::Answered { .. } => KIND_ANSWERED,
            IncidentBody::Assigned { .. } => KIND_ASSIGNED,
        }
    }
}

/// The 404 of an incident the caller may not read or that does not exist.
pub fn no_incident() -> crate::error::Rejection {
    crate::error::Rejection::not_found("no_such_incident", "no incident with this id")
}
