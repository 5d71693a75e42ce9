//! The audit walk: from the oldest kept entry to the head, decode, open, re-hash and check links,
//! and name the first entry that does not match. It reads only; it never repairs. An entry whose
//! payload retention purged is checked by its links and reported as purged, not as damage.

use std::sync::Arc;

use serde::Serialize;

use crate::store::{DataKey, RecordMeta, Store, StoreError};

use super::entry::{GENESIS, hash_v2};
use super::read::{ReadError, decode_entry};

/// The outcome of a walk over the log.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VerifyReport {
    pub site: String,
    pub entries: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Hex hash of the last entry that verified.
    pub head: Option<String>,
    /// Signed checkpoints whose signature and head matched.
    pub checkpoints: u64,
    /// Runs `[first, last]` of entries whose payload retention purged: their links were checked;
    /// a chain-v1 one's hash cannot be recomputed without the body, a chain-v2 one's was, from
    /// the content digest its record keeps.
    pub purged: Vec<[u64; 2]>,
    /// At HQ: runs of legacy stubs, chain-v1 entries of a class the site does not ship (hash
    /// only). Like purged ones, their links were checked and their hashes cannot be recomputed.
    pub stubbed: Vec<[u64; 2]>,
    /// At HQ: runs of chain-v2 stubs (a class the site does not ship): their links were checked
    /// and their hashes recomputed from the content digest, as for a whole entry.
    pub stubs_verified: Vec<[u64; 2]>,
    /// The first problem found, if any.
    pub problem: Option<Problem>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// The store file itself failed redb's page checks.
    StoreDamaged { detail: String },
    /// A record could not be decoded or its body did not open.
    Unreadable { seq: u64, detail: String },
    /// The stored hash is not SHA-256(prev ‖ canonical entry) in the entry's chain version (or
    /// a chain-v2 record's kept digest is not its content's).
    HashMismatch { seq: u64 },
    /// The entry's `prev` is not the hash of the entry before it.
    BrokenLink { seq: u64 },
    /// A seq is missing.
    Gap { expected: u64, found: u64 },
    /// The chain head recorded in meta is not the last entry.
    HeadMismatch { seq: u64 },
    /// A checkpoint entry whose note does not verify under the logged signing key, or does not
    /// sign the entry before it.
    BadCheckpoint { seq: u64, detail: String },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::StoreDamaged { detail } => write!(f, "the store file is damaged: {detail}"),
            Problem::Unreadable { seq, detail } => write!(f, "entry {seq} is unreadable: {detail}"),
            Problem::HashMismatch { seq } => {
                write!(
                    f,
                    "entry {seq} does not match its hash (its content was altered)"
                )
            }
            Problem::BrokenLink { seq } => {
                write!(
                    f,
                    "entry {seq} does not link to the hash of entry {}",
                    seq - 1
                )
            }
            Problem::Gap { expected, found } => {
                write!(
                    f,
                    "entry {expected} is missing (next stored entry is {found})"
                )
            }
            Problem::HeadMismatch { seq } => {
                write!(f, "the recorded chain head ({seq}) is not the last entry")
            }
            Problem::BadCheckpoint { seq, detail } => {
                write!(f, "checkpoint {seq} does not hold: {detail}")
            }
        }
    }
}

/// Walks the whole log. Storage errors that stop the walk become `StoreDamaged`.
pub fn verify(store: &Store, site: &Arc<str>, key: &DataKey) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport {
        site: site.to_string(),
        entries: 0,
        first_seq: None,
        last_seq: None,
        head: None,
        checkpoints: 0,
        purged: Vec::new(),
        stubbed: Vec::new(),
        stubs_verified: Vec::new(),
        problem: None,
    };
    let origin = super::checkpoint::origin(site);
    let mut signing_key: Option<[u8; 32]> = None;
    let rtx = store.read()?;
    let recorded_head = rtx.chain_head()?;
    let mut prev_hash: Option<[u8; 32]> = None;
    let mut expected_seq: Option<u64> = None;
    let walk = rtx.scan_log(0, |seq, raw| {
        report.entries += 1;
        report.first_seq.get_or_insert(seq);
        report.last_seq = Some(seq);
        if let Some(expected) = expected_seq
            && seq != expected
        {
            report.problem = Some(Problem::Gap {
                expected,
                found: seq,
            });
            return false;
        }
        let meta = RecordMeta::decode(raw).ok().map(|(m, _)| m);
        if let Some(meta) = meta.as_ref().filter(|m| m.purged) {
            let linked = match prev_hash {
                Some(p) => meta.prev == p,
                None => seq != 1 || meta.prev == GENESIS,
            };
            if !linked {
                report.problem = Some(Problem::BrokenLink { seq });
                return false;
            }
            // Chain v2: the kept digest is what the hash is over.
            if let Some(d) = &meta.digest
                && hash_v2(&meta.prev, site, seq, meta.ts, d) != meta.hash
            {
                report.problem = Some(Problem::HashMismatch { seq });
                return false;
            }
            let runs = if meta.is_legacy_stub() {
                &mut report.stubbed
            } else if meta.is_stub() {
                &mut report.stubs_verified
            } else {
                &mut report.purged
            };
            match runs.last_mut() {
                Some(run) if run[1] + 1 == seq => run[1] = seq,
                _ => runs.push([seq, seq]),
            }
            prev_hash = Some(meta.hash);
            report.head = Some(hex::encode(meta.hash));
            expected_seq = Some(seq + 1);
            return true;
        }
        let entry = match decode_entry(site, key, seq, raw) {
            Ok(e) => e,
            Err(e @ (ReadError::Decode { .. } | ReadError::Unseal { .. })) => {
                let detail = match &e {
                    ReadError::Decode { source, .. } => source.to_string(),
                    ReadError::Unseal { source, .. } => source.to_string(),
                    ReadError::Store(source) => source.to_string(),
                };
                report.problem = Some(Problem::Unreadable { seq, detail });
                return false;
            }
            Err(ReadError::Store(e)) => {
                report.problem = Some(Problem::StoreDamaged {
                    detail: e.to_string(),
                });
                return false;
            }
        };
        // The oldest kept entry is trusted to link where it says, unless it is the genesis entry.
        let link_ok = match prev_hash {
            Some(p) => entry.prev == p,
            None => seq != 1 || entry.prev == GENESIS,
        };
        if !link_ok {
            report.problem = Some(Problem::BrokenLink { seq });
            return false;
        }
        // A chain-v2 record's kept digest must be the body's too: a purge keeps only it.
        let digest_ok = meta
            .as_ref()
            .and_then(|m| m.digest)
            .is_none_or(|d| d == entry.content_digest());
        if !digest_ok || entry.computed_hash() != entry.hash {
            report.problem = Some(Problem::HashMismatch { seq });
            return false;
        }
        match check_signed(&entry, &origin, &mut signing_key) {
            Ok(true) => report.checkpoints += 1,
            Ok(false) => {}
            Err(detail) => {
                report.problem = Some(Problem::BadCheckpoint { seq, detail });
                return false;
            }
        }
        prev_hash = Some(entry.hash);
        report.head = Some(hex::encode(entry.hash));
        expected_seq = Some(seq + 1);
        true
    });
    if let Err(e) = walk {
        report.problem.get_or_insert(Problem::StoreDamaged {
            detail: e.to_string(),
        });
    }
    if report.problem.is_none() {
        let last = report.last_seq.zip(prev_hash);
        let recorded = recorded_head.map(|h| (h.seq, h.hash));
        if last != recorded {
            report.problem = Some(Problem::HeadMismatch {
                seq: recorded.map(|r| r.0).unwrap_or(0),
            });
        }
    }
    Ok(report)
}

/// For a `log.signing_key` entry, takes its key as the one later checkpoints are signed with; for
/// a `log.checkpoint` entry, checks its note under that key and that it signs the entry just
/// before it. True for a checkpoint that holds.
fn check_signed(
    entry: &super::Entry,
    origin: &str,
    key: &mut Option<[u8; 32]>,
) -> Result<bool, String> {
    use super::checkpoint::{KIND_CHECKPOINT, KIND_SIGNING_KEY};
    use super::checkpointer::{CheckpointBody, SigningKeyBody};
    use base64::Engine;
    match entry.kind.as_str() {
        KIND_SIGNING_KEY => {
            let body: SigningKeyBody =
                serde_json::from_slice(&entry.body).map_err(|e| e.to_string())?;
            let pk = base64::engine::general_purpose::STANDARD
                .decode(&body.public_key)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or("the logged signing key is not 32 bytes of base64")?;
            *key = Some(pk);
            Ok(false)
        }
        KIND_CHECKPOINT => {
            let body: CheckpointBody =
                serde_json::from_slice(&entry.body).map_err(|e| e.to_string())?;
            let pk = key.ok_or("no signing key is logged before it")?;
            let c =
                super::checkpoint::verify(&body.note, origin, &pk).map_err(|e| e.to_string())?;
            if c.size + 1 != entry.seq || c.root != entry.prev {
                return Err(format!(
                    "it signs entry {} with another hash, not the entry before it",
                    c.size
                ));
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}
