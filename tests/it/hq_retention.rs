//! Retention at HQ: a site's bounds, set at HQ with `site retention NAME …`, purge that site's
//! replica class by class; the purge is recorded in HQ's own log naming the site, the replica's
//! chain still verifies with the purged range reported, and the edge's own log is untouched.

use std::sync::Arc;
use std::time::Duration;

use plantwire::admin::Request;
use plantwire::clock::{Clock, ManualClock, SystemClock};
use plantwire::config::ReplicationRole;
use plantwire::log::{Author, NewEntry};
use plantwire::replication::commands::SiteCommand;
use plantwire::retention::commands::{RetentionCommand, ScopeArgs};

use crate::replication::{admin, enrolled};
use crate::support::TestServer;

const DAY: i64 = 86_400_000_000;

fn at_hq(name: &str, command: RetentionCommand) -> Request {
    Request::Site {
        site: SiteCommand::Retention {
            name: name.into(),
            command,
        },
    }
}

/// `site retention north set --site --class CLASS --keep KEEP`.
fn set_class(class: &str, keep: &str) -> Request {
    let scope = ScopeArgs {
        site: true,
        stream: None,
        conversation: None,
    };
    at_hq(
        "north",
        RetentionCommand::Set {
            scope,
            keep: keep.into(),
            class: Some(class.into()),
        },
    )
}

/// Appends one entry per stream, `n` times, at the edge; returns their seqs by stream.
async fn write(edge: &TestServer, streams: &[&str], n: usize) -> Vec<Vec<u64>> {
    let mut seqs = vec![Vec::new(); streams.len()];
    for i in 0..n {
        for (k, stream) in streams.iter().enumerate() {
            let e = NewEntry::json(
                "test.note",
                stream,
                &Author::System,
                &serde_json::json!({ "n": i }),
            )
            .unwrap();
            let seq = edge
                .state()
                .log()
                .submit(move |tx| tx.append(e.clone()))
                .await
                .unwrap();
            seqs[k].push(seq);
        }
    }
    seqs
}

/// HQ sets `north`'s events to one day (the class default is forever) and, two days later,
/// purges the replica's events and nothing else; `audit verify --site north` passes and names
/// the purged seqs; HQ's log holds `retention.scope` and `retention.purged` with `"site":
/// "north"`; the edge still reads every entry. A site not enrolled yet has no replica, and
/// `--class` with an unknown class is refused.
#[tokio::test]
async fn hq_purges_a_sites_replica_by_the_class_bounds_set_there() {
    let clock = Arc::new(ManualClock::new(SystemClock.now_us()));
    let hq = TestServer::start_full(tempfile::tempdir().unwrap(), clock.clone(), |c| {
        c.site = Some("hq".into());
        c.replication.role = ReplicationRole::Hq;
        c.replication.listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.retention.pause_ms = 0;
    })
    .await;
    // A site added but not enrolled has no replica to bound (enrolment makes it, pinning the
    // site's signing key there).
    let added = admin(
        &hq,
        Request::Site {
            site: SiteCommand::Add {
                name: "south".into(),
            },
        },
    )
    .await;
    assert_eq!(added.code, 0, "{}", added.stderr);
    let early = admin(&hq, at_hq("south", RetentionCommand::Status)).await;
    assert_ne!(early.code, 0);
    assert!(early.stderr.contains("no replica"), "{}", early.stderr);

    let edge_dir = enrolled(&hq, "north").await;
    let edge = TestServer::start_in(edge_dir, |c| {
        c.site = Some("north".into());
        c.replication.role = ReplicationRole::Edge;
    })
    .await;
    let seqs = write(&edge, &["events/pump-7", "test/notes"], 6).await;
    let (events, notes) = (&seqs[0], &seqs[1]);
    let head = edge.head_seq();
    let rt = edge.state().replication().unwrap().clone();
    let mut acked = rt.edge().unwrap().acked.subscribe();
    tokio::time::timeout(Duration::from_secs(60), acked.wait_for(|&a| a >= head))
        .await
        .expect("the edge ships to HQ")
        .unwrap();

    let bad = admin(&hq, set_class("gossip", "1 days")).await;
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("class"), "{}", bad.stderr);
    let set = admin(&hq, set_class("events", "1 days")).await;
    assert_eq!(set.code, 0, "{}", set.stderr);
    let status = admin(&hq, at_hq("north", RetentionCommand::Status)).await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(status.stdout.contains("events"), "{}", status.stdout);

    // Not due yet: nothing goes.
    let soon = admin(&hq, at_hq("north", RetentionCommand::Purge { now: false })).await;
    assert_eq!(soon.code, 0, "{}", soon.stderr);
    let replica = hq.replica("north").await;
    assert!(replica.verify().unwrap().purged.is_empty());

    clock.advance_us(2 * DAY);
    let purge = admin(&hq, at_hq("north", RetentionCommand::Purge { now: false })).await;
    assert_eq!(purge.code, 0, "{}", purge.stderr);
    {
        let rtx = replica.read().unwrap();
        for &s in events {
            assert!(
                replica.entry(&rtx, s).unwrap().is_none(),
                "event {s} purged"
            );
        }
        for &s in notes {
            assert!(replica.entry(&rtx, s).unwrap().is_some(), "note {s} kept");
        }
        assert_eq!(replica.head(&rtx).unwrap(), head, "the chain is not cut");
    }
    let (v, purged) = crate::replication::verify_site(&hq, "north", "purged").await;
    assert_eq!(&purged, events, "{v}");

    // HQ's own log records what was done to the site; the replica's chain took no new entry.
    let log = hq.state().log();
    let rtx = log.read().unwrap();
    let mut kinds = Vec::new();
    for seq in 1..=log.head(&rtx).unwrap() {
        let Some(e) = log.entry(&rtx, seq).unwrap() else {
            continue;
        };
        if e.kind.starts_with("retention.") {
            let body: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
            assert_eq!(body["site"], "north", "{body}");
            kinds.push((e.kind.to_string(), body["count"].as_u64()));
        }
    }
    drop(rtx);
    assert_eq!(
        kinds,
        vec![
            ("retention.scope".to_string(), None),
            ("retention.purged".to_string(), Some(events.len() as u64)),
        ]
    );
    // The edge keeps its own: its bounds are its own.
    let elog = edge.state().log();
    let rtx = elog.read().unwrap();
    for s in 1..=head {
        assert!(elog.entry(&rtx, s).unwrap().is_some(), "edge entry {s}");
    }
    drop(rtx);

    // Within the grace period HQ puts the site's payloads back.
    let restore = admin(
        &hq,
        at_hq(
            "north",
            RetentionCommand::Restore {
                from: 1,
                to: u64::MAX,
            },
        ),
    )
    .await;
    assert_eq!(restore.code, 0, "{}", restore.stderr);
    let rtx = replica.read().unwrap();
    assert!(replica.entry(&rtx, events[0]).unwrap().is_some());
    drop(rtx);
    assert!(replica.verify().unwrap().purged.is_empty());
}
