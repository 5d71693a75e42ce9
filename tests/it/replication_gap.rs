//! `[replication] drop_unreplicated_after` over real TLS: an edge not yet enrolled (HQ has none of
//! its log) purges its old events by retention after a signed gap record; once enrolled it ships,
//! HQ's replica verifies, the dropped entries are stubs, and HQ shows the gap and raises its alarm.

use std::sync::Arc;
use std::time::Duration;

use plantwire::clock::{Clock, ManualClock};
use plantwire::config::ReplicationRole;
use plantwire::log::{Author, NewEntry};
use plantwire::replication::gap;
use plantwire::retention::Keep;
use plantwire::store::Role;
use serde_json::json;

use crate::chat_support::{Api, PW};
use crate::replication::{admin, verify_site};
use crate::support::TestServer;

const DAY: i64 = 86_400_000_000;

fn edge_config(c: &mut plantwire::config::Config) {
    c.site = Some("north".into());
    c.replication.role = ReplicationRole::Edge;
    c.replication.drop_unreplicated_after = gap::DropAfter(Some(30));
    c.retention.events = Keep::Days(1);
    c.retention.pause_ms = 0;
}

/// An HQ and the edge `north`, which dropped five events before it was enrolled and has since
/// shipped everything; returns them and the dropped range.
pub(crate) async fn hq_with_a_gap() -> (TestServer, TestServer, u64, u64) {
    let hq = TestServer::start_with(|c| {
        c.site = Some("hq".into());
        c.replication.role = ReplicationRole::Hq;
        c.replication.listen = vec!["127.0.0.1:0".parse().unwrap()];
    })
    .await;
    // The edge's clock starts 50 days back (HQ refuses stubs from its future).
    let real_now = plantwire::clock::SystemClock.now_us();
    let clock = Arc::new(ManualClock::new(real_now - 50 * DAY));
    let edge =
        TestServer::start_full(tempfile::tempdir().unwrap(), clock.clone(), edge_config).await;
    let mut seqs = Vec::new();
    for n in 0..5 {
        let e = NewEntry::json(
            "event",
            "events/pump-7",
            &Author::System,
            &json!({ "n": n }),
        )
        .unwrap();
        seqs.push(
            edge.state()
                .log()
                .submit(move |tx| tx.append(e.clone()))
                .await
                .unwrap(),
        );
    }
    // 40 days on, HQ never reached: `retention run --now` drops them, each batch after its record.
    clock.advance_us(40 * DAY);
    let report = edge
        .state()
        .retention()
        .pass(true, &Author::System)
        .await
        .unwrap();
    assert_eq!(report.purged, seqs);
    let (from, to) = (seqs[0], seqs[4]);
    let dir = edge.stop().await;

    // Enrolled now, the edge ships everything from seq 1.
    let added = admin(
        &hq,
        plantwire::admin::Request::Site {
            site: plantwire::replication::commands::SiteCommand::Add {
                name: "north".into(),
            },
        },
    )
    .await;
    assert_eq!(added.code, 0, "{}", added.stderr);
    let code = added.stdout.lines().last().unwrap().to_string();
    plantwire::replication::ship::enroll(&code, "north", dir.path())
        .await
        .unwrap();
    let edge = TestServer::start_full(dir, clock.clone(), edge_config).await;
    let head = edge.head_seq();
    let rt = edge.state().replication().unwrap().clone();
    let mut acked = rt.edge().unwrap().acked.subscribe();
    tokio::time::timeout(Duration::from_secs(60), acked.wait_for(|&a| a >= head))
        .await
        .expect("the edge ships to HQ")
        .unwrap();
    (hq, edge, from, to)
}

#[tokio::test]
async fn an_edge_dropping_unreplicated_events_signs_a_gap_that_hq_verifies_and_shows() {
    let (hq, edge, from, to) = hq_with_a_gap().await;

    // The replica verifies; the dropped events are stubs there.
    let (_, stubs) = verify_site(&hq, "north", "stubs_verified").await;
    for s in from..=to {
        assert!(stubs.contains(&s), "seq {s} is a verified stub: {stubs:?}");
    }

    // HQ shows the gap: in /api/v1/sites, /api/v1/sites/north/gaps and `site list`.
    hq.user("boss", Role::Admin, PW).await;
    let boss = Api::login(&hq.client(), "boss", PW).await;
    let sites = boss.get("/api/v1/sites").await.json();
    let gaps = &sites["sites"][0]["gaps"];
    assert_eq!(gaps["count"], 1, "{sites}");
    assert_eq!(gaps["unverified"], 0, "{sites}");
    assert_eq!(
        (
            &gaps["latest"]["from"],
            &gaps["latest"]["to"],
            &gaps["latest"]["count"]
        ),
        (&json!(from), &json!(to), &json!(5))
    );
    assert_eq!(gaps["latest"]["verified"], true);
    let listed = boss.get("/api/v1/sites/north/gaps").await;
    assert_eq!(listed.status, 200);
    let listed = listed.json();
    assert_eq!(listed["gaps"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["gaps"][0]["verified"], true);
    let text = admin(
        &hq,
        plantwire::admin::Request::Site {
            site: plantwire::replication::commands::SiteCommand::List { json: false },
        },
    )
    .await;
    assert!(
        text.stdout.contains(&format!(
            "DROPPED BEFORE REPLICATION: latest seq {from}..={to}"
        )),
        "{}",
        text.stdout
    );

    // And HQ's system alarm for the site is raised.
    let alarms = boss.get("/api/v1/alarms").await;
    assert_eq!(alarms.status, 200);
    let alarms = String::from_utf8_lossy(&alarms.body).to_string();
    assert!(
        alarms.contains("replication.gap") && alarms.contains("site/north"),
        "{alarms}"
    );
    assert!(
        alarms.contains("data dropped before replication"),
        "{alarms}"
    );
    edge.stop().await;
    hq.stop().await;
}
