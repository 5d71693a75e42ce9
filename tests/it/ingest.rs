//! The ingest adapters through the real server over real TLS: ntfy's `curl` one-liners,
//! recorded Alertmanager v4 and Grafana payloads, idempotency keys that survive a restart,
//! refusals with stable codes that change nothing, and per-device rate limits.

use std::process::Command;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Method;
use serde_json::{Value, json};

use crate::chat_support::{Api, PW};
use crate::support::{Client, Resp, TestServer, in_ci};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/ingest/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A POST (or `method`) with raw bytes, a bearer token and extra headers.
async fn raw(
    client: &Client,
    method: Method,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Resp {
    let mut b = client
        .request(method, path)
        .header("authorization", format!("Bearer {token}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    client
        .send(b.body(Full::from(Bytes::from(body))).unwrap())
        .await
}

async fn reader(server: &TestServer) -> Api {
    server
        .user("reader", plantwire::store::Role::Viewer, PW)
        .await;
    Api::login(&server.client(), "reader", PW).await
}

/// Every event of `source`, oldest first, through `GET /api/v1/events`.
async fn events_of(api: &Api, source: &str) -> Vec<Value> {
    let res = api
        .get(&format!("/api/v1/events?source={source}&limit=500"))
        .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    res.json()["events"].as_array().unwrap().clone()
}

fn curl_available() -> bool {
    Command::new("curl").arg("--version").output().is_ok()
}

#[tokio::test]
#[cfg_attr(not(pw_has_curl), ignore = "needs curl (CI runs it)")]
async fn ntfy_curl_one_liners_give_the_documented_events() {
    if !curl_available() {
        assert!(!in_ci(), "curl is required in CI");
        eprintln!("skipped: no curl");
        return;
    }
    let server = TestServer::start().await;
    let token = server.device("gw-1").await;
    let api = reader(&server).await;
    let ca = server.path().join("ca-for-curl.pem");
    std::fs::write(&ca, server.state().tls().ca_pem().unwrap()).unwrap();
    let base = format!("https://localhost:{}", server.addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", server.addr.port());
    // curl runs on a blocking thread: the server shares this test's runtime.
    let curl = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (ca, resolve) = (ca.clone(), resolve.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let out = Command::new("curl")
                    .args(["-sS", "--fail-with-body", "--cacert"])
                    .arg(&ca)
                    .args(["--resolve", &resolve])
                    .args(&args)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "curl {args:?}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                serde_json::from_slice::<Value>(&out.stdout).unwrap()
            })
            .await
            .unwrap()
        }
    };
    let bearer = format!("Authorization: Bearer {token}");
    let basic = format!(":{token}");

    // The issue's one-liner, with Bearer and with Basic (any user, the token as password).
    let a = curl(&[
        "-d",
        "Pump 7 pressure high",
        "-H",
        "Priority: 5",
        "-H",
        "Tags: pump,pressure",
        "-H",
        &bearer,
        &format!("{base}/ntfy/pump-7"),
    ])
    .await;
    assert_eq!(a["event"], "message");
    assert_eq!(a["topic"], "pump-7");
    assert_eq!(a["message"], "Pump 7 pressure high");
    assert!(a["seq"].as_u64().unwrap() > 0 && a["time"].as_i64().unwrap() > 0);
    let b = curl(&[
        "-u",
        &basic,
        "-H",
        "X-Title: Pump 7",
        "-H",
        "X-Sequence-ID: pump7-pressure",
        "-d",
        "Pump 7 pressure high",
        &format!("{base}/ntfy/pump-7"),
    ])
    .await;
    // The query-parameter form and PUT.
    let c = curl(&[
        "-X",
        "PUT",
        "-u",
        &basic,
        "-d",
        "Tank 2 low",
        &format!("{base}/ntfy/tank-2?t=Tank%202&p=high&ta=tank,level"),
    ])
    .await;
    // ntfy's JSON publish; fields ntfy has and we do not use are accepted.
    let d = curl(&[
        "-H",
        &bearer,
        "-d",
        r#"{"topic":"boiler-1","message":"Boiler hot","title":"Boiler","tags":["boiler"],"priority":2,"click":"https://example.invalid","markdown":true}"#,
        &format!("{base}/ntfy"),
    ])
    .await;

    let pump = events_of(&api, "pump-7").await;
    assert_eq!(pump.len(), 2);
    assert_eq!(pump[0]["seq"], a["seq"]);
    assert_eq!(pump[0]["type"], "ntfy.message");
    assert_eq!(pump[0]["severity"], "critical");
    assert_eq!(pump[0]["by"], "device:gw-1");
    assert_eq!(pump[0]["attributes"]["tags"], "pump,pressure");
    assert_eq!(pump[0]["attributes"]["priority"], 5);
    assert_eq!(pump[1]["seq"], b["seq"]);
    assert_eq!(pump[1]["severity"], "info");
    assert_eq!(pump[1]["condition"], "pump7-pressure");
    assert_eq!(pump[1]["attributes"]["title"], "Pump 7");
    let tank = events_of(&api, "tank-2").await;
    assert_eq!(tank.len(), 1);
    assert_eq!(tank[0]["seq"], c["seq"]);
    assert_eq!(tank[0]["message"], "Tank 2 low");
    assert_eq!(tank[0]["severity"], "warning");
    assert_eq!(tank[0]["attributes"]["title"], "Tank 2");
    assert_eq!(tank[0]["attributes"]["tags"], "tank,level");
    let boiler = events_of(&api, "boiler-1").await;
    assert_eq!(boiler.len(), 1);
    assert_eq!(boiler[0]["seq"], d["seq"]);
    assert_eq!(boiler[0]["message"], "Boiler hot");
    assert_eq!(boiler[0]["severity"], "info");
    assert_eq!(boiler[0]["attributes"]["title"], "Boiler");
    server.stop().await;
}

#[tokio::test]
async fn alertmanager_firing_then_resolved_is_active_then_cleared_and_a_resend_is_stored_once() {
    let server = TestServer::start().await;
    let token = server.device("am").await;
    let api = reader(&server).await;
    let client = server.client();
    let path = "/api/v1/ingest/alertmanager";
    let ct = [("content-type", "application/json")];

    let first = raw(
        &client,
        Method::POST,
        path,
        &token,
        &ct,
        fixture("alertmanager-firing.json"),
    )
    .await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    assert_eq!(first.json()["duplicate"], json!([false, false]));
    let head = server.head_seq();
    // Alertmanager re-sends the group every group_interval: stored once.
    let again = raw(
        &client,
        Method::POST,
        path,
        &token,
        &ct,
        fixture("alertmanager-firing.json"),
    )
    .await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.json()["seqs"], first.json()["seqs"]);
    assert_eq!(again.json()["duplicate"], json!([true, true]));
    assert_eq!(server.head_seq(), head);
    let resolved = raw(
        &client,
        Method::POST,
        path,
        &token,
        &ct,
        fixture("alertmanager-resolved.json"),
    )
    .await;
    assert_eq!(resolved.status, 201, "{:?}", resolved.body);

    let pump = events_of(&api, "pump-7:9100").await;
    assert_eq!(pump.len(), 2, "{pump:?}");
    assert_eq!(pump[0]["type"], "alertmanager.alert");
    assert_eq!(pump[0]["state"], "active");
    assert_eq!(pump[1]["state"], "cleared");
    for e in &pump {
        assert_eq!(e["condition"], "4f6c0e1c3b8a2d71");
        assert_eq!(e["severity"], "critical");
        assert_eq!(e["message"], "Pump 7 pressure above 8 bar");
        assert_eq!(e["attributes"]["label.alertname"], "PumpPressureHigh");
    }
    // startsAt for firing, endsAt for resolved.
    assert_eq!(pump[0]["occurred_at_us"], 1_796_073_245_123_456i64);
    assert_eq!(pump[1]["occurred_at_us"], 1_796_074_300_000_000i64);
    let tank = events_of(&api, "tank-2:9100").await;
    assert_eq!(tank.len(), 1);
    assert_eq!(tank[0]["severity"], "warning");

    // The same commits drove the alarm board: the pump's alarm was raised at critical and has
    // returned to normal unacknowledged; the tank's stands unacknowledged at medium; the
    // re-sent group changed no alarm (the head did not move above).
    let alarms = api.get("/api/v1/alarms?state=rtn_unack").await.json();
    let pump_alarm = &alarms["alarms"][0];
    assert_eq!(pump_alarm["source"], "pump-7:9100", "{alarms}");
    assert_eq!(pump_alarm["condition"], "4f6c0e1c3b8a2d71");
    assert_eq!(pump_alarm["priority"], "critical");
    assert_eq!(pump_alarm["active"], false);
    let standing = api.get("/api/v1/alarms?state=unack").await.json();
    assert_eq!(
        standing["alarms"].as_array().unwrap().len(),
        1,
        "{standing}"
    );
    assert_eq!(standing["alarms"][0]["source"], "tank-2:9100");
    assert_eq!(standing["alarms"][0]["priority"], "medium");
    let journal = api
        .get(&format!("/api/v1/alarms/{}", pump_alarm["id"]))
        .await
        .json();
    let kinds: Vec<&str> = journal["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["alarm.raise", "alarm.clear"], "{journal}");
    server.stop().await;
}

#[tokio::test]
async fn grafana_notifications_are_signed_when_a_secret_is_configured() {
    let secret = "grafana-shared-secret";
    let server = TestServer::start_with(|c| {
        c.ingest.grafana.hmac_secret = Some(secret.into());
        c.ingest.grafana.timestamp_header = Some("X-Grafana-Alerting-Signature-Timestamp".into());
    })
    .await;
    let token = server.device("grafana").await;
    let api = reader(&server).await;
    let client = server.client();
    let path = "/api/v1/ingest/grafana";
    let body = fixture("grafana-firing.json");
    let ts = "1796076000";
    let good = plantwire::ingest::signature::sign(secret.as_bytes(), &body, Some(ts));
    let wrong = plantwire::ingest::signature::sign(b"another secret", &body, Some(ts));
    let head = server.head_seq();
    for headers in [
        vec![],
        vec![("x-grafana-alerting-signature", good.as_str())],
        vec![
            ("x-grafana-alerting-signature", wrong.as_str()),
            ("x-grafana-alerting-signature-timestamp", ts),
        ],
        vec![
            ("x-grafana-alerting-signature", good.as_str()),
            ("x-grafana-alerting-signature-timestamp", "1796076001"),
        ],
    ] {
        let res = raw(&client, Method::POST, path, &token, &headers, body.clone()).await;
        assert_eq!(res.status, 401, "{headers:?}");
        assert_eq!(res.error_code(), "bad_signature");
        assert_eq!(server.head_seq(), head, "{headers:?}");
    }
    let signed = [
        ("x-grafana-alerting-signature", good.as_str()),
        ("x-grafana-alerting-signature-timestamp", ts),
    ];
    let res = raw(&client, Method::POST, path, &token, &signed, body.clone()).await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    let resolved = fixture("grafana-resolved.json");
    let sig = plantwire::ingest::signature::sign(secret.as_bytes(), &resolved, Some(ts));
    let signed = [
        ("x-grafana-alerting-signature", sig.as_str()),
        ("x-grafana-alerting-signature-timestamp", ts),
    ];
    let res = raw(&client, Method::POST, path, &token, &signed, resolved).await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    let boiler = events_of(&api, "boiler-1").await;
    assert_eq!(boiler.len(), 2);
    assert_eq!(boiler[0]["type"], "grafana.alert");
    assert_eq!(boiler[0]["state"], "active");
    assert_eq!(boiler[1]["state"], "cleared");
    assert_eq!(boiler[0]["condition"], "9e8d7c6b5a493827");
    assert_eq!(boiler[0]["severity"], "warning");
    assert!(
        boiler[0]["attributes"]["value_string"]
            .as_str()
            .unwrap()
            .contains("96.4")
    );
    server.stop().await;
}

#[tokio::test]
async fn retries_with_the_same_key_are_stored_once_also_after_a_restart() {
    let server = TestServer::start().await;
    let token = server.device("press-1").await;
    let client = server.client();
    let json_ct = ("content-type", "application/json");
    let event = br#"{"source":"press-1","type":"cycle.done","message":"cycle 1"}"#.to_vec();
    let native = |c: Client, t: String, body: Vec<u8>| async move {
        raw(
            &c,
            Method::POST,
            "/api/v1/events",
            &t,
            &[json_ct, ("idempotency-key", "cycle-1")],
            body,
        )
        .await
    };
    let ntfy = |c: Client, t: String| async move {
        raw(
            &c,
            Method::POST,
            "/ntfy/press-1",
            &t,
            &[("x-sequence-id", "door"), ("x-time", "1796070000")],
            b"door open".to_vec(),
        )
        .await
    };
    let batch_body = serde_json::to_vec(&json!({"events": [
        {"source": "press-1", "type": "cycle.done", "event_id": "b-1"},
        {"source": "press-1", "type": "cycle.done", "event_id": "b-2"},
    ]}))
    .unwrap();
    let batch = |c: Client, t: String, body: Vec<u8>| async move {
        raw(
            &c,
            Method::POST,
            "/api/v1/events/batch",
            &t,
            &[json_ct],
            body,
        )
        .await
    };
    let webhook = |c: Client, t: String| async move {
        raw(
            &c,
            Method::POST,
            "/api/v1/ingest/alertmanager",
            &t,
            &[json_ct],
            fixture("alertmanager-resolved.json"),
        )
        .await
    };

    let n1 = native(client.clone(), token.clone(), event.clone()).await;
    assert_eq!(n1.status, 201);
    assert!(n1.json().get("duplicate").is_none());
    let f1 = ntfy(client.clone(), token.clone()).await;
    assert_eq!(f1.status, 200);
    let b1 = batch(client.clone(), token.clone(), batch_body.clone()).await;
    assert_eq!(b1.status, 201);
    let w1 = webhook(client.clone(), token.clone()).await;
    assert_eq!(w1.status, 201);
    let head = server.head_seq();

    let check = |head_now: u64, n: Resp, f: Resp, b: Resp, w: Resp| {
        assert_eq!(head_now, head, "a retry stored something");
        assert_eq!(n.status, 200);
        assert_eq!(n.json()["seq"], n1.json()["seq"]);
        assert_eq!(n.json()["duplicate"], true);
        assert_eq!(f.status, 200);
        assert_eq!(f.json()["seq"], f1.json()["seq"]);
        assert_eq!(f.json()["duplicate"], true);
        assert_eq!(b.status, 200);
        assert_eq!(b.json()["seqs"], b1.json()["seqs"]);
        assert_eq!(b.json()["duplicate"], json!([true, true]));
        assert_eq!(w.status, 200);
        assert_eq!(w.json()["seqs"], w1.json()["seqs"]);
    };
    let n = native(client.clone(), token.clone(), event.clone()).await;
    let f = ntfy(client.clone(), token.clone()).await;
    let b = batch(client.clone(), token.clone(), batch_body.clone()).await;
    let w = webhook(client.clone(), token.clone()).await;
    check(server.head_seq(), n, f, b, w);

    // The keys are in the store: a restart on the same directory remembers them.
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, |_| {}).await;
    let client = server.client();
    let n = native(client.clone(), token.clone(), event.clone()).await;
    let f = ntfy(client.clone(), token.clone()).await;
    let b = batch(client.clone(), token.clone(), batch_body.clone()).await;
    let w = webhook(client.clone(), token.clone()).await;
    check(server.head_seq(), n, f, b, w);

    // The same key with another event is refused and stores nothing.
    let other = br#"{"source":"press-1","type":"cycle.done","message":"cycle 2"}"#.to_vec();
    let res = native(client.clone(), token.clone(), other).await;
    assert_eq!(res.status, 409);
    assert_eq!(res.error_code(), "idempotency_key_reused");
    assert_eq!(server.head_seq(), head);

    // A batch of one old and one new event stores the new one and answers both.
    let mixed = serde_json::to_vec(&json!({"events": [
        {"source": "press-1", "type": "cycle.done", "event_id": "b-1"},
        {"source": "press-1", "type": "cycle.done", "event_id": "b-3"},
        {"source": "press-1", "type": "cycle.done", "event_id": "b-3"},
    ]}))
    .unwrap();
    let m = batch(client.clone(), token.clone(), mixed).await;
    assert_eq!(m.status, 201, "{:?}", m.body);
    let seqs = m.json()["seqs"].clone();
    assert_eq!(seqs[0], b1.json()["seqs"][0]);
    assert_eq!(seqs[1], head + 1);
    assert_eq!(seqs[2], head + 1);
    assert_eq!(m.json()["duplicate"], json!([true, false, true]));
    assert_eq!(server.head_seq(), head + 1);
    // Keys are per device: another device's same key is its own.
    let other_token = server.device("press-2").await;
    let res = native(client.clone(), other_token, event.clone()).await;
    assert_eq!(res.status, 201);
    server.stop().await;
}

/// (method, path, headers, body, expected status, expected code)
type BadCase<'a> = (
    Method,
    &'a str,
    Vec<(&'a str, &'a str)>,
    Vec<u8>,
    u16,
    &'a str,
);

#[tokio::test]
async fn a_bad_payload_of_each_adapter_gets_a_stable_code_and_changes_nothing() {
    let server = TestServer::start().await;
    let token = server.device("gw-1").await;
    let client = server.client();
    let json_ct = ("content-type", "application/json");
    let head = server.head_seq();
    let mut firing: Value = serde_json::from_slice(&fixture("alertmanager-firing.json")).unwrap();
    firing["alerts"][1]["status"] = json!("pending");
    let mut too_many: Value = serde_json::from_slice(&fixture("alertmanager-firing.json")).unwrap();
    let one = too_many["alerts"][0].clone();
    too_many["alerts"] = Value::Array(vec![one; 101]);
    let long_title = "t".repeat(1025);
    let cases: Vec<BadCase> = vec![
        (
            Method::POST,
            "/ntfy/bad%20topic",
            vec![],
            b"x".to_vec(),
            400,
            "invalid_ntfy",
        ),
        (
            Method::POST,
            "/ntfy/pump-7",
            vec![("x-priority", "9")],
            b"x".to_vec(),
            400,
            "invalid_ntfy",
        ),
        (
            Method::POST,
            "/ntfy/pump-7",
            vec![],
            vec![0xff, 0xfe],
            400,
            "invalid_ntfy",
        ),
        (
            Method::POST,
            "/ntfy/pump-7",
            vec![("x-title", long_title.as_str())],
            b"x".to_vec(),
            400,
            "invalid_ntfy",
        ),
        (
            Method::POST,
            "/ntfy",
            vec![],
            br#"{"topic":"pump-7","colour":1}"#.to_vec(),
            400,
            "invalid_ntfy",
        ),
        (
            Method::POST,
            "/api/v1/ingest/alertmanager",
            vec![json_ct],
            b"{\"alerts\":".to_vec(),
            400,
            "invalid_alert",
        ),
        (
            Method::POST,
            "/api/v1/ingest/alertmanager",
            vec![json_ct],
            serde_json::to_vec(&firing).unwrap(),
            400,
            "invalid_alert",
        ),
        (
            Method::POST,
            "/api/v1/ingest/alertmanager",
            vec![json_ct],
            serde_json::to_vec(&too_many).unwrap(),
            400,
            "too_many_alerts",
        ),
        (
            Method::POST,
            "/api/v1/ingest/grafana",
            vec![json_ct],
            br#"{"alerts":[{"status":"firing"}]}"#.to_vec(),
            400,
            "invalid_alert",
        ),
        (
            Method::POST,
            "/api/v1/events",
            vec![json_ct, ("idempotency-key", "")],
            br#"{"source":"a","type":"b"}"#.to_vec(),
            400,
            "invalid_idempotency_key",
        ),
        (
            Method::POST,
            "/api/v1/events",
            vec![json_ct],
            br#"{"source":"a","type":"b","condition":""}"#.to_vec(),
            400,
            "invalid_event",
        ),
        (
            Method::POST,
            "/api/v1/events",
            vec![json_ct],
            br#"{"source":"a","type":"b","state":"gone"}"#.to_vec(),
            400,
            "invalid_json",
        ),
    ];
    for (method, path, headers, body, status, code) in cases {
        let res = raw(&client, method, path, &token, &headers, body).await;
        assert_eq!(
            res.status.as_u16(),
            status,
            "{path} {headers:?}: {:?}",
            res.body
        );
        assert_eq!(res.error_code(), code, "{path} {headers:?}");
        assert_eq!(server.head_seq(), head, "{path} moved the chain head");
    }
    // Every refusal after the device was known is counted for it, by code.
    let admin = server.state().metrics().render(0, 0).unwrap();
    assert!(
        admin.contains(r#"plantwire_ingest_refused_total{device="gw-1",code="invalid_ntfy"} 5"#),
        "{admin}"
    );
    assert!(
        admin.contains(r#"plantwire_ingest_refused_total{device="gw-1",code="invalid_alert"} 3"#)
    );
    assert_eq!(server.state().ingest().stats("gw-1").refused, 12);
    server.stop().await;
}

#[tokio::test]
async fn past_its_burst_a_device_gets_429_with_retry_after_and_others_are_not_limited() {
    let server = TestServer::start_with(|c| {
        c.events.rate_per_sec = 0.01;
        c.events.burst = 5;
        c.events.device_rates.insert(
            "big".into(),
            plantwire::config::DeviceRate {
                rate_per_sec: 0.01,
                burst: 50,
            },
        );
    })
    .await;
    let flood = server.device("flood").await;
    let calm = server.device("calm").await;
    let big = server.device("big").await;
    let client = server.client();
    for i in 0..5 {
        let res = client.event(&flood, &format!("m{i}")).await;
        assert_eq!(res.status, 201, "event {i}");
    }
    let head = server.head_seq();
    for via in ["/api/v1/events", "/ntfy/flood"] {
        let res = raw(
            &client,
            Method::POST,
            via,
            &flood,
            &[("content-type", "application/json")],
            br#"{"source":"flood","type":"x"}"#.to_vec(),
        )
        .await;
        assert_eq!(res.status, 429, "{via}");
        assert_eq!(res.error_code(), "rate_limited");
        let secs: u64 = res.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=100).contains(&secs), "{secs}");
    }
    assert_eq!(server.head_seq(), head);
    // The flooding device does not use up anyone else's bucket, and an override is its own.
    for i in 0..5 {
        assert_eq!(client.event(&calm, &format!("c{i}")).await.status, 201);
    }
    for i in 0..20 {
        assert_eq!(client.event(&big, &format!("b{i}")).await.status, 201);
    }
    // The admin's device list shows the statistics.
    server.user("boss", plantwire::store::Role::Admin, PW).await;
    let admin = Api::login(&client, "boss", PW).await;
    let list = admin.ok("/api/v1/admin/devices").await;
    let flood_view = list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "flood")
        .unwrap()
        .clone();
    assert_eq!(flood_view["rate_per_min"], 5, "{flood_view}");
    assert_eq!(flood_view["refused"], 2, "{flood_view}");
    assert!(
        flood_view["last_seen_us"].as_i64().unwrap() > 0,
        "{flood_view}"
    );
    let metrics = server.state().metrics().render(0, 0).unwrap();
    assert!(
        metrics.contains(r#"plantwire_ingest_refused_total{device="flood",code="rate_limited"} 2"#),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_key_counts_for_its_window_then_is_pruned_and_the_event_is_new_again() {
    use plantwire::clock::ManualClock;
    const START: i64 = 1_796_000_000_000_000;
    let clock = std::sync::Arc::new(ManualClock::new(START));
    let server = TestServer::start_full(tempfile::TempDir::new().unwrap(), clock.clone(), |c| {
        c.events.idempotency_window_secs = 60;
    })
    .await;
    let token = server.device("press-1").await;
    let client = server.client();
    let send = |key: &'static str| {
        let (c, t) = (client.clone(), token.clone());
        async move {
            raw(
                &c,
                Method::POST,
                "/api/v1/events",
                &t,
                &[
                    ("content-type", "application/json"),
                    ("idempotency-key", key),
                ],
                br#"{"source":"press-1","type":"cycle.done"}"#.to_vec(),
            )
            .await
        }
    };
    let keys = || {
        server
            .state()
            .log()
            .read()
            .unwrap()
            .ingest_key_count()
            .unwrap()
    };
    let first = send("k1").await;
    assert_eq!(first.status, 201);
    clock.advance_us(59_000_000);
    assert_eq!(send("k1").await.status, 200, "inside the window");
    assert_eq!(
        plantwire::events::prune_keys(server.state().log())
            .await
            .unwrap(),
        0
    );
    assert_eq!(keys(), 1);
    clock.advance_us(2_000_000);
    // Past the window the key no longer counts, pruned or not.
    let again = send("k1").await;
    assert_eq!(again.status, 201);
    assert!(again.json()["seq"].as_u64() > first.json()["seq"].as_u64());
    assert_eq!(send("k2").await.status, 201);
    clock.advance_us(61_000_000);
    plantwire::events::prune_keys(server.state().log())
        .await
        .unwrap();
    assert_eq!(keys(), 0, "expired keys are pruned");
    server.stop().await;
}

#[tokio::test]
async fn the_adapters_answer_a_full_write_queue_with_503_and_retry_after() {
    let server = TestServer::start_with(|c| c.storage.queue_capacity = 2).await;
    let token = server.device("gw-1").await;
    let client = server.client();
    let log = server.state().log().clone();
    // Hold the writer inside a batch, then fill the queue behind it.
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    let mut started_tx = Some(started_tx);
    let blocker = tokio::spawn({
        let log = log.clone();
        async move {
            log.submit(move |_tx| {
                if let Some(s) = started_tx.take() {
                    let _ = s.send(());
                }
                let _ = wait.recv();
                Ok(())
            })
            .await
        }
    });
    started.await.unwrap();
    let queued: Vec<_> = (0..2)
        .map(|i| {
            let (client, token) = (client.clone(), token.clone());
            tokio::spawn(async move { client.event(&token, &format!("queued {i}")).await })
        })
        .collect();
    for _ in 0..500 {
        if log.queue_depth() == 2 {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(log.queue_depth(), 2);
    let json_ct = ("content-type", "application/json");
    for (path, body) in [
        ("/ntfy/pump-7", b"Pump 7 pressure high".to_vec()),
        (
            "/api/v1/ingest/alertmanager",
            fixture("alertmanager-firing.json"),
        ),
        ("/api/v1/ingest/grafana", fixture("grafana-firing.json")),
    ] {
        let res = raw(&client, Method::POST, path, &token, &[json_ct], body).await;
        assert_eq!(res.status, 503, "{path}");
        assert_eq!(res.error_code(), "busy");
        assert_eq!(res.headers["retry-after"], "1");
    }
    release.send(()).unwrap();
    blocker.await.unwrap().unwrap();
    for q in queued {
        assert_eq!(q.await.unwrap().status, 201);
    }
    let metrics = server.state().metrics().render(0, 0).unwrap();
    assert!(
        metrics.contains(r#"plantwire_ingest_refused_total{device="gw-1",code="busy"} 3"#),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_operators_manual_event_with_a_key_is_stored_once() {
    let server = TestServer::start().await;
    server
        .user("oper", plantwire::store::Role::Operator, PW)
        .await;
    let op = Api::login(&server.client(), "oper", PW).await;
    let body = br#"{"source":"line-2","type":"reading","message":"12.5 bar","event_id":"walk-7"}"#;
    let send = || {
        raw(
            &op.client,
            Method::POST,
            "/api/v1/events/manual",
            &op.token,
            &[("content-type", "application/json")],
            body.to_vec(),
        )
    };
    let first = send().await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let head = server.head_seq();
    let again = send().await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["seq"], first.json()["seq"]);
    assert_eq!(again.json()["duplicate"], true);
    assert_eq!(server.head_seq(), head);
    server.stop().await;
}
