//! ntfy's clear by sequence id (`DELETE /<topic>/<sequence_id>`, `PUT /<topic>/<sequence_id>/clear`)
//! mapped to one event that clears the alarm `(topic, sequence id)`.

use std::collections::BTreeMap;

use crate::error::Rejection;
use crate::events::{ConditionState, EventIn, Keyed};

use super::ntfy::{EVENT_TYPE, check_topic, severity};

/// The event a clear of `sequence_id` on `topic` becomes: condition = sequence id, state cleared.
/// Never idempotency-keyed: a repeated clear changes no alarm and stores only the event.
pub fn clear_event(topic: &str, sequence_id: &str, deleted: bool) -> Result<Keyed, Rejection> {
    check_topic(topic)?;
    let sid_ok = !sequence_id.is_empty()
        && sequence_id.len() <= 64
        && sequence_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !sid_ok {
        return Err(Rejection::invalid(
            "invalid_ntfy",
            "a sequence id is 1-64 characters of A-Z a-z 0-9 _ -",
        ));
    }
    let event = EventIn {
        source: topic.to_string(),
        event_type: EVENT_TYPE.to_string(),
        severity: severity(None),
        message: if deleted { "deleted" } else { "cleared" }.to_string(),
        attributes: BTreeMap::new(),
        occurred_at_us: None,
        condition: Some(sequence_id.to_string()),
        state: Some(ConditionState::Cleared),
    };
    Ok(Keyed { event, key: None })
}
