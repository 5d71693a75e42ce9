//! Reading entries back: decode the stored record, open the sealed body, rebuild the `Entry`.
//! Used by history, replay and the audit walk alike.

use std::sync::Arc;

use crate::store::{CodecError, DataKey, LogRecord, ReadTx, RecordMeta, SealError, StoreError};

use super::entry::{ChainVersion, Entry, seal_aad};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("entry {seq}: the record cannot be decoded: {source}")]
    Decode {
        seq: u64,
        #[source]
        source: CodecError,
    },
    #[error("entry {seq}: the body does not open: {source}")]
    Unseal {
        seq: u64,
        #[source]
        source: SealError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ReadError {
    /// Whether the entry's payload was purged by retention (its record has no body left).
    pub fn is_purged(&self) -> bool {
        matches!(
            self,
            ReadError::Decode {
                source: CodecError::Purged,
                ..
            }
        )
    }
}

/// Rebuilds one entry from its stored bytes.
pub fn decode_entry(
    site: &Arc<str>,
    key: &DataKey,
    seq: u64,
    raw: &[u8],
) -> Result<Entry, ReadError> {
    let rec = LogRecord::decode(raw).map_err(|source| ReadError::Decode { seq, source })?;
    let body = key
        .open(&seal_aad(site, seq), &rec.sealed)
        .map_err(|source| ReadError::Unseal { seq, source })?;
    Ok(Entry {
        site: site.clone(),
        seq,
        ts: rec.ts,
        kind: rec.kind,
        stream: rec.stream,
        author: rec.author,
        body,
        prev: rec.prev,
        hash: rec.hash,
        // The record's version says which chain the entry is hashed with (v3: chain v2).
        chain: if rec.digest.is_some() {
            ChainVersion::V2
        } else {
            ChainVersion::V1
        },
    })
}

/// Reads one entry by seq if its kind is `kind`; other entries are decoded (their kind is clear)
/// but never unsealed. An entry whose payload retention purged is `None` too: it no longer has a
/// body of that kind (listings skip it, a lookup finds nothing).
pub fn entry_of_kind(
    rtx: &ReadTx,
    site: &Arc<str>,
    key: &DataKey,
    seq: u64,
    kind: &str,
) -> Result<Option<Entry>, ReadError> {
    let Some(raw) = rtx.log_raw(seq)? else {
        return Ok(None);
    };
    let (rec, _) = RecordMeta::decode(&raw).map_err(|source| ReadError::Decode { seq, source })?;
    if rec.kind != kind || rec.purged {
        return Ok(None);
    }
    decode_entry(site, key, seq, &raw).map(Some)
}

/// Reads one entry by seq; `None` when there is none, or when retention purged its payload
/// (followers, replays and reports pass over it; `audit verify` reads the record itself).
pub fn entry(
    rtx: &ReadTx,
    site: &Arc<str>,
    key: &DataKey,
    seq: u64,
) -> Result<Option<Entry>, ReadError> {
    match rtx.log_raw(seq)? {
        Some(raw) => match decode_entry(site, key, seq, &raw) {
            Err(e) if e.is_purged() => Ok(None),
            other => other.map(Some),
        },
        None => Ok(None),
    }
}
