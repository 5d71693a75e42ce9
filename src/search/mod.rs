//! Full-text search over sealed data: a blind inverted index in the store (token MACs → sealed
//! posting blocks), kept by a log follower, queried with the viewer's visibility applied.
//!
//! `docs/search.md` has the design, what leaks and the bounds.

pub mod indexer;
pub mod postings;
pub mod query;
pub mod tokenize;
pub mod walk;

pub use indexer::{IndexError, catch_up, reindex};
pub use query::{Hit, HitKind, Query, Results, SearchError, search};

use crate::log::{AppendError, Log, SubmitError, Tx};

/// How far behind the head a search lets the index be before it answers: up to this many
/// entries are indexed on the spot first (what a search just after a send expects to find);
/// more is left to the background indexer and the answer says how far the index reached.
pub const CATCH_UP: u64 = 4_096;

/// Drops `seqs` from search for good (a retention purge calls this in its own job): their
/// postings stay until a reindex, but no query shows them.
pub fn forget_in_tx(tx: &mut Tx<'_>, seqs: &[u64]) -> Result<(), AppendError> {
    for &seq in seqs {
        tx.views().put_search_forgotten(seq)?;
    }
    Ok(())
}

/// [`forget_in_tx`] as a job of its own.
pub async fn forget(log: &Log, seqs: Vec<u64>) -> Result<(), SubmitError> {
    log.submit(move |tx| forget_in_tx(tx, &seqs)).await
}
