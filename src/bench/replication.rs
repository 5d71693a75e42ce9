//! `plantwire bench replication`: an edge log shipping to HQ's replicas over the real TLS
//! transport: entries/s, CPU per entry, wire bytes per event, catch-up time, a capped link.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::clock::SystemClock;
use crate::config::Config;
use crate::log::{Author, Log, NewEntry};
use crate::metrics::Metrics;
use crate::replication::edge::{ShipClasses, next_batch};
use crate::replication::net::{self, Hq};
use crate::replication::ship::{self, ShipOptions};
use crate::replication::sites::Sites;
use crate::replication::{Replicas, wire};
use crate::state::AppState;
use crate::tls::issue::DeviceCa;

use super::ingest::process_cpu_us;
use super::jetstream;
use super::link::{LinkSpec, Relay};
use super::wire_codecs::{self, CodecRow};

/// What the bench runs: both sides in this process, or one side of a two-process run.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Edge and HQ in this process, over loopback.
    Both,
    /// HQ only: listens on `listen`, writes an enrolment code to `code_file`, serves until
    /// SIGINT/SIGTERM.
    Hq {
        listen: SocketAddr,
        code_file: PathBuf,
    },
    /// The edge only: enrols with the code in `code_file`, fills its log, ships, reports.
    Edge { code_file: PathBuf },
}

#[derive(Debug, Clone)]
pub struct ReplicationBench {
    /// Directory for the scratch state directories (removed afterwards).
    pub dir: PathBuf,
    pub mode: Mode,
    /// Events of the throughput run.
    pub events: u64,
    /// Events waiting after "an hour offline" (the catch-up run).
    pub backlog: u64,
    /// Events of the run with the shipper's own bandwidth cap (0: no such run).
    pub capped_events: u64,
    /// The cap, bytes per second on the wire.
    pub cap_bytes_per_sec: u64,
    pub body_bytes: usize,
    pub payload: Payload,
    pub batch_entries: usize,
    pub batch_bytes: usize,
    /// Let the shipper grow batches where round trips dominate, as the server does
    /// (`ShipOptions::adaptive`); off: every batch is cut at `batch_entries`.
    pub adaptive_batches: bool,
    /// `nats-server` for the JetStream row (`None`: the one on PATH, if any).
    pub nats_server: Option<PathBuf>,
    /// Both sides in this process only: the edge reaches HQ through the link emulator
    /// (`bench::link`) instead of straight over loopback.
    pub link: Option<LinkSpec>,
}

/// One shipping run: `entries` waiting at the edge, drained to HQ in `seconds`.
#[derive(Debug, Clone)]
pub struct Run {
    pub name: &'static str,
    pub entries: u64,
    pub fill_seconds: f64,
    pub seconds: f64,
    pub per_second: f64,
    /// Process CPU (user + system) per replicated entry, µs.
    pub cpu_us_per_entry: Option<f64>,
    /// Through the link emulator: bytes it carried edge → HQ over the run (TLS records and
    /// HTTP included) and HQ → edge.
    pub link_bytes: Option<(u64, u64)>,
}

/// Bytes the shipper's batches take on the wire, against the events' JSON bodies.
#[derive(Debug, Clone, Default)]
pub struct WireBytes {
    pub entries: u64,
    pub batches: u64,
    pub body_json: u64,
    pub frame_plain: u64,
    pub frame_deflated: u64,
    /// The same batches as wire v2 deflated (what edges before v3 sent).
    pub frame_v2_deflated: u64,
}

const EDGE_SITE: &str = "edge";
const HQ_SITE: &str = "hq";
const FILL_CHUNK: u64 = 500;

fn side_config(dir: &Path, site: &str) -> anyhow::Result<Config> {
    let mut c = Config {
        site: Some(site.into()),
        state_dir: Some(dir.to_path_buf()),
        ..Config::default()
    };
    c.server.listen = vec!["127.0.0.1:0".parse()?];
    c.devices.listen = vec!["127.0.0.1:0".parse()?];
    // No timed checkpoints inside a measured run.
    c.storage.checkpoint_every = 1_000_000_000;
    c.storage.checkpoint_secs = 86_400 * 365;
    Ok(c)
}

async fn open_side(dir: &Path, site: &str) -> anyhow::Result<AppState> {
    std::fs::create_dir_all(dir)?;
    let (state, listeners) =
        AppState::prepare(side_config(dir, site)?, Arc::new(SystemClock)).await?;
    drop(listeners);
    drop(state.take_device_listeners());
    Ok(state)
}

/// HQ's replicas and replication listener, as the server builds them.
struct HqSide {
    replicas: Arc<Replicas>,
    sites: Arc<Sites>,
    addr: String,
    ca_sha256: String,
    stop: CancellationToken,
}

async fn start_hq(st: &AppState, listen: SocketAddr) -> anyhow::Result<HqSide> {
    let ca = Arc::new(DeviceCa::load(st.config(), st.state_dir(), HQ_SITE)?);
    let (replicas, sites) = crate::replication::runtime::hq_parts(
        st.config(),
        st.state_dir(),
        Arc::new(SystemClock),
        Arc::new(Metrics::new()),
        st.signer().clone(),
        Some(st.log().clone()),
    )?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?.to_string();
    let tls = net::server_config(st.tls(), &ca)?;
    let stop = CancellationToken::new();
    let ca_sha256 = net::sha256_hex(ca.cert_der().as_ref());
    tokio::spawn(net::serve(
        listener,
        tls,
        Arc::new(Hq {
            replicas: replicas.clone(),
            sites: sites.clone(),
            ca,
            cert_days: 30,
            clock: Arc::new(SystemClock),
        }),
        stop.clone(),
    ));
    Ok(HqSide {
        replicas,
        sites,
        addr,
        ca_sha256,
        stop,
    })
}

/// What the events look like, which decides how well batches compress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// Plant telemetry: named fields from small vocabularies, a few readings with random
    /// digits, timestamps 10 ms apart.
    Telemetry,
    /// Fixed-shape fields, then pseudo-random readings up to the size: a pessimistic floor.
    Random,
}

const AREAS: &[&str] = &[
    "press-shop",
    "paint",
    "assembly",
    "boiler-house",
    "packaging",
];
const SIGNALS: &[(&str, &str, &str)] = &[
    ("pressure", "bar", "discharge pressure"),
    ("temperature", "degC", "bearing temperature, drive end"),
    ("flow", "m3/h", "outlet flow"),
    ("vibration", "mm/s", "vibration velocity RMS"),
    ("current", "A", "motor current phase L1"),
    ("level", "%", "tank level"),
];

fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
    x |= 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// A device event of about `bytes` of JSON, as `payload` says.
fn event_body(i: u64, bytes: usize, payload: Payload) -> serde_json::Value {
    let mut next = xorshift(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let reading = |r: u64| f64::from((r % 100_000) as u32) / 100.0;
    let mut v = match payload {
        Payload::Random => serde_json::json!({
            "device": format!("plc-{:03}", i % 200),
            "tag": format!("line{}/pump{}/pressure", i % 7, i % 13),
            "ts": 1_764_000_000_000_000u64 + i * 10_000,
            "seq": i,
        }),
        Payload::Telemetry => {
            let (signal, unit, text) = SIGNALS[(i % SIGNALS.len() as u64) as usize];
            serde_json::json!({
                "device": format!("plc-{:03}", i % 200),
                "area": AREAS[(i % AREAS.len() as u64) as usize],
                "tag": format!("line{}/pump{}/{signal}", i % 7, i % 13),
                "description": text,
                "value": reading(next()),
                "unit": unit,
                "setpoint": reading(next()),
                "limits": { "low": 10.0, "high": 95.0 },
                "quality": if i % 97 == 0 { "uncertain" } else { "good" },
                "mode": if i % 11 == 0 { "manual" } else { "auto" },
                "source_ts": 1_764_000_000_000_000u64 + i * 10_000,
                "seq": i,
            })
        }
    };
    let mut samples = Vec::new();
    loop {
        v["samples"] = serde_json::Value::Array(samples.clone());
        if v.to_string().len() + 7 > bytes {
            break;
        }
        samples.push(serde_json::json!(reading(next())));
    }
    v
}

/// Appends `n` events of about `body_bytes` to `log`, `FILL_CHUNK` per transaction.
async fn fill(
    log: &Log,
    from: u64,
    n: u64,
    body_bytes: usize,
    payload: Payload,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut i = from;
    while i < from + n {
        let end = (i + FILL_CHUNK).min(from + n);
        let mut chunk = Vec::with_capacity((end - i) as usize);
        for k in i..end {
            chunk.push(NewEntry::json(
                crate::events::KIND_EVENT,
                &format!("bench/plc-{:03}", k % 200),
                &Author::System,
                &event_body(k, body_bytes, payload),
            )?);
        }
        log.submit(move |tx| {
            for e in &chunk {
                tx.append(e.clone())?;
            }
            Ok::<_, crate::log::AppendError>(())
        })
        .await?;
        i = end;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Starts a shipper and waits until HQ acknowledged `head`; the shipper stops afterwards.
async fn ship_to(log: &Log, dir: &Path, opts: ShipOptions, head: u64) -> anyhow::Result<f64> {
    let stop = CancellationToken::new();
    let started = Instant::now();
    let (task, mut watch) = ship::spawn(log.clone(), dir.to_path_buf(), opts, stop.clone())?;
    while *watch.acked.borrow_and_update() < head {
        watch.acked.changed().await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    stop.cancel();
    task.await?;
    Ok(seconds)
}

/// The batches the shipper sends for `(after, head]`, encoded as it encodes them.
pub fn wire_bytes(
    log: &Log,
    after: u64,
    head: u64,
    batch_entries: usize,
    batch_bytes: usize,
) -> anyhow::Result<WireBytes> {
    let mut w = WireBytes::default();
    let mut at = after;
    while at < head {
        let batch = next_batch(log, at, batch_entries, batch_bytes, ShipClasses::ALL)?;
        let Some(last) = batch.entries.last() else {
            break;
        };
        at = last.seq();
        w.entries += batch.entries.len() as u64;
        w.batches += 1;
        w.body_json += batch
            .entries
            .iter()
            .filter_map(|e| e.entry())
            .map(|e| e.body.len() as u64)
            .sum::<u64>();
        w.frame_plain += wire::encode(&batch, false).len() as u64;
        w.frame_deflated += wire::encode(&batch, true).len() as u64;
        w.frame_v2_deflated += wire::encode_v2(&batch, true).len() as u64;
    }
    Ok(w)
}

fn head_of(log: &Log) -> anyhow::Result<u64> {
    let rtx = log.read()?;
    Ok(log.head(&rtx)?)
}

/// Fills `n` events, ships them (through `relay` when given) and measures.
async fn measured(
    name: &'static str,
    log: &Log,
    dir: &Path,
    opts: ShipOptions,
    n: u64,
    (b, relay): (&ReplicationBench, Option<&Relay>),
) -> anyhow::Result<Run> {
    let from = head_of(log)?;
    let fill_seconds = fill(log, from, n, b.body_bytes, b.payload).await?;
    let head = head_of(log)?;
    let pid = std::process::id();
    let cpu0 = process_cpu_us(pid);
    let carried0 = relay.map(Relay::carried);
    let seconds = ship_to(log, dir, opts, head).await?;
    let cpu = process_cpu_us(pid)
        .zip(cpu0)
        .map(|(b, a)| b.saturating_sub(a));
    let link_bytes = relay
        .map(Relay::carried)
        .zip(carried0)
        .map(|(b, a)| (b.0.saturating_sub(a.0), b.1.saturating_sub(a.1)));
    let entries = head - from;
    Ok(Run {
        name,
        entries,
        fill_seconds,
        seconds,
        per_second: entries as f64 / seconds.max(1e-9),
        cpu_us_per_entry: cpu.map(|c| c as f64 / entries.max(1) as f64),
        link_bytes,
    })
}

/// Each end's chain head once the runs are done: the same seq and hash means every entry
/// arrived exactly once and in order (HQ checks each batch extends its chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heads {
    pub edge_seq: u64,
    pub edge_hash: String,
    pub hq_seq: u64,
    pub hq_hash: String,
}

async fn heads(edge: &Log, replicas: &Replicas) -> anyhow::Result<Heads> {
    let rtx = edge.read()?;
    let head = rtx.chain_head()?;
    let hq = replicas.status(EDGE_SITE).await?;
    Ok(Heads {
        edge_seq: head.as_ref().map_or(0, |h| h.seq),
        edge_hash: hex::encode(head.map_or([0; 32], |h| h.hash)),
        hq_seq: hq.seq,
        hq_hash: hq.head_hash,
    })
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub runs: Vec<Run>,
    pub wire: WireBytes,
    pub codecs: Vec<CodecRow>,
    /// HQ's forwarding into JetStream (both sides in one process only).
    pub jetstream: Option<jetstream::Outcome>,
    /// Both ends' chain heads after the runs (both sides in one process only).
    pub heads: Option<Heads>,
}

fn opts(b: &ReplicationBench, bandwidth: u64) -> ShipOptions {
    ShipOptions {
        batch_entries: b.batch_entries,
        batch_bytes: b.batch_bytes,
        bandwidth,
        ship: ShipClasses::ALL,
        adaptive: b.adaptive_batches,
    }
}

/// Both sides in this process: the loopback runs, the catch-up run and the capped run.
pub async fn run_both(b: &ReplicationBench) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(&b.dir)?;
    let scratch = tempfile::Builder::new()
        .prefix("plantwire-bench-")
        .tempdir_in(&b.dir)?;
    let hq = open_side(&scratch.path().join("hq"), HQ_SITE).await?;
    let edge = open_side(&scratch.path().join("edge"), EDGE_SITE).await?;
    let side = start_hq(&hq, "127.0.0.1:0".parse()?).await?;
    // With a link, the edge enrols at (and ships to) the relay's port, never HQ's own.
    let relay = match b.link {
        Some(spec) => Some(Relay::start(side.addr.parse()?, spec).await?),
        None => None,
    };
    let hq_addr = relay
        .as_ref()
        .map_or_else(|| side.addr.clone(), |r| r.addr().to_string());
    let code = side
        .sites
        .add(EDGE_SITE, &hq_addr, &side.ca_sha256, hq.log().now_us())?
        .encode()?;
    let edge_dir = edge.state_dir().to_path_buf();
    ship::enroll(&code, EDGE_SITE, &edge_dir).await?;
    let log = edge.log().clone();
    // What start-up wrote (admin, keys) goes first, so the runs below count events only.
    ship_to(&log, &edge_dir, opts(b, 0), head_of(&log)?).await?;

    let mut runs = Vec::new();
    let before = head_of(&log)?;
    let bench = (b, relay.as_ref());
    let name = if relay.is_some() { "link" } else { "loopback" };
    runs.push(measured(name, &log, &edge_dir, opts(b, 0), b.events, bench).await?);
    let wire = wire_bytes(&log, before, head_of(&log)?, b.batch_entries, b.batch_bytes)?;
    let codecs =
        wire_codecs::compare(&log, before, head_of(&log)?, b.batch_entries, b.batch_bytes)?;
    if b.backlog > 0 {
        let r = measured("catch-up", &log, &edge_dir, opts(b, 0), b.backlog, bench);
        runs.push(r.await?);
    }
    if b.capped_events > 0 {
        let o = opts(b, b.cap_bytes_per_sec);
        let r = measured("shipper cap", &log, &edge_dir, o, b.capped_events, bench);
        runs.push(r.await?);
    }
    let heads = heads(&log, &side.replicas).await?;
    if let Some(r) = relay {
        r.stop().await;
    }
    let js = jetstream::run(&side.replicas, b.nats_server.as_deref(), scratch.path())
        .await
        .unwrap_or_else(|e| jetstream::Outcome::Skipped(format!("failed: {e:#}")));
    side.stop.cancel();
    side.replicas.close_all().await;
    edge.log().close().await;
    hq.log().close().await;
    Ok(Outcome {
        runs,
        wire,
        codecs,
        jetstream: Some(js),
        heads: Some(heads),
    })
}

/// HQ alone: serves until SIGINT or SIGTERM.
async fn run_hq(b: &ReplicationBench, listen: SocketAddr, code_file: &Path) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let dir = b.dir.join("hq");
    let hq = open_side(&dir, HQ_SITE).await?;
    let side = start_hq(&hq, listen).await?;
    let code = side
        .sites
        .add(EDGE_SITE, &side.addr, &side.ca_sha256, hq.log().now_us())?
        .encode()?;
    let tmp = code_file.with_extension("tmp");
    std::fs::write(&tmp, format!("{code}\n"))?;
    std::fs::rename(&tmp, code_file)?;
    println!(
        "hq: listening on {} (pid {})",
        side.addr,
        std::process::id()
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    side.stop.cancel();
    side.replicas.close_all().await;
    hq.log().close().await;
    Ok(())
}

/// The edge alone: enrols with HQ's code, then the loopback run's measurement over the link.
async fn run_edge(b: &ReplicationBench, code_file: &Path) -> anyhow::Result<Outcome> {
    let code = std::fs::read_to_string(code_file)?;
    let edge = open_side(&b.dir.join("edge"), EDGE_SITE).await?;
    let edge_dir = edge.state_dir().to_path_buf();
    ship::enroll(code.trim(), EDGE_SITE, &edge_dir).await?;
    let log = edge.log().clone();
    ship_to(&log, &edge_dir, opts(b, 0), head_of(&log)?).await?;
    let before = head_of(&log)?;
    let run = measured("link", &log, &edge_dir, opts(b, 0), b.events, (b, None)).await?;
    let wire = wire_bytes(&log, before, head_of(&log)?, b.batch_entries, b.batch_bytes)?;
    let codecs =
        wire_codecs::compare(&log, before, head_of(&log)?, b.batch_entries, b.batch_bytes)?;
    edge.log().close().await;
    Ok(Outcome {
        runs: vec![run],
        wire,
        codecs,
        jetstream: None,
        heads: None,
    })
}

fn print(b: &ReplicationBench, o: &Outcome) {
    println!(
        "{:<12} {:>8} {:>8} {:>9} {:>10} {:>14}",
        "run", "entries", "fill s", "ship s", "entries/s", "CPU µs/entry"
    );
    for r in &o.runs {
        let cpu = r
            .cpu_us_per_entry
            .map_or_else(|| "-".to_string(), |c| format!("{c:.1}"));
        println!(
            "{:<12} {:>8} {:>8.1} {:>9.2} {:>10.0} {:>14}",
            r.name, r.entries, r.fill_seconds, r.seconds, r.per_second, cpu
        );
    }
    match &o.jetstream {
        Some(jetstream::Outcome::Forwarded {
            entries,
            seconds,
            cpu_us_per_entry,
        }) => println!(
            "{:<12} {:>8} {:>8} {:>9.2} {:>10.0} {:>14}",
            "jetstream",
            entries,
            "-",
            seconds,
            *entries as f64 / seconds.max(1e-9),
            cpu_us_per_entry.map_or_else(|| "-".to_string(), |c| format!("{c:.1}"))
        ),
        Some(jetstream::Outcome::Skipped(why)) => println!("{:<12} {why}", "jetstream"),
        None => {}
    }
    for r in &o.runs {
        if let Some((up, down)) = r.link_bytes {
            let n = r.entries.max(1) as f64;
            println!(
                "{}: the link carried {:.1} B/event edge -> HQ (TLS, HTTP and wire frame), {:.1} B/event back",
                r.name,
                up as f64 / n,
                down as f64 / n
            );
        }
    }
    if let Some(h) = &o.heads {
        let same = h.edge_seq == h.hq_seq && h.edge_hash == h.hq_hash;
        println!(
            "heads: edge seq {} {}, HQ's replica seq {} {}: {}",
            h.edge_seq,
            &h.edge_hash[..h.edge_hash.len().min(16)],
            h.hq_seq,
            &h.hq_hash[..h.hq_hash.len().min(16)],
            if same { "the same" } else { "DIFFERENT" }
        );
    }
    let w = &o.wire;
    let per = |x: u64| x as f64 / w.entries.max(1) as f64;
    println!(
        "wire, {} events in {} batches (≤ {} entries / {} bytes): JSON body {:.0} B/event, frame {:.0} B/event uncompressed, {:.0} B/event deflated ({:.1}x smaller than the JSON)",
        w.entries,
        w.batches,
        b.batch_entries,
        b.batch_bytes,
        per(w.body_json),
        per(w.frame_plain),
        per(w.frame_deflated),
        w.body_json as f64 / w.frame_deflated.max(1) as f64
    );
    println!(
        "wire v3 deflated {:.1} B/event against v2 deflated {:.1} B/event",
        per(w.frame_deflated),
        per(w.frame_v2_deflated)
    );
    wire_codecs::print(&o.codecs);
    if w.frame_deflated > 0 {
        println!(
            "at 1 Mbit/s (125,000 B/s of payload, before TCP/TLS/HTTP overhead) that is at most {:.0} events/s",
            125_000.0 / per(w.frame_deflated)
        );
    }
}

fn batches(b: &ReplicationBench) -> String {
    if b.adaptive_batches {
        format!(
            "{} entries, growing to ≤ {} where round trips dominate",
            b.batch_entries,
            (b.batch_entries * 4).min(10_000).max(b.batch_entries)
        )
    } else {
        format!("≤ {} entries (fixed)", b.batch_entries)
    }
}

/// Runs the bench as `b.mode` says and prints its table.
pub async fn report(b: ReplicationBench) -> anyhow::Result<()> {
    match &b.mode {
        Mode::Both => {
            let path = b.link.map_or_else(
                || "over loopback".to_string(),
                |l| format!("through the link emulator ({})", l.label()),
            );
            println!(
                "replication edge -> HQ in one process {path} (real TLS, mutual certificates, real redb stores under {}): {} B {:?} events, batches of {}; CPU is the whole process (edge and HQ)",
                b.dir.display(),
                b.body_bytes,
                b.payload,
                batches(&b)
            );
            let o = run_both(&b).await?;
            print(&b, &o);
        }
        Mode::Hq { listen, code_file } => run_hq(&b, *listen, code_file).await?,
        Mode::Edge { code_file } => {
            println!(
                "replication edge -> HQ over the network (edge process only; CPU is the edge's): {} B {:?} events, batches of {}",
                b.body_bytes,
                b.payload,
                batches(&b)
            );
            let o = run_edge(&b, code_file).await?;
            print(&b, &o);
        }
    }
    Ok(())
}
