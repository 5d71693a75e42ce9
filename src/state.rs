//! What the process holds once started: the `Core` (store, key, sequencer, hub) that the CLI and
//! the server share, and the `AppState` the HTTP layer gets. Built once, passed explicitly.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bootstrap::{self, BootstrapError, STORE_FILE};
use crate::clock::Clock;
use crate::config::Config;
use crate::log::{Hub, Sequencer, SequencerConfig};
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
    FirstAdmin(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// The storage side of plantwire, usable with or without the HTTP server.
pub struct Core {
    pub config: Arc<Config>,
    pub site: Arc<str>,
    pub state_dir: PathBuf,
    pub store: Arc<Store>,
    pub key: Arc<DataKey>,
    pub clock: Arc<dyn Clock>,
    pub hub: Hub,
    pub sequencer: Sequencer,
    pub auth: Arc<crate::auth::Auth>,
    /// Live connections, presence and typing (never persisted).
    pub live: Arc<crate::chat::Live>,
    pub metrics: Arc<crate::metrics::Metrics>,
    stop: CancellationToken,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("site", &self.site)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// Ensures the state directory and data key, opens the store and starts the sequencer.
    /// Must be called inside a Tokio runtime.
    pub fn open(config: Config, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        let state_dir = config.state_dir();
        bootstrap::ensure_state_dir(&state_dir)?;
        let key = Arc::new(bootstrap::ensure_data_key(
            &config,
            &state_dir,
            bootstrap::MissingKey::Create,
        )?);
        let site: Arc<str> = config.site().into();
        let store = Arc::new(Store::open(
            &state_dir.join(STORE_FILE),
            config.storage.cache_mib << 20,
        )?);
        store.bind_identity(&site, &key)?;
        let auth = Arc::new(crate::auth::Auth::new(&config.auth, &state_dir)?);
        let hub = Hub::new(config.storage.hub_capacity);
        let config_ws_max = config.chat.ws_max_per_user;
        let stop = CancellationToken::new();
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let (sequencer, writer) = Sequencer::start(
            store.clone(),
            key.clone(),
            site.clone(),
            clock.clone(),
            hub.clone(),
            SequencerConfig {
                queue_capacity: config.storage.queue_capacity,
                max_batch: config.storage.max_batch,
                metrics: metrics.clone(),
                clock_step_us: i64::from(config.storage.clock_step_secs) * 1_000_000,
            },
            stop.clone(),
        )?;
        Ok(Self {
            config: Arc::new(config),
            site,
            state_dir,
            store,
            key,
            clock,
            hub,
            sequencer,
            auth,
            live: Arc::new(crate::chat::Live::new(config_ws_max)),
            metrics,
            stop,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Stops the sequencer after it has committed everything already queued.
    pub async fn close(&self) {
        self.stop.cancel();
        if let Some(writer) = self.writer.lock().await.take() {
            let _ = writer.await;
        }
    }

    pub fn events_limits(&self) -> crate::events::Limits {
        crate::events::Limits {
            max_batch: self.config.events.max_batch,
            max_event_bytes: self.config.events.max_event_bytes,
        }
    }
}

/// Opens the store without starting a writer, for read-only offline commands (audit verify).
/// Refuses to create anything: a missing key or store is an error.
pub fn open_offline(config: &Config) -> Result<(Store, DataKey, Arc<str>), StartError> {
    let state_dir = config.state_dir();
    let path = state_dir.join(STORE_FILE);
    if !path.exists() {
        return Err(StartError::Other(format!("no store at {}", path.display())));
    }
    let key = bootstrap::ensure_data_key(config, &state_dir, bootstrap::MissingKey::Refuse)?;
    let store = Store::open(&path, config.storage.cache_mib << 20)?;
    let site: Arc<str> = config.site().into();
    store.bind_identity(&site, &key)?;
    Ok((store, key, site))
}

/// Everything a request handler may reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    core: Core,
    tls: TlsSetup,
    ready: AtomicBool,
    sockets: Sockets,
}

/// Upgraded connections (WebSockets) live outside hyper's graceful shutdown: they watch
/// `closing` to send their close frame, the server waits on `tasks` within its drain deadline,
/// then cancels `abort`.
#[derive(Debug, Default)]
pub struct Sockets {
    pub closing: CancellationToken,
    /// Cancelled at the drain deadline: sockets still open are dropped.
    pub abort: CancellationToken,
    pub tasks: tokio_util::task::TaskTracker,
}

impl AppState {
    /// Everything `serve` does before it serves: open the core, make sure an admin exists, set up
    /// TLS and bind the listeners. Tests call this too, so they start what production starts.
    pub async fn prepare(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, Vec<tokio::net::TcpListener>), StartError> {
        let listen = config.server.listen.clone();
        let core = Core::open(config, clock)?;
        crate::users::ensure_first_admin(&core)
            .await
            .map_err(|e| StartError::FirstAdmin(e.to_string()))?;
        let tls = TlsSetup::load(&core.config, &core.state_dir, &core.site)?;
        let listeners = crate::server::bind(&listen)?;
        Ok((Self::new(core, tls), listeners))
    }

    pub fn new(core: Core, tls: TlsSetup) -> Self {
        Self {
            inner: Arc::new(Inner {
                core,
                tls,
                ready: AtomicBool::new(false),
                sockets: Sockets::default(),
            }),
        }
    }

    pub fn core(&self) -> &Core {
        &self.inner.core
    }

    pub fn config(&self) -> &Config {
        &self.inner.core.config
    }

    pub fn tls(&self) -> &TlsSetup {
        &self.inner.tls
    }

    pub fn sockets(&self) -> &Sockets {
        &self.inner.sockets
    }

    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst)
    }

    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::SeqCst);
    }
}
