//! Garbage collection of uploads never posted: a supervised task that removes, by the log's
//! clock and in bounded commits, attachments no message referenced within the TTL.

use tokio_util::sync::CancellationToken;

use crate::log::{Log, SubmitError};

/// Attachments removed per write transaction.
const BATCH: usize = 64;

/// How often the task looks for expired uploads (µs of the log's clock).
const EVERY_US: i64 = 10 * 60 * 1_000_000;

/// Removes the uploads never posted that are older than `ttl_hours`, with their chunks, freeing
/// their uploaders' quota; `BATCH` per commit. Returns how many went.
pub async fn collect_unposted(log: &Log, ttl_hours: u32) -> Result<usize, SubmitError> {
    let ttl_us = i64::from(ttl_hours) * 3_600_000_000;
    let mut total = 0;
    loop {
        let n = log
            .submit(move |tx| {
                let before = tx.now_us().saturating_sub(ttl_us);
                let ids = tx.views().unposted_before(before, BATCH)?;
                for id in &ids {
                    tx.views().remove_attachment(id)?;
                }
                Ok(ids.len())
            })
            .await?;
        total += n;
        if n < BATCH {
            return Ok(total);
        }
    }
}

/// The `attachment-gc` task: every ten minutes of the log's clock, a collection, until `stop`.
pub async fn run(log: Log, ttl_hours: u32, stop: CancellationToken) {
    let clock = log.clock().clone();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = clock.sleep_until(clock.now_us().saturating_add(EVERY_US)) => {}
        }
        match collect_unposted(&log, ttl_hours).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "unposted attachments collected"),
            Err(SubmitError::ShuttingDown) => return,
            Err(e) => {
                tracing::warn!(error = %e, "collecting unposted attachments failed; will retry")
            }
        }
    }
}
