//! Headquarters' side: one replica `Log` per site under `<sites dir>/<site>/plantwire.redb`
//! (opened lazily, a bounded number at once), batches appended verbatim, checkpoints witnessed.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::ReplicationError;
use super::gap::{self, GapSummary, GapView};
use super::wire::{Batch, Shipped};
use super::witness::{self, Witnessed};
use crate::clock::Clock;
use crate::error::Rejection;
use crate::log::checkpoint::Signer;
use crate::log::{Log, LogOptions};
use crate::metrics::Metrics;
use crate::store::DataKey;

/// Where a replica stores HQ's own data key: each replica is sealed under it.
pub type KeySource = Arc<dyn Fn() -> Result<DataKey, ReplicationError> + Send + Sync>;

/// What HQ answers to a batch: the highest seq it has stored for the site (the edge's cursor
/// from now on) and, when the batch's checkpoint was witnessed, HQ's cosignature line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub head: u64,
    /// Hex of the stored head's hash (all zeros for an empty replica).
    pub head_hash: String,
    #[serde(default)]
    pub cosignature: Option<String>,
}

/// One site as HQ sees it (`site list`, `GET /api/v1/sites`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SiteStatus {
    pub site: String,
    /// The highest seq replicated.
    pub seq: u64,
    /// Hex of that entry's hash.
    pub head_hash: String,
    /// The edge's head as its last batch stated it, minus `seq`.
    pub lag_entries: u64,
    /// Seconds between the newest replicated entry and now (0 when nothing is replicated).
    pub lag_seconds: u64,
    /// Seconds since the site's last batch (an idle edge sends an empty one every 30 s); 0
    /// before its first.
    #[serde(default)]
    pub silent_seconds: u64,
    /// The newest checkpoint HQ witnessed for the site.
    pub checkpoint: Option<Witnessed>,
    /// Set when the site presented two different heads for one size: no batch is taken since.
    pub history_rewritten: bool,
    /// Ranges the site dropped before HQ had them, each named by a signed `replication.gap`
    /// record: how many, how many of those did not verify, and the newest.
    #[serde(default)]
    pub gaps: GapSummary,
}

/// The replicas of every enrolled site.
pub struct Replicas {
    root: PathBuf,
    key: KeySource,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    opts: LogOptions,
    max_open: usize,
    witness: Arc<Signer>,
    accept_stubs: bool,
    /// HQ's own log, where a rewritten history raises its system alarm.
    alarms: Option<Log>,
    open: Mutex<HashMap<String, Log>>,
    /// Sites whose replica took a batch since HQ's NATS forwarder last asked, and its wake-up.
    changed: std::sync::Mutex<BTreeSet<String>>,
    changed_notify: tokio::sync::Notify,
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicas")
            .field("root", &self.root)
            .field("max_open", &self.max_open)
            .finish_non_exhaustive()
    }
}

/// How the replicas are opened.
pub struct ReplicasConfig {
    /// `<state_dir>/sites`.
    pub root: PathBuf,
    pub key: KeySource,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// Cache and queue bounds of each replica (its clock step is ignored: a replica never
    /// appends anything of its own).
    pub log: LogOptions,
    /// How many replicas stay open at once; the others are closed and reopened on demand.
    pub max_open: usize,
    /// HQ's Ed25519 key, cosigning checkpoints under HQ's own origin.
    pub witness: Arc<Signer>,
    /// `[replication] accept_stubs`: take legacy hash-only stubs (of chain-v1 entries; never
    /// witnessing a checkpoint over one); when false a batch holding one is refused. Chain-v2
    /// stubs are verified and always taken.
    pub accept_stubs: bool,
    pub alarms: Option<Log>,
}

/// How far past HQ's clock a stub's `ts` may be: nothing else bounds it, and a replica holding
/// a stub from the future would refuse every later entry as going back in time.
pub const STUB_TS_SKEW_US: i64 = 5 * 60 * 1_000_000;

/// A site name as a directory name: the config's rule for sites.
pub fn valid_site(site: &str) -> bool {
    !site.is_empty()
        && site.len() <= 64
        && !site.starts_with('.')
        && site
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

impl Replicas {
    pub fn new(cfg: ReplicasConfig) -> Self {
        Self {
            root: cfg.root,
            key: cfg.key,
            clock: cfg.clock,
            metrics: cfg.metrics,
            opts: LogOptions {
                clock_step_us: i64::MAX,
                ..cfg.log
            },
            max_open: cfg.max_open.max(1),
            witness: cfg.witness,
            accept_stubs: cfg.accept_stubs,
            alarms: cfg.alarms,
            open: Mutex::new(HashMap::new()),
            changed: std::sync::Mutex::new(BTreeSet::new()),
            changed_notify: tokio::sync::Notify::new(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of one site's replica.
    pub fn site_dir(&self, site: &str) -> PathBuf {
        self.root.join(site)
    }

    /// Whether `site` has a replica yet (an enrolled site has one after its first batch).
    pub fn has_replica(&self, site: &str) -> bool {
        self.site_dir(site).join("plantwire.redb").exists()
    }

    /// Creates the site's directory (enrolment, which then opens its replica to pin its key).
    pub fn create_site(&self, site: &str) -> Result<(), ReplicationError> {
        if !valid_site(site) {
            return Err(Rejection::invalid(
                "invalid_site",
                "a site name is 1-64 characters of a-z, 0-9, '-', '_', '.'",
            )
            .into());
        }
        let dir = self.site_dir(site);
        std::fs::create_dir_all(&dir).map_err(|source| ReplicationError::Io { path: dir, source })
    }

    /// Pins `key` as `site`'s checkpoint-signing key (enrolment): from then on HQ verifies the
    /// site's checkpoints with it and refuses a log carrying another key. `None` (an edge older
    /// than the pin re-enrolled) clears an earlier pin.
    pub async fn pin_signing_key(
        &self,
        site: &str,
        key: Option<[u8; 32]>,
    ) -> Result<(), ReplicationError> {
        witness::pin_key(&self.replica(site).await?, key).await
    }

    /// The enrolled sites (directories under the root), sorted.
    pub fn sites(&self) -> Result<Vec<String>, ReplicationError> {
        let rd = match std::fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(ReplicationError::Io {
                    path: self.root.clone(),
                    source,
                });
            }
        };
        let mut out: Vec<String> = rd
            .filter_map(Result::ok)
            .filter(|d| d.path().is_dir())
            .filter_map(|d| d.file_name().into_string().ok())
            .filter(|n| valid_site(n))
            .collect();
        out.sort();
        Ok(out)
    }

    /// The site's replica, opened on first use; at the bound, another open replica is closed.
    pub async fn replica(&self, site: &str) -> Result<Log, ReplicationError> {
        if !valid_site(site) || !self.site_dir(site).is_dir() {
            return Err(Rejection::not_found("unknown_site", "no such site is enrolled").into());
        }
        let mut open = self.open.lock().await;
        if let Some(log) = open.get(site) {
            return Ok(log.clone());
        }
        while open.len() >= self.max_open {
            let Some(victim) = open.keys().next().cloned() else {
                break;
            };
            if let Some(log) = open.remove(&victim) {
                log.close().await;
            }
        }
        let key = (self.key)()?;
        let log = Log::open(
            &self.site_dir(site).join("plantwire.redb"),
            site,
            key,
            self.clock.clone(),
            &self.opts,
            self.metrics.clone(),
        )?;
        open.insert(site.to_string(), log.clone());
        Ok(log)
    }

    /// Closes every open replica (shutdown, revocation).
    pub async fn close_all(&self) {
        let mut open = self.open.lock().await;
        for (_, log) in open.drain() {
            log.close().await;
        }
    }

    /// Takes one batch from `site` (the site its certificate names): the checkpoint first, then
    /// the entries in one commit. A batch that does not start right after the stored head
    /// changes nothing and is answered with the head, so a resend after a lost ack is harmless.
    pub async fn receive(&self, site: &str, batch: Batch) -> Result<Ack, ReplicationError> {
        if batch.site != site {
            return Err(Rejection::invalid("wrong_site", "the batch names another site").into());
        }
        self.check_stubs(&batch)?;
        let replica = self.replica(site).await?;
        witness::check_pinned(&replica, &batch.entries)?;
        if witness::rewritten(&replica)?.is_some() {
            return Err(Rejection::conflict(
                "history_rewritten",
                "this site presented two different heads for one size; no batch is taken",
            )
            .into());
        }
        let checked = match &batch.checkpoint {
            Some(note) => Some(
                witness::check(&replica, note, &batch.entries, &self.witness, self.now_s()).await?,
            ),
            None => None,
        };
        if let Some(witness::Checked::Rewritten(evidence)) = checked {
            self.flag_rewritten(&replica, site, &evidence).await?;
            return Err(Rejection::conflict(
                "history_rewritten",
                "the checkpoint does not match the history already replicated",
            )
            .into());
        }
        let witnessed = match checked {
            Some(witness::Checked::Witnessed(w)) => Some(w),
            _ => None,
        };
        let witnessed = match witnessed {
            Some(w) if witness::covers_stub(&replica, &batch.entries, w.size)? => {
                tracing::warn!(
                    site,
                    size = w.size,
                    "checkpoint covers a legacy hash-only stub: not witnessed"
                );
                None
            }
            w => w,
        };
        // The key a gap record is checked with: the pinned one (else the logged one).
        let gap_key = witness::site_key(&replica, &batch.entries)?;
        let entries = Arc::new(batch.entries);
        let edge_head = batch.head;
        let job_site = site.to_string();
        let contact_us = self.clock.now_us();
        let job_entries = entries.clone();
        let job_witnessed = witnessed.clone();
        let gaps = replica
            .submit(move |tx| {
                let mut gaps = Vec::new();
                if job_entries.first().map(Shipped::seq) == Some(tx.next_seq()) {
                    for item in job_entries.iter() {
                        match item {
                            Shipped::Entry(e) => tx.append_replicated(e)?,
                            // Stored like an entry whose payload retention purged.
                            Shipped::Stub(s) => {
                                tx.append_stub(s.seq, s.ts, s.prev, s.hash, s.digest)?
                            }
                        };
                    }
                    witness::note_stubs(tx, &job_entries)?;
                    gaps = gap::note_gaps(tx, &job_site, gap_key.as_ref(), &job_entries)?;
                }
                let head = tx.next_seq() - 1;
                tx.views()
                    .set_replication_meta("edge_head", &edge_head.max(head).to_be_bytes())?;
                tx.views()
                    .set_replication_meta("contact_us", &contact_us.to_be_bytes())?;
                if let Some(w) = job_witnessed.as_ref().filter(|w| w.size <= head) {
                    let bytes = serde_json::to_vec(w)?;
                    tx.views().set_replication_meta("checkpoint", &bytes)?;
                }
                Ok(gaps)
            })
            .await?;
        self.mark_changed(site);
        for g in &gaps {
            self.raise_gap(site, g).await;
        }
        let rtx = replica.read()?;
        let head = rtx.chain_head()?;
        let (seq, hash) = head.map_or((0, [0u8; 32]), |h| (h.seq, h.hash));
        if let Ok(s) = self.status(site).await {
            self.metrics
                .set_replication_lag(site, s.lag_entries, s.lag_seconds);
        }
        Ok(Ack {
            head: seq,
            head_hash: hex::encode(hash),
            cosignature: witnessed.filter(|w| w.size <= seq).map(|w| w.cosignature),
        })
    }

    /// Refuses, before anything is stored, a batch holding a legacy stub (of a chain-v1 entry,
    /// whose hash cannot be recomputed) when this HQ does not take them, or any stub dated more
    /// than `STUB_TS_SKEW_US` past HQ's clock. Chain-v2 stubs are checked like whole entries
    /// when appended and need no `accept_stubs`.
    fn check_stubs(&self, batch: &Batch) -> Result<(), ReplicationError> {
        if !self.accept_stubs
            && let Some(legacy) = batch.entries.iter().find(|i| i.is_legacy_stub())
        {
            return Err(Rejection::conflict(
                "stubs_refused",
                format!(
                    "this HQ does not accept hash-only stubs of entries logged before chain v2 \
                     (seq {}): ship every class at the site until those are sent, or set \
                     [replication] accept_stubs = true at HQ (docs/replication.md)",
                    legacy.seq()
                ),
            )
            .into());
        }
        let limit = self.clock.now_us().saturating_add(STUB_TS_SKEW_US);
        let mut stubs = batch.entries.iter().filter(|i| i.entry().is_none());
        if let Some(late) = stubs.find(|s| s.ts() > limit) {
            return Err(Rejection::invalid(
                "stub_from_future",
                format!(
                    "the stub at seq {} is dated more than 5 minutes past HQ's clock",
                    late.seq()
                ),
            )
            .into());
        }
        Ok(())
    }

    fn mark_changed(&self, site: &str) {
        self.changed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(site.to_string());
        self.changed_notify.notify_one();
    }

    /// The sites whose replica took a batch since the last call (for the NATS forwarder).
    pub fn take_changed(&self) -> BTreeSet<String> {
        std::mem::take(
            &mut *self
                .changed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Resolves after a batch was taken (at once if one was since the last wait).
    pub async fn changed(&self) {
        self.changed_notify.notified().await;
    }

    async fn flag_rewritten(
        &self,
        replica: &Log,
        site: &str,
        evidence: &witness::Evidence,
    ) -> Result<(), ReplicationError> {
        tracing::error!(
            site,
            size = evidence.size,
            "site history rewritten: refusing its batches"
        );
        witness::store_evidence(replica, evidence).await?;
        if let Some(log) = &self.alarms {
            let signal = crate::alarms::Signal {
                source: crate::alarms::scope::site_source(site),
                condition: "history.rewritten".into(),
                active: true,
                priority: Some(crate::alarms::Priority::Critical),
                message: Some(format!(
                    "site {site} presented a different head for size {} than the one replicated",
                    evidence.size
                )),
                attributes: Default::default(),
                latched: Some(true),
                suppressed: None,
            };
            if let Err(e) = crate::alarms::raise(log, &crate::log::Author::System, signal).await {
                tracing::error!(site, error = %e, "cannot raise the history-rewritten alarm");
            }
        }
        Ok(())
    }

    /// Raises the site's "data dropped before replication" alarm for one gap record (high
    /// priority, not latched: an operator acknowledges it; the gap stays in the site's status).
    async fn raise_gap(&self, site: &str, g: &GapView) {
        tracing::warn!(
            site,
            from = g.from,
            to = g.to,
            count = g.count,
            verified = g.verified,
            "site dropped entries before replication"
        );
        let Some(log) = &self.alarms else {
            return;
        };
        let check = match &g.problem {
            None => "signed gap record verified".to_string(),
            Some(p) => format!("the gap record is UNVERIFIED: {p}"),
        };
        let signal = crate::alarms::Signal {
            source: crate::alarms::scope::site_source(site),
            condition: "replication.gap".into(),
            active: true,
            priority: Some(crate::alarms::Priority::High),
            message: Some(format!(
                "data dropped before replication: site {site} purged {} entries in seq {}..={} \
                 that HQ had not received ({}; {check})",
                g.count, g.from, g.to, g.reason
            )),
            attributes: Default::default(),
            latched: None,
            suppressed: None,
        };
        if let Err(e) = crate::alarms::raise(log, &crate::log::Author::System, signal).await {
            tracing::error!(site, error = %e, "cannot raise the replication-gap alarm");
        }
    }

    fn now_s(&self) -> u64 {
        u64::try_from(self.clock.now_us() / 1_000_000).unwrap_or(0)
    }

    /// One site's status.
    pub async fn status(&self, site: &str) -> Result<SiteStatus, ReplicationError> {
        let replica = self.replica(site).await?;
        let rtx = replica.read()?;
        let head = rtx.chain_head()?;
        let (seq, hash, ts) = head.map_or((0, [0u8; 32], None), |h| (h.seq, h.hash, Some(h.ts)));
        let edge_head = rtx
            .replication_meta("edge_head")?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(seq, u64::from_be_bytes);
        let checkpoint = rtx
            .replication_meta("checkpoint")?
            .and_then(|b| serde_json::from_slice(&b).ok());
        let now = self.clock.now_us();
        let secs_since = |ts: i64| u64::try_from((now - ts).max(0) / 1_000_000).unwrap_or(0);
        let lag_seconds = ts.map_or(0, secs_since);
        let silent_seconds = rtx
            .replication_meta("contact_us")?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, |b| secs_since(i64::from_be_bytes(b)));
        Ok(SiteStatus {
            site: site.to_string(),
            seq,
            head_hash: hex::encode(hash),
            lag_entries: edge_head.saturating_sub(seq),
            lag_seconds,
            silent_seconds,
            checkpoint,
            history_rewritten: witness::rewritten(&replica)?.is_some(),
            gaps: gap::summary(&rtx)?,
        })
    }

    /// How far behind each site is, in seconds, for the lag alarm: the age of the newest stored
    /// entry while the edge has more, or the time since it was last heard from.
    pub async fn behind(&self) -> Vec<(String, u64)> {
        match self.list().await {
            Ok(list) => list
                .into_iter()
                .map(|s| {
                    let stale = if s.lag_entries > 0 { s.lag_seconds } else { 0 };
                    (s.site, stale.max(s.silent_seconds))
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "reading the sites' replication lag failed");
                Vec::new()
            }
        }
    }

    /// Every enrolled site's status.
    pub async fn list(&self) -> Result<Vec<SiteStatus>, ReplicationError> {
        let mut out = Vec::new();
        for site in self.sites()? {
            out.push(self.status(&site).await?);
        }
        Ok(out)
    }
}
