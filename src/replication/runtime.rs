//! Replication inside a running server (or an offline admin command): HQ's replicas, site
//! registry and bound listener, or the edge's shipper status, built from `[replication]`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::ReplicationError;
use super::hq::{KeySource, Replicas, ReplicasConfig};
use super::net::Hq;
use super::ship::ShipOptions;
use super::sites::Sites;
use crate::clock::Clock;
use crate::config::{Config, ReplicationRole};
use crate::log::Log;
use crate::log::checkpoint::Signer;
use crate::metrics::Metrics;
use crate::tls::issue::DeviceCa;

/// `<state_dir>/sites`: HQ's replicas and site records.
pub fn sites_root(state_dir: &Path) -> PathBuf {
    state_dir.join("sites")
}

/// HQ's pieces, for the listener and the admin commands.
pub struct HqRuntime {
    pub hq: Arc<Hq>,
    /// Bound at start; the server takes them.
    listeners: Mutex<Vec<TcpListener>>,
    pub advertise: Option<String>,
    /// The all-sites overview's alarm counts, carried between requests.
    pub tallies: Arc<super::views::Tallies>,
    /// The NATS forwarder's credentials, read at start (none while forwarding is off).
    pub nats_auth: super::nats::auth::NatsAuth,
}

/// The edge's shipper status: HQ's acknowledged seq and whether it is connected.
pub struct EdgeRuntime {
    pub acked: watch::Sender<u64>,
    pub connected: watch::Sender<bool>,
}

pub enum Runtime {
    Hq(HqRuntime),
    Edge(EdgeRuntime),
}

impl Runtime {
    pub fn hq(&self) -> Option<&HqRuntime> {
        match self {
            Self::Hq(h) => Some(h),
            Self::Edge(_) => None,
        }
    }

    pub fn edge(&self) -> Option<&EdgeRuntime> {
        match self {
            Self::Edge(e) => Some(e),
            Self::Hq(_) => None,
        }
    }
}

impl HqRuntime {
    pub fn take_listeners(&self) -> Vec<TcpListener> {
        std::mem::take(&mut *self.listeners.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The data key HQ seals replicas with: the server's own, found as at start.
pub fn key_source(config: &Config, state_dir: &Path) -> KeySource {
    let (config, state_dir) = (config.clone(), state_dir.to_path_buf());
    Arc::new(move || {
        Ok(crate::bootstrap::ensure_data_key(
            &config,
            &state_dir,
            crate::bootstrap::MissingKey::Refuse,
        )?)
    })
}

/// HQ's replicas and registry from the config (no listener).
pub fn hq_parts(
    config: &Config,
    state_dir: &Path,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    witness: Arc<Signer>,
    alarms: Option<Log>,
) -> Result<(Arc<Replicas>, Arc<Sites>), ReplicationError> {
    let root = sites_root(state_dir);
    let sites = Arc::new(Sites::load(&root)?);
    let replicas = Arc::new(Replicas::new(ReplicasConfig {
        root,
        key: key_source(config, state_dir),
        clock,
        metrics,
        log: LogOptionsFor::replica(config),
        max_open: config.replication.max_open_sites,
        witness,
        accept_stubs: config.replication.accept_stubs,
        alarms,
    }));
    Ok((replicas, sites))
}

struct LogOptionsFor;

impl LogOptionsFor {
    /// A replica's bounds: a small cache, the site's queue and batch bounds.
    fn replica(config: &Config) -> crate::log::LogOptions {
        let st = &config.storage;
        crate::log::LogOptions {
            cache_bytes: 4 << 20,
            queue_capacity: st.queue_capacity,
            max_batch: st.max_batch,
            hub_capacity: st.hub_capacity,
            clock_step_us: i64::MAX,
            quick_repair: st.quick_repair,
        }
    }
}

/// Builds what `[replication] role` asks for, binding HQ's listener.
pub fn start(
    config: &Config,
    state_dir: &Path,
    log: &Log,
    signer: &Arc<Signer>,
    metrics: &Arc<Metrics>,
) -> Result<Option<Runtime>, ReplicationError> {
    match config.replication.role {
        ReplicationRole::Off => Ok(None),
        ReplicationRole::Edge => Ok(Some(Runtime::Edge(EdgeRuntime {
            acked: watch::channel(super::edge::acked(log)?).0,
            connected: watch::channel(false).0,
        }))),
        ReplicationRole::Hq => {
            // Read before anything binds: a bad secret file stops the start with its path.
            let nats_auth = if config.replication.nats.enabled() {
                super::nats::auth::NatsAuth::load(&config.replication.nats)?
            } else {
                super::nats::auth::NatsAuth::None
            };
            let ca = Arc::new(DeviceCa::load(config, state_dir, log.site())?);
            let (replicas, sites) = hq_parts(
                config,
                state_dir,
                log.clock().clone(),
                metrics.clone(),
                signer.clone(),
                Some(log.clone()),
            )?;
            let mut listeners = Vec::new();
            for addr in &config.replication.listen {
                let l = std::net::TcpListener::bind(addr)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .and_then(TcpListener::from_std)
                    .map_err(|source| ReplicationError::Io {
                        path: PathBuf::from(addr.to_string()),
                        source,
                    })?;
                listeners.push(l);
            }
            let advertise = config.replication.advertise.clone().or_else(|| {
                listeners
                    .first()
                    .and_then(|l| l.local_addr().ok())
                    .map(|a| a.to_string())
            });
            Ok(Some(Runtime::Hq(HqRuntime {
                hq: Arc::new(Hq {
                    replicas,
                    sites,
                    ca,
                    cert_days: config.devices.cert_days,
                    clock: log.clock().clone(),
                }),
                listeners: Mutex::new(listeners),
                advertise,
                tallies: Arc::default(),
                nats_auth,
            })))
        }
    }
}

/// The edge's shipper options from the config.
pub fn ship_options(config: &Config) -> ShipOptions {
    let r = &config.replication;
    ShipOptions {
        batch_entries: r.batch_entries,
        batch_bytes: r.batch_bytes,
        bandwidth: r.bandwidth_bytes_per_sec,
        ship: super::edge::ShipClasses::of(&r.ship),
        adaptive: true,
    }
}

/// HQ's listeners until `stop`; then every replica is closed.
pub async fn run_hq(
    rt: Arc<Runtime>,
    tls: &crate::tls::TlsSetup,
    stop: tokio_util::sync::CancellationToken,
) {
    let Some(h) = rt.hq() else {
        return;
    };
    let config = match super::net::server_config(tls, &h.hq.ca) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "replication listener disabled: cannot build its TLS config");
            return;
        }
    };
    let mut serving = Vec::new();
    for listener in h.take_listeners() {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(replication = %addr, "listening for sites (mutual TLS)");
        }
        serving.push(tokio::spawn(super::net::serve(
            listener,
            config.clone(),
            h.hq.clone(),
            stop.clone(),
        )));
    }
    for s in serving {
        let _ = s.await;
    }
    h.hq.replicas.close_all().await;
}

/// The edge's shipper until `stop`.
pub async fn run_edge(
    rt: Arc<Runtime>,
    log: Log,
    state_dir: PathBuf,
    opts: ShipOptions,
    stop: tokio_util::sync::CancellationToken,
) {
    let Some(e) = rt.edge() else {
        return;
    };
    let task = super::ship::spawn_with(
        log,
        state_dir,
        opts,
        stop,
        e.acked.clone(),
        e.connected.clone(),
    );
    let _ = task.await;
}
