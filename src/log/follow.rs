//! Following the log: subscribe to the hub, fix a snapshot head, replay up to it from the log, then
//! go live, delivering each seq once and in order. The socket, replication, indexers and timers all
//! read the log this way; none of them may call back into a handler.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use crate::store::{ReadTx, StoreError};

use super::entry::Entry;
use super::handle::Log;
use super::hub::Live;
use super::read::ReadError;

/// Entries read from one snapshot while replaying; each batch takes a fresh one, so a slow
/// follower never pins an old snapshot for long.
pub const REPLAY_BATCH: usize = 256;

/// Why a follower cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The live ring overflowed: `missed` entries were dropped for this follower. Resume with
    /// `Log::follow(last seq seen)`; [`Follower::next`] does that by itself.
    #[error("the follower fell {missed} entries behind the live ring")]
    Lagged { missed: u64 },
    /// The log was closed.
    #[error("the log is closed")]
    Closed,
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

enum Replay {
    /// Every seq in `next..=head`.
    Range { next: u64 },
    /// Only these seqs (ascending, all <= head): a follower that knows which streams it wants.
    Seqs(VecDeque<u64>),
}

/// The state of one `follow(since)`; see the module header.
pub struct Follower {
    log: Log,
    rx: broadcast::Receiver<Arc<Live>>,
    head: u64,
    snapshot: Option<ReadTx>,
    replay: Replay,
    /// The last seq handed out (replayed or live).
    last: u64,
    ready: VecDeque<Arc<Live>>,
    /// A lag was seen but starting over failed (the store was unavailable): `next` tries again
    /// before it reads anything, so a retry never goes live past the gap.
    restart: bool,
}

impl Follower {
    pub(super) fn start(log: Log, since: u64) -> Result<Self, StoreError> {
        // The receiver first, then the snapshot: whatever commits after the snapshot reaches
        // the receiver, and whatever the receiver holds up to `head` is skipped.
        let rx = log.subscribe();
        let snapshot = log.read()?;
        let head = log.head(&snapshot)?;
        let since = since.min(head);
        Ok(Self {
            log,
            rx,
            head,
            snapshot: Some(snapshot),
            replay: Replay::Range { next: since + 1 },
            last: since,
            ready: VecDeque::new(),
            restart: false,
        })
    }

    /// The newest seq of the snapshot: replay covers `(since, head]`, live everything after.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The snapshot the head was taken in, until the first replay batch is read: planning reads
    /// (which streams to replay) see exactly the state `head` names.
    pub fn snapshot(&self) -> Option<&ReadTx> {
        self.snapshot.as_ref()
    }

    /// Hands the snapshot over (a follower that only goes live must not pin it); replay batches
    /// then read from fresh snapshots.
    pub fn take_snapshot(&mut self) -> Option<ReadTx> {
        self.snapshot.take()
    }

    /// Replays only `seqs` (ascending, each in `(since, head]`) instead of every entry.
    pub fn only(&mut self, seqs: Vec<u64>) {
        let since = self.last;
        let head = self.head;
        self.replay = Replay::Seqs(
            seqs.into_iter()
                .filter(|s| *s > since && *s <= head)
                .collect(),
        );
    }

    /// The next batch of replayed entries, read from one fresh snapshot; `None` once replay is
    /// done. Entries that are no longer readable (never the case for a dense log) are skipped.
    /// A failed read changes nothing: the same batch is read again by the next call.
    pub fn replay_batch(&mut self) -> Result<Option<Vec<Entry>>, ReadError> {
        let seqs: Vec<u64> = match &self.replay {
            Replay::Range { next } => {
                let to = self.head.min(next.saturating_add(REPLAY_BATCH as u64 - 1));
                (*next..=to).collect()
            }
            Replay::Seqs(q) => q.iter().take(REPLAY_BATCH).copied().collect(),
        };
        let Some(&end) = seqs.last() else {
            self.snapshot = None;
            self.last = self.last.max(self.head);
            return Ok(None);
        };
        let rtx = match self.snapshot.take() {
            Some(s) => s,
            None => self.log.read()?,
        };
        let mut out = Vec::with_capacity(seqs.len());
        for &seq in &seqs {
            if let Some(e) = self.log.entry(&rtx, seq)? {
                out.push(e);
            }
        }
        // Read whole: only now does the follower move on.
        match &mut self.replay {
            Replay::Range { next } => *next = end.saturating_add(1),
            Replay::Seqs(q) => drop(q.drain(..seqs.len())),
        }
        self.last = end;
        Ok(Some(out))
    }

    /// The next live entry after `head`. Cancel-safe: nothing is lost if the future is dropped.
    /// A seq that does not follow the last one handed out (an entry the hub never carried) is
    /// reported as a lag: start over from the log.
    pub async fn recv_live(&mut self) -> Result<Arc<Live>, FollowError> {
        loop {
            match self.rx.recv().await {
                Ok(e) if e.seq <= self.head => {}
                Ok(e) => return self.take_live(e),
                Err(RecvError::Lagged(missed)) => return Err(FollowError::Lagged { missed }),
                Err(RecvError::Closed) => return Err(FollowError::Closed),
            }
        }
    }

    /// A live entry the ring already holds, without waiting; `None` when there is none.
    pub fn try_recv_live(&mut self) -> Option<Result<Arc<Live>, FollowError>> {
        loop {
            match self.rx.try_recv() {
                Ok(e) if e.seq <= self.head => {}
                Ok(e) => return Some(self.take_live(e)),
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Lagged(missed)) => {
                    return Some(Err(FollowError::Lagged { missed }));
                }
                Err(TryRecvError::Closed) => return Some(Err(FollowError::Closed)),
            }
        }
    }

    fn take_live(&mut self, e: Arc<Live>) -> Result<Arc<Live>, FollowError> {
        let expected = self.last.max(self.head) + 1;
        if e.seq != expected {
            return Err(FollowError::Lagged {
                missed: e.seq.saturating_sub(expected),
            });
        }
        self.last = e.seq;
        Ok(e)
    }

    /// Every entry after `since`, one at a time: replay, then live. A follower that lags behind
    /// the live ring starts over from the last seq it handed out, so nothing is skipped or
    /// repeated. Cancel-safe: entries read but not yet returned stay queued for the next call.
    pub async fn next(&mut self) -> Result<Arc<Live>, FollowError> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(e);
            }
            if self.restart {
                let restarted = Follower::start(self.log.clone(), self.last)?;
                *self = restarted;
                continue;
            }
            if let Some(batch) = self.replay_batch()? {
                self.ready
                    .extend(batch.into_iter().map(|e| Arc::new(Live::new(e))));
                continue;
            }
            match self.recv_live().await {
                Err(FollowError::Lagged { .. }) => self.restart = true,
                other => return other,
            }
        }
    }

    /// The last seq handed out.
    pub fn last(&self) -> u64 {
        self.last
    }
}
