//! Unit tests of the log through its handle, against a real redb file in a temp dir: the
//! sequencer's rollback-and-rerun, `follow`, two logs side by side, and migrations from v1.

use std::path::Path;
use std::sync::Arc;

use crate::clock::SystemClock;
use crate::error::Rejection;
use crate::metrics::Metrics;
use crate::store::{DataKey, DeviceRow, Store};

use super::{Author, Log, LogOptions, NewEntry, SubmitError};

pub(crate) fn options() -> LogOptions {
    LogOptions {
        cache_bytes: 4 << 20,
        queue_capacity: 256,
        max_batch: 256,
        hub_capacity: 16,
        clock_step_us: 60_000_000,
        quick_repair: false,
    }
}

pub(crate) fn open(dir: &Path, site: &str) -> Log {
    open_with(dir, site, &options())
}

fn open_with(dir: &Path, site: &str, opts: &LogOptions) -> Log {
    let key = DataKey::from_bytes(&[7u8; 32]).unwrap();
    Log::open(
        &dir.join("plantwire.redb"),
        site,
        key,
        Arc::new(SystemClock),
        opts,
        Arc::new(Metrics::new()),
    )
    .unwrap()
}

pub(crate) fn event(n: u64) -> NewEntry {
    NewEntry::json(
        "test.note",
        "test/notes",
        &Author::System,
        &serde_json::json!({ "n": n }),
    )
    .unwrap()
}

/// Holds the writer inside a batch until the returned sender is dropped or sent to, so the jobs
/// submitted meanwhile are committed together in the next batch.
async fn hold_writer(log: &Log) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    let mut started_tx = Some(started_tx);
    let wait = Arc::new(std::sync::Mutex::new(wait));
    let held = log.clone();
    let task = tokio::spawn(async move {
        held.submit(move |_tx| {
            if let Some(s) = started_tx.take() {
                let _ = s.send(());
            }
            let _ = wait.lock().unwrap().recv();
            Ok(())
        })
        .await
        .unwrap();
    });
    started.await.unwrap();
    (release, task)
}

#[tokio::test]
async fn a_job_that_refuses_after_writing_is_rolled_back_and_the_rest_of_its_batch_commits() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "north");
    let mut hub = log.subscribe();
    let (release, held) = hold_writer(&log).await;
    // An ack comes after the commit: a fresh snapshot taken on the ack already holds the entry.
    let acked_after_commit = |log: Log, n: u64| async move {
        let seq = log.submit(move |tx| tx.append(event(n))).await?;
        let rtx = log.read().unwrap();
        assert!(
            log.entry(&rtx, seq).unwrap().is_some(),
            "acked before commit"
        );
        Ok::<u64, SubmitError>(seq)
    };

    let a = tokio::spawn(acked_after_commit(log.clone(), 1));
    let b = tokio::spawn({
        let log = log.clone();
        async move {
            log.submit(|tx| {
                // Writes a view row and an entry, then refuses: all of it must vanish.
                tx.views().put_device(&DeviceRow {
                    name: "ghost".into(),
                    token_hash: [1; 32],
                    created_at_us: 0,
                    created_by: "test".into(),
                    revoked_at_us: None,
                })?;
                tx.append(event(2))?;
                Err::<u64, _>(Rejection::conflict("refused", "after writing").into())
            })
            .await
        }
    });
    let c = tokio::spawn(acked_after_commit(log.clone(), 3));
    // Let all three reach the queue, then let the writer take them as one batch.
    while log.queue_depth() < 3 {
        tokio::task::yield_now().await;
    }
    release.send(()).unwrap();
    held.await.unwrap();

    let a = a.await.unwrap().unwrap();
    let refused = b.await.unwrap().unwrap_err();
    let c = c.await.unwrap().unwrap();
    assert!(matches!(refused, SubmitError::Rejected(r) if r.code == "refused"));
    assert_eq!((a, c), (1, 2), "the two good jobs get dense seqs");
    let rtx = log.read().unwrap();
    assert!(
        rtx.device("ghost").unwrap().is_none(),
        "the view write was rolled back"
    );
    assert_eq!(log.head(&rtx).unwrap(), 2);
    let body = |seq| {
        let e = log.entry(&rtx, seq).unwrap().unwrap();
        serde_json::from_slice::<serde_json::Value>(&e.body).unwrap()["n"].clone()
    };
    assert_eq!((body(1), body(2)), (1.into(), 3.into()));
    // The hub carried exactly the two committed entries, in order and as stored, and nothing of
    // the refused job (it publishes after answering, so it is read with `recv`; the next entry
    // it carries is the one committed after them).
    let stored: Vec<_> = (1..=2)
        .map(|seq| log.entry(&rtx, seq).unwrap().unwrap())
        .collect();
    drop(rtx);
    log.submit(|tx| tx.append(event(4))).await.unwrap();
    let mut live = Vec::new();
    for _ in 0..3 {
        live.push(hub.recv().await.unwrap().entry().clone());
    }
    assert_eq!(live[..2], stored[..]);
    assert_eq!(live[2].seq, 3);
    log.close().await;
    drop(log);
    let store = Store::open(&dir.path().join("plantwire.redb"), 1 << 20).unwrap();
    let key = DataKey::from_bytes(&[7u8; 32]).unwrap();
    let report = super::verify(&store, &Arc::<str>::from("north"), &key).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
}

/// Many jobs queued at once, drained in small batches, some refusing after they wrote: what
/// commits keeps the queue's order with dense seqs, a refusal leaves nothing behind, each ack
/// comes after its commit, and the hub carries exactly what committed, in order. The runtime has
/// one thread (the writer has its own): a job's task then runs until it waits for its answer, so
/// it is in the queue before the next one is spawned. On two worker threads a job could take its
/// queue slot, be counted, and still be overtaken by the next one before it was in the queue.
#[tokio::test]
async fn many_batches_with_refusals_keep_queue_order_and_ack_only_after_commit() {
    const JOBS: u64 = 120;
    let refuses = |i: u64| i % 7 == 3;
    let dir = tempfile::tempdir().unwrap();
    let log = open_with(
        dir.path(),
        "north",
        &LogOptions {
            max_batch: 8,
            hub_capacity: 256,
            ..options()
        },
    );
    let mut hub = log.subscribe();
    let (release, held) = hold_writer(&log).await;
    let mut jobs = Vec::new();
    for i in 0..JOBS {
        let mine = log.clone();
        jobs.push(tokio::spawn(async move {
            let log = mine;
            let acked = log
                .submit(move |tx| {
                    if refuses(i) {
                        // Writes a view row and an entry, then refuses: all of it must vanish.
                        tx.views().put_device(&DeviceRow {
                            name: format!("ghost-{i}"),
                            token_hash: [1; 32],
                            created_at_us: 0,
                            created_by: "test".into(),
                            revoked_at_us: None,
                        })?;
                        tx.append(event(i))?;
                        return Err(Rejection::conflict("refused", "after writing").into());
                    }
                    tx.append(event(i))
                })
                .await;
            // The snapshot is taken the moment the ack arrives: it must hold the entry.
            let seen = acked
                .as_ref()
                .ok()
                .map(|&seq| log.entry(&log.read().unwrap(), seq).unwrap());
            (acked, seen)
        }));
        // One at a time into the queue, so its order is known.
        while log.queue_depth() < jobs.len() {
            tokio::task::yield_now().await;
        }
    }
    release.send(()).unwrap();
    held.await.unwrap();

    let n_of = |e: &super::Entry| {
        serde_json::from_slice::<serde_json::Value>(&e.body).unwrap()["n"]
            .as_u64()
            .unwrap()
    };
    let kept: Vec<u64> = (0..JOBS).filter(|&i| !refuses(i)).collect();
    let mut next_seq = 1;
    for (i, job) in (0..JOBS).zip(jobs) {
        let (acked, seen) = job.await.unwrap();
        if refuses(i) {
            assert!(
                matches!(acked, Err(SubmitError::Rejected(ref r)) if r.code == "refused"),
                "job {i}: {acked:?}"
            );
            continue;
        }
        assert_eq!(acked.unwrap(), next_seq, "job {i} in queue order, dense");
        let seen = seen
            .unwrap()
            .unwrap_or_else(|| panic!("job {i} acked before its commit"));
        assert_eq!(n_of(&seen), i);
        next_seq += 1;
    }

    let rtx = log.read().unwrap();
    assert_eq!(log.head(&rtx).unwrap(), kept.len() as u64);
    let stored: Vec<_> = (1..=kept.len() as u64)
        .map(|seq| log.entry(&rtx, seq).unwrap().unwrap())
        .collect();
    assert_eq!(stored.iter().map(n_of).collect::<Vec<_>>(), kept);
    for i in (0..JOBS).filter(|&i| refuses(i)) {
        assert!(
            rtx.device(&format!("ghost-{i}")).unwrap().is_none(),
            "the view write of refused job {i} was rolled back"
        );
    }
    drop(rtx);
    // The hub publishes after answering: one more entry marks the end of what it carried.
    let end = log.submit(|tx| tx.append(event(JOBS))).await.unwrap();
    let mut live = Vec::new();
    loop {
        let e = hub.recv().await.unwrap().entry().clone();
        if e.seq == end {
            break;
        }
        live.push(e);
    }
    assert_eq!(
        live, stored,
        "the hub carried exactly the committed entries"
    );
    log.close().await;
}

#[tokio::test]
async fn a_later_job_of_a_batch_sees_the_stream_rows_of_the_earlier_ones() {
    // Log and index rows wait in memory until the commit; a read of them inside the write
    // (`in_stream`, as the checkpointer does) must still see what earlier jobs appended.
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "north");
    let (release, held) = hold_writer(&log).await;
    let a = tokio::spawn({
        let log = log.clone();
        async move { log.submit(|tx| tx.append(event(1))).await }
    });
    let b = tokio::spawn({
        let log = log.clone();
        async move {
            log.submit(|tx| {
                let seq = tx.next_seq() - 1;
                let mine = tx.views().in_stream("test/notes", seq)?;
                let other = tx.views().in_stream("other/stream", seq)?;
                Ok((seq, mine, other))
            })
            .await
        }
    });
    while log.queue_depth() < 2 {
        tokio::task::yield_now().await;
    }
    release.send(()).unwrap();
    held.await.unwrap();
    assert_eq!(a.await.unwrap().unwrap(), 1);
    assert_eq!(b.await.unwrap().unwrap(), (1, true, false));
    let rtx = log.read().unwrap();
    assert_eq!(log.head(&rtx).unwrap(), 1);
    assert!(log.entry(&rtx, 1).unwrap().is_some());
}

#[tokio::test]
async fn follow_replays_then_goes_live_each_seq_once_even_after_lagging() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "north");
    for n in 1..=5 {
        log.submit(move |tx| tx.append(event(n))).await.unwrap();
    }
    let mut f = log.follow(2).unwrap();
    assert_eq!(f.head(), 5);
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(f.next().await.unwrap().seq);
    }
    assert_eq!(seen, [3, 4, 5]);
    // Far more than the live ring holds (16), committed while the follower does not read.
    for n in 6..=60 {
        log.submit(move |tx| tx.append(event(n))).await.unwrap();
    }
    for _ in 6..=60 {
        seen.push(f.next().await.unwrap().seq);
    }
    assert_eq!(
        seen,
        (3..=60).collect::<Vec<_>>(),
        "nothing skipped, nothing repeated"
    );
    let next = tokio::spawn(async move { f.next().await.map(|e| e.seq) });
    log.submit(|tx| tx.append(event(61))).await.unwrap();
    assert_eq!(next.await.unwrap().unwrap(), 61);
    log.close().await;
}

#[tokio::test]
async fn two_logs_side_by_side_keep_separate_chains() {
    let north_dir = tempfile::tempdir().unwrap();
    let south_dir = tempfile::tempdir().unwrap();
    let north = open(north_dir.path(), "north");
    let south = open(south_dir.path(), "south");
    let mut south_live = south.subscribe();
    for n in 1..=3 {
        north.submit(move |tx| tx.append(event(n))).await.unwrap();
    }
    south.submit(|tx| tx.append(event(100))).await.unwrap();
    let (nr, sr) = (north.read().unwrap(), south.read().unwrap());
    assert_eq!((north.head(&nr).unwrap(), south.head(&sr).unwrap()), (3, 1));
    let n1 = north.entry(&nr, 1).unwrap().unwrap();
    let s1 = south.entry(&sr, 1).unwrap().unwrap();
    assert_eq!((&*n1.site, &*s1.site), ("north", "south"));
    assert_ne!(n1.hash, s1.hash, "each chain is its own");
    assert_eq!(n1.computed_hash(), n1.hash);
    assert_eq!(s1.computed_hash(), s1.hash);
    // The south hub heard only its own entry.
    assert_eq!(south_live.recv().await.unwrap().seq, 1);
    assert!(south_live.try_recv().is_err());
    drop((nr, sr));
    north.close().await;
    south.close().await;
}

#[tokio::test]
async fn a_job_failing_on_a_malformed_row_is_refused_alone() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "north");
    let (release, held) = hold_writer(&log).await;
    let good = tokio::spawn({
        let log = log.clone();
        async move { log.submit(|tx| tx.append(event(1))).await }
    });
    let bad = tokio::spawn({
        let log = log.clone();
        async move {
            log.submit(|tx| {
                tx.append(event(2))?;
                Err::<u64, _>(crate::store::StoreError::Malformed { what: "test row" }.into())
            })
            .await
        }
    });
    while log.queue_depth() < 2 {
        tokio::task::yield_now().await;
    }
    release.send(()).unwrap();
    held.await.unwrap();
    assert_eq!(good.await.unwrap().unwrap(), 1, "the innocent job commits");
    assert!(matches!(bad.await.unwrap(), Err(SubmitError::Storage(_))));
    assert!(!log.storage_degraded(), "a bad row is not a storage fault");
    assert_eq!(log.head(&log.read().unwrap()).unwrap(), 1);
    log.close().await;
}

/// A checkpoint signs the entry before it and `verify` counts it; with nothing new, none is
/// written; a signing key other than the logged one is refused at start.
#[tokio::test]
async fn checkpoints_sign_the_head_and_verify() {
    use super::checkpoint::Signer;
    use super::checkpointer::{CheckpointStartError, checkpoint_now, ensure_key_logged};
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "north");
    let signer = Arc::new(Signer::from_seed("north", &[1; 32]).unwrap());
    ensure_key_logged(&log, &signer).await.unwrap();
    ensure_key_logged(&log, &signer).await.unwrap();
    for n in 0..3 {
        log.submit(move |tx| tx.append(event(n))).await.unwrap();
    }
    assert_eq!(checkpoint_now(&log, &signer).await.unwrap(), Some(5));
    assert_eq!(
        checkpoint_now(&log, &signer).await.unwrap(),
        None,
        "nothing new"
    );
    log.submit(|tx| tx.append(event(9))).await.unwrap();
    assert_eq!(checkpoint_now(&log, &signer).await.unwrap(), Some(7));
    let report = log.verify().unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.entries, report.checkpoints), (7, 2));

    let other = Signer::from_seed("north", &[2; 32]).unwrap();
    assert!(matches!(
        ensure_key_logged(&log, &other).await,
        Err(CheckpointStartError::KeyMismatch { .. })
    ));
    log.close().await;
}

/// A history rewritten and re-chained by someone without the signing key keeps a valid hash
/// chain, but the checkpoint it carries over signs the old entry: `verify` names it.
#[tokio::test]
async fn a_rechained_history_fails_at_its_checkpoint() {
    use super::checkpoint::{KIND_CHECKPOINT, STREAM, Signer};
    use super::checkpointer::{checkpoint_now, ensure_key_logged};
    let signer = Arc::new(Signer::from_seed("north", &[1; 32]).unwrap());
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(a_dir.path(), "north"), open(b_dir.path(), "north"));
    for (log, first) in [(&a, 1), (&b, 666)] {
        ensure_key_logged(log, &signer).await.unwrap();
        for n in [first, 2, 3] {
            log.submit(move |tx| tx.append(event(n))).await.unwrap();
        }
    }
    let at = checkpoint_now(&a, &signer).await.unwrap().unwrap();
    let genuine = a.entry(&a.read().unwrap(), at).unwrap().unwrap();
    assert!(a.verify().unwrap().ok());
    // The forger copies the genuine checkpoint onto the rewritten history (same seqs).
    let copied = NewEntry {
        kind: KIND_CHECKPOINT.into(),
        stream: STREAM.into(),
        author: Author::System,
        body: genuine.body.clone(),
    };
    b.submit(move |tx| tx.append(copied.clone())).await.unwrap();
    let report = b.verify().unwrap();
    assert!(
        matches!(
            report.problem,
            Some(super::Problem::BadCheckpoint { seq: 5, .. })
        ),
        "{report:?}"
    );
    a.close().await;
    b.close().await;
}

/// A replica takes another log's entries exactly as committed, in batches, sealed again under
/// its own key: the same seqs and hashes, a verifying chain. An entry that is not the next one,
/// does not link, or does not match its hash is refused and changes nothing.
#[tokio::test]
async fn a_replica_takes_entries_verbatim_and_refuses_what_does_not_extend_it() {
    let (edge_dir, hq_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let edge = open(edge_dir.path(), "north");
    for n in 0..10 {
        edge.submit(move |tx| tx.append(event(n))).await.unwrap();
    }
    let rtx = edge.read().unwrap();
    let entries: Vec<_> = (1..=10)
        .map(|s| edge.entry(&rtx, s).unwrap().unwrap())
        .collect();
    let hq = Log::open(
        &hq_dir.path().join("plantwire.redb"),
        "north",
        DataKey::from_bytes(&[9u8; 32]).unwrap(),
        Arc::new(SystemClock),
        &LogOptions {
            clock_step_us: i64::MAX,
            ..options()
        },
        Arc::new(Metrics::new()),
    )
    .unwrap();
    let apply = |batch: Vec<super::Entry>| {
        let hq = hq.clone();
        async move {
            hq.submit(move |tx| {
                let mut last = 0;
                for e in &batch {
                    last = tx.append_replicated(e)?;
                }
                Ok(last)
            })
            .await
        }
    };
    assert_eq!(apply(entries[..4].to_vec()).await.unwrap(), 4);
    let code = |r: Result<u64, SubmitError>| match r {
        Err(SubmitError::Rejected(r)) => r.code,
        other => panic!("expected a refusal, got {other:?}"),
    };
    // A batch resent after a lost ack: its first entry is not the next one.
    assert_eq!(code(apply(entries[..6].to_vec()).await), "out_of_order");
    let mut forged = entries[4].clone();
    forged.body = b"{\"n\":666}".to_vec();
    assert_eq!(code(apply(vec![forged]).await), "hash_mismatch");
    let mut next = entries[5].clone();
    next.seq = 5;
    assert_eq!(code(apply(vec![next]).await), "broken_link");
    assert_eq!(
        hq.head(&hq.read().unwrap()).unwrap(),
        4,
        "refusals wrote nothing"
    );
    assert_eq!(apply(entries[4..].to_vec()).await.unwrap(), 10);

    let report = hq.verify().unwrap();
    assert!(report.ok(), "{report:?}");
    let hrtx = hq.read().unwrap();
    for e in &entries {
        assert_eq!(&hq.entry(&hrtx, e.seq).unwrap().unwrap(), e);
    }
    edge.close().await;
    hq.close().await;
}
