//! HQ as a witness of a site's checkpoints: verify the note against the site's logged key and
//! the replicated history, cosign it with a timestamp (never over a legacy stub), keep evidence.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::ReplicationError;
use super::wire::Shipped;
use crate::error::Rejection;
use crate::log::checkpoint::{self, KIND_SIGNING_KEY, Signer};
use crate::log::checkpointer::{SigningKeyBody, logged_key};
use crate::log::{AppendError, Log, Tx};

/// A checkpoint HQ verified and cosigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Witnessed {
    pub size: u64,
    /// Hex of the checkpointed entry's hash.
    pub root: String,
    /// The site's signed note, as received.
    pub note: String,
    /// HQ's cosignature line (`checkpoint::verify_cosignature` checks it).
    pub cosignature: String,
    /// When HQ cosigned (Unix seconds, also inside the cosignature).
    pub witnessed_s: u64,
}

/// Two heads for one size: the signed note received and the hash HQ had already replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub size: u64,
    /// The site's signed note stating another root for `size`.
    pub note: String,
    /// Hex of the hash HQ holds at `size`.
    pub replicated_root: String,
    pub detected_s: u64,
}

/// The outcome of checking one note.
#[derive(Debug)]
pub enum Checked {
    Witnessed(Witnessed),
    Rewritten(Evidence),
    /// Not checkable yet (beyond what HQ will hold after this batch, or no key known): ignored.
    Ahead,
}

/// The evidence stored when the site was flagged, if it was.
pub fn rewritten(replica: &Log) -> Result<Option<Evidence>, ReplicationError> {
    Ok(replica
        .read()?
        .replication_meta("rewritten")?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// Stores the evidence (once: the first stays).
pub async fn store_evidence(replica: &Log, evidence: &Evidence) -> Result<(), ReplicationError> {
    let bytes = serde_json::to_vec(evidence)?;
    replica
        .submit(move |tx| {
            if tx.views().replication_meta_in_tx("rewritten")?.is_none() {
                tx.views().set_replication_meta("rewritten", &bytes)?;
            }
            Ok(())
        })
        .await?;
    Ok(())
}

/// Replica meta row: the site's checkpoint-signing public key (32 bytes), pinned at enrolment.
const PINNED_KEY: &str = "signing_key_pin";

/// The 32-byte Ed25519 public key in `b64` (standard base64), as `log.signing_key` and the
/// enrolment request carry it.
pub fn parse_key(b64: &str) -> Result<[u8; 32], ReplicationError> {
    STANDARD
        .decode(b64)
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
        .ok_or_else(|| {
            Rejection::invalid(
                "bad_signing_key",
                "the signing key is not 32 bytes of base64",
            )
            .into()
        })
}

/// Pins `key` as the site's checkpoint-signing key (at enrolment; re-enrolment replaces it, and
/// `None` clears it: an empty row reads as no pin).
pub async fn pin_key(replica: &Log, key: Option<[u8; 32]>) -> Result<(), ReplicationError> {
    replica
        .submit(move |tx| {
            tx.views()
                .set_replication_meta(PINNED_KEY, key.as_ref().map_or(&[][..], |k| &k[..]))?;
            Ok(())
        })
        .await?;
    Ok(())
}

/// The key pinned at enrolment, if the site sent one.
pub fn pinned_key(replica: &Log) -> Result<Option<[u8; 32]>, ReplicationError> {
    Ok(replica
        .read()?
        .replication_meta(PINNED_KEY)?
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok()))
}

/// Refuses, before anything is stored, a batch logging a signing key other than the pinned one
/// (`signing_key_not_pinned`), whether or not it carries a checkpoint.
pub fn check_pinned(replica: &Log, entries: &[Shipped]) -> Result<(), ReplicationError> {
    let Some(pin) = pinned_key(replica)? else {
        return Ok(());
    };
    let foreign = entries
        .iter()
        .filter_map(Shipped::entry)
        .filter(|e| e.kind == KIND_SIGNING_KEY)
        .filter_map(|e| serde_json::from_slice::<SigningKeyBody>(&e.body).ok())
        .any(|b| parse_key(&b.public_key).ok() != Some(pin));
    if foreign {
        return Err(not_pinned());
    }
    Ok(())
}

fn not_pinned() -> ReplicationError {
    Rejection::conflict(
        "signing_key_not_pinned",
        "the site's log carries a signing key other than the one pinned at enrolment",
    )
    .into()
}

/// The site's signing key: the one pinned at enrolment; for a site enrolled before pinning, the
/// newest one replicated, else one logged in this batch (the first batch carries it: a key is
/// logged before any checkpoint). With a pin, a logged key (replicated or in this batch) that is
/// another key is refused (`signing_key_not_pinned`): the edge's checkpointer never changes its
/// key, so a different one means the log was not written by the enrolled site.
pub(super) fn site_key(
    replica: &Log,
    entries: &[Shipped],
) -> Result<Option<[u8; 32]>, ReplicationError> {
    let logged = |b: SigningKeyBody| parse_key(&b.public_key).ok();
    let replicated = logged_key(replica)
        .map_err(ReplicationError::from_checkpoint)?
        .and_then(logged);
    let in_batch: Vec<[u8; 32]> = entries
        .iter()
        .filter_map(Shipped::entry)
        .filter(|e| e.kind == KIND_SIGNING_KEY)
        .filter_map(|e| serde_json::from_slice::<SigningKeyBody>(&e.body).ok())
        .filter_map(logged)
        .collect();
    let Some(pin) = pinned_key(replica)? else {
        return Ok(replicated.or_else(|| in_batch.last().copied()));
    };
    if replicated.iter().chain(in_batch.iter()).any(|k| *k != pin) {
        return Err(not_pinned());
    }
    Ok(Some(pin))
}

/// The items `from..=to` of the batch when they are there, each whole entry matching its hash
/// (a chain-v2 stub's was recomputed when decoded and is again when appended; a legacy stub's
/// cannot be: what follows it commits to it) and each linking to the one before.
fn signed_prefix(entries: &[Shipped], from: u64, to: u64) -> Option<&[Shipped]> {
    let first = entries.first()?;
    if first.seq() != from || to < from {
        return None;
    }
    let signed = entries.get(..usize::try_from(to - from + 1).ok()?)?;
    let chained = signed
        .iter()
        .filter_map(Shipped::entry)
        .all(|e| e.computed_hash() == e.hash)
        && signed
            .windows(2)
            .all(|w| w[1].prev() == w[0].hash() && w[1].seq() == w[0].seq() + 1);
    chained.then_some(signed)
}

/// Checks `note` before the batch's `entries` are appended.
pub async fn check(
    replica: &Log,
    note: &str,
    entries: &[Shipped],
    hq: &Signer,
    now_s: u64,
) -> Result<Checked, ReplicationError> {
    let Some(pk) = site_key(replica, entries)? else {
        return Ok(Checked::Ahead);
    };
    let cp = checkpoint::verify(note, &checkpoint::origin(replica.site()), &pk).map_err(|e| {
        Rejection::invalid(
            "bad_checkpoint",
            format!("the checkpoint does not verify: {e}"),
        )
    })?;
    let rtx = replica.read()?;
    let head = replica.head(&rtx)?;
    let rewritten = |size: u64, held: [u8; 32]| {
        Ok(Checked::Rewritten(Evidence {
            size,
            note: note.to_string(),
            replicated_root: hex::encode(held),
            detected_s: now_s,
        }))
    };
    if cp.size <= head {
        // The clear fields: a stub's or a purged entry's hash is kept without its body.
        let Some(held) = rtx.log_meta(cp.size)?.map(|m| m.hash) else {
            return Ok(Checked::Ahead);
        };
        if held != cp.root {
            return rewritten(cp.size, held);
        }
    } else {
        // The note signs an entry of this batch; through the chain it signs the batch's first
        // `prev` too, which must be HQ's head.
        let Some(signed) = signed_prefix(entries, head + 1, cp.size) else {
            return Ok(Checked::Ahead);
        };
        if signed.last().map(Shipped::hash) != Some(cp.root) {
            return Err(Rejection::invalid(
                "bad_checkpoint",
                "the checkpoint does not match the batch's entries",
            )
            .into());
        }
        let held = rtx
            .chain_head()?
            .map_or(crate::log::entry::GENESIS, |h| h.hash);
        if signed.first().map(Shipped::prev) != Some(held) {
            return rewritten(head, held);
        }
    }
    let cosignature = hq
        .cosign(note, now_s)
        .map_err(|e| Rejection::invalid("bad_checkpoint", e.to_string()))?;
    Ok(Checked::Witnessed(Witnessed {
        size: cp.size,
        root: hex::encode(cp.root),
        note: note.to_string(),
        cosignature,
        witnessed_s: now_s,
    }))
}

/// Replica meta rows: the lowest and the highest seq stored as a stub.
const STUBS_FIRST: &str = "stubs_first";
const STUBS_LAST: &str = "stubs_last";

fn meta_u64(bytes: Option<Vec<u8>>) -> Option<u64> {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(u64::from_be_bytes)
}

/// Records the batch's legacy stubs just appended in `tx` (their lowest and highest seq), so a
/// later checkpoint over them is known to cover one without reading the replica back. Chain-v2
/// stubs are verified like whole entries: a checkpoint over them is witnessed as usual.
pub fn note_stubs(tx: &mut Tx<'_>, entries: &[Shipped]) -> Result<(), AppendError> {
    let mut seqs = entries
        .iter()
        .filter(|i| i.is_legacy_stub())
        .map(Shipped::seq);
    let Some(low) = seqs.next() else {
        return Ok(());
    };
    let high = seqs.next_back().unwrap_or(low);
    let views = tx.views();
    if meta_u64(views.replication_meta_in_tx(STUBS_FIRST)?).is_none() {
        views.set_replication_meta(STUBS_FIRST, &low.to_be_bytes())?;
    }
    views.set_replication_meta(STUBS_LAST, &high.to_be_bytes())?;
    Ok(())
}

/// Whether a checkpoint of `size` would vouch for a legacy stub HQ has not vouched for already:
/// one of seq in (last witnessed size, `size`], stored or in this batch. Conservative: with
/// legacy stubs stored on both sides of that range and none in it, the answer is still yes.
pub fn covers_stub(
    replica: &Log,
    entries: &[Shipped],
    size: u64,
) -> Result<bool, ReplicationError> {
    let rtx = replica.read()?;
    let witnessed = rtx
        .replication_meta("checkpoint")?
        .and_then(|b| serde_json::from_slice::<Witnessed>(&b).ok())
        .map_or(0, |w| w.size);
    let in_range = |seq: u64| seq > witnessed && seq <= size;
    if entries
        .iter()
        .any(|i| i.is_legacy_stub() && in_range(i.seq()))
    {
        return Ok(true);
    }
    let first = meta_u64(rtx.replication_meta(STUBS_FIRST)?);
    let last = meta_u64(rtx.replication_meta(STUBS_LAST)?);
    Ok(matches!((first, last), (Some(f), Some(l)) if f <= size && l > witnessed))
}
