//! Unit tests of the event domain through the `Log` handle against a temp redb: stores written at
//! every earlier schema migrate, and the backfill indexes the events they already held.

use std::sync::Arc;

use crate::log::tests::{event, open};
use crate::log::tx::{ChainState, Tx};
use crate::log::{Author, NewEntry};
use crate::store::{DataKey, Store};

/// A store written at every earlier schema (v1 to v4), with events in its log, opens with this
/// build: it migrates, the backfills index its events (a v4 store had every index but severity),
/// a minimum-severity query finds them, and the chain verifies.
#[tokio::test]
async fn stores_of_every_earlier_schema_migrate_index_their_events_and_verify() {
    // v1 to v3: from v4 on, the writer indexes events as it appends them.
    for version in 1..4 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plantwire.redb");
        let site: Arc<str> = "north".into();
        let key = DataKey::from_bytes(&[7u8; 32]).unwrap();
        {
            let store = Store::create_at_version(&path, version).unwrap();
            store.bind_identity(&site, &key).unwrap();
            let mut w = store.write().unwrap();
            let mut tx = Tx::new(&mut w, ChainState::from_head(None), &key, &site, 1_000);
            for n in 1..=3u64 {
                // An event exactly as the old writer appended it: before v4 no index rows, at
                // v4 every index but severity.
                let body = serde_json::json!({
                    "by": "device:pump-7", "source": "pump-7", "type": "pressure.high",
                    "severity": "warning", "message": format!("v{version} {n}"), "attributes": {}
                });
                let seq = tx
                    .append(
                        NewEntry::json("event", "events/pump-7", &Author::device("pump-7"), &body)
                            .unwrap(),
                    )
                    .unwrap();
                if version == 4 {
                    let ts = tx.now_us();
                    tx.views()
                        .put_event_index(seq, ts, "pump-7", "pressure.high")
                        .unwrap();
                }
                tx.append(event(n)).unwrap();
            }
            tx.finish().unwrap();
            w.commit().unwrap();
        }
        let log = open(dir.path(), "north");
        super::backfill(&log).await.unwrap();
        let found = super::list(
            &log,
            &super::Query {
                limit: 10,
                ..Default::default()
            },
        )
        .unwrap();
        let messages: Vec<_> = found
            .events
            .iter()
            .map(|e| e.body.event.message.clone())
            .collect();
        assert_eq!(
            messages,
            [1, 2, 3].map(|n| format!("v{version} {n}")),
            "from v{version}"
        );
        assert!(log.read().unwrap().event_backfill_to().unwrap().is_none());
        let warnings = super::list(
            &log,
            &super::Query {
                min_severity: Some(super::Severity::Warning),
                limit: 10,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(warnings.events.len(), 3, "from v{version}");
        log.close().await;
        drop(log);
        let store = Store::open(&path, 1 << 20).unwrap();
        let report = crate::log::verify(&store, &site, &key).unwrap();
        assert!(report.ok(), "from v{version}: {:?}", report.problem);
    }
}

/// A query whose index holds more than one scan's worth of non-matching rows says where to go on,
/// and following `next` finds the match.
#[tokio::test]
async fn a_listing_past_its_scan_bound_returns_a_cursor_that_finds_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "north");
    let total = super::SCAN_LIMIT as u64 + 5;
    log.submit(move |tx| {
        for n in 1..=total {
            let kind = if n == total {
                "valve.stuck"
            } else {
                "pressure.ok"
            };
            let body = serde_json::json!({
                "by": "device:pump-7", "source": "pump-7", "type": kind,
                "severity": "info", "message": format!("e{n}"), "attributes": {}
            });
            let seq = tx.append(NewEntry::json(
                "event",
                "events/pump-7",
                &Author::device("pump-7"),
                &body,
            )?)?;
            let ts = tx.now_us();
            tx.views().put_event_index(seq, ts, "pump-7", kind)?;
        }
        Ok(())
    })
    .await
    .unwrap();
    let mut q = super::Query {
        source: Some("pump-7".into()),
        event_type: Some("valve.stuck".into()),
        limit: 10,
        ..Default::default()
    };
    let first = super::list(&log, &q).unwrap();
    assert!(first.events.is_empty());
    q.after = first.next.expect("a cursor after a full scan");
    let second = super::list(&log, &q).unwrap();
    assert_eq!(second.events.len(), 1);
    assert_eq!(second.events[0].body.event.message, format!("e{total}"));
    assert_eq!(second.next, None);
    log.close().await;
}

/// The source and type indexes are keyed by a hash of the name, so two names may share a key: a
/// listing by name checks each entry's own source and type. Here pump-2's event is also indexed
/// under pump-1's and flow.low's keys, as a collision would index it, and neither listing shows it.
#[tokio::test]
async fn a_listing_by_name_shows_no_event_of_another_name_sharing_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "north");
    log.submit(move |tx| {
        for (source, kind) in [("pump-1", "flow.low"), ("pump-2", "pressure.high")] {
            let body = serde_json::json!({
                "by": "device:plc", "source": source, "type": kind,
                "severity": "info", "message": source, "attributes": {}
            });
            let seq = tx.append(NewEntry::json(
                "event",
                "events/plc",
                &Author::device("plc"),
                &body,
            )?)?;
            let ts = tx.now_us();
            tx.views().put_event_index(seq, ts, source, kind)?;
            if source == "pump-2" {
                tx.views().put_event_index(seq, ts, "pump-1", "flow.low")?;
            }
        }
        Ok(())
    })
    .await
    .unwrap();
    let by_source = super::list(
        &log,
        &super::Query {
            source: Some("pump-1".into()),
            limit: 10,
            ..Default::default()
        },
    )
    .unwrap();
    let by_type = super::list(
        &log,
        &super::Query {
            event_type: Some("flow.low".into()),
            limit: 10,
            ..Default::default()
        },
    )
    .unwrap();
    for page in [by_source, by_type] {
        let messages: Vec<_> = page
            .events
            .iter()
            .map(|e| e.body.event.message.as_str())
            .collect();
        assert_eq!(messages, ["pump-1"]);
    }
    log.close().await;
}

/// The size limit counts the event's JSON as `serde_json` writes it: an event of exactly the
/// limit passes, one byte more is refused with `event_too_large`, and nothing else is judged.
#[test]
fn the_size_limit_counts_the_serialised_event_to_the_byte() {
    let ev: super::EventIn = serde_json::from_value(serde_json::json!({
        "source": "pump-7", "type": "pressure.high", "message": "é \"quoted\" \u{1}",
        "attributes": {"bar": 4.5, "tag": "a\nb", "n": -3, "ok": true}
    }))
    .unwrap();
    let exact = serde_json::to_vec(&ev).unwrap().len();
    assert_eq!(super::json_size(&ev), exact);
    let mut limits = crate::config::EventsConfig {
        max_event_bytes: exact,
        ..Default::default()
    };
    assert!(super::validate(&ev, &limits).is_ok());
    limits.max_event_bytes = exact - 1;
    let refused = super::validate(&ev, &limits).unwrap_err();
    assert_eq!(refused.code, "event_too_large");
    assert!(
        refused.message.contains(&exact.to_string()),
        "{}",
        refused.message
    );
}
