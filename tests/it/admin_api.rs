//! The admin API for devices (list, add, revoke) and the account rules every caller gets from the
//! domain: the last active admin stays, and approving needs a pending account.

use hyper::Method;
use plantwire::log::SubmitError;
use plantwire::store::{Role, UserStatus};
use serde_json::json;

use crate::support::{Client, TestServer, test_author};

const PW: &str = "correct horse battery";

async fn access(c: &Client, user: &str) -> String {
    let res = c
        .post_json(
            "/api/v1/auth/login",
            None,
            &json!({"username": user, "password": PW}),
        )
        .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    res.json()["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn admins_add_list_and_revoke_devices_over_the_api() {
    let server = TestServer::start().await;
    server.user("ada", Role::Admin, PW).await;
    server.user("olaf", Role::Operator, PW).await;
    let c = server.client();
    let (admin, operator) = (access(&c, "ada").await, access(&c, "olaf").await);

    let res = c
        .with_bearer(
            Method::POST,
            "/api/v1/admin/devices",
            &operator,
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(res.status, 403);
    let res = c
        .with_bearer(
            Method::POST,
            "/api/v1/admin/devices",
            &admin,
            Some(json!({"name": "Bad Name"})),
        )
        .await;
    assert_eq!(res.status, 400);
    assert_eq!(res.error_code(), "invalid_name");

    let res = c
        .with_bearer(
            Method::POST,
            "/api/v1/admin/devices",
            &admin,
            Some(json!({"name": "press-2"})),
        )
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    let token = res.json()["token"].as_str().unwrap().to_string();
    assert_eq!(res.json()["device"]["created_by"], "user:ada");
    assert_eq!(c.event(&token, "hello").await.status, 201);
    let res = c
        .with_bearer(
            Method::POST,
            "/api/v1/admin/devices",
            &admin,
            Some(json!({"name": "press-2"})),
        )
        .await;
    assert_eq!(res.status, 409);
    assert_eq!(res.error_code(), "device_exists");

    let res = c
        .with_bearer(Method::GET, "/api/v1/admin/devices", &admin, None)
        .await;
    assert_eq!(res.status, 200);
    let list = res.json();
    assert_eq!(list["devices"][0]["name"], "press-2");
    assert!(list["devices"][0].get("token_hash").is_none());

    let res = c
        .with_bearer(
            Method::DELETE,
            "/api/v1/admin/devices/press-2",
            &admin,
            None,
        )
        .await;
    assert_eq!(res.status, 204);
    assert_eq!(c.event(&token, "after").await.status, 401);
    let res = c
        .with_bearer(Method::DELETE, "/api/v1/admin/devices/nope", &admin, None)
        .await;
    assert_eq!(res.status, 404);
    assert_eq!(res.error_code(), "no_such_device");
}

fn code(e: SubmitError) -> &'static str {
    match e {
        SubmitError::Rejected(r) => r.code,
        other => panic!("not a rejection: {other}"),
    }
}

#[tokio::test]
async fn the_last_active_admin_stays_and_approve_needs_a_pending_account() {
    let server = TestServer::start().await;
    let log = server.state().log();
    let by = test_author();
    // First start made `admin`, the only active admin.
    let e = plantwire::users::set_role(log, "admin", Role::Viewer, &by)
        .await
        .unwrap_err();
    assert_eq!(code(e), "last_admin");
    let e = plantwire::users::set_status(log, "admin", UserStatus::Disabled, &by)
        .await
        .unwrap_err();
    assert_eq!(code(e), "last_admin");
    let row = plantwire::users::get(log, "admin").unwrap().unwrap();
    assert_eq!((row.role, row.status), (Role::Admin, UserStatus::Active));

    server.user("ada", Role::Admin, PW).await;
    plantwire::users::set_status(log, "admin", UserStatus::Disabled, &by)
        .await
        .unwrap();
    // Now ada is the last one.
    let e = plantwire::users::set_role(log, "ada", Role::Operator, &by)
        .await
        .unwrap_err();
    assert_eq!(code(e), "last_admin");

    let e = plantwire::users::approve(log, "ada", &by)
        .await
        .unwrap_err();
    assert_eq!(code(e), "not_pending");
}
