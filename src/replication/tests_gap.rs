//! Gap records end to end in one process: an edge whose `drop_unreplicated_after` lets retention
//! purge what HQ has not acknowledged writes a signed gap record in the purge's commit; HQ checks
//! it, counts it in the site's status and raises its alarm.

use std::sync::Arc;

use crate::clock::ManualClock;
use crate::config::{Config, ReplicationRole};
use crate::log::checkpoint::Signer;
use crate::log::checkpointer::ensure_key_logged;
use crate::log::{Author, Log, NewEntry};
use crate::metrics::Metrics;
use crate::retention::Keep;
use crate::store::DataKey;

use super::edge::record_ack;
use super::gap::{self, DropAfter, GapBody};
use super::tests::{SITE_SEED, replicas, ship};

const DAY: i64 = 86_400_000_000;

fn config(drop: Option<u32>) -> Config {
    let mut c = Config::default();
    c.replication.role = ReplicationRole::Edge;
    c.replication.drop_unreplicated_after = DropAfter(drop);
    c.retention.events = Keep::Days(1);
    c.retention.pause_ms = 0;
    c
}

/// The edge `north` on a manual clock: its key logged (seq 1) and events at seqs 2..=7.
async fn edge(dir: &std::path::Path, clock: &Arc<ManualClock>, signer: &Signer) -> Log {
    let log = Log::open(
        &dir.join("plantwire.redb"),
        "north",
        DataKey::from_bytes(&[7u8; 32]).unwrap(),
        clock.clone(),
        &crate::log::tests::options(),
        Arc::new(Metrics::new()),
    )
    .unwrap();
    ensure_key_logged(&log, signer).await.unwrap();
    for n in 0..6 {
        let e = NewEntry::json(
            "event",
            "events/pump-7",
            &Author::device("pump-7"),
            &serde_json::json!({ "n": n }),
        )
        .unwrap();
        log.submit(move |tx| tx.append(e.clone())).await.unwrap();
    }
    log
}

/// The gap entries of `log`: (seq, body).
fn gaps(log: &Log) -> Vec<(u64, GapBody)> {
    let rtx = log.read().unwrap();
    let head = log.head(&rtx).unwrap();
    (1..=head)
        .filter_map(|s| log.entry_of_kind(&rtx, s, gap::KIND).unwrap())
        .map(|e| (e.seq, serde_json::from_slice(&e.body).unwrap()))
        .collect()
}

fn whole(log: &Log, seqs: std::ops::RangeInclusive<u64>) -> bool {
    let rtx = log.read().unwrap();
    seqs.into_iter()
        .all(|s| log.entry(&rtx, s).unwrap().is_some())
}

#[tokio::test]
async fn dropping_unacknowledged_entries_writes_a_signed_gap_record_that_hq_shows() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000_000));
    let signer = Arc::new(Signer::from_seed("north", &SITE_SEED).unwrap());
    let log = edge(dirs[0].path(), &clock, &signer).await;
    let hq_log = crate::log::tests::open(dirs[2].path(), "hq");
    let hq = replicas(dirs[1].path(), Some(hq_log.clone()));
    hq.create_site("north").unwrap();
    // HQ takes and acknowledges seqs 1..=3, then goes away.
    let ack = ship(&log, &hq, 3).await.unwrap();
    assert_eq!(ack.head, 3);
    record_ack(&log, &ack).await.unwrap();
    clock.advance_us(40 * DAY);
    let by = Author::System;

    // A policy not yet due purges only what HQ acknowledged, and writes no gap record.
    let r = crate::state::retention(&config(Some(60)), &log, Some(signer.clone()));
    assert_eq!(r.pass(true, &by).await.unwrap().purged, vec![2, 3]);
    assert!(gaps(&log).is_empty());
    // With the policy off, nothing above the acknowledged seq goes, however old.
    let r = crate::state::retention(&config(None), &log, Some(signer.clone()));
    assert!(r.pass(true, &by).await.unwrap().purged.is_empty());
    assert!(whole(&log, 4..=7));
    // Nor without the signing key to sign a gap record with.
    let r = crate::state::retention(&config(Some(30)), &log, None);
    assert!(r.pass(true, &by).await.unwrap().purged.is_empty());

    // Past 30 days, the unacknowledged 4..=7 go, named first by one signed gap record.
    let r = crate::state::retention(&config(Some(30)), &log, Some(signer.clone()));
    let report = r.pass(true, &by).await.unwrap();
    assert_eq!(report.purged, vec![4, 5, 6, 7]);
    let found = gaps(&log);
    assert_eq!(found.len(), 1, "one gap record per range");
    let (gap_seq, body) = &found[0];
    let rtx = log.read().unwrap();
    let (m4, m7) = (
        rtx.log_meta(4).unwrap().unwrap(),
        rtx.log_meta(7).unwrap().unwrap(),
    );
    assert!(m4.purged && m7.purged);
    assert_eq!((body.from, body.to, body.count, body.acked), (4, 7, 4, 3));
    assert_eq!(body.hash, hex::encode(m7.hash));
    assert_eq!(body.prev, hex::encode(m4.prev));
    assert_eq!(body.reason, "drop_unreplicated_after = 30 days");
    // In the purge's own commit, ahead of retention's record of it.
    let purged_seq = (1..=log.head(&rtx).unwrap())
        .rev()
        .find(|&s| {
            rtx.log_meta(s)
                .unwrap()
                .is_some_and(|m| m.kind == "retention.purged")
        })
        .unwrap();
    drop(rtx);
    assert_eq!(*gap_seq + 1, purged_seq);
    let st = gap::verify("north", &signer.public_key(), body).unwrap();
    assert_eq!((st.from, st.to, st.count), (4, 7, 4));

    // HQ comes back: the dropped entries arrive as stubs, the gap record whole and verified.
    let ack = ship(&log, &hq, 100).await.unwrap();
    record_ack(&log, &ack).await.unwrap();
    let replica = hq.replica("north").await.unwrap();
    let rtx = replica.read().unwrap();
    assert!(rtx.log_meta(5).unwrap().unwrap().purged, "a stub at HQ");
    drop(rtx);
    let status = hq.status("north").await.unwrap();
    assert_eq!(
        (status.gaps.count, status.gaps.unverified),
        (1, 0),
        "{:?}",
        status.gaps
    );
    let latest = status.gaps.latest.unwrap();
    assert_eq!((latest.from, latest.to, latest.count), (4, 7, 4));
    assert!(latest.verified, "{:?}", latest.problem);
    let listed = gap::list(&replica, 10).unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].verified);
    // HQ's own log holds the alarm naming the site.
    let rtx = hq_log.read().unwrap();
    let raised = (1..=hq_log.head(&rtx).unwrap())
        .filter_map(|s| hq_log.entry(&rtx, s).unwrap())
        .any(|e| {
            let b = String::from_utf8_lossy(&e.body);
            e.kind.starts_with("alarm.")
                && b.contains("site/north")
                && b.contains("replication.gap")
        });
    assert!(raised, "a system alarm names the site's gap");
    drop(rtx);
    hq.close_all().await;
    log.close().await;
    hq_log.close().await;
}

/// A gap record signed by another key than the site's still replicates (the chain verifies) but
/// shows as unverified.
#[tokio::test]
async fn a_gap_record_by_another_key_is_kept_and_flagged_unverified() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000_000));
    let signer = Arc::new(Signer::from_seed("north", &SITE_SEED).unwrap());
    let log = edge(dirs[0].path(), &clock, &signer).await;
    let hq = replicas(dirs[1].path(), None);
    hq.create_site("north").unwrap();
    clock.advance_us(40 * DAY);
    let stranger = Arc::new(Signer::from_seed("north", &[42; 32]).unwrap());
    let r = crate::state::retention(&config(Some(30)), &log, Some(stranger));
    assert_eq!(r.pass(true, &Author::System).await.unwrap().purged.len(), 6);
    ship(&log, &hq, 100).await.unwrap();
    let status = hq.status("north").await.unwrap();
    assert_eq!((status.gaps.count, status.gaps.unverified), (1, 1));
    let latest = status.gaps.latest.unwrap();
    assert_eq!((latest.from, latest.to), (2, 7));
    assert!(!latest.verified);
    assert!(latest.problem.unwrap().contains("does not verify"));
    hq.close_all().await;
    log.close().await;
}

/// An entry HQ acknowledged whose attachment has not followed (above the blob cursor) is data
/// not yet at HQ too: the policy may drop it only under a gap record naming it, while the
/// acknowledged entries without attachments go without one; with the policy off, retention
/// stops below it.
#[tokio::test]
async fn an_acknowledged_entry_whose_attachment_has_not_followed_is_dropped_under_a_gap_record() {
    let dir = tempfile::tempdir().unwrap();
    let hq_dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000_000));
    let signer = Arc::new(Signer::from_seed("north", &SITE_SEED).unwrap());
    let log = edge(dir.path(), &clock, &signer).await;
    let hq = replicas(hq_dir.path(), None);
    hq.create_site("north").unwrap();
    let ack = ship(&log, &hq, 100).await.unwrap();
    assert_eq!(ack.head, 7);
    record_ack(&log, &ack).await.unwrap();
    // Seq 5 names an attachment that has not followed (the blob cursor is still at 0).
    log.submit(|tx| Ok(tx.views().put_attachment_ref(5, "att-5")?))
        .await
        .unwrap();
    clock.advance_us(40 * DAY);
    let by = Author::System;

    let r = crate::state::retention(&config(None), &log, Some(signer.clone()));
    assert_eq!(r.pass(true, &by).await.unwrap().purged, vec![2, 3, 4]);
    assert!(gaps(&log).is_empty());

    let r = crate::state::retention(&config(Some(30)), &log, Some(signer.clone()));
    assert_eq!(r.pass(true, &by).await.unwrap().purged, vec![5, 6, 7]);
    let found = gaps(&log);
    assert_eq!(found.len(), 1);
    let body = &found[0].1;
    assert_eq!((body.from, body.to, body.count, body.acked), (5, 5, 1, 7));
    gap::verify("north", &signer.public_key(), body).unwrap();
    hq.close_all().await;
    log.close().await;
}
