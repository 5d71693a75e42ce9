//! The checkpoint writer: once the site's signing key is logged, it follows the log and, after
//! `every_entries` new entries or `interval` with anything new, appends a `log.checkpoint` entry
//! carrying the signed note of the head just before it. It never signs an empty stretch.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::checkpoint::{self, KIND_CHECKPOINT, KIND_SIGNING_KEY, STREAM, Signer};
use super::{Author, Log, NewEntry, SubmitError};
use crate::error::Rejection;
use crate::log::read::ReadError;
use crate::store::StoreError;

/// The stream of `log.signing_key` entries (one per key the site has signed with).
pub const KEYS_STREAM: &str = "system/keys";

/// Body of `log.checkpoint`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointBody {
    /// The signed note (see `checkpoint`): origin, size (the seq before this entry), root.
    pub note: String,
}

/// Body of `log.signing_key`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SigningKeyBody {
    pub origin: String,
    /// Base64 of the 32-byte Ed25519 public key.
    pub public_key: String,
    /// Hex of the signed-note key id.
    pub key_id: String,
}

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Checkpoint after this many new entries.
    pub every_entries: u64,
    /// Or after this long (µs) when anything new was logged.
    pub interval_us: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointStartError {
    #[error(
        "the site signing key does not match the one this log was signed with (key id {logged}, the key file has {file}); restore the site's signing key (site-signing.key) from its backup"
    )]
    KeyMismatch { logged: String, file: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

/// The newest `log.signing_key` body in the log, if any.
pub fn logged_key(log: &Log) -> Result<Option<SigningKeyBody>, CheckpointStartError> {
    let rtx = log.read()?;
    let head = log.head(&rtx)?;
    let Some(seq) = rtx
        .stream_seqs_newest(KEYS_STREAM, 0, head, 1)?
        .first()
        .copied()
    else {
        return Ok(None);
    };
    let Some(e) = log.entry_of_kind(&rtx, seq, KIND_SIGNING_KEY)? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(&e.body).ok())
}

fn key_body(log: &Log, signer: &Signer) -> SigningKeyBody {
    use base64::Engine;
    let origin = checkpoint::origin(log.site());
    let pk = signer.public_key();
    SigningKeyBody {
        key_id: hex::encode(checkpoint::key_id(&origin, &pk)),
        public_key: base64::engine::general_purpose::STANDARD.encode(pk),
        origin,
    }
}

/// Logs the signing key's public half the first time it is used; refuses a key file that is not
/// the one the log names (a swapped or lost key must be noticed, not silently replaced).
pub async fn ensure_key_logged(log: &Log, signer: &Signer) -> Result<(), CheckpointStartError> {
    let mine = key_body(log, signer);
    match logged_key(log)? {
        Some(logged) if logged.public_key == mine.public_key => Ok(()),
        Some(logged) => Err(CheckpointStartError::KeyMismatch {
            logged: logged.key_id,
            file: mine.key_id,
        }),
        None => {
            let entry = NewEntry::json(KIND_SIGNING_KEY, KEYS_STREAM, &Author::System, &mine)
                .map_err(SubmitError::from)?;
            log.submit(move |tx| tx.append(entry.clone())).await?;
            tracing::info!(key_id = %mine.key_id, "logged the site signing key");
            Ok(())
        }
    }
}

/// The seq of the newest checkpoint entry (0 when there is none).
fn last_checkpoint(log: &Log) -> Result<u64, StoreError> {
    let rtx = log.read()?;
    let head = log.head(&rtx)?;
    Ok(rtx
        .stream_seqs_newest(STREAM, 0, head, 1)?
        .first()
        .copied()
        .unwrap_or(0))
}

/// Appends one checkpoint of the current head, unless the head is already a checkpoint.
pub async fn checkpoint_now(log: &Log, signer: &Arc<Signer>) -> Result<Option<u64>, SubmitError> {
    let signer = signer.clone();
    let at = log
        .submit(move |tx| {
            let size = tx.next_seq().saturating_sub(1);
            if size == 0 || tx.views().in_stream(STREAM, size)? {
                return Err(Rejection::conflict("nothing_new", "nothing to checkpoint").into());
            }
            let note = signer.sign(size, &tx.head_hash());
            let e = NewEntry::json(
                KIND_CHECKPOINT,
                STREAM,
                &Author::System,
                &CheckpointBody { note },
            )?;
            tx.append(e)
        })
        .await;
    match at {
        Ok(seq) => Ok(Some(seq)),
        Err(SubmitError::Rejected(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Runs until `stop`: counts committed entries (its own excepted) and checkpoints by policy.
pub async fn run(log: Log, signer: Arc<Signer>, policy: Policy, stop: CancellationToken) {
    let mut hub = log.subscribe();
    let mut pending = match last_checkpoint(&log).and_then(|last| {
        let rtx = log.read()?;
        Ok(log.head(&rtx)?.saturating_sub(last))
    }) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the last checkpoint; starting the count at 0");
            0
        }
    };
    let mut due = log.now_us().saturating_add(policy.interval_us);
    loop {
        let clock = log.clock().clone();
        let tick = pending >= policy.every_entries.max(1);
        if !tick {
            tokio::select! {
                () = stop.cancelled() => return,
                () = clock.sleep_until(due) => {
                    due = log.now_us().saturating_add(policy.interval_us);
                    if pending == 0 {
                        continue;
                    }
                }
                got = hub.recv() => {
                    match got {
                        Ok(e) if e.kind == KIND_CHECKPOINT => {}
                        Ok(_) => pending += 1,
                        Err(RecvError::Lagged(n)) => pending += n,
                        Err(RecvError::Closed) => return,
                    }
                    continue;
                }
            }
        }
        match checkpoint_now(&log, &signer).await {
            Ok(Some(seq)) => {
                tracing::debug!(seq, entries = pending, "checkpoint signed");
                pending = 0;
                due = log.now_us().saturating_add(policy.interval_us);
            }
            Ok(None) => pending = 0,
            Err(e) => {
                // Busy or a storage fault: try again at the next tick, the count kept.
                tracing::warn!(error = %e, "cannot write a checkpoint; retrying later");
                due = log.now_us().saturating_add(policy.interval_us);
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = clock.sleep_until(due) => {}
                }
            }
        }
    }
}
