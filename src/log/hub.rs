//! Fan-out of committed entries to live subscribers. Publishing never waits on a subscriber.
//! The ring is bounded: a subscriber that falls behind gets `Lagged` and must resume from the log.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::entry::Entry;

#[derive(Clone, Debug)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Entry>>,
}

impl Hub {
    /// `capacity` entries are kept for slow subscribers before they are told they lagged.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        Self { tx }
    }

    /// Hands committed entries, in seq order, to every subscriber.
    pub fn publish(&self, entries: Vec<Entry>) {
        for e in entries {
            // An error only means there are no subscribers right now.
            let _ = self.tx.send(Arc::new(e));
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Entry>> {
        self.tx.subscribe()
    }
}
