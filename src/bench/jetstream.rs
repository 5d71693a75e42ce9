//! The JetStream row of `bench replication`: HQ's real NATS forwarder drains the replicas into a
//! `nats-server -js` started for the run (free loopback port, temp store dir, killed afterwards).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::NatsConfig;
use crate::metrics::Metrics;
use crate::replication::Replicas;
use crate::replication::nats::{Forwarder, cursor};

use super::ingest::process_cpu_us;

/// How long the server may take to accept, and the forwarding to finish.
const START_LIMIT: Duration = Duration::from_secs(30);
const RUN_LIMIT: Duration = Duration::from_secs(600);

/// What the row shows.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Entries forwarded (every site's replica from seq 1), their time and the process CPU.
    Forwarded {
        entries: u64,
        seconds: f64,
        cpu_us_per_entry: Option<f64>,
    },
    /// No run, and why (no `nats-server`).
    Skipped(String),
}

/// `nats-server` on `PATH`, if there is one.
pub fn find_on_path() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    })
}

/// A `nats-server -js` child, killed and reaped when dropped.
struct Server {
    child: std::process::Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start(bin: &Path, store: &Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = std::process::Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", bin.display()))?;
        // Owned from here on: an early return below kills it.
        let server = Self {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + START_LIMIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            anyhow::ensure!(
                Instant::now() < deadline,
                "nats-server did not accept on port {port} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }
}

/// Forwards every entry of every site's replica into a fresh JetStream stream and times it
/// until each site's forward cursor (advanced on PubAcks only) reaches its replica's head.
pub async fn run(
    replicas: &Arc<Replicas>,
    nats_server: Option<&Path>,
    scratch: &Path,
) -> anyhow::Result<Outcome> {
    let Some(bin) = nats_server.map(Path::to_path_buf).or_else(find_on_path) else {
        return Ok(Outcome::Skipped("skipped: nats-server not found".into()));
    };
    let store = scratch.join("nats");
    std::fs::create_dir_all(&store)?;
    let server = Server::start(&bin, &store).await?;
    let cfg = NatsConfig {
        url: Some(server.url.clone()),
        stream: "PLANTWIRE_BENCH".into(),
        ..NatsConfig::default()
    };
    let mut heads = Vec::new();
    for site in replicas.sites()? {
        let replica = replicas.replica(&site).await?;
        let head = replica.head(&replica.read()?)?;
        heads.push((replicas.site_dir(&site), head));
    }
    let entries: u64 = heads.iter().map(|(_, h)| h).sum();
    let stop = CancellationToken::new();
    let pid = std::process::id();
    let cpu0 = process_cpu_us(pid);
    let started = Instant::now();
    let forwarder = Forwarder::new(cfg.clone(), replicas.clone(), Arc::new(Metrics::new()));
    let task = tokio::spawn(forwarder.run(stop.clone()));
    let done = loop {
        let caught_up = heads
            .iter()
            .all(|(dir, head)| cursor::load(dir, &cfg.stream).is_ok_and(|c| c >= *head));
        if caught_up {
            break true;
        }
        if started.elapsed() > RUN_LIMIT {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    let cpu = process_cpu_us(pid)
        .zip(cpu0)
        .map(|(b, a)| b.saturating_sub(a));
    stop.cancel();
    let _ = task.await;
    drop(server);
    anyhow::ensure!(done, "the forwarder did not finish within 600 s");
    Ok(Outcome::Forwarded {
        entries,
        seconds,
        cpu_us_per_entry: cpu.map(|c| c as f64 / entries.max(1) as f64),
    })
}
