//! Replication's rows in `meta` (no table of its own): the edge's acknowledged cursor, and at HQ,
//! in each site's replica, the witnessed checkpoint and the evidence of a rewritten history.

use redb::ReadableTable;

use super::{META, ReadTx, StoreError, WriteTx};

fn meta_key(name: &str) -> String {
    format!("replication.{name}")
}

impl ReadTx {
    /// The `replication.<name>` meta row.
    pub fn replication_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.meta(&meta_key(name))
    }
}

impl WriteTx {
    /// Writes the `replication.<name>` meta row (in the job's transaction).
    pub fn set_replication_meta(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.put(META, meta_key(name).as_str(), value)
    }
}

impl WriteTx {
    /// Reads the `replication.<name>` meta row inside the job's transaction.
    pub fn replication_meta_in_tx(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let meta = self.txn.open_table(META)?;
        Ok(meta
            .get(meta_key(name).as_str())?
            .map(|v| v.value().to_vec()))
    }
}
