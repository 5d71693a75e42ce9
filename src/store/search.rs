//! Typed access to the blind search index (`searchpostings_macfirst_sealedblock`, the forgotten
//! seqs and the indexer's cursor in `meta`); what the bytes mean is `search::postings`' concern.

use redb::{ReadableTable, ReadableTableMetadata};

use super::table::Txn;
use super::{META, ReadTx, SEARCH_FORGOTTEN, SEARCH_POSTINGS, StoreError, WriteTx};

/// The `meta` key of the indexer's cursor: the newest seq whose postings are written (u64 BE).
const CURSOR: &str = "search_cursor";

fn cursor(txn: &impl Txn) -> Result<u64, StoreError> {
    let meta = txn.open(META)?;
    let Some(v) = meta.get(CURSOR)? else {
        return Ok(0);
    };
    let b: [u8; 8] = v.value().try_into().map_err(|_| StoreError::Malformed {
        what: "search cursor",
    })?;
    Ok(u64::from_be_bytes(b))
}

/// Blocks of `mac` whose first seq is below `below`, newest first, at most `limit`.
fn blocks_rev(
    txn: &impl Txn,
    mac: &[u8],
    below: u64,
    limit: usize,
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let t = txn.open(SEARCH_POSTINGS)?;
    let mut out = Vec::new();
    if below == 0 {
        return Ok(out);
    }
    for row in t.range((mac, 0)..(mac, below))?.rev() {
        let (k, v) = row?;
        out.push((k.value().1, v.value().to_vec()));
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

impl ReadTx {
    /// The newest seq the search index covers (0: nothing indexed).
    pub fn search_cursor(&self) -> Result<u64, StoreError> {
        cursor(self)
    }

    /// Posting blocks of one token MAC whose first seq is below `below`, newest first.
    pub fn search_blocks_rev(
        &self,
        mac: &[u8],
        below: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        blocks_rev(self, mac, below, limit)
    }

    /// The newest posting block of one token MAC, if any.
    pub fn search_last_block(&self, mac: &[u8]) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        Ok(blocks_rev(self, mac, u64::MAX, 1)?.pop())
    }

    /// Whether `forget` dropped this seq from search.
    pub fn search_forgotten(&self, seq: u64) -> Result<bool, StoreError> {
        Ok(self.txn.open_table(SEARCH_FORGOTTEN)?.get(seq)?.is_some())
    }

    /// How many posting blocks the index holds and their key and value bytes (what the index
    /// stores, before redb's page overhead).
    pub fn search_index_size(&self) -> Result<(u64, u64), StoreError> {
        let t = self.txn.open_table(SEARCH_POSTINGS)?;
        let mut bytes = 0u64;
        for row in t.iter()? {
            let (k, v) = row?;
            bytes += (k.value().0.len() + 8 + v.value().len()) as u64;
        }
        Ok((t.len()?, bytes))
    }
}

impl WriteTx {
    /// The newest seq the search index covers, as written so far in this transaction.
    pub fn search_cursor(&self) -> Result<u64, StoreError> {
        cursor(self)
    }

    pub fn set_search_cursor(&mut self, seq: u64) -> Result<(), StoreError> {
        self.put(META, CURSOR, seq.to_be_bytes().as_slice())
    }

    /// Writes posting blocks, each `(mac, first seq, sealed block)`, opening the table once (a
    /// batch holds thousands; opening it per block cost the writer 3 % of a batch ingest).
    pub fn put_search_blocks<'a>(
        &mut self,
        blocks: impl IntoIterator<Item = (&'a [u8], u64, &'a [u8])>,
    ) -> Result<(), StoreError> {
        let rows = blocks
            .into_iter()
            .map(|(mac, first, sealed)| ((mac, first), sealed));
        self.put_many(SEARCH_POSTINGS, rows)
    }

    pub fn put_search_forgotten(&mut self, seq: u64) -> Result<(), StoreError> {
        self.put(SEARCH_FORGOTTEN, seq, ())
    }

    /// Empties the index (postings and cursor; forgotten seqs stay forgotten) for a rebuild.
    pub fn clear_search(&mut self) -> Result<(), StoreError> {
        self.dirty = true;
        self.txn.delete_table(SEARCH_POSTINGS)?;
        self.txn.open_table(SEARCH_POSTINGS)?;
        self.txn.open_table(META)?.remove(CURSOR)?;
        Ok(())
    }
}
