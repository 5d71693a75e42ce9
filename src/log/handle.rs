//! `Log`: the one handle every domain takes. It owns one site's store, data key, clock, sequencer
//! and hub; it never knows HTTP, the process or another site. Cheap to clone.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::{Mutex, broadcast};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::{DataKey, ReadTx, SealError, Store, StoreError};

use super::entry::Entry;
use super::follow::Follower;
use super::hub::Hub;
use super::hub::Live;
use super::read::{self, ReadError};
use super::sequencer::{Sequencer, SequencerConfig, SubmitError, WriterThread};
use super::tx::{AppendError, Tx};

/// How one log is opened: where, and the bounds of its queue, batch, cache and hub.
#[derive(Debug, Clone)]
pub struct LogOptions {
    pub cache_bytes: usize,
    pub queue_capacity: usize,
    pub max_batch: usize,
    pub hub_capacity: usize,
    /// A backward step of the wall clock larger than this is recorded as `clock.stepped`.
    pub clock_step_us: i64,
    /// Commits record redb's allocator state, for a quick open after a crash.
    pub quick_repair: bool,
}

/// One site's log: submit, read, follow. Clones share everything.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    key: Arc<DataKey>,
    site: Arc<str>,
    clock: Arc<dyn Clock>,
    hub: Hub,
    sequencer: Sequencer,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    writer: Mutex<Option<WriterThread>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("site", &self.inner.site)
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

impl Log {
    /// Opens (or creates) the store at `path`, binds it to `site` and `key`, and starts the
    /// single writer. Must be called inside a Tokio runtime.
    pub fn open(
        path: &Path,
        site: &str,
        key: DataKey,
        clock: Arc<dyn Clock>,
        opts: &LogOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let store = Arc::new(Store::open(path, opts.cache_bytes)?);
        store.set_quick_repair(opts.quick_repair);
        let site: Arc<str> = site.into();
        let key = Arc::new(key);
        store.bind_identity(&site, &key)?;
        let hub = Hub::new(opts.hub_capacity);
        let stop = CancellationToken::new();
        let (sequencer, writer) = Sequencer::start(
            store.clone(),
            key.clone(),
            site.clone(),
            clock.clone(),
            hub.clone(),
            SequencerConfig {
                queue_capacity: opts.queue_capacity,
                max_batch: opts.max_batch,
                clock_step_us: opts.clock_step_us,
                metrics: metrics.clone(),
            },
            stop.clone(),
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                key,
                site,
                clock,
                hub,
                sequencer,
                metrics,
                stop,
                writer: Mutex::new(Some(writer)),
            }),
        })
    }

    pub fn site(&self) -> &Arc<str> {
        &self.inner.site
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    pub fn now_us(&self) -> i64 {
        self.inner.clock.now_us()
    }

    /// The store underneath, for what works on the file as a whole (backup, size, integrity).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The audit walk over one read snapshot, while writes go on (no page-checksum pass: that
    /// needs the store to itself).
    pub fn verify(&self) -> Result<super::verify::VerifyReport, StoreError> {
        super::verify::verify(&self.inner.store, &self.inner.site, &self.inner.key)
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Runs `f` in the next batch and returns its output once the batch is durably committed.
    /// The contract of [`Sequencer::submit`] applies: `f` may run more than once and must check
    /// its rules before it writes.
    pub async fn submit<T, F>(&self, f: F) -> Result<T, SubmitError>
    where
        F: FnMut(&mut Tx<'_>) -> Result<T, AppendError> + Send + 'static,
        T: Send + 'static,
    {
        self.inner.sequencer.submit(f).await
    }

    /// Whether the store refuses writes after a failed commit (full disk, I/O error) and the
    /// writer is reopening it.
    pub fn storage_degraded(&self) -> bool {
        self.inner.sequencer.storage_degraded()
    }

    /// Jobs waiting for the writer right now.
    pub fn queue_depth(&self) -> usize {
        self.inner.sequencer.queue_depth()
    }

    /// Moves whenever a device row may have changed (see `Store::devices_generation`); read it
    /// before the snapshot whose device answer is cached.
    pub fn devices_generation(&self) -> u64 {
        self.inner.store.devices_generation()
    }

    /// A consistent read snapshot; never waits on the writer.
    pub fn read(&self) -> Result<ReadTx, StoreError> {
        self.inner.store.read()
    }

    /// The seq of the newest committed entry (0 for an empty log) in `rtx`.
    pub fn head(&self, rtx: &ReadTx) -> Result<u64, StoreError> {
        Ok(rtx.chain_head()?.map_or(0, |h| h.seq))
    }

    /// Reads and unseals one entry.
    pub fn entry(&self, rtx: &ReadTx, seq: u64) -> Result<Option<Entry>, ReadError> {
        read::entry(rtx, &self.inner.site, &self.inner.key, seq)
    }

    /// Reads and unseals one entry if it is of `kind` (others are never unsealed).
    pub fn entry_of_kind(
        &self,
        rtx: &ReadTx,
        seq: u64,
        kind: &str,
    ) -> Result<Option<Entry>, ReadError> {
        read::entry_of_kind(rtx, &self.inner.site, &self.inner.key, seq, kind)
    }

    /// Rebuilds one entry from its stored bytes (for scans that already hold them).
    pub fn decode(&self, seq: u64, raw: &[u8]) -> Result<Entry, ReadError> {
        read::decode_entry(&self.inner.site, &self.inner.key, seq, raw)
    }

    /// Seals a view row that holds content, like entry bodies are sealed; `aad` names the row.
    pub fn seal_view(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, SealError> {
        self.inner.key.seal_bytes(aad, plain)
    }

    /// Opens what `seal_view` sealed under the same `aad`.
    pub fn open_view(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        self.inner.key.open_bytes(aad, sealed)
    }

    /// The search index's keyed name of a token (`DataKey::search_mac`).
    pub fn search_mac(&self, token: &[u8]) -> [u8; crate::store::seal::SEARCH_MAC_LEN] {
        self.inner.key.search_mac(token)
    }

    /// Committed entries from now on, as they commit. A receiver that falls behind the bounded
    /// ring gets `Lagged` and must resume from the log: use [`Log::follow`] for that.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Live>> {
        self.inner.hub.subscribe()
    }

    /// Every entry after `since`, each seq once and in order: the hub is subscribed first, then a
    /// snapshot fixes `head`; entries up to it come from the log, later ones live.
    pub fn follow(&self, since: u64) -> Result<Follower, StoreError> {
        Follower::start(self.clone(), since)
    }

    /// Stops the writer after it has committed everything already queued. Idempotent.
    pub async fn close(&self) {
        self.inner.stop.cancel();
        if let Some(writer) = self.inner.writer.lock().await.take() {
            writer.ended().await;
        }
    }
}
