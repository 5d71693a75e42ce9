//! The site's append-only, hash-chained log: entries, the single-writer sequencer, the hub that
//! fans committed entries out, and the audit walk. Writes go only through the sequencer.

pub mod entry;
pub mod hub;
pub mod read;
pub mod sequencer;
pub mod tx;
pub mod verify;

pub use entry::{Entry, NewEntry};
pub use hub::Hub;
pub use sequencer::{Sequencer, SequencerConfig, SubmitError};
pub use tx::{AppendError, Tx};
pub use verify::{Problem, VerifyReport, verify};
