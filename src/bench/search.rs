//! `plantwire bench search`: plant chat from a fixed seed through the real chat domain, the send
//! rate without and with the indexer following, indexing throughput, index size, query latency.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::audience::Viewer;
use crate::chat::messages::{SendMessage, send};
use crate::chat::{Actor, conversations};
use crate::clock::SystemClock;
use crate::config::ChatConfig;
use crate::log::{Log, LogOptions};
use crate::search::{self, Query};
use crate::store::{ConvKind, Role};

use super::{Latencies, percentiles};

#[derive(Debug, Clone)]
pub struct SearchBench {
    /// Directory for the scratch store (removed afterwards).
    pub dir: PathBuf,
    pub messages: u64,
    /// Messages of each send-rate phase (indexer off, then on).
    pub rate_messages: u64,
    /// Concurrent senders.
    pub senders: usize,
    pub runs: usize,
    pub seed: u64,
    /// redb's page cache (the server's default unless the bench is told otherwise).
    pub cache_mib: usize,
    /// Where to write the generated texts (one `conv<TAB>author<TAB>text` line each) and the
    /// queries, for `benches/search-fts5.py`.
    pub export: Option<PathBuf>,
}

#[derive(Debug)]
pub struct SearchResult {
    pub messages: u64,
    pub text_bytes: u64,
    pub rate_off: f64,
    pub rate_on: f64,
    pub index_secs: f64,
    pub index_entries: u64,
    pub blocks: u64,
    pub index_bytes: u64,
    pub file_bytes: u64,
    pub one_word: Latencies,
    pub one_word_hits: f64,
    pub two_words: Latencies,
    pub two_words_hits: f64,
    /// After the seeding, when the peak is reset.
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    pub peak_rss_kib: Option<u64>,
}

const EQUIPMENT: &[&str] = &[
    "pump",
    "valve",
    "compressor",
    "conveyor",
    "boiler",
    "chiller",
    "mixer",
    "tank",
    "filter",
    "extruder",
    "blower",
    "separator",
    "dryer",
    "press",
    "kiln",
    "scrubber",
];
const CONDITIONS: &[&str] = &[
    "pressure is high",
    "temperature keeps rising",
    "vibration on the drive end bearing",
    "small leak at the flange",
    "tripped on overload",
    "running normal again",
    "flow dropped below setpoint",
    "making a grinding noise",
    "level alarm came in",
    "seal is weeping",
    "motor current spiking",
    "cavitation on startup",
];
const ACTIONS: &[&str] = &[
    "checking now",
    "maintenance is notified",
    "will swap the mechanical seal after lunch",
    "please confirm on the HMI",
    "reset done, watching it",
    "waiting for parts from stores",
    "isolated and tagged out",
    "opened a work order",
    "calibrated the transmitter",
    "can someone from electrical take a look",
    "logged it in the shift book",
];
const PEOPLE: &[&str] = &["anna", "ben", "chloe", "dmitri", "emre"];
const CHANNELS: usize = 10;

/// A small xorshift generator: the same seed gives the same chat on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
        of[(self.next() % of.len() as u64) as usize]
    }
}

fn message(r: &mut Rng) -> String {
    let line = r.next() % 6 + 1;
    let unit = r.next() % 40 + 1;
    let eq = r.pick(EQUIPMENT);
    let cond = r.pick(CONDITIONS);
    let act = r.pick(ACTIONS);
    match r.next() % 4 {
        0 => format!("Line {line} {eq} {unit}: {cond}, {act}"),
        1 => format!(
            "{eq} {unit} {cond}. Reading {}.{} bar, {act}",
            r.next() % 12,
            r.next() % 10
        ),
        2 => format!(
            "@{} {eq} {unit} on line {line} {cond} - {act}. WO {}",
            r.pick(PEOPLE),
            10_000 + r.next() % 90_000
        ),
        _ => format!("shift handover: {eq} {unit} {cond}; {act}"),
    }
}

fn rss(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Message `n` of the chat: its text, author and conversation index, from `seed` and `n` alone,
/// so senders make each one when they send it and nothing holds the whole run in memory.
fn nth(seed: u64, n: u64, convs: usize) -> (String, &'static str, usize) {
    let mut r = Rng((seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
    r.next();
    let text = message(&mut r);
    let who = PEOPLE[(r.next() % PEOPLE.len() as u64) as usize];
    let conv = (r.next() % convs as u64) as usize;
    (text, who, conv)
}

async fn send_many(
    log: &Log,
    convs: &Arc<Vec<String>>,
    seed: u64,
    from: u64,
    count: u64,
    senders: usize,
    export: Option<&mut std::fs::File>,
) -> anyhow::Result<(f64, u64)> {
    let mut bytes = 0;
    let mut out = export.map(std::io::BufWriter::new);
    for n in from..from + count {
        let (text, who, conv) = nth(seed, n, convs.len());
        bytes += text.len() as u64;
        if let Some(f) = out.as_mut() {
            writeln!(f, "{}\t{who}\t{text}", convs[conv])?;
        }
    }
    if let Some(f) = out.as_mut() {
        f.flush()?;
    }
    drop(out);
    // Each sender takes the next number and makes its message (about a microsecond, beside a
    // durable send of tens).
    let next = Arc::new(std::sync::atomic::AtomicU64::new(from));
    let end = from + count;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (log, convs, next) = (log.clone(), convs.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let cfg = ChatConfig::default();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= end {
                    return Ok::<_, anyhow::Error>(());
                }
                let (text, who, conv) = nth(seed, n, convs.len());
                let actor = Actor {
                    user: who.to_string(),
                    role: Role::Operator,
                };
                let msg = SendMessage {
                    key: format!("b{n}"),
                    text,
                    reply_to: None,
                    attachments: Vec::new(),
                };
                send(&log, &cfg, &actor, &convs[conv], msg).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((count as f64 / started.elapsed().as_secs_f64(), bytes))
}

fn time_queries(
    log: &Log,
    runs: usize,
    make: impl Fn(usize) -> Query,
) -> anyhow::Result<(Latencies, f64)> {
    let viewer = Viewer {
        user: PEOPLE[0].to_string(),
        role: Role::Operator,
    };
    let mut lat = Vec::with_capacity(runs);
    let mut found = 0usize;
    for i in 0..runs {
        let q = make(i);
        let t = Instant::now();
        let rtx = log.read()?;
        let r = search::search(log, &rtx, &viewer, &q)?;
        lat.push(t.elapsed().as_micros() as u64);
        found += r.hits.len();
    }
    Ok((percentiles(lat), found as f64 / runs.max(1) as f64))
}

pub async fn run(b: &SearchBench) -> anyhow::Result<SearchResult> {
    // The server's default page cache unless told otherwise, so the RSS is what a server would hold.
    let opts = LogOptions {
        cache_bytes: b.cache_mib << 20,
        queue_capacity: 1024,
        max_batch: 256,
        hub_capacity: 1024,
        clock_step_us: i64::MAX,
        quick_repair: false,
    };
    let (scratch, log) = super::scratch_log(&b.dir, "search", &opts, Arc::new(SystemClock))?;
    let path = scratch.path().join("bench.redb");
    let cfg = ChatConfig::default();
    let owner = Actor {
        user: PEOPLE[0].to_string(),
        role: Role::Operator,
    };
    let mut convs = Vec::new();
    for i in 0..CHANNELS {
        let c = conversations::create(
            &log,
            &cfg,
            &owner,
            ConvKind::Channel,
            &format!("area-{i}"),
            Vec::new(),
        )
        .await?;
        for p in &PEOPLE[1..] {
            let a = Actor {
                user: p.to_string(),
                role: Role::Operator,
            };
            conversations::join(&log, &cfg, &a, &c.id).await?;
        }
        convs.push(c.id);
    }
    let convs = Arc::new(convs);
    let mut export = match &b.export {
        Some(p) => Some(std::fs::File::create(p)?),
        None => None,
    };
    let mut text_bytes = 0;
    let rate = b.rate_messages.min(b.messages / 4);
    // Back to back, twice: the send rate with no indexer, then with the indexer following.
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let mut sent = 0;
    for _ in 0..2 {
        let (r, n) =
            send_many(&log, &convs, b.seed, sent, rate, b.senders, export.as_mut()).await?;
        off.push(r);
        text_bytes += n;
        sent += rate;
        search::catch_up(&log, u64::MAX).await?;
        let stop = CancellationToken::new();
        let indexer = tokio::spawn(search::indexer::run(log.clone(), stop.clone()));
        let (r, n) =
            send_many(&log, &convs, b.seed, sent, rate, b.senders, export.as_mut()).await?;
        on.push(r);
        text_bytes += n;
        sent += rate;
        stop.cancel();
        indexer.await?;
    }
    let rate_off = off.iter().sum::<f64>() / off.len() as f64;
    let rate_on = on.iter().sum::<f64>() / on.len() as f64;
    // The rest without the indexer, then indexed in one go: the indexing throughput.
    let rest = b.messages - sent;
    let (_, n) = send_many(
        &log,
        &convs,
        b.seed,
        sent,
        rest,
        b.senders.max(64),
        export.as_mut(),
    )
    .await?;
    text_bytes += n;
    // The peak RSS from here on is indexing and querying, not the seeding (Linux: writing 5 to
    // clear_refs resets VmHWM).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before_kib = rss("VmRSS:");
    let before = log.read()?.search_cursor()?;
    let t = Instant::now();
    let cursor = search::catch_up(&log, u64::MAX).await?;
    let index_secs = t.elapsed().as_secs_f64();
    let rss_after_kib = rss("VmRSS:");
    let (blocks, index_bytes) = log.read()?.search_index_size()?;
    let words = [
        "pump",
        "valve",
        "seal",
        "cavitation",
        "bearing",
        "transmitter",
        "flange",
        "overload",
        "kiln",
        "electrical",
    ];
    let pairs = [
        ("pump", "leak"),
        ("valve", "seal"),
        ("boiler", "pressure"),
        ("mixer", "noise"),
        ("compressor", "vibration"),
        ("tank", "level"),
    ];
    if let Some(f) = export.as_mut() {
        for w in words {
            writeln!(f, "#one\t{w}")?;
        }
        for (i, (a, c)) in pairs.iter().enumerate() {
            writeln!(f, "#two\t{a} {c}\t{}", convs[i % convs.len()])?;
        }
    }
    let (one_word, one_word_hits) = time_queries(&log, b.runs, |i| Query {
        q: words[i % words.len()].to_string(),
        ..Query::default()
    })?;
    let (two_words, two_words_hits) = time_queries(&log, b.runs, |i| {
        let (a, c) = pairs[i % pairs.len()];
        Query {
            q: format!("{a} {c}"),
            conv: Some(convs[i % pairs.len() % convs.len()].clone()),
            ..Query::default()
        }
    })?;
    let peak_rss_kib = rss("VmHWM:");
    log.close().await;
    let file_bytes = std::fs::metadata(&path)?.len();
    Ok(SearchResult {
        messages: b.messages,
        text_bytes,
        rate_off,
        rate_on,
        index_secs,
        index_entries: cursor - before,
        blocks,
        index_bytes,
        file_bytes,
        one_word,
        one_word_hits,
        two_words,
        two_words_hits,
        rss_before_kib,
        rss_after_kib,
        peak_rss_kib,
    })
}
