//! What `bench ingest` and `bench query` print: one table row per run, the figures the targets
//! of issue 13 are stated in.

use super::ingest::{self, IngestBench};
use super::query::{self, QueryBench};

pub async fn ingest(b: IngestBench) -> anyhow::Result<()> {
    let credential = match b.credential {
        ingest::Credential::Token(_) => "device token",
        ingest::Credential::Certificate { .. } => "device certificate, mutual TLS",
    };
    let per = if b.batch > 1 {
        format!("{} events per request to /api/v1/events/batch", b.batch)
    } else {
        "one event per request to /api/v1/events".to_string()
    };
    println!(
        "event ingest over HTTPS to {} ({} events per run, {per}, closed-loop publishers, {credential}; latency per request)",
        b.addr, b.count
    );
    println!(
        "protocol  publishers  events  seconds  events/s  p50 µs  p99 µs  refused  server CPU µs/event  client CPU µs/event"
    );
    for r in ingest::run(&b).await? {
        let cpu = r
            .cpu_us_per_event
            .map_or_else(|| "-".to_string(), |c| format!("{c:.1}"));
        let client = r
            .client_cpu_us_per_event
            .map_or_else(|| "-".to_string(), |c| format!("{c:.1}"));
        println!(
            "{:<9} {:>10} {:>7} {:>8.2} {:>9.0} {:>7} {:>7} {:>8} {:>20} {:>20}",
            r.proto.name(),
            r.publishers,
            r.events,
            r.seconds,
            r.per_second,
            r.latency.p50_us,
            r.latency.p99_us,
            r.refused,
            cpu,
            client
        );
    }
    Ok(())
}

pub async fn query(b: QueryBench) -> anyhow::Result<()> {
    let (seed_secs, results) = query::run(&b).await?;
    println!(
        "filtered event listings (limit 100, newest first unless noted) over {} log entries (4/5 events of 100 devices, 1/5 chat), seeded in {seed_secs:.1} s, {} runs each, in process",
        b.entries, b.runs
    );
    println!(
        "{:<42} {:>6} {:>8} {:>8} {:>8}",
        "query", "found", "p50 µs", "p99 µs", "max µs"
    );
    for r in results {
        println!(
            "{:<42} {:>6} {:>8} {:>8} {:>8}",
            r.name, r.found, r.latency.p50_us, r.latency.p99_us, r.latency.max_us
        );
    }
    Ok(())
}

pub async fn kpis(b: super::kpis::KpiBench) -> anyhow::Result<()> {
    let (seed_secs, results) = super::kpis::run(&b).await?;
    println!(
        "alarm KPIs over {} alarm transitions (raise, ack, clear of 2,000 conditions over 4 weeks), seeded in {seed_secs:.1} s, in process",
        b.transitions
    );
    println!(
        "{:<34} {:>11} {:>5} {:>8} {:>8} {:>8}",
        "range", "annunciated", "runs", "p50 ms", "p99 ms", "max ms"
    );
    for r in results {
        let runs = if r.name.contains("full") { 3 } else { b.runs };
        println!(
            "{:<34} {:>11} {:>5} {:>8.1} {:>8.1} {:>8.1}",
            r.name,
            r.annunciated,
            runs,
            r.latency.p50_us as f64 / 1e3,
            r.latency.p99_us as f64 / 1e3,
            r.latency.max_us as f64 / 1e3
        );
    }
    Ok(())
}

pub async fn alarms(b: super::alarms::AlarmBench) -> anyhow::Result<()> {
    let r = super::alarms::run(&b).await?;
    println!(
        "alarm flood over HTTPS to {}: {} devices x {} alarms, closed loop, one device token",
        b.addr, b.devices, b.per_device
    );
    println!(
        "raised {} in {:.2} s ({:.0}/s); raise answer p50 {} µs, p99 {} µs",
        r.raised, r.seconds, r.per_second, r.raise.p50_us, r.raise.p99_us
    );
    println!(
        "raise-to-visible on a WebSocket (domain alarms): {} seen, p50 {} µs, p99 {} µs, max {} µs",
        r.seen, r.visible.p50_us, r.visible.p99_us, r.visible.max_us
    );
    println!(
        "one bulk ack of {} visible alarms: {} acked in {:.1} ms",
        super::alarms::ACK_BATCH.min(r.raised),
        r.ack_count,
        r.ack_ms
    );
    match r.peak_rss_kib {
        Some(k) => println!("server peak RSS during the flood: {} MiB", k / 1024),
        None => println!("server peak RSS: - (pass --server-pid)"),
    }
    Ok(())
}

pub async fn incidents(b: super::incidents::IncidentBench) -> anyhow::Result<()> {
    let r = super::incidents::run(&b).await?;
    println!(
        "incident rules during an alarm flood, in process: {} alarms by {} closed-loop raisers, every {}th matches the rule",
        r.alarms, b.publishers, b.every
    );
    println!(
        "{} incidents opened; flood done in {:.2} s; open latency (raise answered -> incident.opened committed) p50 {} µs, p99 {} µs, max {} µs",
        r.incidents, r.flood_secs, r.open.p50_us, r.open.p99_us, r.open.max_us
    );
    println!(
        "checking one reply (8 questions) against the pinned version: {:.2} µs per reply over {} replies",
        r.check_us, b.replies
    );
    println!(
        "answering end to end (check, job, durable commit), {} replies one at a time: p50 {} µs, p99 {} µs, max {} µs",
        r.incidents.min(1000),
        r.answer.p50_us,
        r.answer.p99_us,
        r.answer.max_us
    );
    Ok(())
}

pub async fn search(b: super::search::SearchBench) -> anyhow::Result<()> {
    let r = super::search::run(&b).await?;
    let mib = |x: u64| x as f64 / (1 << 20) as f64;
    println!(
        "search over {} plant chat messages (seed {}, {} senders), in process",
        r.messages, b.seed, b.senders
    );
    println!(
        "send rate: {:.0}/s without the indexer, {:.0}/s with it following ({:+.1} %); mean of 2 alternating phases of {} messages each",
        r.rate_off,
        r.rate_on,
        (r.rate_on / r.rate_off - 1.0) * 100.0,
        b.rate_messages.min(b.messages / 4)
    );
    println!(
        "indexing: {} entries in {:.1} s = {:.0} entries/s",
        r.index_entries,
        r.index_secs,
        r.index_entries as f64 / r.index_secs.max(1e-9)
    );
    println!(
        "index: {} blocks, {:.1} MiB of keys and sealed blocks for {:.1} MiB of text ({:.0} %); store file {:.1} MiB",
        r.blocks,
        mib(r.index_bytes),
        mib(r.text_bytes),
        r.index_bytes as f64 * 100.0 / r.text_bytes.max(1) as f64,
        mib(r.file_bytes)
    );
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>8}",
        "query (limit 20)", "hits", "p50 µs", "p99 µs", "max µs"
    );
    for (name, l, h) in [
        ("one word", &r.one_word, r.one_word_hits),
        ("two words + conv filter", &r.two_words, r.two_words_hits),
    ] {
        println!(
            "{name:<34} {h:>8.1} {:>8} {:>8} {:>8}",
            l.p50_us, l.p99_us, l.max_us
        );
    }
    let kib =
        |v: Option<u64>| v.map_or("-".to_string(), |k| format!("{:.0} MiB", k as f64 / 1024.0));
    println!(
        "RSS before indexing {}, after indexing {}, peak while indexing and querying {}",
        kib(r.rss_before_kib),
        kib(r.rss_after_kib),
        kib(r.peak_rss_kib)
    );
    Ok(())
}
