//! The alarm view tables (occurrences, current occurrence per condition, shelve expiries, alarm
//! entries by seq and time), written in the same transaction as the entry that changes them.

use redb::ReadableTable;

use super::{
    ALARM_CONDITIONS, ALARM_KPIS, ALARM_SEQS, ALARM_SHELVES, ALARM_TIMES, ALARMS, AlarmRow, META,
    Priority, ReadTx, StoreError, WriteTx,
};

/// `meta` key: the seq of the first alarm entry written with KPI rows (u64 big-endian). Alarm
/// entries before it (logged by a build without the KPI table) have none.
const ALARM_KPIS_FROM_KEY: &str = "alarm_kpis_from";

/// KPI row flags: a raise that leaves the alarm active (an activation) …
pub const KPI_ACTIVATION: u8 = 1;
/// … that was annunciated (not diagnostic, shelved, out of service or suppressed) …
pub const KPI_ANNUNCIATED: u8 = 2;
/// … or an acknowledgement. Entries with no flag get no KPI row.
pub const KPI_ACK: u8 = 4;

/// What the KPIs keep of one alarm entry.
#[derive(Debug, Clone, Copy)]
pub struct KpiFact<'a> {
    pub ts_us: i64,
    pub flags: u8,
    pub priority: Priority,
    /// When the occurrence was raised (for the time to ack).
    pub raised_at_us: i64,
    pub source: &'a str,
    pub condition: &'a str,
}

impl ReadTx {
    pub fn alarm(&self, id: u64) -> Result<Option<AlarmRow>, StoreError> {
        ALARMS.get(self, id)
    }

    /// The id of the newest occurrence of `(source, condition)`.
    pub fn alarm_current(&self, source: &str, condition: &str) -> Result<Option<u64>, StoreError> {
        let t = self.txn.open_table(ALARM_CONDITIONS)?;
        Ok(t.get((source, condition))?.map(|v| v.value()))
    }

    /// The newest occurrence of every condition (of one source when given), in key order.
    pub fn alarm_currents(&self, source: Option<&str>) -> Result<Vec<AlarmRow>, StoreError> {
        let t = self.txn.open_table(ALARM_CONDITIONS)?;
        let mut ids = Vec::new();
        let iter = match source {
            Some(s) => t.range((s, "")..)?,
            None => t.iter()?,
        };
        for row in iter {
            let (k, v) = row?;
            if source.is_some_and(|s| k.value().0 != s) {
                break;
            }
            ids.push(v.value());
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = ALARMS.get(self, id)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The earliest shelve expiry, if any: `(until µs, alarm id)`.
    pub fn alarm_next_expiry(&self) -> Result<Option<(i64, u64)>, StoreError> {
        let t = self.txn.open_table(ALARM_SHELVES)?;
        Ok(t.first()?.map(|(k, _)| k.value()))
    }

    /// Alarm entry seqs with `from <= seq <= to`, oldest first, at most `limit`.
    pub fn alarm_seqs(&self, from: u64, to: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        if from > to || limit == 0 {
            return Ok(out);
        }
        let t = self.txn.open_table(ALARM_SEQS)?;
        for row in t.range(from..=to)? {
            out.push(row?.0.value());
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Alarm entry seqs logged in `[from_us, to_us]`, oldest first, at most `limit`.
    pub fn alarm_seqs_by_time(
        &self,
        from_us: i64,
        to_us: i64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        if from_us > to_us || limit == 0 {
            return Ok(out);
        }
        let t = self.txn.open_table(ALARM_TIMES)?;
        for row in t.range((from_us, 0)..=(to_us, u64::MAX))? {
            out.push(row?.0.value().1);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Whether every alarm entry logged in `[from_us, to_us]` has its KPI row (entries logged
    /// before the KPI table existed have none).
    pub fn alarm_kpis_cover(&self, from_us: i64, to_us: i64) -> Result<bool, StoreError> {
        if from_us > to_us {
            return Ok(true);
        }
        let t = self.txn.open_table(ALARM_TIMES)?;
        let first = match t.range((from_us, 0)..=(to_us, u64::MAX))?.next() {
            Some(row) => row?.0.value().1,
            None => return Ok(true),
        };
        let from = self.meta(ALARM_KPIS_FROM_KEY)?.and_then(|b| {
            let b: [u8; 8] = b.as_slice().try_into().ok()?;
            Some(u64::from_be_bytes(b))
        });
        Ok(from.is_some_and(|f| first >= f))
    }

    /// Calls `f` with each KPI row logged in `[from_us, to_us]`, oldest first, at most `limit`;
    /// returns how many it visited.
    pub fn alarm_kpi_facts(
        &self,
        from_us: i64,
        to_us: i64,
        limit: usize,
        mut f: impl FnMut(KpiFact<'_>),
    ) -> Result<usize, StoreError> {
        if from_us > to_us || limit == 0 {
            return Ok(0);
        }
        let t = self.txn.open_table(ALARM_KPIS)?;
        let mut n = 0;
        for row in t.range((from_us, 0)..=(to_us, u64::MAX))? {
            let (k, v) = row?;
            let (flags, rank, raised_at_us, source, condition) = v.value();
            let priority = *Priority::ALL
                .get(usize::from(rank))
                .ok_or(StoreError::Malformed {
                    what: "alarm KPI row priority",
                })?;
            f(KpiFact {
                ts_us: k.value().0,
                flags,
                priority,
                raised_at_us,
                source,
                condition,
            });
            n += 1;
            if n >= limit {
                break;
            }
        }
        Ok(n)
    }

    /// Alarm entries `(ts µs, seq)` from `from` (inclusive, in `(ts, seq)` order) up to `to_us`,
    /// oldest first, at most `limit`: the history's cursor reads.
    pub fn alarm_times_from(
        &self,
        from: (i64, u64),
        to_us: i64,
        limit: usize,
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        let mut out = Vec::new();
        if from.0 > to_us || limit == 0 {
            return Ok(out);
        }
        let t = self.txn.open_table(ALARM_TIMES)?;
        for row in t.range(from..=(to_us, u64::MAX))? {
            out.push(row?.0.value());
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

impl WriteTx {
    pub fn alarm(&self, id: u64) -> Result<Option<AlarmRow>, StoreError> {
        ALARMS.get(self, id)
    }

    pub fn alarm_current(&self, source: &str, condition: &str) -> Result<Option<u64>, StoreError> {
        let t = self.txn.open_table(ALARM_CONDITIONS)?;
        Ok(t.get((source, condition))?.map(|v| v.value()))
    }

    /// Shelve expiries due at `now_us`, earliest first, at most `limit`: `(until µs, alarm id)`.
    pub fn alarm_due_expiries(
        &self,
        now_us: i64,
        limit: usize,
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        let t = self.txn.open_table(ALARM_SHELVES)?;
        let mut out = Vec::new();
        for row in t.range((i64::MIN, 0)..=(now_us, u64::MAX))? {
            out.push(row?.0.value());
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Stores an occurrence after a transition recorded as entry `seq` at `ts`: the row, the
    /// condition's current id, the expiry index (moved from `before` when the shelf changed or a
    /// new occurrence took it over) and the entry indexes.
    ///
    /// `kpi` holds the KPI flags of the entry (`KPI_*`); with any set, the entry gets a KPI row.
    pub fn put_alarm(
        &mut self,
        before: Option<&AlarmRow>,
        row: &AlarmRow,
        (seq, ts): (u64, i64),
        kpi: u8,
    ) -> Result<(), StoreError> {
        let marked = {
            let meta = self.txn.open_table(META)?;
            meta.get(ALARM_KPIS_FROM_KEY)?.is_some()
        };
        if !marked {
            self.put(META, ALARM_KPIS_FROM_KEY, seq.to_be_bytes().as_slice())?;
        }
        if kpi != 0 {
            self.put(
                ALARM_KPIS,
                (ts, seq),
                (
                    kpi,
                    row.priority as u8,
                    row.raised_at_us,
                    row.source.as_str(),
                    row.condition.as_str(),
                ),
            )?;
        }
        let old_key = before.and_then(|b| b.shelf.as_ref().map(|s| (s.until_us, b.id)));
        let new_key = row.shelf.as_ref().map(|s| (s.until_us, row.id));
        if old_key != new_key {
            if let Some(k) = old_key {
                self.remove(ALARM_SHELVES, k)?;
            }
            if let Some(k) = new_key {
                self.put(ALARM_SHELVES, k, ())?;
            }
        }
        if let Some(b) = before.filter(|b| b.id != row.id && b.shelf.is_some()) {
            // A new occurrence took the shelve over: the old one no longer shows it.
            let mut old = b.clone();
            old.shelf = None;
            ALARMS.put(self, old.id, &old)?;
        }
        if before.is_none_or(|b| b.id != row.id) {
            self.put(
                ALARM_CONDITIONS,
                (row.source.as_str(), row.condition.as_str()),
                row.id,
            )?;
        }
        ALARMS.put(self, row.id, row)?;
        self.put(ALARM_SEQS, seq, row.id)?;
        self.put(ALARM_TIMES, (ts, seq), row.id)
    }
}

impl WriteTx {
    /// Drops one row of the shelve-expiry index.
    pub fn remove_alarm_expiry(&mut self, until_us: i64, id: u64) -> Result<(), StoreError> {
        self.remove(ALARM_SHELVES, (until_us, id))
    }
}
