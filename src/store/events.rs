//! The event index tables: one row per event entry by seq, time, source, type and severity, written
//! in the same transaction as the entry, and the range reads listings use instead of scanning the log.

use redb::{ReadableTable, TableDefinition};

use super::{
    EVENT_SEQS, EVENT_SEVERITIES, EVENT_SOURCE_KEYS, EVENT_SOURCES, EVENT_TIMES, EVENT_TYPE_KEYS,
    EVENT_TYPES, META, ReadTx, STREAM_INDEX, StoreError, WriteTx,
};

/// `meta` key: the last seq that the one-time backfill after the v4 migration must still index
/// (absent once done, or for a store created at v4 or later).
pub(crate) const EVENT_BACKFILL_KEY: &str = "event_backfill_to";

/// `meta` key, present once every event logged before the v5 severity index has its row.
pub(crate) const SEVERITY_BACKFILL_DONE_KEY: &str = "event_severity_indexed";

/// The highest severity rank (`critical`); ranks run 0 (`debug`) to this.
pub const MAX_SEVERITY_RANK: u8 = 5;

/// The key under which a source or type name is indexed: the first 8 bytes of its SHA-256,
/// big-endian. Stable across releases and architectures (it is stored); two names may share one,
/// so an index read by name yields candidates that the reader checks against the entry.
pub(crate) fn name_key(name: &str) -> u64 {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, name.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    u64::from_be_bytes(b)
}

/// Which index a listing reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventIndex {
    /// Every event, by seq.
    All,
    /// One source's events, and possibly others whose source shares its name key: the reader
    /// checks each entry's source.
    Source(String),
    /// One type's events, and possibly others sharing its name key (checked by the reader).
    Type(String),
    /// Events whose log time is in `[from_us, to_us]`.
    Time { from_us: i64, to_us: i64 },
    /// Events of this severity rank or above (0 = debug .. [`MAX_SEVERITY_RANK`]).
    MinSeverity(u8),
    /// Every entry of one stream (a device's events are in `events/<device>`); the caller checks
    /// the kind, since a stream may hold other entries.
    Stream(String),
}

/// Seqs `lo..=hi` of an index, oldest or newest first, at most `limit` rows read.
#[derive(Debug, Clone, Copy)]
pub struct EventRange {
    pub lo: u64,
    pub hi: u64,
    pub newest_first: bool,
    pub limit: usize,
}

/// v10: the source and type indexes move from name keys to fixed-width name keys
/// ([`name_key`]), in the migration's one transaction (a million events take a few seconds, once);
/// the old tables stay, empty, so that a backup of a v9 store still restores and then migrates.
pub(super) fn rekey_names(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    for (old, new) in [
        (EVENT_SOURCES, EVENT_SOURCE_KEYS),
        (EVENT_TYPES, EVENT_TYPE_KEYS),
    ] {
        {
            let from = txn.open_table(old)?;
            let mut to = txn.open_table(new)?;
            for row in from.iter()? {
                let (k, _) = row?;
                let (name, seq) = k.value();
                to.insert((name_key(name), seq), ())?;
            }
        }
        txn.delete_table(old)?;
        txn.open_table(old)?;
    }
    Ok(())
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

/// The seqs filed under `key` in an index keyed by `(key, seq)`: a stream's name, or a source's
/// or type's name key.
fn seqs_under<K: redb::Key + 'static>(
    rtx: &ReadTx,
    def: TableDefinition<(K, u64), ()>,
    key: K::SelfType<'_>,
    r: EventRange,
) -> Result<Vec<u64>, StoreError>
where
    for<'a> K::SelfType<'a>: Copy,
{
    let mut out = Vec::new();
    if r.lo > r.hi {
        return Ok(out);
    }
    let t = rtx.txn.open_table(def)?;
    walk(
        t.range((key, r.lo)..=(key, r.hi))?,
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
            EventIndex::Source(s) => return seqs_under(self, EVENT_SOURCE_KEYS, name_key(s), r),
            EventIndex::Type(t) => return seqs_under(self, EVENT_TYPE_KEYS, name_key(t), r),
            EventIndex::Stream(s) => return seqs_under(self, STREAM_INDEX, s.as_str(), r),
            EventIndex::MinSeverity(min) => {
                // One range per rank at or above `min`, each in order and at most `limit` long:
                // the first `limit` of their union are the answer.
                let t = self.txn.open_table(EVENT_SEVERITIES)?;
                for rank in *min..=MAX_SEVERITY_RANK {
                    let mut n = 0usize;
                    walk(
                        t.range((rank, r.lo)..=(rank, r.hi))?,
                        r.newest_first,
                        |(k, _)| {
                            out.push(k.value().1);
                            n += 1;
                            n < r.limit
                        },
                    )?;
                }
                if r.newest_first {
                    out.sort_unstable_by(|a, b| b.cmp(a));
                } else {
                    out.sort_unstable();
                }
                out.truncate(r.limit);
            }
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

    /// The seqs `[lo, hi]` whose log time is in `[from_us, to_us]` among events, if any: `ts`
    /// never decreases along the log, so a time window is a seq window.
    pub fn event_time_window(
        &self,
        from_us: i64,
        to_us: i64,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        if from_us > to_us {
            return Ok(None);
        }
        let t = self.txn.open_table(EVENT_TIMES)?;
        let first = t.range((from_us, 0)..)?.next().transpose()?;
        let last = t.range(..=(to_us, u64::MAX))?.next_back().transpose()?;
        Ok(match (first, last) {
            (Some((f, _)), Some((l, _))) if f.value().1 <= l.value().1 => {
                Some((f.value().1, l.value().1))
            }
            _ => None,
        })
    }

    /// Keeps the seqs whose event has severity rank `min` or above (point reads of the severity
    /// index: far cheaper than reading and unsealing the entries).
    pub fn retain_min_severity(&self, seqs: &mut Vec<u64>, min: u8) -> Result<(), StoreError> {
        let t = self.txn.open_table(EVENT_SEVERITIES)?;
        let mut failed = None;
        seqs.retain(|&seq| {
            (min..=MAX_SEVERITY_RANK).any(|rank| match t.get((rank, seq)) {
                Ok(row) => row.is_some(),
                Err(e) => {
                    failed.get_or_insert(e);
                    false
                }
            })
        });
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Up to `limit` event seqs above `after`, oldest first, for the severity backfill.
    pub fn event_seqs_after(&self, after: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        let t = self.txn.open_table(EVENT_SEQS)?;
        let mut out = Vec::new();
        for row in t.range(after.saturating_add(1)..)? {
            out.push(row?.0.value());
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The newest indexed event seq, if any.
    pub fn last_event_seq(&self) -> Result<Option<u64>, StoreError> {
        let t = self.txn.open_table(EVENT_SEQS)?;
        Ok(t.last()?.map(|(k, _)| k.value()))
    }

    /// Whether every event has its severity row (the v5 backfill is done).
    pub fn event_severity_indexed(&self) -> Result<bool, StoreError> {
        Ok(self.meta(SEVERITY_BACKFILL_DONE_KEY)?.is_some())
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
    /// Indexes one event entry; call in the transaction that appends it. The rows are inserted
    /// at the latest at commit (see [`WriteTx`]).
    pub fn put_event_index(
        &mut self,
        seq: u64,
        ts: i64,
        source: &str,
        event_type: &str,
    ) -> Result<(), StoreError> {
        self.dirty = true;
        self.pending.event(seq, ts, source, event_type);
        Ok(())
    }

    /// Indexes one event's severity rank; call with [`WriteTx::put_event_index`].
    pub fn put_event_severity(&mut self, seq: u64, rank: u8) -> Result<(), StoreError> {
        self.dirty = true;
        self.pending.severity(seq, rank);
        Ok(())
    }

    /// Marks the v5 severity backfill done.
    pub fn set_event_severity_indexed(&mut self) -> Result<(), StoreError> {
        self.put(META, SEVERITY_BACKFILL_DONE_KEY, [1u8].as_slice())
    }

    /// Records how far the backfill got: `None` once everything is indexed.
    pub fn set_event_backfill_to(&mut self, to: Option<u64>) -> Result<(), StoreError> {
        match to {
            Some(seq) => self.put(META, EVENT_BACKFILL_KEY, seq.to_be_bytes().as_slice()),
            None => self.remove(META, EVENT_BACKFILL_KEY),
        }
    }
}

#[cfg(test)]
mod tests {
    /// The name key is stored: it must never change between releases or architectures.
    #[test]
    fn a_name_key_is_the_first_8_bytes_of_the_names_sha256() {
        assert_eq!(super::name_key("pump-1"), 3_494_352_926_934_544_046);
        assert_ne!(super::name_key("pump-1"), super::name_key("pump-2"));
    }
}
