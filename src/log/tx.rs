//! The chain-aware write transaction a sequencer job runs in: appends get their seq, timestamp,
//! hash and sealed body here, and view updates go through `views()` in the same redb transaction.

use std::sync::Arc;

use crate::error::Rejection;
use crate::log::Author;
use crate::store::{ChainHead, DataKey, LogRecord, RecordMeta, StoreError, WriteTx};

use super::entry::{
    ChainVersion, Entry, MAX_BODY_LEN, MAX_KIND_LEN, MAX_NAME_LEN, NewEntry, content_digest,
    hash_v2, seal_aad,
};

/// Where the chain stands: the next seq to give and the hash it links to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChainState {
    pub next_seq: u64,
    pub head: [u8; 32],
    pub last_ts: i64,
    /// The wall clock as the last batch read it (at start, the head's `ts`): what a backward
    /// step of the clock is measured against.
    pub last_wall: i64,
}

impl ChainState {
    pub fn from_head(head: Option<ChainHead>) -> Self {
        match head {
            Some(h) => Self {
                next_seq: h.seq + 1,
                head: h.hash,
                last_ts: h.ts,
                last_wall: h.ts,
            },
            None => Self {
                next_seq: 1,
                head: super::entry::GENESIS,
                last_ts: 0,
                last_wall: 0,
            },
        }
    }
}

/// The digest a record keeps: a chain-v2 entry's content digest (record v3), none for chain v1.
fn record_digest(e: &Entry) -> Option<[u8; 32]> {
    match e.chain {
        ChainVersion::V1 => None,
        ChainVersion::V2 => Some(content_digest(&e.kind, &e.stream, &e.author, &e.body)),
    }
}

/// Kind and stream of the entry that records a backward step of the wall clock.
pub const KIND_CLOCK_STEPPED: &str = "clock.stepped";
pub const CLOCK_STREAM: &str = "system/clock";

/// Body of `clock.stepped`: the wall clock before and after the step (UTC µs); the entry's own
/// `ts` is the log's monotonic time, which holds at the newest `ts` until the clock passes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClockStepped {
    pub previous_us: i64,
    pub wall_us: i64,
    pub step_us: i64,
}

/// Why an append failed inside a job.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    Storage(#[from] StoreError),
    /// A body could not be encoded; only this job fails.
    #[error("cannot encode an entry body: {0}")]
    Encode(#[from] serde_json::Error),
}

pub struct Tx<'a> {
    store: &'a mut WriteTx,
    chain: ChainState,
    key: &'a DataKey,
    site: &'a Arc<str>,
    now_us: i64,
    wall_us: i64,
    entries: Vec<Entry>,
    /// Whether a stub was appended (it is not in `entries`, and moves the head too).
    stubbed: bool,
}

impl<'a> Tx<'a> {
    pub(crate) fn new(
        store: &'a mut WriteTx,
        chain: ChainState,
        key: &'a DataKey,
        site: &'a Arc<str>,
        now_us: i64,
    ) -> Self {
        Self {
            store,
            chain,
            key,
            site,
            now_us: now_us.max(chain.last_ts),
            wall_us: now_us,
            entries: Vec::new(),
            stubbed: false,
        }
    }

    /// The timestamp every entry of this batch carries.
    pub fn now_us(&self) -> i64 {
        self.now_us
    }

    pub fn site(&self) -> &str {
        self.site
    }

    /// The data key, for view rows that hold content and are sealed like entry bodies.
    pub fn key(&self) -> &DataKey {
        self.key
    }

    /// The seq the next append will get; everything below it is (or is about to be) committed.
    pub fn next_seq(&self) -> u64 {
        self.chain.next_seq
    }

    /// The hash of the newest entry (this batch's appends included): what the next one links to.
    pub fn head_hash(&self) -> [u8; 32] {
        self.chain.head
    }

    /// The view tables, in the same transaction as the appends.
    pub fn views(&mut self) -> &mut WriteTx {
        self.store
    }

    /// Appends one entry and returns its seq. Limits are checked before anything is written.
    /// Every new entry is hashed with chain v2 ([`ChainVersion::CURRENT`]).
    pub fn append(&mut self, e: NewEntry) -> Result<u64, AppendError> {
        self.append_in(e, ChainVersion::CURRENT)
    }

    /// Appends one entry hashed with chain v1, as a log written before chain v2 holds them (tests
    /// of mixed logs and of legacy stubs only).
    #[cfg(test)]
    pub(crate) fn append_chain_v1(&mut self, e: NewEntry) -> Result<u64, AppendError> {
        self.append_in(e, ChainVersion::V1)
    }

    fn append_in(&mut self, e: NewEntry, chain: ChainVersion) -> Result<u64, AppendError> {
        if e.kind.is_empty() || e.kind.len() > MAX_KIND_LEN {
            return Err(
                Rejection::invalid("invalid_kind", "entry kind is empty or too long").into(),
            );
        }
        let author = e.author.to_string();
        if e.stream.len() > MAX_NAME_LEN || author.len() > MAX_NAME_LEN {
            return Err(Rejection::invalid("too_long", "stream or author is too long").into());
        }
        if e.body.len() > MAX_BODY_LEN {
            return Err(Rejection::invalid("too_large", "entry body is too large").into());
        }
        let seq = self.chain.next_seq;
        let mut entry = Entry {
            site: self.site.clone(),
            seq,
            ts: self.now_us,
            kind: e.kind,
            stream: e.stream,
            author,
            body: e.body,
            prev: self.chain.head,
            hash: [0; 32],
            chain,
        };
        // One pass over the body: the digest goes into both the hash and the record.
        let digest = record_digest(&entry);
        entry.hash = match &digest {
            Some(d) => hash_v2(&entry.prev, self.site, seq, entry.ts, d),
            None => entry.computed_hash(),
        };
        let hash = entry.hash;
        let sealed = self
            .key
            .seal(&seal_aad(self.site, seq), &entry.body)
            .map_err(StoreError::Seal)?;
        let record = LogRecord {
            ts: self.now_us,
            kind: entry.kind.clone(),
            stream: entry.stream.clone(),
            author: entry.author.clone(),
            prev: self.chain.head,
            hash,
            digest,
            sealed,
        };
        let bytes = record
            .encode()
            .map_err(|err| Rejection::invalid("too_long", err.to_string()))?;
        self.store.put_log(seq, bytes)?;
        self.store.put_stream_index(&record.stream, seq)?;
        self.entries.push(entry);
        self.chain.next_seq += 1;
        self.chain.head = hash;
        self.chain.last_ts = self.now_us;
        Ok(seq)
    }

    /// Appends an entry another site's log committed, exactly as it was (its seq, ts, prev and
    /// hash), for a replica of that log: it must be the next seq, link to this log's head and
    /// hash to what it says. Its body is sealed again under this log's key. A replica is opened
    /// with `clock_step_us = i64::MAX`, so nothing of its own is ever appended to it.
    pub fn append_replicated(&mut self, e: &Entry) -> Result<u64, AppendError> {
        if *e.site != **self.site {
            return Err(
                Rejection::invalid("wrong_site", "the entry belongs to another site").into(),
            );
        }
        if e.seq != self.chain.next_seq {
            return Err(Rejection::conflict(
                "out_of_order",
                format!("expected seq {}, got {}", self.chain.next_seq, e.seq),
            )
            .into());
        }
        if e.prev != self.chain.head {
            return Err(Rejection::conflict(
                "broken_link",
                format!("entry {} does not link to the stored head", e.seq),
            )
            .into());
        }
        if e.computed_hash() != e.hash {
            return Err(Rejection::invalid(
                "hash_mismatch",
                format!("entry {} does not match its hash", e.seq),
            )
            .into());
        }
        if e.ts < self.chain.last_ts {
            return Err(Rejection::invalid(
                "time_backwards",
                format!("entry {} is older than the one before it", e.seq),
            )
            .into());
        }
        if e.kind.is_empty()
            || e.kind.len() > MAX_KIND_LEN
            || e.stream.len() > MAX_NAME_LEN
            || e.author.len() > MAX_NAME_LEN
            || e.body.len() > MAX_BODY_LEN
        {
            return Err(Rejection::invalid("too_large", "an entry field is out of bounds").into());
        }
        let sealed = self
            .key
            .seal(&seal_aad(self.site, e.seq), &e.body)
            .map_err(StoreError::Seal)?;
        let record = LogRecord {
            ts: e.ts,
            kind: e.kind.clone(),
            stream: e.stream.clone(),
            author: e.author.clone(),
            prev: e.prev,
            hash: e.hash,
            digest: record_digest(e),
            sealed,
        };
        let bytes = record
            .encode()
            .map_err(|err| Rejection::invalid("too_long", err.to_string()))?;
        self.store.put_log(e.seq, bytes)?;
        self.store.put_stream_index(&record.stream, e.seq)?;
        self.entries.push(e.clone());
        self.chain.next_seq += 1;
        self.chain.head = e.hash;
        self.chain.last_ts = e.ts;
        Ok(e.seq)
    }

    /// Appends a stub of another site's entry for its replica: only seq, ts, prev, hash and, for
    /// a chain-v2 entry, its content digest (the site does not ship the entry's class). It must
    /// be the next seq and link to the head. A chain-v2 stub's hash is recomputed from the
    /// digest and must match; a legacy stub's (`digest = None`) cannot be (the next entry's
    /// `prev` and the site's checkpoints commit to it). Stored like an entry whose payload
    /// retention purged (keeping the digest), in no stream, never broadcast.
    pub fn append_stub(
        &mut self,
        seq: u64,
        ts: i64,
        prev: [u8; 32],
        hash: [u8; 32],
        digest: Option<[u8; 32]>,
    ) -> Result<u64, AppendError> {
        if seq != self.chain.next_seq {
            return Err(Rejection::conflict(
                "out_of_order",
                format!("expected seq {}, got {seq}", self.chain.next_seq),
            )
            .into());
        }
        if prev != self.chain.head {
            return Err(Rejection::conflict(
                "broken_link",
                format!("entry {seq} does not link to the stored head"),
            )
            .into());
        }
        if let Some(d) = &digest
            && hash_v2(&prev, self.site, seq, ts, d) != hash
        {
            return Err(Rejection::invalid(
                "hash_mismatch",
                format!("stub {seq} does not match its hash"),
            )
            .into());
        }
        if ts < self.chain.last_ts {
            return Err(Rejection::invalid(
                "time_backwards",
                format!("entry {seq} is older than the one before it"),
            )
            .into());
        }
        self.store.put_log(
            seq,
            RecordMeta::stub_record(ts, &prev, &hash, digest.as_ref()),
        )?;
        self.stubbed = true;
        self.chain.next_seq += 1;
        self.chain.head = hash;
        self.chain.last_ts = ts;
        Ok(seq)
    }

    /// Appends a `clock.stepped` entry when the wall clock reads more than `threshold_us` before
    /// what the previous batch read (or, at start, the newest entry's `ts`). `ts` stays where it
    /// was until the clock passes it again; the entry keeps both readings. Once per step: the
    /// next batch measures against this one's reading.
    pub(crate) fn note_clock_step(&mut self, threshold_us: i64) -> Result<(), AppendError> {
        let previous_us = self.chain.last_wall;
        if previous_us.saturating_sub(self.wall_us) <= threshold_us {
            return Ok(());
        }
        let body = ClockStepped {
            previous_us,
            wall_us: self.wall_us,
            step_us: previous_us.saturating_sub(self.wall_us),
        };
        let entry = NewEntry::json(KIND_CLOCK_STEPPED, CLOCK_STREAM, &Author::System, &body)
            .map_err(|source| StoreError::Encode {
                what: "clock step",
                source,
            })?;
        tracing::warn!(
            previous_us,
            wall_us = self.wall_us,
            "the wall clock stepped back; ts holds until the clock passes it"
        );
        self.append(entry).map(|_| ())
    }

    /// Writes the chain head into `meta` and hands back what the batch appended.
    pub(crate) fn finish(mut self) -> Result<(ChainState, Vec<Entry>), StoreError> {
        self.chain.last_wall = self.wall_us;
        if !self.entries.is_empty() || self.stubbed {
            // The chain state is the last append's, entry or stub.
            self.store.set_chain_head(&ChainHead {
                seq: self.chain.next_seq - 1,
                hash: self.chain.head,
                ts: self.chain.last_ts,
            })?;
        }
        Ok((self.chain, self.entries))
    }
}
