//! `[replication.nats]`: HQ's forwarding of every replicated entry to a NATS JetStream stream
//! (`docs/replication.md`). Off while `url` is absent; only an HQ may set it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, bounded, invalid};

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Authentication, at most one way: `user` with `password` or `password_file`; `token` or
    /// `token_file`; `credentials_file` (a NATS `.creds` file: user JWT and nkey seed); or
    /// `nkey_seed_file`. Files are secrets: refused when other users may read them.
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub credentials_file: Option<PathBuf>,
    pub nkey_seed_file: Option<PathBuf>,
}

/// Secrets are shown as set or not, never by value.
impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("NatsConfig")
            .field("url", &self.url)
            .field("stream", &self.stream)
            .field("create_stream", &self.create_stream)
            .field("duplicate_window_secs", &self.duplicate_window_secs)
            .field("ca_file", &self.ca_file)
            .field("max_in_flight", &self.max_in_flight)
            .field("ack_timeout_secs", &self.ack_timeout_secs)
            .field("persist_every", &self.persist_every)
            .field("sweep_secs", &self.sweep_secs)
            .field("user", &self.user)
            .field("password", &hidden(&self.password))
            .field("password_file", &self.password_file)
            .field("token", &hidden(&self.token))
            .field("token_file", &self.token_file)
            .field("credentials_file", &self.credentials_file)
            .field("nkey_seed_file", &self.nkey_seed_file)
            .finish()
    }
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
            user: None,
            password: None,
            password_file: None,
            token: None,
            token_file: None,
            credentials_file: None,
            nkey_seed_file: None,
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
            if let Some(&key) = self.auth_keys().first() {
                return Err(invalid(key, "only used together with replication.nats.url"));
            }
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
        self.validate_auth()
    }

    /// The authentication keys that are set, by their full names.
    fn auth_keys(&self) -> Vec<&'static str> {
        [
            ("replication.nats.user", self.user.is_some()),
            ("replication.nats.password", self.password.is_some()),
            (
                "replication.nats.password_file",
                self.password_file.is_some(),
            ),
            ("replication.nats.token", self.token.is_some()),
            ("replication.nats.token_file", self.token_file.is_some()),
            (
                "replication.nats.credentials_file",
                self.credentials_file.is_some(),
            ),
            (
                "replication.nats.nkey_seed_file",
                self.nkey_seed_file.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect()
    }

    /// At most one way to authenticate; a secret is a value or a file, never both; no empty value.
    fn validate_auth(&self) -> Result<(), ConfigError> {
        if self.password.is_some() && self.password_file.is_some() {
            return Err(invalid(
                "replication.nats.password",
                "set either password or password_file, not both",
            ));
        }
        if self.token.is_some() && self.token_file.is_some() {
            return Err(invalid(
                "replication.nats.token",
                "set either token or token_file, not both",
            ));
        }
        let has_password = self.password.is_some() || self.password_file.is_some();
        match &self.user {
            Some(u) if u.trim().is_empty() || u.len() > 256 || u.chars().any(char::is_control) => {
                return Err(invalid(
                    "replication.nats.user",
                    "1-256 characters, no control characters",
                ));
            }
            Some(_) if !has_password => {
                return Err(invalid(
                    "replication.nats.user",
                    "needs password or password_file",
                ));
            }
            None if has_password => {
                return Err(invalid(
                    "replication.nats.password",
                    "only used together with replication.nats.user",
                ));
            }
            _ => {}
        }
        for (key, v) in [
            ("replication.nats.password", &self.password),
            ("replication.nats.token", &self.token),
        ] {
            if v.as_ref().is_some_and(|s| s.is_empty() || s.len() > 4096) {
                return Err(invalid(key, "1-4096 characters"));
            }
        }
        let ways = [
            self.user.is_some(),
            self.token.is_some() || self.token_file.is_some(),
            self.credentials_file.is_some(),
            self.nkey_seed_file.is_some(),
        ];
        if ways.iter().filter(|w| **w).count() > 1 {
            return Err(invalid(
                "replication.nats",
                "set one way to authenticate: user with password(_file), token(_file), \
                 credentials_file or nkey_seed_file",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ReplicationRole};

    /// `config check` (offline and through the control socket) shows that a NATS password or
    /// token is set, never its value.
    #[test]
    fn config_check_never_prints_a_nats_secret() {
        let base = "[replication]\nrole = \"hq\"\n[replication.nats]\nurl = \"nats://n:4222\"\n";
        for way in [
            "user = \"hq\"\npassword = \"pw-9f3a\"\n",
            "token = \"pw-9f3a\"\n",
        ] {
            let c = Config::from_toml_str(&format!("{base}{way}")).unwrap();
            for shown in [
                c.check_report(None).unwrap(),
                // What the control socket's `config check` prints (`admin::render_config`).
                toml::to_string_pretty(&c.redacted()).unwrap(),
            ] {
                assert!(!shown.contains("pw-9f3a"), "{shown}");
                assert!(shown.contains("<redacted>"), "{shown}");
            }
        }
    }

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

    #[test]
    fn one_way_to_authenticate_and_a_secret_is_a_value_or_a_file() {
        let base = "[replication]\nrole = \"hq\"\n[replication.nats]\nurl = \"nats://n:4222\"\n";
        for ok in [
            "user = \"hq\"\npassword = \"p\"\n",
            "user = \"hq\"\npassword_file = \"/p\"\n",
            "token_file = \"/t\"\n",
            "token = \"t\"\n",
            "credentials_file = \"/c.creds\"\n",
            "nkey_seed_file = \"/n\"\n",
        ] {
            let c = Config::from_toml_str(&format!("{base}{ok}")).unwrap();
            c.validate().unwrap();
        }
        for (bad, key) in [
            (
                "user = \"hq\"\npassword = \"p\"\npassword_file = \"/p\"\n",
                "replication.nats.password",
            ),
            (
                "token = \"t\"\ntoken_file = \"/t\"\n",
                "replication.nats.token",
            ),
            ("user = \"hq\"\n", "replication.nats.user"),
            ("password = \"p\"\n", "replication.nats.password"),
            ("user = \" \"\npassword = \"p\"\n", "replication.nats.user"),
            ("token = \"\"\n", "replication.nats.token"),
            (
                "token = \"t\"\ncredentials_file = \"/c\"\n",
                "one way to authenticate",
            ),
            (
                "user = \"hq\"\npassword = \"p\"\nnkey_seed_file = \"/n\"\n",
                "one way to authenticate",
            ),
        ] {
            let err = Config::from_toml_str(&format!("{base}{bad}")).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(key), "{bad}: {text}");
            assert!(!text.contains("\"p\""), "{text}");
        }
        let no_url = "[replication.nats]\ntoken = \"t\"\n";
        let err = Config::from_toml_str(no_url).unwrap_err();
        assert!(err.to_string().contains("replication.nats.token"), "{err}");
    }
}
