//! Retention's rows: purging an entry's payload (the log record rewritten as v2, the v1 record
//! kept in `purged_seq_record` through the grace period), restoring it, removing it for good,
//! and the per-scope policy rows (overrides and legal holds). A chat message's view row (its
//! sealed text, edits applied) moves with its payload, so history stops showing it; the alarm
//! and incident views' copies move too (`purged_views.rs`).

use redb::ReadableTable;

use super::codec::RecordMeta;
use super::table::Txn;
use super::{
    LOG, MESSAGES, PURGED, PURGED_MESSAGES, RETENTION_SCOPES, ReadTx, StoreError, WriteTx,
};

const SCOPE_ROW_V1: u8 = 1;

/// What purging one entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeOutcome {
    /// The payload was removed (kept restorable when a grace period applies).
    Purged,
    /// It was purged before.
    AlreadyPurged,
    /// No such entry.
    Missing,
}

/// The clear fields of entry `seq`, on a snapshot or in the writer's transaction.
fn meta_in(t: &impl Txn, seq: u64) -> Result<Option<RecordMeta>, StoreError> {
    match t.open(LOG)?.get(seq)? {
        Some(raw) => Ok(Some(RecordMeta::decode(raw.value())?.0)),
        None => Ok(None),
    }
}

/// The JSON row of a retention scope, on a snapshot or in the writer's transaction.
fn scope_in(t: &impl Txn, scope: &str) -> Result<Option<Vec<u8>>, StoreError> {
    t.open(RETENTION_SCOPES)?
        .get(scope)?
        .map(|v| scope_json(v.value()))
        .transpose()
}

impl ReadTx {
    /// The clear fields of entry `seq` (v1 or purged v2 record), without opening its body.
    pub fn log_meta(&self, seq: u64) -> Result<Option<RecordMeta>, StoreError> {
        meta_in(self, seq)
    }

    /// Purged entries still restorable, from `from` on: (seq, purged at µs), at most `limit`.
    pub fn purged_restorable(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, i64)>, StoreError> {
        let t = self.txn.open_table(PURGED)?;
        let mut out = Vec::new();
        for row in t.range(from..)? {
            let (k, v) = row?;
            out.push((k.value(), purged_at(v.value())?));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The JSON row of a retention scope (`site`, `stream:<name>`).
    pub fn retention_scope(&self, scope: &str) -> Result<Option<Vec<u8>>, StoreError> {
        scope_in(self, scope)
    }

    /// Every retention scope row, in key order.
    pub fn retention_scopes(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let t = self.txn.open_table(RETENTION_SCOPES)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), scope_json(v.value())?));
        }
        Ok(out)
    }
}

fn purged_at(v: &[u8]) -> Result<i64, StoreError> {
    v.get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(i64::from_be_bytes)
        .ok_or(StoreError::Malformed {
            what: "purged record",
        })
}

fn scope_json(v: &[u8]) -> Result<Vec<u8>, StoreError> {
    match v.split_first() {
        Some((&SCOPE_ROW_V1, json)) => Ok(json.to_vec()),
        _ => Err(StoreError::Malformed {
            what: "retention scope row",
        }),
    }
}

impl WriteTx {
    /// [`ReadTx::log_meta`] in the writer's transaction (a purge re-checks the policy there).
    pub fn log_meta(&self, seq: u64) -> Result<Option<RecordMeta>, StoreError> {
        meta_in(self, seq)
    }

    /// [`ReadTx::retention_scope`] in the writer's transaction.
    pub fn retention_scope(&self, scope: &str) -> Result<Option<Vec<u8>>, StoreError> {
        scope_in(self, scope)
    }

    /// Removes entry `seq`'s payload: its record becomes v2 (clear fields and chain links only).
    /// With `grace`, the v1 record is kept in `purged_seq_record` with `now_us` until
    /// [`WriteTx::forget_purged`] removes it; without, it is gone at commit.
    pub fn purge_payload(
        &mut self,
        seq: u64,
        now_us: i64,
        grace: bool,
    ) -> Result<PurgeOutcome, StoreError> {
        self.flush()?;
        let Some(raw) = self
            .txn
            .open_table(LOG)?
            .get(seq)?
            .map(|v| v.value().to_vec())
        else {
            return Ok(PurgeOutcome::Missing);
        };
        let (meta, _) = RecordMeta::decode(&raw)?;
        if meta.purged {
            return Ok(PurgeOutcome::AlreadyPurged);
        }
        let v2 = RecordMeta::purged_record(&raw)?;
        self.put(LOG, seq, v2.as_slice())?;
        if grace {
            let mut kept = Vec::with_capacity(8 + raw.len());
            kept.extend_from_slice(&now_us.to_be_bytes());
            kept.extend_from_slice(&raw);
            self.put(PURGED, seq, kept.as_slice())?;
        }
        if let Some(conv) = meta.stream.strip_prefix("conv/") {
            let row = self
                .txn
                .open_table(MESSAGES)?
                .get((conv, seq))?
                .map(|v| v.value().to_vec());
            if let Some(row) = row {
                self.remove(MESSAGES, (conv, seq))?;
                if grace {
                    self.put(PURGED_MESSAGES, seq, (conv, row.as_slice()))?;
                }
            }
        }
        self.purge_view_copies(seq, &meta.stream, grace)?;
        if !grace {
            self.release_attachment_refs(seq)?;
        }
        Ok(PurgeOutcome::Purged)
    }

    /// Puts back the payload of a purged entry still in its grace period; false when there is
    /// nothing to restore.
    pub fn restore_payload(&mut self, seq: u64) -> Result<bool, StoreError> {
        self.flush()?;
        let Some(kept) = self
            .txn
            .open_table(PURGED)?
            .get(seq)?
            .map(|v| v.value().to_vec())
        else {
            return Ok(false);
        };
        let raw = kept.get(8..).ok_or(StoreError::Malformed {
            what: "purged record",
        })?;
        self.put(LOG, seq, raw)?;
        self.remove(PURGED, seq)?;
        let message = self.txn.open_table(PURGED_MESSAGES)?.get(seq)?.map(|v| {
            let (conv, row) = v.value();
            (conv.to_string(), row.to_vec())
        });
        if let Some((conv, row)) = message {
            self.put(MESSAGES, (conv.as_str(), seq), row.as_slice())?;
            self.remove(PURGED_MESSAGES, seq)?;
        }
        self.restore_view_copies(seq)?;
        Ok(true)
    }

    /// Removes for good up to `limit` kept payloads purged before `before_us`; returns their seqs.
    pub fn forget_purged(&mut self, before_us: i64, limit: usize) -> Result<Vec<u64>, StoreError> {
        let mut due = Vec::new();
        {
            let t = self.txn.open_table(PURGED)?;
            for row in t.iter()? {
                let (k, v) = row?;
                if purged_at(v.value())? < before_us {
                    due.push(k.value());
                    if due.len() >= limit {
                        break;
                    }
                }
            }
        }
        for seq in &due {
            self.remove(PURGED, *seq)?;
            self.remove(PURGED_MESSAGES, *seq)?;
            self.forget_view_copies(*seq)?;
            self.release_attachment_refs(*seq)?;
        }
        Ok(due)
    }

    /// Sets (or, with `None`, removes) the JSON row of a retention scope.
    pub fn put_retention_scope(
        &mut self,
        scope: &str,
        json: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        match json {
            Some(j) => {
                let mut v = Vec::with_capacity(1 + j.len());
                v.push(SCOPE_ROW_V1);
                v.extend_from_slice(j);
                self.put(RETENTION_SCOPES, scope, v.as_slice())
            }
            None => self.remove(RETENTION_SCOPES, scope),
        }
    }
}
