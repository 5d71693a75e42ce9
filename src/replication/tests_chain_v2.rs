//! Chain-v2 stubs end to end inside one process, against real redb files: an edge's unshipped
//! (or purged) chain-v2 entries reach an HQ with default settings as stubs it re-hashes.

use std::sync::Arc;

use crate::log::checkpoint::{self, Signer};
use crate::log::checkpointer::{checkpoint_now, ensure_key_logged};
use crate::log::tests::open;
use crate::log::{Author, Log, NewEntry};

use super::edge::{ShipClasses, acked, next_batch, record_ack};
use super::tests::{HQ_SEED, SITE_SEED, events_batch, hashes, replicas, ship};
use super::wire;

fn event(i: u64) -> NewEntry {
    NewEntry::json(
        "event",
        "events/pump",
        &Author::System,
        &serde_json::json!({ "n": i }),
    )
    .unwrap()
}

fn chat(i: u64) -> NewEntry {
    NewEntry::json(
        "chat.message",
        "conv/general",
        &Author::System,
        &serde_json::json!({ "text": format!("secret words {i}") }),
    )
    .unwrap()
}

/// An edge `north`: its key, an event, a chat message, an event, a chat message, a checkpoint,
/// all chain v2 (as every entry written now). Returns the chat messages' seqs.
async fn edge_v2(dir: &std::path::Path) -> (Log, Vec<u64>) {
    let signer = Arc::new(Signer::from_seed("north", &SITE_SEED).unwrap());
    let edge = open(dir, "north");
    ensure_key_logged(&edge, &signer).await.unwrap();
    let mut chats = Vec::new();
    for i in 0..2 {
        let (ev, ch) = (event(i), chat(i));
        edge.submit(move |tx| tx.append(ev.clone())).await.unwrap();
        chats.push(edge.submit(move |tx| tx.append(ch.clone())).await.unwrap());
    }
    checkpoint_now(&edge, &signer).await.unwrap();
    (edge, chats)
}

/// The runs `[s, s]` of single seqs.
fn runs(seqs: &[u64]) -> Vec<[u64; 2]> {
    seqs.iter().map(|&s| [s, s]).collect()
}

/// A log mixing chain v1 (written before the upgrade: an event) and chain v2 entries ships
/// `events` only to an HQ with the default `accept_stubs = false`: the chain-v2 chat entries
/// travel as stubs carrying their digest (no chat text on the wire), HQ re-hashes and takes
/// them, stores them keeping the digest, `audit verify` at HQ re-hashes them too (no unverifiable
/// run), and the checkpoint over them is countersigned.
#[tokio::test]
async fn chain_v2_stubs_are_verified_taken_by_default_and_countersigned() {
    let (e_dir, h_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let signer = Arc::new(Signer::from_seed("north", &SITE_SEED).unwrap());
    let edge = open(e_dir.path(), "north");
    let old = event(99);
    edge.submit(move |tx| tx.append_chain_v1(old.clone()))
        .await
        .unwrap();
    ensure_key_logged(&edge, &signer).await.unwrap();
    let mut chats = Vec::new();
    for i in 0..3 {
        let (ev, ch) = (event(i), chat(i));
        edge.submit(move |tx| tx.append(ev.clone())).await.unwrap();
        chats.push(edge.submit(move |tx| tx.append(ch.clone())).await.unwrap());
    }
    checkpoint_now(&edge, &signer).await.unwrap();
    let edge_report = edge.verify().unwrap();
    assert!(edge_report.ok(), "{:?}", edge_report.problem);
    let head = hashes(&edge).len() as u64;

    let hq = replicas(h_dir.path(), None);
    hq.create_site("north").unwrap();
    let mut rounds = 0;
    while acked(&edge).unwrap() < head {
        let batch = next_batch(
            &edge,
            acked(&edge).unwrap(),
            3,
            1 << 20,
            ShipClasses::of(&["events"]),
        )
        .unwrap();
        let bytes = wire::encode(&batch, false);
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
    {
        let (e_rtx, r_rtx) = (edge.read().unwrap(), replica.read().unwrap());
        for seq in 1..=head {
            let original = edge.entry(&e_rtx, seq).unwrap().unwrap();
            let meta = r_rtx.log_meta(seq).unwrap().expect("every seq replicated");
            assert_eq!((meta.hash, meta.prev), (original.hash, original.prev));
            if chats.contains(&seq) {
                assert!(meta.is_stub() && !meta.is_legacy_stub(), "seq {seq}");
                assert_eq!(meta.digest, Some(original.content_digest()));
                assert!(replica.entry(&r_rtx, seq).unwrap().is_none());
            } else {
                let held = replica.entry(&r_rtx, seq).unwrap().expect("whole");
                assert_eq!(held, original, "seq {seq}, chain {:?}", original.chain);
            }
        }
    }
    let report = replica.verify().unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.stubs_verified, runs(&chats));
    assert!(report.stubbed.is_empty(), "no unverifiable run");
    let w = hq
        .status("north")
        .await
        .unwrap()
        .checkpoint
        .expect("witnessed");
    assert_eq!(w.size, head - 1);
    assert!(
        w.size >= *chats.last().unwrap(),
        "the checkpoint covers the stubs"
    );
    let hq_key = Signer::from_seed("hq", &HQ_SEED).unwrap().public_key();
    let t = checkpoint::verify_cosignature(&w.note, &w.cosignature, "plantwire/hq", &hq_key);
    assert_eq!(t, Ok(w.witnessed_s));
    hq.close_all().await;
    edge.close().await;
}

/// A chain-v2 stub with its digest or ts altered no longer chains to wire v3's last hash
/// (`bad_last_hash` at decoding); in wire v2, which carries it whole, with its digest, ts or prev
/// altered it no longer hashes to what the next entry links to (or no longer links itself):
/// `broken_link`. One altered in memory, its
/// old hash kept, is `hash_mismatch`. Each time nothing is stored; the genuine batch is then
/// taken and its checkpoint witnessed.
#[tokio::test]
async fn an_altered_chain_v2_stub_is_refused_and_nothing_is_stored() {
    let (e_dir, h_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (edge, _chats) = edge_v2(e_dir.path()).await;
    let hq = replicas(h_dir.path(), None);
    hq.create_site("north").unwrap();
    type Alter = (&'static str, fn(&mut wire::Stub));
    let alter: [Alter; 3] = [
        ("digest", |s| {
            if let Some(d) = s.digest.as_mut() {
                d[0] ^= 1;
            }
        }),
        ("ts", |s| s.ts += 1),
        ("prev", |s| s.prev[0] ^= 1),
    ];
    for (what, change) in alter {
        let mut batch = events_batch(&edge, 100);
        let stub = batch
            .entries
            .iter_mut()
            .find_map(|i| match i {
                wire::Shipped::Stub(s) => Some(s),
                wire::Shipped::Entry(_) => None,
            })
            .expect("a chat entry travels as a stub");
        assert!(stub.verifiable(), "a chain-v2 stub");
        change(stub);
        if what != "prev" {
            // Wire v3 carries no stub prev, and a changed digest or ts no longer chains to the
            // batch's last hash: refused at decoding.
            let v3 = wire::decode(&wire::encode(&batch, true)).unwrap_err();
            assert_eq!(v3.code(), "bad_last_hash", "{what}");
        }
        // Wire v2 (still read) carries every stub whole: HQ's append catches it.
        let bytes = wire::encode_v2(&batch, true);
        let err = hq
            .receive("north", wire::decode(&bytes).unwrap())
            .await
            .unwrap_err();
        assert_eq!(
            err.rejection().map(|r| r.code),
            Some("broken_link"),
            "{what}: {err}"
        );
        assert_eq!(hq.status("north").await.unwrap().seq, 0, "{what}");
    }
    let mut batch = events_batch(&edge, 100);
    for item in &mut batch.entries {
        if let wire::Shipped::Stub(s) = item
            && let Some(d) = s.digest.as_mut()
        {
            d[0] ^= 1;
        }
    }
    let err = hq.receive("north", batch).await.unwrap_err();
    assert_eq!(err.rejection().map(|r| r.code), Some("hash_mismatch"));
    let status = hq.status("north").await.unwrap();
    assert_eq!((status.seq, status.checkpoint), (0, None));

    let ack = hq.receive("north", events_batch(&edge, 100)).await.unwrap();
    assert_eq!(ack.head, hashes(&edge).len() as u64);
    assert!(ack.cosignature.is_some());
    hq.close_all().await;
    edge.close().await;
}

/// An entry whose payload retention purged at the edge (HQ lost it: a restore) travels as a
/// stub: a chain-v2 one keeps its digest, so an HQ with default settings re-hashes and takes it
/// even though its class is shipped.
#[tokio::test]
async fn a_purged_chain_v2_entry_travels_as_a_verifiable_stub() {
    let (e_dir, h_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (edge, chats) = edge_v2(e_dir.path()).await;
    let purged = chats[0];
    edge.submit(move |tx| {
        tx.views().purge_payload(purged, 0, false)?;
        Ok(())
    })
    .await
    .unwrap();
    let report = edge.verify().unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.purged, runs(&[purged]));
    let hq = replicas(h_dir.path(), None);
    hq.create_site("north").unwrap();
    // Up to the purged entry first: HQ's ack then names it, and the edge takes that ack.
    let batch = next_batch(&edge, 0, purged as usize, 1 << 20, ShipClasses::ALL).unwrap();
    assert!(batch.entries.last().is_some_and(|i| i.entry().is_none()));
    let ack = hq.receive("north", batch).await.unwrap();
    assert_eq!(ack.head, purged);
    assert_eq!(record_ack(&edge, &ack).await.unwrap(), purged);
    let ack = ship(&edge, &hq, 100).await.unwrap();
    let head = edge.head(&edge.read().unwrap()).unwrap();
    assert_eq!(ack.head, head);
    assert!(ack.cosignature.is_some());
    let replica = hq.replica("north").await.unwrap();
    let report = replica.verify().unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.stubs_verified, runs(&[purged]));
    hq.close_all().await;
    edge.close().await;
}

/// What HQ's NATS forwarder publishes for a replica holding chain-v2 stubs: the stub's message
/// carries its content digest (what its hash commits to) and nothing of its content; a whole
/// chain-v2 entry carries the same digest beside its body.
#[tokio::test]
async fn nats_messages_of_chain_v2_stubs_carry_the_digest() {
    let (e_dir, h_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (edge, chats) = edge_v2(e_dir.path()).await;
    let head = hashes(&edge).len() as u64;
    let hq = replicas(h_dir.path(), None);
    hq.create_site("north").unwrap();
    while acked(&edge).unwrap() < head {
        let batch = next_batch(
            &edge,
            acked(&edge).unwrap(),
            100,
            1 << 20,
            ShipClasses::of(&["events"]),
        )
        .unwrap();
        let ack = hq.receive("north", batch).await.unwrap();
        record_ack(&edge, &ack).await.unwrap();
    }
    let replica = hq.replica("north").await.unwrap();
    let (e_rtx, r_rtx) = (edge.read().unwrap(), replica.read().unwrap());
    for seq in 1..=head {
        let original = edge.entry(&e_rtx, seq).unwrap().unwrap();
        let m = super::nats::message::build(&replica, &r_rtx, seq).unwrap();
        let state = m
            .headers
            .get("Plantwire-State")
            .unwrap()
            .as_str()
            .to_string();
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(
            v["digest"],
            hex::encode(original.content_digest()),
            "seq {seq}"
        );
        assert_eq!(v["hash"], hex::encode(original.hash));
        if chats.contains(&seq) {
            assert_eq!(state, "stub");
            assert!(v.get("body").is_none() && v.get("kind").is_none(), "{v}");
            assert!(!m.payload.windows(6).any(|w| w == b"secret"));
        } else {
            assert_eq!(state, "entry");
            assert!(v.get("body").is_some());
        }
    }
    drop((e_rtx, r_rtx));
    hq.close_all().await;
    edge.close().await;
}
