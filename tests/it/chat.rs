//! Messaging over REST: conversations and membership, history with edits and redactions, roles,
//! unread and mention counts with receipts, contacts, and attachments.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Full, StreamBody};
use hyper::Method;
use hyper::body::Frame;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::chat_support::{Api, people};
use crate::support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_messages_and_who_may_do_what() {
    let server = TestServer::start().await;
    let p = people(
        &server,
        &["alice", "bob", "carol", "dave", "vera"],
        &["vera"],
    )
    .await;
    let (alice, bob, carol, dave, vera) = (&p[0], &p[1], &p[2], &p[3], &p[4]);

    // One direct conversation per pair, whoever opens it.
    let dm = alice.direct("bob").await;
    assert_eq!(dm, bob.direct("alice").await);
    assert_eq!(
        alice
            .post("/api/v1/conversations/direct/alice", json!({}))
            .await
            .error_code(),
        "self_conversation"
    );
    assert_eq!(
        alice
            .post("/api/v1/conversations/direct/nobody", json!({}))
            .await
            .status,
        404
    );

    let g = alice.group("Pump 7", &["bob", "carol", "vera"]).await;
    let detail = alice.ok(&format!("/api/v1/conversations/{g}")).await;
    assert_eq!(detail["kind"], "group");
    assert_eq!(detail["members"].as_array().unwrap().len(), 4);

    let mut seqs = Vec::new();
    for i in 0..5 {
        seqs.push(
            alice
                .say(&g, &format!("k{i}"), &format!("reading {i}"))
                .await,
        );
    }
    // A retried key returns the same seq and stores nothing new.
    let again = alice
        .post(
            &format!("/api/v1/conversations/{g}/messages"),
            json!({"key": "k2", "text": "reading 2"}),
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["seq"], seqs[2]);
    assert_eq!(again.json()["duplicate"], true);

    // Keys are scoped to a conversation: the same key elsewhere is a new message.
    let elsewhere = alice.say(&dm, "k2", "same key, other conversation").await;
    assert_ne!(elsewhere, seqs[2]);
    let dm_text = &bob.history(&dm, "").await["messages"][0]["text"];
    assert_eq!(dm_text, "same key, other conversation");
    // Viewers cannot open conversations either.
    let r = vera
        .post("/api/v1/conversations/direct/bob", json!({}))
        .await;
    assert_eq!(r.error_code(), "read_only");

    let h = bob.history(&g, "").await;
    let texts: Vec<&str> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "reading 0",
            "reading 1",
            "reading 2",
            "reading 3",
            "reading 4"
        ]
    );
    assert_eq!(h["has_more"], false);
    // Pages both ways.
    let older = bob
        .history(&g, &format!("?before={}&limit=2", seqs[3]))
        .await;
    let got: Vec<u64> = older["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(got, [seqs[1], seqs[2]]);
    assert_eq!(older["has_more"], true);
    let newer = bob.history(&g, &format!("?after={}", seqs[3])).await;
    assert_eq!(newer["messages"].as_array().unwrap().len(), 1);
    assert_eq!(
        bob.get(&format!("/api/v1/conversations/{g}/messages?limit=201"))
            .await
            .error_code(),
        "invalid_limit"
    );
    assert_eq!(
        bob.get(&format!(
            "/api/v1/conversations/{g}/messages?before=1&after=2"
        ))
        .await
        .error_code(),
        "invalid_page"
    );

    // A non-member learns nothing and can do nothing.
    for path in [
        format!("/api/v1/conversations/{g}"),
        format!("/api/v1/conversations/{g}/messages"),
    ] {
        let r = dave.get(&path).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.error_code(), "no_such_conversation");
    }
    let r = dave
        .post(
            &format!("/api/v1/conversations/{g}/messages"),
            json!({"key": "x", "text": "hi"}),
        )
        .await;
    assert_eq!(r.status, 404);
    // A viewer reads but cannot post.
    assert_eq!(
        vera.history(&g, "").await["messages"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    let r = vera
        .post(
            &format!("/api/v1/conversations/{g}/messages"),
            json!({"key": "v", "text": "hi"}),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "read_only");
    // Bad input changes nothing.
    for body in [
        json!({"key": "", "text": "x"}),
        json!({"key": "a", "text": ""}),
        json!({"key": "b", "text": "x".repeat(16 * 1024 + 1)}),
        json!({"key": "c", "text": "bell\u{7}"}),
        json!({"key": "d", "text": "x", "reply_to": 999_999}),
    ] {
        let r = alice
            .post(&format!("/api/v1/conversations/{g}/messages"), body.clone())
            .await;
        assert_eq!(r.status, 400, "{body}");
    }
    assert_eq!(
        bob.history(&g, "").await["messages"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    // Edit: the author only; history shows the latest text.
    let path = format!("/api/v1/conversations/{g}/messages/{}", seqs[0]);
    assert_eq!(
        bob.call(Method::PUT, &path, Some(json!({"text": "mine now"})))
            .await
            .error_code(),
        "not_author"
    );
    assert_eq!(
        alice
            .call(
                Method::PUT,
                &path,
                Some(json!({"text": "reading 0 (corrected)"}))
            )
            .await
            .status,
        200
    );
    let first = &bob.history(&g, "").await["messages"][0];
    assert_eq!(first["text"], "reading 0 (corrected)");
    assert!(first["edited_at_us"].as_i64().is_some());

    // Reactions toggle; a repeat changes nothing.
    let rpath = format!("/api/v1/conversations/{g}/messages/{}/reactions", seqs[1]);
    assert!(bob.post(&rpath, json!({"emoji": "👍"})).await.json()["seq"].is_u64());
    assert!(bob.post(&rpath, json!({"emoji": "👍"})).await.json()["seq"].is_null());
    assert_eq!(carol.post(&rpath, json!({"emoji": "👍"})).await.status, 200);
    assert_eq!(
        bob.history(&g, "").await["messages"][1]["reactions"]["👍"],
        json!(["bob", "carol"])
    );
    let unreact = format!("{rpath}/%F0%9F%91%8D");
    assert_eq!(bob.call(Method::DELETE, &unreact, None).await.status, 200);
    assert_eq!(
        bob.history(&g, "").await["messages"][1]["reactions"]["👍"],
        json!(["carol"])
    );

    // Redact: not someone else's, unless admin; the text disappears from history.
    let path = format!("/api/v1/conversations/{g}/messages/{}", seqs[4]);
    assert_eq!(
        bob.call(Method::DELETE, &path, None).await.error_code(),
        "not_author"
    );
    assert_eq!(alice.call(Method::DELETE, &path, None).await.status, 200);
    assert_eq!(
        alice.call(Method::DELETE, &path, None).await.error_code(),
        "redacted"
    );
    let last = &bob.history(&g, "").await["messages"][4];
    assert_eq!(last["redacted"], true);
    assert_eq!(last["text"], "");
    server
        .user(
            "adam",
            plantwire::store::Role::Admin,
            crate::chat_support::PW,
        )
        .await;
    let adam = Api::login(&server.client(), "adam", crate::chat_support::PW).await;
    let path = format!("/api/v1/conversations/{g}/messages/{}", seqs[3]);
    assert_eq!(adam.call(Method::DELETE, &path, None).await.status, 200);
    // An admin manages a conversation they are not in, and gets its details back.
    let rename = format!("/api/v1/conversations/{g}/name");
    let r = adam
        .call(Method::PUT, &rename, Some(json!({"name": "Pump 7"})))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        adam.get(&format!("/api/v1/conversations/{g}/messages"))
            .await
            .status,
        404
    );

    // Membership: the owner removes, others cannot; a removed member reads nothing more.
    let rm = format!("/api/v1/conversations/{g}/members/carol");
    assert_eq!(
        bob.call(Method::DELETE, &rm, None).await.error_code(),
        "not_owner"
    );
    assert_eq!(alice.call(Method::DELETE, &rm, None).await.status, 204);
    assert_eq!(
        carol
            .get(&format!("/api/v1/conversations/{g}/messages"))
            .await
            .status,
        404
    );
    assert!(
        !carol.ok("/api/v1/conversations").await["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == g)
    );
    assert_eq!(
        alice
            .post(
                &format!("/api/v1/conversations/{g}/members"),
                json!({"users": ["dave"]})
            )
            .await
            .status,
        200
    );
    // A group's past is not shown to someone added later (history policy `joined`).
    assert_eq!(
        dave.history(&g, "").await["messages"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        bob.call(
            Method::PUT,
            &format!("/api/v1/conversations/{g}/name"),
            Some(json!({"name": "x"}))
        )
        .await
        .error_code(),
        "not_owner"
    );
    let renamed = alice
        .call(
            Method::PUT,
            &format!("/api/v1/conversations/{g}/name"),
            Some(json!({"name": "Pump 7 (north)"})),
        )
        .await;
    assert_eq!(renamed.json()["name"], "Pump 7 (north)");
    // The owner leaves: the longest-standing member takes over.
    assert_eq!(
        alice
            .post(&format!("/api/v1/conversations/{g}/leave"), json!({}))
            .await
            .status,
        204
    );
    let d = bob.ok(&format!("/api/v1/conversations/{g}")).await;
    let owners: Vec<&str> = d["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "owner")
        .map(|m| m["username"].as_str().unwrap())
        .collect();
    assert_eq!(owners.len(), 1);

    // Channels: anyone joins and leaves; names are unique.
    let r = alice
        .post(
            "/api/v1/conversations",
            json!({"kind": "channel", "name": "#Control-Room"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let ch = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["name"], "control-room");
    assert_eq!(
        bob.post(
            "/api/v1/conversations",
            json!({"kind": "channel", "name": "control-room"})
        )
        .await
        .error_code(),
        "name_taken"
    );
    assert_eq!(
        bob.post(
            "/api/v1/conversations",
            json!({"kind": "channel", "name": "bad name!"})
        )
        .await
        .error_code(),
        "invalid_name"
    );
    let list = dave.ok("/api/v1/channels").await;
    assert_eq!(list["channels"][0]["joined"], false);
    assert_eq!(
        dave.post(&format!("/api/v1/conversations/{ch}/join"), json!({}))
            .await
            .status,
        200
    );
    dave.say(&ch, "d1", "joined the control room").await;
    assert_eq!(
        alice.history(&ch, "").await["messages"][0]["author"],
        "dave"
    );
    assert_eq!(
        dave.post(&format!("/api/v1/conversations/{ch}/leave"), json!({}))
            .await
            .status,
        204
    );
    assert_eq!(
        dave.get(&format!("/api/v1/conversations/{ch}/messages"))
            .await
            .status,
        404
    );
    assert_eq!(
        vera.post(
            "/api/v1/conversations",
            json!({"kind": "channel", "name": "viewers"})
        )
        .await
        .error_code(),
        "read_only"
    );
    server.stop().await;
}

fn unread_of(list: &serde_json::Value, conv: &str) -> (u64, u64) {
    let c = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == conv)
        .unwrap();
    (
        c["unread"].as_u64().unwrap(),
        c["mentions"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_mentions_and_read_receipts_add_up() {
    let server = TestServer::start().await;
    let p = people(&server, &["alice", "bob", "carol"], &[]).await;
    let (alice, bob, carol) = (&p[0], &p[1], &p[2]);
    let g = alice.group("Shift", &["bob", "carol"]).await;
    let a1 = alice.say(&g, "a1", "morning").await;
    let a2 = alice.say(&g, "a2", "@bob can you check valve 3?").await;
    let _a3 = alice.say(&g, "a3", "and @nobody or @carol.").await;
    let c1 = carol
        .say(&g, "c1", "@bob @alice on it? me@bob.example is no mention")
        .await;

    let b = bob.ok("/api/v1/conversations").await;
    assert_eq!(unread_of(&b, &g), (4, 2));
    // The last message and its mentions are shown in the list.
    let conv = b["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == g)
        .unwrap()
        .clone();
    assert_eq!(conv["last_message"]["seq"], c1);
    assert_eq!(conv["last_message"]["mentions"], json!(["bob", "alice"]));
    // Writing marks one's own messages read: alice has only carol's message unread.
    assert_eq!(
        unread_of(&alice.ok("/api/v1/conversations").await, &g),
        (1, 1)
    );
    // carol's own send moved her marker past alice's messages.
    assert_eq!(
        unread_of(&carol.ok("/api/v1/conversations").await, &g),
        (0, 0)
    );

    let r = bob
        .post(
            &format!("/api/v1/conversations/{g}/read"),
            json!({"seq": a2}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["unread"], 2);
    assert_eq!(
        unread_of(&bob.ok("/api/v1/conversations").await, &g),
        (2, 1)
    );
    // Markers never move back, and not past the end of the log.
    let r = bob
        .post(
            &format!("/api/v1/conversations/{g}/read"),
            json!({"seq": a1}),
        )
        .await;
    assert_eq!(r.json()["last_read_seq"], a2);
    assert_eq!(
        bob.post(
            &format!("/api/v1/conversations/{g}/read"),
            json!({"seq": 1_000_000})
        )
        .await
        .error_code(),
        "invalid_seq"
    );

    // Receipts: everyone sees where the others are ("seen by").
    let d = carol.ok(&format!("/api/v1/conversations/{g}")).await;
    let marker = |u: &str| {
        d["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["username"] == u)
            .unwrap()["last_read_seq"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(marker("bob"), a2);
    assert_eq!(marker("carol"), c1);
    assert_eq!(marker("alice"), _a3);

    bob.post(
        &format!("/api/v1/conversations/{g}/read"),
        json!({"seq": c1}),
    )
    .await;
    assert_eq!(
        unread_of(&bob.ok("/api/v1/conversations").await, &g),
        (0, 0)
    );
    // A redacted mention no longer counts.
    let c2 = carol.say(&g, "c2", "@bob oops").await;
    assert_eq!(
        unread_of(&bob.ok("/api/v1/conversations").await, &g),
        (1, 1)
    );
    carol
        .call(
            Method::DELETE,
            &format!("/api/v1/conversations/{g}/messages/{c2}"),
            None,
        )
        .await;
    assert_eq!(unread_of(&bob.ok("/api/v1/conversations").await, &g).1, 0);
    let r = bob
        .post(
            &format!("/api/v1/conversations/{g}/read"),
            json!({"seq": c2}),
        )
        .await;
    assert_eq!(r.json()["unread"], 0);
    // Marking read up to one's own read entry writes nothing: markers cannot feed on themselves.
    let head = || server.head_seq();
    let before = head();
    let r = bob
        .post(
            &format!("/api/v1/conversations/{g}/read"),
            json!({"seq": before}),
        )
        .await;
    assert_eq!(r.json()["last_read_seq"], c2);
    assert_eq!(head(), before);
    // Mentions follow edits: added by an edit counts, removed by one does not.
    let a4 = alice.say(&g, "a4", "no mention yet").await;
    assert_eq!(
        unread_of(&bob.ok("/api/v1/conversations").await, &g),
        (1, 0)
    );
    let edit = format!("/api/v1/conversations/{g}/messages/{a4}");
    alice
        .call(Method::PUT, &edit, Some(json!({"text": "now @bob"})))
        .await;
    assert_eq!(
        unread_of(&bob.ok("/api/v1/conversations").await, &g),
        (1, 1)
    );
    alice
        .call(Method::PUT, &edit, Some(json!({"text": "never mind"})))
        .await;
    assert_eq!(
        unread_of(&bob.ok("/api/v1/conversations").await, &g),
        (1, 0)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_requests_and_contacts_only_direct_messages() {
    let server = TestServer::start_with(|c| {
        c.chat.direct_messages = plantwire::config::DirectMessages::Contacts
    })
    .await;
    let p = people(&server, &["alice", "bob"], &[]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let r = alice
        .post("/api/v1/conversations/direct/bob", json!({}))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "not_a_contact");

    assert_eq!(
        alice
            .post("/api/v1/contacts/requests", json!({"username": "bob"}))
            .await
            .json()["state"],
        "outgoing"
    );
    assert_eq!(
        alice
            .post("/api/v1/contacts/requests", json!({"username": "alice"}))
            .await
            .error_code(),
        "self_contact"
    );
    let mine = bob.ok("/api/v1/contacts").await;
    assert_eq!(mine["incoming"][0]["username"], "alice");
    assert_eq!(
        alice.ok("/api/v1/contacts").await["outgoing"][0]["username"],
        "bob"
    );
    // Turned down, then asked again and accepted.
    assert_eq!(
        bob.post("/api/v1/contacts/requests/alice/reject", json!({}))
            .await
            .json()["state"],
        "none"
    );
    assert_eq!(
        bob.post("/api/v1/contacts/requests/alice/accept", json!({}))
            .await
            .error_code(),
        "no_request"
    );
    assert_eq!(
        alice
            .post("/api/v1/conversations/direct/bob", json!({}))
            .await
            .status,
        403
    );
    alice
        .post("/api/v1/contacts/requests", json!({"username": "bob"}))
        .await;
    assert_eq!(
        bob.post("/api/v1/contacts/requests/alice/accept", json!({}))
            .await
            .json()["state"],
        "accepted"
    );
    assert_eq!(
        alice.ok("/api/v1/contacts").await["contacts"][0]["username"],
        "bob"
    );
    assert_eq!(
        alice
            .post("/api/v1/contacts/requests", json!({"username": "bob"}))
            .await
            .error_code(),
        "already_contacts"
    );

    let dm = alice.direct("bob").await;
    alice.say(&dm, "hello", "hello bob").await;
    // Removal hides the conversation for the remover; the log keeps the history.
    assert_eq!(
        alice
            .call(Method::DELETE, "/api/v1/contacts/bob", None)
            .await
            .json()["state"],
        "none"
    );
    assert!(
        alice.ok("/api/v1/conversations").await["conversations"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        bob.history(&dm, "").await["messages"][0]["text"],
        "hello bob"
    );
    let r = bob
        .post(
            &format!("/api/v1/conversations/{dm}/messages"),
            json!({"key": "b", "text": "still there?"}),
        )
        .await;
    assert_eq!(r.error_code(), "not_a_contact");
    server.stop().await;
}

/// A PNG-looking file of `n` bytes.
pub(crate) fn png(n: usize) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend((0..n.saturating_sub(8)).map(|i| (i * 31 % 251) as u8));
    v
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}

type Streamed = StreamBody<
    futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, std::convert::Infallible>>,
>;

/// A request body fed chunk by chunk from a channel.
fn streamed(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Streamed {
    use futures_util::StreamExt;
    let s = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok(Frame::data(b)), rx))
    });
    StreamBody::new(s.boxed())
}

pub(crate) async fn upload(api: &Api, name: &str, data: Vec<u8>) -> crate::support::Resp {
    let req = api
        .client
        .request(Method::POST, &format!("/api/v1/attachments?name={name}"))
        .header("authorization", format!("Bearer {}", api.token))
        .header("content-type", "image/png")
        .body(Full::from(data))
        .unwrap();
    api.client.send(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_are_sniffed_bounded_and_members_only() {
    let server = TestServer::start_with(|c| c.chat.max_attachment_bytes = 256 << 10).await;
    let p = people(&server, &["alice", "bob", "dave", "vera"], &["vera"]).await;
    let (alice, bob, dave, vera) = (&p[0], &p[1], &p[2], &p[3]);
    let g = alice.group("Gauges", &["bob"]).await;

    let image = png(100_000);
    let r = upload(alice, "gauge.png", image.clone()).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let info = r.json();
    assert_eq!(info["sha256"], sha256_hex(&image));
    assert_eq!(info["size"], 100_000);
    assert_eq!(info["mime"], "image/png");
    let id = info["id"].as_str().unwrap().to_string();

    // An executable named .png, and an empty upload, are refused whatever the client claims.
    let mut elf = b"\x7fELF\x02\x01\x01\0".to_vec();
    elf.extend([0u8; 200]);
    let r = upload(alice, "gauge.png", elf).await;
    assert_eq!(r.status, 415);
    assert_eq!(r.error_code(), "unsupported_type");
    assert_eq!(
        upload(alice, "x.png", Vec::new()).await.error_code(),
        "empty_attachment"
    );
    assert_eq!(
        upload(vera, "v.png", png(100)).await.error_code(),
        "read_only"
    );

    // Over the limit with a declared length: refused before the body is sent.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let req = alice
        .client
        .request(Method::POST, "/api/v1/attachments?name=big.png")
        .header("authorization", format!("Bearer {}", alice.token))
        .header("content-length", (10u64 << 20).to_string())
        .body(streamed(rx))
        .unwrap();
    let tls = alice.client.tls().await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let feeder = tx.clone();
    tokio::spawn(async move {
        let _ = feeder.send(Bytes::from(png(64 << 10))).await;
        // Then nothing more: the server must answer without the remaining 10 MiB.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let res = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("answered before the body ended")
        .unwrap();
    assert_eq!(res.status(), 413);
    drop(tx);
    // A client that waits for `100 Continue` is refused at once and is never invited to send.
    let mut tls = alice.client.tls().await;
    let head = format!(
        "POST /api/v1/attachments?name=big.png HTTP/1.1\r\nhost: localhost\r\n\
         authorization: Bearer {}\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\r\n",
        alice.token,
        10u64 << 20
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut answer = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut answer))
        .await
        .expect("answered without a body")
        .unwrap();
    assert_eq!(
        &answer,
        b"HTTP/1.1 413",
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // Over the limit without a declared length (chunked): cut off while streaming.
    let (tx2, rx2) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        for _ in 0..64 {
            if tx2.send(Bytes::from(png(16 << 10))).await.is_err() {
                return;
            }
        }
    });
    let req = alice
        .client
        .request(Method::POST, "/api/v1/attachments?name=big.png")
        .header("authorization", format!("Bearer {}", alice.token))
        .body(streamed(rx2))
        .unwrap();
    let tls = alice.client.tls().await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 413);

    // Text is kept as text, and its name cannot pass for something else.
    let r = upload(alice, "run.bat", b"@echo off\r\necho hi\r\n".to_vec()).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["name"], "run.bat.txt");
    let text_id = r.json()["id"].as_str().unwrap().to_string();
    let got = alice.get(&format!("/api/v1/attachments/{text_id}")).await;
    assert_eq!(got.headers["content-type"], "text/plain; charset=utf-8");
    let disposition = got.headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"run.bat.txt\""),
        "{disposition}"
    );

    // Multipart works too, and keeps the part's file name.
    let body = [
        b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"dial.gif\"\r\nContent-Type: image/gif\r\n\r\n".to_vec(),
        b"GIF89a\x01\0\x01\0".to_vec(),
        b"\r\n--XyZ--\r\n".to_vec(),
    ]
    .concat();
    let req = alice
        .client
        .request(Method::POST, "/api/v1/attachments")
        .header("authorization", format!("Bearer {}", alice.token))
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .body(Full::from(body))
        .unwrap();
    let r = alice.client.send(req).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.json()["name"], "dial.gif");
    assert_eq!(r.json()["mime"], "image/gif");

    // Before it is posted only the uploader can fetch it; after, members can; others never.
    assert_eq!(
        bob.get(&format!("/api/v1/attachments/{id}")).await.status,
        404
    );
    let r = alice
        .post(
            &format!("/api/v1/conversations/{g}/messages"),
            json!({"key": "p", "text": "", "attachments": [id]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let got = bob.get(&format!("/api/v1/attachments/{id}")).await;
    assert_eq!(got.status, 200);
    assert_eq!(sha256_hex(&got.body), sha256_hex(&image));
    assert_eq!(got.headers["content-type"], "image/png");
    assert_eq!(got.headers["x-content-type-options"], "nosniff");
    assert!(
        got.headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("inline; filename=\"gauge.png\"")
    );
    assert!(
        got.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    assert_eq!(
        dave.get(&format!("/api/v1/attachments/{id}")).await.status,
        404
    );
    // The message carries what a client needs to show it.
    let m = &bob.history(&g, "").await["messages"][0];
    assert_eq!(m["attachments"][0]["id"], id.as_str());
    assert_eq!(m["attachments"][0]["mime"], "image/png");
    // Someone who cannot see it cannot post it elsewhere.
    let dg = dave.group("Mine", &[]).await;
    let r = dave
        .post(
            &format!("/api/v1/conversations/{dg}/messages"),
            json!({"key": "s", "text": "", "attachments": [id]}),
        )
        .await;
    assert_eq!(r.error_code(), "invalid_attachment");
    server.stop().await;
}
