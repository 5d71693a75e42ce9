//! The composition root: opens the log, builds every service once and hands the HTTP layer its
//! `AppState`. Only `http/`, `server.rs`, `cli.rs` and the process wiring import this module.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

use crate::audience::{Audiences, ByRole};
use crate::auth::Auth;
use crate::bootstrap::{self, BootstrapError, STORE_FILE};
use crate::chat::Live;
use crate::clock::Clock;
use crate::config::Config;
use crate::ingest::Ingest;
use crate::log::checkpoint::Signer;
use crate::log::{Log, LogOptions};
use crate::metrics::Metrics;
use crate::store::{DataKey, Store, StoreError};
use crate::tls::{TlsError, TlsSetup};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthSetupError),
    #[error("first start: {0}")]
    FirstAdmin(#[source] crate::users::UserError),
    #[error(
        "cannot listen on {addr} (another address can be given with `serve --listen ADDR` or `server.listen`)"
    )]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("indexing the existing events: {0}")]
    Backfill(#[from] crate::events::ListError),
    #[error("no store at {0} (only `plantwire serve` creates one)")]
    NoStore(PathBuf),
    #[error("the site signing key: {0}")]
    SigningKey(#[from] crate::log::checkpoint::CheckpointError),
    #[error(transparent)]
    Checkpoints(#[from] crate::log::checkpointer::CheckpointStartError),
    #[error("ingest.grafana: {0}")]
    IngestSecret(#[from] crate::ingest::IngestSetupError),
    #[error("device certificates: {0}")]
    Devices(#[from] crate::tls::issue::IssueError),
    #[error("replication: {0}")]
    Replication(#[from] crate::replication::ReplicationError),
}

/// How this process opens its site's log: the config's storage section.
pub fn log_options(config: &Config) -> LogOptions {
    let st = &config.storage;
    LogOptions {
        cache_bytes: st.cache_mib << 20,
        queue_capacity: st.queue_capacity,
        max_batch: st.max_batch,
        hub_capacity: st.hub_capacity,
        clock_step_us: i64::from(st.clock_step_secs) * 1_000_000,
        quick_repair: st.quick_repair,
    }
}

/// Ensures the state directory and data key, then opens the site's log and starts its writer.
/// Must be called inside a Tokio runtime.
pub fn open_log(
    config: &Config,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
) -> Result<Log, StartError> {
    let state_dir = config.state_dir();
    bootstrap::ensure_state_dir(&state_dir)?;
    let key = bootstrap::ensure_data_key(config, &state_dir, bootstrap::MissingKey::Create)?;
    Ok(Log::open(
        &state_dir.join(STORE_FILE),
        &config.site(),
        key,
        clock,
        &log_options(config),
        metrics,
    )?)
}

/// Opens an existing store and starts its writer, for offline admin commands: creates nothing
/// (no state directory, key or store). Must be called inside a Tokio runtime.
pub fn open_existing_log(config: &Config, clock: Arc<dyn Clock>) -> Result<Log, StartError> {
    let state_dir = config.state_dir();
    let path = state_dir.join(STORE_FILE);
    if !path.exists() {
        return Err(StartError::NoStore(path));
    }
    let key = bootstrap::ensure_data_key(config, &state_dir, bootstrap::MissingKey::Refuse)?;
    Ok(Log::open(
        &path,
        &config.site(),
        key,
        clock,
        &log_options(config),
        Arc::new(Metrics::new()),
    )?)
}

/// Opens the store without starting a writer, for read-only offline commands (audit verify).
/// Refuses to create anything: a missing key or store is an error.
pub fn open_offline(config: &Config) -> Result<(Store, DataKey, Arc<str>), StartError> {
    let state_dir = config.state_dir();
    let path = state_dir.join(STORE_FILE);
    if !path.exists() {
        return Err(StartError::NoStore(path));
    }
    let key = bootstrap::ensure_data_key(config, &state_dir, bootstrap::MissingKey::Refuse)?;
    let store = Store::open(&path, config.storage.cache_mib << 20)?;
    let site: Arc<str> = config.site().into();
    store.bind_identity(&site, &key)?;
    Ok((store, key, site))
}

/// Who sees what on a live socket: every domain's audience, registered once here.
pub fn audiences() -> Audiences {
    use crate::store::Role;
    const ADMIN_STREAMS: &[&str] = &[
        crate::users::STREAM,
        crate::devices::STREAM,
        crate::replication::grants::STREAM,
    ];
    let mut a = Audiences::default();
    a.register(
        "chat",
        crate::chat::replay::KINDS,
        crate::chat::replay::audience,
    );
    a.register("events", crate::events::KINDS, crate::events::audience);
    a.register("alarms", crate::alarms::KINDS, crate::alarms::audience);
    a.register("admin", &["user.", "device.", "site."], |_rtx, viewer| {
        Ok(Box::new(ByRole::new(viewer, Role::Admin, ADMIN_STREAMS)))
    });
    a
}

fn device_listener(
    config: &Config,
    state_dir: &std::path::Path,
    log: &Log,
    listeners: Vec<tokio::net::TcpListener>,
) -> Result<DeviceListener, StartError> {
    use crate::tls::issue::{DeviceCa, IssueError};
    let ca = match DeviceCa::load(config, state_dir, log.site()) {
        Ok(ca) => ca,
        Err(IssueError::NoCaKey) => {
            tracing::info!(
                "no site CA key (configured certificate files): no device certificates and no device listener"
            );
            return Ok(DeviceListener::default());
        }
        Err(e) => return Err(e.into()),
    };
    let (number, revoked) = crate::device_certs::crl_input(log)?;
    let gate = crate::tls::gate::DeviceGate::new(ca, number, &revoked)?;
    let addrs = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    Ok(DeviceListener {
        gate: Some(gate),
        addrs,
        listeners: std::sync::Mutex::new(listeners),
    })
}

/// Everything a request handler may reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    state_dir: PathBuf,
    log: Log,
    auth: Arc<Auth>,
    /// Live connections, presence and typing (never persisted).
    live: Arc<Live>,
    audiences: Audiences,
    metrics: Arc<Metrics>,
    /// Per-device rate limits and ingest statistics (in memory).
    ingest: Arc<Ingest>,
    /// Device authentications of `log`, valid while its devices generation stands (the device
    /// listener's connections share it).
    device_auth: Arc<crate::devices::AuthCache>,
    tls: TlsSetup,
    /// Signs checkpoints of the chain head (the checkpoint task holds the other reference).
    signer: Arc<Signer>,
    ready: AtomicBool,
    sockets: Sockets,
    devices: DeviceListener,
    /// `[replication]`: HQ's replicas and listener, or the edge's shipper status.
    replication: Option<Arc<crate::replication::runtime::Runtime>>,
    /// Payload retention (the purge task and the admin commands share it).
    retention: Arc<crate::retention::Retention>,
}

/// The mutual-TLS device listener: its gate (verifier, CRL, live connections) when the site CA
/// is ours, and its bound sockets until the server takes them.
#[derive(Debug, Default)]
struct DeviceListener {
    gate: Option<Arc<crate::tls::gate::DeviceGate>>,
    addrs: Vec<std::net::SocketAddr>,
    listeners: std::sync::Mutex<Vec<tokio::net::TcpListener>>,
}

/// Upgraded connections (WebSockets) live outside hyper's graceful shutdown: they watch
/// `closing` to send their close frame, the server waits on `tasks` within its drain deadline,
/// then cancels `abort`.
#[derive(Debug, Default)]
pub struct Sockets {
    /// Open ntfy subscriptions (streams and sockets) per user, for the per-user cap.
    pub ntfy_open: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    pub closing: CancellationToken,
    /// Cancelled at the drain deadline: sockets still open are dropped.
    pub abort: CancellationToken,
    pub tasks: tokio_util::task::TaskTracker,
}

impl AppState {
    /// Everything `serve` does before it serves: open the log, make sure an admin exists, set up
    /// TLS and bind the listeners. Tests call this too, so they start what production starts.
    pub async fn prepare(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, Vec<tokio::net::TcpListener>), StartError> {
        // Bind first: a port in use must not leave a brand-new store behind.
        let listeners = crate::server::bind(&config.server.listen)?;
        // The device listener exists only with the generated CA (configured files have no key).
        let device_listeners = if config.tls.cert_file.is_none() || config.tls.key_file.is_none() {
            crate::server::bind(&config.devices.listen)?
        } else {
            Vec::new()
        };
        let metrics = Arc::new(Metrics::new());
        let ingest = Arc::new(Ingest::new(&config.events, &config.ingest, clock.clone())?);
        let log = open_log(&config, clock, metrics.clone())?;
        let state_dir = config.state_dir();
        // A refusal after the log is open closes it again, so the store is free for the next try.
        let services = async {
            let signer = Arc::new(Signer::from_pkcs8(
                log.site(),
                &bootstrap::ensure_signing_key(&state_dir)?,
            )?);
            crate::log::checkpointer::ensure_key_logged(&log, &signer).await?;
            let auth = Arc::new(Auth::new(&config.auth, &state_dir)?);
            crate::users::ensure_first_admin(&log, &auth, &state_dir)
                .await
                .map_err(StartError::FirstAdmin)?;
            // Once, after the v4 migration: index the events that were logged before it.
            crate::events::backfill(&log).await?;
            let tls = TlsSetup::load(&config, &state_dir, log.site())?;
            let replication =
                crate::replication::runtime::start(&config, &state_dir, &log, &signer, &metrics)?
                    .map(Arc::new);
            Ok::<_, StartError>((signer, auth, tls, replication))
        };
        let (signer, auth, tls, replication) = match services.await {
            Ok(s) => s,
            Err(e) => {
                log.close().await;
                return Err(e);
            }
        };
        let live = Arc::new(Live::new(config.chat.ws_max_per_user));
        let devices = device_listener(&config, &state_dir, &log, device_listeners)?;
        let retention = Arc::new(retention(&config, &log, Some(signer.clone())));
        let state = Self {
            inner: Arc::new(Inner {
                config: Arc::new(config),
                state_dir,
                log,
                auth,
                live,
                audiences: audiences(),
                metrics,
                ingest,
                device_auth: Arc::default(),
                tls,
                signer,
                ready: AtomicBool::new(false),
                sockets: Sockets::default(),
                devices,
                replication,
                retention,
            }),
        };
        Ok((state, listeners))
    }

    /// Replication's runtime, when `[replication] role` is not `off`.
    pub fn replication(&self) -> Option<&Arc<crate::replication::runtime::Runtime>> {
        self.inner.replication.as_ref()
    }

    pub fn log(&self) -> &Log {
        &self.inner.log
    }

    /// Payload retention: passes, restores, overrides and holds.
    pub fn retention(&self) -> &Arc<crate::retention::Retention> {
        &self.inner.retention
    }

    pub fn signer(&self) -> &Arc<Signer> {
        &self.inner.signer
    }

    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    pub fn live(&self) -> &Arc<Live> {
        &self.inner.live
    }

    pub fn audiences(&self) -> &Audiences {
        &self.inner.audiences
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The device authentication cache of this site's log.
    pub fn device_auth(&self) -> &Arc<crate::devices::AuthCache> {
        &self.inner.device_auth
    }

    pub fn ingest(&self) -> &Arc<Ingest> {
        &self.inner.ingest
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn state_dir(&self) -> &std::path::Path {
        &self.inner.state_dir
    }

    pub fn tls(&self) -> &TlsSetup {
        &self.inner.tls
    }

    pub fn sockets(&self) -> &Sockets {
        &self.inner.sockets
    }

    /// The device listener's gate; `None` without a site CA key of ours.
    pub fn device_gate(&self) -> Option<&Arc<crate::tls::gate::DeviceGate>> {
        self.inner.devices.gate.as_ref()
    }

    /// Where the device listener listens (empty when there is none).
    pub fn device_addrs(&self) -> &[std::net::SocketAddr] {
        &self.inner.devices.addrs
    }

    /// The bound device listeners, once (the server takes them when it starts).
    pub fn take_device_listeners(&self) -> Vec<tokio::net::TcpListener> {
        self.inner
            .devices
            .listeners
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }

    /// After `device revoke NAME` committed: a new CRL and verifier for the next handshakes, and
    /// the device's open connections closed. Returns how many were closed.
    pub fn device_revoked(&self, name: &str) -> Result<usize, StartError> {
        let Some(gate) = self.device_gate() else {
            return Ok(0);
        };
        let (number, revoked) = crate::device_certs::crl_input(self.log())?;
        gate.update(number, &revoked)?;
        Ok(gate.disconnect(name))
    }

    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst)
    }

    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::SeqCst);
    }
}

/// Retention over `log`: on an edge, nothing above HQ's acknowledged seq, nor above the
/// attachments that followed it, is purged (an unreadable cursor purges nothing), unless
/// `[replication] drop_unreplicated_after` lets entries older than it go: then, and only with the
/// site's signing key at hand, each batch dropping any is recorded in a signed gap entry.
pub fn retention(
    config: &Config,
    log: &Log,
    signer: Option<Arc<Signer>>,
) -> crate::retention::Retention {
    let edge = config.replication.role == crate::config::ReplicationRole::Edge;
    let drop = config.replication.drop_unreplicated_after;
    let aged = drop.micros().filter(|_| edge && signer.is_some());
    let floor: crate::retention::Floor = if edge {
        let edge_log = log.clone();
        Arc::new(move || {
            let acked = crate::replication::edge::retention_floor(&edge_log).unwrap_or(0);
            // An unreadable log lifts nothing.
            let old = aged.map_or(0, |age| {
                crate::replication::gap::aged_floor(&edge_log, age).unwrap_or(0)
            });
            Some(acked.max(old))
        })
    } else {
        Arc::new(|| None)
    };
    let mut r = crate::retention::Retention::new(log.clone(), config.retention.clone(), floor);
    if let Some(signer) = signer.filter(|_| edge) {
        r.add_hook(crate::replication::gap::edge_hook(signer, drop.reason()));
    }
    r
}

/// The site's checkpoint key from the state directory (made on first start).
pub fn site_signer(state_dir: &Path, site: &str) -> Result<Signer, StartError> {
    Ok(Signer::from_pkcs8(
        site,
        &bootstrap::ensure_signing_key(state_dir)?,
    )?)
}
