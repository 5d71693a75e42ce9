//! The site's append-only, hash-chained log: entries, the single-writer sequencer, the hub that
//! fans committed entries out, and the audit walk. Writes go only through the sequencer.

mod author;
pub mod checkpoint;
pub mod checkpointer;
pub mod entry;
pub mod follow;
mod handle;
pub mod hub;
pub mod read;
pub mod sequencer;
pub mod tx;
pub mod verify;

pub use author::Author;
pub use entry::{Entry, NewEntry};
pub use follow::{FollowError, Follower};
pub use handle::{Log, LogOptions};
pub use hub::{Hub, Live};
pub use sequencer::{Sequencer, SequencerConfig, SubmitError};
pub use tx::{AppendError, Tx};
pub use verify::{Problem, VerifyReport, verify};

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_chain;
