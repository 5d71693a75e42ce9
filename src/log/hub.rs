//! Fan-out of committed entries to live subscribers. Publishing never waits on a subscriber.
//! The ring is bounded: a subscriber that falls behind gets `Lagged` and must resume from the log.

use std::any::Any;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use tokio::sync::broadcast;

use super::entry::Entry;

/// A committed entry as the hub hands it to every subscriber, with one slot for a rendering of it
/// that all subscribers share (the WebSocket frame): the first subscriber to ask fills it, the
/// others clone it. The log never looks inside the slot, so it names no consumer's types.
#[derive(Debug)]
pub struct Live {
    entry: Entry,
    shared: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl Live {
    pub fn new(entry: Entry) -> Self {
        Self {
            entry,
            shared: OnceLock::new(),
        }
    }

    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// The rendering `render` makes of this entry, made at most once per entry for everyone who
    /// asks with the same type `T` (a cheap clone, such as reference-counted bytes). `render`
    /// must depend on the entry alone, never on who asks. Asked for another type than the one
    /// the slot holds, `render` runs and its result is not kept.
    pub fn shared<T>(&self, render: impl Fn(&Entry) -> T) -> T
    where
        T: Any + Clone + Send + Sync,
    {
        let slot = self.shared.get_or_init(|| Box::new(render(&self.entry)));
        match slot.downcast_ref::<T>() {
            Some(value) => value.clone(),
            None => render(&self.entry),
        }
    }
}

impl Deref for Live {
    type Target = Entry;

    fn deref(&self) -> &Entry {
        &self.entry
    }
}

#[derive(Clone, Debug)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Live>>,
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
            let _ = self.tx.send(Arc::new(Live::new(e)));
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Live>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            site: "p1".into(),
            seq: 7,
            ts: 1,
            kind: "message".into(),
            stream: "c".into(),
            author: "user:ann".into(),
            body: b"{}".to_vec(),
            prev: [0; 32],
            hash: [1; 32],
            chain: crate::log::entry::ChainVersion::V2,
        }
    }

    #[test]
    fn a_rendering_is_made_once_and_shared() {
        let live = Live::new(entry());
        let runs = std::cell::Cell::new(0);
        let first: Arc<str> = live.shared(|e| {
            runs.set(runs.get() + 1);
            format!("frame {}", e.seq).into()
        });
        let second: Arc<str> = live.shared(|_| {
            runs.set(runs.get() + 1);
            "never".into()
        });
        assert_eq!(runs.get(), 1);
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(&*second, "frame 7");
    }

    #[test]
    fn another_type_is_rendered_but_not_kept() {
        let live = Live::new(entry());
        let kept: Arc<str> = live.shared(|_| "kept".into());
        let other: u64 = live.shared(|e| e.seq);
        assert_eq!(other, 7);
        let again: Arc<str> = live.shared(|_| "never".into());
        assert!(Arc::ptr_eq(&kept, &again));
    }
}
