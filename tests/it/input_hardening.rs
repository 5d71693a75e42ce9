//! Small refusals from the hardening review: a multipart upload is bounded as a whole, names lose
//! bidi and other format characters, admins cannot enable or reset themselves, and only ASCII
//! letters fold in usernames.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::Method;
use hyper::body::Frame;
use serde_json::json;

use crate::chat_support::{Api, PW, people};
use crate::support::TestServer;

/// Sends a multipart body chunked (no `Content-Length`, so only the streaming bound can stop it).
async fn chunked_multipart(api: &Api, parts: Vec<Bytes>) -> (u16, serde_json::Value) {
    let stream = futures_util::stream::iter(
        parts
            .into_iter()
            .map(|b| Ok::<_, Infallible>(Frame::data(b))),
    );
    let req = api
        .client
        .request(Method::POST, "/api/v1/attachments")
        .header("authorization", format!("Bearer {}", api.token))
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .body(StreamBody::new(stream))
        .unwrap();
    let tls = api.client.tls().await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let res = sender.send_request(req).await.unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

fn text_part(name: &str, size: usize) -> Bytes {
    let mut v =
        format!("--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").into_bytes();
    v.extend(std::iter::repeat_n(b'a', size));
    v.extend(b"\r\n");
    Bytes::from(v)
}

fn file_part(filename: &str, data: &[u8]) -> Bytes {
    let mut v = format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: text/plain\r\n\r\n"
    )
    .into_bytes();
    v.extend(data);
    v.extend(b"\r\n--XyZ--\r\n");
    Bytes::from(v)
}

#[tokio::test]
async fn a_multipart_upload_is_bounded_as_a_whole_not_per_part() {
    let limit = 64 << 10;
    let server = TestServer::start_with(|c| c.chat.max_attachment_bytes = limit).await;
    let p = people(&server, &["alice"], &[]).await;
    let alice = &p[0];

    // Eight fields of half the limit each, every one under it, and a 5-byte file.
    let mut parts: Vec<Bytes> = (0..8)
        .map(|i| text_part(&format!("f{i}"), limit / 2))
        .collect();
    parts.push(file_part("note.txt", b"hello"));
    let (status, body) = chunked_multipart(alice, parts).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "too_large");

    // A small extra field still goes through.
    let parts = vec![text_part("comment", 100), file_part("note.txt", b"hello")];
    let (status, body) = chunked_multipart(alice, parts).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "note.txt");
}

#[tokio::test]
async fn names_lose_bidi_and_other_format_characters() {
    let server = TestServer::start().await;
    let p = people(&server, &["alice", "bob"], &[]).await;
    let alice = &p[0];

    // Raw upload, name in the query: x<RLO>gnp.exe would show as "xexe.png…".
    let req = alice
        .client
        .request(Method::POST, "/api/v1/attachments?name=x%E2%80%AEgnp.exe")
        .header("authorization", format!("Bearer {}", alice.token))
        .body(Full::from(&b"\x89PNG\r\n\x1a\n0123456789"[..]))
        .unwrap();
    let r = alice.client.send(req).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.json()["name"], "xgnp.exe.png");

    // Multipart file name.
    let parts = vec![file_part("a\u{2067}b\u{2069}\u{200F}.txt", b"hello")];
    let (status, body) = chunked_multipart(alice, parts).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "ab.txt");

    // Conversation names.
    let g = alice
        .group("\u{202B}Shift\u{202C} A\u{061C}", &["bob"])
        .await;
    let d = alice.ok(&format!("/api/v1/conversations/{g}")).await;
    assert_eq!(d["name"], "Shift A");
    let r = alice
        .call(
            Method::PUT,
            &format!("/api/v1/conversations/{g}/name"),
            Some(json!({"name": "Pump\u{200E} 7\u{2066}"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        alice.ok(&format!("/api/v1/conversations/{g}")).await["name"],
        "Pump 7"
    );
    // Only format characters: nothing is left, so it is refused.
    let r = alice
        .post(
            "/api/v1/conversations",
            json!({"kind": "group", "name": "\u{202E}\u{200F}", "members": ["bob"]}),
        )
        .await;
    assert_eq!(r.error_code(), "invalid_name");

    // Display names, by an admin and by registration.
    server.user("adam", plantwire::store::Role::Admin, PW).await;
    let adam = Api::login(&server.client(), "adam", PW).await;
    let r = adam
        .post(
            "/api/v1/admin/users",
            json!({"username": "carl", "display_name": "Carl\u{202E} Evil", "role": "operator"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.json()["user"]["display_name"], "Carl Evil");
    let r = adam
        .post(
            "/api/v1/admin/users",
            json!({"username": "dora", "display_name": "\u{200E}", "role": "operator"}),
        )
        .await;
    assert_eq!(r.error_code(), "invalid_display_name");
}

#[tokio::test]
async fn an_admin_cannot_enable_or_reset_their_own_account() {
    let server = TestServer::start().await;
    server.user("adam", plantwire::store::Role::Admin, PW).await;
    server
        .user("otto", plantwire::store::Role::Operator, PW)
        .await;
    let adam = Api::login(&server.client(), "adam", PW).await;
    let head = server.head_seq();
    for action in ["enable", "reset-password"] {
        for who in ["adam", "ADAM"] {
            let r = adam
                .post(&format!("/api/v1/admin/users/{who}/{action}"), json!({}))
                .await;
            assert_eq!(r.status, 403, "{action} {who}: {:?}", r.body);
            assert_eq!(r.error_code(), "cannot_change_self");
        }
    }
    assert_eq!(server.head_seq(), head, "a refused action wrote an entry");
    // The session survived, and the actions still work on others.
    assert_eq!(adam.get("/api/v1/auth/me").await.status, 200);
    let r = adam
        .post("/api/v1/admin/users/otto/reset-password", json!({}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = adam
        .post("/api/v1/admin/users/otto/enable", json!({}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn only_ascii_letters_fold_at_sign_in() {
    let server = TestServer::start().await;
    server
        .user("kate", plantwire::store::Role::Operator, PW)
        .await;
    let c = server.client();
    let login = |name: &'static str| {
        let c = c.clone();
        async move {
            c.post_json(
                "/api/v1/auth/login",
                None,
                &json!({"username": name, "password": PW}),
            )
            .await
        }
    };
    // U+212A KELVIN SIGN lower-cases to `k` under full Unicode folding.
    let r = login("\u{212A}ate").await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    let r = login("\u{212A}ATE").await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(login("KATE").await.status, 200);
    assert_eq!(login("kate").await.status, 200);
}
