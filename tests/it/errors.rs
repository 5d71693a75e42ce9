//! The uniform error format and limits at the HTTP edge: stable codes, request ids, security
//! headers on every response, and bad input that changes nothing.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Method;
use serde_json::json;

use crate::support::{TestServer, assert_security_headers, test_author};

#[tokio::test]
async fn errors_have_stable_codes_and_change_nothing() {
    let server = TestServer::start_with(|c| c.server.max_body_bytes = 16384).await;
    let token = server.device("pump-7").await;
    let client = server.client();
    let head_before = server.head_seq();

    let res = client.get("/healthz").await;
    assert_eq!(res.status, 200);
    assert_security_headers(&res.headers);
    assert!(res.headers.get("x-request-id").is_some());

    let res = client.get("/no/such/route").await;
    assert_eq!(
        (res.status.as_u16(), res.error_code().as_str()),
        (404, "not_found")
    );
    assert_security_headers(&res.headers);

    let res = client
        .send(
            client
                .request(Method::PUT, "/healthz")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(
        (res.status.as_u16(), res.error_code().as_str()),
        (405, "method_not_allowed")
    );

    // No token, a wrong token, a malformed header.
    let ev = json!({"source": "s", "type": "t"});
    let res = client.post_json("/api/v1/events", None, &ev).await;
    assert_eq!(
        (res.status.as_u16(), res.error_code().as_str()),
        (401, "unauthorized")
    );
    assert_eq!(res.headers["www-authenticate"], "Bearer");
    let res = client
        .post_json("/api/v1/events", Some("pwd_wrong"), &ev)
        .await;
    assert_eq!(res.status, 401);

    // Wrong content type.
    let req = client
        .request(Method::POST, "/api/v1/events")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "text/plain")
        .body(Full::from("{}"))
        .unwrap();
    let res = client.send(req).await;
    assert_eq!(
        (res.status.as_u16(), res.error_code().as_str()),
        (415, "unsupported_media_type")
    );

    // Malformed JSON, wrong types, unknown fields, invalid UTF-8, bad values.
    for body in [
        Bytes::from_static(b"{not json"),
        Bytes::from_static(br#"{"source": 5, "type": "t"}"#),
        Bytes::from_static(br#"{"source": "s", "type": "t", "extra": 1}"#),
        Bytes::from_static(b"{\"source\": \"\xff\xfe\", \"type\": \"t\"}"),
    ] {
        let req = client
            .request(Method::POST, "/api/v1/events")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))
            .unwrap();
        let res = client.send(req).await;
        assert_eq!(res.status, 400, "{body:?}");
        assert_eq!(res.error_code(), "invalid_json");
    }
    for ev in [
        json!({"source": "", "type": "t"}),
        json!({"source": "s", "type": "bad type with spaces"}),
        json!({"source": "s", "type": "t", "severity": "apocalyptic"}),
        json!({"source": "s", "type": "t", "message": "x".repeat(5000)}),
    ] {
        let res = client.post_json("/api/v1/events", Some(&token), &ev).await;
        assert_eq!(res.status, 400, "{ev}");
    }
    let res = client
        .post_json("/api/v1/events/batch", Some(&token), &json!({"events": []}))
        .await;
    assert_eq!(
        (res.status.as_u16(), res.error_code().as_str()),
        (400, "empty_batch")
    );
    // A batch with one bad event stores none of them.
    let res = client
        .post_json(
            "/api/v1/events/batch",
            Some(&token),
            &json!({"events": [{"source": "s", "type": "ok"}, {"source": "", "type": "t"}]}),
        )
        .await;
    assert_eq!(res.status, 400);
    assert!(
        res.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("events[1]")
    );

    // Over the body limit.
    let big = json!({"source": "s", "type": "t", "message": "y".repeat(20000)});
    let res = client.post_json("/api/v1/events", Some(&token), &big).await;
    assert_eq!(
        (res.status.as_u16(), res.error_code().as_str()),
        (413, "too_large")
    );

    let head_after = server.head_seq();
    assert_eq!(
        head_before, head_after,
        "bad input must not append anything"
    );

    // And a good one still works, acknowledged with the next seq.
    let res = client.event(&token, "fine").await;
    assert_eq!(res.status, 201);
    assert_eq!(res.json()["seq"], head_after + 1);
    server.stop().await;
}

#[tokio::test]
async fn revoked_device_is_refused_at_once() {
    let server = TestServer::start().await;
    let token = server.device("plc-1").await;
    let client = server.client();
    assert_eq!(client.event(&token, "a").await.status, 201);
    plantwire::devices::revoke(server.state().log(), "plc-1", &test_author())
        .await
        .unwrap();
    assert_eq!(client.event(&token, "b").await.status, 401);
    // Names are unique; a second add is a conflict, not a new token.
    let err = plantwire::devices::add(server.state().log(), "plc-1", &test_author())
        .await
        .unwrap_err();
    assert!(matches!(err, plantwire::log::SubmitError::Rejected(r) if r.code == "device_exists"));
    server.stop().await;
}
