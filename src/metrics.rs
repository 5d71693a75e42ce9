//! The metrics registry of one server: counters, gauges and histograms that the listener, the
//! router and the sequencer update, rendered as Prometheus text. Held by `Core`; never global.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of `plantwire_http_requests_total`: the route template (never the raw path, so the
/// label set stays bounded), the method and the status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    pub route: &'static str,
    pub status: u16,
}

/// Labels of `plantwire_ingest_refused_total`: the device (admin-created, so bounded) and the
/// stable error code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    pub device: String,
    pub code: String,
}

/// Labels of the replication lag gauges: the site (this one at an edge, each enrolled one at HQ).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteLabels {
    pub site: String,
}

/// Labels of `plantwire_nats_forward_failures_total`: a fixed set of reasons (`auth`, `connect`,
/// `stream`, `publish`, `site`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    target: String,
}

/// Every metric plantwire exports. Cheap handles: clone the `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    open_connections: Gauge,
    ws_clients: Gauge,
    appends: Counter,
    commit_seconds: Histogram,
    batch_size: Histogram,
    queue_depth: Gauge,
    store_bytes: Gauge,
    storage_degraded: Gauge,
    alarms_standing: Gauge,
    alarms_unacked: Gauge,
    alarms_shelved: Gauge,
    ingest_refused: Family<RefusedLabels, Counter>,
    replication_lag_entries: Family<SiteLabels, Gauge>,
    replication_lag_seconds: Family<SiteLabels, Gauge>,
    nats_forward_lag_entries: Family<SiteLabels, Gauge>,
    nats_forward_failures: Family<ReasonLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("plantwire");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            requests.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "TCP connections open now (TLS handshake included)",
            open_connections.clone(),
        );
        let ws_clients = Gauge::default();
        registry.register(
            "websocket_clients",
            "WebSocket clients connected now",
            ws_clients.clone(),
        );
        let appends = Counter::default();
        registry.register(
            "log_appends",
            "Log entries durably committed",
            appends.clone(),
        );
        // 50 µs .. ~0.4 s: an fsync on flash is a few hundred µs, a slow SD card tens of ms.
        let commit_seconds = Histogram::new([
            0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            0.5,
        ]);
        registry.register(
            "log_commit_seconds",
            "Time of one group commit (write transaction through fsync)",
            commit_seconds.clone(),
        );
        let batch_size = Histogram::new([
            1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
        ]);
        registry.register(
            "log_commit_batch_size",
            "Entries appended per group commit",
            batch_size.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "log_queue_depth",
            "Appends waiting for the writer",
            queue_depth.clone(),
        );
        let store_bytes = Gauge::default();
        registry.register(
            "store_size_bytes",
            "Size of the store file",
            store_bytes.clone(),
        );
        let storage_degraded = Gauge::default();
        registry.register(
            "storage_degraded",
            "1 while the store refuses writes after a failed commit (full disk, I/O error), else 0",
            storage_degraded.clone(),
        );
        let alarms_standing = Gauge::default();
        registry.register(
            "alarms_standing",
            "Alarms active now",
            alarms_standing.clone(),
        );
        let alarms_unacked = Gauge::default();
        registry.register(
            "alarms_unacknowledged",
            "Alarms not acknowledged now (active or returned to normal)",
            alarms_unacked.clone(),
        );
        let alarms_shelved = Gauge::default();
        registry.register(
            "alarms_shelved",
            "Alarms shelved now",
            alarms_shelved.clone(),
        );
        let ingest_refused = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "ingest_refused",
            "Publishes refused after the device was identified, by device and error code",
            ingest_refused.clone(),
        );
        let replication_lag_entries = Family::<SiteLabels, Gauge>::default();
        registry.register(
            "replication_lag_entries",
            "Entries not yet acknowledged by HQ (edge) or not yet received from the site (HQ)",
            replication_lag_entries.clone(),
        );
        let replication_lag_seconds = Family::<SiteLabels, Gauge>::default();
        registry.register(
            "replication_lag_seconds",
            "Age of the oldest unacknowledged entry (edge), or of the newest received one (HQ)",
            replication_lag_seconds.clone(),
        );
        let nats_forward_lag_entries = Family::<SiteLabels, Gauge>::default();
        registry.register(
            "nats_forward_lag_entries",
            "Entries of a site's replica at HQ not yet acknowledged by NATS JetStream",
            nats_forward_lag_entries.clone(),
        );
        let nats_forward_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "nats_forward_failures",
            "Failed attempts of HQ's NATS forwarding (each retried with backoff), by reason",
            nats_forward_failures.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
                target: target_triple().to_string(),
            })
            .set(1);
        registry.register("build_info", "Version and target of this binary", build);
        Self {
            registry,
            requests,
            open_connections,
            ws_clients,
            appends,
            commit_seconds,
            batch_size,
            queue_depth,
            store_bytes,
            storage_degraded,
            alarms_standing,
            alarms_unacked,
            alarms_shelved,
            ingest_refused,
            replication_lag_entries,
            replication_lag_seconds,
            nats_forward_lag_entries,
            nats_forward_failures,
        }
    }

    /// Replication lag of `site`, in entries and seconds.
    pub fn set_replication_lag(&self, site: &str, entries: u64, seconds: u64) {
        let labels = SiteLabels {
            site: site.to_string(),
        };
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.replication_lag_entries
            .get_or_create(&labels)
            .set(clamp(entries));
        self.replication_lag_seconds
            .get_or_create(&labels)
            .set(clamp(seconds));
    }

    /// Entries of `site`'s replica that NATS JetStream has not acknowledged yet.
    pub fn set_nats_forward_lag(&self, site: &str, entries: u64) {
        let labels = SiteLabels {
            site: site.to_string(),
        };
        self.nats_forward_lag_entries
            .get_or_create(&labels)
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// One failed attempt of the NATS forwarding, for `reason`.
    pub fn nats_forward_failed(&self, reason: &str) {
        self.nats_forward_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// The alarm gauges, sampled at scrape time: standing, unacknowledged, shelved.
    pub fn set_alarms(&self, standing: u64, unacked: u64, shelved: u64) {
        let g = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.alarms_standing.set(g(standing));
        self.alarms_unacked.set(g(unacked));
        self.alarms_shelved.set(g(shelved));
    }

    /// Counts one refused publish of `device` with error `code`.
    pub fn ingest_refused(&self, device: &str, code: &str) {
        self.ingest_refused
            .get_or_create(&RefusedLabels {
                device: device.to_string(),
                code: code.to_string(),
            })
            .inc();
    }

    /// Set by the writer when a commit fails and when the store recovers.
    pub fn set_storage_degraded(&self, degraded: bool) {
        self.storage_degraded.set(i64::from(degraded));
    }

    /// Counts one answered request.
    pub fn request(&self, method: &'static str, route: &'static str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .inc();
    }

    /// Counts a connection as open until the guard is dropped.
    pub fn connection(self: &Arc<Self>) -> GaugeGuard {
        GaugeGuard::new(self.open_connections.clone())
    }

    /// Counts a WebSocket client as connected until the guard is dropped.
    pub fn websocket_client(self: &Arc<Self>) -> GaugeGuard {
        GaugeGuard::new(self.ws_clients.clone())
    }

    /// Records one durable group commit of `entries` appends that took `took`.
    pub fn commit(&self, took: Duration, entries: usize) {
        self.commit_seconds.observe(took.as_secs_f64());
        self.batch_size.observe(entries as f64);
        self.appends.inc_by(entries as u64);
    }

    /// The text exposition, with the sampled gauges set to the given values first.
    pub fn render(&self, queue_depth: usize, store_bytes: u64) -> Result<String, std::fmt::Error> {
        self.queue_depth
            .set(i64::try_from(queue_depth).unwrap_or(i64::MAX));
        self.store_bytes
            .set(i64::try_from(store_bytes).unwrap_or(i64::MAX));
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Increments a gauge now and decrements it when dropped.
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    fn new(g: Gauge) -> Self {
        g.inc();
        Self(g)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The target this binary was built for, as `<arch>-<os>-<env>`.
fn target_triple() -> &'static str {
    match (std::env::consts::ARCH, cfg!(target_env = "musl")) {
        ("x86_64", true) => "x86_64-linux-musl",
        ("x86_64", false) => "x86_64-linux-gnu",
        ("aarch64", true) => "aarch64-linux-musl",
        ("aarch64", false) => "aarch64-linux-gnu",
        ("arm", _) => "armv7-linux-gnueabihf",
        (arch, _) => arch,
    }
}
