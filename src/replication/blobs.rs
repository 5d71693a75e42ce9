//! Attachments follow the log by content hash: the edge ships the attachments of the entries HQ
//! acknowledged (only those HQ lacks, checked by SHA-256); HQ stores each content once per site.
//! Never before the entry that references it, and the edge's retention waits for this cursor.

use std::collections::BTreeSet;

use aws_lc_rs::digest::{SHA256, digest};
use serde::{Deserialize, Serialize};

use super::ReplicationError;
use super::edge::{Bucket, ShipClasses};
use super::net::{self, Conn, NetError};
use super::wire::Shipped;
use crate::chat::attachments::{CHUNK, chunk, chunk_aad, clean_name, sniff};
use crate::error::Rejection;
use crate::log::Log;
use crate::store::{AttachmentRow, StoreError};

/// Replication meta row (edge): every attachment referenced at or below this seq is at HQ, or
/// was gone at the edge, or belongs to an entry shipped as a stub.
pub(super) const CURSOR: &str = "blobs";
/// The references the edge asks about in one `wanted` request (a page ends before the entry that
/// would pass it, unless that entry is the page's first).
pub const MAX_REFS: usize = 256;
/// The most references HQ takes in one request: a page plus one entry's worth, with room.
pub const MAX_REFS_TAKEN: usize = 1024;
/// The largest attachment HQ takes: the largest `chat.max_attachment_bytes` allows.
pub const MAX_BLOB: u64 = 64 << 20;
/// The longest name HQ takes, in bytes (uploads keep 128 characters).
const MAX_NAME_BYTES: usize = 1024;
/// Refusals of one blob that sending it again cannot change: it stays missing at HQ and the
/// edge goes on. Every other refusal (a storage fault at HQ, a full queue, a revoked site) keeps
/// the cursor where it is, to try again after the next acknowledgement.
const FINAL: &[&str] = &["blob_mismatch", "unreferenced_blob", "unsupported_type"];
/// The id prefix of a content row at HQ: `h/<sha256 hex>`, its chunks sealed like an upload's.
const CONTENT_PREFIX: &str = "h/";

/// What the edge says of one attachment an acknowledged entry references.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// The acknowledged entry that references it (HQ holds it whole and it names `id`).
    pub seq: u64,
    /// The attachment's id at the site (what the entry names).
    pub id: String,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    pub size: u64,
    pub mime: String,
    pub name: String,
}

/// `POST /replication/v1/blobs/wanted`: the references of a run of acknowledged entries.
#[derive(Debug, Serialize, Deserialize)]
pub struct Wanted {
    pub refs: Vec<BlobRef>,
}

/// HQ's answer: the contents it lacks (hex SHA-256). The others it now maps to their ids; a
/// reference whose entry HQ does not hold whole naming that id is neither.
#[derive(Debug, Serialize, Deserialize)]
pub struct WantedAnswer {
    pub missing: Vec<String>,
}

/// The edge's blob cursor.
pub fn cursor(log: &Log) -> Result<u64, ReplicationError> {
    Ok(log
        .read()?
        .replication_meta(CURSOR)?
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map_or(0, u64::from_be_bytes))
}

/// Lowers the blob cursor to `head` (HQ's acknowledged head went back: a restore), in the
/// transaction that records the acknowledgement.
pub(super) fn lower_cursor(
    tx: &mut crate::log::Tx<'_>,
    head: u64,
) -> Result<(), crate::log::AppendError> {
    let at = tx
        .views()
        .replication_meta_in_tx(CURSOR)?
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map_or(0, u64::from_be_bytes);
    if at > head {
        tx.views()
            .set_replication_meta(CURSOR, &head.to_be_bytes())?;
    }
    Ok(())
}

pub(super) async fn set_cursor(log: &Log, seq: u64) -> Result<(), ReplicationError> {
    log.submit(move |tx| {
        tx.views()
            .set_replication_meta(CURSOR, &seq.to_be_bytes())?;
        Ok(())
    })
    .await?;
    Ok(())
}

/// The references of the entries in (`after`, `upto`], at most about [`MAX_REFS`] (a seq's
/// references are never split), of entries shipped whole, with their rows; and the seq up to
/// which they cover. References to an attachment gone at the edge are left out. `None` when no
/// entry in the range references an attachment.
fn refs_after(
    log: &Log,
    after: u64,
    upto: u64,
    ship: ShipClasses,
) -> Result<Option<(Vec<BlobRef>, u64)>, ReplicationError> {
    let rtx = log.read()?;
    let (pairs, covered) = rtx.attachment_refs_in(after, upto, MAX_REFS)?;
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    let mut whole: Option<(u64, bool)> = None;
    for (seq, id) in pairs {
        let shipped = match whole {
            Some((s, w)) if s == seq => w,
            _ => {
                let w = log
                    .entry(&rtx, seq)?
                    .is_some_and(|e| matches!(ship.ship(e), Shipped::Entry(_)));
                whole = Some((seq, w));
                w
            }
        };
        if !shipped {
            continue;
        }
        if let Some(row) = rtx.attachment(&id)? {
            out.push(BlobRef {
                seq,
                id: row.id,
                sha256: row.sha256,
                size: row.size,
                mime: row.mime,
                name: row.name,
            });
        }
    }
    Ok(Some((out, covered)))
}

/// What retention at the edge may purge up to: `acked`, but not the first entry above the blob
/// cursor that references an attachment, while that is at or below `acked`. (The cursor moves
/// only where there are references, so a log without attachments costs no write.)
pub fn retention_floor(log: &Log, acked: u64) -> Result<u64, ReplicationError> {
    let after = cursor(log)?;
    let (first, _) = log.read()?.attachment_refs_in(after, acked, 1)?;
    Ok(first.first().map_or(acked, |(seq, _)| seq - 1))
}

fn content(log: &Log, row: &AttachmentRow) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(usize::try_from(row.size).unwrap_or(0));
    for n in 0..row.chunks {
        out.extend_from_slice(&chunk(log, row, n)?);
    }
    Ok(out)
}

/// The body of `POST /replication/v1/blob`: `u32` big-endian length of the JSON [`BlobRef`],
/// the JSON, then the content.
pub fn blob_body(r: &BlobRef, content: &[u8]) -> Result<Vec<u8>, ReplicationError> {
    let head = serde_json::to_vec(r)?;
    let len = u32::try_from(head.len())
        .map_err(|_| Rejection::invalid("bad_blob", "the blob header is too long"))?;
    let mut body = Vec::with_capacity(4 + head.len() + content.len());
    body.extend_from_slice(&len.to_be_bytes());
    body.extend_from_slice(&head);
    body.extend_from_slice(content);
    Ok(body)
}

/// The edge: ships the attachments of the entries up to `acked` that HQ lacks, then moves the
/// cursor; pages of [`MAX_REFS`] references, each blob through the bandwidth `bucket`.
pub(super) async fn ship(
    log: &Log,
    conn: &mut Conn,
    bucket: &mut Bucket,
    acked: u64,
    classes: ShipClasses,
) -> Result<(), ReplicationError> {
    let mut after = cursor(log)?;
    while after < acked {
        let Some((refs, covered)) = refs_after(log, after, acked, classes)? else {
            return Ok(());
        };
        if !refs.is_empty() {
            let body = serde_json::to_vec(&Wanted { refs: refs.clone() })?;
            let answer: WantedAnswer =
                serde_json::from_slice(&conn.post(net::PATH_BLOBS_WANTED, body).await?)?;
            let missing: BTreeSet<String> = answer.missing.into_iter().collect();
            let mut sent = BTreeSet::new();
            let mut same_content = Vec::new();
            for r in refs.iter().filter(|r| missing.contains(&r.sha256)) {
                if !sent.insert(r.sha256.clone()) {
                    // Sent once for an earlier id: this id is mapped below.
                    same_content.push(r.clone());
                    continue;
                }
                let Some(row) = log.read()?.attachment(&r.id)? else {
                    continue;
                };
                let body = blob_body(r, &content(log, &row)?)?;
                let wait = bucket.take(body.len());
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                match conn.post(net::PATH_BLOB, body).await {
                    Ok(_) => {}
                    Err(NetError::Refused { code, message, .. })
                        if FINAL.contains(&code.as_str()) =>
                    {
                        tracing::warn!(code, message, id = %r.id, "HQ refused an attachment for good; it stays missing there");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if !same_content.is_empty() {
                // HQ holds those contents now: asking again maps these ids to them.
                let body = serde_json::to_vec(&Wanted { refs: same_content })?;
                conn.post(net::PATH_BLOBS_WANTED, body).await?;
            }
        }
        set_cursor(log, covered).await?;
        after = covered;
    }
    Ok(())
}

fn valid_ref(r: &BlobRef) -> bool {
    r.sha256.len() == 64
        && r.sha256
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && !r.id.is_empty()
        && r.id.len() <= 64
        && !r.id.starts_with(CONTENT_PREFIX)
        && r.name.len() <= MAX_NAME_BYTES
        && r.mime.len() <= 128
        && r.size > 0
        && r.size <= MAX_BLOB
}

fn bad_blob(message: &str) -> ReplicationError {
    Rejection::invalid("bad_blob", message.to_string()).into()
}

/// The pointer row of `r` at HQ: the site's id, name and type, its content under `h/<sha256>`.
fn pointer(r: &BlobRef, site: &str, now_us: i64) -> AttachmentRow {
    AttachmentRow {
        id: r.id.clone(),
        size: r.size,
        sha256: r.sha256.clone(),
        mime: r.mime.clone(),
        name: r.name.clone(),
        uploader: format!("site:{site}"),
        created_at_us: now_us,
        chunks: 0,
    }
}

/// HQ: which contents of `refs` the replica lacks; the ids of those it has are mapped to them
/// at once (deduplicated: one content per SHA-256 per site).
pub async fn wanted(replica: &Log, refs: Vec<BlobRef>) -> Result<WantedAnswer, ReplicationError> {
    if refs.len() > MAX_REFS_TAKEN || !refs.iter().all(valid_ref) {
        return Err(bad_blob("the references are malformed or too many"));
    }
    // A reference HQ cannot bind (its entry purged at HQ, or not naming the id) is skipped: it
    // is neither wanted nor mapped.
    let mut named = Vec::with_capacity(refs.len());
    for r in refs {
        if names(replica, &r)? {
            named.push(r);
        }
    }
    let refs = named;
    let site = replica.site().to_string();
    let now_us = replica.now_us();
    let missing = replica
        .submit(move |tx| {
            let mut missing = Vec::new();
            for r in &refs {
                let cid = format!("{CONTENT_PREFIX}{}", r.sha256);
                match tx.views().attachment(&cid)? {
                    Some(c) if c.size == r.size => {
                        let r = BlobRef {
                            name: clean_name(&r.name, &c.mime),
                            mime: c.mime,
                            ..r.clone()
                        };
                        refer(tx, &r, &site, now_us)?;
                    }
                    _ => missing.push(r.sha256.clone()),
                }
            }
            Ok(missing)
        })
        .await?;
    Ok(WantedAnswer { missing })
}

/// The pointer row of `r` (once) and its references from `r.seq`, to it and to its content, so
/// that retention at HQ removes both once every entry naming them is purged for good.
fn refer(
    tx: &mut crate::log::Tx<'_>,
    r: &BlobRef,
    site: &str,
    now_us: i64,
) -> Result<(), crate::log::AppendError> {
    if tx.views().attachment(&r.id)?.is_none() {
        tx.views().put_attachment(&pointer(r, site, now_us))?;
    }
    tx.views().put_attachment_ref(r.seq, &r.id)?;
    tx.views()
        .put_attachment_ref(r.seq, &format!("{CONTENT_PREFIX}{}", r.sha256))?;
    Ok(())
}

/// Whether the entry `r.seq` is in the replica, whole, and names the attachment `r.id`: a
/// string of its body equal to the id (a chat message's `attachments[].id`, an incident file
/// answer's value), not a part of a longer text.
fn names(replica: &Log, r: &BlobRef) -> Result<bool, ReplicationError> {
    let rtx = replica.read()?;
    let Some(e) = replica.entry(&rtx, r.seq)? else {
        return Ok(false);
    };
    Ok(serde_json::from_slice::<serde_json::Value>(&e.body)
        .is_ok_and(|v| holds_string(&v, &r.id, 0)))
}

/// Whether `v` holds the string `s` as a value (at most 8 levels down).
fn holds_string(v: &serde_json::Value, s: &str, depth: u8) -> bool {
    use serde_json::Value;
    match v {
        Value::String(x) => x == s,
        Value::Object(m) if depth < 8 => m.values().any(|x| holds_string(x, s, depth + 1)),
        Value::Array(a) if depth < 8 => a.iter().any(|x| holds_string(x, s, depth + 1)),
        _ => false,
    }
}

/// The entry `r.seq` must name the attachment `r.id` (`unreferenced_blob` otherwise).
fn check_named(replica: &Log, r: &BlobRef) -> Result<(), ReplicationError> {
    if !names(replica, r)? {
        return Err(Rejection::invalid(
            "unreferenced_blob",
            format!("entry {} at HQ does not name attachment {:?}", r.seq, r.id),
        )
        .into());
    }
    Ok(())
}

/// HQ: stores one blob (the body of `POST /replication/v1/blob`) after checking its SHA-256
/// and size: its content once per site, sealed under HQ's key in 64 KiB chunks, and its id.
pub async fn store(replica: &Log, body: &[u8]) -> Result<(), ReplicationError> {
    let (len, rest) = body
        .split_first_chunk::<4>()
        .ok_or_else(|| bad_blob("the blob is truncated"))?;
    let len = usize::try_from(u32::from_be_bytes(*len)).unwrap_or(usize::MAX);
    if len > rest.len() {
        return Err(bad_blob("the blob is truncated"));
    }
    let (head, data) = rest.split_at(len);
    let r: BlobRef =
        serde_json::from_slice(head).map_err(|_| bad_blob("the blob header is not JSON"))?;
    if !valid_ref(&r) {
        return Err(bad_blob("the blob header is malformed"));
    }
    check_named(replica, &r)?;
    if data.len() as u64 != r.size || hex::encode(digest(&SHA256, data).as_ref()) != r.sha256 {
        return Err(Rejection::invalid(
            "blob_mismatch",
            "the content does not match its SHA-256 or size",
        )
        .into());
    }
    // HQ judges the type by the content, as an upload is judged, never by the edge's word.
    let Some(mime) = sniff(data, &r.name) else {
        return Err(Rejection::invalid(
            "unsupported_type",
            "the content is not of a type an upload may have",
        )
        .into());
    };
    let r = BlobRef {
        mime: mime.to_string(),
        name: clean_name(&r.name, mime),
        ..r
    };
    let cid = format!("{CONTENT_PREFIX}{}", r.sha256);
    let mut chunks = Vec::new();
    for (n, part) in data.chunks(CHUNK).enumerate() {
        let n = u32::try_from(n).map_err(|_| bad_blob("the blob is too large"))?;
        chunks.push(
            replica
                .seal_view(&chunk_aad(&cid, n), part)
                .map_err(StoreError::Seal)?,
        );
    }
    let site = replica.site().to_string();
    let now_us = replica.now_us();
    replica
        .submit(move |tx| {
            if tx.views().attachment(&cid)?.is_none() {
                let mut row = pointer(&r, &site, now_us);
                row.id = cid.clone();
                row.name = String::new();
                row.chunks = chunks.len() as u32;
                tx.views().put_attachment(&row)?;
                for (n, c) in chunks.iter().enumerate() {
                    tx.views().put_attachment_chunk(&cid, n as u32, c)?;
                }
            }
            refer(tx, &r, &site, now_us)
        })
        .await?;
    Ok(())
}

/// HQ: the attachment the site names `id`, as a row whose chunks are its content (id
/// `h/<sha256>`, the site's name and type); `None` when HQ does not hold it (yet).
pub fn open(replica: &Log, id: &str) -> Result<Option<AttachmentRow>, StoreError> {
    if id.starts_with(CONTENT_PREFIX) || id.len() > 64 {
        return Ok(None);
    }
    let rtx = replica.read()?;
    let Some(p) = rtx.attachment(id)? else {
        return Ok(None);
    };
    let Some(c) = rtx.attachment(&format!("{CONTENT_PREFIX}{}", p.sha256))? else {
        return Ok(None);
    };
    // The type is the content's, sniffed at HQ; the name the site's, cleaned for that type.
    Ok(Some(AttachmentRow { name: p.name, ..c }))
}
