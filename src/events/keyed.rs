//! Publishing with idempotency keys: a key this author had accepted within the window answers
//! with the first seq (`duplicate`) instead of storing again. Keys are checked and written inside
//! the same writer job and commit as the events, so a retry racing the original cannot store twice.
//! An event with a `condition` raises or clears its alarm in that commit too.

use std::collections::HashMap;

use super::{EventBody, EventIn, KIND_EVENT, validate};
use crate::config::EventsConfig;
use crate::error::Rejection;
use crate::log::{Author, Log, NewEntry, SubmitError};
use crate::store::IngestKeyRow;

/// Longest client-given idempotency key, in bytes.
pub const MAX_KEY: usize = 256;

/// An idempotency key, scoped by the adapter that derived it (`native`, `ntfy`, `alertmanager`,
/// `grafana`) so the same text from two adapters never collides.
#[derive(Debug, Clone)]
pub struct IdemKey {
    scope: &'static str,
    key: String,
    /// A client-chosen key reused with another event is refused (`idempotency_key_reused`);
    /// a key derived from the content (webhooks) is a duplicate whatever else changed.
    strict: bool,
}

impl IdemKey {
    /// A key the client chose (header or field): 1-256 bytes of printable ASCII.
    pub fn client(scope: &'static str, key: &str) -> Result<Self, Rejection> {
        let ok = !key.is_empty()
            && key.len() <= MAX_KEY
            && key.chars().all(|c| c.is_ascii_graphic() || c == ' ');
        if !ok {
            return Err(Rejection::invalid(
                "invalid_idempotency_key",
                "an idempotency key is 1-256 printable ASCII characters",
            ));
        }
        Ok(Self {
            scope,
            key: key.to_string(),
            strict: true,
        })
    }

    /// A key derived from what the sender says about an alert (fingerprint, start, status).
    pub fn derived(scope: &'static str, key: String) -> Self {
        Self {
            scope,
            key,
            strict: false,
        }
    }

    fn hash(&self) -> [u8; 32] {
        let mut input = Vec::with_capacity(self.scope.len() + 1 + self.key.len());
        input.extend_from_slice(self.scope.as_bytes());
        input.push(0);
        input.extend_from_slice(self.key.as_bytes());
        sha256(&input)
    }
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b).as_ref());
    out
}

/// One event to publish and its key, if any.
#[derive(Debug, Clone)]
pub struct Keyed {
    pub event: EventIn,
    pub key: Option<IdemKey>,
}

/// What became of one event: stored now, or already stored under its key as `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub seq: u64,
    pub duplicate: bool,
}

/// What the job decided for one event before writing anything.
#[derive(Debug, Clone, Copy)]
enum Plan {
    New,
    Stored(u64),
    /// The same key as an earlier event of this batch.
    SameAs(usize),
}

struct Prepared {
    source: String,
    event_type: String,
    severity_rank: u8,
    /// The alarm the event raises or clears (an event with a `condition`), in the same commit.
    alarm: Option<crate::alarms::Signal>,
    entry: NewEntry,
    key: Option<([u8; 32], bool)>,
    /// SHA-256 of the event as sent, for keyed events (zero without a key: never read).
    payload: [u8; 32],
}

fn reused() -> Rejection {
    Rejection::conflict(
        "idempotency_key_reused",
        "this idempotency key was already used for a different event",
    )
}

/// Validates every event, then, in one commit, appends those whose key is new (or that have none)
/// to `stream` and records their keys for `events.idempotency_window_secs`. All or nothing: a
/// refused event or a reused client key refuses the whole batch. Returns one outcome per event.
pub async fn publish_keyed(
    log: &Log,
    limits: &EventsConfig,
    by: &Author,
    stream: &str,
    items: Vec<Keyed>,
) -> Result<Vec<Accepted>, SubmitError> {
    if items.is_empty() {
        return Err(SubmitError::Rejected(Rejection::invalid(
            "empty_batch",
            "no events given",
        )));
    }
    if items.len() > limits.max_batch {
        return Err(SubmitError::Rejected(Rejection::invalid(
            "batch_too_large",
            format!("at most {} events per batch", limits.max_batch),
        )));
    }
    let batch = items.len() > 1;
    let mut prepared = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        validate(&item.event, limits).map_err(|mut r| {
            if batch {
                r.message = format!("events[{i}]: {}", r.message);
            }
            SubmitError::Rejected(r)
        })?;
        let alarm = crate::alarms::signal_of_event(&item.event);
        if let Some(signal) = &alarm {
            crate::alarms::validate(signal).map_err(|mut r| {
                if batch {
                    r.message = format!("events[{i}]: {}", r.message);
                }
                SubmitError::Rejected(r)
            })?;
        }
        // Only a keyed event compares its payload with an earlier one: without a key, skip the
        // serialization and hash.
        let payload = match item.key {
            Some(_) => sha256(&serde_json::to_vec(&item.event)?),
            None => [0u8; 32],
        };
        let key = item.key.as_ref().map(|k| (k.hash(), k.strict));
        let body = EventBody {
            by: by.to_string(),
            event: item.event,
        };
        let entry = NewEntry::json(KIND_EVENT, stream, by, &body)?;
        prepared.push(Prepared {
            severity_rank: body.event.severity.rank(),
            alarm,
            source: body.event.source,
            event_type: body.event.event_type,
            entry,
            key,
            payload,
        });
    }
    let owner = by.to_string();
    let author = by.clone();
    let window_us = i64::try_from(limits.idempotency_window_secs)
        .unwrap_or(i64::MAX / 1_000_000)
        .saturating_mul(1_000_000);
    log.submit(move |tx| {
        let now = tx.now_us();
        // Decide everything first: this job may run again, and refuses before it writes.
        let mut plans = Vec::with_capacity(prepared.len());
        let mut first_of: HashMap<[u8; 32], usize> = HashMap::new();
        for (i, p) in prepared.iter().enumerate() {
            let Some((hash, strict)) = p.key else {
                plans.push(Plan::New);
                continue;
            };
            if let Some(&j) = first_of.get(&hash) {
                if strict && prepared[j].payload != p.payload {
                    return Err(reused().into());
                }
                plans.push(Plan::SameAs(j));
                continue;
            }
            first_of.insert(hash, i);
            match tx.views().ingest_key(&owner, &hash)? {
                Some(row) if row.expires_at_us > now => {
                    if strict && row.payload != p.payload {
                        return Err(reused().into());
                    }
                    plans.push(Plan::Stored(row.seq));
                }
                _ => plans.push(Plan::New),
            }
        }
        let mut out: Vec<Accepted> = Vec::with_capacity(prepared.len());
        for (p, plan) in prepared.iter().zip(&plans) {
            let accepted = match *plan {
                Plan::Stored(seq) => Accepted {
                    seq,
                    duplicate: true,
                },
                Plan::SameAs(j) => Accepted {
                    seq: out[j].seq,
                    duplicate: true,
                },
                Plan::New => {
                    let seq = tx.append(p.entry.clone())?;
                    let ts = tx.now_us();
                    tx.views()
                        .put_event_index(seq, ts, &p.source, &p.event_type)?;
                    tx.views().put_event_severity(seq, p.severity_rank)?;
                    if let Some((hash, _)) = &p.key {
                        let row = IngestKeyRow {
                            seq,
                            expires_at_us: now.saturating_add(window_us),
                            payload: p.payload,
                        };
                        tx.views().put_ingest_key(&owner, hash, &row)?;
                    }
                    if let Some(signal) = &p.alarm {
                        crate::alarms::apply_in_tx(tx, &author, signal)?;
                    }
                    Accepted {
                        seq,
                        duplicate: false,
                    }
                }
            };
            out.push(accepted);
        }
        Ok(out)
    })
    .await
}

/// Expired keys one pruning job removes at most, so the writer is never held long.
pub const PRUNE_BATCH: usize = 1_000;

/// Removes idempotency keys whose window has passed, in commits of at most [`PRUNE_BATCH`];
/// returns how many were removed.
pub async fn prune_keys(log: &Log) -> Result<usize, SubmitError> {
    let mut total = 0;
    loop {
        let n = log
            .submit(|tx| {
                let now = tx.now_us();
                Ok(tx.views().prune_ingest_keys(now, PRUNE_BATCH)?)
            })
            .await?;
        total += n;
        if n < PRUNE_BATCH {
            return Ok(total);
        }
    }
}

/// How often the pruner looks for expired keys.
const PRUNE_EVERY_US: i64 = 60 * 1_000_000;

/// The background pruner (a supervised task): every minute of the log's clock, removes expired
/// keys in bounded commits, until `stop`.
pub async fn prune_loop(log: Log, stop: tokio_util::sync::CancellationToken) {
    let clock = log.clock().clone();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = clock.sleep_until(clock.now_us().saturating_add(PRUNE_EVERY_US)) => {}
        }
        match prune_keys(&log).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "expired idempotency keys pruned"),
            Err(SubmitError::ShuttingDown) => return,
            Err(e) => tracing::warn!(error = %e, "pruning idempotency keys failed; will retry"),
        }
    }
}
