//! The purge pass, restore, and the per-scope overrides, all through the log's single writer in
//! batches of `retention.batch` entries with a pause between them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::policy::{self, RetentionConfig, SITE_SCOPE, ScopeRow};
use crate::log::{AppendError, Author, Log, NewEntry, SubmitError, Tx};
use crate::store::{PurgeOutcome, ReadTx, StoreError};

/// The stream of retention's own entries (kept forever as admin entries).
pub const STREAM: &str = "admin/retention";

/// The highest seq that may be purged (HQ's acknowledged cursor on an edge), `None`: no bound.
pub type Floor = Arc<dyn Fn() -> Option<u64> + Send + Sync>;

/// What a batch did to the seqs handed to a [`Hook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Before a batch's payloads go, with the seqs that will go in the same transaction (each
    /// exists and is not purged yet): a hook may still read what the purge removes.
    Purging,
    Purged,
    Restored,
}

/// Runs inside the write transaction of each purge or restore batch.
pub type Hook = Arc<dyn Fn(&mut Tx<'_>, Change, &[u64]) -> Result<(), AppendError> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error("a retention scope row does not decode: {0}")]
    Row(#[from] serde_json::Error),
}

/// What one pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassReport {
    /// Seqs whose payload was purged, ascending.
    pub purged: Vec<u64>,
    /// Kept payloads removed for good after their grace period.
    pub forgotten: u64,
    pub batches: u64,
    /// The highest seq the pass could consider (HQ's cursor under replication).
    pub floor: u64,
    /// Records read to find what is due. The scan stops at the first entry younger than the
    /// shortest keep in force, and does not run at all when everything is kept forever or held.
    pub scanned: u64,
}

pub struct Retention {
    log: Log,
    config: RetentionConfig,
    floor: Floor,
    hooks: Vec<Hook>,
    journal: Journal,
}

/// Where retention's own entries (`retention.purged|restored|scope`) go.
#[derive(Clone)]
enum Journal {
    /// Into the log it purges, in the same commit.
    Same,
    /// Into HQ's own log, naming the site, after the replica's commit: a replica's chain is the
    /// site's and takes no entry of HQ's.
    Hq { log: Log, site: String },
}

impl Journal {
    /// Appends `body` (plus the site, at HQ) as `kind` to HQ's log; nothing for [`Journal::Same`],
    /// whose entry went into the batch's own commit.
    async fn after(
        &self,
        kind: &'static str,
        by: &Author,
        mut body: serde_json::Value,
    ) -> Result<(), RetentionError> {
        let Self::Hq { log, site } = self else {
            return Ok(());
        };
        body["site"] = serde_json::Value::String(site.clone());
        let entry = NewEntry::json(kind, STREAM, by, &body).map_err(SubmitError::from)?;
        log.submit(move |tx| tx.append(entry.clone())).await?;
        Ok(())
    }
}

fn purged_body(done: &[u64], grace_days: u32) -> serde_json::Value {
    serde_json::json!({"ranges": ranges(done), "count": done.len(), "grace_days": grace_days})
}

fn restored_body(done: &[u64]) -> serde_json::Value {
    serde_json::json!({"ranges": ranges(done), "count": done.len()})
}

/// Runs of consecutive seqs, `[first, last]`.
pub fn ranges(seqs: &[u64]) -> Vec<[u64; 2]> {
    let mut out: Vec<[u64; 2]> = Vec::new();
    for &s in seqs {
        match out.last_mut() {
            Some(r) if r[1] + 1 == s => r[1] = s,
            _ => out.push([s, s]),
        }
    }
    out
}

impl Retention {
    pub fn new(log: Log, config: RetentionConfig, floor: Floor) -> Self {
        Self {
            log,
            config,
            floor,
            hooks: Vec::new(),
            journal: Journal::Same,
        }
    }

    /// Retention over HQ's replica of `site`: the site's bounds are the replica's own scope
    /// rows (set at HQ), `config` (HQ's `[retention]`) gives the defaults, and what it does is
    /// recorded in `hq`, HQ's own log.
    pub fn for_replica(
        replica: Log,
        config: RetentionConfig,
        floor: Floor,
        hq: Log,
        site: &str,
    ) -> Self {
        Self {
            journal: Journal::Hq {
                log: hq,
                site: site.to_string(),
            },
            ..Self::new(replica, config, floor)
        }
    }

    pub fn config(&self) -> &RetentionConfig {
        &self.config
    }

    /// Adds a function run in each purge or restore batch's transaction (see the module doc).
    pub fn add_hook(&mut self, hook: Hook) {
        self.hooks.push(hook);
    }

    fn scope(rtx: &ReadTx, key: &str) -> Result<Option<ScopeRow>, RetentionError> {
        match rtx.retention_scope(key)? {
            Some(json) => Ok(Some(serde_json::from_slice(&json)?)),
            None => Ok(None),
        }
    }

    /// The override and hold of one scope.
    pub fn scope_row(&self, key: &str) -> Result<Option<ScopeRow>, RetentionError> {
        let rtx = self.log.read()?;
        Self::scope(&rtx, key)
    }

    /// Purged entries still restorable: (seq, purged at µs).
    pub fn restorable(&self) -> Result<Vec<(u64, i64)>, RetentionError> {
        Ok(self.log.read()?.purged_restorable(0, usize::MAX)?)
    }

    /// Every override and hold, by scope.
    pub fn scopes(&self) -> Result<Vec<(String, ScopeRow)>, RetentionError> {
        let rtx = self.log.read()?;
        rtx.retention_scopes()?
            .into_iter()
            .map(|(k, j)| Ok((k, serde_json::from_slice(&j)?)))
            .collect()
    }

    /// Sets (`None`: removes) the override of `scope` (`site` or `stream:<name>`), logged as a
    /// `retention.scope` entry by `by`.
    pub async fn set_scope(
        &self,
        scope: &str,
        row: Option<ScopeRow>,
        by: &Author,
    ) -> Result<u64, RetentionError> {
        let json = row.map(|r| serde_json::to_vec(&r)).transpose()?;
        let body = serde_json::json!({"scope": scope, "row": row});
        let entry =
            NewEntry::json("retention.scope", STREAM, by, &body).map_err(SubmitError::from)?;
        let same = matches!(self.journal, Journal::Same);
        let scope = scope.to_string();
        let seq = self
            .log
            .submit(move |tx| {
                tx.views().put_retention_scope(&scope, json.as_deref())?;
                if same {
                    tx.append(entry.clone())
                } else {
                    Ok(0)
                }
            })
            .await?;
        self.journal.after("retention.scope", by, body).await?;
        Ok(seq)
    }

    /// Sets how long the site keeps one class (`inherit`: back to the config's), leaving the
    /// site's other keeps and its hold as they are.
    pub async fn set_class_keep(
        &self,
        class: policy::Class,
        keep: policy::Keep,
        by: &Author,
    ) -> Result<u64, RetentionError> {
        let mut row = self.scope_row(SITE_SCOPE)?.unwrap_or_default();
        row.classes.set(class, keep);
        let stored = (row != ScopeRow::default()).then_some(row);
        self.set_scope(SITE_SCOPE, stored, by).await
    }

    /// One pass: forgets kept payloads past their grace period, then purges every due payload
    /// up to the floor, a batch at a time. With `now`, purged payloads are not kept for grace.
    pub async fn pass(&self, now: bool, by: &Author) -> Result<PassReport, RetentionError> {
        let mut report = PassReport::default();
        let batch = self.config.batch;
        let pause = Duration::from_millis(self.config.pause_ms);
        let grace_us = i64::from(self.config.grace_days) * 86_400_000_000;
        loop {
            let before = self.log.now_us().saturating_sub(grace_us);
            let gone = self
                .log
                .submit(move |tx| Ok(tx.views().forget_purged(before, batch)?))
                .await?;
            report.forgotten += gone.len() as u64;
            if gone.len() < batch {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        let floor = {
            let rtx = self.log.read()?;
            let head = self.log.head(&rtx)?;
            (self.floor)().map_or(head, |f| f.min(head))
        };
        report.floor = floor;
        let Some(shortest) = self.shortest_keep()? else {
            return Ok(report);
        };
        let cutoff = self.log.now_us().saturating_sub(shortest);
        let mut next = 1;
        while next <= floor {
            let (due, scanned_to, done) = self.due(next, floor, cutoff)?;
            report.scanned += scanned_to + 1 - next;
            next = scanned_to + 1;
            if done {
                next = floor + 1;
            }
            if due.is_empty() {
                continue;
            }
            let purged = self.purge_batch(due, now || grace_us == 0, by).await?;
            report.batches += 1;
            report.purged.extend(purged);
            tokio::time::sleep(pause).await;
        }
        Ok(report)
    }

    /// The shortest keep (µs) any class or override has in force; `None` when nothing can be
    /// due (everything forever, or the site held).
    fn shortest_keep(&self) -> Result<Option<i64>, RetentionError> {
        let c = &self.config;
        let rtx = self.log.read()?;
        let site = Self::scope(&rtx, SITE_SCOPE)?.unwrap_or_default();
        if c.legal_hold || site.hold {
            return Ok(None);
        }
        let default = site
            .keep
            .filter(|k| *k != policy::Keep::Inherit)
            .unwrap_or(c.default);
        let resolve = |k: policy::Keep| match k {
            policy::Keep::Inherit => default.micros(),
            k => k.micros(),
        };
        let mut keeps: Vec<Option<i64>> = policy::Class::ALL
            .into_iter()
            .map(|class| resolve(c.class_for(&site, class)))
            .collect();
        for (key, json) in rtx.retention_scopes()? {
            let row: ScopeRow = serde_json::from_slice(&json)?;
            if key != SITE_SCOPE
                && let Some(k) = row.keep
            {
                keeps.push(resolve(k));
            }
        }
        Ok(keeps.into_iter().flatten().min())
    }

    /// Up to one batch of due seqs from `from` (at most `floor`), the last seq looked at, and
    /// whether the scan reached an entry younger than `cutoff` (nothing after it can be due).
    fn due(
        &self,
        from: u64,
        floor: u64,
        cutoff: i64,
    ) -> Result<(Vec<u64>, u64, bool), RetentionError> {
        const SCAN: u64 = 5_000;
        let rtx = self.log.read()?;
        let now = self.log.now_us();
        let site = Self::scope(&rtx, SITE_SCOPE)?.unwrap_or_default();
        let mut rows: HashMap<String, Option<ScopeRow>> = HashMap::new();
        let mut due = Vec::new();
        let last = floor.min(from.saturating_add(SCAN - 1));
        for seq in from..=last {
            let Some(meta) = rtx.log_meta(seq)? else {
                continue;
            };
            if meta.ts > cutoff {
                return Ok((due, seq, true));
            }
            if meta.purged {
                continue;
            }
            let row = match rows.get(&meta.stream) {
                Some(r) => *r,
                None => {
                    let r = Self::scope(&rtx, &policy::stream_scope(&meta.stream))?;
                    rows.insert(meta.stream.clone(), r);
                    r
                }
            };
            let keep = policy::keep_us(&self.config, &site, row.as_ref(), &meta.kind, &meta.stream);
            if keep.is_some_and(|k| meta.ts <= now.saturating_sub(k)) {
                due.push(seq);
                if due.len() >= self.config.batch {
                    return Ok((due, seq, false));
                }
            }
        }
        Ok((due, last, false))
    }

    /// The scan of [`Retention::pass`] over `from..=to`, for the unit tests.
    #[cfg(test)]
    pub(super) fn scan_for_test(
        &self,
        from: u64,
        to: u64,
    ) -> Result<(Vec<u64>, u64, bool), RetentionError> {
        self.due(from, to, i64::MAX)
    }

    /// One purge batch with the grace period, for the unit tests.
    #[cfg(test)]
    pub(super) async fn purge_for_test(
        &self,
        seqs: Vec<u64>,
        by: &Author,
    ) -> Result<Vec<u64>, RetentionError> {
        self.purge_batch(seqs, false, by).await
    }

    async fn purge_batch(
        &self,
        seqs: Vec<u64>,
        at_once: bool,
        by: &Author,
    ) -> Result<Vec<u64>, RetentionError> {
        let hooks = self.hooks.clone();
        let job_by = by.clone();
        let grace_days = if at_once { 0 } else { self.config.grace_days };
        let same = matches!(self.journal, Journal::Same);
        let config = self.config.clone();
        let done = self
            .log
            .submit(move |tx| {
                let now = tx.now_us();
                let mut done = Vec::with_capacity(seqs.len());
                // The scan ran on a snapshot: a hold or a longer keep set since then wins, so
                // the policy is checked again in the transaction that purges.
                let scope = |tx: &mut Tx<'_>, key: &str| {
                    tx.views()
                        .retention_scope(key)?
                        .map(|json| serde_json::from_slice::<ScopeRow>(&json))
                        .transpose()
                        .map_err(AppendError::from)
                };
                let site = scope(tx, SITE_SCOPE)?.unwrap_or_default();
                let mut due = Vec::with_capacity(seqs.len());
                for &seq in &seqs {
                    let Some(meta) = tx.views().log_meta(seq)? else {
                        continue;
                    };
                    if meta.purged {
                        continue;
                    }
                    let row = scope(tx, &policy::stream_scope(&meta.stream))?;
                    let keep =
                        policy::keep_us(&config, &site, row.as_ref(), &meta.kind, &meta.stream);
                    if keep.is_none_or(|k| meta.ts > now.saturating_sub(k)) {
                        continue;
                    }
                    due.push(seq);
                }
                if due.is_empty() {
                    return Ok(done);
                }
                for h in &hooks {
                    h(tx, Change::Purging, &due)?;
                }
                for &seq in &due {
                    if tx.views().purge_payload(seq, now, !at_once)? == PurgeOutcome::Purged {
                        done.push(seq);
                    }
                }
                if done.is_empty() {
                    return Ok(done);
                }
                for h in &hooks {
                    h(tx, Change::Purged, &done)?;
                }
                if same {
                    let body = purged_body(&done, grace_days);
                    tx.append(NewEntry::json("retention.purged", STREAM, &job_by, &body)?)?;
                }
                Ok(done)
            })
            .await?;
        if !done.is_empty() {
            let body = purged_body(&done, grace_days);
            self.journal.after("retention.purged", by, body).await?;
        }
        Ok(done)
    }

    /// Puts back the payloads of purged entries in `from..=to` still in their grace period.
    pub async fn restore(
        &self,
        from: u64,
        to: u64,
        by: &Author,
    ) -> Result<Vec<u64>, RetentionError> {
        let mut restored = Vec::new();
        let mut next = from;
        loop {
            let seqs: Vec<u64> = {
                let rtx = self.log.read()?;
                rtx.purged_restorable(next, self.config.batch)?
                    .into_iter()
                    .map(|(s, _)| s)
                    .filter(|s| *s <= to)
                    .collect()
            };
            let Some(&last) = seqs.last() else {
                return Ok(restored);
            };
            next = last + 1;
            let hooks = self.hooks.clone();
            let job_by = by.clone();
            let same = matches!(self.journal, Journal::Same);
            let done = self
                .log
                .submit(move |tx| {
                    let mut done = Vec::with_capacity(seqs.len());
                    for &seq in &seqs {
                        if tx.views().restore_payload(seq)? {
                            done.push(seq);
                        }
                    }
                    for h in &hooks {
                        h(tx, Change::Restored, &done)?;
                    }
                    if same {
                        let body = restored_body(&done);
                        tx.append(NewEntry::json(
                            "retention.restored",
                            STREAM,
                            &job_by,
                            &body,
                        )?)?;
                    }
                    Ok(done)
                })
                .await?;
            if !done.is_empty() {
                let body = restored_body(&done);
                self.journal.after("retention.restored", by, body).await?;
            }
            restored.extend(done);
            tokio::time::sleep(Duration::from_millis(self.config.pause_ms)).await;
        }
    }

    /// The background task: a pass every `interval_secs` until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let every = Duration::from_secs(self.config.interval_secs);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let pass = tokio::select! {
                () = stop.cancelled() => return,
                r = self.pass(false, &Author::System) => r,
            };
            match pass {
                Ok(r) if !r.purged.is_empty() || r.forgotten > 0 => {
                    tracing::info!(
                        purged = r.purged.len(),
                        forgotten = r.forgotten,
                        batches = r.batches,
                        "retention pass"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "retention pass failed; retried at the next interval")
                }
            }
        }
    }
}
