//! `plantwire bench append`: durable append throughput and acknowledgement latency through the
//! real sequencer and store, for several producer counts, beside the disk's own fsync latency.

pub mod alarms;
pub mod chat;
pub mod incidents;
pub mod ingest;
pub mod jetstream;
pub mod kpis;
pub mod link;
pub mod query;
pub mod replication;
pub mod report;
pub mod search;
pub mod wire_codecs;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::clock::SystemClock;
use crate::log::{Hub, NewEntry, Sequencer, SequencerConfig};
use crate::store::{DataKey, Store};

/// A scratch log for an in-process bench: a fresh store under `dir` (removed when the returned
/// directory is dropped), a new data key, the site `bench`.
pub(crate) fn scratch_log(
    dir: &Path,
    name: &str,
    opts: &crate::log::LogOptions,
    clock: Arc<dyn crate::clock::Clock>,
) -> anyhow::Result<(tempfile::TempDir, crate::log::Log)> {
    std::fs::create_dir_all(dir)?;
    let scratch = tempfile::Builder::new()
        .prefix(&format!("plantwire-bench-{name}-"))
        .tempdir_in(dir)?;
    let key = DataKey::from_bytes(&DataKey::generate_bytes()?)?;
    let log = crate::log::Log::open(
        &scratch.path().join("bench.redb"),
        "bench",
        key,
        clock,
        opts,
        Arc::new(crate::metrics::Metrics::new()),
    )?;
    Ok((scratch, log))
}

#[derive(Debug, Clone)]
pub struct AppendBench {
    /// Directory on the disk to measure; scratch stores are made and removed inside it.
    pub dir: PathBuf,
    pub producers: Vec<usize>,
    /// Appends per producer count.
    pub count: usize,
    pub body_bytes: usize,
    pub max_batch: usize,
    /// Commits record redb's allocator state (`storage.quick_repair`).
    pub quick_repair: bool,
}

#[derive(Debug, Clone)]
pub struct Latencies {
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

#[derive(Debug, Clone)]
pub struct AppendResult {
    pub producers: usize,
    pub appends: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub latency: Latencies,
}

pub fn percentiles(mut v: Vec<u64>) -> Latencies {
    if v.is_empty() {
        return Latencies {
            p50_us: 0,
            p99_us: 0,
            max_us: 0,
        };
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    Latencies {
        p50_us: at(0.50),
        p99_us: at(0.99),
        max_us: v[v.len() - 1],
    }
}

/// Latency of writing 4 KiB and `fdatasync` in `dir`, `rounds` times.
pub fn fsync_latency(dir: &Path, rounds: usize) -> std::io::Result<Latencies> {
    use std::io::Write;
    let path = dir.join(".plantwire-fsync-probe");
    let mut f = std::fs::File::create(&path)?;
    let block = vec![0x5au8; 4096];
    let mut lat = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        lat.push(t.elapsed().as_micros() as u64);
    }
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(percentiles(lat))
}

pub async fn run_append(b: &AppendBench) -> anyhow::Result<Vec<AppendResult>> {
    std::fs::create_dir_all(&b.dir)?;
    let mut results = Vec::new();
    for &producers in &b.producers {
        let scratch = tempfile::Builder::new()
            .prefix("plantwire-bench-")
            .tempdir_in(&b.dir)?;
        let store = Arc::new(Store::open(&scratch.path().join("bench.redb"), 64 << 20)?);
        store.set_quick_repair(b.quick_repair);
        let key = Arc::new(DataKey::from_bytes(&DataKey::generate_bytes()?)?);
        let site: Arc<str> = "bench".into();
        store.bind_identity(&site, &key)?;
        let hub = Hub::new(1024);
        let stop = CancellationToken::new();
        let (seq, writer) = Sequencer::start(
            store.clone(),
            key,
            site,
            Arc::new(SystemClock),
            hub.clone(),
            SequencerConfig {
                queue_capacity: producers.max(1) * 4,
                max_batch: b.max_batch,
                metrics: Arc::new(crate::metrics::Metrics::new()),
                clock_step_us: i64::MAX,
            },
            stop.clone(),
        )?;
        let body = vec![b'x'; b.body_bytes];
        let issued = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for p in 0..producers {
            let seq = seq.clone();
            let issued = issued.clone();
            let body = body.clone();
            let total = b.count;
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let entry = NewEntry {
                    kind: "event".into(),
                    stream: format!("bench/{p}"),
                    author: crate::log::Author::Cli("bench".into()),
                    body,
                };
                while issued.fetch_add(1, Ordering::Relaxed) < total {
                    let e = entry.clone();
                    let t = Instant::now();
                    loop {
                        let e = e.clone();
                        match seq.submit(move |tx| tx.append(e.clone())).await {
                            Ok(_) => break,
                            Err(crate::log::SubmitError::Busy) => {
                                tokio::time::sleep(Duration::from_micros(200)).await;
                            }
                            Err(err) => return Err(anyhow::anyhow!("append failed: {err}")),
                        }
                    }
                    lat.push(t.elapsed().as_micros() as u64);
                }
                Ok::<_, anyhow::Error>(lat)
            }));
        }
        let mut all = Vec::with_capacity(b.count);
        for t in tasks {
            all.extend(t.await??);
        }
        let seconds = started.elapsed().as_secs_f64();
        stop.cancel();
        writer.ended().await;
        results.push(AppendResult {
            producers,
            appends: all.len(),
            seconds,
            per_second: all.len() as f64 / seconds,
            latency: percentiles(all),
        });
        drop(store);
    }
    Ok(results)
}
