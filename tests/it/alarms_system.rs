//! plantwire's own alarms beyond the disk, each driven through a config seam or the test clock:
//! write queue saturated, certificate expiring, clock stepped back, alarm flood.

use std::sync::Arc;

use plantwire::alarms::system_checks::{Memory, Probes, check_all};
use plantwire::clock::ManualClock;
use plantwire::config::SystemAlarm;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::chat_support::{Api, Ws, people};
use crate::support::TestServer;

const MINUTE: i64 = 60_000_000;
/// 2030-01-01T00:00:00Z: where the manual clock starts.
const T0: i64 = 1_893_456_000_000_000;

/// A socket following the `alarms` domain from seq 0, and what it replayed.
async fn alarm_socket(api: &Api) -> (Ws, Vec<Value>) {
    let mut ws = api.ws().await;
    ws.send(json!({"type": "subscribe", "since": 0, "domains": ["alarms"]}))
        .await;
    let mut replayed = Vec::new();
    loop {
        let f = ws.next().await;
        match f["type"].as_str().unwrap() {
            "entry" => replayed.push(f),
            "caught_up" => return (ws, replayed),
            _ => {}
        }
    }
}

/// The first entry of `kind` about the system alarm `condition`, replayed or live.
async fn system_entry(ws: &mut Ws, seen: &mut Vec<Value>, kind: &str, condition: &str) -> Value {
    loop {
        if let Some(i) = seen.iter().position(|f| {
            f["kind"] == kind
                && f["body"]["alarm"]["source"] == "plantwire"
                && f["body"]["alarm"]["condition"] == condition
        }) {
            let f = seen.remove(i);
            assert_eq!(f["author"], "system");
            return f;
        }
        seen.push(ws.next_of("entry").await);
    }
}

fn only(which: SystemAlarm) -> impl FnOnce(&mut plantwire::Config) {
    move |c| {
        c.alarms.system_alarms = vec![which];
        c.auth.access_ttl_secs = 3600;
    }
}

#[tokio::test]
async fn a_write_queue_over_its_threshold_for_two_checks_raises_the_queue_alarm() {
    let clock = Arc::new(ManualClock::new(T0));
    let server = TestServer::start_full(TempDir::new().unwrap(), clock.clone(), |c| {
        only(SystemAlarm::Queue)(c);
        // 0 %: any depth is over the threshold.
        c.alarms.queue_alarm_percent = 0;
    })
    .await;
    let ops = people(&server, &["vic"], &["vic"]).await;
    let (mut ws, mut seen) = alarm_socket(&ops[0]).await;
    clock.advance_us(MINUTE);
    let raise = system_entry(&mut ws, &mut seen, "alarm.raise", "queue.saturated").await;
    assert_eq!(raise["body"]["alarm"]["priority"], "high");
    // Not at the first check at start: only once a second check, a minute later, saw it too.
    assert!(
        raise["body"]["alarm"]["raised_at_us"].as_i64().unwrap() >= T0 + MINUTE,
        "{raise}"
    );

    // At the default 80 % an idle queue raises nothing; a check that changes nothing writes nothing.
    let quiet = TestServer::start_with(only(SystemAlarm::Queue)).await;
    let log = quiet.state().log();
    let head = quiet.head_seq();
    let probes = Probes {
        certs: None,
        queue_capacity: 8192,
        replication_lag: None,
    };
    let mut memory = Memory::default();
    for _ in 0..3 {
        check_all(log, &quiet.state().config().alarms, &probes, &mut memory)
            .await
            .unwrap();
    }
    assert_eq!(quiet.head_seq(), head);
}

#[tokio::test]
async fn a_certificate_ending_within_the_configured_days_raises_the_certificate_alarm() {
    let server = TestServer::start_with(|c| {
        only(SystemAlarm::Certificate)(c);
        // The test server's certificate ends within ten years.
        c.alarms.cert_alarm_days = 3650;
    })
    .await;
    let ops = people(&server, &["vic"], &["vic"]).await;
    let (mut ws, mut seen) = alarm_socket(&ops[0]).await;
    let raise = system_entry(&mut ws, &mut seen, "alarm.raise", "tls.cert_expiring").await;
    let msg = raise["body"]["alarm"]["message"].as_str().unwrap();
    assert!(msg.contains("expires in"), "{msg}");

    // At the default 14 days a fresh certificate raises nothing.
    let quiet = TestServer::start_with(only(SystemAlarm::Certificate)).await;
    let head = quiet.head_seq();
    let state = quiet.state().clone();
    let probes = Probes {
        certs: Some(Arc::new(move || state.tls().expiries())),
        queue_capacity: 8192,
        replication_lag: None,
    };
    check_all(
        quiet.state().log(),
        &quiet.state().config().alarms,
        &probes,
        &mut Memory::default(),
    )
    .await
    .unwrap();
    assert_eq!(quiet.head_seq(), head);
}

#[tokio::test]
async fn a_clock_step_raises_the_clock_alarm_once_and_it_waits_for_an_ack() {
    let clock = Arc::new(ManualClock::new(T0));
    let server = TestServer::start_full(
        TempDir::new().unwrap(),
        clock.clone(),
        only(SystemAlarm::Clock),
    )
    .await;
    let token = server.device("plc-1").await;
    let ops = people(&server, &["olga"], &[]).await;
    let olga = &ops[0];
    let (mut ws, mut seen) = alarm_socket(olga).await;
    // The wall clock steps back two hours; the next write (a device's: a person's session token
    // is not valid before it was issued) records `clock.stepped`.
    clock.set_us(T0 - 120 * MINUTE);
    let r = server
        .client()
        .with_bearer(
            hyper::Method::POST,
            "/api/v1/alarms",
            &token,
            Some(json!({"source": "fan-1", "condition": "vibration", "active": true})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    clock.set_us(T0 + MINUTE + 1);
    let raise = system_entry(&mut ws, &mut seen, "alarm.raise", "clock.stepped").await;
    let clear = system_entry(&mut ws, &mut seen, "alarm.clear", "clock.stepped").await;
    assert!(clear["seq"].as_u64() > raise["seq"].as_u64());
    assert_eq!(clear["body"]["state"], "rtn_unack");
    let id = raise["body"]["id"].as_u64().unwrap();

    // The same step is signalled once: another check writes nothing.
    let head = server.head_seq();
    let probes = Probes::default();
    let cfg = server.state().config().alarms.clone();
    check_all(server.state().log(), &cfg, &probes, &mut Memory::default())
        .await
        .unwrap();
    assert_eq!(server.head_seq(), head);
    let ack = olga
        .post(&format!("/api/v1/alarms/{id}/ack"), json!({}))
        .await;
    assert_eq!(ack.status, 200, "{:?}", ack.body);
    assert_eq!(ack.json()["state"], "normal");
}

#[tokio::test]
async fn more_than_ten_alarms_in_ten_minutes_raise_the_flood_alarm_until_it_passes() {
    let clock = Arc::new(ManualClock::new(T0));
    let server = TestServer::start_full(
        TempDir::new().unwrap(),
        clock.clone(),
        only(SystemAlarm::Flood),
    )
    .await;
    let ops = people(&server, &["olga"], &[]).await;
    let olga = &ops[0];
    let (mut ws, mut seen) = alarm_socket(olga).await;
    for i in 0..11 {
        let r = olga
            .post(
                "/api/v1/alarms",
                json!({"source": format!("valve-{i}"), "condition": "stuck", "active": true}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    clock.advance_us(MINUTE);
    let raise = system_entry(&mut ws, &mut seen, "alarm.raise", "alarm.flood").await;
    assert_eq!(raise["body"]["alarm"]["priority"], "high");
    // Ten minutes later the window holds none of them: the flood clears.
    clock.advance_us(10 * MINUTE);
    let clear = system_entry(&mut ws, &mut seen, "alarm.clear", "alarm.flood").await;
    assert_eq!(clear["body"]["state"], "rtn_unack");
}
