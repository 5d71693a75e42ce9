//! What the alarm and incident views copied from an entry leaves with its payload: an
//! occurrence's message and an incident's title are blanked when the entry that set them is
//! purged, kept through the grace period in `purgedviews_seq_copy`, and put back on restore.

use redb::ReadableTable;

use super::{ALARM_SEQS, ALARMS, INCIDENTS, PURGED_VIEWS, StoreError, WriteTx};

/// The copy's key: which row of which view it came from.
fn alarm_key(id: u64) -> String {
    format!("alarm:{id}")
}

fn incident_key(id: &str) -> String {
    format!("incident:{id}")
}

impl WriteTx {
    /// Blanks what the views copied from entry `seq` of `stream`: the message of the alarm
    /// occurrence whose newest entry it is (an occurrence's entries share one stream and so one
    /// keep: the newest goes last), the title of the incident it opened. With `grace` the text
    /// is kept for [`WriteTx::restore_view_copies`].
    pub(super) fn purge_view_copies(
        &mut self,
        seq: u64,
        stream: &str,
        grace: bool,
    ) -> Result<(), StoreError> {
        let alarm = self
            .txn
            .open_table(ALARM_SEQS)?
            .get(seq)?
            .map(|v| v.value());
        if let Some(id) = alarm
            && let Some(mut row) = ALARMS.get(self, id)?
            && row.last_seq == seq
            && !row.message.is_empty()
        {
            let message = std::mem::take(&mut row.message);
            ALARMS.put(self, id, &row)?;
            if grace {
                self.put(
                    PURGED_VIEWS,
                    seq,
                    (alarm_key(id).as_str(), message.as_bytes()),
                )?;
            }
        }
        if let Some(id) = stream.strip_prefix("conv/").filter(|c| c.starts_with("i-"))
            && let Some(mut row) = INCIDENTS.get(self, id)?
            && row.opened_seq == seq
            && !row.title.is_empty()
        {
            let title = std::mem::take(&mut row.title);
            INCIDENTS.put(self, id, &row)?;
            if grace {
                self.put(
                    PURGED_VIEWS,
                    seq,
                    (incident_key(id).as_str(), title.as_bytes()),
                )?;
            }
        }
        Ok(())
    }

    /// Puts back what [`WriteTx::purge_view_copies`] kept of entry `seq`, where the row is still
    /// blank (a later entry may have set a new message since).
    pub(super) fn restore_view_copies(&mut self, seq: u64) -> Result<(), StoreError> {
        let kept = self.txn.open_table(PURGED_VIEWS)?.get(seq)?.map(|v| {
            let (key, text) = v.value();
            (key.to_string(), String::from_utf8(text.to_vec()))
        });
        let Some((key, text)) = kept else {
            return Ok(());
        };
        self.remove(PURGED_VIEWS, seq)?;
        let text = text.map_err(|_| StoreError::Malformed {
            what: "purged view copy",
        })?;
        if let Some(id) = key
            .strip_prefix("alarm:")
            .and_then(|i| i.parse::<u64>().ok())
        {
            if let Some(mut row) = ALARMS.get(self, id)?
                && row.message.is_empty()
            {
                row.message = text;
                ALARMS.put(self, id, &row)?;
            }
        } else if let Some(id) = key.strip_prefix("incident:")
            && let Some(mut row) = INCIDENTS.get(self, id)?
            && row.title.is_empty()
        {
            row.title = text;
            INCIDENTS.put(self, id, &row)?;
        }
        Ok(())
    }

    /// Drops the kept copy of entry `seq` (its grace period is over).
    pub(super) fn forget_view_copies(&mut self, seq: u64) -> Result<(), StoreError> {
        self.remove(PURGED_VIEWS, seq)
    }
}
