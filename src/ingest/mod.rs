//! Ingest from machines: adapters that map other senders' formats (ntfy, Alertmanager, Grafana)
//! to events, and the per-device gate every publish passes (rate limit, statistics). Never names
//! HTTP types; the handlers in `http::ingest` are thin.

pub mod alerts;
pub mod limits;
pub mod ntfy;
pub mod ntfy_clear;
pub mod signature;
pub mod stats;

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::{EventsConfig, IngestConfig};
use crate::secret::{SecretError, read_secret_file};

pub use limits::Limited;
pub use stats::DeviceStats;

/// Why the ingest service could not start.
#[derive(Debug, thiserror::Error)]
pub enum IngestSetupError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("the secret file {0} is empty")]
    EmptySecret(std::path::PathBuf),
}

/// Grafana's default signature header.
pub const GRAFANA_SIGNATURE_HEADER: &str = "x-grafana-alerting-signature";

/// The ingest service of one server, held by the composition root.
#[derive(Debug)]
pub struct Ingest {
    limiter: limits::RateLimiter,
    stats: stats::Stats,
    grafana_secret: Option<Vec<u8>>,
    clock: Arc<dyn Clock>,
}

impl Ingest {
    /// Reads the Grafana secret file once, at start (a world-readable one is refused).
    pub fn new(
        events: &EventsConfig,
        ingest: &IngestConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, IngestSetupError> {
        let g = &ingest.grafana;
        let grafana_secret = match (&g.hmac_secret, &g.hmac_secret_file) {
            (Some(s), _) => Some(s.trim().as_bytes().to_vec()),
            (None, Some(path)) => {
                let raw = read_secret_file(path)?;
                let secret = String::from_utf8_lossy(&raw).trim().as_bytes().to_vec();
                if secret.is_empty() {
                    return Err(IngestSetupError::EmptySecret(path.clone()));
                }
                Some(secret)
            }
            (None, None) => None,
        };
        Ok(Self {
            limiter: limits::RateLimiter::new(events),
            stats: stats::Stats::default(),
            grafana_secret,
            clock,
        })
    }

    /// Takes `events` from `device`'s token bucket, or says how long to wait.
    pub fn admit(&self, device: &str, events: usize) -> Result<(), Limited> {
        self.limiter.admit(device, events, self.clock.now_us())
    }

    /// Records `events` accepted from `device`.
    pub fn published(&self, device: &str, events: usize) {
        self.stats.published(device, events, self.clock.now_us());
    }

    /// Records one refused request from `device`.
    pub fn refused(&self, device: &str) {
        self.stats.refused(device);
    }

    /// What an admin sees of `device` (zero since the start if it never published).
    pub fn stats(&self, device: &str) -> DeviceStats {
        self.stats.of(device, self.clock.now_us())
    }

    /// The shared secret Grafana signs with, if configured.
    pub fn grafana_secret(&self) -> Option<&[u8]> {
        self.grafana_secret.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::clock::SystemClock;

    fn with_file(contents: &str, mode: u32) -> (tempfile::TempDir, IngestConfig) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grafana.secret");
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let mut cfg = IngestConfig::default();
        cfg.grafana.hmac_secret_file = Some(path);
        (dir, cfg)
    }

    #[test]
    fn the_grafana_secret_file_must_be_private_and_not_empty() {
        let events = EventsConfig::default();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let (_d, ok) = with_file("s3cret\n", 0o600);
        let ingest = Ingest::new(&events, &ok, clock.clone()).unwrap();
        assert_eq!(ingest.grafana_secret(), Some(b"s3cret".as_slice()));
        let (_d, open) = with_file("s3cret\n", 0o644);
        assert!(matches!(
            Ingest::new(&events, &open, clock.clone()),
            Err(IngestSetupError::Secret(
                SecretError::WorldAccessible { .. }
            ))
        ));
        let (_d, empty) = with_file(" \n", 0o600);
        assert!(matches!(
            Ingest::new(&events, &empty, clock),
            Err(IngestSetupError::EmptySecret(_))
        ));
    }
}
