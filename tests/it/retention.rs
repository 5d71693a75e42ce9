//! Retention purges payloads, never the chain: after a purge `audit verify` (the store walk and
//! an export's offline check) passes and reports the purged ranges, while a changed byte in a kept
//! entry is still caught; a held conversation is kept; the grace period restores; `--now` does
//! not keep; under replication nothing above HQ's acknowledged seq is purged.

use std::sync::Arc;

use plantwire::clock::ManualClock;
use plantwire::log::{Author, Problem, verify};
use plantwire::retention::{Keep, ScopeRow, ranges, stream_scope};
use plantwire::store::LogRecord;
use redb::{ReadableTable, TableDefinition};

use crate::chat_support::{Api, PW, people};
use crate::support::TestServer;

const T0: i64 = 1_800_000_000_000_000;
const DAY: i64 = 86_400_000_000;
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log_seq_record");

async fn start(clock: &Arc<ManualClock>) -> TestServer {
    TestServer::start_full(tempfile::tempdir().unwrap(), clock.clone(), |c| {
        c.retention.events = Keep::Days(1);
        c.retention.chat = Keep::Days(2);
        c.retention.pause_ms = 0;
    })
    .await
}

fn offline_verify(dir: &std::path::Path) -> plantwire::log::VerifyReport {
    let config = crate::support::test_config(dir);
    let (store, key, site) = plantwire::state::open_offline(&config).unwrap();
    verify(&store, &site, &key).unwrap()
}

/// The export of the whole log checked with only the public key.
async fn export_check(server: &TestServer) -> plantwire::audit::CheckReport {
    let state = server.state();
    let plan = plantwire::audit::prepare(state.log(), state.signer(), &Default::default())
        .await
        .unwrap();
    let mut out = Vec::new();
    plantwire::audit::Walk::new(state.log().clone(), plan)
        .write_all(&mut out)
        .unwrap();
    let key = plantwire::audit::SiteKey::new(state.log().site(), state.signer().public_key());
    plantwire::audit::check(&mut &out[..], &key).unwrap()
}

#[tokio::test]
async fn after_a_purge_verify_reports_the_purged_ranges_and_a_changed_kept_byte_is_still_caught() {
    let clock = Arc::new(ManualClock::new(T0));
    let server = start(&clock).await;
    let token = server.device("pump-7").await;
    let c = server.client();
    let mut old = Vec::new();
    for i in 0..5 {
        let r = c.event(&token, &format!("old reading {i}")).await;
        old.push(r.json()["seq"].as_u64().unwrap());
    }
    clock.advance_us(2 * DAY);
    let kept = c.event(&token, "new reading").await.json()["seq"]
        .as_u64()
        .unwrap();
    let retention = server.state().retention().clone();
    let report = retention.pass(false, &Author::System).await.unwrap();
    assert_eq!(report.purged, old, "the old events and only them");
    assert!(
        report.scanned < kept,
        "the scan stops at the young entries: {report:?}"
    );
    // Their payload is gone from the log (an entry read by seq is no longer there); the recent
    // one reads.
    let log = server.state().log().clone();
    let rtx = log.read().unwrap();
    assert!(log.entry(&rtx, old[0]).unwrap().is_none());
    assert!(log.entry(&rtx, kept).unwrap().is_some());
    drop(rtx);
    // Listings skip purged events; a purged event is no longer found by its seq.
    let api = people(&server, &["ana"], &[]).await;
    let listed = api[0].ok("/api/v1/events").await;
    let seqs: Vec<u64> = listed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![kept], "{listed}");
    let gone = api[0].get(&format!("/api/v1/events/{}", old[0])).await;
    assert_eq!(gone.status, 404);
    // A second pass finds nothing more.
    assert!(
        retention
            .pass(false, &Author::System)
            .await
            .unwrap()
            .purged
            .is_empty()
    );

    let live = log.verify().unwrap();
    assert!(live.ok(), "{:?}", live.problem);
    assert_eq!(live.purged, ranges(&old));
    let checked = export_check(&server).await;
    assert_eq!(checked.purged, ranges(&old));

    // The store to ourselves: our handles go first.
    drop((log, retention));
    let dir = server.stop().await;
    let report = offline_verify(dir.path());
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.purged, ranges(&old));
    // One byte of the kept event's sealed body changed: still caught.
    let db = redb::Database::open(dir.path().join(plantwire::bootstrap::STORE_FILE)).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(LOG).unwrap();
        let mut rec = LogRecord::decode(t.get(kept).unwrap().unwrap().value()).unwrap();
        rec.sealed.ciphertext[0] ^= 1;
        t.insert(kept, rec.encode().unwrap().as_slice()).unwrap();
    }
    txn.commit().unwrap();
    drop(db);
    let report = offline_verify(dir.path());
    assert!(
        matches!(report.problem, Some(Problem::Unreadable { seq, .. }) if seq == kept),
        "{:?}",
        report.problem
    );
}

#[tokio::test]
async fn a_held_conversation_is_not_purged_and_the_grace_period_restores() {
    let clock = Arc::new(ManualClock::new(T0));
    let server = start(&clock).await;
    let api = people(&server, &["ana", "ben"], &[]).await;
    let held = api[0].group("held", &["ben"]).await;
    let free = api[0].group("free", &["ben"]).await;
    let h = api[0].say(&held, "k1", "kept under hold").await;
    let f = api[0].say(&free, "k2", "goes after two days").await;
    let retention = server.state().retention().clone();
    let by = Author::Cli("auditor".into());
    let hold = ScopeRow {
        keep: None,
        hold: true,
        ..Default::default()
    };
    retention
        .set_scope(&stream_scope(&format!("conv/{held}")), Some(hold), &by)
        .await
        .unwrap();
    // Indexed for search before anything is due (the indexer follows within a second).
    let found = |v: serde_json::Value| -> Vec<u64> {
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["seq"].as_u64().unwrap())
            .collect()
    };
    assert!(found(api[1].ok("/api/v1/search?q=days").await).contains(&f));
    clock.advance_us(3 * DAY);
    let report = retention.pass(false, &by).await.unwrap();
    assert!(report.purged.contains(&f), "{report:?}");
    assert!(!report.purged.contains(&h), "the held message stays");
    let log = server.state().log().clone();
    assert!(log.entry(&log.read().unwrap(), h).unwrap().is_some());
    // History follows the payload: the purged message is gone from its conversation, the held
    // one is still read.
    let seqs = |v: serde_json::Value| -> Vec<u64> {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect()
    };
    // (Three days on, the access tokens have expired: sign in again.)
    let client = server.client();
    let ben = || Api::login(&client, "ben", PW);
    assert!(!seqs(ben().await.history(&free, "").await).contains(&f));
    assert!(seqs(ben().await.history(&held, "").await).contains(&h));
    // Search no longer finds the purged message (its body does not open), the held one still.
    assert!(!found(ben().await.ok("/api/v1/search?q=days").await).contains(&f));
    let held_hits = ben().await.ok("/api/v1/search?q=hold").await;
    assert!(found(held_hits.clone()).contains(&h), "{held_hits}");

    // Within the grace period (7 days) the purged entries come back, and read again.
    let restored = retention.restore(1, u64::MAX, &by).await.unwrap();
    assert_eq!(restored, report.purged);
    let e = log.entry(&log.read().unwrap(), f).unwrap().unwrap();
    assert!(String::from_utf8_lossy(&e.body).contains("goes after two days"));
    let back = ben().await.history(&free, "").await;
    assert!(
        seqs(back.clone()).contains(&f),
        "restored into history: {back}"
    );
    let again = ben().await.ok("/api/v1/search?q=days").await;
    assert!(found(again.clone()).contains(&f), "found again: {again}");
    assert!(log.verify().unwrap().purged.is_empty());

    // Purged again and the grace period over: the next pass removes them for good.
    let again = retention.pass(false, &by).await.unwrap();
    assert_eq!(again.purged, report.purged);
    clock.advance_us(8 * DAY);
    let later = retention.pass(false, &by).await.unwrap();
    assert_eq!(later.forgotten, again.purged.len() as u64);
    assert!(
        retention
            .restore(1, u64::MAX, &by)
            .await
            .unwrap()
            .is_empty()
    );
    let v = log.verify().unwrap();
    assert!(v.ok(), "{:?}", v.problem);
    assert_eq!(v.purged, ranges(&again.purged));
    assert!(!seqs(ben().await.history(&free, "").await).contains(&f));
}

#[tokio::test]
async fn purge_now_keeps_nothing_to_restore_and_a_held_site_is_not_scanned() {
    let clock = Arc::new(ManualClock::new(T0));
    let server = start(&clock).await;
    let token = server.device("pump-7").await;
    let seq = server.client().event(&token, "x").await.json()["seq"]
        .as_u64()
        .unwrap();
    clock.advance_us(2 * DAY);
    let retention = server.state().retention().clone();
    // Nothing to scan while the site is held.
    let hold = ScopeRow {
        keep: None,
        hold: true,
        ..Default::default()
    };
    retention
        .set_scope(
            plantwire::retention::SITE_SCOPE,
            Some(hold),
            &Author::System,
        )
        .await
        .unwrap();
    let r = retention.pass(true, &Author::System).await.unwrap();
    assert_eq!((r.scanned, r.purged.len()), (0, 0));
    retention
        .set_scope(plantwire::retention::SITE_SCOPE, None, &Author::System)
        .await
        .unwrap();
    let r = retention.pass(true, &Author::System).await.unwrap();
    assert_eq!(r.purged, vec![seq]);
    assert!(retention.restorable().unwrap().is_empty());
    assert!(
        retention
            .restore(1, u64::MAX, &Author::System)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The CLI through the running server's control socket: holds and overrides are stored and
/// listed, a bad value is refused, a pass reports what it did.
#[test]
fn the_retention_commands_work_through_the_running_server() {
    use crate::process::{Running, command, default_server_section, write_config};
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "{}[retention]\nchat = \"30 days\"\n",
            default_server_section()
        ),
    );
    let c = cfg.to_str().unwrap();
    let _server = Running::start(&cfg);
    let run = |args: &[&str]| {
        let mut all = vec!["retention"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", c]);
        let o = command(&all).current_dir(dir.path()).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let (code, out) = run(&["hold", "--conversation", "c1"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("through the running server"), "{out}");
    let (code, out) = run(&["set", "--stream", "events/pump-7", "--keep", "90 days"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(&["set", "--site", "--keep", "soon"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("not `inherit`, `forever` or `N days`"),
        "{out}"
    );
    let (code, out) = run(&["status"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("chat 30 days"), "{out}");
    assert!(out.contains("stream:conv/c1: keep -, hold true"), "{out}");
    assert!(
        out.contains("stream:events/pump-7: keep 90 days, hold false"),
        "{out}"
    );
    let (code, out) = run(&["purge"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("purged 0 entries"), "{out}");
    let (code, out) = run(&["release", "--conversation", "c1"]);
    assert_eq!(code, Some(0), "{out}");
    let (_, out) = run(&["status"]);
    assert!(!out.contains("conv/c1"), "{out}");
}

/// The admin API: overrides and holds are set per scope and listed; bad input is a 400 with a
/// stable code and changes nothing; others than admins are refused.
#[tokio::test]
async fn admins_set_overrides_and_holds_over_the_api() {
    use hyper::Method;
    use serde_json::json;
    let server = TestServer::start().await;
    let pw = "correct horse battery";
    server.user("ada", plantwire::store::Role::Admin, pw).await;
    server
        .user("oli", plantwire::store::Role::Operator, pw)
        .await;
    let c = server.client();
    let token = |name: &'static str| {
        let c = c.clone();
        async move {
            let r = c
                .post_json(
                    "/api/v1/auth/login",
                    None,
                    &json!({"username": name, "password": pw}),
                )
                .await;
            r.json()["access_token"].as_str().unwrap().to_string()
        }
    };
    let admin = token("ada").await;
    let call = |method: Method, body: Option<serde_json::Value>, who: String| {
        let c = c.clone();
        async move {
            let path = if method == Method::GET {
                "/api/v1/admin/retention"
            } else {
                "/api/v1/admin/retention/scope"
            };
            let b = body.map_or_else(Vec::new, |b| b.to_string().into_bytes());
            c.send(
                c.request(method, path)
                    .header("authorization", format!("Bearer {who}"))
                    .header("content-type", "application/json")
                    .body(b.into())
                    .unwrap(),
            )
            .await
        }
    };
    let r = call(
        Method::PUT,
        Some(json!({"conversation": "c1", "hold": true})),
        admin.clone(),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = call(
        Method::PUT,
        Some(json!({"stream": "events/pump-7", "keep": "90 days"})),
        admin.clone(),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let listed = call(Method::GET, None, admin.clone()).await.json();
    assert_eq!(
        listed["scopes"],
        json!([
            {"scope": "stream:conv/c1", "keep": null, "hold": true, "classes": {}},
            {"scope": "stream:events/pump-7", "keep": "90 days", "hold": false, "classes": {}},
        ])
    );
    assert_eq!(listed["config"]["admin"], "forever");
    // One class's keep for the site; the rest of the site's row stays.
    let r = call(
        Method::PUT,
        Some(json!({"site": true, "class": "chat", "keep": "30 days"})),
        admin.clone(),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.json()["scopes"][0],
        json!({"scope": "site", "keep": null, "hold": false, "classes": {"chat": "30 days"}})
    );
    let listed = call(Method::GET, None, admin.clone()).await.json();
    for (body, code) in [
        (json!({"site": true, "keep": "soon"}), "invalid_keep"),
        (
            json!({"site": true, "stream": "x", "hold": true}),
            "invalid_scope",
        ),
        (json!({"hold": true}), "invalid_scope"),
        (
            json!({"site": true, "class": "gossip", "keep": "1 days"}),
            "invalid_class",
        ),
        (
            json!({"stream": "x", "class": "chat", "keep": "1 days"}),
            "invalid_scope",
        ),
        (
            json!({"site": true, "class": "chat", "keep": "1 days", "hold": true}),
            "invalid_scope",
        ),
    ] {
        let r = call(Method::PUT, Some(body), admin.clone()).await;
        assert_eq!((r.status.as_u16(), r.error_code().as_str()), (400, code));
    }
    assert_eq!(call(Method::GET, None, admin.clone()).await.json(), listed);
    let oli = token("oli").await;
    assert_eq!(call(Method::GET, None, oli.clone()).await.status, 403);
    let r = call(Method::PUT, Some(json!({"site": true, "hold": true})), oli).await;
    assert_eq!(r.status, 403);
    // The overrides are logged as admin entries.
    let log = server.state().log();
    let rtx = log.read().unwrap();
    let seqs = rtx
        .stream_seqs(plantwire::retention::STREAM, 0, log.head(&rtx).unwrap(), 10)
        .unwrap();
    assert_eq!(seqs.len(), 3);
}

/// The views that copy content follow a purge: an alarm occurrence's message and an incident's
/// title are blank while their entries are purged, come back with a restore, and stay blank
/// once the grace period is over.
#[tokio::test]
async fn an_alarm_message_and_an_incident_title_leave_their_views_with_the_payload() {
    let clock = Arc::new(ManualClock::new(T0));
    let server = TestServer::start_full(tempfile::tempdir().unwrap(), clock.clone(), |c| {
        c.retention.alarms = Keep::Days(1);
        c.retention.incidents = Keep::Days(1);
        c.retention.pause_ms = 0;
    })
    .await;
    let token = server.device("pump-7").await;
    server.user("boss", plantwire::store::Role::Admin, PW).await;
    let boss = Api::login(&server.client(), "boss", PW).await;
    let template = serde_json::json!({"id": "trip", "name": "Trip", "title": "{source} tripped",
        "questions": [{"id": "notes", "label": "Notes", "type": "text"}]});
    let r = boss.post("/api/v1/templates", template).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let raised = server
        .client()
        .with_bearer(
            hyper::Method::POST,
            "/api/v1/alarms",
            &token,
            Some(
                serde_json::json!({"source": "pump-7", "condition": "seal.leak",
                "active": true, "priority": "high", "message": "seal leaking at bay 4"}),
            ),
        )
        .await;
    assert_eq!(raised.status, 201, "{:?}", raised.body);
    let alarm = raised.json()["id"].as_u64().unwrap();
    let r = boss
        .post(
            "/api/v1/incidents",
            serde_json::json!({"template": "trip", "alarm": alarm}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let incident = r.json()["id"].as_str().unwrap().to_string();
    let view = |boss: Api| {
        let incident = incident.clone();
        async move {
            let a = boss.ok(&format!("/api/v1/alarms/{alarm}")).await;
            let i = boss.ok(&format!("/api/v1/incidents/{incident}")).await;
            (a.to_string(), i.to_string())
        }
    };
    let (a, i) = view(boss).await;
    assert!(a.contains("seal leaking at bay 4"), "{a}");
    assert!(i.contains("pump-7 tripped"), "{i}");

    clock.advance_us(2 * DAY);
    let retention = server.state().retention().clone();
    let by = Author::System;
    let report = retention.pass(false, &by).await.unwrap();
    assert!(report.purged.contains(&alarm), "{report:?}");
    let client = server.client();
    let again = || Api::login(&client, "boss", PW);
    let (a, i) = view(again().await).await;
    assert!(
        !a.contains("seal leaking"),
        "the message left the alarm view: {a}"
    );
    assert!(
        !i.contains("pump-7 tripped"),
        "the title left the incident view: {i}"
    );

    retention.restore(1, u64::MAX, &by).await.unwrap();
    let (a, i) = view(again().await).await;
    assert!(a.contains("seal leaking at bay 4"), "restored: {a}");
    assert!(i.contains("pump-7 tripped"), "restored: {i}");

    retention.pass(true, &by).await.unwrap();
    clock.advance_us(8 * DAY);
    retention.pass(false, &by).await.unwrap();
    assert!(
        retention
            .restore(1, u64::MAX, &by)
            .await
            .unwrap()
            .is_empty()
    );
    let (a, i) = view(again().await).await;
    assert!(!a.contains("seal leaking"), "{a}");
    assert!(!i.contains("pump-7 tripped"), "{i}");
}
