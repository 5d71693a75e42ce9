//! HQ's own system alarms about a site are scoped by grant: with `replication.lag.bravo` raised
//! at HQ (bravo's edge stopped, HQ's clock moved on), a user granted only `alpha` finds nothing
//! of bravo in the alarm list, history, detail, KPIs, search, ntfy or an `alarms` socket; the
//! admin and the auditor do, and a grant on bravo shows it at once.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::alarms::alarm_socket;
use crate::chat_support::{Api, PW, Ws};
use crate::hq_tenancy::edge;
use crate::replication::admin;
use crate::support::TestServer;
use plantwire::admin::Request;
use plantwire::clock::ManualClock;
use plantwire::config::{ReplicationRole, SystemAlarm};
use plantwire::replication::commands::SiteCommand;
use plantwire::replication::grants::GrantRole;
use plantwire::store::Role;

const MINUTE: i64 = 60_000_000;

async fn grant(hq: &TestServer, site: &str, user: &str) {
    let g = admin(
        hq,
        Request::Site {
            site: SiteCommand::Grant {
                site: site.into(),
                user: user.into(),
                role: GrantRole::Viewer,
            },
        },
    )
    .await;
    assert_eq!(g.code, 0, "{}", g.stderr);
}

/// The id of HQ's alarm `replication.lag.<site>` on source `site/<site>`, once it is active.
async fn lag_alarm(hq: &TestServer, site: &str) -> u64 {
    for _ in 0..400 {
        {
            let rtx = hq.state().log().read().unwrap();
            let id = rtx
                .alarm_current(&format!("site/{site}"), &format!("replication.lag.{site}"))
                .unwrap();
            if let Some(id) = id
                && rtx.alarm(id).unwrap().unwrap().input_active
            {
                return id;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no active replication.lag.{site} at HQ");
}

/// Every frame up to the `alarm.raise` entry of source `marker`.
async fn frames_until(ws: &mut Ws, marker: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let f = ws.next().await;
        let last = f["type"] == "entry" && f.to_string().contains(marker);
        out.push(f);
        if last {
            return out;
        }
    }
}

fn names_bravo(v: &impl ToString) -> bool {
    v.to_string().contains("bravo")
}

#[tokio::test]
async fn hq_alarms_about_a_site_reach_only_those_who_may_read_it() {
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
    })
    .await;
    let alpha = edge(&hq, "alpha", "alpha-mark").await;
    let bravo = edge(&hq, "bravo", "bravo-mark").await;
    hq.user("alice", Role::Operator, PW).await;
    hq.user("audrey", Role::Auditor, PW).await;
    hq.user("boss", Role::Admin, PW).await;
    grant(&hq, "alpha", "alice").await;
    let alice = Api::login(&hq.client(), "alice", PW).await;
    let audrey = Api::login(&hq.client(), "audrey", PW).await;
    let boss = Api::login(&hq.client(), "boss", PW).await;
    let since = hq.head_seq();
    let (mut alice_ws, _) = alarm_socket(&alice, since).await;
    let (mut boss_ws, _) = alarm_socket(&boss, since).await;

    // Bravo goes silent; 11 minutes of HQ's clock later its lag alarm stands at HQ.
    bravo.stop().await;
    clock.advance_us(11 * MINUTE);
    let id = lag_alarm(&hq, "bravo").await;
    // A later alarm everyone sees: a socket that got it got everything before it.
    let raised = boss
        .post(
            "/api/v1/alarms",
            json!({"source": "hq-marker", "condition": "door.open", "active": true,
                   "priority": "low", "message": "marker"}),
        )
        .await;
    assert_eq!(raised.status, 201, "{:?}", raised.body);

    // The socket: alice's live frames never name bravo; the admin's carry the alarm.
    let seen = frames_until(&mut alice_ws, "hq-marker").await;
    assert!(!seen.iter().any(names_bravo), "{seen:?}");
    let seen = frames_until(&mut boss_ws, "hq-marker").await;
    assert!(
        seen.iter()
            .any(|f| f["kind"] == "alarm.raise" && f.to_string().contains("site/bravo")),
        "{seen:?}"
    );
    // Replayed from the start, the same.
    let (_ws, replayed) = alarm_socket(&alice, 0).await;
    assert!(!replayed.is_empty());
    assert!(!replayed.iter().any(names_bravo), "{replayed:?}");
    let (_ws, replayed) = alarm_socket(&audrey, 0).await;
    assert!(replayed.iter().any(names_bravo));

    // Every HTTP reader.
    let reads = [
        "/api/v1/alarms".to_string(),
        "/api/v1/alarms/history".to_string(),
        format!("/api/v1/alarms/kpis?since={}", t0 - MINUTE),
        "/api/v1/search?q=bravo".to_string(),
        "/ntfy/alarms/json?poll=1&since=all".to_string(),
    ];
    for path in &reads {
        let mine = alice.get(path).await;
        assert_eq!(mine.status, 200, "{path}: {:?}", mine.body);
        let body = String::from_utf8_lossy(&mine.body);
        assert!(
            !body.replace("q=bravo", "").contains("bravo"),
            "{path}: {body}"
        );
        // The search hit names the condition (its snippet marks the word); the rest the source.
        let needle = if path.contains("search") {
            "replication.lag.\u{ab}bravo\u{bb}"
        } else {
            "site/bravo"
        };
        for (who, api) in [("boss", &boss), ("audrey", &audrey)] {
            let theirs = api.get(path).await;
            assert_eq!(theirs.status, 200, "{who} {path}");
            assert!(
                String::from_utf8_lossy(&theirs.body).contains(needle),
                "{who} {path}: {:?}",
                theirs.body
            );
        }
    }
    let detail = format!("/api/v1/alarms/{id}");
    let hidden = alice.get(&detail).await;
    assert_eq!(hidden.status, 404);
    assert_eq!(hidden.json()["code"], "no_such_alarm");
    assert_eq!(audrey.get(&detail).await.status, 200);
    // HQ's other alarms still reach alice.
    assert!(String::from_utf8_lossy(&alice.get("/api/v1/alarms").await.body).contains("hq-marker"));

    // Nor can alice act on it, open an incident from it, or fake or clear a site's alarm.
    let acked = alice
        .post(
            &format!("/api/v1/alarms/{id}/ack"),
            json!({ "comment": "x" }),
        )
        .await;
    assert_eq!(acked.status, 404, "{:?}", acked.body);
    assert_eq!(acked.json()["code"], "no_such_alarm");
    let many = alice
        .post("/api/v1/alarms/ack", json!({ "ids": [id] }))
        .await;
    assert_eq!(many.status, 200, "{:?}", many.body);
    assert_eq!(many.json()["acked"], 0);
    assert_eq!(many.json()["results"][0]["code"], "no_such_alarm");
    assert!(!names_bravo(&String::from_utf8_lossy(&many.body)));
    let opened = alice
        .post(
            "/api/v1/incidents",
            json!({ "template": "any", "alarm": id }),
        )
        .await;
    assert_eq!(opened.status, 404, "{:?}", opened.body);
    assert_eq!(opened.json()["code"], "no_such_alarm");
    for source in ["site/bravo", "plantwire"] {
        let faked = alice
            .post(
                "/api/v1/alarms",
                json!({ "source": source, "condition": "history.rewritten", "active": false }),
            )
            .await;
        assert_eq!(faked.status, 403, "{source}: {:?}", faked.body);
        assert_eq!(faked.json()["code"], "reserved_source");
    }
    let still = boss.get(&detail).await;
    assert_eq!(still.status, 200);
    assert_eq!(still.json()["state"], "unack", "{:?}", still.body);

    // A grant on bravo shows its alarm at once.
    grant(&hq, "bravo", "alice").await;
    let listed = alice.get("/api/v1/alarms").await;
    assert!(
        String::from_utf8_lossy(&listed.body).contains("site/bravo"),
        "{:?}",
        listed.body
    );
    assert_eq!(alice.get(&detail).await.status, 200);

    alpha.stop().await;
    hq.stop().await;
}
