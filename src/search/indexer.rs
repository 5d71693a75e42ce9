//! Writing the index: entries become token MACs outside the writer, then one sequencer job per
//! batch appends the postings and moves the cursor (`meta.search_cursor`) in the same commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::log::{AppendError, Entry, Log, SubmitError};
use crate::store::seal::SEARCH_MAC_LEN;
use crate::store::{LogRecord, StoreError};

use super::postings::{self, AppendPostingsError};
use super::tokenize;

/// Most entries one indexing job covers: bounds the time the writer spends on the index per
/// batch (and the memory of one batch).
pub const BATCH: usize = 512;

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
    matches!(kind, "chat.message" | "chat.edited" | "event") || kind.starts_with("alarm.")
}

/// The MACs of one entry's searchable text (none for other kinds or a body that is not JSON).
pub fn entry_macs(log: &Log, e: &Entry) -> Vec<Mac> {
    if !indexed_kind(&e.kind) {
        return Vec::new();
    }
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&e.body) else {
        return Vec::new();
    };
    tokenize::keys(tokenize::body_strings(&body))
        .iter()
        .map(|k| log.search_mac(k))
        .collect()
}

impl Prepared {
    /// A batch over `entries`, which must be consecutive seqs.
    pub fn new<'a>(log: &Log, entries: impl IntoIterator<Item = &'a Entry>) -> Self {
        let mut p = Prepared::default();
        for e in entries {
            if p.from == 0 {
                p.from = e.seq;
            }
            p.to = e.seq;
            let macs = entry_macs(log, e);
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

fn storage(e: AppendPostingsError) -> AppendError {
    match e {
        AppendPostingsError::Store(s) => AppendError::Storage(s),
        AppendPostingsError::Seal(s) => AppendError::Storage(StoreError::Seal(s)),
        AppendPostingsError::Malformed(_) => AppendError::Storage(StoreError::Malformed {
            what: "search posting block",
        }),
    }
}

/// Writes a prepared batch, if it continues the index: the job reads the cursor inside the
/// write, appends only seqs above it, and skips the batch when it would leave a gap (the index
/// was cleared or is behind). Returns the cursor after the commit.
pub async fn commit(log: &Log, batch: Prepared) -> Result<u64, SubmitError> {
    if batch.from == 0 {
        return Ok(0);
    }
    let batch = Arc::new(batch);
    log.submit(move |tx| {
        let cursor = tx.views().search_cursor()?;
        if cursor >= batch.to || cursor + 1 < batch.from {
            return Ok(cursor);
        }
        let mut lists: BTreeMap<&Mac, Vec<u64>> = BTreeMap::new();
        for (seq, macs) in batch.entries.iter().filter(|(s, _)| *s > cursor) {
            for m in macs {
                lists.entry(m).or_default().push(*seq);
            }
        }
        for (mac, seqs) in &lists {
            let last = tx.views().search_last_block(mac.as_slice())?;
            let blocks = postings::plan(tx.key(), mac.as_slice(), last, seqs).map_err(storage)?;
            for (first, sealed) in blocks {
                tx.views().put_search_block(mac.as_slice(), first, &sealed)?;
            }
        }
        tx.views().set_search_cursor(batch.to)?;
        Ok(batch.to)
    })
    .await
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
        let mut failed = None;
        rtx.scan_log(cursor + 1, |seq, raw| {
            if seq > to {
                return false;
            }
            match LogRecord::decode(raw) {
                Ok(r) if !indexed_kind(&r.kind) => {}
                _ => match log.decode(seq, raw) {
                    Ok(e) => {
                        let macs = entry_macs(log, &e);
                        if !macs.is_empty() {
                            entries.push((seq, macs));
                        }
                    }
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
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match follower.next().now_or_never() {
                Some(Ok(e)) => batch.push(e),
                Some(Err(e)) => return Err(e.into()),
                None => break,
            }
        }
        let to = batch.last().map_or(0, |e| e.seq);
        let prepared = Prepared::new(log, batch.iter().map(|e| e.as_ref()));
        let cursor = commit(log, prepared).await?;
        if cursor != to {
            // Cleared (a reindex) or moved past by a catch-up: follow from the cursor.
            follower = log.follow(cursor)?;
        }
    }
}
