//! The event index tables: one row per event entry by seq, time, source and type, written in the
//! same transaction as the entry, and the range reads listings use instead of scanning the log.

use redb::TableDefinition;

use super::{
    EVENT_SEQS, EVENT_SOURCES, EVENT_TIMES, EVENT_TYPES, META, ReadTx, StoreError, WriteTx,
};

/// `meta` key: the last seq that the one-time backfill after the v4 migration must still index
/// (absent once done, or for a store created at v4 or later).
pub(crate) const EVENT_BACKFILL_KEY: &str = "event_backfill_to";

/// Which index a listing reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventIndex {
    /// Every event, by seq.
    All,
    /// One source's events.
    Source(String),
    /// One type's events.
    Type(String),
    /// Events whose log time is in `[from_us, to_us]`.
    Time { from_us: i64, to_us: i64 },
}

/// Seqs `lo..=hi` of an index, oldest or newest first, at most `limit` rows read.
#[derive(Debug, Clone, Copy)]
pub struct EventRange {
    pub lo: u64,
    pub hi: u64,
    pub newest_first: bool,
    pub limit: usize,
}

/// Visits a range in the asked order until `keep` says stop.
fn walk<I, T>(
    range: I,
    newest_first: bool,
    mut keep: impl FnMut(T) -> bool,
) -> Result<(), StoreError>
where
    I: DoubleEndedIterator<Item = Result<T, redb::StorageError>>,
{
    if newest_first {
        for row in range.rev() {
            if !keep(row?) {
                break;
            }
        }
    } else {
        for row in range {
            if !keep(row?) {
                break;
            }
        }
    }
    Ok(())
}

fn seqs_by_name(
    rtx: &ReadTx,
    def: TableDefinition<(&str, u64), ()>,
    name: &str,
    r: EventRange,
) -> Result<Vec<u64>, StoreError> {
    let mut out = Vec::new();
    if r.lo > r.hi {
        return Ok(out);
    }
    let t = rtx.txn.open_table(def)?;
    walk(
        t.range((name, r.lo)..=(name, r.hi))?,
        r.newest_first,
        |(k, _)| {
            out.push(k.value().1);
            out.len() < r.limit
        },
    )?;
    Ok(out)
}

impl ReadTx {
    /// Event seqs from one index, in the asked order and range.
    pub fn event_seqs(&self, index: &EventIndex, r: EventRange) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        if r.lo > r.hi || r.limit == 0 {
            return Ok(out);
        }
        match index {
            EventIndex::All => {
                let t = self.txn.open_table(EVENT_SEQS)?;
                walk(t.range(r.lo..=r.hi)?, r.newest_first, |(k, _)| {
                    out.push(k.value());
                    out.len() < r.limit
                })?;
            }
            EventIndex::Source(s) => return seqs_by_name(self, EVENT_SOURCES, s, r),
            EventIndex::Type(t) => return seqs_by_name(self, EVENT_TYPES, t, r),
            EventIndex::Time { from_us, to_us } => {
                if from_us > to_us {
                    return Ok(out);
                }
                // `ts` never decreases along the log, so a time window is a seq window: find its
                // two ends in the time index, then read the seq index between them.
                let t = self.txn.open_table(EVENT_TIMES)?;
                let first = t.range((*from_us, 0)..)?.next().transpose()?;
                let last = t.range(..=(*to_us, u64::MAX))?.next_back().transpose()?;
                let (Some((first, _)), Some((last, _))) = (first, last) else {
                    return Ok(out);
                };
                let window = EventRange {
                    lo: r.lo.max(first.value().1),
                    hi: r.hi.min(last.value().1),
                    ..r
                };
                return self.event_seqs(&EventIndex::All, window);
            }
        }
        Ok(out)
    }

    /// The last seq the event backfill still has to index, if it has not finished.
    pub fn event_backfill_to(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.meta(EVENT_BACKFILL_KEY)?.and_then(|b| {
            let b: [u8; 8] = b.as_slice().try_into().ok()?;
            Some(u64::from_be_bytes(b))
        }))
    }
}

impl WriteTx {
    /// Indexes one event entry; call in the transaction that appends it.
    pub fn put_event_index(
        &mut self,
        seq: u64,
        ts: i64,
        source: &str,
        event_type: &str,
    ) -> Result<(), StoreError> {
        self.put(EVENT_SEQS, seq, ())?;
        self.put(EVENT_TIMES, (ts, seq), ())?;
        self.put(EVENT_SOURCES, (source, seq), ())?;
        self.put(EVENT_TYPES, (event_type, seq), ())
    }

    /// Records how far the backfill got: `None` once everything is indexed.
    pub fn set_event_backfill_to(&mut self, to: Option<u64>) -> Result<(), StoreError> {
        match to {
            Some(seq) => self.put(META, EVENT_BACKFILL_KEY, seq.to_be_bytes().as_slice()),
            None => self.remove(META, EVENT_BACKFILL_KEY),
        }
    }
}
