//! Layered, strict configuration: defaults, then the TOML file, then `PLANTWIRE_*` environment
//! (`__` nests), then command-line flags. Unknown keys are errors that name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Where the config file is looked for when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/plantwire/plantwire.toml";
/// The packaged service's state directory (`StateDirectory=plantwire`), used when it exists.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/plantwire";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid configuration: {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// The level names a filter directive may use.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// A log filter: comma-separated `target=level` directives and bare default levels. Span and
/// field filters (`[…]`, `{…}`), empty pieces and unknown level names are refused rather than
/// silently matching nothing (a bare `debugg` would otherwise name a target and turn every other
/// log line off). A filter that keeps even plantwire's errors out is refused too: the server
/// would start and print nothing, not even where it listens.
pub fn log_filter(spec: &str) -> Result<tracing_subscriber::filter::Targets, String> {
    let mut pieces = Vec::new();
    for piece in spec.split(',').map(str::trim) {
        if piece.is_empty() {
            return Err(format!("`{spec}` has an empty directive"));
        }
        if piece.contains(|c: char| "[]{}".contains(c) || c.is_whitespace()) {
            return Err(format!(
                "`{piece}`: only `target=level` and bare levels are supported"
            ));
        }
        let level = piece.rsplit_once('=').map_or(piece, |(_, level)| level);
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "`{piece}`: `{level}` is not a level (one of {})",
                LEVELS.join(", ")
            ));
        }
        pieces.push(piece);
    }
    let filter: tracing_subscriber::filter::Targets = pieces
        .join(",")
        .parse()
        .map_err(|e| format!("`{spec}`: {e}"))?;
    if !filter.would_enable("plantwire", &tracing::Level::ERROR) {
        return Err(format!(
            "`{spec}` silences plantwire's own messages, errors included; use at least `error`"
        ));
    }
    Ok(filter)
}

/// `listen = "0.0.0.0:8443"` as well as `listen = ["0.0.0.0:8443", "[::]:8443"]`; a bad
/// address is named.
fn one_or_many_addrs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let texts = match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    };
    texts
        .iter()
        .map(|t| {
            t.trim().parse().map_err(|_| {
                serde::de::Error::custom(format!(
                    "`{t}` is not an address with a port, such as 0.0.0.0:8443 or [::]:8443"
                ))
            })
        })
        .collect()
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Format version of this file; must be 1.
    pub version: u32,
    /// Site (tenant) name: lower-case letters, digits, `-`, `_`, `.`; defaults to the host name.
    pub site: Option<String>,
    /// State directory; defaults to `$STATE_DIRECTORY` under systemd, else `./plantwire-data`.
    pub state_dir: Option<PathBuf>,
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub storage: StorageConfig,
    pub log: LogConfig,
    pub events: EventsConfig,
    pub auth: AuthConfig,
    pub chat: ChatConfig,
    pub metrics: MetricsConfig,
    pub discovery: DiscoveryConfig,
}

/// `/metrics`: who may scrape it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics` at all.
    pub enabled: bool,
    /// A file holding a bearer token that may scrape (a secret: must not be world-readable).
    /// Admins signed in may always scrape.
    pub token_file: Option<PathBuf>,
}

/// mDNS announcement of `_plantwire._tcp.local.`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    /// Announce this server on the LAN.
    pub enabled: bool,
    /// Interface names to announce on; empty means every non-loopback interface.
    pub interfaces: Vec<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            token_file: None,
        }
    }
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interfaces: Vec::new(),
        }
    }
}

/// Who may create an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Only admins create accounts.
    Closed,
    /// Anyone may ask; the account stays disabled until an admin approves it.
    Approval,
    /// Anyone may create an active account.
    Open,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub registration: Registration,
    /// Lifetime of an access token (JWT).
    pub access_ttl_secs: u64,
    /// Lifetime of a session (refresh token family) without use.
    pub refresh_ttl_secs: u64,
    /// Clock skew tolerated when checking token times.
    pub leeway_secs: u64,
    /// argon2id memory in KiB (OWASP minimum 19456). Lower only in tests.
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// Password hashes computed at once; each needs `argon2_memory_kib` of memory.
    pub max_concurrent_hashes: usize,
    /// Failed logins from one address for one user before delays start.
    pub throttle_after: u32,
    /// Longest delay a throttled login waits, seconds.
    pub throttle_max_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// One address or a list of them.
    #[serde(deserialize_with = "one_or_many_addrs")]
    pub listen: Vec<SocketAddr>,
    /// Open connections at most; at the cap the connection idle the longest is closed first.
    pub max_connections: usize,
    /// Open connections from one IP address at most (same eviction rule, within that address).
    pub max_connections_per_address: usize,
    pub handshake_timeout_secs: u64,
    /// Seconds from the end of the handshake until the first request head must be complete.
    pub first_request_timeout_secs: u64,
    /// Seconds a connection (HTTP/1.1 keep-alive or HTTP/2) may stay open with no request in
    /// flight; an open WebSocket is a request in flight.
    pub idle_timeout_secs: u64,
    pub header_read_timeout_secs: u64,
    pub keep_alive_secs: u64,
    pub drain_timeout_secs: u64,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    /// Answer plaintext HTTP on the TLS port with a bare redirect to https (else just close).
    pub redirect_plaintext: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain; when unset, a site CA and server certificate are generated.
    pub cert_file: Option<PathBuf>,
    /// PEM private key for `cert_file` (a secret: must not be world-readable).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificate to offer at `/ca.crt` when `cert_file` is set.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// The data key, base64 (32 bytes). Prefer `data_key_file` or a systemd credential.
    pub data_key: Option<String>,
    /// A file holding the data key (raw 32 bytes or base64); must not be world-readable.
    pub data_key_file: Option<PathBuf>,
    /// Appends that may wait for the writer before callers get 503.
    pub queue_capacity: usize,
    /// Most appends committed in one transaction.
    pub max_batch: usize,
    /// redb page cache.
    pub cache_mib: usize,
    /// Committed entries kept for live subscribers that fall behind.
    pub hub_capacity: usize,
    /// A backward step of the wall clock larger than this many seconds is logged as a
    /// `clock.stepped` entry.
    pub clock_step_secs: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `plantwire=debug`; `RUST_LOG` wins when set.
    pub level: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Most events in one batch request.
    pub max_batch: usize,
    /// Largest serialized event.
    pub max_event_bytes: usize,
    /// Most rows one `GET /api/v1/events/export` writes before it ends.
    pub export_max_rows: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            version: 1,
            site: None,
            state_dir: None,
            server: ServerConfig::default(),
            tls: TlsConfig::default(),
            storage: StorageConfig::default(),
            log: LogConfig::default(),
            events: EventsConfig::default(),
            auth: AuthConfig::default(),
            chat: ChatConfig::default(),
            metrics: MetricsConfig::default(),
            discovery: DiscoveryConfig::default(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            registration: Registration::Approval,
            access_ttl_secs: 900,
            refresh_ttl_secs: 30 * 24 * 3600,
            leeway_secs: 30,
            argon2_memory_kib: 19456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            max_concurrent_hashes: 2,
            throttle_after: 5,
            throttle_max_secs: 900,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 8443))],
            max_connections: 1024,
            max_connections_per_address: 64,
            handshake_timeout_secs: 10,
            first_request_timeout_secs: 10,
            idle_timeout_secs: 60,
            header_read_timeout_secs: 30,
            keep_alive_secs: 60,
            drain_timeout_secs: 10,
            max_body_bytes: 1 << 20,
            max_header_bytes: 64 << 10,
            redirect_plaintext: true,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_key: None,
            data_key_file: None,
            queue_capacity: 8192,
            max_batch: 1024,
            cache_mib: 64,
            hub_capacity: 4096,
            clock_step_secs: 60,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// Who may open a direct conversation with whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectMessages {
    /// Any user of the site.
    Anyone,
    /// Only users who accepted each other's contact request.
    Contacts,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatConfig {
    /// Longest message text, in bytes.
    pub max_message_bytes: usize,
    pub direct_messages: DirectMessages,
    /// Most members of one group or channel.
    pub max_members: usize,
    /// Largest attachment, in bytes.
    pub max_attachment_bytes: usize,
    /// Largest WebSocket frame a client may send.
    pub ws_max_frame_bytes: usize,
    /// Open WebSocket connections per user.
    pub ws_max_per_user: usize,
    /// Seconds between server pings; a peer silent for 3 intervals is dropped.
    pub ws_ping_secs: u64,
    /// A frame the client does not take within this many seconds ends the connection.
    pub ws_send_timeout_secs: u64,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 << 10,
            direct_messages: DirectMessages::Anyone,
            max_members: 1000,
            max_attachment_bytes: 5 << 20,
            ws_max_frame_bytes: 64 << 10,
            ws_max_per_user: 16,
            ws_ping_secs: 20,
            ws_send_timeout_secs: 10,
        }
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            max_batch: 1000,
            max_event_bytes: 16 << 10,
            export_max_rows: 1_000_000,
        }
    }
}

/// Values given as command-line flags; they override everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub state_dir: Option<PathBuf>,
    pub listen: Vec<SocketAddr>,
}

impl Config {
    /// Loads the layers. `path` is `--config`; without it the default path is used if present.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = Self::file_used(path)? {
            fig = fig.merge(Toml::file_exact(file));
        }
        // PLANTWIRE_CONFIG is the --config flag; PLANTWIRE_ARTIFACTS tells the tests where CI put
        // the release artifacts; neither is configuration.
        fig = fig.merge(
            Env::prefixed("PLANTWIRE_")
                .split("__")
                .ignore(&["config", "artifacts"]),
        );
        if let Some(dir) = &overrides.state_dir {
            fig = fig.merge(Serialized::default("state_dir", dir));
        }
        if !overrides.listen.is_empty() {
            fig = fig.merge(Serialized::default("server.listen", &overrides.listen));
        }
        let config: Config = fig.extract().map_err(|e| ConfigError::Parse(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// The config file [`Config::load`] reads: `path` (which must exist), else the default path
    /// when it exists, else none.
    pub fn file_used(path: Option<&Path>) -> Result<Option<PathBuf>, ConfigError> {
        match path {
            Some(p) if !p.exists() => Err(ConfigError::Missing(p.to_path_buf())),
            Some(p) => Ok(Some(p.to_path_buf())),
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
                Ok(Some(PathBuf::from(DEFAULT_CONFIG_PATH)))
            }
            None => Ok(None),
        }
    }

    /// What `config check` prints for a loaded config: the file and environment variables it
    /// came from, the effective site and state directory, then every value (the data key
    /// redacted).
    pub fn check_report(&self, file: Option<&Path>) -> Result<String, toml::ser::Error> {
        let mut shown = self.clone();
        if shown.storage.data_key.is_some() {
            shown.storage.data_key = Some("<redacted>".into());
        }
        let file = match file {
            Some(f) => f.display().to_string(),
            None => format!("none ({DEFAULT_CONFIG_PATH} does not exist; defaults apply)"),
        };
        let mut env: Vec<String> = std::env::vars()
            .map(|(k, _)| k)
            .filter(|k| {
                k.strip_prefix("PLANTWIRE_")
                    .is_some_and(|rest| !matches!(rest, "CONFIG" | "ARTIFACTS"))
            })
            .collect();
        env.sort();
        let env = if env.is_empty() {
            "none".to_string()
        } else {
            env.join(", ")
        };
        let state_dir = self.state_dir();
        let absolute = std::path::absolute(&state_dir).unwrap_or(state_dir);
        Ok(format!(
            "# configuration is valid\n# config file: {file}\n# environment: {env}\n# site: {}\n# state dir: {}\n{}",
            self.site(),
            absolute.display(),
            toml::to_string_pretty(&shown)?
        ))
    }

    /// Parses one TOML document on its own (no environment), as `config check` of a file does.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError::Parse(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.version != 1 {
            return Err(invalid("version", "must be 1"));
        }
        if let Some(site) = &self.site {
            validate_site(site)?;
        }
        let s = &self.server;
        if s.listen.is_empty() {
            return Err(invalid("server.listen", "needs at least one address"));
        }
        bounded("server.max_connections", s.max_connections, 1, 1_000_000)?;
        bounded(
            "server.max_connections_per_address",
            s.max_connections_per_address,
            1,
            1_000_000,
        )?;
        bounded(
            "server.first_request_timeout_secs",
            s.first_request_timeout_secs,
            1,
            300,
        )?;
        bounded("server.idle_timeout_secs", s.idle_timeout_secs, 1, 3600)?;
        bounded(
            "server.handshake_timeout_secs",
            s.handshake_timeout_secs,
            1,
            300,
        )?;
        bounded(
            "server.header_read_timeout_secs",
            s.header_read_timeout_secs,
            1,
            600,
        )?;
        bounded("server.keep_alive_secs", s.keep_alive_secs, 1, 3600)?;
        bounded("server.drain_timeout_secs", s.drain_timeout_secs, 0, 600)?;
        bounded("server.max_body_bytes", s.max_body_bytes, 1024, 256 << 20)?;
        bounded("server.max_header_bytes", s.max_header_bytes, 8192, 1 << 20)?;
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(_), None) => {
                return Err(invalid(
                    "tls.key_file",
                    "required when tls.cert_file is set",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "tls.cert_file",
                    "required when tls.key_file is set",
                ));
            }
            _ => {}
        }
        if self.tls.ca_file.is_some() && self.tls.cert_file.is_none() {
            return Err(invalid(
                "tls.ca_file",
                "only used together with tls.cert_file",
            ));
        }
        let st = &self.storage;
        if st.data_key.is_some() && st.data_key_file.is_some() {
            return Err(invalid(
                "storage.data_key",
                "set either data_key or data_key_file, not both",
            ));
        }
        if let Some(key) = &st.data_key {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::STANDARD.decode(key.trim());
            if key.len() != 32 && decoded.map_or(true, |k| k.len() != 32) {
                return Err(invalid(
                    "storage.data_key",
                    "must be 32 bytes in base64 (44 characters)",
                ));
            }
        }
        bounded("storage.queue_capacity", st.queue_capacity, 1, 1_000_000)?;
        bounded("storage.max_batch", st.max_batch, 1, 100_000)?;
        bounded("storage.cache_mib", st.cache_mib, 1, 65_536)?;
        bounded("storage.hub_capacity", st.hub_capacity, 16, 1_000_000)?;
        bounded("storage.clock_step_secs", st.clock_step_secs, 1, 86_400)?;
        log_filter(&self.log.level).map_err(|e| invalid("log.level", e))?;
        let a = &self.auth;
        bounded("auth.access_ttl_secs", a.access_ttl_secs, 30, 24 * 3600)?;
        bounded(
            "auth.refresh_ttl_secs",
            a.refresh_ttl_secs,
            300,
            365 * 24 * 3600,
        )?;
        bounded("auth.leeway_secs", a.leeway_secs, 0, 300)?;
        bounded("auth.argon2_memory_kib", a.argon2_memory_kib, 8, 4 << 20)?;
        bounded("auth.argon2_iterations", a.argon2_iterations, 1, 100)?;
        bounded("auth.argon2_parallelism", a.argon2_parallelism, 1, 16)?;
        bounded(
            "auth.max_concurrent_hashes",
            a.max_concurrent_hashes,
            1,
            256,
        )?;
        bounded("auth.throttle_after", a.throttle_after, 1, 1000)?;
        bounded("auth.throttle_max_secs", a.throttle_max_secs, 1, 24 * 3600)?;
        for name in &self.discovery.interfaces {
            let ok = !name.is_empty()
                && name.len() <= 15
                && name.chars().all(|c| c.is_ascii_graphic() && c != '/');
            if !ok {
                return Err(invalid(
                    "discovery.interfaces",
                    format!("{name:?} is not an interface name"),
                ));
            }
        }
        bounded("events.max_batch", self.events.max_batch, 1, 100_000)?;
        bounded(
            "events.max_event_bytes",
            self.events.max_event_bytes,
            256,
            1 << 20,
        )?;
        bounded(
            "events.export_max_rows",
            self.events.export_max_rows,
            1,
            100_000_000,
        )?;
        let c = &self.chat;
        bounded("chat.max_message_bytes", c.max_message_bytes, 1, 256 << 10)?;
        bounded("chat.max_members", c.max_members, 2, 100_000)?;
        bounded(
            "chat.max_attachment_bytes",
            c.max_attachment_bytes,
            1 << 10,
            64 << 20,
        )?;
        bounded(
            "chat.ws_max_frame_bytes",
            c.ws_max_frame_bytes,
            c.max_message_bytes + 1024,
            4 << 20,
        )?;
        bounded("chat.ws_max_per_user", c.ws_max_per_user, 1, 1000)?;
        bounded("chat.ws_ping_secs", c.ws_ping_secs, 1, 3600)?;
        bounded("chat.ws_send_timeout_secs", c.ws_send_timeout_secs, 1, 3600)?;
        Ok(())
    }

    /// The state directory: `state_dir` (config or `--state-dir`), else systemd's
    /// `$STATE_DIRECTORY`, else /var/lib/plantwire when it exists, else ./plantwire-data.
    pub fn state_dir(&self) -> PathBuf {
        if let Some(dir) = &self.state_dir {
            return dir.clone();
        }
        // systemd may pass several, separated by ':'; the first is ours.
        match std::env::var_os("STATE_DIRECTORY") {
            Some(v) if !v.is_empty() => {
                let s = v.to_string_lossy().into_owned();
                PathBuf::from(s.split(':').next().unwrap_or_default())
            }
            _ if Path::new(DEFAULT_STATE_DIR).is_dir() => PathBuf::from(DEFAULT_STATE_DIR),
            _ => PathBuf::from("plantwire-data"),
        }
    }

    /// The site name after defaults: configured, or derived from the host name.
    pub fn site(&self) -> String {
        if let Some(site) = &self.site {
            return site.clone();
        }
        let host = gethostname::gethostname().to_string_lossy().to_lowercase();
        let cleaned: String = host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .take(64)
            .collect();
        if cleaned.is_empty() {
            "site".into()
        } else {
            cleaned
        }
    }
}

fn validate_site(site: &str) -> Result<(), ConfigError> {
    let ok = !site.is_empty()
        && site.len() <= 64
        && site
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "site",
            "1-64 characters of a-z, 0-9, '-', '_', '.'",
        ))
    }
}

fn bounded<T: PartialOrd + std::fmt::Display>(
    key: &'static str,
    v: T,
    min: T,
    max: T,
) -> Result<(), ConfigError> {
    if v < min || v > max {
        return Err(invalid(key, format!("{v} is outside {min}..={max}")));
    }
    Ok(())
}

/// Figment's message plus where the value came from (file and key).
fn describe(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| {
            let mut s = e.to_string();
            if let Some(meta) = &e.metadata {
                if let Some(src) = &meta.source {
                    s.push_str(&format!(" (in {src})"));
                }
            }
            s
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_filters_take_targets_and_levels_only() {
        for ok in ["info", "warn,plantwire=debug", " info , redb=warn "] {
            assert!(super::log_filter(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "info,",
            "info,,debug",
            "plantwire[request]=debug",
            "x[{a=1}]=debug",
            "plantwire=loud",
            "debugg",
            "off",
            "redb=warn",
            "plantwire=off,info",
            "info,plantwire=debugg",
        ] {
            assert!(super::log_filter(bad).is_err(), "{bad}");
        }
    }

    use super::*;

    #[test]
    fn listen_takes_one_address_or_a_list() {
        let one = Config::from_toml_str("[server]\nlisten = \"127.0.0.1:8443\"\n").unwrap();
        assert_eq!(
            one.server.listen,
            vec![SocketAddr::from(([127, 0, 0, 1], 8443))]
        );
        let two = Config::from_toml_str("[server]\nlisten = [\"0.0.0.0:8443\", \"[::]:8443\"]\n")
            .unwrap();
        assert_eq!(two.server.listen.len(), 2);
        let err = Config::from_toml_str("[server]\nlisten = \"localhost\"\n").unwrap_err();
        assert!(err.to_string().contains("`localhost`"), "{err}");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml_str("version = 1\n[server]\nlisten_port = 1\n").unwrap_err();
        assert!(err.to_string().contains("listen_port"), "{err}");
    }

    #[test]
    fn both_key_forms_refused() {
        let err = Config::from_toml_str("[storage]\ndata_key = \"x\"\ndata_key_file = \"/k\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("storage.data_key"), "{err}");
    }

    #[test]
    fn a_data_key_that_is_not_32_bytes_is_refused() {
        let err = Config::from_toml_str("[storage]\ndata_key = \"c2hvcnQ=\"\n").unwrap_err();
        assert!(err.to_string().contains("storage.data_key"), "{err}");
        let key = "A".repeat(43) + "=";
        assert!(Config::from_toml_str(&format!("[storage]\ndata_key = \"{key}\"\n")).is_ok());
    }

    #[test]
    fn bad_site_refused() {
        assert!(Config::from_toml_str("site = \"Plant 1\"\n").is_err());
        assert!(Config::from_toml_str("site = \"plant-1\"\n").is_ok());
    }
}
