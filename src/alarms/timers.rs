//! The shelve timer: a background task that ends timed (and capped one-shot) shelves when the
//! log's clock passes them, reading the expiry index, so timers survive restarts.
//!
//! Contract (like the sequencer's): one task per log; it never holds the writer while it waits;
//! each round expires at most [`EXPIRY_BATCH`] alarms in one commit, each one `alarm.expire`
//! entry by `system`; it waits on the injectable clock (`Clock::sleep_until`) for the earliest
//! expiry, wakes early when a committed entry may have changed that, and stops on its token.

use std::collections::BTreeMap;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::log::{Author, Log, SubmitError};
use crate::store::StoreError;

use super::machine::Action;
use super::{Applied, record};

/// Most shelves one commit expires.
pub const EXPIRY_BATCH: usize = 64;

/// How long the timer waits after a failed commit before it tries again (µs of the log's clock).
const RETRY_US: i64 = 1_000_000;

/// Expires every shelve due now, in bounded commits; returns how many alarms came back.
pub async fn expire_due(log: &Log) -> Result<usize, SubmitError> {
    let mut total = 0;
    loop {
        let (n, more) = log
            .submit(|tx| {
                let now = tx.now_us();
                let due = tx.views().alarm_due_expiries(now, EXPIRY_BATCH)?;
                let mut n = 0;
                for &(until, id) in &due {
                    let row = tx.views().alarm(id)?;
                    let key = row
                        .as_ref()
                        .map(|r| (r.source.clone(), r.condition.clone()))
                        .unwrap_or_default();
                    let applied = record(
                        tx,
                        &Author::System,
                        row,
                        &Action::Expire,
                        (&key.0, &key.1),
                        None,
                        &BTreeMap::new(),
                    );
                    match applied {
                        Ok(Applied::Changed(_)) => n += 1,
                        // An index row without a matching shelf (never written so): drop it so
                        // the timer does not spin on it.
                        Ok(Applied::Unchanged(_)) | Err(crate::log::AppendError::Rejected(_)) => {
                            tx.views().remove_alarm_expiry(until, id)?;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok((n, due.len() >= EXPIRY_BATCH))
            })
            .await?;
        total += n;
        if !more {
            return Ok(total);
        }
    }
}

fn next_expiry(log: &Log) -> Result<Option<i64>, StoreError> {
    Ok(log.read()?.alarm_next_expiry()?.map(|(at, _)| at))
}

/// Runs the shelve timer until `stop` is cancelled.
pub async fn run(log: Log, stop: CancellationToken) {
    let mut hub = log.subscribe();
    loop {
        let wake_at = match next_expiry(&log) {
            Ok(Some(at)) if at <= log.now_us() => match expire_due(&log).await {
                Ok(n) => {
                    tracing::debug!(expired = n, "alarm shelves expired");
                    continue;
                }
                Err(SubmitError::ShuttingDown) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "alarm shelve expiry failed; retrying");
                    log.now_us().saturating_add(RETRY_US)
                }
            },
            Ok(Some(at)) => at,
            Ok(None) => i64::MAX,
            Err(e) => {
                tracing::warn!(error = %e, "reading the alarm shelve index failed; retrying");
                log.now_us().saturating_add(RETRY_US)
            }
        };
        let clock = log.clock().clone();
        tokio::select! {
            () = stop.cancelled() => return,
            () = clock.sleep_until(wake_at) => {}
            r = hub.recv() => match r {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
        }
    }
}
