//! The edge's side: batches read from the log after the acknowledged cursor (unshipped classes as
//! stubs), the cursor (a meta row written only when HQ acknowledges), status and bandwidth cap.

use serde::{Deserialize, Serialize};

use super::ReplicationError;
use super::hq::Ack;
use super::wire::{Batch, Shipped, Stub};
use crate::error::Rejection;
use crate::log::checkpoint::{KIND_CHECKPOINT, KIND_SIGNING_KEY, STREAM};
use crate::log::checkpointer::CheckpointBody;
use crate::log::entry::ChainVersion;
use crate::log::{Entry, Log};
use crate::retention::Class;

/// The stream classes whose entries travel whole (`[replication] ship`); the others travel as
/// stubs. The chain's own entries (checkpoints, signing keys, `system/*`) always travel whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShipClasses([bool; 5]);

impl ShipClasses {
    /// Every class, as before `ship` existed.
    pub const ALL: Self = Self([true; 5]);

    /// The set of `names` (already checked by the config; an unknown name ships nothing more).
    pub fn of<S: AsRef<str>>(names: &[S]) -> Self {
        let mut set = [false; 5];
        for (i, class) in Class::ALL.into_iter().enumerate() {
            set[i] = names.iter().any(|n| n.as_ref() == class.name());
        }
        Self(set)
    }

    pub fn ships(self, class: Class) -> bool {
        Class::ALL
            .into_iter()
            .position(|c| c == class)
            .is_some_and(|i| self.0[i])
    }

    /// Whether `e` travels whole.
    pub fn ships_entry(self, e: &Entry) -> bool {
        e.kind == KIND_CHECKPOINT
            || e.kind == KIND_SIGNING_KEY
            || e.stream.starts_with("system/")
            || self.ships(Class::of(&e.stream))
    }

    /// `e` as it travels: whole, or as its stub: of a chain-v2 entry with its content digest
    /// (HQ re-hashes it), of a chain-v1 entry a legacy stub (hash only; HQ needs `accept_stubs`).
    pub fn ship(self, e: Entry) -> Shipped {
        if self.ships_entry(&e) {
            return Shipped::Entry(e);
        }
        let digest = match e.chain {
            ChainVersion::V1 => None,
            ChainVersion::V2 => Some(e.content_digest()),
        };
        Shipped::Stub(Stub {
            seq: e.seq,
            ts: e.ts,
            prev: e.prev,
            hash: e.hash,
            digest,
        })
    }
}

/// The highest seq HQ acknowledged (0: nothing yet).
pub fn acked(log: &Log) -> Result<u64, ReplicationError> {
    Ok(log
        .read()?
        .replication_meta("acked")?
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map_or(0, u64::from_be_bytes))
}

/// What retention at the edge may purge up to: HQ's acknowledged seq, and no entry whose
/// attachments have not followed it yet (`blobs::retention_floor`).
pub fn retention_floor(log: &Log) -> Result<u64, ReplicationError> {
    super::blobs::retention_floor(log, acked(log)?)
}

/// Records HQ's answer as the cursor: HQ's head is the truth, even below the old cursor (HQ
/// restored from a backup takes the missing entries again). An answer whose head hash is not
/// ours is refused: HQ holds another history than this log.
pub async fn record_ack(log: &Log, ack: &Ack) -> Result<u64, ReplicationError> {
    let rtx = log.read()?;
    // The clear fields: an acknowledged entry may since have had its payload purged.
    let ours = if ack.head == 0 {
        Some([0u8; 32])
    } else {
        rtx.log_meta(ack.head)?.map(|m| m.hash)
    };
    if ours.map(hex::encode).as_deref() != Some(ack.head_hash.as_str()) {
        return Err(Rejection::conflict(
            "diverged",
            format!(
                "HQ holds another entry at seq {} than this log: the histories diverged",
                ack.head
            ),
        )
        .into());
    }
    drop(rtx);
    let head = ack.head;
    let cosig = ack.cosignature.clone();
    log.submit(move |tx| {
        tx.views()
            .set_replication_meta("acked", &head.to_be_bytes())?;
        // HQ's head going back (a restore) takes the attachments above it again too.
        super::blobs::lower_cursor(tx, head)?;
        if let Some(c) = &cosig {
            tx.views()
                .set_replication_meta("cosignature", c.as_bytes())?;
        }
        Ok(())
    })
    .await?;
    Ok(head)
}

/// The entries after `after`, at most `max_entries` and about `max_bytes` of bodies (at least
/// one entry), those of a class outside `ship` (and those whose payload was purged) as stubs,
/// with the newest checkpoint note.
pub fn next_batch(
    log: &Log,
    after: u64,
    max_entries: usize,
    max_bytes: usize,
    ship: ShipClasses,
) -> Result<Batch, ReplicationError> {
    let rtx = log.read()?;
    let head = log.head(&rtx)?;
    let mut entries = Vec::new();
    let mut bytes = 0usize;
    let mut seq = after + 1;
    while seq <= head && entries.len() < max_entries.max(1) {
        let item = match log.entry(&rtx, seq)? {
            Some(e) => ship.ship(e),
            // Retention purged its payload (HQ had it, and lost it: restored from a backup):
            // it travels as a stub, verifiable when the record kept its chain-v2 digest.
            None => match rtx.log_meta(seq)? {
                Some(m) if m.purged => Shipped::Stub(Stub {
                    seq,
                    ts: m.ts,
                    prev: m.prev,
                    hash: m.hash,
                    digest: m.digest,
                }),
                _ => break,
            },
        };
        bytes += match &item {
            Shipped::Entry(e) => e.body.len() + e.kind.len() + e.stream.len() + e.author.len() + 97,
            Shipped::Stub(_) => 81,
        };
        entries.push(item);
        if bytes >= max_bytes {
            break;
        }
        seq += 1;
    }
    let checkpoint = match rtx.stream_seqs_newest(STREAM, 0, head, 1)?.first() {
        Some(&s) => log
            .entry_of_kind(&rtx, s, KIND_CHECKPOINT)?
            .and_then(|e| serde_json::from_slice::<CheckpointBody>(&e.body).ok())
            .map(|b| b.note),
        None => None,
    };
    Ok(Batch {
        site: log.site().to_string(),
        head,
        checkpoint,
        entries,
    })
}

/// What `replication status` shows at the edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeStatus {
    /// The highest seq HQ acknowledged.
    pub cursor: u64,
    /// The newest seq of this log.
    pub head: u64,
    pub lag_entries: u64,
    /// Age of the oldest entry HQ has not acknowledged (0 when none).
    pub lag_seconds: u64,
    pub connected: bool,
}

/// The edge's status now.
pub fn status(log: &Log, connected: bool) -> Result<EdgeStatus, ReplicationError> {
    let cursor = acked(log)?;
    let rtx = log.read()?;
    let head = log.head(&rtx)?;
    let lag_seconds = if head > cursor {
        log.entry(&rtx, cursor + 1)?.map_or(0, |e| {
            u64::try_from((log.now_us() - e.ts).max(0) / 1_000_000).unwrap_or(0)
        })
    } else {
        0
    };
    Ok(EdgeStatus {
        cursor,
        head,
        lag_entries: head.saturating_sub(cursor),
        lag_seconds,
        connected,
    })
}

/// A token bucket for the bandwidth cap: `rate` bytes per second, bursts up to one second's
/// worth (or one batch, whichever is larger). `rate = 0` means no cap.
#[derive(Debug)]
pub struct Bucket {
    rate: u64,
    tokens: f64,
    last: std::time::Instant,
}

impl Bucket {
    pub fn new(rate: u64) -> Self {
        Self {
            rate,
            tokens: rate as f64,
            last: std::time::Instant::now(),
        }
    }

    /// How long to wait before sending `n` bytes; the bytes are taken now (the bucket may go
    /// negative by one batch, which the wait pays back).
    pub fn take(&mut self, n: usize) -> std::time::Duration {
        if self.rate == 0 {
            return std::time::Duration::ZERO;
        }
        let now = std::time::Instant::now();
        let rate = self.rate as f64;
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * rate).min(rate);
        self.last = now;
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            std::time::Duration::ZERO
        } else {
            std::time::Duration::from_secs_f64(-self.tokens / rate)
        }
    }
}
