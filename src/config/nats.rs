//! `[replication.nats]`: HQ's forwarding of every replicated entry to a NATS JetStream stream
//! (`docs/replication.md`). Off while `url` is absent; only an HQ may set it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, bounded, invalid};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// `nats://host:port` (or `tls://…`); forwarding is off while absent.
    pub url: Option<String>,
    /// The JetStream stream that takes the subjects `plantwire.>`.
    pub stream: String,
    /// Create the stream (file storage, `plantwire.>`, `duplicate_window_secs`) when missing;
    /// when false, a missing stream is retried until an operator creates it.
    pub create_stream: bool,
    /// The duplicate window of a stream this server creates: the span within which a republish
    /// after an HQ crash is dropped by JetStream (see the exactly-once limits).
    pub duplicate_window_secs: u64,
    /// PEM file of the CA that signed the NATS server's certificate (for `tls://`).
    pub ca_file: Option<PathBuf>,
    /// Publishes awaiting their PubAck at once (per site, one site at a time).
    pub max_in_flight: usize,
    /// How long a PubAck may take before the publish counts as failed and is retried.
    pub ack_timeout_secs: u64,
    /// The cursor file is rewritten after this many acknowledged entries (and at the end of each
    /// run of publishes): the most a crash can leave to republish.
    pub persist_every: u64,
    /// Every this many seconds every site is looked at, besides the sites whose replica took a
    /// batch (a safety net, and the retry of a site that failed on its own).
    pub sweep_secs: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: None,
            stream: "PLANTWIRE".into(),
            create_stream: true,
            duplicate_window_secs: 120,
            ca_file: None,
            max_in_flight: 256,
            ack_timeout_secs: 10,
            persist_every: 256,
            sweep_secs: 60,
        }
    }
}

impl NatsConfig {
    /// Whether forwarding is configured.
    pub fn enabled(&self) -> bool {
        self.url.is_some()
    }

    pub(super) fn validate(&self, hq: bool) -> Result<(), ConfigError> {
        let Some(url) = &self.url else {
            return Ok(());
        };
        if !hq {
            return Err(invalid(
                "replication.nats.url",
                "only an HQ (replication.role = \"hq\") forwards to NATS",
            ));
        }
        if url.trim().is_empty() || url.len() > 1024 {
            return Err(invalid("replication.nats.url", "1-1024 characters"));
        }
        let name_ok = !self.stream.is_empty()
            && self.stream.len() <= 64
            && self
                .stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
        if !name_ok {
            return Err(invalid(
                "replication.nats.stream",
                "1-64 characters of A-Z, a-z, 0-9, '-', '_'",
            ));
        }
        bounded(
            "replication.nats.duplicate_window_secs",
            self.duplicate_window_secs,
            1,
            7 * 86_400,
        )?;
        bounded(
            "replication.nats.max_in_flight",
            self.max_in_flight,
            1,
            10_000,
        )?;
        bounded(
            "replication.nats.ack_timeout_secs",
            self.ack_timeout_secs,
            1,
            300,
        )?;
        bounded(
            "replication.nats.persist_every",
            self.persist_every,
            1,
            100_000,
        )?;
        bounded("replication.nats.sweep_secs", self.sweep_secs, 1, 3600)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ReplicationRole};

    #[test]
    fn forwarding_is_for_an_hq_with_bounded_settings() {
        let off = Config::from_toml_str("[replication.nats]\nstream = \"S\"\n").unwrap();
        assert!(!off.replication.nats.enabled());
        off.validate().unwrap();
        let edge = "[replication]\nrole = \"edge\"\n[replication.nats]\nurl = \"nats://n:4222\"\n";
        let err = Config::from_toml_str(edge).unwrap_err();
        assert!(err.to_string().contains("replication.nats.url"), "{err}");
        let hq = Config::from_toml_str(&edge.replace("edge", "hq")).unwrap();
        assert_eq!(hq.replication.role, ReplicationRole::Hq);
        assert!(hq.replication.nats.enabled());
        hq.validate().unwrap();
        for (key, f) in [
            (
                "replication.nats.stream",
                (|c: &mut Config| c.replication.nats.stream = "plantwire.x".into())
                    as fn(&mut Config),
            ),
            ("replication.nats.max_in_flight", |c| {
                c.replication.nats.max_in_flight = 0
            }),
            ("replication.nats.persist_every", |c| {
                c.replication.nats.persist_every = 0
            }),
            ("replication.nats.sweep_secs", |c| {
                c.replication.nats.sweep_secs = 0
            }),
            ("replication.nats.url", |c| {
                c.replication.nats.url = Some(" ".into())
            }),
        ] {
            let mut bad = hq.clone();
            f(&mut bad);
            let err = bad.validate().unwrap_err();
            assert!(err.to_string().contains(key), "{key}: {err}");
        }
        let unknown = "[replication.nats]\nsubject = \"x\"\n";
        assert!(Config::from_toml_str(unknown).is_err());
    }
}
