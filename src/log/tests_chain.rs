//! Chain versions through the `Log` handle, against a real redb file: a log mixing chain-v1 and
//! chain-v2 entries verifies, and what chain v2 lets `audit verify` catch that v1 could not.

use crate::log::entry::ChainVersion;
use crate::log::{Problem, verify::VerifyReport};
use crate::store::RecordMeta;

use super::Log;
use super::tests::{event, open};

/// Replaces entry `seq`'s stored record by `change` applied to it.
async fn alter(log: &Log, seq: u64, change: impl Fn(&mut Vec<u8>) + Send + Sync + 'static) {
    let mut raw = log.read().unwrap().log_raw(seq).unwrap().unwrap();
    change(&mut raw);
    log.submit(move |tx| {
        tx.views().put_log(seq, raw.clone())?;
        Ok(())
    })
    .await
    .unwrap();
}

fn problem(report: &VerifyReport) -> Option<Problem> {
    report.problem.clone()
}

/// Two entries written before chain v2 and two after: each is read back in its own chain
/// version and the whole log verifies. A chain-v2 record whose kept digest no longer matches its
/// body (what a purge would keep) is a hash mismatch, though the body still hashes right.
#[tokio::test]
async fn a_log_mixing_chain_v1_and_v2_verifies_and_a_wrong_kept_digest_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "p1");
    for n in 0..2 {
        log.submit(move |tx| tx.append_chain_v1(event(n)))
            .await
            .unwrap();
    }
    for n in 2..4 {
        log.submit(move |tx| tx.append(event(n))).await.unwrap();
    }
    {
        let rtx = log.read().unwrap();
        let chains: Vec<_> = (1..=4)
            .map(|s| log.entry(&rtx, s).unwrap().unwrap().chain)
            .collect();
        use ChainVersion::{V1, V2};
        assert_eq!(chains, [V1, V1, V2, V2]);
        let e3 = log.entry(&rtx, 3).unwrap().unwrap();
        assert_eq!(e3.computed_hash(), e3.hash);
        let meta = rtx.log_meta(3).unwrap().unwrap();
        assert_eq!(meta.digest, Some(e3.content_digest()));
        assert_eq!(rtx.log_meta(1).unwrap().unwrap().digest, None);
    }
    let report = log.verify().unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.entries, 4);

    alter(&log, 3, |raw| {
        let (_, len) = RecordMeta::decode(raw).unwrap();
        raw[len - 1] ^= 1; // the digest's last byte: it ends the clear part of a v3 record
    })
    .await;
    assert_eq!(
        problem(&log.verify().unwrap()),
        Some(Problem::HashMismatch { seq: 3 })
    );
    log.close().await;
}

/// Purged, a chain-v1 entry is checked by its links only: a changed `ts` goes unnoticed. A
/// purged chain-v2 entry keeps its digest, so its hash is recomputed: a changed `ts` is caught.
#[tokio::test]
async fn a_purged_chain_v2_entry_keeps_a_hash_that_is_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "p1");
    log.submit(move |tx| tx.append_chain_v1(event(0)))
        .await
        .unwrap();
    for n in 1..3 {
        log.submit(move |tx| tx.append(event(n))).await.unwrap();
    }
    log.submit(|tx| {
        for seq in [1, 2] {
            tx.views().purge_payload(seq, 0, false)?;
        }
        Ok(())
    })
    .await
    .unwrap();
    let report = log.verify().unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.purged, vec![[1, 2]]);
    // `ts` is bytes 1..9 of every record version.
    alter(&log, 1, |raw| raw[8] ^= 1).await;
    let report = log.verify().unwrap();
    assert!(report.ok(), "chain v1: not noticed: {:?}", report.problem);
    alter(&log, 2, |raw| raw[8] ^= 1).await;
    assert_eq!(
        problem(&log.verify().unwrap()),
        Some(Problem::HashMismatch { seq: 2 })
    );
    log.close().await;
}
