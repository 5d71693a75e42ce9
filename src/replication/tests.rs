//! Replication end to end inside one process, against real redb files: an edge log shipped to
//! HQ's replicas through the wire format, lost acks, restarts and a rewritten history.

use std::path::Path;
use std::sync::Arc;

use crate::clock::SystemClock;
use crate::log::checkpoint::{self, Signer};
use crate::log::checkpointer::{checkpoint_now, ensure_key_logged};
use crate::log::tests::{event, open, options};
use crate::log::{Log, LogOptions};
use crate::metrics::Metrics;
use crate::store::DataKey;

use super::edge::{ShipClasses, acked, next_batch, record_ack};
use super::hq::{Ack, Replicas, ReplicasConfig};
use super::wire;

pub(super) const SITE_SEED: [u8; 32] = [1; 32];
pub(super) const HQ_SEED: [u8; 32] = [5; 32];

pub(super) fn replicas(root: &Path, alarms: Option<Log>) -> Replicas {
    replicas_with(root, alarms, false)
}

/// An HQ with `[replication] accept_stubs = true`.
fn stub_taking_replicas(root: &Path) -> Replicas {
    replicas_with(root, None, true)
}

fn replicas_with(root: &Path, alarms: Option<Log>, accept_stubs: bool) -> Replicas {
    Replicas::new(ReplicasConfig {
        root: root.join("sites"),
        key: Arc::new(|| Ok(DataKey::from_bytes(&[9u8; 32]).unwrap())),
        clock: Arc::new(SystemClock),
        metrics: Arc::new(Metrics::new()),
        log: LogOptions { ..options() },
        max_open: 2,
        witness: Arc::new(Signer::from_seed("hq", &HQ_SEED).unwrap()),
        accept_stubs,
        alarms,
    })
}

/// An edge log named `north` with its key logged, `n` events and a checkpoint after them.
async fn edge_with(dir: &Path, first: u64, n: u64) -> Log {
    let signer = Arc::new(Signer::from_seed("north", &SITE_SEED).unwrap());
    let log = open(dir, "north");
    ensure_key_logged(&log, &signer).await.unwrap();
    for i in 0..n {
        let v = if i == 0 { first } else { i };
        log.submit(move |tx| tx.append(event(v))).await.unwrap();
    }
    checkpoint_now(&log, &signer).await.unwrap();
    log
}

/// One round trip through the wire format (deflated), as the transport carries it.
pub(super) async fn ship(
    edge: &Log,
    hq: &Replicas,
    max: usize,
) -> Result<Ack, super::ReplicationError> {
    let batch = next_batch(edge, acked(edge)?, max, 1 << 20, ShipClasses::ALL)?;
    let bytes = wire::encode(&batch, true);
    hq.receive("north", wire::decode(&bytes)?).await
}

pub(super) fn hashes(log: &Log) -> Vec<(u64, [u8; 32])> {
    let rtx = log.read().unwrap();
    let head = log.head(&rtx).unwrap();
    (1..=head)
        .map(|s| (s, log.entry(&rtx, s).unwrap().unwrap().hash))
        .collect()
}

/// The edge ships everything in small batches; HQ's replica has the same seqs and hashes, its
/// chain verifies under HQ's key, and HQ witnessed the edge's checkpoint with a cosignature.
#[tokio::test]
async fn a_site_replicates_verbatim_and_its_checkpoint_is_witnessed() {
    let (e_dir, h_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let edge = edge_with(e_dir.path(), 0, 10).await;
    let hq = replicas(h_dir.path(), None);
    hq.create_site("north").unwrap();
    let head = hashes(&edge).len() as u64;
    let mut rounds = 0;
    while acked(&edge).unwrap() < head {
        let ack = ship(&edge, &hq, 3).await.unwrap();
        record_ack(&edge, &ack).await.unwrap();
        rounds += 1;
        assert!(rounds < 20);
    }
    let replica = hq.replica("north").await.unwrap();
    assert_eq!(hashes(&replica), hashes(&edge));
    assert!(replica.verify().unwrap().ok());
    let status = hq.status("north").await.unwrap();
    assert_eq!((status.seq, status.lag_entries), (head, 0));
    assert!(!status.history_rewritten);
    let w = status.checkpoint.expect("witnessed");
    assert_eq!(w.size, head - 1, "the checkpoint signs the head before it");
    let hq_key = Signer::from_seed("hq", &HQ_SEED).unwrap().public_key();
    let t = checkpoint::verify_cosignature(&w.note, &w.cosignature, "plantwire/hq", &hq_key);
    assert_eq!(t, Ok(w.witnessed_s));
    hq.close_all().await;
    edge.close().await;
}

/// HQ commits a batch and the ack is lost: the edge sends the same batch again (also after both
/// restart). HQ answers its head and stores nothing twice; the edge resumes after it: no
/// duplicate, no gap.
#[tokio::test]
async fn a_lost_ack_neither_duplicates_nor_loses_entries() {
    let (e_dir, h_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let edge = edge_with(e_dir.path(), 0, 10).await;
    let hq = replicas(h_dir.path(), None);
    hq.create_site("north").unwrap();
    let first = ship(&edge, &hq, 4).await.unwrap();
    assert_eq!(first.head, 4);
    // The ack is lost: the cursor stays at 0 and the same batch goes again.
    assert_eq!(acked(&edge).unwrap(), 0);
    let again = ship(&edge, &hq, 4).await.unwrap();
    assert_eq!(
        again,
        Ack {
            cosignature: again.cosignature.clone(),
            ..first.clone()
        }
    );
    // Both restart before the ack is recorded.
    hq.close_all().await;
    edge.close().await;
    drop((edge, hq));
    let edge = open(e_dir.path(), "north");
    let hq = replicas(h_dir.path(), None);
    let third = ship(&edge, &hq, 4).await.unwrap();
    assert_eq!(third.head, 4, "HQ's cursor survives its restart");
    record_ack(&edge, &third).await.unwrap();
    assert_eq!(
        acked(&edge).unwrap(),
        4,
        "the edge resumes from HQ's cursor"
    );
    let head = hashes(&edge).len() as u64;
    while acked(&edge).unwrap() < head {
        let ack = ship(&edge, &hq, 4).await.unwrap();
        record_ack(&edge, &ack).await.unwrap();
    }
    let replica = hq.replica("north").await.unwrap();
    assert_eq!(hashes(&replica), hashes(&edge));
    assert!(replica.verify().unwrap().ok());
    hq.close_all().await;
    edge.close().await;
}

/// An edge restarted with an old cursor (its own acked row behind HQ) resumes from what HQ
/// answers, not from its own record; an answer naming a hash the edge does not hold is refused.
#[tokio::test]
async fn an_edge_restart_resumes_from_hqs_cursor() {
    let (e_dir, h_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let edge = edge_with(e_dir.path(), 0, 6).await;
    let hq = replicas(h_dir.path(), None);
    hq.create_site("north").unwrap();
    let ack = ship(&edge, &hq, 5).await.unwrap();
    record_ack(&edge, &ack).await.unwrap();
    let ack2 = ship(&edge, &hq, 2).await.unwrap();
    assert_eq!(ack2.head, 7);
    edge.close().await; // stopped before it recorded ack2
    drop(edge);
    let edge = open(e_dir.path(), "north");
    assert_eq!(acked(&edge).unwrap(), 5);
    let resent = ship(&edge, &hq, 2).await.unwrap();
    assert_eq!(resent.head, 7);
    assert_eq!(record_ack(&edge, &resent).await.unwrap(), 7);
    let forged = Ack {
        head: 3,
        head_hash: hex::encode([7u8; 32]),
        cosignature: None,
    };
    let err = record_ack(&edge, &forged).await.unwrap_err();
    assert_eq!(err.rejection().map(|r| r.code), Some("diverged"));
    assert_eq!(acked(&edge).unwrap(), 7);
    hq.close_all().await;
    edge.close().await;
}

/// A second history for the same site and key (a different entry at seq 2, its chain and
/// checkpoints recomputed) reaches an HQ that holds the genuine one: its checkpoint names another
/// head for a size HQ has (`extra = 0`), or signs entries that link to another head than HQ's
/// (`extra = 3`). The batch is refused, the evidence kept, the site flagged, a system alarm raised
/// on HQ's own log, and even genuine batches are refused from then on.
#[tokio::test]
async fn a_rewritten_history_is_refused_and_the_site_flagged() {
    for extra in [0u64, 3] {
        let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        let genuine = edge_with(dirs[0].path(), 0, 6).await;
        genuine.submit(|tx| tx.append(event(50))).await.unwrap();
        let hq_log = open(dirs[3].path(), "hq");
        let hq = replicas(dirs[1].path(), Some(hq_log.clone()));
        hq.create_site("north").unwrap();
        let ack = ship(&genuine, &hq, 100).await.unwrap();
        record_ack(&genuine, &ack).await.unwrap();
        let signer = Arc::new(Signer::from_seed("north", &SITE_SEED).unwrap());
        let forged = edge_with(dirs[2].path(), 666, 6).await;
        for n in 0..extra {
            forged
                .submit(move |tx| tx.append(event(100 + n)))
                .await
                .unwrap();
        }
        if extra > 0 {
            checkpoint_now(&forged, &signer).await.unwrap();
        }
        // The forger sends from HQ's cursor on, with its newest (validly signed) checkpoint.
        let batch = next_batch(&forged, ack.head, 100, 1 << 20, ShipClasses::ALL).unwrap();
        let before = hashes(&hq.replica("north").await.unwrap());
        let err = hq.receive("north", batch).await.unwrap_err();
        assert_eq!(
            err.rejection().map(|r| r.code),
            Some("history_rewritten"),
            "extra {extra}"
        );
        let status = hq.status("north").await.unwrap();
        assert!(status.history_rewritten);
        assert_eq!(hashes(&hq.replica("north").await.unwrap()), before);
        let evidence = super::witness::rewritten(&hq.replica("north").await.unwrap())
            .unwrap()
            .unwrap();
        let at = evidence.size as usize - 1;
        assert_eq!(evidence.replicated_root, hex::encode(before[at].1));
        assert_ne!(hashes(&forged)[at].1, before[at].1);
        // The genuine edge is refused too until someone looks.
        genuine.submit(|tx| tx.append(event(1))).await.unwrap();
        let err = ship(&genuine, &hq, 100).await.unwrap_err();
        assert_eq!(err.rejection().map(|r| r.code), Some("history_rewritten"));
        // HQ's own log holds the system alarm naming the site.
        let rtx = hq_log.read().unwrap();
        let head = hq_log.head(&rtx).unwrap();
        let raised = (1..=head)
            .filter_map(|s| hq_log.entry(&rtx, s).unwrap())
            .any(|e| {
                e.kind.starts_with("alarm.")
                    && String::from_utf8_lossy(&e.body).contains("site/north")
            });
        assert!(raised, "a system alarm names the site");
        drop(rtx);
        hq.close_all().await;
        for l in [genuine, forged, hq_log] {
            l.close().await;
        }
    }
}

/// A batch for a site that was never enrolled, or naming another site than the caller's
/// certificate, is refused and creates nothing.
#[tokio::test]
async fn unknown_or_mismatched_sites_are_refused() {
    let (e_dir, h_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let edge = edge_with(e_dir.path(), 0, 2).await;
    let hq = replicas(h_dir.path(), None);
    let batch = next_batch(&edge, 0, 10, 1 << 20, ShipClasses::ALL).unwrap();
    let err = hq.receive("north", batch.clone()).await.unwrap_err();
    assert_eq!(err.rejection().map(|r| r.code), Some("unknown_site"));
    hq.create_site("south").unwrap();
    let err = hq.receive("south", batch).await.unwrap_err();
    assert_eq!(err.rejection().map(|r| r.code), Some("wrong_site"));
    assert!(!h_dir.path().join("sites/north").exists());
    assert_eq!(hq.sites().unwrap(), vec!["south".to_string()]);
    edge.close().await;
}

/// Bytes on the wire per 300-byte event: a batch of 256 event entries (bodies shaped like
/// ingested events, values varying) framed raw and deflated at levels 1, 6 and 9. Deflate at 6
/// (what `wire::encode` uses) must at least halve the frame. Figures: `cargo test --lib
/// replication::tests::deflate_earns -- --nocapture`, reported in docs/benchmarks.md.
#[test]
fn deflate_earns_its_keep_on_300_byte_events() {
    let site: Arc<str> = "north".into();
    let mut prev = crate::log::entry::GENESIS;
    let mut entries = Vec::new();
    let mut json_bytes = 0usize;
    for i in 0..256u64 {
        let pick = |xs: [&'static str; 3]| xs[(i % 3) as usize];
        let body = serde_json::json!({
            "by": format!("device:plc-{}", i % 7),
            "source": format!("line-{}/pump-{}", i % 3, i % 11),
            "type": pick(["pressure.high", "flow.low", "temperature.reading"]),
            "severity": pick(["info", "warning", "critical"]),
            "message": format!("reading {} at station {} exceeded its band for {} s", 1000 + i * 37 % 911, i % 13, i % 60),
            "attributes": { "value": (i * 7919) % 10007, "unit": "kPa", "batch": format!("B{:06}", 4400 + i / 10), "operator_shift": pick(["early", "late", "night"]) },
            "occurred_at": format!("2026-12-01T04:{:02}:{:02}.{:03}Z", i / 60 % 60, i % 60, (i * 137) % 1000)
        });
        let body = serde_json::to_vec(&body).unwrap();
        json_bytes += body.len();
        let mut e = crate::log::Entry {
            site: site.clone(),
            seq: i + 1,
            ts: 1_764_561_600_000_000 + i as i64 * 10_000,
            kind: "event".into(),
            stream: format!("events/plc-{}", i % 7),
            author: format!("device:plc-{}", i % 7),
            body,
            prev,
            hash: [0; 32],
            chain: crate::log::entry::ChainVersion::V2,
        };
        e.hash = e.computed_hash();
        prev = e.hash;
        entries.push(e);
    }
    let batch = wire::Batch {
        site: "north".into(),
        head: 256,
        checkpoint: None,
        entries: entries.into_iter().map(wire::Shipped::Entry).collect(),
    };
    let raw = wire::encode(&batch, false);
    let per = |n: usize| n as f64 / 256.0;
    println!(
        "v2 deflated {:.1} B/event",
        per(wire::encode_v2(&batch, true).len())
    );
    let mut line = format!(
        "body JSON {:.0} B/event, raw frame {:.0} B/event",
        per(json_bytes),
        per(raw.len())
    );
    for level in [1u8, 6, 9] {
        let z = miniz_oxide::deflate::compress_to_vec(&raw[9..], level);
        line.push_str(&format!(
            ", deflate-{level} {:.1} B/event",
            per(z.len() + 9)
        ));
    }
    println!("{line}");
    let deflated = wire::encode(&batch, true);
    assert_eq!(wire::decode(&deflated).unwrap(), batch);
    assert!(per(json_bytes) > 250.0, "events of about 300 bytes");
    assert!(deflated.len() * 2 < raw.len(), "{line}");
}

/// Ships everything `edge` has to `hq` (site `north`).
async fn ship_all(edge: &Log, hq: &Replicas) {
    let head = hashes(edge).len() as u64;
    let mut rounds = 0;
    while acked(edge).unwrap() < head {
        let ack = ship(edge, hq, 64).await.unwrap();
        record_ack(edge, &ack).await.unwrap();
        rounds += 1;
        assert!(rounds < 50);
    }
}

/// HQ's read view of a replica: pages oldest first from `since` and newest first from `before`
/// each walk every entry exactly once through `next`; `kind` filters exactly or by prefix; the
/// bounds are refused with their slugs; bodies come back opened.
#[tokio::test]
async fn a_replicas_entries_page_both_ways_and_filter_by_kind() {
    use super::views::{EntryQuery, entries};
    let (e_dir, h_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let edge = edge_with(e_dir.path(), 0, 10).await;
    let hq = replicas(h_dir.path(), None);
    hq.create_site("north").unwrap();
    ship_all(&edge, &hq).await;
    let replica = hq.replica("north").await.unwrap();
    let head = hashes(&replica).len() as u64;
    let page = |q: EntryQuery| entries("north", &replica, &q);

    let (mut up, mut since) = (Vec::new(), Some(0));
    while let Some(s) = since {
        let p = page(EntryQuery {
            since: Some(s),
            limit: Some(3),
            ..Default::default()
        })
        .unwrap();
        up.extend(p.entries.iter().map(|e| e.seq));
        since = p.next;
    }
    assert_eq!(up, (1..=head).collect::<Vec<_>>());
    let (mut down, mut before) = (Vec::new(), None);
    loop {
        let p = page(EntryQuery {
            before,
            limit: Some(4),
            ..Default::default()
        })
        .unwrap();
        down.extend(p.entries.iter().map(|e| e.seq));
        match p.next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    assert_eq!(down, (1..=head).rev().collect::<Vec<_>>());

    let notes = page(EntryQuery {
        kind: Some("test.note".into()),
        limit: Some(500),
        all_kinds: true,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(notes.entries.len(), 10);
    assert_eq!(notes.entries[0].body["n"], 9);
    // Read without every kind, a note (not a site-wide kind) comes withheld.
    let withheld = page(EntryQuery {
        kind: Some("test.note".into()),
        limit: Some(500),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(withheld.entries.len(), 10);
    assert!(
        withheld
            .entries
            .iter()
            .all(|e| e.withheld && e.body.is_null() && e.stream.is_empty() && e.author.is_empty())
    );
    assert!(notes.next.is_none());
    let by_prefix = page(EntryQuery {
        kind: Some("test.".into()),
        limit: Some(500),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(by_prefix.entries.len(), 10);
    for (q, code) in [
        (
            EntryQuery {
                limit: Some(0),
                ..Default::default()
            },
            "invalid_limit",
        ),
        (
            EntryQuery {
                limit: Some(501),
                ..Default::default()
            },
            "invalid_limit",
        ),
        (
            EntryQuery {
                since: Some(1),
                before: Some(5),
                ..Default::default()
            },
            "invalid_query",
        ),
    ] {
        let e = page(q).unwrap_err();
        assert_eq!(e.rejection().map(|r| r.code), Some(code));
    }
}

/// The overview's alarm count follows the replicated alarm entries: a raised alarm counts by its
/// priority until its acknowledgement is replicated, and a second count reads only what is new.
#[tokio::test]
async fn the_overview_counts_unacknowledged_alarms_from_the_replicated_entries() {
    use crate::alarms::{Command, Signal};
    let (e_dir, h_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let edge = edge_with(e_dir.path(), 0, 2).await;
    let raise = |source: &str, priority| Signal {
        source: source.into(),
        condition: "level.high".into(),
        active: true,
        priority: Some(priority),
        message: None,
        attributes: Default::default(),
        latched: None,
        suppressed: None,
    };
    let by = crate::log::Author::System;
    let a = crate::alarms::raise(&edge, &by, raise("tank-1", crate::alarms::Priority::High))
        .await
        .unwrap();
    crate::alarms::raise(&edge, &by, raise("tank-2", crate::alarms::Priority::High))
        .await
        .unwrap();
    crate::alarms::raise(&edge, &by, raise("tank-3", crate::alarms::Priority::Low))
        .await
        .unwrap();
    let hq = replicas(h_dir.path(), None);
    hq.create_site("north").unwrap();
    ship_all(&edge, &hq).await;
    let replica = hq.replica("north").await.unwrap();
    let tallies = super::views::Tallies::default();
    let (counts, upto) = tallies.update("north", &replica).unwrap();
    assert_eq!((counts.high, counts.low, counts.critical), (2, 1, 0));
    assert_eq!(upto, hashes(&replica).len() as u64);

    let id = a.alarm().unwrap().id;
    let cfg = crate::config::AlarmsConfig::default();
    edge.submit(move |tx| {
        crate::alarms::act_in_tx(tx, &cfg, &by, id, &Command::Ack { comment: None })
    })
    .await
    .unwrap();
    ship_all(&edge, &hq).await;
    let (counts, upto) = tallies.update("north", &replica).unwrap();
    assert_eq!((counts.high, counts.low), (1, 1));
    assert_eq!(upto, hashes(&replica).len() as u64);
}

/// A page of large bodies ends at the byte budget (`PAGE_BYTES`) with `next` set, whatever the
/// limit, and the next page goes on from there.
#[tokio::test]
async fn a_page_of_entries_stops_at_its_byte_budget() {
    use super::views::{EntryQuery, PAGE_BYTES, entries};
    use crate::log::{Author, NewEntry};
    let (e_dir, h_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let edge = edge_with(e_dir.path(), 0, 0).await;
    let pad = "x".repeat(900 << 10);
    for n in 0..6u64 {
        let big = NewEntry::json(
            "event",
            "events/big",
            &Author::System,
            &serde_json::json!({ "n": n, "pad": pad }),
        )
        .unwrap();
        edge.submit(move |tx| tx.append(big.clone())).await.unwrap();
    }
    let hq = replicas(h_dir.path(), None);
    hq.create_site("north").unwrap();
    ship_all(&edge, &hq).await;
    let replica = hq.replica("north").await.unwrap();
    let q = EntryQuery {
        since: Some(0),
        limit: Some(500),
        kind: Some("event".into()),
        ..Default::default()
    };
    let first = entries("north", &replica, &q).unwrap();
    // 900 KiB each: the fifth passes 4 MiB and ends the page.
    assert_eq!(first.entries.len(), 5);
    assert_eq!(PAGE_BYTES.div_ceil(pad.len()), 5);
    let next = first.next.expect("more follow");
    let rest = entries(
        "north",
        &replica,
        &EntryQuery {
            since: Some(next),
            ..q
        },
    )
    .unwrap();
    assert_eq!(rest.entries.len(), 1);
    assert_eq!(rest.entries[0].body["n"], 5);
    assert!(rest.next.is_none());
}

/// Appends `events` events then `chats` chat messages to `edge`, the chat hashed with chain v1
/// as a log written before chain v2 holds it: unshipped, it travels as legacy stubs.
pub(super) async fn events_and_chat(edge: &Log, events: u64, chats: u64) {
    use crate::log::{Author, NewEntry};
    for i in 0..events {
        let ev = NewEntry::json(
            "event",
            "events/pump",
            &Author::System,
            &serde_json::json!({ "n": i }),
        )
        .unwrap();
        edge.submit(move |tx| tx.append(ev.clone())).await.unwrap();
    }
    for i in 0..chats {
        let chat = NewEntry::json(
            "chat.message",
            "conv/general",
            &Author::System,
            &serde_json::json!({ "text": format!("secret words {i}") }),
        )
        .unwrap();
        edge.submit(move |tx| tx.append_chain_v1(chat.clone()))
            .await
            .unwrap();
    }
}

/// An edge log `north` with its key logged, events and chain-v1 chat, and a checkpoint at its
/// head.
async fn edge_with_chat(dir: &Path) -> (Log, Arc<Signer>) {
    let signer = Arc::new(Signer::from_seed("north", &SITE_SEED).unwrap());
    let edge = open(dir, "north");
    ensure_key_logged(&edge, &signer).await.unwrap();
    for _ in 0..2 {
        events_and_chat(&edge, 1, 1).await;
    }
    checkpoint_now(&edge, &signer).await.unwrap();
    (edge, signer)
}

/// One batch of `edge` from its cursor, `events` only, through the wire format.
pub(super) fn events_batch(edge: &Log, max: usize) -> wire::Batch {
    let batch = next_batch(
        edge,
        acked(edge).unwrap(),
        max,
        1 << 20,
        ShipClasses::of(&["events"]),
    )
    .unwrap();
    wire::decode(&wire::encode(&batch, true)).unwrap()
}

/// `ship = ["events"]` at an edge whose log holds events and chat logged before chain v2, to an
/// HQ with `accept_stubs = true`: HQ's replica has every seq with the edge's hashes, the chat
/// entries as legacy stubs without bodies (reported as stubbed runs), its chain verifies, and
/// the checkpoint (over a legacy stub) is not witnessed. A stub whose hash was altered breaks the
/// next entry's link: the batch is refused and nothing is stored.
#[tokio::test]
async fn unshipped_classes_travel_as_stubs_and_the_chain_still_verifies() {
    use crate::log::{Author, NewEntry};
    let (e_dir, h_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let signer = Arc::new(Signer::from_seed("north", &SITE_SEED).unwrap());
    let edge = open(e_dir.path(), "north");
    ensure_key_logged(&edge, &signer).await.unwrap();
    for i in 0..4u64 {
        let ev = NewEntry::json(
            "event",
            "events/pump",
            &Author::System,
            &serde_json::json!({ "n": i }),
        )
        .unwrap();
        let chat = NewEntry::json(
            "chat.message",
            "conv/general",
            &Author::System,
            &serde_json::json!({ "text": format!("secret words {i}") }),
        )
        .unwrap();
        edge.submit(move |tx| tx.append(ev.clone())).await.unwrap();
        edge.submit(move |tx| tx.append_chain_v1(chat.clone()))
            .await
            .unwrap();
    }
    checkpoint_now(&edge, &signer).await.unwrap();
    let head = hashes(&edge).len() as u64;
    let only_events = ShipClasses::of(&["events"]);

    // First the altered stub, into a fresh HQ: refused, nothing stored.
    let bad_dir = tempfile::tempdir().unwrap();
    let bad_hq = stub_taking_replicas(bad_dir.path());
    bad_hq.create_site("north").unwrap();
    let mut batch = next_batch(&edge, 0, 100, 1 << 20, only_events).unwrap();
    let stub = batch
        .entries
        .iter_mut()
        .find_map(|i| match i {
            wire::Shipped::Stub(s) => Some(s),
            wire::Shipped::Entry(_) => None,
        })
        .expect("a chat entry travels as a stub");
    stub.hash[0] ^= 1;
    // In v3 the next entry's hash is recomputed from the stub's, and the next stub carries
    // the prev the edge had: the batch does not even decode.
    let bytes = wire::encode(&batch, true);
    let err = wire::decode(&bytes).unwrap_err();
    assert!(matches!(err, wire::WireError::StubPrev(_)), "{err}");
    assert_eq!(err.code(), "broken_link");
    // In v2 (hashes carried) HQ finds the broken link itself.
    let bytes = wire::encode_v2(&batch, true);
    let err = bad_hq
        .receive("north", wire::decode(&bytes).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.rejection().map(|r| r.code), Some("broken_link"));
    assert_eq!(bad_hq.status("north").await.unwrap().seq, 0);
    bad_hq.close_all().await;

    // Then the genuine batches, in small steps.
    let hq = stub_taking_replicas(h_dir.path());
    hq.create_site("north").unwrap();
    let mut rounds = 0;
    while acked(&edge).unwrap() < head {
        let batch = next_batch(&edge, acked(&edge).unwrap(), 3, 1 << 20, only_events).unwrap();
        let bytes = wire::encode(&batch, true);
        assert!(
            !bytes.windows(6).any(|w| w == b"secret"),
            "chat text on the wire"
        );
        let ack = hq
            .receive("north", wire::decode(&bytes).unwrap())
            .await
            .unwrap();
        record_ack(&edge, &ack).await.unwrap();
        rounds += 1;
        assert!(rounds < 20);
    }
    let replica = hq.replica("north").await.unwrap();
    let (e_rtx, r_rtx) = (edge.read().unwrap(), replica.read().unwrap());
    let mut stubbed = Vec::new();
    for seq in 1..=head {
        let original = edge.entry(&e_rtx, seq).unwrap().unwrap();
        let meta = r_rtx
            .log_meta(seq)
            .unwrap()
            .expect("every seq is replicated");
        assert_eq!((meta.hash, meta.prev), (original.hash, original.prev));
        let held = replica.entry(&r_rtx, seq).unwrap();
        if original.stream.starts_with("conv/") {
            assert!(meta.is_legacy_stub(), "seq {seq}");
            assert!(meta.kind.is_empty() && meta.stream.is_empty() && meta.author.is_empty());
            assert!(held.is_none(), "a stub has no body");
            stubbed.push([seq, seq]);
        } else {
            assert_eq!(held.map(|e| e.body), Some(original.body), "seq {seq}");
        }
    }
    // The NATS forwarder sends a stub with its hashes and nothing of the entry.
    let m = super::nats::message::build(&replica, &r_rtx, stubbed[0][0]).unwrap();
    assert_eq!(m.subject, "plantwire.north.events");
    assert_eq!(
        m.headers.get("Plantwire-State").map(|v| v.as_str()),
        Some("stub")
    );
    let p: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(p["state"], "stub");
    assert!(p.get("kind").is_none() && p.get("stream").is_none() && p.get("body").is_none());
    assert!(p["hash"].is_string() && p["prev"].is_string());
    drop((e_rtx, r_rtx));
    let report = replica.verify().unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.stubbed, stubbed);
    assert!(report.purged.is_empty() && report.stubs_verified.is_empty());
    let status = hq.status("north").await.unwrap();
    assert_eq!((status.seq, status.lag_entries), (head, 0));
    assert!(
        status.checkpoint.is_none(),
        "the checkpoint over a stub is not witnessed: {:?}",
        status.checkpoint
    );
    hq.close_all().await;
    edge.close().await;
}

/// An HQ with the default `accept_stubs = false` refuses a batch holding a stub with 409
/// `stubs_refused` and stores nothing of it (not even the whole entries before the stub).
#[tokio::test]
async fn an_hq_refuses_stubs_by_default_and_stores_nothing() {
    let (e_dir, h_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (edge, _signer) = edge_with_chat(e_dir.path()).await;
    let hq = replicas(h_dir.path(), None);
    hq.create_site("north").unwrap();
    let batch = events_batch(&edge, 100);
    assert!(batch.entries.first().is_some_and(|i| i.entry().is_some()));
    assert!(batch.entries.iter().any(|i| i.entry().is_none()));
    let err = hq.receive("north", batch).await.unwrap_err();
    let r = err.rejection().expect("a rejection");
    assert_eq!(
        (r.kind, r.code),
        (crate::error::RejectKind::Conflict, "stubs_refused")
    );
    assert!(r.message.contains("accept_stubs"), "{}", r.message);
    let status = hq.status("north").await.unwrap();
    assert_eq!(status.seq, 0);
    assert!(status.checkpoint.is_none());
    // Everything shipped whole is still taken.
    let ack = ship(&edge, &hq, 100).await.unwrap();
    assert_eq!(ack.head, hashes(&edge).len() as u64);
    assert!(ack.cosignature.is_some());
    hq.close_all().await;
    edge.close().await;
}

/// With `accept_stubs = true`, a checkpoint is witnessed while it covers no stub; once one
/// covers a stub (in its batch, or stored by an earlier one) HQ answers no cosignature and
/// keeps the last witnessed checkpoint, though the entries are stored.
#[tokio::test]
async fn a_checkpoint_covering_a_stub_is_not_countersigned() {
    let (e_dir, h_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let signer = Arc::new(Signer::from_seed("north", &SITE_SEED).unwrap());
    let edge = open(e_dir.path(), "north");
    ensure_key_logged(&edge, &signer).await.unwrap();
    events_and_chat(&edge, 2, 0).await;
    checkpoint_now(&edge, &signer).await.unwrap();
    let hq = stub_taking_replicas(h_dir.path());
    hq.create_site("north").unwrap();
    let first = hq.receive("north", events_batch(&edge, 100)).await.unwrap();
    assert!(first.cosignature.is_some(), "no stub yet: witnessed");
    record_ack(&edge, &first).await.unwrap();
    let witnessed = hq.status("north").await.unwrap().checkpoint.unwrap();

    // A stub and a checkpoint over it in one batch.
    events_and_chat(&edge, 1, 1).await;
    checkpoint_now(&edge, &signer).await.unwrap();
    let batch = events_batch(&edge, 100);
    assert!(batch.checkpoint.is_some());
    assert!(batch.entries.iter().any(|i| i.entry().is_none()));
    let second = hq.receive("north", batch).await.unwrap();
    assert_eq!(second.cosignature, None);
    assert_eq!(second.head, hashes(&edge).len() as u64);
    record_ack(&edge, &second).await.unwrap();

    // Then no stub in the batch, but a checkpoint still covering the stored one.
    events_and_chat(&edge, 1, 0).await;
    checkpoint_now(&edge, &signer).await.unwrap();
    let batch = events_batch(&edge, 100);
    assert!(batch.entries.iter().all(|i| i.entry().is_some()));
    let third = hq.receive("north", batch).await.unwrap();
    assert_eq!(third.cosignature, None);
    assert_eq!(third.head, hashes(&edge).len() as u64);
    let status = hq.status("north").await.unwrap();
    assert_eq!(status.checkpoint, Some(witnessed));
    hq.close_all().await;
    edge.close().await;
}

/// A stub dated far past HQ's clock (which would make every later entry go back in time) is
/// refused with `stub_from_future`, even at an HQ taking stubs, and nothing is stored.
#[tokio::test]
async fn a_stub_dated_in_the_future_is_refused() {
    let (e_dir, h_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (edge, _signer) = edge_with_chat(e_dir.path()).await;
    let hq = stub_taking_replicas(h_dir.path());
    hq.create_site("north").unwrap();
    let mut batch = events_batch(&edge, 100);
    for item in &mut batch.entries {
        if let wire::Shipped::Stub(s) = item {
            s.ts = i64::MAX;
        }
    }
    let err = hq.receive("north", batch).await.unwrap_err();
    let r = err.rejection().expect("a rejection");
    assert_eq!(
        (r.kind, r.code),
        (crate::error::RejectKind::Invalid, "stub_from_future")
    );
    assert_eq!(hq.status("north").await.unwrap().seq, 0);
    // The same batch as the edge sent it is taken.
    let ack = hq.receive("north", events_batch(&edge, 100)).await.unwrap();
    assert_eq!(ack.head, hashes(&edge).len() as u64);
    hq.close_all().await;
    edge.close().await;
}

/// Retention at the edge waits for attachments: its floor is HQ's ack, except that no entry
/// referencing an attachment above the blob cursor may go.
#[tokio::test]
async fn the_edges_retention_floor_waits_for_the_attachments_to_follow() {
    let dir = tempfile::tempdir().unwrap();
    let edge = edge_with(dir.path(), 0, 10).await;
    assert_eq!(super::blobs::retention_floor(&edge, 8).unwrap(), 8);
    edge.submit(|tx| {
        tx.views().put_attachment_ref(4, "a-one")?;
        tx.views().put_attachment_ref(6, "a-two")?;
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(super::blobs::retention_floor(&edge, 8).unwrap(), 3);
    assert_eq!(super::blobs::retention_floor(&edge, 2).unwrap(), 2);
    super::blobs::set_cursor(&edge, 4).await.unwrap();
    assert_eq!(super::blobs::retention_floor(&edge, 8).unwrap(), 5);
    super::blobs::set_cursor(&edge, 6).await.unwrap();
    assert_eq!(super::blobs::retention_floor(&edge, 8).unwrap(), 8);
}

/// HQ's head going back (a restore) lowers the blob cursor with the acknowledged seq, so the
/// attachments above it follow again.
#[tokio::test]
async fn an_ack_below_the_blob_cursor_lowers_it() {
    let dir = tempfile::tempdir().unwrap();
    let edge = edge_with(dir.path(), 0, 10).await;
    super::blobs::set_cursor(&edge, 8).await.unwrap();
    let hash3 = {
        let rtx = edge.read().unwrap();
        edge.entry(&rtx, 3).unwrap().unwrap().hash
    };
    let ack = Ack {
        head: 3,
        head_hash: hex::encode(hash3),
        cosignature: None,
    };
    record_ack(&edge, &ack).await.unwrap();
    assert_eq!(
        (acked(&edge).unwrap(), super::blobs::cursor(&edge).unwrap()),
        (3, 3)
    );
}

/// A page of attachment references never splits an entry's and stays within its bound, unless
/// one entry alone passes it.
#[tokio::test]
async fn attachment_reference_pages_keep_entries_whole_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let edge = edge_with(dir.path(), 0, 2).await;
    edge.submit(|tx| {
        for seq in 1..=100u64 {
            for n in 0..3 {
                tx.views()
                    .put_attachment_ref(seq, &format!("a-{seq}-{n}"))?;
            }
        }
        for n in 0..300 {
            tx.views().put_attachment_ref(200, &format!("b-{n:03}"))?;
        }
        Ok(())
    })
    .await
    .unwrap();
    let rtx = edge.read().unwrap();
    let (page, covered) = rtx.attachment_refs_in(0, 1000, 256).unwrap();
    assert_eq!((page.len(), covered), (255, 85));
    let (page, covered) = rtx.attachment_refs_in(85, 1000, 256).unwrap();
    assert_eq!((page.len(), covered), (45, 100));
    let (page, covered) = rtx.attachment_refs_in(100, 1000, 256).unwrap();
    assert_eq!((page.len(), covered), (300, 1000));
    assert!(page.iter().all(|(s, _)| *s == 200));
}
