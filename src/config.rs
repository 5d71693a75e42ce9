//! Layered, strict configuration: defaults, then the TOML file, then `PLANTWIRE_*` environment
//! (`__` nests), then command-line flags. Unknown keys are errors that name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

mod nats;
pub use nats::NatsConfig;

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
    pub alarms: AlarmsConfig,
    pub ingest: IngestConfig,
    pub devices: DevicesConfig,
    pub replication: ReplicationConfig,
    pub incidents: IncidentsConfig,
    /// Payload retention, legal hold and grace (`docs/operations.md`).
    pub retention: crate::retention::RetentionConfig,
    /// Attachment quota and unposted uploads (`docs/operations.md`).
    pub attachments: crate::chat::attachment_limits::AttachmentsConfig,
}

/// Incidents (`docs/incidents.md`): rules that open one incident per alarm occurrence.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentsConfig {
    pub rules: Vec<IncidentRule>,
    /// Named rosters a rule calls in with `roster = "NAME"`: name → usernames.
    pub rosters: std::collections::BTreeMap<String, Vec<String>>,
}

impl IncidentsConfig {
    /// Whom `rule` calls in: its `members`, then its roster's, each once.
    pub fn members_of(&self, rule: &IncidentRule) -> Vec<String> {
        let roster = rule.roster.as_ref().and_then(|r| self.rosters.get(r));
        let mut out: Vec<String> = Vec::new();
        for m in rule.members.iter().chain(roster.into_iter().flatten()) {
            if !out.contains(m) {
                out.push(m.clone());
            }
        }
        out
    }
}

/// `[[incidents.rules]]`: an alarm raised at or above `min_priority` whose source matches
/// `source` (`*` any run of characters, `?` one) opens an incident with `template`, with
/// `members` and the people of the named `roster` called in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentRule {
    pub name: String,
    #[serde(default = "default_rule_priority")]
    pub min_priority: crate::store::Priority,
    #[serde(default = "default_rule_source")]
    pub source: String,
    pub template: String,
    #[serde(default)]
    pub members: Vec<String>,
    /// A name in `[incidents.rosters]`.
    #[serde(default)]
    pub roster: Option<String>,
}

fn default_rule_priority() -> crate::store::Priority {
    crate::store::Priority::High
}

fn default_rule_source() -> String {
    "*".into()
}

/// Site-to-headquarters replication (`docs/replication.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicationRole {
    /// No replication.
    #[default]
    Off,
    /// Ship this site's log to HQ (after `plantwire replication enroll`).
    Edge,
    /// Take the logs of enrolled sites.
    Hq,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationConfig {
    pub role: ReplicationRole,
    /// HQ: where sites connect (mutual TLS); only with the generated site CA.
    #[serde(deserialize_with = "one_or_many_addrs")]
    pub listen: Vec<SocketAddr>,
    /// HQ: the `host:port` sites reach `listen` at, written into enrolment codes.
    pub advertise: Option<String>,
    /// HQ: how many site replicas stay open at once.
    pub max_open_sites: usize,
    /// Edge: entries per batch; under a backlog on a long round trip the shipper grows batches
    /// up to four times this (at most 10,000; `replication::sizer`).
    pub batch_entries: usize,
    /// Edge: a batch closes after about this many bytes of entries.
    pub batch_bytes: usize,
    /// Edge: bytes per second on the link to HQ; 0 = no cap.
    pub bandwidth_bytes_per_sec: u64,
    /// Edge: the stream classes shipped whole (events, alarms, incidents, chat, admin); the
    /// entries of the others travel as stubs (chain v2: with their content digest, re-hashed by
    /// HQ; chain v1: hash only). Default: every class.
    pub ship: Vec<String>,
    /// HQ: take legacy hash-only stubs (chain-v1 entries of a class a site does not ship). Off by
    /// default: HQ cannot check such a stub's seq, ts or prev against its hash, so a batch
    /// holding one is refused (`stubs_refused`); when on, a checkpoint covering one is not
    /// witnessed. Chain-v2 stubs are re-hashed and always taken.
    pub accept_stubs: bool,
    /// Edge: `never` (default), or `N days`: retention may then purge, by its normal rules,
    /// entries older than that which HQ has not acknowledged, each purge batch writing a signed
    /// `replication.gap` record in the same commit (src/replication/gap.rs).
    pub drop_unreplicated_after: crate::replication::gap::DropAfter,
    /// HQ: forward every replicated entry to NATS JetStream (off while `url` is absent).
    pub nats: NatsConfig,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            role: ReplicationRole::Off,
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 8445))],
            advertise: None,
            max_open_sites: 64,
            batch_entries: 512,
            batch_bytes: 1 << 20,
            bandwidth_bytes_per_sec: 0,
            ship: crate::retention::Class::ALL
                .iter()
                .map(|c| c.name().to_string())
                .collect(),
            accept_stubs: false,
            drop_unreplicated_after: crate::replication::gap::DropAfter::default(),
            nats: NatsConfig::default(),
        }
    }
}

/// Device certificates and the mutual-TLS device listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevicesConfig {
    /// Where devices connect with a client certificate (one address or a list; empty: none).
    /// Only with the generated site CA; browsers use `server.listen` and are never asked.
    #[serde(deserialize_with = "one_or_many_addrs")]
    pub listen: Vec<SocketAddr>,
    /// Lifetime of an issued device certificate, in days.
    pub cert_days: u32,
}

impl Default for DevicesConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 8444))],
            cert_days: 365,
        }
    }
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
    /// redb page cache, MiB. The process holds up to about twice this under sustained writes (the
    /// allocator's free space around the page buffers; docs/deployment.md, "Memory").
    pub cache_mib: usize,
    /// Committed entries kept for live subscribers that fall behind.
    pub hub_capacity: usize,
    /// A backward step of the wall clock larger than this many seconds is logged as a
    /// `clock.stepped` entry.
    pub clock_step_secs: u32,
    /// A signed checkpoint of the chain head after this many new entries…
    pub checkpoint_every: u64,
    /// …or after this many seconds when anything new was logged.
    pub checkpoint_secs: u32,
    /// Every commit records redb's allocator state, so opening the store after a crash or power
    /// cut skips the walk over the whole file (about 0.5 s per million entries), at the cost of
    /// a second fsync per commit.
    pub quick_repair: bool,
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
    /// How long an accepted idempotency key keeps answering `duplicate: true`, seconds.
    pub idempotency_window_secs: u64,
    /// Events per second a device may publish on average (token bucket refill).
    pub rate_per_sec: f64,
    /// Events a device may publish at once (token bucket size).
    pub burst: u32,
    /// Per-device overrides of `rate_per_sec` and `burst`, by device name.
    pub device_rates: std::collections::BTreeMap<String, DeviceRate>,
}

/// `[events.device_rates.<name>]`: one device's own token bucket.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRate {
    pub rate_per_sec: f64,
    pub burst: u32,
}

/// `[ingest]`: the adapters for senders that speak other protocols.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    pub grafana: GrafanaConfig,
}

/// `[ingest.grafana]`: the HMAC-SHA256 signature Grafana's webhook contact point can send.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrafanaConfig {
    /// The shared secret; when set (or `hmac_secret_file`), unsigned or badly signed
    /// notifications are refused. Prefer `hmac_secret_file`.
    pub hmac_secret: Option<String>,
    /// A file holding the secret (must not be world-readable).
    pub hmac_secret_file: Option<std::path::PathBuf>,
    /// The header carrying the signature.
    pub signature_header: Option<String>,
    /// The header carrying the timestamp signed as `timestamp:body`, if Grafana is set to send one.
    pub timestamp_header: Option<String>,
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
            alarms: AlarmsConfig::default(),
            ingest: IngestConfig::default(),
            devices: DevicesConfig::default(),
            replication: ReplicationConfig::default(),
            incidents: IncidentsConfig::default(),
            retention: crate::retention::RetentionConfig::default(),
            attachments: crate::chat::attachment_limits::AttachmentsConfig::default(),
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
            cache_mib: 32,
            hub_capacity: 4096,
            clock_step_secs: 60,
            checkpoint_every: 1000,
            checkpoint_secs: 60,
            quick_repair: false,
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
            idempotency_window_secs: 86_400,
            rate_per_sec: 100.0,
            burst: 1000,
            device_rates: std::collections::BTreeMap::new(),
        }
    }
}

/// `[alarms]`: the alarm model's site rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlarmsConfig {
    /// The longest shelve anyone may ask for, in minutes (one-shot shelves end there too).
    pub max_shelve_minutes: u32,
    /// The lowest role that may put an alarm out of service and return it to service.
    pub out_of_service_role: crate::store::Role,
    /// Priorities whose acknowledgement needs a comment.
    pub comment_required: Vec<crate::store::Priority>,
    /// The system alarm `plantwire/disk.almost_full` is active while the state directory's
    /// file system is more than this full, in percent (0 raises it whenever anything is used).
    pub disk_alarm_percent: u8,
    /// The earlier warning `plantwire/disk.filling` (medium) is active while the state
    /// directory's file system is more than this full, in percent.
    pub disk_warn_percent: u8,
    /// How often the system alarms are checked, in seconds of the server clock.
    pub system_check_secs: u64,
    /// Which system alarms plantwire raises (all by default).
    pub system_alarms: Vec<SystemAlarm>,
    /// `plantwire/queue.saturated` is raised when the write queue is at least this full, in
    /// percent of `storage.queue_capacity`, at two checks in a row.
    pub queue_alarm_percent: u8,
    /// `plantwire/tls.cert_expiring` is active while the served certificate or the site CA ends
    /// within this many days.
    pub cert_alarm_days: u32,
    /// `plantwire/replication.lag.<site>` is active while replication is more than this many
    /// seconds behind: at an edge, the age of the oldest entry HQ has not acknowledged; at HQ,
    /// per site, the age of the newest stored entry while the edge has more, or the time since
    /// the site was last heard from (an idle edge says hello every 30 s).
    pub replication_lag_secs: u64,
    /// `[alarms.escalation]`: direct messages to an on-call roster for unacknowledged alarms.
    pub escalation: EscalationConfig,
}

/// One of plantwire's own alarms (`alarms.system_alarms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SystemAlarm {
    /// `disk.almost_full`
    Disk,
    /// `queue.saturated`
    Queue,
    /// `tls.cert_expiring`
    Certificate,
    /// `clock.stepped`
    Clock,
    /// `alarm.flood`
    Flood,
    /// `replication.lag.<site>`
    #[serde(rename = "replication_lag")]
    ReplicationLag,
}

impl SystemAlarm {
    pub const ALL: [SystemAlarm; 6] = [
        SystemAlarm::Disk,
        SystemAlarm::Queue,
        SystemAlarm::Certificate,
        SystemAlarm::Clock,
        SystemAlarm::Flood,
        SystemAlarm::ReplicationLag,
    ];
}

/// `[alarms.escalation]`: an alarm at or above `min_priority` still unacknowledged `after_minutes`
/// after it was raised is sent to each person on `roster` as a direct message from `system`,
/// then again every `repeat_minutes` (0: once) until someone acknowledges it. An empty roster
/// turns escalation off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EscalationConfig {
    pub after_minutes: u32,
    pub repeat_minutes: u32,
    pub min_priority: crate::store::Priority,
    /// Usernames of the on-call people.
    pub roster: Vec<String>,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        Self {
            after_minutes: 15,
            repeat_minutes: 15,
            min_priority: crate::store::Priority::High,
            roster: Vec::new(),
        }
    }
}

impl Default for AlarmsConfig {
    fn default() -> Self {
        Self {
            max_shelve_minutes: 8 * 60,
            out_of_service_role: crate::store::Role::Admin,
            comment_required: Vec::new(),
            disk_alarm_percent: 90,
            disk_warn_percent: 80,
            system_check_secs: 60,
            system_alarms: SystemAlarm::ALL.to_vec(),
            replication_lag_secs: 600,
            queue_alarm_percent: 80,
            cert_alarm_days: 14,
            escalation: EscalationConfig::default(),
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

    /// A copy to show: every secret given by value (the data key, the Grafana HMAC secret, the
    /// NATS password and token) replaced by `<redacted>`; secret files are shown by path.
    pub fn redacted(&self) -> Config {
        let mut shown = self.clone();
        for secret in [
            &mut shown.storage.data_key,
            &mut shown.ingest.grafana.hmac_secret,
            &mut shown.replication.nats.password,
            &mut shown.replication.nats.token,
        ] {
            if secret.is_some() {
                *secret = Some("<redacted>".into());
            }
        }
        shown
    }

    /// What `config check` prints for a loaded config: the file and environment variables it
    /// came from, the effective site and state directory, then every value (the data key
    /// redacted).
    pub fn check_report(&self, file: Option<&Path>) -> Result<String, toml::ser::Error> {
        let shown = self.redacted();
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
        self.retention
            .validate()
            .map_err(|(key, message)| invalid(key, message))?;
        self.attachments
            .validate()
            .map_err(|(key, message)| invalid(key, message))?;
        bounded("devices.cert_days", self.devices.cert_days, 1, 3650)?;
        bounded(
            "alarms.queue_alarm_percent",
            self.alarms.queue_alarm_percent,
            0,
            100,
        )?;
        bounded(
            "alarms.cert_alarm_days",
            self.alarms.cert_alarm_days,
            0,
            3650,
        )?;
        let esc = &self.alarms.escalation;
        bounded(
            "alarms.escalation.after_minutes",
            esc.after_minutes,
            1,
            10_080,
        )?;
        bounded(
            "alarms.escalation.repeat_minutes",
            esc.repeat_minutes,
            0,
            10_080,
        )?;
        bounded("alarms.escalation.roster", esc.roster.len(), 0, 100)?;
        bounded("incidents.rules", self.incidents.rules.len(), 0, 100)?;
        for r in &self.incidents.rules {
            let slug = |s: &str, max: usize| {
                (1..=max).contains(&s.len())
                    && s.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                    })
            };
            if !slug(&r.name, 48) || !slug(&r.template, 48) {
                return Err(invalid(
                    "incidents.rules",
                    "name and template are 1-48 characters of a-z, 0-9, '-' and '_'",
                ));
            }
            if r.source.is_empty() || r.source.len() > 128 {
                return Err(invalid("incidents.rules.source", "1-128 characters"));
            }
            bounded("incidents.rules.members", r.members.len(), 0, 100)?;
            if let Some(roster) = &r.roster
                && !self.incidents.rosters.contains_key(roster)
            {
                return Err(invalid(
                    "incidents.rules.roster",
                    "names a roster that [incidents.rosters] does not define",
                ));
            }
        }
        bounded("incidents.rosters", self.incidents.rosters.len(), 0, 100)?;
        for (name, people) in &self.incidents.rosters {
            if name.is_empty() || name.len() > 48 {
                return Err(invalid("incidents.rosters", "names are 1-48 characters"));
            }
            bounded("incidents.rosters.<name>", people.len(), 0, 100)?;
        }
        let r = &self.replication;
        bounded("replication.max_open_sites", r.max_open_sites, 1, 10_000)?;
        bounded("replication.batch_entries", r.batch_entries, 1, 10_000)?;
        bounded("replication.batch_bytes", r.batch_bytes, 4096, 16 << 20)?;
        bounded("replication.ship", r.ship.len(), 0, 5)?;
        if let Some(bad) = r
            .ship
            .iter()
            .find(|n| crate::retention::Class::parse(n).is_none())
        {
            return Err(invalid(
                "replication.ship",
                format!(
                    "unknown class {bad:?}: a class is one of events, alarms, incidents, chat, admin"
                ),
            ));
        }
        if r.accept_stubs && r.role != ReplicationRole::Hq {
            return Err(invalid(
                "replication.accept_stubs",
                "only an HQ (role = \"hq\") takes stubs",
            ));
        }
        if r.drop_unreplicated_after.0.is_some() && r.role != ReplicationRole::Edge {
            return Err(invalid(
                "replication.drop_unreplicated_after",
                "only an edge (role = \"edge\") drops what HQ has not acknowledged",
            ));
        }
        if r.role == ReplicationRole::Hq && r.listen.is_empty() {
            return Err(invalid(
                "replication.listen",
                "an HQ needs at least one address",
            ));
        }
        r.nats.validate(r.role == ReplicationRole::Hq)?;
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
        bounded(
            "storage.checkpoint_every",
            st.checkpoint_every,
            1,
            1_000_000,
        )?;
        bounded("storage.checkpoint_secs", st.checkpoint_secs, 1, 86_400)?;
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
        bounded(
            "alarms.max_shelve_minutes",
            self.alarms.max_shelve_minutes,
            1,
            366 * 24 * 60,
        )?;
        bounded(
            "alarms.disk_alarm_percent",
            self.alarms.disk_alarm_percent,
            0,
            100,
        )?;
        bounded(
            "alarms.disk_warn_percent",
            self.alarms.disk_warn_percent,
            0,
            100,
        )?;
        bounded(
            "alarms.system_check_secs",
            self.alarms.system_check_secs,
            1,
            3600,
        )?;
        bounded(
            "alarms.replication_lag_secs",
            self.alarms.replication_lag_secs,
            60,
            7 * 24 * 3600,
        )?;
        self.validate_ingest()?;
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

    /// The `[events]` ingest limits and `[ingest]`.
    fn validate_ingest(&self) -> Result<(), ConfigError> {
        let e = &self.events;
        bounded(
            "events.idempotency_window_secs",
            e.idempotency_window_secs,
            60,
            90 * 86_400,
        )?;
        let rate_ok = |r: f64| r.is_finite() && (0.001..=1_000_000.0).contains(&r);
        if !rate_ok(e.rate_per_sec) {
            return Err(invalid("events.rate_per_sec", "must be 0.001-1000000"));
        }
        bounded("events.burst", e.burst, 1, 1_000_000)?;
        for (name, r) in &e.device_rates {
            if !rate_ok(r.rate_per_sec) || !(1..=1_000_000).contains(&r.burst) {
                return Err(invalid(
                    "events.device_rates",
                    format!("{name}: rate_per_sec must be 0.001-1000000 and burst 1-1000000"),
                ));
            }
        }
        let g = &self.ingest.grafana;
        if g.hmac_secret.is_some() && g.hmac_secret_file.is_some() {
            return Err(invalid(
                "ingest.grafana.hmac_secret",
                "set either hmac_secret or hmac_secret_file, not both",
            ));
        }
        if g.hmac_secret.as_ref().is_some_and(|s| s.trim().is_empty()) {
            return Err(invalid("ingest.grafana.hmac_secret", "must not be empty"));
        }
        for (key, h) in [
            ("ingest.grafana.signature_header", &g.signature_header),
            ("ingest.grafana.timestamp_header", &g.timestamp_header),
        ] {
            let token = |h: &String| {
                !h.is_empty()
                    && h.len() <= 64
                    && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            };
            if h.as_ref().is_some_and(|h| !token(h)) {
                return Err(invalid(key, "must be 1-64 characters of A-Z a-z 0-9 -"));
            }
        }
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
    fn replication_ship_takes_class_names_and_refuses_others() {
        assert_eq!(Config::default().replication.ship.len(), 5);
        let one = Config::from_toml_str("[replication]\nship = [\"events\"]\n").unwrap();
        assert_eq!(one.replication.ship, vec!["events".to_string()]);
        let none = Config::from_toml_str("[replication]\nship = []\n").unwrap();
        assert!(none.replication.ship.is_empty());
        let err =
            Config::from_toml_str("[replication]\nship = [\"events\", \"gossip\"]\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("replication.ship") && text.contains("\"gossip\""),
            "{text}"
        );
    }

    #[test]
    fn drop_unreplicated_after_is_never_by_default_and_only_for_an_edge() {
        use crate::replication::gap::DropAfter;
        assert_eq!(
            Config::default().replication.drop_unreplicated_after,
            DropAfter(None)
        );
        let edge = Config::from_toml_str(
            "[replication]\nrole = \"edge\"\ndrop_unreplicated_after = \"30 days\"\n",
        )
        .unwrap();
        assert_eq!(
            edge.replication.drop_unreplicated_after,
            DropAfter(Some(30))
        );
        for bad in [
            "[replication]\nrole = \"hq\"\ndrop_unreplicated_after = \"30 days\"\n",
            "[replication]\nrole = \"edge\"\ndrop_unreplicated_after = \"forever\"\n",
        ] {
            let err = Config::from_toml_str(bad).unwrap_err();
            assert!(err.to_string().contains("drop_unreplicated_after"), "{err}");
        }
    }

    #[test]
    fn replication_accept_stubs_is_off_by_default_and_only_for_an_hq() {
        assert!(!Config::default().replication.accept_stubs);
        let hq =
            Config::from_toml_str("[replication]\nrole = \"hq\"\naccept_stubs = true\n").unwrap();
        assert!(hq.replication.accept_stubs);
        let err = Config::from_toml_str("[replication]\nrole = \"edge\"\naccept_stubs = true\n")
            .unwrap_err();
        assert!(
            err.to_string().contains("replication.accept_stubs"),
            "{err}"
        );
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
