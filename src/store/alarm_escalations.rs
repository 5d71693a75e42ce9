//! The escalation view: per alarm, how many on-call notices were sent and when the last one was,
//! written in the same transaction as the `alarm.escalate` entry.

use redb::ReadableTable;

use super::{ALARM_ESCALATIONS, ALARM_SEQS, ALARM_TIMES, ReadTx, StoreError, WriteTx};

impl ReadTx {
    /// `(notices sent, log µs of the last)` for alarm `id`, if it was ever escalated.
    pub fn alarm_escalation(&self, id: u64) -> Result<Option<(u32, i64)>, StoreError> {
        let t = self.txn.open_table(ALARM_ESCALATIONS)?;
        Ok(t.get(id)?.map(|v| v.value()))
    }
}

impl WriteTx {
    pub fn alarm_escalation(&self, id: u64) -> Result<Option<(u32, i64)>, StoreError> {
        let t = self.txn.open_table(ALARM_ESCALATIONS)?;
        Ok(t.get(id)?.map(|v| v.value()))
    }

    /// Records notice `count` of alarm `id`, sent by entry `seq` at `ts` (the entry is indexed
    /// like every alarm entry: by seq and by time).
    pub fn put_alarm_escalation(
        &mut self,
        id: u64,
        count: u32,
        seq: u64,
        ts: i64,
    ) -> Result<(), StoreError> {
        self.put(ALARM_ESCALATIONS, id, (count, ts))?;
        self.put(ALARM_SEQS, seq, id)?;
        self.put(ALARM_TIMES, (ts, seq), id)
    }

    /// Forgets alarm `id`'s escalation (it was acknowledged or is over).
    pub fn remove_alarm_escalation(&mut self, id: u64) -> Result<(), StoreError> {
        self.remove(ALARM_ESCALATIONS, id)
    }
}
