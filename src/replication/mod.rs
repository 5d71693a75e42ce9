//! Site-to-headquarters replication: the wire format, the edge's shipper and cursor, HQ's
//! replicas of every site and its witnessing of their checkpoints, enrolment and the transport.

pub mod backup;
pub mod blobs;
pub mod commands;
pub mod edge;
pub mod gap;
pub mod grants;
pub mod hq;
pub mod nats;
pub mod net;
pub mod renew;
pub mod retention;
pub mod runtime;
pub mod ship;
pub mod sites;
mod sizer;
pub mod views;
pub mod wire;
pub mod witness;

use crate::error::Rejection;
use crate::log::checkpointer::CheckpointStartError;
use crate::log::read::ReadError;
use crate::log::{FollowError, SubmitError};
use crate::store::StoreError;

pub use hq::{Ack, Replicas, ReplicasConfig, SiteStatus};
pub use wire::{Batch, WireError};

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Submit(SubmitError),
    #[error(transparent)]
    Follow(#[from] FollowError),
    #[error("cannot encode replication state: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("cannot read the site signing key: {0}")]
    Checkpoint(#[source] CheckpointStartError),
    #[error(transparent)]
    Net(net::NetError),
    #[error("site certificate: {0}")]
    Issue(#[from] crate::tls::issue::IssueError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Bootstrap(#[from] crate::bootstrap::BootstrapError),
    #[error("a blocking task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error(transparent)]
    NatsAuth(#[from] nats::auth::NatsAuthError),
    #[error("cannot use {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<SubmitError> for ReplicationError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Rejected(r) => Self::Rejected(r),
            other => Self::Submit(other),
        }
    }
}

impl ReplicationError {
    pub(crate) fn from_checkpoint(e: CheckpointStartError) -> Self {
        Self::Checkpoint(e)
    }

    /// The refusal, when a rule refused (as opposed to a failure).
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            Self::Rejected(r) => Some(r),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_chain_v2;
#[cfg(test)]
mod tests_gap;
