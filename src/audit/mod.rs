//! Audit exports an auditor can check alone: the site's public key in a text form, the JSON Lines
//! export of a range of the log with its signed checkpoints, and the offline check of an export.

pub mod check;
pub mod commands;
pub mod export;
pub mod format;
pub mod key;

#[cfg(test)]
mod tests;

pub use check::{CheckFailure, CheckReport, check};
pub use export::{Bound, ExportError, ExportRequest, Plan, Walk, prepare};
pub use key::{KeyError, SiteKey};
