//! The command line: clap definitions and dispatch. Offline commands open the same store and call
//! the same domain functions as the server; when the server holds the store they say so.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};

use crate::admin::{Ctx, EXIT_CANNOT_OPEN, EXIT_FAILED, EXIT_USAGE, Outcome, Request};
use crate::bootstrap::STORE_FILE;
use crate::clock::SystemClock;
use crate::config::{Config, DEFAULT_CONFIG_PATH, DEFAULT_STATE_DIR, Overrides};
use crate::control::ControlSocket;
use crate::discovery::Announcer;
use crate::log::Author;
use crate::state::AppState;
use crate::store::Role;

#[derive(Debug, Parser)]
#[command(
    name = "plantwire",
    version,
    about = "Secure messaging and event log for plant networks"
)]
pub struct Cli {
    /// Config file (default: /etc/plantwire/plantwire.toml when it exists).
    #[arg(long, global = true, env = "PLANTWIRE_CONFIG")]
    pub config: Option<PathBuf>,
    /// State directory (overrides the config file and environment).
    #[arg(long, global = true)]
    pub state_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on (repeatable); overrides server.listen.
        #[arg(long)]
        listen: Vec<SocketAddr>,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Audit tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Create the state directory, data key and store (as the first `serve` would), then stop.
    Init,
    /// Manage devices (machines that publish events); through the running server when it runs.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Manage people's accounts; through the running server when it runs.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// List the plantwire servers announced on the LAN by mDNS, with their fingerprints.
    Discover {
        /// Seconds to listen.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a consistent backup of the store to FILE (through the running server when it runs).
    Backup {
        file: PathBuf,
        /// Replace FILE when it exists.
        #[arg(long)]
        force: bool,
    },
    /// Restore a backup into the state directory (server stopped).
    Restore {
        file: PathBuf,
        /// Replace an existing store (it is kept beside as plantwire.redb.before-restore-<time>).
        #[arg(long)]
        force: bool,
    },
    /// HQ: enrol, list and revoke replicating sites; through the running server when it runs.
    Site {
        #[command(subcommand)]
        command: crate::replication::commands::SiteCommand,
    },
    /// Edge: enrol at HQ, and replication status.
    Replication {
        #[command(subcommand)]
        command: ReplicationCommand,
    },
    /// Payload retention: status, purge now, restore, overrides and legal holds; through the
    /// running server when it runs.
    Retention {
        #[command(subcommand)]
        command: crate::retention::commands::RetentionCommand,
    },
    /// The full-text search index.
    Search {
        #[command(subcommand)]
        command: SearchCommand,
    },
    /// Print the version.
    Version,
}

#[derive(Debug, Subcommand)]
pub enum SearchCommand {
    /// Rebuilds the search index from the log (offline, or through the running server).
    Reindex,
}

#[derive(Debug, Subcommand)]
pub enum ReplicationCommand {
    /// Enrol this site at HQ with the code `plantwire site add` printed there: makes a key, gets
    /// a certificate, pins HQ's CA; files go to <state_dir>/replication (0600).
    Enroll { code: String },
    /// Renew the site certificate at HQ now, over the current one (the shipper also renews by
    /// itself once a third of the certificate's life is left); works with the server running.
    Renew,
    /// Cursor (acknowledged by HQ), lag and connection; through the running server when it runs.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load every layer, validate, and print the effective configuration.
    Check {
        /// Print the configuration the running server uses instead (through its control socket).
        #[arg(long)]
        running: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the log from the oldest kept entry: decrypt, re-hash, check links. Exit 0 ok,
    /// 1 chain or store damaged, 2 usage error, 3 cannot open the store.
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// At HQ: verify this site's replica instead of the own log.
        #[arg(long)]
        site: Option<String>,
        /// Check an export file (`audit export`) instead, with only the site's public key: no
        /// state directory, store or data key is read.
        #[arg(long, requires = "public_key", conflicts_with = "site")]
        file: Option<PathBuf>,
        /// The site's public key line (`plantwire site key`, or GET /api/v1/site/key).
        #[arg(long, requires = "file")]
        public_key: Option<PathBuf>,
    },
    /// Export a range of the log as JSON Lines with its signed checkpoints (docs/log-format.md),
    /// for `audit verify --file` elsewhere; through the running server when it runs.
    Export {
        /// First entry: a seq, or an RFC 3339 time (default: the oldest).
        #[arg(long)]
        from: Option<String>,
        /// Last entry: a seq, or an RFC 3339 time (default: the newest).
        #[arg(long)]
        to: Option<String>,
        /// Open only this stream's bodies (the others are exported without a body).
        #[arg(long)]
        stream: Option<String>,
        /// Write here (mode 0600) instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List security events (failed sign-ins, lockouts, sessions), newest first; online or offline.
    Log {
        /// A kind (auth.login_failed) or a prefix (auth.*).
        #[arg(long, default_value = "auth.*")]
        kind: String,
        /// Only entries with a greater seq.
        #[arg(long)]
        since: Option<u64>,
        /// At most this many (1-1000, default 100).
        #[arg(long)]
        limit: Option<usize>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceCommand {
    /// Register a device and print its API token (shown only once); with --cert, issue it a
    /// client certificate from the site CA instead and write NAME.crt, NAME.key, NAME.p12.
    Add {
        name: String,
        /// Issue a client certificate instead of a token.
        #[arg(long)]
        #[serde(default)]
        cert: bool,
        /// Where to write the files (default: the current directory).
        #[arg(long, requires = "cert")]
        #[serde(default)]
        out: Option<PathBuf>,
        /// Sign this PEM CSR (the key stays on the device): only NAME.crt is written.
        #[arg(long, requires = "cert")]
        #[serde(default)]
        csr: Option<PathBuf>,
        /// The CSR's text, read by the CLI as the calling user (not a flag).
        #[arg(skip)]
        #[serde(default)]
        csr_pem: Option<String>,
    },
    /// Issue a further certificate to a device; its earlier ones stay valid until they expire or
    /// the device is revoked.
    Renew {
        name: String,
        #[arg(long)]
        #[serde(default)]
        out: Option<PathBuf>,
        #[arg(long)]
        #[serde(default)]
        csr: Option<PathBuf>,
        #[arg(skip)]
        #[serde(default)]
        csr_pem: Option<String>,
    },
    /// List devices.
    List,
    /// Revoke a device: its token and certificates, at once (and its open connections close).
    Revoke { name: String },
}

#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserCommand {
    /// Create an active account with a one-time password (printed once).
    Add {
        username: String,
        #[arg(long, value_enum, default_value = "operator")]
        role: CliRole,
        #[arg(long)]
        display_name: Option<String>,
    },
    /// List accounts.
    List,
    /// Give an account a new one-time password (printed once).
    Passwd { username: String },
    /// Change an account's role.
    Role {
        username: String,
        #[arg(value_enum)]
        role: CliRole,
    },
    /// Disable an account: its sessions end at once.
    Disable { username: String },
    /// Enable a disabled account.
    Enable { username: String },
    /// Approve a registration request.
    Approve { username: String },
    /// Recover the `admin` account: active, admin, new one-time password.
    ResetAdmin,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CliRole {
    Viewer,
    /// Read-only everywhere; at HQ it reads every site.
    Auditor,
    Operator,
    Admin,
}

impl From<CliRole> for Role {
    fn from(r: CliRole) -> Self {
        match r {
            CliRole::Viewer => Role::Viewer,
            CliRole::Auditor => Role::Auditor,
            CliRole::Operator => Role::Operator,
            CliRole::Admin => Role::Admin,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Durable appends per second and acknowledgement latency through the sequencer.
    Append {
        /// Directory on the disk to measure (scratch stores are removed afterwards).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Producer counts to run, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,4,64,256")]
        producers: Vec<usize>,
        /// Appends per producer count.
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        /// Body size of each append in bytes.
        #[arg(long, default_value_t = 200)]
        body_bytes: usize,
        /// Most appends per commit.
        #[arg(long, default_value_t = 1024)]
        max_batch: usize,
        /// Commit as `storage.quick_repair = true` does (allocator state recorded each commit).
        #[arg(long)]
        quick_repair: bool,
    },
    /// Fan-out over WebSockets against a running server: users in one group, closed-loop senders,
    /// delivery latency at every receiver, lost messages, and optionally many idle sockets.
    Chat {
        /// The server's address.
        #[arg(long, default_value = "127.0.0.1:8443")]
        addr: std::net::SocketAddr,
        /// The site CA to trust (`<state>/tls/ca.crt`).
        #[arg(long)]
        ca: PathBuf,
        /// A file holding the `admin` password (the first start's one-time password works).
        #[arg(long)]
        admin_password_file: PathBuf,
        #[arg(long, default_value_t = 20)]
        users: usize,
        #[arg(long, default_value_t = 4)]
        senders: usize,
        #[arg(long, default_value_t = 2000)]
        messages: usize,
        /// Idle WebSocket connections to open afterwards (the server's per-user limit applies).
        #[arg(long, default_value_t = 0)]
        idle: usize,
        /// The server's pid, to report its resident memory.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Directory on the server's disk, to measure fsync latency for the targets.
        #[arg(long)]
        fsync_dir: Option<PathBuf>,
    },
    /// Event ingest against a running server over HTTPS: closed-loop publishers with a device
    /// token (or `--cert`/`--key`: mutual TLS on the device listener), HTTP/1.1 keep-alive and
    /// HTTP/2, events/s, latency and server CPU per event.
    Ingest {
        /// The server's address.
        #[arg(long, default_value = "127.0.0.1:8443")]
        addr: std::net::SocketAddr,
        /// The site CA to trust (`<state>/tls/ca.crt`).
        #[arg(long)]
        ca: PathBuf,
        /// A file holding a device's API token (`plantwire device add NAME` prints one).
        #[arg(long, required_unless_present = "cert", conflicts_with = "cert")]
        token_file: Option<PathBuf>,
        /// A device certificate (PEM, `plantwire device add NAME --cert`) to publish with over
        /// mutual TLS; point `--addr` at the device listener.
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// The certificate's private key (PEM).
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// Publisher counts to run, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "4,64,256")]
        publishers: Vec<usize>,
        /// Events per request: 1 posts each to `/api/v1/events`; more (up to 1,000) post them
        /// together to `/api/v1/events/batch`.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
        batch: u16,
        /// Protocols to run, comma-separated: `h1` (keep-alive) and/or `h2`.
        #[arg(long, value_delimiter = ',', default_value = "h1,h2")]
        protocols: Vec<String>,
        /// Events per run.
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        /// The server's pid, to report its CPU time per event.
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// Filtered event listings over a scratch log of `--entries` entries (in process), p50/p99.
    /// Full-text search: send rate without and with the indexer, indexing throughput, index
    /// size against the text, query latency, memory.
    Search {
        /// Directory for the scratch store (removed afterwards).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        messages: u64,
        /// Messages of each send-rate phase (without, then with the indexer).
        #[arg(long, default_value_t = 20_000)]
        rate_messages: u64,
        #[arg(long, default_value_t = 32)]
        senders: usize,
        #[arg(long, default_value_t = 200)]
        runs: usize,
        #[arg(long, default_value_t = 18)]
        seed: u64,
        /// redb's page cache in MiB (the server's `storage.cache_mib` unless given).
        #[arg(long)]
        cache_mib: Option<usize>,
        /// Write the texts and queries here for benches/search-fts5.py.
        #[arg(long)]
        export: Option<PathBuf>,
    },
    Query {
        /// Directory for the scratch store (removed afterwards).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
        /// Runs of each query shape.
        #[arg(long, default_value_t = 200)]
        runs: usize,
    },
    /// The alarm KPI query over a scratch log of `--transitions` alarm transitions (in process),
    /// p50/p99, with the full read it replaces for comparison.
    Kpis {
        /// Directory for the scratch store (removed afterwards).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        transitions: u64,
        /// Runs of the query per range.
        #[arg(long, default_value_t = 100)]
        runs: usize,
    },
    /// An alarm flood against a running server over HTTPS: closed-loop device publishers,
    /// raise-to-visible latency on a WebSocket, one bulk ack of 1,000, the server's peak RSS.
    Alarms {
        /// The server's address.
        #[arg(long, default_value = "127.0.0.1:8443")]
        addr: std::net::SocketAddr,
        /// The site CA to trust (`<state>/tls/ca.crt`).
        #[arg(long)]
        ca: PathBuf,
        /// A file holding a device's API token (`plantwire device add NAME` prints one).
        #[arg(long)]
        token_file: PathBuf,
        /// A file holding the `admin` password (the first start's one-time password works).
        #[arg(long)]
        admin_password_file: PathBuf,
        /// Concurrent publishers (each on its own connection).
        #[arg(long, default_value_t = 20)]
        devices: usize,
        /// Alarms each publisher raises.
        #[arg(long, default_value_t = 100)]
        alarms: usize,
        /// The server's pid, to report its peak resident memory.
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// Incidents opened by rules during an alarm flood (in process, scratch store): open latency
    /// p50/p99, and the cost of checking a reply against a template.
    Incidents {
        /// Directory for the scratch store (removed afterwards).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Alarms in the flood.
        #[arg(long, default_value_t = 10_000)]
        alarms: usize,
        /// Every n-th alarm matches the rule and opens an incident.
        #[arg(long, default_value_t = 10)]
        every: usize,
        /// Concurrent raisers.
        #[arg(long, default_value_t = 32)]
        publishers: usize,
        /// Replies checked in the validation loop.
        #[arg(long, default_value_t = 100_000)]
        replies: usize,
    },
    /// Replication edge -> HQ over the real TLS transport: entries/s and CPU per entry, wire
    /// bytes per event, catch-up after an hour offline, a capped link. Both sides in this process
    /// unless `--hq-listen` (HQ only) or `--edge` (edge only) split them (`benches/replication.sh`).
    Replication {
        /// Directory for the scratch state directories.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Events of the throughput run.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Events waiting after an hour offline (0: no catch-up run).
        #[arg(long, default_value_t = 360_000)]
        backlog: u64,
        /// Events of the run under the shipper's own bandwidth cap (0: no such run).
        #[arg(long, default_value_t = 20_000)]
        capped_events: u64,
        /// That cap, bytes per second (125,000 = 1 Mbit/s).
        #[arg(long, default_value_t = 125_000)]
        cap_bytes_per_sec: u64,
        /// JSON bytes per event.
        #[arg(long, default_value_t = 300)]
        body_bytes: usize,
        /// `telemetry` (plant fields, a few random readings) or `random` (random readings only).
        #[arg(long, default_value = "telemetry")]
        payload: String,
        #[arg(long, default_value_t = 512)]
        batch_entries: usize,
        #[arg(long, default_value_t = 1 << 20)]
        batch_bytes: usize,
        /// Cut every batch at `--batch-entries` (the shipper otherwise grows batches up to four
        /// times that where round trips dominate, as the server does).
        #[arg(long)]
        fixed_batches: bool,
        /// Run HQ only, listening here, until SIGTERM; the enrolment code goes to `--code-file`.
        #[arg(long, conflicts_with = "edge")]
        hq_listen: Option<std::net::SocketAddr>,
        /// Run the edge only, enrolling with the code in `--code-file`.
        #[arg(long)]
        edge: bool,
        #[arg(long, default_value = "replication-code.txt")]
        code_file: PathBuf,
        /// The `nats-server` for the JetStream row (default: `nats-server` on PATH; the row says
        /// skipped when there is none).
        #[arg(long)]
        nats_server: Option<PathBuf>,
        /// Both sides in this process only: the edge reaches HQ through a userspace link
        /// emulator, RATE,RTT such as `1mbit,100ms` or `1mbit,0ms` (rate cap and half the RTT
        /// each way, a buffer of the bandwidth-delay product plus 64 KiB; no loss model).
        #[arg(long, conflicts_with_all = ["edge", "hq_listen"])]
        link: Option<String>,
    },
}

pub fn run(cli: Cli) -> ExitCode {
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("plantwire: error: {}", crate::telemetry::error_text(&e));
            ExitCode::FAILURE
        }
    }
}

fn load_config(cli: &Cli, listen: Vec<SocketAddr>) -> anyhow::Result<Config> {
    let overrides = Overrides {
        state_dir: cli.state_dir.clone(),
        listen,
    };
    Ok(Config::load(cli.config.as_deref(), &overrides)?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("plantwire")
        .build()
        .context("cannot start the async runtime")
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Version => {
            println!("plantwire {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { listen } => {
            let config = load_config(&cli, listen.clone())?;
            crate::telemetry::init(&config.log.level);
            runtime()?.block_on(serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Discover { timeout, json } => {
            let config = load_config(&cli, Vec::new())?;
            crate::maintenance::discover(&config, std::time::Duration::from_secs(*timeout), *json)
        }
        Command::Backup { file, force } => {
            let config = load_config(&cli, Vec::new())?;
            eprintln!(
                "plantwire: using the state directory {} ({})",
                config.state_dir().display(),
                origin(&cli, &config)
            );
            crate::telemetry::init("warn");
            crate::maintenance::backup(&config, file, *force)
        }
        Command::Restore { file, force } => {
            let config = load_config(&cli, Vec::new())?;
            crate::telemetry::init("warn");
            crate::maintenance::restore(&config, file, *force)
        }
        Command::Init => {
            let config = load_config(&cli, Vec::new())?;
            crate::telemetry::init("warn");
            runtime()?.block_on(init(config))
        }
        Command::Config {
            command: ConfigCommand::Check { running: false },
        } => {
            let config = load_config(&cli, Vec::new())?;
            let file = Config::file_used(cli.config.as_deref())?;
            println!("{}", config.check_report(file.as_deref())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Check { running: true },
        } => Ok(admin(&cli, Request::ConfigCheck)),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    json,
                    file: Some(file),
                    public_key: Some(public_key),
                    ..
                },
        } => Ok(crate::audit::commands::verify_file(file, public_key, *json)),
        Command::Audit {
            command:
                AuditCommand::Export {
                    from,
                    to,
                    stream,
                    out,
                },
        } => {
            let config = load_config(&cli, Vec::new())?;
            crate::telemetry::init("warn");
            let bound = |name: &str, raw: &Option<String>| {
                raw.as_deref()
                    .map(|r| crate::audit::Bound::parse(name, r))
                    .transpose()
            };
            let req = match (bound("--from", from), bound("--to", to)) {
                (Ok(from), Ok(to)) => crate::audit::ExportRequest {
                    from,
                    to,
                    stream: stream.clone(),
                },
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("plantwire: error: {e}");
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
            };
            Ok(crate::audit::commands::export(
                &config,
                &req,
                out.as_deref(),
            ))
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    json,
                    site: Some(site),
                    ..
                },
        } => Ok(admin(
            &cli,
            Request::SiteVerify {
                site: site.clone(),
                json: *json,
            },
        )),
        Command::Audit {
            command: AuditCommand::Verify {
                json, site: None, ..
            },
        } => Ok(admin(&cli, Request::AuditVerify { json: *json })),
        Command::Retention { command } => Ok(admin(
            &cli,
            Request::Retention {
                retention: command.clone(),
            },
        )),
        Command::Site { command } => Ok(admin(
            &cli,
            Request::Site {
                site: command.clone(),
            },
        )),
        Command::Replication {
            command: ReplicationCommand::Status { json },
        } => Ok(admin(&cli, Request::ReplicationStatus { json: *json })),
        Command::Search {
            command: SearchCommand::Reindex,
        } => Ok(admin(&cli, Request::SearchReindex)),
        Command::Replication {
            command: ReplicationCommand::Enroll { code },
        } => {
            let config = load_config(&cli, Vec::new())?;
            crate::telemetry::init("warn");
            let state_dir = config.state_dir();
            let site = config.site();
            match runtime()?.block_on(crate::replication::ship::enroll(code, &site, &state_dir)) {
                Ok(()) => {
                    println!(
                        "site {site} enrolled at HQ; files in {}; with [replication] role = \"edge\" the server ships its log",
                        crate::replication::ship::identity_dir(&state_dir).display()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("plantwire: error: {e}");
                    Ok(ExitCode::from(EXIT_FAILED))
                }
            }
        }
        Command::Replication {
            command: ReplicationCommand::Renew,
        } => {
            let config = load_config(&cli, Vec::new())?;
            crate::telemetry::init("warn");
            let state_dir = config.state_dir();
            let site = config.site();
            match runtime()?.block_on(crate::replication::renew::renew_now(&site, &state_dir)) {
                Ok(v) => {
                    println!(
                        "site {site}: certificate renewed at HQ, valid until {}",
                        crate::clock::rfc3339_us(v.not_after_us)
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("plantwire: error: {e}");
                    Ok(ExitCode::from(EXIT_FAILED))
                }
            }
        }
        Command::Audit {
            command:
                AuditCommand::Log {
                    kind,
                    since,
                    limit,
                    json,
                },
        } => Ok(admin(
            &cli,
            Request::AuditLog {
                kind: kind.clone(),
                since: *since,
                limit: *limit,
                json: *json,
            },
        )),
        Command::User { command } => Ok(admin(
            &cli,
            Request::User {
                user: command.clone(),
            },
        )),
        Command::Device { command } => {
            let mut device = command.clone();
            if let Err(e) = crate::device_files::read_csr(&mut device) {
                eprintln!("plantwire: error: {e:#}");
                return Ok(ExitCode::from(EXIT_USAGE));
            }
            Ok(admin(&cli, Request::Device { device }))
        }
        Command::Bench {
            command:
                BenchCommand::Append {
                    dir,
                    producers,
                    count,
                    body_bytes,
                    max_batch,
                    quick_repair,
                },
        } => {
            crate::telemetry::init("warn");
            let b = crate::bench::AppendBench {
                dir: dir.clone(),
                producers: producers.clone(),
                count: *count,
                body_bytes: *body_bytes,
                max_batch: *max_batch,
                quick_repair: *quick_repair,
            };
            runtime()?.block_on(bench_append(b))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            command:
                BenchCommand::Chat {
                    addr,
                    ca,
                    admin_password_file,
                    users,
                    senders,
                    messages,
                    idle,
                    server_pid,
                    fsync_dir,
                },
        } => {
            crate::telemetry::init("warn");
            let admin_password = std::fs::read_to_string(admin_password_file)
                .with_context(|| format!("reading {}", admin_password_file.display()))?
                .trim()
                .to_string();
            let b = crate::bench::chat::ChatBench {
                addr: *addr,
                ca_file: ca.clone(),
                admin_password,
                users: *users,
                senders: *senders,
                messages: *messages,
                idle: *idle,
                server_pid: *server_pid,
            };
            runtime()?.block_on(bench_chat(b, fsync_dir.clone()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            command:
                BenchCommand::Ingest {
                    addr,
                    ca,
                    token_file,
                    cert,
                    key,
                    publishers,
                    protocols,
                    count,
                    batch,
                    server_pid,
                },
        } => {
            crate::telemetry::init("warn");
            let read = |p: &PathBuf| {
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
            };
            let credential = match (token_file, cert, key) {
                (Some(t), _, _) => crate::bench::ingest::Credential::Token(read(t)?.trim().into()),
                (None, Some(c), Some(k)) => crate::bench::ingest::Credential::Certificate {
                    cert_pem: read(c)?,
                    key_pem: read(k)?,
                },
                _ => anyhow::bail!("give --token-file, or --cert and --key"),
            };
            let protos = protocols
                .iter()
                .map(|p| {
                    crate::bench::ingest::Proto::parse(p)
                        .ok_or_else(|| anyhow::anyhow!("unknown protocol {p:?}: use h1 or h2"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let b = crate::bench::ingest::IngestBench {
                addr: *addr,
                ca_file: ca.clone(),
                credential,
                publishers: publishers.clone(),
                protos,
                count: *count,
                batch: usize::from(*batch),
                server_pid: *server_pid,
            };
            runtime()?.block_on(crate::bench::report::ingest(b))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            command:
                BenchCommand::Search {
                    dir,
                    messages,
                    rate_messages,
                    senders,
                    runs,
                    seed,
                    cache_mib,
                    export,
                },
        } => {
            crate::telemetry::init("warn");
            let b = crate::bench::search::SearchBench {
                cache_mib: cache_mib.unwrap_or(crate::config::StorageConfig::default().cache_mib),
                dir: dir.clone(),
                messages: *messages,
                rate_messages: *rate_messages,
                senders: *senders,
                runs: *runs,
                seed: *seed,
                export: export.clone(),
            };
            runtime()?.block_on(crate::bench::report::search(b))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            command: BenchCommand::Query { dir, entries, runs },
        } => {
            crate::telemetry::init("warn");
            let b = crate::bench::query::QueryBench {
                dir: dir.clone(),
                entries: *entries,
                runs: *runs,
            };
            runtime()?.block_on(crate::bench::report::query(b))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            command:
                BenchCommand::Kpis {
                    dir,
                    transitions,
                    runs,
                },
        } => {
            crate::telemetry::init("warn");
            let b = crate::bench::kpis::KpiBench {
                dir: dir.clone(),
                transitions: *transitions,
                runs: *runs,
            };
            runtime()?.block_on(crate::bench::report::kpis(b))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            command:
                BenchCommand::Alarms {
                    addr,
                    ca,
                    token_file,
                    admin_password_file,
                    devices,
                    alarms,
                    server_pid,
                },
        } => {
            crate::telemetry::init("warn");
            let read = |p: &PathBuf| {
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
            };
            let b = crate::bench::alarms::AlarmBench {
                addr: *addr,
                ca_file: ca.clone(),
                token: read(token_file)?.trim().into(),
                admin_password: read(admin_password_file)?.trim().into(),
                devices: *devices,
                per_device: *alarms,
                server_pid: *server_pid,
            };
            runtime()?.block_on(crate::bench::report::alarms(b))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            command:
                BenchCommand::Incidents {
                    dir,
                    alarms,
                    every,
                    publishers,
                    replies,
                },
        } => {
            crate::telemetry::init("warn");
            let b = crate::bench::incidents::IncidentBench {
                dir: dir.clone(),
                alarms: *alarms,
                every: *every,
                publishers: *publishers,
                replies: *replies,
            };
            runtime()?.block_on(crate::bench::report::incidents(b))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            command:
                BenchCommand::Replication {
                    dir,
                    events,
                    backlog,
                    capped_events,
                    cap_bytes_per_sec,
                    body_bytes,
                    payload,
                    batch_entries,
                    batch_bytes,
                    fixed_batches,
                    hq_listen,
                    edge,
                    code_file,
                    nats_server,
                    link,
                },
        } => {
            use crate::bench::replication::{Mode, Payload, ReplicationBench};
            crate::telemetry::init("warn");
            let payload = match payload.as_str() {
                "telemetry" => Payload::Telemetry,
                "random" => Payload::Random,
                other => anyhow::bail!("--payload {other:?}: expected telemetry or random"),
            };
            let mode = match (hq_listen, edge) {
                (Some(listen), _) => Mode::Hq {
                    listen: *listen,
                    code_file: code_file.clone(),
                },
                (None, true) => Mode::Edge {
                    code_file: code_file.clone(),
                },
                (None, false) => Mode::Both,
            };
            let b = ReplicationBench {
                dir: dir.clone(),
                mode,
                events: *events,
                backlog: *backlog,
                capped_events: *capped_events,
                cap_bytes_per_sec: *cap_bytes_per_sec,
                body_bytes: *body_bytes,
                payload,
                batch_entries: *batch_entries,
                batch_bytes: *batch_bytes,
                adaptive_batches: !*fixed_batches,
                nats_server: nats_server.clone(),
                link: link
                    .as_deref()
                    .map(crate::bench::link::LinkSpec::parse)
                    .transpose()?,
            };
            runtime()?.block_on(crate::bench::replication::report(b))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers first, so a signal that arrives during start-up is not lost.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (state, listeners) = AppState::prepare(config, Arc::new(SystemClock)).await?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        site = %state.log().site(),
        state_dir = %state.state_dir().display(),
        "plantwire starting"
    );
    let mut supervisor = crate::supervisor::Supervisor::new();
    let reloader = state.clone();
    supervisor.spawn("sighup", move |stop| async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                got = hup.recv() => if got.is_none() { return },
            }
            if let Err(e) = reloader.tls().reload() {
                tracing::error!(error = %e, "TLS reload failed; keeping the current certificate");
            }
        }
    });
    let bound: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let served = crate::discovery::Served::from_bound(&bound);
    if let (true, Some(served)) = (state.config().discovery.enabled, served) {
        let st = state.clone();
        supervisor.spawn("mdns", move |stop| async move {
            let cfg = &st.config().discovery;
            let fp = crate::discovery::Fingerprints {
                ca: st.tls().ca_fingerprint(),
                served: st.tls().served_fingerprint(),
            };
            match Announcer::start(cfg, st.log().site(), &served, &fp) {
                Ok(a) => {
                    stop.cancelled().await;
                    let _ = tokio::task::spawn_blocking(move || a.goodbye()).await;
                }
                Err(e) => tracing::warn!(error = %e, "mDNS announcement unavailable"),
            }
        });
    }
    match ControlSocket::start(&state) {
        Ok(control) => supervisor.spawn("control", move |stop| async move {
            stop.cancelled().await;
            control.stop().await;
        }),
        Err(e) => tracing::warn!(
            error = %e,
            "control socket unavailable; admin commands and `plantwire backup` need it while serving"
        ),
    }
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    };
    crate::server::run_supervised(listeners, state, supervisor, shutdown).await;
    Ok(())
}

/// `plantwire init`: what the first `serve` creates (state directory, data key, store), no more.
async fn init(config: Config) -> anyhow::Result<ExitCode> {
    let state_dir = config.state_dir();
    let path = state_dir.join(STORE_FILE);
    if path.exists() {
        // Touch nothing: no key is made (the real one may be a systemd credential this shell
        // does not see) and no migration runs.
        println!(
            "a store exists already at {}; nothing changed",
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let log = crate::state::open_log(&config, Arc::new(SystemClock), metrics)?;
    log.close().await;
    println!(
        "created the store {} for site {}; the first `plantwire serve` creates the admin account",
        path.display(),
        config.site()
    );
    Ok(ExitCode::SUCCESS)
}

/// Why the CLI uses the state directory it uses, for the "using the store" line and refusals.
fn origin(cli: &Cli, config: &Config) -> String {
    let file = match &cli.config {
        Some(p) => Some(p.display().to_string()),
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => Some(DEFAULT_CONFIG_PATH.to_string()),
        None => None,
    };
    if cli.state_dir.is_some() {
        return "from --state-dir".into();
    }
    if config.state_dir.is_some() {
        return match file {
            Some(f) => format!("state_dir in {f} or PLANTWIRE_STATE_DIR"),
            None => "from PLANTWIRE_STATE_DIR".into(),
        };
    }
    let no_file = match file {
        Some(f) => format!("{f} sets no state_dir"),
        None => format!("no --config and no {DEFAULT_CONFIG_PATH}"),
    };
    if std::env::var_os("STATE_DIRECTORY").is_some_and(|v| !v.is_empty()) {
        return format!("from $STATE_DIRECTORY; {no_file}");
    }
    if config.state_dir() == Path::new(DEFAULT_STATE_DIR) {
        return format!("the packaged default; {no_file}");
    }
    format!("the default for a run from this directory; {no_file}, and no {DEFAULT_STATE_DIR}")
}

/// An admin command: through the running server's control socket when one answers, else on the
/// store directly (never creating one). Says on stderr which store it used.
fn admin(cli: &Cli, request: Request) -> ExitCode {
    let config = match load_config(cli, Vec::new()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("plantwire: error: {}", crate::telemetry::error_text(&e));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let state_dir = config.state_dir();
    let store = state_dir.join(STORE_FILE);
    let store = std::path::absolute(&store).unwrap_or(store);
    let why = origin(cli, &config);
    let outcome = match crate::control::request_admin(&state_dir, &request, &whoami()) {
        Ok(Some(outcome)) => {
            eprintln!(
                "plantwire: using the store {} ({why}) through the running server",
                store.display()
            );
            outcome
        }
        Ok(None) if matches!(request, Request::ConfigCheck) => Outcome::error(
            EXIT_CANNOT_OPEN,
            &format!(
                "no server answers on {} ({why})",
                state_dir.join(crate::control::SOCKET_FILE).display()
            ),
        ),
        Ok(None) => match std::fs::metadata(&store) {
            Ok(_) => {
                eprintln!(
                    "plantwire: using the store {} ({why}); the server is not running",
                    store.display()
                );
                crate::telemetry::init("warn");
                offline(&config, &request)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Outcome::error(
                EXIT_CANNOT_OPEN,
                &format!(
                    "no plantwire store at {} ({why}) and no server running there; nothing was created. \
                     Point to the service's state with --config or --state-dir, or create a store with `plantwire init`",
                    store.display()
                ),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Outcome::error(
                EXIT_CANNOT_OPEN,
                &format!(
                    "cannot read {}: permission denied; run as root or the plantwire user",
                    store.display()
                ),
            ),
            Err(e) => Outcome::error(
                EXIT_CANNOT_OPEN,
                &format!("cannot read {}: {e}", store.display()),
            ),
        },
        Err(e) => Outcome::error(EXIT_CANNOT_OPEN, &e),
    };
    print!("{}", outcome.stdout);
    eprint!("{}", outcome.stderr);
    if let Request::Device { device } = &request {
        if let Err(e) = crate::device_files::write(device, &outcome.files) {
            eprintln!("plantwire: error: {e:#}");
            return ExitCode::from(EXIT_FAILED);
        }
    }
    ExitCode::from(outcome.code)
}

/// Runs an admin command on the stopped server's existing store.
fn offline(config: &Config, request: &Request) -> Outcome {
    if let Request::AuditVerify { json } = request {
        return match crate::state::open_offline(config) {
            Ok((mut store, key, site)) => {
                crate::admin::verify_offline(&mut store, &site, &key, *json)
            }
            Err(e) => Outcome::error(
                EXIT_CANNOT_OPEN,
                &crate::telemetry::error_text(&anyhow::Error::from(e)),
            ),
        };
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            return Outcome::error(EXIT_FAILED, &crate::telemetry::error_text(&e));
        }
    };
    rt.block_on(async {
        let log = match crate::state::open_existing_log(config, Arc::new(SystemClock)) {
            Ok(log) => log,
            Err(e) => {
                return Outcome::error(
                    EXIT_CANNOT_OPEN,
                    &crate::telemetry::error_text(&anyhow::Error::from(e)),
                );
            }
        };
        let state_dir = config.state_dir();
        let outcome = match crate::auth::Auth::new(&config.auth, &state_dir) {
            Ok(auth) => {
                let ctx = Ctx {
                    log: &log,
                    auth: &auth,
                    config,
                    state_dir: &state_dir,
                    by: Author::Cli(whoami()),
                    online: false,
                    ingest: None,
                    replication: None,
                };
                crate::admin::execute(&ctx, request).await
            }
            Err(e) => Outcome::error(
                EXIT_CANNOT_OPEN,
                &crate::telemetry::error_text(&anyhow::Error::from(e)),
            ),
        };
        log.close().await;
        outcome
    })
}

fn whoami() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into())
}

async fn bench_chat(
    b: crate::bench::chat::ChatBench,
    fsync_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let fsync = match &fsync_dir {
        Some(d) => Some(crate::bench::fsync_latency(d, 200)?),
        None => None,
    };
    let r = crate::bench::chat::run(&b).await?;
    println!(
        "{} users in one group over TLS WebSockets, {} closed-loop senders, {} messages",
        b.users, b.senders, r.acked
    );
    println!(
        "acknowledged sends/s: {:.0} ({:.2} s); ack latency p50 {} µs, p99 {} µs, max {} µs",
        r.sends_per_second, r.seconds, r.ack.p50_us, r.ack.p99_us, r.ack.max_us
    );
    println!(
        "delivery latency (send to arrival, {} receivers): p50 {} µs, p99 {} µs, max {} µs",
        b.users - b.senders,
        r.delivery.p50_us,
        r.delivery.p99_us,
        r.delivery.max_us
    );
    println!("deliveries: {}; lost: {}", r.deliveries, r.lost);
    if let Some(cpu) = r.cpu.server_us {
        let client = r.cpu.client_us.map_or("?".to_string(), |c| {
            format!("{:.1}", c as f64 / r.acked.max(1) as f64)
        });
        println!(
            "server CPU: {:.1} µs per message, {:.2} µs per delivered frame; client CPU: {client} µs per message",
            cpu as f64 / r.acked.max(1) as f64,
            cpu as f64 / r.deliveries.max(1) as f64,
        );
    }
    if let Some(f) = fsync {
        let bound = b.senders as f64 * 1e6 / f.p50_us.max(1) as f64;
        println!(
            "disk fsync: p50 {} µs, p99 {} µs; {} senders / fsync p50 = {:.0}/s, 80% = {:.0}/s ({}); delivery p99 target 2 x fsync p99 + 5 ms = {} µs ({})",
            f.p50_us,
            f.p99_us,
            b.senders,
            bound,
            0.8 * bound,
            if r.sends_per_second >= 0.8 * bound {
                "met"
            } else {
                "missed"
            },
            2 * f.p99_us + 5000,
            if r.delivery.p99_us <= 2 * f.p99_us + 5000 {
                "met"
            } else {
                "missed"
            },
        );
    }
    if r.idle_connected > 0 {
        let mib =
            |v: Option<u64>| v.map_or("?".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
        let per_socket = r.rss_before_idle_kib.zip(r.rss_with_idle_kib).map_or(
            "?".to_string(),
            |(before, with)| {
                format!(
                    "{:.1} KiB",
                    with.saturating_sub(before) as f64 / r.idle_connected as f64
                )
            },
        );
        println!(
            "idle sockets: {}; server RSS before {} and with them {} ({per_socket} per socket)",
            r.idle_connected,
            mib(r.rss_before_idle_kib),
            mib(r.rss_with_idle_kib)
        );
        if let Some(d) = r.idle_delivery {
            println!(
                "fan-out to every idle socket: p50 {} µs, p99 {} µs, max {} µs",
                d.p50_us, d.p99_us, d.max_us
            );
        }
        let (server, client) = r.idle_cpu.per_frame(r.idle_frames);
        println!(
            "fan-out CPU per delivered frame: server {server} µs, client {client} µs ({} frames to idle sockets; lost: {})",
            r.idle_frames, r.idle_lost
        );
        if let Some(p) = &r.paced {
            let (server, client) = p.cpu.per_frame(p.frames);
            println!(
                "paced fan-out (one message at a time, the next once every idle socket has it; {} messages to {} sockets): send to last socket p50 {} µs, p99 {} µs, max {} µs; send to ack p50 {} µs; CPU per delivered frame: server {server} µs, client {client} µs ({} frames)",
                p.messages,
                p.sockets,
                p.to_last.p50_us,
                p.to_last.p99_us,
                p.to_last.max_us,
                p.to_ack.p50_us,
                p.frames
            );
        }
    }
    Ok(())
}

async fn bench_append(b: crate::bench::AppendBench) -> anyhow::Result<()> {
    let fsync = crate::bench::fsync_latency(&b.dir, 200)?;
    println!(
        "disk fsync (4 KiB write + fdatasync) in {}: p50 {} µs, p99 {} µs, max {} µs",
        b.dir.display(),
        fsync.p50_us,
        fsync.p99_us,
        fsync.max_us
    );
    println!("producers  appends   seconds  appends/s   p50 µs   p99 µs   max µs");
    for r in crate::bench::run_append(&b).await? {
        println!(
            "{:>9} {:>8} {:>9.2} {:>10.0} {:>8} {:>8} {:>8}",
            r.producers,
            r.appends,
            r.seconds,
            r.per_second,
            r.latency.p50_us,
            r.latency.p99_us,
            r.latency.max_us
        );
    }
    Ok(())
}
