//! Incidents HQ's alarm rules open from its alarm about a site are scoped by grant: with
//! `replication.lag.bravo` raised at HQ (bravo's edge stopped, HQ's clock moved on) and a rule
//! naming alice (granted bravo) and bob (not), the incident reaches alice and the admin only; bob
//! can be neither added nor assigned, and taking alice's grant back (or a role dropped below
//! auditor) takes her out of it and off its assignee.

use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use serde_json::json;

use crate::chat_support::{Api, PW};
use crate::hq_tenancy::edge;
use crate::support::TestServer;
use plantwire::clock::ManualClock;
use plantwire::config::{IncidentRule, ReplicationRole, SystemAlarm};
use plantwire::store::{Priority, Role};

const MINUTE: i64 = 60_000_000;

/// The incident HQ's rule opened from alarm `alarm`, once it is there.
async fn incident_of(boss: &Api, alarm: u64) -> String {
    for _ in 0..400 {
        let detail = boss.ok(&format!("/api/v1/alarms/{alarm}")).await;
        if let Some(i) = detail["incident"].as_str() {
            return i.to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no incident for alarm {alarm}");
}

async fn lag_alarm(hq: &TestServer, site: &str) -> u64 {
    for _ in 0..400 {
        {
            let rtx = hq.state().log().read().unwrap();
            if let Some(id) = rtx
                .alarm_current(&format!("site/{site}"), &format!("replication.lag.{site}"))
                .unwrap()
            {
                return id;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no replication.lag.{site} at HQ");
}

fn listed(api_list: &serde_json::Value, id: &str) -> bool {
    api_list.as_array().unwrap().iter().any(|i| i["id"] == id)
}

/// HQ with bravo's edge, alice (operator, granted bravo), bob (operator, not) and the admin
/// boss, once its rule opened the incident about bravo's lag alarm: the server, the three
/// sessions and the incident's id.
async fn scoped_incident() -> (TestServer, Api, Api, Api, String) {
    // Certificates are checked against the real time, so HQ's test clock starts at it.
    let t0 = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap();
    let clock = Arc::new(ManualClock::new(t0));
    let hq = TestServer::start_full(tempfile::tempdir().unwrap(), clock.clone(), |c| {
        c.site = Some("hq".into());
        c.replication.role = ReplicationRole::Hq;
        c.replication.listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.alarms.system_alarms = vec![SystemAlarm::ReplicationLag];
        c.incidents.rules = vec![IncidentRule {
            name: "sites".into(),
            min_priority: Priority::High,
            source: "site/*".into(),
            template: "site-lag".into(),
            members: vec!["alice".into(), "bob".into()],
            roster: None,
        }];
    })
    .await;
    let bravo = edge(&hq, "bravo", "bravo-incident-mark").await;
    hq.user("alice", Role::Operator, PW).await;
    hq.user("bob", Role::Operator, PW).await;
    hq.user("boss", Role::Admin, PW).await;
    let c = hq.client();
    let (alice, bob, boss) = (
        Api::login(&c, "alice", PW).await,
        Api::login(&c, "bob", PW).await,
        Api::login(&c, "boss", PW).await,
    );
    let t = boss
        .post(
            "/api/v1/templates",
            json!({"id": "site-lag", "name": "Site lag", "title": "{source} lagging",
                   "questions": [{"id": "notes", "label": "Notes", "type": "text", "max_length": 200}]}),
        )
        .await;
    assert!(t.status.is_success(), "{:?}", t.body);
    let g = boss
        .call(
            Method::PUT,
            "/api/v1/sites/bravo/grants/alice",
            Some(json!({ "role": "operator" })),
        )
        .await;
    assert_eq!(g.status, 200, "{:?}", g.body);

    // Bravo goes silent; 11 minutes of HQ's clock later its lag alarm stands and the rule opens
    // an incident from it.
    bravo.stop().await;
    clock.advance_us(11 * MINUTE);
    let alarm = lag_alarm(&hq, "bravo").await;
    let id = incident_of(&boss, alarm).await;
    (hq, alice, bob, boss, id)
}

#[tokio::test]
async fn incidents_about_a_site_reach_only_those_who_may_read_it() {
    let (hq, alice, bob, boss, id) = scoped_incident().await;
    let detail = format!("/api/v1/incidents/{id}");
    let history = format!("/api/v1/conversations/{id}/messages");

    // Alice (granted) and the admin read it; bob (named by the rule, not granted) never became
    // a member and reads nothing of it.
    for api in [&alice, &boss] {
        assert!(listed(&api.ok("/api/v1/incidents").await["incidents"], &id));
        assert_eq!(api.get(&detail).await.status, 200);
    }
    assert_eq!(alice.get(&history).await.status, 200);
    assert!(!listed(
        &bob.ok("/api/v1/incidents").await["incidents"],
        &id
    ));
    assert_eq!(bob.get(&detail).await.status, 404);
    assert_eq!(bob.get(&history).await.status, 404);
    let found = bob.get("/api/v1/search?q=lagging").await;
    assert!(
        !String::from_utf8_lossy(&found.body).contains(&id),
        "{:?}",
        found.body
    );

    // Nobody can bring bob in: neither as a member nor as the assignee; nothing is written.
    let head = hq.head_seq();
    let added = boss
        .post(
            &format!("/api/v1/conversations/{id}/members"),
            json!({ "users": ["bob"] }),
        )
        .await;
    assert_eq!(added.status, 403, "{:?}", added.body);
    assert_eq!(added.json()["code"], "not_granted");
    let assigned = boss
        .post(
            &format!("/api/v1/incidents/{id}/assign"),
            json!({ "assignee": "bob" }),
        )
        .await;
    assert_eq!(assigned.status, 403, "{:?}", assigned.body);
    assert_eq!(assigned.json()["code"], "not_granted");
    assert_eq!(hq.head_seq(), head);
    assert_eq!(bob.get(&detail).await.status, 404);

    // Alice's grant taken back: she is out of the incident at once (a `chat.left` entry).
    let del = boss
        .call(Method::DELETE, "/api/v1/sites/bravo/grants/alice", None)
        .await;
    assert_eq!(del.status, 204, "{:?}", del.body);
    assert!(!listed(
        &alice.ok("/api/v1/incidents").await["incidents"],
        &id
    ));
    assert_eq!(alice.get(&detail).await.status, 404);
    assert_eq!(alice.get(&history).await.status, 404);
    assert!(listed(
        &boss.ok("/api/v1/incidents").await["incidents"],
        &id
    ));

    hq.stop().await;
}

/// An ungrant takes alice off the incident's assignee too, so an assignment that names only a
/// severity cannot bring her back.
#[tokio::test]
async fn an_ungrant_clears_the_assignee_for_good() {
    let (hq, alice, _bob, boss, id) = scoped_incident().await;
    let detail = format!("/api/v1/incidents/{id}");
    let assign = format!("/api/v1/incidents/{id}/assign");

    let a = boss.post(&assign, json!({ "assignee": "alice" })).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(boss.ok(&detail).await["assignee"], "alice");
    let del = boss
        .call(Method::DELETE, "/api/v1/sites/bravo/grants/alice", None)
        .await;
    assert_eq!(del.status, 204, "{:?}", del.body);
    assert_eq!(alice.get(&detail).await.status, 404);
    assert!(boss.ok(&detail).await["assignee"].is_null());
    let s = boss.post(&assign, json!({ "severity": "high" })).await;
    assert_eq!(s.status, 200, "{:?}", s.body);
    assert!(s.json()["assignee"].is_null(), "{:?}", s.body);
    assert_eq!(alice.get(&detail).await.status, 404);
    assert!(!listed(
        &alice.ok("/api/v1/incidents").await["incidents"],
        &id
    ));

    hq.stop().await;
}

/// A role dropped below auditor takes the HQ auditor (no grant) out of the incident in the same
/// commit, and leaves the demoted admin who holds a grant on bravo in.
#[tokio::test]
async fn a_role_dropped_below_auditor_leaves_site_incidents() {
    let (hq, _alice, _bob, boss, id) = scoped_incident().await;
    let detail = format!("/api/v1/incidents/{id}");
    // Carol (auditor) and dave (admin, also granted bravo) are members; both drop below auditor.
    hq.user("carol", Role::Auditor, PW).await;
    hq.user("dave", Role::Admin, PW).await;
    let g = boss
        .call(
            Method::PUT,
            "/api/v1/sites/bravo/grants/dave",
            Some(json!({ "role": "operator" })),
        )
        .await;
    assert_eq!(g.status, 200, "{:?}", g.body);
    let added = boss
        .post(
            &format!("/api/v1/conversations/{id}/members"),
            json!({ "users": ["carol", "dave"] }),
        )
        .await;
    assert!(added.status.is_success(), "{:?}", added.body);
    for (user, role) in [("carol", "viewer"), ("dave", "operator")] {
        let r = boss
            .call(
                Method::PUT,
                &format!("/api/v1/admin/users/{user}/role"),
                Some(json!({ "role": role })),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let c = hq.client();
    let (carol, dave) = (
        Api::login(&c, "carol", PW).await,
        Api::login(&c, "dave", PW).await,
    );
    assert_eq!(carol.get(&detail).await.status, 404);
    assert!(!listed(
        &carol.ok("/api/v1/incidents").await["incidents"],
        &id
    ));
    assert_eq!(dave.get(&detail).await.status, 200);
    assert!(listed(
        &dave.ok("/api/v1/incidents").await["incidents"],
        &id
    ));

    hq.stop().await;
}
