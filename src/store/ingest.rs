//! The ingest idempotency keys: per device, the first seq a key was accepted with and until when
//! it counts, plus an expiry index so pruning reads only what has expired. Written in the same
//! transaction as the events they guard.

use redb::{ReadableTable, ReadableTableMetadata};

use super::table::Row;
use super::{INGEST_KEY_EXPIRY, INGEST_KEYS, ReadTx, StoreError, WriteTx};

const KEY_ROW_V1: u8 = 1;

/// What one accepted idempotency key remembers. v1 = version u8 | seq u64 BE |
/// expires_at_us i64 BE | payload SHA-256 [32].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestKeyRow {
    /// The seq of the event the key was first accepted with.
    pub seq: u64,
    /// After this (UTC µs, log time) the key no longer counts and may be pruned.
    pub expires_at_us: i64,
    /// SHA-256 of the event as first accepted: a reuse with another payload is told apart.
    pub payload: [u8; 32],
}

impl Row for IngestKeyRow {
    fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::with_capacity(49);
        out.push(KEY_ROW_V1);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.expires_at_us.to_be_bytes());
        out.extend_from_slice(&self.payload);
        Ok(out)
    }

    fn decode(b: &[u8]) -> Result<Self, StoreError> {
        let bad = || StoreError::Malformed {
            what: "ingest key row",
        };
        if b.len() != 49 || b[0] != KEY_ROW_V1 {
            return Err(bad());
        }
        let seq = u64::from_be_bytes(b[1..9].try_into().map_err(|_| bad())?);
        let expires_at_us = i64::from_be_bytes(b[9..17].try_into().map_err(|_| bad())?);
        let payload: [u8; 32] = b[17..49].try_into().map_err(|_| bad())?;
        Ok(Self {
            seq,
            expires_at_us,
            payload,
        })
    }
}

impl ReadTx {
    /// How many idempotency keys are stored (expired ones not yet pruned included).
    pub fn ingest_key_count(&self) -> Result<u64, StoreError> {
        Ok(self.txn.open_table(INGEST_KEYS.def())?.len()?)
    }
}

impl WriteTx {
    /// The row of `device`'s key `hash`, expired or not.
    pub fn ingest_key(
        &self,
        device: &str,
        hash: &[u8; 32],
    ) -> Result<Option<IngestKeyRow>, StoreError> {
        INGEST_KEYS.get(self, (device, hash.as_slice()))
    }

    /// Records (or replaces an expired) key of `device`.
    pub fn put_ingest_key(
        &mut self,
        device: &str,
        hash: &[u8; 32],
        row: &IngestKeyRow,
    ) -> Result<(), StoreError> {
        if let Some(old) = self.ingest_key(device, hash)? {
            self.remove(
                INGEST_KEY_EXPIRY,
                (old.expires_at_us, device, hash.as_slice()),
            )?;
        }
        INGEST_KEYS.put(self, (device, hash.as_slice()), row)?;
        self.put(
            INGEST_KEY_EXPIRY,
            (row.expires_at_us, device, hash.as_slice()),
            (),
        )
    }

    /// Removes up to `limit` keys that expired before `now_us`; returns how many.
    pub fn prune_ingest_keys(&mut self, now_us: i64, limit: usize) -> Result<usize, StoreError> {
        let mut due = Vec::new();
        {
            let t = self.txn.open_table(INGEST_KEY_EXPIRY)?;
            for row in t.range(..(now_us, "", [].as_slice()))? {
                let (k, _) = row?;
                let (ts, device, hash) = k.value();
                due.push((ts, device.to_string(), hash.to_vec()));
                if due.len() >= limit {
                    break;
                }
            }
        }
        for (ts, device, hash) in &due {
            self.remove(INGEST_KEY_EXPIRY, (*ts, device.as_str(), hash.as_slice()))?;
            self.remove(INGEST_KEYS.def(), (device.as_str(), hash.as_slice()))?;
        }
        Ok(due.len())
    }
}
