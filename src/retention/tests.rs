//! Unit tests of retention through the `Log` handle against a temp redb: the purge job checks the
//! policy again in its own transaction, so a hold or a longer keep set after the scan wins.

use std::sync::Arc;

use super::policy::{Keep, RetentionConfig, ScopeRow, stream_scope};
use super::purge::Retention;
use crate::clock::ManualClock;
use crate::log::{Author, Log, NewEntry};
use crate::metrics::Metrics;
use crate::store::DataKey;

const DAY: i64 = 86_400_000_000;

async fn three_old_events(dir: &std::path::Path, clock: &Arc<ManualClock>) -> (Log, Vec<u64>) {
    let log = Log::open(
        &dir.join("plantwire.redb"),
        "north",
        DataKey::from_bytes(&[7u8; 32]).unwrap(),
        clock.clone(),
        &crate::log::tests::options(),
        Arc::new(Metrics::new()),
    )
    .unwrap();
    let mut seqs = Vec::new();
    for n in 0..3 {
        let e = NewEntry::json(
            "event",
            "events/pump-7",
            &Author::device("pump-7"),
            &serde_json::json!({ "n": n }),
        )
        .unwrap();
        seqs.push(log.submit(move |tx| tx.append(e.clone())).await.unwrap());
    }
    clock.advance_us(2 * DAY);
    (log, seqs)
}

#[tokio::test]
async fn a_hold_or_a_longer_keep_set_after_the_scan_stops_the_purge() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000_000));
    let (log, seqs) = three_old_events(dir.path(), &clock).await;
    let config = RetentionConfig {
        events: Keep::Days(1),
        pause_ms: 0,
        ..RetentionConfig::default()
    };
    let r = Retention::new(log.clone(), config, Arc::new(|| None));
    let by = Author::System;
    let head = *seqs.last().unwrap();
    let (due, _, _) = r.scan_for_test(1, head).unwrap();
    assert_eq!(due, seqs, "all three are due at the scan");

    // A legal hold lands between the scan and the purge: nothing goes.
    let scope = stream_scope("events/pump-7");
    let held = ScopeRow {
        hold: true,
        ..ScopeRow::default()
    };
    r.set_scope(&scope, Some(held), &by).await.unwrap();
    assert!(r.purge_for_test(due.clone(), &by).await.unwrap().is_empty());
    // So does a keep made longer (forever) after the scan.
    let longer = ScopeRow {
        keep: Some(Keep::Forever),
        ..ScopeRow::default()
    };
    r.set_scope(&scope, Some(longer), &by).await.unwrap();
    assert!(r.purge_for_test(due.clone(), &by).await.unwrap().is_empty());
    let rtx = log.read().unwrap();
    for &s in &seqs {
        assert!(log.entry(&rtx, s).unwrap().is_some(), "{s} kept");
    }
    drop(rtx);
    // With the override gone, the same batch is purged.
    r.set_scope(&scope, None, &by).await.unwrap();
    assert_eq!(r.purge_for_test(due, &by).await.unwrap(), seqs);
}
