//! The template and incident views: template rows (name, the seq of each version's entry,
//! archived), incident rows, and which incident an alarm occurrence opened, all versioned rows
//! written in the same transaction as their entries. The definitions live in the log entries.

use std::collections::BTreeMap;

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::rows::{from_versioned_json, versioned_json};
use super::table::Txn;
use super::{INCIDENT_ALARMS, INCIDENTS, META, ReadTx, StoreError, TEMPLATES, WriteTx};

/// `meta` key: the last seq the incident rules follower has handled (u64 BE).
const RULES_CURSOR_KEY: &str = "incident_rules_cursor";

/// A question template. Keyed by its id (a slug chosen at creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRow {
    pub id: String,
    pub name: String,
    /// The seq of the `template.saved` entry of each version; version `n` is `versions[n-1]`.
    pub versions: Vec<u64>,
    pub archived: bool,
    /// Incidents opened with any version of it.
    pub incidents: u64,
}

/// An incident. Keyed by its id, which is also its conversation's id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentRow {
    pub id: String,
    pub template: String,
    pub version: u32,
    pub title: String,
    pub state: String,
    pub severity: String,
    pub assignee: Option<String>,
    pub alarms: Vec<u64>,
    pub events: Vec<u64>,
    /// Seq and time of the `incident.opened` entry.
    pub opened_seq: u64,
    pub opened_at_us: i64,
    pub opened_by: String,
    /// First time it left `open` (acknowledged), and the last time it was resolved / closed.
    pub acked_at_us: Option<i64>,
    pub resolved_at_us: Option<i64>,
    pub closed_at_us: Option<i64>,
    /// Question id → seq of the entry holding its current answer.
    pub answers: BTreeMap<String, u64>,
    /// Every `incident.*` entry of it, oldest first.
    pub entries: Vec<u64>,
}

macro_rules! row {
    ($t:ty, $what:literal) => {
        impl super::table::Row for $t {
            fn encode(&self) -> Result<Vec<u8>, StoreError> {
                versioned_json(self)
            }

            fn decode(b: &[u8]) -> Result<Self, StoreError> {
                from_versioned_json(b, $what)
            }
        }
    };
}
row!(TemplateRow, "template");
row!(IncidentRow, "incident");

fn template_of(t: &impl Txn, id: &str) -> Result<Option<TemplateRow>, StoreError> {
    TEMPLATES.get(t, id)
}

fn templates_of(t: &impl Txn) -> Result<Vec<TemplateRow>, StoreError> {
    let mut out = Vec::new();
    TEMPLATES.range::<&str>(t, .., |_, row| {
        out.push(row);
        true
    })?;
    Ok(out)
}

fn incident_of(t: &impl Txn, id: &str) -> Result<Option<IncidentRow>, StoreError> {
    INCIDENTS.get(t, id)
}

impl ReadTx {
    pub fn template(&self, id: &str) -> Result<Option<TemplateRow>, StoreError> {
        template_of(self, id)
    }

    /// Every template, by id.
    pub fn templates(&self) -> Result<Vec<TemplateRow>, StoreError> {
        templates_of(self)
    }

    pub fn incident(&self, id: &str) -> Result<Option<IncidentRow>, StoreError> {
        incident_of(self, id)
    }

    /// Visits every incident (by id) until `visit` returns false.
    pub fn scan_incidents(&self, visit: impl FnMut(IncidentRow) -> bool) -> Result<(), StoreError> {
        let mut visit = visit;
        INCIDENTS.range::<&str>(self, .., |_, row| visit(row))
    }

    /// The incident alarm occurrence `alarm` opened or was linked to.
    pub fn incident_of_alarm(&self, alarm: u64) -> Result<Option<String>, StoreError> {
        let t = self.txn.open_table(INCIDENT_ALARMS)?;
        Ok(t.get(alarm)?.map(|v| v.value().to_string()))
    }

    /// The last seq the incident rules have handled (0: none yet).
    pub fn incident_rules_cursor(&self) -> Result<Option<u64>, StoreError> {
        cursor(self.meta(RULES_CURSOR_KEY)?)
    }
}

fn cursor(v: Option<Vec<u8>>) -> Result<Option<u64>, StoreError> {
    v.map(|b| {
        <[u8; 8]>::try_from(b.as_slice())
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::Malformed {
                what: "incident rules cursor",
            })
    })
    .transpose()
}

impl WriteTx {
    pub fn template(&self, id: &str) -> Result<Option<TemplateRow>, StoreError> {
        template_of(self, id)
    }

    pub fn put_template(&mut self, row: &TemplateRow) -> Result<(), StoreError> {
        TEMPLATES.put(self, row.id.as_str(), row)
    }

    /// Forgets template `id` (the caller checks that no incident uses it).
    pub fn remove_template(&mut self, id: &str) -> Result<(), StoreError> {
        self.remove(TEMPLATES.def(), id)
    }

    pub fn incident(&self, id: &str) -> Result<Option<IncidentRow>, StoreError> {
        incident_of(self, id)
    }

    pub fn put_incident(&mut self, row: &IncidentRow) -> Result<(), StoreError> {
        INCIDENTS.put(self, row.id.as_str(), row)
    }

    pub fn incident_of_alarm(&self, alarm: u64) -> Result<Option<String>, StoreError> {
        let t = self.txn.open_table(INCIDENT_ALARMS)?;
        Ok(t.get(alarm)?.map(|v| v.value().to_string()))
    }

    /// Links alarm occurrence `alarm` to `incident` (one incident per occurrence).
    pub fn put_incident_alarm(&mut self, alarm: u64, incident: &str) -> Result<(), StoreError> {
        self.put(INCIDENT_ALARMS, alarm, incident)
    }

    pub fn set_incident_rules_cursor(&mut self, seq: u64) -> Result<(), StoreError> {
        self.put(META, RULES_CURSOR_KEY, seq.to_be_bytes().as_slice())
    }
}
