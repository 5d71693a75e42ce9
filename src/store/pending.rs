//! The log and event-index rows a write transaction has taken but not yet inserted: kept in memory
//! and written table by table (each table opened once per batch, not once per row) before reads.

use super::events::name_key;
use super::{
    EVENT_SEQS, EVENT_SEVERITIES, EVENT_SOURCE_KEYS, EVENT_TIMES, EVENT_TYPE_KEYS, LOG,
    STREAM_INDEX, StoreError,
};

/// Rows of the append-only tables, in the order they were put (ascending seq within a batch).
#[derive(Debug, Default)]
pub(crate) struct Pending {
    log: Vec<(u64, Vec<u8>)>,
    stream: Vec<(String, u64)>,
    /// seq, ts, and the name keys of the source and the type of each event.
    events: Vec<(u64, i64, u64, u64)>,
    severities: Vec<(u8, u64)>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
            && self.stream.is_empty()
            && self.events.is_empty()
            && self.severities.is_empty()
    }

    pub fn log(&mut self, seq: u64, record: Vec<u8>) {
        self.log.push((seq, record));
    }

    pub fn stream(&mut self, stream: &str, seq: u64) {
        self.stream.push((stream.to_string(), seq));
    }

    pub fn event(&mut self, seq: u64, ts: i64, source: &str, event_type: &str) {
        self.events
            .push((seq, ts, name_key(source), name_key(event_type)));
    }

    pub fn severity(&mut self, seq: u64, rank: u8) {
        self.severities.push((rank, seq));
    }

    /// Inserts every row taken so far, one table at a time, and forgets them.
    pub fn write(&mut self, txn: &redb::WriteTransaction) -> Result<(), StoreError> {
        if self.is_empty() {
            return Ok(());
        }
        if !self.log.is_empty() {
            let mut t = txn.open_table(LOG)?;
            for (seq, record) in self.log.drain(..) {
                t.insert(seq, record.as_slice())?;
            }
        }
        if !self.stream.is_empty() {
            let mut t = txn.open_table(STREAM_INDEX)?;
            for (stream, seq) in self.stream.drain(..) {
                t.insert((stream.as_str(), seq), ())?;
            }
        }
        if !self.events.is_empty() {
            {
                let mut t = txn.open_table(EVENT_SEQS)?;
                for (seq, ..) in &self.events {
                    t.insert(*seq, ())?;
                }
            }
            {
                let mut t = txn.open_table(EVENT_TIMES)?;
                for (seq, ts, ..) in &self.events {
                    t.insert((*ts, *seq), ())?;
                }
            }
            {
                let mut t = txn.open_table(EVENT_SOURCE_KEYS)?;
                for (seq, _, source, _) in &self.events {
                    t.insert((*source, *seq), ())?;
                }
            }
            let mut t = txn.open_table(EVENT_TYPE_KEYS)?;
            for (seq, _, _, event_type) in self.events.drain(..) {
                t.insert((event_type, seq), ())?;
            }
        }
        if !self.severities.is_empty() {
            let mut t = txn.open_table(EVENT_SEVERITIES)?;
            for (rank, seq) in self.severities.drain(..) {
                t.insert((rank, seq), ())?;
            }
        }
        Ok(())
    }
}
