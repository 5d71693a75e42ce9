//! Account administration and security events: rejecting registrations, the pending count,
//! listing and ending sessions, the strength estimate, the first admin's password file, and
//! failed sign-ins in the real binary's log and in the admin's security-event list.

use std::time::Duration;

use http_body_util::Full;
use hyper::Method;
use plantwire::store::Role;
use serde_json::{Value, json};

use crate::process::{Running, command, default_server_section, write_config};
use crate::support::{Client, Resp, TestServer};

const PW: &str = "correct horse battery";

async fn sign_in(c: &Client, user: &str, pw: &str) -> (String, String) {
    let res = c
        .post_json(
            "/api/v1/auth/login",
            None,
            &json!({"username": user, "password": pw}),
        )
        .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    let v = res.json();
    let access = v["access_token"].as_str().unwrap().to_string();
    let me = c
        .with_bearer(Method::GET, "/api/v1/auth/sessions", &access, None)
        .await;
    let sid = me.json()["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    (access, sid)
}

async fn register(c: &Client, user: &str, pw: &str) -> Resp {
    c.post_json(
        "/api/v1/auth/register",
        None,
        &json!({"username": user, "display_name": user, "password": pw}),
    )
    .await
}

#[tokio::test]
async fn pending_registrations_are_counted_and_rejected() {
    let server = TestServer::start().await; // registration: approval
    server.user("boss", Role::Admin, PW).await;
    server.user("olga", Role::Operator, PW).await;
    let c = server.client();
    for u in ["gus", "hal"] {
        assert_eq!(register(&c, u, "compressor room four").await.status, 202);
    }
    let (admin, _) = sign_in(&c, "boss", PW).await;
    let summary = c
        .with_bearer(Method::GET, "/api/v1/admin/summary", &admin, None)
        .await;
    assert_eq!(summary.status, 200);
    assert_eq!(summary.json()["pending_registrations"], 2);

    // Only admins reject, only pending accounts, and an unknown name is a 404.
    let (operator, _) = sign_in(&c, "olga", PW).await;
    let path = "/api/v1/admin/users/gus/reject";
    let res = c.with_bearer(Method::POST, path, &operator, None).await;
    assert_eq!(res.status, 403);
    let res = c
        .with_bearer(
            Method::POST,
            "/api/v1/admin/users/olga/reject",
            &admin,
            None,
        )
        .await;
    assert_eq!(
        (res.status.as_u16(), res.error_code().as_str()),
        (409, "not_pending")
    );
    let res = c
        .with_bearer(
            Method::POST,
            "/api/v1/admin/users/nobody/reject",
            &admin,
            None,
        )
        .await;
    assert_eq!(
        (res.status.as_u16(), res.error_code().as_str()),
        (404, "no_such_user")
    );

    let before = server.head_seq();
    assert_eq!(
        c.with_bearer(Method::POST, path, &admin, None).await.status,
        204
    );
    assert_eq!(server.head_seq(), before + 1, "one user.rejected entry");
    let pending = c
        .with_bearer(
            Method::GET,
            "/api/v1/admin/users?status=pending",
            &admin,
            None,
        )
        .await;
    let names: Vec<String> = pending.json()["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["hal"]);
    let summary = c
        .with_bearer(Method::GET, "/api/v1/admin/summary", &admin, None)
        .await;
    assert_eq!(summary.json()["pending_registrations"], 1);
    // The row is gone: the name is free again, and a second reject is a 404.
    let res = c.with_bearer(Method::POST, path, &admin, None).await;
    assert_eq!(res.status, 404);
    assert_eq!(
        register(&c, "gus", "compressor room four").await.status,
        202
    );
    server.stop().await;
}

/// Each session shows what the client is, where it was last used from and when: a sign-in with
/// a phone's User-Agent, then a refresh that moves the last use forward.
#[tokio::test]
async fn sessions_show_device_address_and_last_use() {
    let clock = std::sync::Arc::new(plantwire::clock::ManualClock::new(1_800_000_000_000_000));
    let server =
        TestServer::start_full(tempfile::TempDir::new().unwrap(), clock.clone(), |_| {}).await;
    server.user("bob", Role::Operator, PW).await;
    let c = server.client();
    let phone_agent = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36";
    let req = c
        .request(Method::POST, "/api/v1/auth/login")
        .header("content-type", "application/json")
        .header("user-agent", phone_agent)
        .body(Full::from(
            json!({"username": "bob", "password": PW}).to_string(),
        ))
        .unwrap();
    let res = c.send(req).await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    let tokens = res.json();
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let list = c
        .with_bearer(Method::GET, "/api/v1/auth/sessions", &access, None)
        .await
        .json();
    let s = &list["sessions"][0];
    assert_eq!(s["device"], "Chrome on Android", "{s}");
    assert_eq!(s["address"], "127.0.0.1");
    let first_use = s["last_used_us"].as_i64().unwrap();
    assert_eq!(first_use, s["created_at_us"].as_i64().unwrap());

    clock.advance_us(60_000_000);
    let res = c
        .post_json(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": tokens["refresh_token"]}),
        )
        .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    let access = res.json()["access_token"].as_str().unwrap().to_string();
    let list = c
        .with_bearer(Method::GET, "/api/v1/auth/sessions", &access, None)
        .await
        .json();
    let s = &list["sessions"][0];
    assert_eq!(s["last_used_us"].as_i64().unwrap(), first_use + 60_000_000);
    assert_eq!(
        s["device"], "Chrome on Android",
        "a refresh without an agent keeps it"
    );
    server.stop().await;
}

#[tokio::test]
async fn sessions_are_listed_and_one_can_be_ended() {
    let server = TestServer::start().await;
    server.user("boss", Role::Admin, PW).await;
    server.user("bob", Role::Operator, PW).await;
    let c = server.client();
    let (admin, _) = sign_in(&c, "boss", PW).await;
    let (phone, phone_sid) = sign_in(&c, "bob", PW).await;
    let (desk, desk_sid) = sign_in(&c, "bob", PW).await;

    let own = c
        .with_bearer(Method::GET, "/api/v1/auth/sessions", &desk, None)
        .await;
    let list = own.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["id"], desk_sid.as_str(), "newest first");
    assert_eq!(list[0]["current"], true);
    assert!(list[0]["created_at_us"].as_i64().unwrap() > 0);
    assert!(list[0]["expires_at_us"].as_i64() > list[0]["created_at_us"].as_i64());

    let path = "/api/v1/admin/users/bob/sessions";
    assert_eq!(
        c.with_bearer(Method::GET, path, &phone, None).await.status,
        403
    );
    let res = c.with_bearer(Method::GET, path, &admin, None).await;
    assert_eq!(res.json()["sessions"].as_array().unwrap().len(), 2);
    let res = c
        .with_bearer(
            Method::GET,
            "/api/v1/admin/users/nobody/sessions",
            &admin,
            None,
        )
        .await;
    assert_eq!(res.status, 404);

    // The admin ends the phone's session: its token stops at once, the desk goes on.
    let end = format!("{path}/{phone_sid}");
    assert_eq!(
        c.with_bearer(Method::DELETE, &end, &admin, None)
            .await
            .status,
        204
    );
    let me = c
        .with_bearer(Method::GET, "/api/v1/auth/me", &phone, None)
        .await;
    assert_eq!(me.status, 401);
    let me = c
        .with_bearer(Method::GET, "/api/v1/auth/me", &desk, None)
        .await;
    assert_eq!(me.status, 200);
    let res = c.with_bearer(Method::DELETE, &end, &admin, None).await;
    assert_eq!(
        (res.status.as_u16(), res.error_code().as_str()),
        (404, "no_such_session")
    );
    // Another user's session id is not found under this name.
    let wrong = format!("/api/v1/admin/users/boss/sessions/{desk_sid}");
    assert_eq!(
        c.with_bearer(Method::DELETE, &wrong, &admin, None)
            .await
            .status,
        404
    );

    // A user ends one of their own sessions; nobody else's.
    let (tablet, tablet_sid) = sign_in(&c, "bob", PW).await;
    let own_end = format!("/api/v1/auth/sessions/{tablet_sid}");
    let res = c.with_bearer(Method::DELETE, &own_end, &admin, None).await;
    assert_eq!(res.status, 404, "boss cannot end bob's session as his own");
    assert_eq!(
        c.with_bearer(Method::DELETE, &own_end, &desk, None)
            .await
            .status,
        204
    );
    assert_eq!(
        c.with_bearer(Method::GET, "/api/v1/auth/me", &tablet, None)
            .await
            .status,
        401
    );
    let own = c
        .with_bearer(Method::GET, "/api/v1/auth/sessions", &desk, None)
        .await;
    assert_eq!(own.json()["sessions"].as_array().unwrap().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_guessable_password_is_refused_by_the_strength_estimate() {
    let server = TestServer::start().await;
    let c = server.client();
    let before = server.head_seq();
    for weak in ["password1234", "qwerty123456", "iloveyou2024"] {
        let res = register(&c, "bobby", weak).await;
        assert_eq!(
            (res.status.as_u16(), res.error_code().as_str()),
            (400, "weak_password"),
            "{weak}"
        );
    }
    assert_eq!(server.head_seq(), before, "nothing written");
    assert_eq!(
        register(&c, "bobby", "compressor room four").await.status,
        202
    );
    server.stop().await;
}

fn count(text: &str, all: &[&str]) -> usize {
    text.lines()
        .filter(|l| all.iter().all(|a| l.contains(a)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_reach_the_log_as_fields_and_admins_can_list_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "{}[auth]\nargon2_memory_kib = 1024\nargon2_iterations = 1\nthrottle_after = 5\n",
            default_server_section()
        ),
    );
    let server = Running::start(&cfg);
    let ca = std::fs::read_to_string(dir.path().join("state/tls/ca.crt")).unwrap();
    let c = Client::new(server.addr, &ca);
    let mut refused = Vec::new();
    for _ in 0..7 {
        let res = c
            .post_json(
                "/api/v1/auth/login",
                None,
                &json!({"username": "mallory\nfake line", "password": "guess guess guess"}),
            )
            .await;
        refused.push(res.status.as_u16());
    }
    assert_eq!(refused, [401, 401, 401, 401, 401, 429, 429]);

    // The admin changes the one-time password (its file goes) and lists the events.
    let otp_file = dir
        .path()
        .join("state")
        .join(plantwire::users::ADMIN_PASSWORD_FILE);
    let otp = std::fs::read_to_string(&otp_file)
        .unwrap()
        .trim()
        .to_string();
    let (access, _) = {
        let res = c
            .post_json(
                "/api/v1/auth/login",
                None,
                &json!({"username": "admin", "password": otp}),
            )
            .await;
        (res.json()["access_token"].as_str().unwrap().to_string(), ())
    };
    let res = c
        .with_bearer(
            Method::POST,
            "/api/v1/auth/password",
            &access,
            Some(json!({"current_password": otp, "new_password": "turbine hall 7 is loud"})),
        )
        .await;
    assert_eq!(res.status, 200);
    assert!(
        !otp_file.exists(),
        "the spent one-time password file is removed"
    );
    let admin = res.json()["access_token"].as_str().unwrap().to_string();

    let res = c
        .with_bearer(Method::GET, "/api/v1/admin/audit?kind=auth.*", &admin, None)
        .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    let events = res.json()["events"].as_array().unwrap().clone();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    let of = |kind: &str| events.iter().filter(|e| e["kind"] == kind).count();
    assert_eq!(of("auth.login_failed"), 5);
    assert_eq!(of("auth.lockout"), 1);
    assert_eq!(of("auth.login"), 2, "the admin's two sign-ins");
    let failed = events
        .iter()
        .find(|e| e["kind"] == "auth.login_failed")
        .unwrap();
    assert_eq!(failed["body"]["username"], "mallory\nfake line");
    assert_eq!(failed["body"]["from"], "127.0.0.1");
    let res = c
        .with_bearer(
            Method::GET,
            &format!(
                "/api/v1/admin/audit?kind=auth.lockout&since={}",
                seqs[seqs.len() - 1]
            ),
            &admin,
            None,
        )
        .await;
    let only = res.json()["events"].as_array().unwrap().clone();
    assert_eq!(only.len(), 1);
    assert_eq!(
        only[0]["body"]["lockout_secs"].as_u64().map(|s| s > 0),
        Some(true)
    );
    let res = c
        .with_bearer(Method::GET, "/api/v1/admin/audit?limit=2", &admin, None)
        .await;
    assert_eq!(res.json()["events"].as_array().unwrap().len(), 2);
    let res = c
        .with_bearer(Method::GET, "/api/v1/admin/audit?kind=x%2Fy", &admin, None)
        .await;
    assert_eq!(
        (res.status.as_u16(), res.error_code().as_str()),
        (400, "invalid_kind")
    );

    // The log: one line per refused attempt, with the username (quoted, its newline escaped) and
    // the address as fields a fail2ban filter can match, and the lockout with its length.
    let text = server.log_text();
    let who = r#"username="mallory\nfake line""#;
    assert_eq!(
        count(&text, &["sign-in failed", who, "from=127.0.0.1"]),
        5,
        "{text}"
    );
    assert_eq!(
        count(
            &text,
            &["locked out", who, "from=127.0.0.1", "lockout_secs="]
        ),
        3,
        "{text}"
    );
    assert!(!text.lines().any(|l| l.starts_with("fake line")), "{text}");
    server.signal("-TERM");
    assert!(server.wait(Duration::from_secs(15)).success());

    // Offline, the CLI lists the same events.
    let c_arg = cfg.to_str().unwrap();
    let out = command(&[
        "audit",
        "log",
        "--kind",
        "auth.login_failed",
        "--json",
        "--config",
        c_arg,
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.len(), 5);
    assert!(listed.iter().all(|e| e["body"]["from"] == "127.0.0.1"));
    let out = command(&["audit", "log", "--limit", "1", "--config", c_arg])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("auth.login"), "{text}");
}
