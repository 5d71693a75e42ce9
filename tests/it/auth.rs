//! Accounts and sessions over real TLS: sign-in cycles (bearer and cookie), token forgeries,
//! roles, the route guard, Origin checks, throttling, the first admin, registration, bad input.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http_body_util::Full;
use hyper::Method;
use plantwire::clock::ManualClock;
use plantwire::store::Role;
use serde_json::{Value, json};

use crate::support::{Client, Resp, TestServer};

const PW: &str = "correct horse battery";

async fn login(c: &Client, user: &str, pw: &str) -> Resp {
    c.post_json(
        "/api/v1/auth/login",
        None,
        &json!({"username": user, "password": pw}),
    )
    .await
}

async fn tokens(c: &Client, user: &str, pw: &str) -> (String, String) {
    let res = login(c, user, pw).await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    let v = res.json();
    (
        v["access_token"].as_str().unwrap().to_string(),
        v["refresh_token"].as_str().unwrap().to_string(),
    )
}

async fn me(c: &Client, token: &str) -> Resp {
    c.with_bearer(Method::GET, "/api/v1/auth/me", token, None)
        .await
}

async fn refresh(c: &Client, refresh_token: &str) -> Resp {
    c.post_json(
        "/api/v1/auth/refresh",
        None,
        &json!({"refresh_token": refresh_token}),
    )
    .await
}

fn origin(c: &Client) -> String {
    format!("https://localhost:{}", c.addr.port())
}

fn cookies_of(res: &Resp) -> Vec<String> {
    res.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

fn cookie_value(set: &[String], name: &str) -> String {
    let line = set
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(line.contains(attr), "{line}");
    }
    line.split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

#[tokio::test]
async fn bearer_cycle_login_me_refresh_logout() {
    let server = TestServer::start().await;
    server.user("alice", Role::Operator, PW).await;
    let c = server.client();
    let (access, refresh_token) = tokens(&c, "Alice", PW).await;
    let res = me(&c, &access).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["username"], "alice");
    assert_eq!(res.json()["role"], "operator");

    let res = refresh(&c, &refresh_token).await;
    assert_eq!(res.status, 200);
    let v = res.json();
    let (access2, refresh2) = (
        v["access_token"].as_str().unwrap().to_string(),
        v["refresh_token"].as_str().unwrap().to_string(),
    );
    assert_ne!(refresh2, refresh_token, "refresh tokens rotate");
    assert_eq!(me(&c, &access2).await.status, 200);

    let res = c
        .with_bearer(Method::POST, "/api/v1/auth/logout", &access2, None)
        .await;
    assert_eq!(res.status, 204);
    // Logout takes effect at once for every token of the session.
    assert_eq!(me(&c, &access2).await.status, 401);
    assert_eq!(me(&c, &access).await.status, 401);
    assert_eq!(refresh(&c, &refresh2).await.status, 401);
    server.stop().await;
}

#[tokio::test]
async fn cookie_cycle_and_cross_site_requests() {
    let server = TestServer::start().await;
    server.user("bob", Role::Operator, PW).await;
    let c = server.client();
    let login_req = |origin: &str| {
        c.request(Method::POST, "/api/v1/auth/login")
            .header("content-type", "application/json")
            .header("origin", origin)
            .body(Full::from(
                serde_json::to_vec(
                    &json!({"username": "bob", "password": PW, "session": "cookie"}),
                )
                .unwrap(),
            ))
            .unwrap()
    };
    // A cookie login from a foreign page is refused.
    assert_eq!(c.send(login_req("https://evil.example")).await.status, 403);
    let res = c.send(login_req(&origin(&c))).await;
    assert_eq!(res.status, 200);
    assert!(
        res.json().get("access_token").is_none(),
        "no tokens in the body for browsers"
    );
    let set = cookies_of(&res);
    let access = cookie_value(&set, "pw_access");
    let refresh_c = cookie_value(&set, "pw_refresh");

    let get_me = c
        .request(Method::GET, "/api/v1/auth/me")
        .header("cookie", format!("pw_access={access}"))
        .body(Full::default())
        .unwrap();
    assert_eq!(c.send(get_me).await.status, 200);

    // State-changing with the cookie: foreign or missing Origin → 403, own Origin → fine.
    let manual = |origin: Option<&str>| {
        let mut b = c
            .request(Method::POST, "/api/v1/events/manual")
            .header("content-type", "application/json")
            .header("cookie", format!("pw_access={access}"));
        if let Some(o) = origin {
            b = b.header("origin", o);
        }
        b.body(Full::from(r#"{"source":"field","type":"reading.manual"}"#))
            .unwrap()
    };
    let res = c.send(manual(Some("https://evil.example"))).await;
    assert_eq!(
        (res.status.as_u16(), res.error_code().as_str()),
        (403, "bad_origin")
    );
    assert_eq!(c.send(manual(None)).await.status, 403);
    assert_eq!(c.send(manual(Some(&origin(&c)))).await.status, 201);

    // Refresh by cookie rotates the cookies.
    let res = c
        .send(
            c.request(Method::POST, "/api/v1/auth/refresh")
                .header("cookie", format!("pw_refresh={refresh_c}"))
                .header("origin", origin(&c))
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(res.status, 200);
    let set = cookies_of(&res);
    let access2 = cookie_value(&set, "pw_access");
    let logout = c
        .request(Method::POST, "/api/v1/auth/logout")
        .header("cookie", format!("pw_access={access2}"))
        .header("origin", origin(&c))
        .body(Full::default())
        .unwrap();
    let res = c.send(logout).await;
    assert_eq!(res.status, 204);
    assert!(
        cookies_of(&res)
            .iter()
            .any(|s| s.starts_with("pw_access=;") && s.contains("Max-Age=0"))
    );
    server.stop().await;
}

fn forge(parts: [&Value; 2], sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        B64.encode(serde_json::to_vec(parts[0]).unwrap()),
        B64.encode(serde_json::to_vec(parts[1]).unwrap()),
        B64.encode(sig)
    )
}

fn claims_of(token: &str) -> Value {
    serde_json::from_slice(&B64.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

#[tokio::test]
async fn forged_expired_foreign_and_stale_tokens_are_rejected() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000_000));
    let server =
        TestServer::start_full(tempfile::TempDir::new().unwrap(), clock.clone(), |_| {}).await;
    server.user("carol", Role::Operator, PW).await;
    let c = server.client();
    let (access, refresh_token) = tokens(&c, "carol", PW).await;
    assert_eq!(me(&c, &access).await.status, 200);
    let mut claims = claims_of(&access);

    // alg: none
    let none = format!(
        "{}.{}.",
        B64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        access.split('.').nth(1).unwrap()
    );
    assert_eq!(me(&c, &none).await.status, 401);

    // HS256 signed with the server's public key (algorithm confusion).
    let pkcs8 = base64::engine::general_purpose::STANDARD
        .decode(
            std::fs::read_to_string(server.path().join("jwt-signing.key"))
                .unwrap()
                .trim(),
        )
        .unwrap();
    let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(&pkcs8).unwrap();
    let public = aws_lc_rs::signature::KeyPair::public_key(&pair)
        .as_ref()
        .to_vec();
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let signing_input = format!(
        "{}.{}",
        B64.encode(serde_json::to_vec(&header).unwrap()),
        B64.encode(serde_json::to_vec(&claims).unwrap())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &public);
    let tag = aws_lc_rs::hmac::sign(&key, signing_input.as_bytes());
    let confused = format!("{signing_input}.{}", B64.encode(tag.as_ref()));
    assert_eq!(me(&c, &confused).await.status, 401);

    // A modified payload with the original signature.
    claims["role"] = json!("admin");
    let sig = B64.decode(access.split('.').nth(2).unwrap()).unwrap();
    let tampered = forge([&json!({"alg": "EdDSA", "typ": "JWT"}), &claims], &sig);
    assert_eq!(me(&c, &tampered).await.status, 401);

    // Signed by another instance (same site name, other key).
    let other = TestServer::start().await;
    other.user("carol", Role::Operator, PW).await;
    let (foreign, _) = tokens(&other.client(), "carol", PW).await;
    assert_eq!(me(&c, &foreign).await.status, 401);
    other.stop().await;

    // Expired: past the TTL and the leeway by our clock.
    clock.advance_us((900 + 31) * 1_000_000);
    let res = me(&c, &access).await;
    assert_eq!(
        (res.status.as_u16(), res.error_code().as_str()),
        (401, "unauthorized")
    );

    // A reused refresh token ends its whole family.
    let fresh = refresh(&c, &refresh_token).await;
    assert_eq!(fresh.status, 200);
    let newer = fresh.json()["refresh_token"].as_str().unwrap().to_string();
    let newer_access = fresh.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        refresh(&c, &refresh_token).await.status,
        401,
        "reuse detected"
    );
    assert_eq!(refresh(&c, &newer).await.status, 401, "the family is dead");
    assert_eq!(me(&c, &newer_access).await.status, 401);

    // A disabled user's token stops working at once.
    let (access, _) = tokens(&c, "carol", PW).await;
    plantwire::users::set_status(
        server.state().log(),
        "carol",
        plantwire::store::UserStatus::Disabled,
        &crate::support::test_author(),
    )
    .await
    .unwrap();
    assert_eq!(me(&c, &access).await.status, 401);
    assert_eq!(
        login(&c, "carol", PW).await.error_code(),
        "account_disabled"
    );
    server.stop().await;
}

#[tokio::test]
async fn roles_are_enforced_and_every_private_route_needs_auth() {
    let server = TestServer::start().await;
    server.user("vera", Role::Viewer, PW).await;
    server.user("otto", Role::Operator, PW).await;
    server.user("adam", Role::Admin, PW).await;
    let c = server.client();
    let (viewer, _) = tokens(&c, "vera", PW).await;
    let (operator, _) = tokens(&c, "otto", PW).await;
    let (admin, _) = tokens(&c, "adam", PW).await;
    let manual = json!({"source": "field", "type": "reading.manual"});

    // Viewers read but cannot act.
    assert_eq!(
        c.with_bearer(Method::GET, "/api/v1/events", &viewer, None)
            .await
            .status,
        200
    );
    assert_eq!(
        c.with_bearer(Method::GET, "/api/v1/users?q=o", &viewer, None)
            .await
            .status,
        200
    );
    let res = c
        .with_bearer(
            Method::POST,
            "/api/v1/events/manual",
            &viewer,
            Some(manual.clone()),
        )
        .await;
    assert_eq!(
        (res.status.as_u16(), res.error_code().as_str()),
        (403, "forbidden")
    );
    // Operators act but do not administer.
    let res = c
        .with_bearer(
            Method::POST,
            "/api/v1/events/manual",
            &operator,
            Some(manual),
        )
        .await;
    assert_eq!(res.status, 201);
    assert_eq!(
        c.with_bearer(Method::GET, "/api/v1/admin/users", &operator, None)
            .await
            .status,
        403
    );
    let res = c
        .with_bearer(
            Method::PUT,
            "/api/v1/admin/users/vera/role",
            &operator,
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(res.status, 403);
    // Admins do.
    assert_eq!(
        c.with_bearer(Method::GET, "/api/v1/admin/users", &admin, None)
            .await
            .status,
        200
    );
    let res = c
        .with_bearer(
            Method::PUT,
            "/api/v1/admin/users/otto/role",
            &admin,
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(res.status, 200);
    // A role change takes effect at once: the old operator token is gone.
    assert_eq!(me(&c, &operator).await.status, 401);
    let (otto_again, _) = tokens(&c, "otto", PW).await;
    assert_eq!(me(&c, &otto_again).await.json()["role"], "viewer");

    // Walk the whole route table: every non-public route refuses a request without credentials.
    let specs = plantwire::http::route_specs();
    assert!(specs.len() > 15);
    for spec in specs
        .iter()
        .filter(|s| s.access != plantwire::http::Access::Public)
    {
        let path = spec
            .path
            .replace("{username}", "vera")
            .replace("{id}", "g-00")
            .replace("{seq}", "1")
            .replace("{emoji}", "x");
        let req = c
            .request(spec.method.clone(), &path)
            .header("content-type", "application/json")
            .body(Full::from("{}"))
            .unwrap();
        let res = c.send(req).await;
        assert_eq!(
            res.status, 401,
            "{} {} must need auth",
            spec.method, spec.path
        );
        assert_eq!(res.error_code(), "unauthorized");
    }
    // And the public ones are reachable without.
    for path in ["/healthz", "/readyz", "/ca.crt"] {
        assert_eq!(c.get(path).await.status, 200, "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn throttling_engages_releases_and_spares_other_addresses() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000_000));
    let server = TestServer::start_full(tempfile::TempDir::new().unwrap(), clock.clone(), |c| {
        c.auth.throttle_after = 3;
    })
    .await;
    server.user("dora", Role::Operator, PW).await;
    let attacker = server.client();
    for _ in 0..3 {
        assert_eq!(
            login(&attacker, "dora", "wrong password!").await.status,
            401
        );
    }
    let res = login(&attacker, "dora", PW).await;
    assert_eq!(
        (res.status.as_u16(), res.error_code().as_str()),
        (429, "rate_limited")
    );
    let wait: i64 = res.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 1);
    // The real user, elsewhere, is not locked out.
    let elsewhere = server.client().with_source("127.0.0.2");
    assert_eq!(login(&elsewhere, "dora", PW).await.status, 200);
    // After the delay, the throttle releases.
    clock.advance_us(wait * 1_000_000);
    assert_eq!(login(&attacker, "dora", PW).await.status, 200);

    // Failed logins and the lockout are in the log, without the password.
    let log = server.state().log();
    let rtx = log.read().unwrap();
    let mut kinds = Vec::new();
    rtx.scan_log(1, |seq, raw| {
        let e = log.decode(seq, raw).unwrap();
        let body = String::from_utf8(e.body.clone()).unwrap();
        assert!(
            !body.contains("wrong password!") && !body.contains(PW),
            "{body}"
        );
        kinds.push(e.kind);
        true
    })
    .unwrap();
    assert_eq!(
        kinds.iter().filter(|k| *k == "auth.login_failed").count(),
        3
    );
    assert_eq!(kinds.iter().filter(|k| *k == "auth.lockout").count(), 1);
    server.stop().await;
}

#[tokio::test]
async fn first_admin_must_change_the_one_time_password() {
    let server = TestServer::start().await;
    let file = server.path().join(plantwire::users::ADMIN_PASSWORD_FILE);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let otp = server.admin_otp();
    let c = server.client();
    let (access, _) = tokens(&c, "admin", &otp).await;
    let res = me(&c, &access).await;
    assert_eq!(res.json()["must_change_password"], true);
    for (m, p) in [
        (Method::GET, "/api/v1/users"),
        (Method::GET, "/api/v1/admin/users"),
        (Method::GET, "/api/v1/events"),
    ] {
        let res = c.with_bearer(m, p, &access, None).await;
        assert_eq!(
            (res.status.as_u16(), res.error_code().as_str()),
            (403, "password_change_required"),
            "{p}"
        );
    }
    let weak = c
        .with_bearer(
            Method::POST,
            "/api/v1/auth/password",
            &access,
            Some(json!({"current_password": otp, "new_password": "password1"})),
        )
        .await;
    assert_eq!(
        (weak.status.as_u16(), weak.error_code().as_str()),
        (400, "weak_password")
    );
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
        !file.exists(),
        "the spent one-time password's file is removed"
    );
    let new_access = res.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        me(&c, &access).await.status,
        401,
        "the one-time session ended"
    );
    assert_eq!(
        c.with_bearer(Method::GET, "/api/v1/admin/users", &new_access, None)
            .await
            .status,
        200
    );
    assert_eq!(
        login(&c, "admin", &otp).await.status,
        401,
        "the one-time password is spent"
    );
    // A restart does not make another admin.
    let dir = server.stop().await;
    let again = TestServer::start_in(dir, |_| {}).await;
    // The changed password still works after a restart.
    let (t, _) = tokens(&again.client(), "admin", "turbine hall 7 is loud").await;
    assert_eq!(me(&again.client(), &t).await.status, 200);
    again.stop().await;
}

#[tokio::test]
async fn registration_follows_the_configured_policy() {
    let server = TestServer::start().await; // default: approval
    server.user("root2", Role::Admin, PW).await;
    let c = server.client();
    let reg = json!({"username": "Erin", "display_name": "Erin E.", "password": "compressor room"});
    let res = c.post_json("/api/v1/auth/register", None, &reg).await;
    assert_eq!(res.status, 202);
    assert_eq!(res.json()["status"], "pending");
    assert_eq!(
        login(&c, "erin", "compressor room").await.error_code(),
        "account_pending"
    );
    let res = c
        .post_json(
            "/api/v1/auth/register",
            None,
            &json!({"username": "ERIN", "display_name": "x", "password": "compressor room"}),
        )
        .await;
    assert_eq!(
        (res.status.as_u16(), res.error_code().as_str()),
        (409, "username_taken")
    );
    let (admin, _) = tokens(&c, "root2", PW).await;
    let res = c
        .with_bearer(
            Method::POST,
            "/api/v1/admin/users/erin/approve",
            &admin,
            None,
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(login(&c, "erin", "compressor room").await.status, 200);
    // Admin reset gives a one-time password that forces a change.
    let res = c
        .with_bearer(
            Method::POST,
            "/api/v1/admin/users/erin/reset-password",
            &admin,
            None,
        )
        .await;
    let otp = res.json()["one_time_password"]
        .as_str()
        .unwrap()
        .to_string();
    let (t, _) = tokens(&c, "erin", &otp).await;
    assert_eq!(me(&c, &t).await.json()["must_change_password"], true);
    server.stop().await;

    let closed =
        TestServer::start_with(|c| c.auth.registration = plantwire::config::Registration::Closed)
            .await;
    let res = closed
        .client()
        .post_json("/api/v1/auth/register", None, &reg)
        .await;
    assert_eq!(
        (res.status.as_u16(), res.error_code().as_str()),
        (403, "registration_closed")
    );
    closed.stop().await;
}

#[tokio::test]
async fn bad_login_input_is_400_and_changes_nothing() {
    let server = TestServer::start().await;
    server.user("fred", Role::Operator, PW).await;
    let c = server.client();
    let head = || server.head_seq();
    let before = head();
    let long = "u".repeat(100_000);
    for body in [
        json!({"username": "", "password": PW}),
        json!({"username": "fred", "password": ""}),
        json!({"username": long, "password": PW}),
        json!({"username": "fred", "password": "p".repeat(5000)}),
    ] {
        let res = c.post_json("/api/v1/auth/login", None, &body).await;
        assert_eq!(
            (res.status.as_u16(), res.error_code().as_str()),
            (400, "invalid_login")
        );
    }
    for raw in [
        &b"{\"username\": \"fr\xffed\", \"password\": \"x\"}"[..],
        br#"{"username": 5, "password": "x"}"#,
        br#"{"username": "fred", "password": "x", "admin": true}"#,
        br#"["fred", "x"]"#,
    ] {
        let req = c
            .request(Method::POST, "/api/v1/auth/login")
            .header("content-type", "application/json")
            .body(Full::from(raw.to_vec()))
            .unwrap();
        let res = c.send(req).await;
        assert_eq!(
            (res.status.as_u16(), res.error_code().as_str()),
            (400, "invalid_json")
        );
    }
    let res = c
        .post_json(
            "/api/v1/auth/register",
            None,
            &json!({"username": "x", "display_name": "y", "password": PW}),
        )
        .await;
    assert_eq!(
        (res.status.as_u16(), res.error_code().as_str()),
        (400, "invalid_username")
    );
    assert_eq!(before, head(), "no entry for refused input");
    server.stop().await;
}
