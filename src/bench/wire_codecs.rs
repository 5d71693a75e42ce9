//! The compression comparison of `bench replication`: the shipper's real batches encoded as wire
//! v2 and v3 under each candidate codec and layout, bytes per event and CPU per batch.

use std::time::Instant;

use crate::log::Log;
use crate::replication::edge::{ShipClasses, next_batch};
use crate::replication::wire::{self, Batch, Shipped};

/// One candidate: its bytes on the wire and what it costs per batch.
#[derive(Debug, Clone)]
pub struct CodecRow {
    pub name: &'static str,
    pub bytes_per_event: f64,
    pub compress_us_per_batch: f64,
    pub decompress_us_per_batch: f64,
}

/// A preset dictionary candidate: the envelope's fixed words and common JSON keys (what a first
/// entry of a batch could refer back to). Measured here only; not part of the wire.
const DICTIONARY: &[u8] = br#"{"device":"plc-","area":"","tag":"line","description":"","value":,"unit":"","setpoint":,"limits":{"low":,"high":},"quality":"good","mode":"auto","source_ts":,"seq":,"samples":[],"type":"","source":"","severity":"info","message":"","attributes":{},"occurred_at":"eventevents/device:system"#;

/// The v3 payload in a column layout: the header as in v3, then every item's tag and ts delta,
/// then all kinds, all streams, all authors, all bodies (stubs' hashes last), the last hash.
fn column_payload(batch: &Batch) -> Vec<u8> {
    let mut out = Vec::new();
    let put = |out: &mut Vec<u8>, b: &[u8]| {
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    };
    put(&mut out, batch.site.as_bytes());
    varint(&mut out, batch.head);
    put(
        &mut out,
        batch.checkpoint.as_deref().unwrap_or_default().as_bytes(),
    );
    let mut ts = 0i64;
    for item in &batch.entries {
        out.push(u8::from(item.entry().is_none()));
        varint(&mut out, (item.ts() as u64).wrapping_sub(ts as u64));
        ts = item.ts();
    }
    let entries: Vec<_> = batch.entries.iter().filter_map(Shipped::entry).collect();
    for e in &entries {
        put(&mut out, e.kind.as_bytes());
    }
    for e in &entries {
        put(&mut out, e.stream.as_bytes());
    }
    for e in &entries {
        put(&mut out, e.author.as_bytes());
    }
    for e in &entries {
        put(&mut out, &e.body);
    }
    for item in &batch.entries {
        if item.entry().is_none() {
            out.extend_from_slice(&item.prev());
            out.extend_from_slice(&item.hash());
        }
    }
    if let Some(first) = batch.entries.first() {
        out.extend_from_slice(&first.prev());
    }
    if let Some(last) = batch.entries.last() {
        out.extend_from_slice(&last.hash());
    }
    out
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// What deflate with `DICTIONARY` preset would send: the stream of dictionary then payload,
/// less what the dictionary alone costs (an estimate within a few bytes of a real preset).
fn deflate_with_dictionary(payload: &[u8], level: u8) -> usize {
    let mut joined = DICTIONARY.to_vec();
    joined.extend_from_slice(payload);
    let both = miniz_oxide::deflate::compress_to_vec(&joined, level).len();
    let dict = miniz_oxide::deflate::compress_to_vec(DICTIONARY, level).len();
    both.saturating_sub(dict)
}

#[derive(Default)]
struct Acc {
    bytes: u64,
    compress_us: f64,
    decompress_us: f64,
}

fn time<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed().as_secs_f64() * 1e6)
}

/// Deflates `payload` (header bytes of the frame added) and inflates it back, timed.
fn deflate_row(acc: &mut Acc, payload: &[u8], level: u8) {
    let (z, c) = time(|| miniz_oxide::deflate::compress_to_vec(payload, level));
    let (_, d) = time(|| miniz_oxide::inflate::decompress_to_vec_with_limit(&z, payload.len()));
    acc.bytes += (z.len() + 9) as u64;
    acc.compress_us += c;
    acc.decompress_us += d;
}

/// Every candidate over the shipper's batches of `(after, head]`.
pub fn compare(
    log: &Log,
    after: u64,
    head: u64,
    batch_entries: usize,
    batch_bytes: usize,
) -> anyhow::Result<Vec<CodecRow>> {
    const NAMES: [&str; 7] = [
        "v2 deflate-6 (before)",
        "v3 raw",
        "v3 deflate-1",
        "v3 deflate-6 (chosen)",
        "v3 deflate-9",
        "v3 columns deflate-6",
        "v3 deflate-6 + dictionary",
    ];
    let mut accs: Vec<Acc> = NAMES.iter().map(|_| Acc::default()).collect();
    let (mut at, mut events, mut batches) = (after, 0u64, 0u64);
    while at < head {
        let batch = next_batch(log, at, batch_entries, batch_bytes, ShipClasses::ALL)?;
        let Some(last) = batch.entries.last() else {
            break;
        };
        at = last.seq();
        events += batch.entries.len() as u64;
        batches += 1;
        let v2 = wire::encode_v2(&batch, false);
        deflate_row(&mut accs[0], &v2[9..], 6);
        let v3 = wire::encode(&batch, false);
        let (_, d) = time(|| wire::decode(&v3));
        accs[1].bytes += v3.len() as u64;
        accs[1].decompress_us += d;
        deflate_row(&mut accs[2], &v3[9..], 1);
        deflate_row(&mut accs[3], &v3[9..], 6);
        deflate_row(&mut accs[4], &v3[9..], 9);
        deflate_row(&mut accs[5], &column_payload(&batch), 6);
        let (n, c) = time(|| deflate_with_dictionary(&v3[9..], 6));
        accs[6].bytes += (n + 9) as u64;
        accs[6].compress_us += c;
    }
    let per_batch = |x: f64| x / batches.max(1) as f64;
    Ok(NAMES
        .iter()
        .zip(accs)
        .map(|(name, a)| CodecRow {
            name,
            bytes_per_event: a.bytes as f64 / events.max(1) as f64,
            compress_us_per_batch: per_batch(a.compress_us),
            decompress_us_per_batch: per_batch(a.decompress_us),
        })
        .collect())
}

/// Prints the comparison as a table (decompress of "v3 raw" is the whole decode: parsing and
/// recomputing every hash; the others time inflate alone).
pub fn print(rows: &[CodecRow]) {
    println!(
        "{:<28} {:>8} {:>14} {:>16}",
        "wire codec", "B/event", "compress µs/b", "decompress µs/b"
    );
    for r in rows {
        println!(
            "{:<28} {:>8.1} {:>14.0} {:>16.0}",
            r.name, r.bytes_per_event, r.compress_us_per_batch, r.decompress_us_per_batch
        );
    }
}
