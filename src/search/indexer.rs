//! Writing the index: entries become token MACs and sealed blocks outside the writer, then one
//! sequencer job per batch inserts the blocks and moves the cursor (`meta.search_cursor`) in the same commit.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::log::{Entry, Log, SubmitError};
use crate::store::seal::SEARCH_MAC_LEN;
use crate::store::{LogRecord, StoreError};

use super::postings::{self, AppendPostingsError};
use super::walk::BodyKeys;

/// Most entries one indexing job covers: bounds the time the writer spends on the index per
/// batch (and the memory of one batch).
pub const BATCH: usize = 4_096;
/// How long the background indexer gathers entries before it writes a batch.
pub const LINGER: Duration = Duration::from_secs(1);

/// Why indexing failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Read(#[from] crate::log::read::ReadError),
    #[error(transparent)]
    Follow(#[from] crate::log::FollowError),
    #[error(transparent)]
    Postings(#[from] AppendPostingsError),
    #[error("the indexing thread failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

type Mac = [u8; SEARCH_MAC_LEN];

/// One batch ready for the writer: the seqs `from..=to` it covers, and the MACs of each indexed
/// entry among them.
#[derive(Debug, Default)]
pub struct Prepared {
    from: u64,
    to: u64,
    entries: Vec<(u64, Vec<Mac>)>,
}

/// Whether entries of `kind` are searched (the rest only move the cursor).
pub fn indexed_kind(kind: &str) -> bool {
    matches!(
        kind,
        "chat.message" | "chat.edited" | "event" | crate::incidents::KIND_ANSWERED
    ) || kind.starts_with("alarm.")
}

/// Turns the entries of one batch into the MACs of their searchable text. Its buffers and the
/// MACs it has made serve the whole batch: a batch repeats most words (sources, severities,
/// equipment), and one HMAC costs more than walking a whole body.
struct EntryMacs<'l> {
    log: &'l Log,
    keys: BodyKeys,
    known: HashMap<Box<[u8]>, Mac>,
}

impl<'l> EntryMacs<'l> {
    fn new(log: &'l Log) -> Self {
        Self {
            log,
            keys: BodyKeys::default(),
            known: HashMap::new(),
        }
    }

    /// The MACs of one entry's searchable text, one per distinct index key in key order (none
    /// for other kinds or a body that is not JSON).
    fn of(&mut self, e: &Entry) -> Vec<Mac> {
        if !indexed_kind(&e.kind) {
            return Vec::new();
        }
        self.keys.read(&e.body);
        let (log, known) = (self.log, &mut self.known);
        self.keys
            .iter()
            .map(|k| match known.get(k) {
                Some(mac) => *mac,
                None => *known.entry(k.into()).or_insert_with(|| log.search_mac(k)),
            })
            .collect()
    }
}

impl Prepared {
    /// A batch over `entries`, which must be consecutive seqs.
    pub fn new<'a>(log: &Log, entries: impl IntoIterator<Item = &'a Entry>) -> Self {
        let mut p = Prepared::default();
        let mut entry_macs = EntryMacs::new(log);
        for e in entries {
            if p.from == 0 {
                p.from = e.seq;
            }
            p.to = e.seq;
            let macs = entry_macs.of(e);
            if !macs.is_empty() {
                p.entries.push((e.seq, macs));
            }
        }
        p
    }

    /// A batch that covers `from..=to` (from a raw scan that skipped unindexed kinds).
    fn covering(from: u64, to: u64, entries: Vec<(u64, Vec<Mac>)>) -> Self {
        Self { from, to, entries }
    }
}

/// A batch sealed against the index as it stood at cursor `base`: the blocks to write (each
/// token's newest block rewritten with the new postings, then new blocks) and the cursor after.
struct SealedBatch {
    base: u64,
    to: u64,
    blocks: Vec<(Mac, u64, Vec<u8>)>,
}

/// Reads the newest block of each token in the batch from a snapshot and seals the new blocks,
/// all off the writer; `Err(cursor)` when the batch does not continue the index.
fn seal_batch(log: &Log, batch: &Prepared) -> Result<Result<SealedBatch, u64>, IndexError> {
    let rtx = log.read()?;
    let base = rtx.search_cursor()?;
    if base >= batch.to || base + 1 < batch.from {
        return Ok(Err(base));
    }
    let mut lists: BTreeMap<&Mac, Vec<u64>> = BTreeMap::new();
    for (seq, macs) in batch.entries.iter().filter(|(s, _)| *s > base) {
        for m in macs {
            lists.entry(m).or_default().push(*seq);
        }
    }
    let mut blocks = Vec::new();
    for (mac, seqs) in lists {
        let last = rtx.search_last_block(mac)?;
        for (first, sealed) in postings::plan(log, mac, last, &seqs)? {
            blocks.push((*mac, first, sealed));
        }
    }
    Ok(Ok(SealedBatch {
        base,
        to: batch.to,
        blocks,
    }))
}

/// Writes a prepared batch if it continues the index. The blocks are sealed off the writer
/// against the cursor as it was; the job writes them only if the cursor has not moved since
/// (nothing else writes postings), so the writer only inserts rows. Returns the cursor after
/// the commit: `batch.to`, or where the index stands when the batch did not apply.
pub async fn commit(log: &Log, batch: Prepared) -> Result<u64, IndexError> {
    if batch.from == 0 {
        return Ok(0);
    }
    let sealing = log.clone();
    let sealed = tokio::task::spawn_blocking(move || seal_batch(&sealing, &batch)).await??;
    let sealed = match sealed {
        Ok(s) => Arc::new(s),
        Err(cursor) => return Ok(cursor),
    };
    Ok(log
        .submit(move |tx| {
            let cursor = tx.views().search_cursor()?;
            if cursor != sealed.base {
                return Ok(cursor);
            }
            tx.views().put_search_blocks(
                sealed
                    .blocks
                    .iter()
                    .map(|(mac, first, block)| (mac.as_slice(), *first, block.as_slice())),
            )?;
            tx.views().set_search_cursor(sealed.to)?;
            Ok(sealed.to)
        })
        .await?)
}

/// Indexes what lies between the cursor and the head, in batches, if that is at most `max`
/// entries (more is left to the background task). Returns the cursor afterwards.
pub async fn catch_up(log: &Log, max: u64) -> Result<u64, IndexError> {
    loop {
        let rtx = log.read()?;
        let cursor = rtx.search_cursor()?;
        let head = log.head(&rtx)?;
        if cursor >= head || head - cursor > max {
            return Ok(cursor);
        }
        let to = head.min(cursor + BATCH as u64);
        let mut entries = Vec::new();
        let mut entry_macs = EntryMacs::new(log);
        let mut failed = None;
        rtx.scan_log(cursor + 1, |seq, raw| {
            if seq > to {
                return false;
            }
            match LogRecord::decode(raw) {
                Ok(r) if !indexed_kind(&r.kind) => {}
                _ => match log.decode(seq, raw) {
                    Ok(e) => {
                        let macs = entry_macs.of(&e);
                        if !macs.is_empty() {
                            entries.push((seq, macs));
                        }
                    }
                    // A payload retention purged has nothing left to index.
                    Err(e) if e.is_purged() => {}
                    Err(e) => {
                        failed = Some(e);
                        return false;
                    }
                },
            }
            true
        })?;
        drop(rtx);
        if let Some(e) = failed {
            return Err(e.into());
        }
        commit(log, Prepared::covering(cursor + 1, to, entries)).await?;
    }
}

/// Empties the index and rebuilds it from the log up to the head as it is now. Writes go on
/// meanwhile; the background indexer joins in from the cursor.
pub async fn reindex(log: &Log) -> Result<u64, IndexError> {
    log.submit(|tx| {
        tx.views().clear_search()?;
        Ok(())
    })
    .await?;
    let mut cursor = 0;
    loop {
        let next = catch_up(log, u64::MAX).await?;
        if next == cursor {
            return Ok(next);
        }
        cursor = next;
    }
}

/// The background indexer: follows the log from the cursor and indexes every entry, a batch
/// per job. A failure is logged and retried from the cursor after a pause.
pub async fn run(log: Log, stop: CancellationToken) {
    loop {
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = follow(&log, &stop) => r,
        };
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "search indexing failed; retrying from the cursor");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

async fn follow(log: &Log, stop: &CancellationToken) -> Result<(), IndexError> {
    let cursor = log.read()?.search_cursor()?;
    let mut follower = log.follow(cursor)?;
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            e = follower.next() => e,
        };
        let first = match first {
            Ok(e) => e,
            Err(crate::log::FollowError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        // Gather for up to LINGER (or BATCH entries): one indexing job per many sends, so the
        // index costs the writer few extra commits. A search catches up on the spot meanwhile.
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            let next = match follower.next().now_or_never() {
                Some(n) => n,
                None => match tokio::time::timeout_at(until, follower.next()).await {
                    Ok(n) => n,
                    Err(_) => break,
                },
            };
            match next {
                Ok(e) => batch.push(e),
                Err(crate::log::FollowError::Closed) => break,
                Err(e) => return Err(e.into()),
            }
        }
        let to = batch.last().map_or(0, |e| e.seq);
        let prepared = Prepared::new(log, batch.iter().map(|e| e.entry()));
        let cursor = commit(log, prepared).await?;
        if cursor != to {
            // Cleared (a reindex) or moved past by a catch-up: follow from the cursor.
            follower = log.follow(cursor)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{Author, NewEntry};
    use crate::search::walk::tests::reference;

    #[tokio::test]
    async fn entry_macs_are_the_macs_of_the_reference_keys() {
        let dir = tempfile::tempdir().unwrap();
        let log = crate::log::tests::open(dir.path(), "north");
        let bodies: [(&str, &[u8]); 9] = [
            (
                "chat.message",
                br#"{"type":"message","conv":"c1","key":"k1","text":"Pump P-101: pressure HIGH"}"#,
            ),
            (
                "chat.edited",
                br#"{"type":"edited","target":1,"text":"Pump P-101: pressure normal again"}"#,
            ),
            (
                "event",
                br#"{"by":"device:plc-3","source":"plc-3","type":"plc.trip","severity":"warning","message":"\u00dcberdruck an Pumpe 7","attributes":{"bar":7.5,"line":"L2"}}"#,
            ),
            (
                crate::incidents::KIND_ANSWERED,
                br#"{"incident":"i1","answers":{"cause":"worn seal","steps":["replaced gasket"]}}"#,
            ),
            (
                "alarm.raise",
                br#"{"text":"Kiln temperature high","by":"system"}"#,
            ),
            ("chat.message", b"not json at all"),
            ("chat.message", br#"{"text":"same words","text":"pressure pump"}"#),
            ("test.note", br#"{"text":"never indexed"}"#),
            ("event", br#"{"message":"pressure at the pump again"}"#),
        ];
        for (kind, body) in bodies {
            let e = NewEntry {
                kind: kind.into(),
                stream: "test/search".into(),
                author: Author::System,
                body: body.to_vec(),
            };
            log.submit(move |tx| tx.append(e.clone())).await.unwrap();
        }
        let rtx = log.read().unwrap();
        let entries: Vec<Entry> = (1..=bodies.len() as u64)
            .map(|seq| log.entry(&rtx, seq).unwrap().unwrap())
            .collect();
        // One EntryMacs for all, as in a batch: words repeat across entries, answered from
        // what it has made before.
        let mut macs = EntryMacs::new(&log);
        let mut indexed = Vec::new();
        for e in &entries {
            let want: Vec<Mac> = if indexed_kind(&e.kind) {
                reference(&e.body)
                    .iter()
                    .map(|k| log.search_mac(k))
                    .collect()
            } else {
                Vec::new()
            };
            assert_eq!(
                macs.of(e),
                want,
                "{} {:?}",
                e.kind,
                String::from_utf8_lossy(&e.body)
            );
            if !want.is_empty() {
                indexed.push(e.seq);
            }
        }
        assert_eq!(indexed, [1, 2, 3, 4, 5, 7, 9]);
        let batch = Prepared::new(&log, &entries);
        assert_eq!((batch.from, batch.to), (1, bodies.len() as u64));
        let seqs: Vec<u64> = batch.entries.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, indexed);
        log.close().await;
    }
}
