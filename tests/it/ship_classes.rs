//! `[replication] ship` over real TLS: an edge shipping only `events` to an HQ (both servers in
//! process, started by role, HQ with default settings): chat travels as chain-v2 stubs, HQ
//! re-hashes them and its audit passes.

use std::time::Duration;

use plantwire::admin::Request;
use plantwire::config::ReplicationRole;
use plantwire::log::{Author, NewEntry};
use plantwire::replication::edge::ShipClasses;
use plantwire::store::Role;
use serde_json::json;

use crate::chat_support::{Api, PW, people};
use crate::replication::{admin, enrolled};
use crate::support::TestServer;

const CHAT_MARK: &str = "chat-marker-3b7e41";
const EVENT_MARK: &str = "event-marker-9d2c05";

/// The edge ships only `events`: its chat messages reach HQ as chain-v2 stubs, taken without
/// `accept_stubs` (every seq is there, with the edge's hashes and the stubs' digests), the chat
/// text is in no decrypted body of the replica and in no page of
/// `GET /api/v1/sites/north/entries`, the events are, and `audit verify --site north` passes,
/// naming the stubs as re-hashed (`stubs_verified`), none as unverifiable (`stubbed`).
#[tokio::test]
async fn an_edge_shipping_only_events_sends_chat_as_stubs_and_hq_still_verifies() {
    let hq = TestServer::start_with(|c| {
        c.site = Some("hq".into());
        c.replication.role = ReplicationRole::Hq;
        c.replication.listen = vec!["127.0.0.1:0".parse().unwrap()];
        assert!(
            !c.replication.accept_stubs,
            "chain-v2 stubs need no accept_stubs"
        );
    })
    .await;
    let dir = enrolled(&hq, "north").await;
    let edge = TestServer::start_in(dir, |c| {
        c.site = Some("north".into());
        c.replication.role = ReplicationRole::Edge;
        c.replication.ship = vec!["events".into()];
    })
    .await;
    let api = people(&edge, &["alice"], &[]).await;
    let conv = api[0].group("ops", &["alice"]).await;
    let mut chat_seqs = Vec::new();
    for i in 0..3 {
        let text = format!("{CHAT_MARK} {i}");
        chat_seqs.push(api[0].say(&conv, &format!("k{i}"), &text).await);
        let e = NewEntry::json(
            "event",
            "events/pump-7",
            &Author::System,
            &json!({ "text": format!("{EVENT_MARK} {i}") }),
        )
        .unwrap();
        edge.state()
            .log()
            .submit(move |tx| tx.append(e.clone()))
            .await
            .unwrap();
    }
    let head = edge.head_seq();
    let rt = edge.state().replication().unwrap().clone();
    let mut acked = rt.edge().unwrap().acked.subscribe();
    tokio::time::timeout(Duration::from_secs(60), acked.wait_for(|&a| a >= head))
        .await
        .expect("the edge ships to HQ")
        .unwrap();

    // The replica: every seq with the edge's hash; no decrypted body holds the chat text.
    let replica = hq.replica("north").await;
    // Everything but events and the chain's own entries is stubbed (admin entries too).
    let only_events = ShipClasses::of(&["events"]);
    let mut want = Vec::new();
    {
        let (e_log, e_rtx) = (edge.state().log(), edge.state().log().read().unwrap());
        let rtx = replica.read().unwrap();
        let mut events = 0;
        for seq in 1..=head {
            let ours = e_log.entry(&e_rtx, seq).unwrap().unwrap();
            let meta = rtx.log_meta(seq).unwrap().expect("every seq reaches HQ");
            assert_eq!(meta.hash, ours.hash, "seq {seq}");
            let stub = !only_events.ships_entry(&ours);
            assert_eq!(meta.is_stub(), stub, "seq {seq} {}", ours.stream);
            if stub {
                assert_eq!(meta.digest, Some(ours.content_digest()), "seq {seq}");
            }
            if stub {
                want.push(seq);
            }
            if chat_seqs.contains(&seq) {
                assert!(ours.stream.starts_with("conv/") && stub, "seq {seq}");
            }
            if let Some(e) = replica.entry(&rtx, seq).unwrap() {
                let body = String::from_utf8_lossy(&e.body);
                assert!(!body.contains(CHAT_MARK), "seq {seq}: {body}");
                events += usize::from(body.contains(EVENT_MARK));
            }
        }
        assert_eq!(events, 3);
    }

    // HQ's read view: events whole, chat as stubs without body.
    hq.user("boss", Role::Admin, PW).await;
    let boss = Api::login(&hq.client(), "boss", PW).await;
    let page = boss.get("/api/v1/sites/north/entries?limit=500").await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    let text = String::from_utf8_lossy(&page.body);
    assert!(!text.contains(CHAT_MARK), "{text}");
    assert!(text.contains(EVENT_MARK), "{text}");
    let v = page.json();
    let stubs: Vec<u64> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["stub"] == true)
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let mut got = stubs.clone();
    got.sort_unstable();
    assert_eq!(got, want);

    // The audit at HQ passes, re-hashing the stubs: none is an unverifiable run.
    let (report, verified) = crate::replication::verify_site(&hq, "north", "stubs_verified").await;
    assert_eq!(verified, want);
    assert_eq!(report["stubbed"], json!([]));
    let text = admin(
        &hq,
        Request::SiteVerify {
            site: "north".into(),
            json: false,
        },
    )
    .await;
    assert!(text.stdout.contains("stubs:"), "{}", text.stdout);
    assert!(!text.stdout.contains("stubbed:"), "{}", text.stdout);
}
