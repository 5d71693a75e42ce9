//! Alarms through the real server over HTTPS: device tokens, roles, bad input, shelve timers by the
//! test clock and across a restart, the ack race, the live socket, KPIs and the system alarm.

use std::sync::Arc;

use plantwire::clock::ManualClock;
use plantwire::store::Role;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::chat_support::{Api, PW, Ws, people};
use crate::support::{Client, Resp, TestServer};

const MINUTE: i64 = 60_000_000;
/// 2030-01-01T00:00:00Z: where the manual clock starts.
const T0: i64 = 1_893_456_000_000_000;

async fn device_raise(c: &Client, token: &str, body: Value) -> Resp {
    c.with_bearer(hyper::Method::POST, "/api/v1/alarms", token, Some(body))
        .await
}

fn pressure(active: bool) -> Value {
    json!({"source": "pump-7", "condition": "pressure.high", "active": active, "priority": "high",
           "message": "discharge pressure above 12 bar", "attributes": {"bar": 12.4}})
}

/// Signs in an admin made for the test.
async fn admin(server: &TestServer, name: &str) -> Api {
    server.user(name, Role::Admin, PW).await;
    Api::login(&server.client(), name, PW).await
}

/// A socket following the `alarms` domain from `since`; returns it once caught up.
pub(crate) async fn alarm_socket(api: &Api, since: u64) -> (Ws, Vec<Value>) {
    let mut ws = api.ws().await;
    ws.send(json!({"type": "subscribe", "since": since, "domains": ["alarms"]}))
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

#[tokio::test]
async fn a_device_raises_and_clears_with_its_token_viewers_read_only_and_bad_input_changes_nothing()
{
    let server = TestServer::start().await;
    let token = server.device("plc-3").await;
    let c = server.client();
    let ops = people(&server, &["olga", "vic"], &["vic"]).await;
    let (olga, vic) = (&ops[0], &ops[1]);

    let r = device_raise(&c, &token, pressure(true)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let raised = r.json();
    assert_eq!(raised["changed"], true);
    assert_eq!(raised["state"], "unack");
    let id = raised["id"].as_u64().unwrap();
    assert_eq!(raised["seq"].as_u64().unwrap(), id);
    assert_eq!(server.head_seq(), id);

    // The same report again changes nothing: says so, writes nothing.
    let again = device_raise(&c, &token, pressure(true)).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.json()["changed"], false);
    assert_eq!(again.json()["id"].as_u64().unwrap(), id);
    assert_eq!(server.head_seq(), id);

    // Bad input: 4xx with a stable code, and the head does not move.
    for (body, code) in [
        (
            json!({"source": "", "condition": "x", "active": true}),
            "invalid_alarm",
        ),
        (
            json!({"source": "p", "condition": "bad cond", "active": true}),
            "invalid_alarm",
        ),
        (
            json!({"source": "p", "condition": "x", "active": true, "priority": "urgent"}),
            "invalid_json",
        ),
        (
            json!({"source": "p", "condition": "x", "active": true, "colour": "red"}),
            "invalid_json",
        ),
        (json!({"source": "p", "condition": "x"}), "invalid_json"),
    ] {
        let r = device_raise(&c, &token, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert_eq!(r.error_code(), code, "{body}");
    }
    let bad_token = device_raise(&c, "pwd_not-a-token", pressure(true)).await;
    assert_eq!(bad_token.status, 401);
    assert_eq!(server.head_seq(), id);

    // A viewer reads but cannot ack, raise, shelve or comment.
    let listed = vic.ok("/api/v1/alarms").await;
    assert_eq!(listed["alarms"][0]["id"].as_u64().unwrap(), id);
    assert_eq!(listed["alarms"][0]["state"], "unack");
    assert_eq!(listed["alarms"][0]["priority"], "high");
    for (path, body) in [
        (format!("/api/v1/alarms/{id}/ack"), json!({})),
        (
            format!("/api/v1/alarms/{id}/shelve"),
            json!({"mode": "one_shot", "reason": "x"}),
        ),
        (format!("/api/v1/alarms/{id}/comment"), json!({"text": "x"})),
        ("/api/v1/alarms".to_string(), pressure(false)),
    ] {
        let r = vic.post(&path, body).await;
        assert_eq!(r.status, 403, "{path}: {:?}", r.body);
    }
    // Unknown alarm, and an operator may not take it out of service (admins only by default).
    assert_eq!(
        olga.post("/api/v1/alarms/999999/ack", json!({}))
            .await
            .error_code(),
        "no_such_alarm"
    );
    let oos = olga
        .post(
            &format!("/api/v1/alarms/{id}/out-of-service"),
            json!({"reason": "maintenance"}),
        )
        .await;
    assert_eq!(oos.status, 403);
    assert_eq!(server.head_seq(), id);

    // The device clears it: returned to normal unacknowledged; the operator acks it to normal.
    let cleared = device_raise(&c, &token, pressure(false)).await;
    assert_eq!(cleared.status, 201);
    assert_eq!(cleared.json()["state"], "rtn_unack");
    let acked = olga
        .post(
            &format!("/api/v1/alarms/{id}/ack"),
            json!({"comment": "valve reseated"}),
        )
        .await;
    assert_eq!(acked.status, 200, "{:?}", acked.body);
    assert_eq!(acked.json()["state"], "normal");
    assert!(
        vic.ok("/api/v1/alarms").await["alarms"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // The journal says who did what, with the comment; the next raise is a new occurrence.
    let detail = vic.ok(&format!("/api/v1/alarms/{id}")).await;
    let journal: Vec<(String, String)> = detail["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["kind"].as_str().unwrap().into(),
                j["by"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        journal,
        [
            ("alarm.raise".into(), "device:plc-3".into()),
            ("alarm.clear".into(), "device:plc-3".into()),
            ("alarm.ack".into(), "user:olga".into()),
        ]
    );
    assert_eq!(detail["journal"][2]["note"], "valve reseated");
    let next = device_raise(&c, &token, pressure(true)).await.json();
    assert_ne!(next["id"], json!(id));
    let second = vic.ok(&format!("/api/v1/alarms/{}", next["id"])).await;
    assert_eq!(second["occurrence"], 2);
    assert_eq!(second["previous"], json!(id));

    // History, as JSON and as CSV.
    let h = vic.ok("/api/v1/alarms/history?source=pump-7").await;
    assert_eq!(h["transitions"].as_array().unwrap().len(), 4);
    let csv = vic
        .client
        .send(
            vic.client
                .request(hyper::Method::GET, "/api/v1/alarms/history")
                .header("authorization", format!("Bearer {}", vic.token))
                .header("accept", "text/csv")
                .body(Default::default())
                .unwrap(),
        )
        .await;
    assert_eq!(csv.status, 200);
    let text = String::from_utf8(csv.body.to_vec()).unwrap();
    assert!(text.starts_with("seq,ts_us,kind,by,id,"), "{text}");
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(text.contains("alarm.ack,user:olga"), "{text}");
}

#[tokio::test]
async fn a_timed_shelve_ends_by_the_clock_unacknowledged_and_a_manual_unshelve_acknowledges() {
    let clock = Arc::new(ManualClock::new(T0));
    let server = TestServer::start_full(TempDir::new().unwrap(), clock.clone(), |_| {}).await;
    let ops = people(&server, &["olga"], &[]).await;
    let olga = &ops[0];
    let raise = |cond: &'static str| json!({"source": "tank-2", "condition": cond, "active": true, "priority": "medium"});
    let a = olga
        .post("/api/v1/alarms", raise("level.high"))
        .await
        .json()["id"]
        .as_u64()
        .unwrap();
    let b = olga.post("/api/v1/alarms", raise("level.low")).await.json()["id"]
        .as_u64()
        .unwrap();
    for id in [a, b] {
        assert_eq!(
            olga.post(&format!("/api/v1/alarms/{id}/ack"), json!({}))
                .await
                .status,
            200
        );
    }

    // Over the maximum (8 h by default) is refused and writes nothing.
    let head = server.head_seq();
    let long = olga
        .post(
            &format!("/api/v1/alarms/{a}/shelve"),
            json!({"mode": "timed", "minutes": 481, "reason": "too long"}),
        )
        .await;
    assert_eq!(long.status, 400);
    assert_eq!(long.error_code(), "shelve_too_long");
    let no_reason = olga
        .post(
            &format!("/api/v1/alarms/{a}/shelve"),
            json!({"mode": "timed", "minutes": 5, "reason": " "}),
        )
        .await;
    assert_eq!(no_reason.error_code(), "reason_required");
    assert_eq!(server.head_seq(), head);

    for id in [a, b] {
        let r = olga
            .post(
                &format!("/api/v1/alarms/{id}/shelve"),
                json!({"mode": "timed", "minutes": 10, "reason": "sensor recalibration"}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.json()["alarm"]["shelved"], true);
    }
    let shelved = olga.ok("/api/v1/alarms?shelved=true").await;
    assert_eq!(shelved["alarms"].as_array().unwrap().len(), 2);

    // By hand: back acknowledged (it was acked before; the state stays acked, no longer shelved).
    let un = olga
        .post(&format!("/api/v1/alarms/{b}/unshelve"), json!({}))
        .await;
    assert_eq!(un.status, 200, "{:?}", un.body);
    assert_eq!(un.json()["state"], "acked");
    assert_eq!(un.json()["alarm"]["shelved"], false);

    // By the timer: once the clock passes 10 minutes, alarm a comes back unacknowledged.
    let (mut ws, _) = alarm_socket(olga, server.head_seq()).await;
    clock.advance_us(9 * MINUTE);
    clock.advance_us(MINUTE + 1);
    let expired = ws.next_entry("alarm.expire").await;
    assert_eq!(expired["author"], "system");
    assert_eq!(expired["body"]["id"].as_u64().unwrap(), a);
    let detail = olga.ok(&format!("/api/v1/alarms/{a}")).await;
    assert_eq!(detail["state"], "unack");
    assert_eq!(detail["shelved"], false);
    assert_eq!(
        detail["journal"].as_array().unwrap().last().unwrap()["by"],
        "system"
    );
    // b, unshelved by hand, was not touched by the timer.
    assert_eq!(
        olga.ok(&format!("/api/v1/alarms/{b}")).await["state"],
        "acked"
    );
}

#[tokio::test]
async fn a_manual_unshelve_of_an_unacknowledged_alarm_acknowledges_it() {
    let server = TestServer::start().await;
    let ops = people(&server, &["olga"], &[]).await;
    let olga = &ops[0];
    let id = olga
        .post(
            "/api/v1/alarms",
            json!({"source": "fan-1", "condition": "vibration", "active": true}),
        )
        .await
        .json()["id"]
        .as_u64()
        .unwrap();
    let r = olga
        .post(
            &format!("/api/v1/alarms/{id}/shelve"),
            json!({"mode": "one_shot", "reason": "known"}),
        )
        .await;
    assert_eq!(r.json()["state"], "unack");
    let un = olga
        .post(&format!("/api/v1/alarms/{id}/unshelve"), json!({}))
        .await;
    assert_eq!(un.json()["state"], "acked");
    assert_eq!(un.json()["alarm"]["acked_by"], "user:olga");
}

#[tokio::test]
async fn a_restart_in_the_middle_of_a_shelve_keeps_the_timer() {
    let clock = Arc::new(ManualClock::new(T0));
    let server = TestServer::start_full(TempDir::new().unwrap(), clock.clone(), |_| {}).await;
    server.user("olga", Role::Operator, PW).await;
    let olga = Api::login(&server.client(), "olga", PW).await;
    let id = olga
        .post(
            "/api/v1/alarms",
            json!({"source": "boiler", "condition": "flame.loss", "active": true}),
        )
        .await
        .json()["id"]
        .as_u64()
        .unwrap();
    olga.post(&format!("/api/v1/alarms/{id}/ack"), json!({}))
        .await;
    let r = olga
        .post(
            &format!("/api/v1/alarms/{id}/shelve"),
            json!({"mode": "timed", "minutes": 30, "reason": "burner maintenance"}),
        )
        .await;
    assert_eq!(r.status, 200);
    clock.advance_us(10 * MINUTE);
    let dir = server.stop().await;

    let server = TestServer::start_full(dir, clock.clone(), |_| {}).await;
    let olga = Api::login(&server.client(), "olga", PW).await;
    assert_eq!(
        olga.ok(&format!("/api/v1/alarms/{id}")).await["shelved"],
        true
    );
    let (mut ws, _) = alarm_socket(&olga, server.head_seq()).await;
    clock.advance_us(20 * MINUTE + 1);
    let expired = ws.next_entry("alarm.expire").await;
    assert_eq!(expired["body"]["id"].as_u64().unwrap(), id);
    // Twenty minutes on, the access token has expired: sign in again to read.
    let olga = Api::login(&server.client(), "olga", PW).await;
    assert_eq!(
        olga.ok(&format!("/api/v1/alarms/{id}")).await["state"],
        "unack"
    );
}

#[tokio::test]
async fn two_operators_racing_to_ack_get_exactly_one_ack_entry_and_one_409() {
    let server = TestServer::start().await;
    let token = server.device("plc-1").await;
    let ops = people(&server, &["olga", "omar"], &[]).await;
    let id = device_raise(&server.client(), &token, pressure(true))
        .await
        .json()["id"]
        .as_u64()
        .unwrap();
    let path = format!("/api/v1/alarms/{id}/ack");
    let (r1, r2) = tokio::join!(
        ops[0].post(&path, json!({"comment": "mine"})),
        ops[1].post(&path, json!({"comment": "mine too"}))
    );
    let mut statuses = [r1.status.as_u16(), r2.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409]);
    let loser = if r1.status == 409 { &r1 } else { &r2 };
    assert_eq!(loser.error_code(), "already_acked");
    let journal = ops[0].ok(&format!("/api/v1/alarms/{id}")).await["journal"].clone();
    let acks = journal
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["kind"] == "alarm.ack")
        .count();
    assert_eq!(acks, 1);

    // "Ack visible": one commit, each id says how it went.
    let other = device_raise(
        &server.client(),
        &token,
        json!({"source": "pump-8", "condition": "pressure.high", "active": true}),
    )
    .await
    .json()["id"]
        .as_u64()
        .unwrap();
    let many = ops[1]
        .post(
            "/api/v1/alarms/ack",
            json!({"ids": [id, other], "comment": "shift check"}),
        )
        .await;
    assert_eq!(many.status, 200, "{:?}", many.body);
    assert_eq!(many.json()["acked"], 1);
    assert_eq!(many.json()["results"][0]["code"], "already_acked");
    assert!(many.json()["results"][1]["seq"].is_u64());
}

#[tokio::test]
async fn a_subscribed_socket_receives_the_raise_live_and_on_replay() {
    let server = TestServer::start().await;
    let token = server.device("plc-9").await;
    let ops = people(&server, &["vic"], &["vic"]).await;
    let (mut ws, _) = alarm_socket(&ops[0], server.head_seq()).await;
    let raised = device_raise(&server.client(), &token, pressure(true))
        .await
        .json();
    let live = ws.next_entry("alarm.raise").await;
    assert_eq!(live["seq"], raised["seq"]);
    assert_eq!(live["author"], "plc-9");
    assert_eq!(live["author_kind"], "device");
    assert_eq!(live["body"]["state"], "unack");
    assert_eq!(live["body"]["alarm"]["source"], "pump-7");

    // A socket resuming from before the raise gets it replayed.
    let (_ws, replayed) = alarm_socket(&ops[0], raised["seq"].as_u64().unwrap() - 1).await;
    let kinds: Vec<&str> = replayed
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["alarm.raise"]);
}

#[tokio::test]
async fn an_admin_takes_an_alarm_out_of_service_and_a_latched_alarm_needs_a_reset() {
    let server = TestServer::start().await;
    let ada = admin(&server, "ada").await;
    let raise = |active: bool| json!({"source": "press-4", "condition": "guard.open", "active": active, "latched": true});
    let id = ada.post("/api/v1/alarms", raise(true)).await.json()["id"]
        .as_u64()
        .unwrap();
    let oos = ada
        .post(
            &format!("/api/v1/alarms/{id}/out-of-service"),
            json!({"reason": "guard replaced"}),
        )
        .await;
    assert_eq!(oos.status, 200, "{:?}", oos.body);
    assert_eq!(
        ada.post(
            &format!("/api/v1/alarms/{id}/out-of-service"),
            json!({"reason": "again"})
        )
        .await
        .error_code(),
        "already_out_of_service"
    );
    assert_eq!(
        ada.post(&format!("/api/v1/alarms/{id}/return-to-service"), json!({}))
            .await
            .status,
        200
    );
    // Latched: the input clears but the alarm stays active until reset.
    let cleared = ada.post("/api/v1/alarms", raise(false)).await.json();
    assert_eq!(cleared["state"], "unack");
    let reset = ada
        .post(&format!("/api/v1/alarms/{id}/reset"), json!({}))
        .await;
    assert_eq!(reset.status, 200, "{:?}", reset.body);
    assert_eq!(reset.json()["state"], "rtn_unack");
    assert_eq!(
        ada.post(&format!("/api/v1/alarms/{id}/reset"), json!({}))
            .await
            .error_code(),
        "nothing_to_reset"
    );

    // A priority change and suppression by design are transitions of their own.
    let cond = |extra: Value| {
        let mut v = json!({"source": "press-4", "condition": "oil.low", "active": true});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let first = ada
        .post("/api/v1/alarms", cond(json!({"priority": "low"})))
        .await
        .json();
    let oil = first["id"].as_u64().unwrap();
    let up = ada
        .post("/api/v1/alarms", cond(json!({"priority": "high"})))
        .await
        .json();
    assert_eq!(
        (up["kind"].as_str(), up["id"].as_u64()),
        (Some("alarm.priority"), Some(oil))
    );
    let sup = ada
        .post("/api/v1/alarms", cond(json!({"suppressed": true})))
        .await
        .json();
    assert_eq!(sup["kind"], "alarm.suppress");
    let same = ada
        .post(
            "/api/v1/alarms",
            cond(json!({"suppressed": true, "priority": "high"})),
        )
        .await;
    assert_eq!(same.status, 200);
    let row = ada.ok(&format!("/api/v1/alarms/{oil}")).await;
    assert_eq!(
        (row["priority"].as_str(), row["suppressed"].as_bool()),
        (Some("high"), Some(true))
    );
}

/// A scripted day: a flood of 12 in 2 minutes, a chattering valve, a diagnostic alarm, a stale
/// tank alarm, two acks and a shelve; every KPI equals the figure worked out by hand.
#[tokio::test]
async fn the_kpis_of_a_scripted_history_equal_the_hand_computed_values() {
    const S: i64 = 1_000_000;
    let clock = Arc::new(ManualClock::new(T0));
    let server = TestServer::start_full(TempDir::new().unwrap(), clock.clone(), |c| {
        c.alarms.max_shelve_minutes = 48 * 60;
    })
    .await;
    server.user("olga", Role::Operator, PW).await;
    let token = server.device("plc-1").await;
    let c = server.client();
    let at = |secs: i64| clock.set_us(T0 + secs * S);
    let signal = |source: &str, condition: &str, active: bool, priority: &str| json!({"source": source, "condition": condition, "active": active, "priority": priority});
    let mut ids = Vec::new();
    // The flood: f01..f12 at 0, 10, …, 110 s, all low; cleared at 200 s.
    for k in 0..12 {
        at(k * 10);
        let r = device_raise(
            &c,
            &token,
            signal("line-1", &format!("f{:02}", k + 1), true, "low"),
        )
        .await;
        assert_eq!(r.status, 201);
        ids.push(r.json()["id"].as_u64().unwrap());
    }
    at(200);
    for k in 0..12 {
        device_raise(
            &c,
            &token,
            signal("line-1", &format!("f{:02}", k + 1), false, "low"),
        )
        .await;
    }
    // f01 acknowledged 300 s after its raise; f03 shelved until it returns to normal.
    at(300);
    let olga = Api::login(&c, "olga", PW).await;
    assert_eq!(
        olga.post(&format!("/api/v1/alarms/{}/ack", ids[0]), json!({}))
            .await
            .status,
        200
    );
    at(400);
    let shelve = olga
        .post(
            &format!("/api/v1/alarms/{}/shelve", ids[2]),
            json!({"mode": "one_shot", "reason": "flood"}),
        )
        .await;
    assert_eq!(shelve.status, 200, "{:?}", shelve.body);
    // The chattering valve: raised at 1200, 1220 and 1240 s, cleared between and at 1250 s.
    for (secs, active) in [
        (1200, true),
        (1210, false),
        (1220, true),
        (1230, false),
        (1240, true),
        (1250, false),
    ] {
        at(secs);
        device_raise(&c, &token, signal("valve-3", "position", active, "medium")).await;
    }
    // A diagnostic alarm is journaled, never annunciated.
    at(1800);
    device_raise(&c, &token, signal("meter-9", "drift", true, "diagnostic")).await;
    at(1900);
    device_raise(&c, &token, signal("meter-9", "drift", false, "diagnostic")).await;
    // The stale one: raised at 3000 s, acknowledged at 3600 s, never cleared.
    at(3000);
    let tank = device_raise(&c, &token, signal("tank-5", "level.high", true, "high"))
        .await
        .json()["id"]
        .as_u64()
        .unwrap();
    at(3600);
    let olga = Api::login(&c, "olga", PW).await;
    assert_eq!(
        olga.post(&format!("/api/v1/alarms/{tank}/ack"), json!({}))
            .await
            .status,
        200
    );

    let end = 25 * 3600;
    at(end);
    let olga = Api::login(&c, "olga", PW).await;
    let k = olga
        .ok(&format!(
            "/api/v1/alarms/kpis?since={T0}&until={}",
            T0 + end * S
        ))
        .await;
    // 12 + 3 + 1 annunciations; 150 periods of 10 minutes in 25 h.
    assert_eq!(k["annunciated"], 16, "{k}");
    assert_eq!(k["periods"], 150);
    let close = |v: &Value, want: f64| (v.as_f64().unwrap() - want).abs() < 1e-9;
    assert!(close(&k["per_10min_avg"], 16.0 / 150.0), "{k}");
    assert_eq!(k["per_10min_max"], 12);
    assert!(close(&k["periods_over_10_pct"], 100.0 / 150.0), "{k}");
    // In flood from the 11th (100 s) until the 2nd leaves the window (610 s): 510 s of 90,000.
    assert!(close(&k["flood_time_pct"], 510.0 * 100.0 / 90_000.0), "{k}");
    assert_eq!(k["bad_actors"][0]["source"], "valve-3");
    assert_eq!(k["bad_actors"][0]["count"], 3);
    assert!(close(&k["bad_actors"][0]["share_pct"], 3.0 * 100.0 / 16.0));
    assert_eq!(k["bad_actors"].as_array().unwrap().len(), 10);
    assert_eq!(k["bad_actors"][1]["condition"], "f01");
    assert!(close(&k["top10_share_pct"], 12.0 * 100.0 / 16.0), "{k}");
    assert_eq!(
        k["chattering"],
        json!([{"source": "valve-3", "condition": "position", "max_in_60s": 3}])
    );
    assert_eq!(k["stale"], 1);
    assert_eq!(
        k["priority_mix"],
        json!({"low": 12, "medium": 3, "high": 1})
    );
    assert!(close(&k["mean_time_to_ack_secs"], 450.0), "{k}");
    assert_eq!(k["standing"], 1);
    assert_eq!(k["shelved"], 1);
    assert_eq!(k["truncated"], false);

    // The instantaneous figures are Prometheus gauges too: f02-f12, valve-3 and meter-9 wait
    // for an acknowledgement after returning to normal.
    let ada = admin(&server, "ada").await;
    let metrics = ada.get("/metrics").await;
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    for line in [
        "plantwire_alarms_standing 1",
        "plantwire_alarms_unacknowledged 13",
        "plantwire_alarms_shelved 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }

    let bad = olga
        .get(&format!("/api/v1/alarms/kpis?since={T0}&until={T0}"))
        .await;
    assert_eq!(bad.error_code(), "invalid_range");
}

/// The disk-almost-full system alarm: with the threshold at 0 % any real disk is above it, so the
/// server raises `plantwire/disk.almost_full` as `system` through the same model.
#[tokio::test]
async fn a_system_alarm_is_raised_when_the_state_disk_is_above_the_threshold() {
    let server = TestServer::start_with(|c| c.alarms.disk_alarm_percent = 0).await;
    // The earlier warning at its own threshold (here 0 %: anything used), priority medium.
    let warned = TestServer::start_with(|c| c.alarms.disk_warn_percent = 0).await;
    let mut id = None;
    for _ in 0..100 {
        id = warned
            .state()
            .log()
            .read()
            .unwrap()
            .alarm_current("plantwire", "disk.filling")
            .unwrap();
        if id.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let rtx = warned.state().log().read().unwrap();
    let row = rtx
        .alarm(id.expect("disk.filling raised at start"))
        .unwrap()
        .unwrap();
    assert!(row.input_active);
    assert_eq!(row.priority, plantwire::store::Priority::Medium);
    assert_eq!(
        rtx.alarm_current("plantwire", "disk.almost_full").unwrap(),
        None
    );
    drop(rtx);
    let ops = people(&server, &["vic"], &["vic"]).await;
    let (mut ws, replayed) = alarm_socket(&ops[0], 0).await;
    let raise = match replayed.into_iter().find(|f| f["kind"] == "alarm.raise") {
        Some(f) => f,
        None => ws.next_entry("alarm.raise").await,
    };
    assert_eq!(raise["author"], "system");
    assert_eq!(raise["body"]["alarm"]["source"], "plantwire");
    assert_eq!(raise["body"]["alarm"]["condition"], "disk.almost_full");
    assert_eq!(raise["body"]["alarm"]["priority"], "high");
    let listed = ops[0].ok("/api/v1/alarms?source=plantwire").await;
    assert_eq!(listed["alarms"][0]["state"], "unack");

    // Below the threshold (the default test config says 100 %), nothing is raised.
    let quiet = TestServer::start().await;
    plantwire::alarms::system::check(
        quiet.state().log(),
        &quiet.state().config().alarms,
        &quiet.path(),
    )
    .await
    .unwrap();
    let rtx = quiet.state().log().read().unwrap();
    assert_eq!(
        rtx.alarm_current("plantwire", "disk.almost_full").unwrap(),
        None
    );
}

/// A comment can be required per priority, and commands go to the newest occurrence only.
#[tokio::test]
async fn a_required_comment_is_enforced_and_a_superseded_occurrence_takes_only_comments() {
    let server = TestServer::start_with(|c| {
        c.alarms.comment_required = vec![plantwire::store::Priority::High];
    })
    .await;
    let ops = people(&server, &["olga"], &[]).await;
    let olga = &ops[0];
    let id = olga.post("/api/v1/alarms", pressure(true)).await.json()["id"]
        .as_u64()
        .unwrap();
    let head = server.head_seq();
    for body in [json!({}), json!({"comment": "  "})] {
        let r = olga.post(&format!("/api/v1/alarms/{id}/ack"), body).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.error_code(), "comment_required");
    }
    let many = olga
        .post("/api/v1/alarms/ack", json!({"ids": [id]}))
        .await
        .json();
    assert_eq!(many["results"][0]["code"], "comment_required");
    assert_eq!(server.head_seq(), head);
    let ok = olga
        .post(
            &format!("/api/v1/alarms/{id}/ack"),
            json!({"comment": "seen"}),
        )
        .await;
    assert_eq!(ok.status, 200);

    olga.post("/api/v1/alarms", pressure(false)).await;
    let next = olga.post("/api/v1/alarms", pressure(true)).await.json()["id"]
        .as_u64()
        .unwrap();
    assert_ne!(next, id);
    let old = olga
        .post(
            &format!("/api/v1/alarms/{id}/shelve"),
            json!({"mode": "timed", "minutes": 5, "reason": "x"}),
        )
        .await;
    assert_eq!(old.status, 409);
    assert_eq!(old.error_code(), "superseded");
    let note = olga
        .post(
            &format!("/api/v1/alarms/{id}/comment"),
            json!({"text": "root cause: worn seal"}),
        )
        .await;
    assert_eq!(note.status, 200, "{:?}", note.body);
}
