//! HQ's grants over HTTP, over real TLS: an admin grants and takes back a site with `PUT` and
//! `DELETE /api/v1/sites/{site}/grants/{user}` (the same `site.granted|ungranted` entries as the
//! CLI), the user sees the site at once, an open `alarms` socket and an ntfy stream follow each
//! change without reconnecting; auditors, operators and bad input are refused with nothing written.

use hyper::Method;
use serde_json::{Value, json};

use crate::alarms::alarm_socket;
use crate::alarms_ntfy::{Stream, get_stream};
use crate::chat_support::{Api, PW, Ws};
use crate::hq_tenancy::{edge, start_hq};
use crate::support::TestServer;
use plantwire::log::Author;
use plantwire::store::Role;

/// How many entries of `kind` HQ's log holds.
fn entries_of(hq: &TestServer, kind: &str) -> usize {
    let log = hq.state().log();
    let rtx = log.read().unwrap();
    (1..=log.head(&rtx).unwrap())
        .filter_map(|s| log.entry(&rtx, s).unwrap())
        .filter(|e| e.kind == kind)
        .count()
}

/// HQ raises an alarm about `site` (source `site/<site>`) with condition `cond`, as its own
/// system checks do.
async fn site_alarm(hq: &TestServer, site: &str, cond: &str) {
    plantwire::alarms::raise(
        hq.state().log(),
        &Author::System,
        serde_json::from_value(json!({
            "source": format!("site/{site}"),
            "condition": cond,
            "active": true,
            "priority": "high",
            "message": format!("{cond} at {site}"),
        }))
        .unwrap(),
    )
    .await
    .unwrap();
}

/// The lines of ntfy stream `s` up to the message of alarm source `marker` (raised by
/// `frames_through` just before).
async fn lines_through(s: &mut Stream, marker: &str) -> String {
    let mut out = String::new();
    loop {
        let line = s.until("\n").await;
        out.push_str(&line);
        out.push('\n');
        if line.contains(marker) {
            return out;
        }
    }
}

/// The live frames of `ws` up to the raise of the everyone-visible alarm `marker`, raised by
/// `boss` after whatever the test raised before: a socket that got it got everything before it.
async fn frames_through(ws: &mut Ws, boss: &Api, marker: &str) -> String {
    let raised = boss
        .post(
            "/api/v1/alarms",
            json!({"source": marker, "condition": "door.open", "active": true,
                   "priority": "low", "message": "marker"}),
        )
        .await;
    assert_eq!(raised.status, 201, "{:?}", raised.body);
    let mut out = Vec::new();
    loop {
        let f = ws.next().await;
        let last = f["type"] == "entry" && f.to_string().contains(marker);
        out.push(f);
        if last {
            return Value::from(out).to_string();
        }
    }
}

#[tokio::test]
async fn an_admin_grants_and_takes_back_a_site_over_http_and_open_sockets_follow() {
    let hq = start_hq().await;
    let alpha = edge(&hq, "alpha", "grants-alpha-mark").await;
    hq.user("alice", Role::Viewer, PW).await;
    hq.user("oscar", Role::Operator, PW).await;
    hq.user("audrey", Role::Auditor, PW).await;
    hq.user("boss", Role::Admin, PW).await;
    let c = hq.client();
    let (alice, oscar, audrey, boss) = (
        Api::login(&c, "alice", PW).await,
        Api::login(&c, "oscar", PW).await,
        Api::login(&c, "audrey", PW).await,
        Api::login(&c, "boss", PW).await,
    );
    let since = hq.head_seq();
    let (mut alice_ws, _) = alarm_socket(&alice, since).await;
    let (status, mut alice_ntfy) = get_stream(&c, "/ntfy/alarms/json", Some(&alice.token)).await;
    assert_eq!(status, 200);

    // Before: alice sees no site, and HQ's alarm about alpha does not reach her socket.
    assert_eq!(alice.get("/api/v1/sites").await.json()["sites"], json!([]));
    site_alarm(&hq, "alpha", "cond.before").await;
    let seen = frames_through(&mut alice_ws, &boss, "marker-1").await;
    assert!(!seen.contains("cond.before"), "{seen}");
    let lines = lines_through(&mut alice_ntfy, "marker-1").await;
    assert!(!lines.contains("cond.before"), "{lines}");

    // The admin grants: one `site.granted` entry, alpha visible at once, and the open socket
    // gets the next alarm about alpha.
    let put = boss
        .call(
            Method::PUT,
            "/api/v1/sites/alpha/grants/Alice",
            Some(json!({ "role": "viewer" })),
        )
        .await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    assert_eq!(put.json()["user"], "alice");
    assert_eq!(put.json()["role"], "viewer");
    assert_eq!(put.json()["granted_by"], "user:boss");
    assert_eq!(entries_of(&hq, "site.granted"), 1);
    let sites = alice.get("/api/v1/sites").await.json();
    assert_eq!(sites["sites"][0]["site"], "alpha", "{sites}");
    site_alarm(&hq, "alpha", "cond.granted").await;
    let seen = frames_through(&mut alice_ws, &boss, "marker-2").await;
    assert!(seen.contains("cond.granted"), "{seen}");
    let lines = lines_through(&mut alice_ntfy, "marker-2").await;
    assert!(lines.contains("cond.granted"), "{lines}");

    // Admins and auditors read the grants; nobody else does.
    for api in [&boss, &audrey] {
        let list = api.get("/api/v1/sites/alpha/grants").await;
        assert_eq!(list.status, 200, "{:?}", list.body);
        let v = list.json();
        assert_eq!(v["site"], "alpha");
        assert_eq!(v["capped"], false);
        assert_eq!(v["grants"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v["grants"][0]["user"], "alice");
        assert_eq!(v["grants"][0]["role"], "viewer");
    }
    let own = alice.get("/api/v1/sites/alpha/grants").await;
    assert_eq!(own.status, 403, "{:?}", own.body);
    assert_eq!(own.json()["code"], "forbidden");
    let not_granted = oscar.get("/api/v1/sites/alpha/grants").await;
    assert_eq!(not_granted.status, 404);
    assert_eq!(not_granted.json()["code"], "unknown_site");
    let missing = boss.get("/api/v1/sites/charlie/grants").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["code"], "unknown_site");

    // Refused, with nothing written: the auditor, an operator (granted or not), a granted
    // viewer, bad input.
    let before = (
        entries_of(&hq, "site.granted"),
        entries_of(&hq, "site.ungranted"),
        boss.get("/api/v1/sites/alpha/grants").await.json(),
    );
    let grant = |role: &str| Some(json!({ "role": role }));
    let refused = [
        (
            &audrey,
            Method::PUT,
            "alpha/grants/oscar",
            grant("viewer"),
            403,
            "read_only_role",
        ),
        (
            &audrey,
            Method::DELETE,
            "alpha/grants/alice",
            None,
            403,
            "read_only_role",
        ),
        (
            &oscar,
            Method::PUT,
            "alpha/grants/oscar",
            grant("admin"),
            404,
            "unknown_site",
        ),
        (
            &alice,
            Method::PUT,
            "alpha/grants/oscar",
            grant("viewer"),
            403,
            "forbidden",
        ),
        (
            &alice,
            Method::DELETE,
            "alpha/grants/alice",
            None,
            403,
            "forbidden",
        ),
        (
            &boss,
            Method::PUT,
            "alpha/grants/oscar",
            grant("superuser"),
            400,
            "invalid_json",
        ),
        (
            &boss,
            Method::PUT,
            "alpha/grants/oscar",
            Some(json!({})),
            400,
            "invalid_json",
        ),
        (
            &boss,
            Method::PUT,
            "charlie/grants/oscar",
            grant("viewer"),
            404,
            "unknown_site",
        ),
        (
            &boss,
            Method::PUT,
            "..%2Fx/grants/oscar",
            grant("viewer"),
            404,
            "unknown_site",
        ),
        (
            &boss,
            Method::PUT,
            "alpha/grants/nobody",
            grant("viewer"),
            404,
            "no_such_user",
        ),
        (
            &boss,
            Method::DELETE,
            "alpha/grants/oscar",
            None,
            404,
            "no_grant",
        ),
    ];
    for (api, method, path, body, status, code) in refused {
        let path = format!("/api/v1/sites/{path}");
        let res = api.call(method.clone(), &path, body).await;
        assert_eq!(res.status, status, "{method} {path}: {:?}", res.body);
        assert_eq!(res.json()["code"], code, "{method} {path}");
    }
    let after = (
        entries_of(&hq, "site.granted"),
        entries_of(&hq, "site.ungranted"),
        boss.get("/api/v1/sites/alpha/grants").await.json(),
    );
    assert_eq!(before, after);

    // A role change is a new grant entry.
    let up = boss
        .call(
            Method::PUT,
            "/api/v1/sites/alpha/grants/alice",
            grant("admin"),
        )
        .await;
    assert_eq!(up.status, 200, "{:?}", up.body);
    assert_eq!(up.json()["role"], "admin");
    assert_eq!(entries_of(&hq, "site.granted"), 2);

    // Taken back: one `site.ungranted` entry, alpha gone at once, and the open socket no longer
    // gets alarms about alpha.
    let del = boss
        .call(Method::DELETE, "/api/v1/sites/alpha/grants/alice", None)
        .await;
    assert_eq!(del.status, 204, "{:?}", del.body);
    assert_eq!(entries_of(&hq, "site.ungranted"), 1);
    assert_eq!(alice.get("/api/v1/sites").await.json()["sites"], json!([]));
    assert_eq!(alice.get("/api/v1/sites/alpha/entries").await.status, 404);
    let list = boss.get("/api/v1/sites/alpha/grants").await.json();
    assert_eq!(list["grants"], json!([]));
    site_alarm(&hq, "alpha", "cond.ungranted").await;
    let seen = frames_through(&mut alice_ws, &boss, "marker-3").await;
    assert!(!seen.contains("cond.ungranted"), "{seen}");
    let lines = lines_through(&mut alice_ntfy, "marker-3").await;
    assert!(!lines.contains("cond.ungranted"), "{lines}");

    // Granted again: the same socket gets it again.
    let put = boss
        .call(
            Method::PUT,
            "/api/v1/sites/alpha/grants/alice",
            grant("operator"),
        )
        .await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    site_alarm(&hq, "alpha", "cond.regranted").await;
    let seen = frames_through(&mut alice_ws, &boss, "marker-4").await;
    assert!(seen.contains("cond.regranted"), "{seen}");
    let lines = lines_through(&mut alice_ntfy, "marker-4").await;
    assert!(lines.contains("cond.regranted"), "{lines}");

    alpha.stop().await;
    hq.stop().await;
}

#[tokio::test]
async fn an_edge_answers_the_grant_routes_as_every_hq_only_route() {
    let server = TestServer::start().await;
    server.user("boss", Role::Admin, PW).await;
    server.user("alice", Role::Viewer, PW).await;
    let boss = Api::login(&server.client(), "boss", PW).await;
    let list = boss.get("/api/v1/sites/alpha/grants").await;
    let sites = boss.get("/api/v1/sites").await;
    assert_eq!(list.status, 404);
    assert_eq!(list.json()["code"], sites.json()["code"]);
    let put = boss
        .call(
            Method::PUT,
            "/api/v1/sites/alpha/grants/alice",
            Some(json!({ "role": "viewer" })),
        )
        .await;
    assert_eq!(put.status, 404);
    assert_eq!(put.json()["code"], sites.json()["code"]);
    let del = boss
        .call(Method::DELETE, "/api/v1/sites/alpha/grants/alice", None)
        .await;
    assert_eq!(del.status, 404);
    server.stop().await;
}
