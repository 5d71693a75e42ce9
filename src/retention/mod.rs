//! Retention: purging entries' payloads (never the chain) by policy, in small rate-limited
//! batches through the writer, restorable for a grace period, never above HQ's acknowledged seq.
//!
//! Hook for other domains (search index, views): [`Retention::add_hook`] takes a function run in
//! the same write transaction as each purge or restore batch, with the seqs it changed; a view
//! that holds an entry's content forgets (or re-reads) those seqs there. Register hooks in
//! `state::retention`, the one place a `Retention` is built (server task, CLI and API alike). Each
//! batch's seqs are also returned in [`PassReport::purged`] and logged in a `retention.purged`
//! entry.

pub mod commands;
pub mod policy;
mod purge;
#[cfg(test)]
mod tests;

pub use policy::{Class, ClassKeeps, Keep, RetentionConfig, SITE_SCOPE, ScopeRow, stream_scope};
pub use purge::{Change, Floor, Hook, PassReport, Retention, RetentionError, STREAM, ranges};
