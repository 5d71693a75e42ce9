//! On-call escalation by the test clock: an unacknowledged high alarm reaches the roster as a
//! direct message from `system` after N minutes, again every M minutes, and stops at the ack.

use std::sync::Arc;

use plantwire::clock::ManualClock;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::chat_support::{Api, Ws, people};
use crate::support::TestServer;

const MINUTE: i64 = 60_000_000;
/// 2030-01-01T00:00:00Z: where the manual clock starts.
const T0: i64 = 1_893_456_000_000_000;

async fn raise(api: &Api, source: &str, priority: &str) -> u64 {
    let r = api
        .post(
            "/api/v1/alarms",
            json!({"source": source, "condition": "pressure.high", "active": true,
                   "priority": priority, "message": "discharge pressure above 12 bar"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.json()["id"].as_u64().unwrap()
}

/// A socket following the `alarms` domain from the head; returns once caught up.
async fn alarm_socket(api: &Api, since: u64) -> Ws {
    let mut ws = api.ws().await;
    ws.send(json!({"type": "subscribe", "since": since, "domains": ["alarms"]}))
        .await;
    while ws.next().await["type"] != "caught_up" {}
    ws
}

/// The next `alarm.escalate` entry on a socket following the alarms domain.
async fn next_escalation(ws: &mut Ws) -> Value {
    let e = ws.next_entry("alarm.escalate").await;
    assert_eq!(e["author"], "system");
    e
}

/// The messages `system` sent `api`'s user, oldest first.
async fn system_messages(api: &Api) -> Vec<Value> {
    let list = api.ok("/api/v1/conversations").await;
    let Some(conv) = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["peer"] == "system")
    else {
        return Vec::new();
    };
    assert_eq!(conv["kind"], "direct");
    let id = conv["id"].as_str().unwrap().to_string();
    let h = api.history(&id, "").await;
    let mut msgs = h["messages"].as_array().unwrap().clone();
    msgs.sort_by_key(|m| m["seq"].as_u64().unwrap());
    msgs
}

fn escalations(detail: &Value) -> usize {
    detail["journal"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["kind"] == "alarm.escalate")
        .count()
}

#[tokio::test]
async fn an_unacknowledged_alarm_is_escalated_to_the_roster_renotified_and_stops_at_the_ack() {
    let clock = Arc::new(ManualClock::new(T0));
    let server = TestServer::start_full(TempDir::new().unwrap(), clock.clone(), |c| {
        // Sessions outlive the half hour the test clock moves.
        c.auth.access_ttl_secs = 3600;
        c.alarms.escalation.after_minutes = 5;
        c.alarms.escalation.repeat_minutes = 10;
        c.alarms.escalation.roster = vec!["Olga".into(), "ravi".into(), "nobody".into()];
    })
    .await;
    let ops = people(&server, &["olga", "ravi"], &[]).await;
    let (olga, ravi) = (&ops[0], &ops[1]);
    let mut ws = alarm_socket(olga, server.head_seq()).await;

    let a = raise(olga, "pump-7", "high").await;
    // Below the roster's priority: never escalated.
    let m = raise(olga, "pump-8", "medium").await;

    clock.advance_us(5 * MINUTE + 1);
    let first = next_escalation(&mut ws).await;
    assert_eq!(first["body"]["id"].as_u64().unwrap(), a);
    assert_eq!(first["body"]["state"], "unack");
    assert_eq!(first["body"]["note"], "notice 1 to olga, ravi");
    for api in [olga, ravi] {
        let msgs = system_messages(api).await;
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert_eq!(msgs[0]["author"], "system");
        let text = msgs[0]["text"].as_str().unwrap();
        assert!(text.contains("pump-7") && text.contains("high"), "{text}");
    }

    // Re-notified every 10 minutes while nobody acknowledges it.
    clock.advance_us(10 * MINUTE);
    let second = next_escalation(&mut ws).await;
    assert_eq!(second["body"]["id"].as_u64().unwrap(), a);
    assert_eq!(second["body"]["note"], "notice 2 to olga, ravi");
    assert_eq!(system_messages(ravi).await.len(), 2);

    // Acknowledged: no more notices. Another high alarm raised now shows the timer still runs.
    let ack = olga
        .post(
            &format!("/api/v1/alarms/{a}/ack"),
            json!({"comment": "on it"}),
        )
        .await;
    assert_eq!(ack.status, 200, "{:?}", ack.body);
    let b = raise(olga, "pump-9", "high").await;
    clock.advance_us(10 * MINUTE);
    let third = next_escalation(&mut ws).await;
    assert_eq!(third["body"]["id"].as_u64().unwrap(), b);
    let detail_a = olga.ok(&format!("/api/v1/alarms/{a}")).await;
    assert_eq!(escalations(&detail_a), 2, "{detail_a}");
    assert_eq!(detail_a["state"], "acked");
    let detail_m = olga.ok(&format!("/api/v1/alarms/{m}")).await;
    assert_eq!(escalations(&detail_m), 0);
    let msgs = system_messages(ravi).await;
    assert_eq!(msgs.len(), 3);
    assert!(msgs[2]["text"].as_str().unwrap().contains("pump-9"));
    // The escalation entry is in the alarm history too.
    let hist = olga.ok("/api/v1/alarms/history").await;
    assert!(hist.to_string().contains("alarm.escalate"), "{hist}");
}

#[tokio::test]
async fn escalation_state_survives_a_restart_and_the_name_system_is_reserved() {
    assert!(plantwire::users::validate_username("System").is_err());
    let clock = Arc::new(ManualClock::new(T0));
    let cfg = |c: &mut plantwire::config::Config| {
        c.alarms.escalation.after_minutes = 5;
        c.alarms.escalation.repeat_minutes = 30;
        c.alarms.escalation.roster = vec!["olga".into()];
    };
    let server = TestServer::start_full(TempDir::new().unwrap(), clock.clone(), cfg).await;
    let ops = people(&server, &["olga"], &[]).await;
    let olga = &ops[0];
    let mut ws = alarm_socket(olga, server.head_seq()).await;
    let a = raise(olga, "pump-7", "critical").await;
    clock.advance_us(5 * MINUTE + 1);
    assert_eq!(
        next_escalation(&mut ws).await["body"]["id"]
            .as_u64()
            .unwrap(),
        a
    );
    drop(ws);
    let dir = server.stop().await;

    // 10 minutes later the notice is not repeated (the next is due at 35 minutes) ...
    clock.advance_us(10 * MINUTE);
    let server = TestServer::start_full(dir, clock.clone(), cfg).await;
    let olga = Api::login(&server.client(), "olga", crate::chat_support::PW).await;
    let mut ws = alarm_socket(&olga, server.head_seq()).await;
    let b = raise(&olga, "pump-9", "critical").await;
    clock.advance_us(5 * MINUTE + 1);
    assert_eq!(
        next_escalation(&mut ws).await["body"]["id"]
            .as_u64()
            .unwrap(),
        b
    );
    assert_eq!(
        escalations(&olga.ok(&format!("/api/v1/alarms/{a}")).await),
        1
    );
    // ... and it is at 35 minutes.
    clock.advance_us(15 * MINUTE);
    let again = next_escalation(&mut ws).await;
    assert_eq!(again["body"]["id"].as_u64().unwrap(), a);
    assert_eq!(again["body"]["note"], "notice 2 to olga");
}
