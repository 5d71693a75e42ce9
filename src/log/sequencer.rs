//! The single writer: takes jobs from a bounded queue, runs a batch of them in one redb write
//! transaction (group commit), answers each caller only after the durable commit, then feeds the hub.
//! It runs on its own OS thread, which owns the store's write path; it never runs on the runtime.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::error::Rejection;
use crate::metrics::Metrics;
use crate::store::{DataKey, Fault, Store, StoreError};

use super::hub::Hub;
use super::tx::{AppendError, ChainState, Tx};

/// Why a submitted job did not commit.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full: retry later. Nothing was queued.
    #[error("the write queue is full")]
    Busy,
    #[error(transparent)]
    Rejected(Rejection),
    #[error("the sequencer is shutting down")]
    ShuttingDown,
    /// Reading or committing failed; nothing of the batch was stored.
    #[error("storage failure: {0}")]
    Storage(#[source] Arc<StoreError>),
    /// A body could not be encoded (a bug: every body is a plain struct).
    #[error("cannot encode an entry body: {0}")]
    Encode(#[from] serde_json::Error),
    /// The system random generator failed (tokens, ids, nonces).
    #[error("the system random generator failed")]
    Random,
    /// The caller's job returned without output although its batch committed (a bug).
    #[error("a committed job produced no output")]
    NoOutput,
    /// A file beside the store could not be written.
    #[error("cannot write {path}: {source}")]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<AppendError> for SubmitError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::Rejected(r) => SubmitError::Rejected(r),
            AppendError::Storage(s) => SubmitError::Storage(Arc::new(s)),
            AppendError::Encode(e) => SubmitError::Encode(e),
        }
    }
}

impl From<StoreError> for SubmitError {
    fn from(e: StoreError) -> Self {
        SubmitError::Storage(Arc::new(e))
    }
}

impl From<Rejection> for SubmitError {
    fn from(r: Rejection) -> Self {
        SubmitError::Rejected(r)
    }
}

/// Tuning of the sequencer (both bounded by config validation) and where it reports commits.
#[derive(Debug, Clone)]
pub struct SequencerConfig {
    /// Jobs that may wait; beyond this, `submit` answers `Busy`.
    pub queue_capacity: usize,
    /// Most jobs committed in one transaction.
    pub max_batch: usize,
    /// Commit latency, batch size and append count go here.
    pub metrics: Arc<Metrics>,
    /// A backward step of the wall clock larger than this is recorded (`clock.stepped`).
    pub clock_step_us: i64,
}

/// A unit of work run inside the batch transaction. `run` may be called again after a rollback
/// caused by another job, so it must not keep state between calls except its output.
trait Job: Send {
    fn run(&mut self, tx: &mut Tx<'_>) -> Result<(), AppendError>;
    fn committed(self: Box<Self>);
    fn failed(self: Box<Self>, err: SubmitError);
}

struct FnJob<F, T> {
    f: F,
    out: Option<T>,
    done: oneshot::Sender<Result<T, SubmitError>>,
}

impl<F, T> Job for FnJob<F, T>
where
    F: FnMut(&mut Tx<'_>) -> Result<T, AppendError> + Send,
    T: Send,
{
    fn run(&mut self, tx: &mut Tx<'_>) -> Result<(), AppendError> {
        self.out = Some((self.f)(tx)?);
        Ok(())
    }

    fn committed(self: Box<Self>) {
        let result = self.out.ok_or(SubmitError::NoOutput);
        // The caller may have gone away; the commit stands either way.
        let _ = self.done.send(result);
    }

    fn failed(self: Box<Self>, err: SubmitError) {
        let _ = self.done.send(Err(err));
    }
}

/// The handle callers submit through. Cheap to clone.
#[derive(Clone)]
pub struct Sequencer {
    queue: mpsc::Sender<Box<dyn Job>>,
    health: Arc<Health>,
}

/// Whether the store takes writes: set by the writer after a failed commit, cleared once it has
/// reopened the store. Readable from anywhere (`/readyz`, `/metrics`).
#[derive(Debug, Default)]
pub struct Health {
    degraded: AtomicBool,
}

impl Health {
    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::SeqCst)
    }
}

impl std::fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer")
            .field(
                "queued",
                &(self.queue.max_capacity() - self.queue.capacity()),
            )
            .finish()
    }
}

/// The running writer thread, for the one who stops it.
#[derive(Debug)]
pub struct WriterThread {
    /// Never sent on: its sender is dropped when the thread ends, after everything the writer
    /// held (the queue, the store handle), or when it dies.
    ended: oneshot::Receiver<()>,
}

impl WriterThread {
    /// Waits until the writer has ended (after `stop`, once the queue is drained).
    pub async fn ended(self) {
        let _ = self.ended.await;
    }
}

/// The writer thread's name, as `top -H`, `perf` and panic messages show it.
const THREAD_NAME: &str = "plantwire-writer";

impl Sequencer {
    /// Starts the writer thread. It stops after `stop` is cancelled and the queue is drained.
    /// Failing to spawn the thread is an error here, before any job is taken.
    pub fn start(
        store: Arc<Store>,
        key: Arc<DataKey>,
        site: Arc<str>,
        clock: Arc<dyn Clock>,
        hub: Hub,
        config: SequencerConfig,
        stop: CancellationToken,
    ) -> Result<(Self, WriterThread), StoreError> {
        let chain = ChainState::from_head(store.read()?.chain_head()?);
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let health = Arc::new(Health::default());
        let writer = Writer {
            health: health.clone(),
            next_recovery: None,
            backoff: RECOVERY_INTERVAL,
            disk_full: false,
            store,
            key,
            site,
            clock,
            hub,
            metrics: config.metrics,
            chain,
            max_batch: config.max_batch.max(1),
            clock_step_us: config.clock_step_us,
        };
        let (ended_tx, ended) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                // Declared first, so dropped last: `ended` resolves only once the writer is gone.
                let _ended = ended_tx;
                writer.run(rx, stop);
            })
            .map_err(StoreError::Thread)?;
        Ok((Self { queue: tx, health }, WriterThread { ended }))
    }

    /// Runs `f` in the next batch and returns its output once the batch is durably committed.
    /// `f` may run more than once (after a rollback caused by another job), and must check its
    /// rules before it writes: a rejection after a write costs the whole batch a retry.
    pub async fn submit<T, F>(&self, f: F) -> Result<T, SubmitError>
    where
        F: FnMut(&mut Tx<'_>) -> Result<T, AppendError> + Send + 'static,
        T: Send + 'static,
    {
        let (done, wait) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(FnJob { f, out: None, done });
        self.queue.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SubmitError::Busy,
            mpsc::error::TrySendError::Closed(_) => SubmitError::ShuttingDown,
        })?;
        wait.await.map_err(|_| SubmitError::ShuttingDown)?
    }

    /// Whether writes are refused after a failed commit, until the store is reopened.
    pub fn storage_degraded(&self) -> bool {
        self.health.degraded()
    }

    /// Jobs waiting in the queue right now.
    pub fn queue_depth(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }
}

/// The first wait of a degraded writer before it tries to reopen the store, with or without
/// waiting jobs; each failed attempt doubles it up to [`MAX_RECOVERY_INTERVAL`] (an attempt
/// repairs the file, which scans it whole).
const RECOVERY_INTERVAL: Duration = Duration::from_secs(1);
const MAX_RECOVERY_INTERVAL: Duration = Duration::from_secs(30);
/// How long one reopen waits for read transactions of the old file to finish.
const REOPEN_WAIT: Duration = Duration::from_millis(250);

struct Writer {
    health: Arc<Health>,
    /// While degraded: when the next reopen may be tried, and the wait after that one.
    next_recovery: Option<Instant>,
    backoff: Duration,
    /// Whether the failure that degraded the store was a full disk (507, not 503).
    disk_full: bool,
    store: Arc<Store>,
    key: Arc<DataKey>,
    site: Arc<str>,
    clock: Arc<dyn Clock>,
    hub: Hub,
    metrics: Arc<Metrics>,
    chain: ChainState,
    max_batch: usize,
    clock_step_us: i64,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Box<dyn Job>>, stop: CancellationToken) {
        let mut wait = Wait::new(stop);
        loop {
            let first = match wait.next(&mut rx, self.next_recovery) {
                Next::Job(job) => job,
                Next::Drained => break,
                // Degraded and idle: try to get the store back for readers too.
                Next::Retry => {
                    if catch_unwind(AssertUnwindSafe(|| self.recover())).is_err() {
                        tracing::error!("store recovery panicked; writer stopped");
                        rx.close();
                        return;
                    }
                    continue;
                }
            };
            let mut batch = Vec::with_capacity(self.max_batch.min(256));
            batch.push(first);
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            if catch_unwind(AssertUnwindSafe(|| self.commit_batch(batch))).is_err() {
                // A job panicked; the chain state went with it. Stop taking work.
                tracing::error!("sequencer batch panicked; writer stopped");
                rx.close();
                return;
            }
        }
        tracing::debug!("sequencer stopped");
    }

    /// After a failed commit redb refuses everything until the file is opened again. At most once
    /// per [`RECOVERY_INTERVAL`]: reopen it, take the chain head from what is durable, and prove
    /// that a durable commit works again (a small write to `meta`); only then are writes taken.
    /// A reopen alone proves nothing on a disk that is still full. Returns whether the store
    /// takes writes now.
    fn recover(&mut self) -> bool {
        let Some(at) = self.next_recovery else {
            return true;
        };
        if Instant::now() < at {
            return false;
        }
        let now = self.clock.now_us();
        let reopened = self
            .store
            .reopen(REOPEN_WAIT)
            .and_then(|()| self.store.probe_write(now))
            .and_then(|()| self.store.read()?.chain_head());
        match reopened {
            Ok(head) => {
                let known = self.chain;
                self.chain = ChainState::from_head(head);
                // The wall clock the last batch read still stands: a step is recorded once.
                self.chain.last_wall = known.last_wall;
                self.publish_surprises(known.next_seq, self.chain.next_seq);
                self.next_recovery = None;
                self.backoff = RECOVERY_INTERVAL;
                self.health.degraded.store(false, Ordering::SeqCst);
                self.metrics.set_storage_degraded(false);
                tracing::warn!(
                    head = self.chain.next_seq - 1,
                    "store reopened; writes resume"
                );
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "store still unavailable");
                if e.fault() == Fault::DiskFull {
                    self.disk_full = true;
                }
                self.backoff = (self.backoff * 2).min(MAX_RECOVERY_INTERVAL);
                self.next_recovery = Some(Instant::now() + self.backoff);
                false
            }
        }
    }

    /// A commit whose `commit()` reported failure can still be durable (its header reached the
    /// disk before the fsync that failed), and redb's repair then keeps it. Those entries were
    /// refused to their callers but are in the chain now: they are logged loudly and handed to
    /// the hub, so followers see a dense log rather than a gap.
    fn publish_surprises(&self, from: u64, next: u64) {
        if next <= from {
            return;
        }
        tracing::error!(
            first = from,
            last = next - 1,
            "entries of a commit reported as failed are durable after all; publishing them"
        );
        let Ok(rtx) = self.store.read() else { return };
        let entries: Vec<_> = (from..next)
            .filter_map(|seq| {
                super::read::entry(&rtx, &self.site, &self.key, seq)
                    .ok()
                    .flatten()
            })
            .collect();
        self.hub.publish(entries);
    }

    /// Marks the store degraded after a failed commit: writes are refused (with the fault's
    /// stable code) until `recover` reopens it.
    fn degrade(&mut self, e: &StoreError) {
        if self.next_recovery.is_none() {
            tracing::error!(error = %e, "commit failed; store degraded, writes refused until it is reopened");
        }
        self.health.degraded.store(true, Ordering::SeqCst);
        self.metrics.set_storage_degraded(true);
        self.disk_full = e.fault() == Fault::DiskFull;
        self.next_recovery = Some(Instant::now() + self.backoff);
    }

    /// Commits as many jobs of `batch` as pass their rules, in one durable transaction.
    fn commit_batch(&mut self, mut batch: Vec<Box<dyn Job>>) {
        if !self.recover() {
            let disk_full = self.disk_full;
            return fail_all(batch, Vec::new(), StoreError::Degraded { disk_full });
        }
        let mut rejected: Vec<(Box<dyn Job>, SubmitError)> = Vec::new();
        let now = self.clock.now_us();
        let started = std::time::Instant::now();
        loop {
            let mut wtx = match self.store.write() {
                Ok(w) => w,
                Err(e) => {
                    self.degrade(&e);
                    return fail_all(batch, rejected, e);
                }
            };
            let mut tx = Tx::new(&mut wtx, self.chain, &self.key, &self.site, now);
            if let Err(e) = tx.note_clock_step(self.clock_step_us) {
                drop(tx);
                let _ = wtx.abort();
                let e = match e {
                    AppendError::Storage(e) => e,
                    AppendError::Encode(source) => StoreError::Encode {
                        what: "clock step",
                        source,
                    },
                    AppendError::Rejected(r) => {
                        // A clock entry within every limit cannot be refused; if it is, say so.
                        tracing::error!(code = r.code, "the clock-step entry was refused");
                        StoreError::Malformed { what: "clock step" }
                    }
                };
                if e.fault() != Fault::Bug {
                    self.degrade(&e);
                }
                return fail_all(batch, rejected, e);
            }
            let mut clean_rejects = Vec::new();
            let mut dirty_reject = None;
            let mut storage_error = None;
            for (i, job) in batch.iter_mut().enumerate() {
                tx.views().clear_dirty();
                match job.run(&mut tx) {
                    Ok(()) => {}
                    // A malformed row or a failed encoding is this job's problem, not the
                    // store's: roll back and rerun the batch without it, as for a refusal.
                    Err(AppendError::Storage(e)) if e.fault() == Fault::Bug => {
                        tracing::error!(error = %e, "a job failed on a malformed row; refused alone");
                        dirty_reject = Some((i, SubmitError::from(e)));
                        break;
                    }
                    Err(AppendError::Storage(e)) => {
                        storage_error = Some(e);
                        break;
                    }
                    Err(refusal) if tx.views().is_dirty() => {
                        dirty_reject = Some((i, SubmitError::from(refusal)));
                        break;
                    }
                    Err(refusal) => clean_rejects.push((i, SubmitError::from(refusal))),
                }
            }
            if let Some(e) = storage_error {
                drop(tx);
                let _ = wtx.abort();
                if e.fault() != Fault::Bug {
                    self.degrade(&e);
                }
                return fail_all(batch, rejected, e);
            }
            if let Some((i, r)) = dirty_reject {
                // Roll back and run the batch again without the job that wrote before refusing.
                drop(tx);
                let _ = wtx.abort();
                rejected.push((batch.remove(i), r));
                continue;
            }
            for (i, r) in clean_rejects.into_iter().rev() {
                rejected.push((batch.remove(i), r));
            }
            let finished = tx.finish();
            let (chain, entries) = match finished {
                Ok(v) => v,
                Err(e) => {
                    let _ = wtx.abort();
                    if e.fault() != Fault::Bug {
                        self.degrade(&e);
                    }
                    return fail_all(batch, rejected, e);
                }
            };
            if entries.is_empty() && batch.is_empty() {
                let _ = wtx.abort();
            } else if let Err(e) = wtx.commit() {
                self.degrade(&e);
                return fail_all(batch, rejected, e);
            } else if !entries.is_empty() {
                self.metrics.commit(started.elapsed(), entries.len());
            }
            self.chain = chain;
            for job in batch {
                job.committed();
            }
            for (job, r) in rejected {
                job.failed(r);
            }
            self.hub.publish(entries);
            return;
        }
    }
}

fn fail_all(batch: Vec<Box<dyn Job>>, rejected: Vec<(Box<dyn Job>, SubmitError)>, err: StoreError) {
    let err = Arc::new(err);
    for job in batch {
        job.failed(SubmitError::Storage(err.clone()));
    }
    for (job, r) in rejected {
        job.failed(r);
    }
}

/// What the idle writer wakes up for.
enum Next {
    Job(Box<dyn Job>),
    /// Stopped (or every handle dropped) and the queue is empty: the writer ends.
    Drained,
    /// The time to try reopening a degraded store has come.
    Retry,
}

/// How the writer thread waits for work without a runtime: tokio's queue and cancellation token
/// need only a waker, here one that unparks this thread. So the writer never depends on the
/// runtime that feeds it still running, and a busy queue costs no wake-up at all.
struct Wait {
    stop: CancellationToken,
    /// Set once `stop` was seen: the queue is closed to new jobs and is being drained.
    closing: bool,
    waker: Waker,
}

struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

impl Wait {
    fn new(stop: CancellationToken) -> Self {
        Self {
            stop,
            closing: false,
            waker: Waker::from(Arc::new(Unpark(std::thread::current()))),
        }
    }

    /// The next job, parking the thread while there is none; `retry_at` bounds the wait.
    fn next(&mut self, rx: &mut mpsc::Receiver<Box<dyn Job>>, retry_at: Option<Instant>) -> Next {
        let mut cx = Context::from_waker(&self.waker);
        // Registered with the token only when the thread is about to park: a busy writer
        // takes its next job without touching the token's lock.
        let mut cancelled = std::pin::pin!(self.stop.cancelled());
        loop {
            // The stop is looked at before the queue, so a busy queue cannot hold it off;
            // closing refuses new work, and what was accepted before is still committed.
            if !self.closing && self.stop.is_cancelled() {
                rx.close();
                self.closing = true;
            }
            match rx.poll_recv(&mut cx) {
                Poll::Ready(Some(job)) => return Next::Job(job),
                Poll::Ready(None) => return Next::Drained,
                Poll::Pending => {}
            }
            if !self.closing && cancelled.as_mut().poll(&mut cx).is_ready() {
                continue;
            }
            match retry_at {
                Some(at) => {
                    let now = Instant::now();
                    if now >= at {
                        return Next::Retry;
                    }
                    std::thread::park_timeout(at - now);
                }
                None => std::thread::park(),
            }
        }
    }
}
