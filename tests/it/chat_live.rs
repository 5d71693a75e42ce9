//! Messaging live over real WebSockets: delivery in order after the commit, gap-free resume,
//! membership applied at once, typing and presence, slow consumers, bad frames, cookie origin.

use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};

use crate::chat_support::{Api, PW, Ws, people};
use crate::support::TestServer;

fn seqs(entries: &[Value]) -> Vec<u64> {
    entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_members_live_in_order_after_the_commit() {
    let server = TestServer::start().await;
    let p = people(&server, &["alice", "bob", "carol"], &[]).await;
    let (alice, bob, carol) = (&p[0], &p[1], &p[2]);
    let g = alice.group("Line 2", &["bob", "carol"]).await;
    let mut wa = alice.ws().await;
    let mut wb = bob.ws().await;
    let mut wc = carol.ws().await;
    for w in [&mut wa, &mut wb, &mut wc] {
        let head = w.head();
        assert!(w.subscribe(head).await.is_empty());
    }
    let mut acked = Vec::new();
    for i in 0..20u64 {
        if i % 2 == 0 {
            wa.send(json!({"type": "send", "id": i, "conv": g, "key": format!("w{i}"), "text": format!("m{i}")})).await;
            let ack = wa.next_of("ack").await;
            assert_eq!(ack["id"], i);
            assert_eq!(ack["duplicate"], false);
            acked.push(ack["seq"].as_u64().unwrap());
        } else {
            acked.push(alice.say(&g, &format!("r{i}"), &format!("m{i}")).await);
        }
    }
    for w in [&mut wb, &mut wc] {
        let mut got = Vec::new();
        for i in 0..20 {
            let e = w.next_entry("chat.message").await;
            assert_eq!(e["body"]["text"], format!("m{i}"));
            assert_eq!(e["author"], "alice");
            got.push(e["seq"].as_u64().unwrap());
        }
        assert_eq!(
            got, acked,
            "every receiver gets every message, in seq order"
        );
        // Each delivered entry was already durable: history has it.
    }
    let h = bob.history(&g, "?limit=200").await;
    assert_eq!(h["messages"].as_array().unwrap().len(), 20);
    // Shutdown closes open sockets (1001) within the drain.
    let stopping = tokio::spawn(server.stop());
    wb.until_closed(Duration::from_secs(10)).await;
    stopping.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_client_gets_exactly_what_it_missed() {
    let server = TestServer::start().await;
    let p = people(&server, &["alice", "bob"], &[]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let g = alice.group("Resume", &["bob"]).await;
    let mut wb = bob.ws().await;
    let head = wb.head();
    wb.subscribe(head).await;
    let first = alice.say(&g, "first", "before the drop").await;
    let seen = wb.next_entry("chat.message").await;
    assert_eq!(seen["seq"], first);
    drop(wb);

    let mut sent = Vec::new();
    for i in 0..100 {
        sent.push(
            alice
                .say(&g, &format!("gap{i}"), &format!("missed {i}"))
                .await,
        );
    }
    // A retried send with a used key stores nothing and delivers nothing.
    assert_eq!(alice.say(&g, "gap7", "missed 7").await, sent[7]);

    let mut wb = bob.ws().await;
    let replay = wb.subscribe(first).await;
    assert_eq!(
        seqs(&replay),
        sent,
        "exactly the 100 missed entries, in order"
    );
    for (i, e) in replay.iter().enumerate() {
        assert_eq!(e["body"]["text"], format!("missed {i}"));
    }
    // Then live, with nothing repeated.
    let next = alice.say(&g, "after", "live again").await;
    let e = wb.next_of("entry").await;
    assert_eq!(e["seq"], next);
    // Replaying from the start includes the creation and everything since, and redacted text
    // stays hidden on replay too.
    alice
        .call(
            Method::DELETE,
            &format!("/api/v1/conversations/{g}/messages/{}", sent[0]),
            None,
        )
        .await;
    let mut wb2 = bob.ws().await;
    let all = wb2.subscribe(0).await;
    assert_eq!(all[0]["kind"], "chat.created");
    let redacted = all.iter().find(|e| e["seq"] == sent[0]).unwrap();
    assert_eq!(redacted["body"]["text"], "");
    assert!(all.iter().any(|e| e["kind"] == "chat.redacted"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_hear_nothing_and_removal_stops_delivery_at_once() {
    let server = TestServer::start().await;
    let p = people(&server, &["alice", "bob", "carol", "dave"], &[]).await;
    let (alice, bob, carol, dave) = (&p[0], &p[1], &p[2], &p[3]);
    let g = alice.group("Ops", &["bob", "carol"]).await;
    let mut wb = bob.ws().await;
    let mut wc = carol.ws().await;
    let mut wd = dave.ws().await;
    for w in [&mut wb, &mut wc, &mut wd] {
        let h = w.head();
        w.subscribe(h).await;
    }
    let m1 = alice.say(&g, "m1", "for the three of us").await;
    assert_eq!(wc.next_entry("chat.message").await["seq"], m1);
    let rm = alice
        .call(
            Method::DELETE,
            &format!("/api/v1/conversations/{g}/members/carol"),
            None,
        )
        .await;
    assert_eq!(rm.status, 204);
    let left = wc.next_of("entry").await;
    assert_eq!(left["kind"], "chat.left");
    assert_eq!(left["body"]["users"], json!(["carol"]));
    let m2 = alice.say(&g, "m2", "carol is gone").await;
    assert_eq!(wb.next_entry("chat.message").await["seq"], m1);
    assert_eq!(wb.next_entry("chat.message").await["seq"], m2);
    // The next thing carol and dave hear is their own direct message, not m2 or m1.
    let dc = alice.direct("carol").await;
    let dd = alice.direct("dave").await;
    let to_c = alice.say(&dc, "dc", "hi carol").await;
    let to_d = alice.say(&dd, "dd", "hi dave").await;
    let e = wc.next_of("entry").await;
    assert_eq!(
        (e["kind"].as_str(), e["seq"].as_u64()),
        (Some("chat.created"), e["seq"].as_u64())
    );
    assert_eq!(wc.next_of("entry").await["seq"], to_c);
    assert_eq!(wd.next_of("entry").await["kind"], "chat.created");
    assert_eq!(wd.next_of("entry").await["seq"], to_d);
    // Nor does a replay from zero show dave anything of the group.
    let mut wd2 = dave.ws().await;
    let all = wd2.subscribe(0).await;
    assert!(
        all.iter().all(|e| e["stream"] != format!("conv/{g}")),
        "{all:?}"
    );
    // A viewer cannot post over the socket either.
    server
        .user("vera", plantwire::store::Role::Viewer, PW)
        .await;
    let vera = Api::login(&server.client(), "vera", PW).await;
    alice
        .post(
            &format!("/api/v1/conversations/{g}/members"),
            json!({"users": ["vera"]}),
        )
        .await;
    let mut wv = vera.ws().await;
    wv.send(json!({"type": "send", "id": 1, "conv": g, "key": "v", "text": "hi"}))
        .await;
    let err = wv.next_of("error").await;
    assert_eq!(err["code"], "read_only");
    assert_eq!(err["id"], 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_is_never_stored_and_presence_follows_the_last_connection() {
    let server = TestServer::start().await;
    let p = people(&server, &["alice", "bob", "dave"], &[]).await;
    let (alice, bob, dave) = (&p[0], &p[1], &p[2]);
    let dm = alice.direct("bob").await;
    let mut wb = bob.ws().await;
    let mut wd = dave.ws().await;
    let mut wa1 = alice.ws().await;
    // Bob shares a conversation with alice and hears her come online; dave does not.
    let f = wb.next_of("presence").await;
    assert_eq!(
        (f["user"].as_str(), f["status"].as_str()),
        (Some("alice"), Some("online"))
    );
    let head_before = server.head_seq();
    wa1.send(json!({"type": "typing", "conv": dm})).await;
    let t = wb.next_of("typing").await;
    assert_eq!(t["conv"], dm.as_str());
    assert_eq!(t["user"], "alice");
    assert!(t["expires_in_ms"].as_u64().unwrap() > 0);
    // Typing wrote nothing.
    let head_after = server.head_seq();
    assert_eq!(head_before, head_after);
    assert!(
        bob.history(&dm, "").await["messages"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let mut wa2 = alice.ws().await;
    wa1.send(json!({"type": "presence", "status": "away"}))
        .await;
    // One connection is still online, so alice stays online: nothing to announce yet.
    let status = |v: &Value| {
        v["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == "alice")
            .unwrap()["status"]
            .clone()
    };
    wa1.stream.close(None).await.unwrap();
    drop(wa1);
    wa2.send(json!({"type": "presence", "status": "away"}))
        .await;
    let f = wb.next_of("presence").await;
    assert_eq!(
        (f["user"].as_str(), f["status"].as_str()),
        (Some("alice"), Some("away"))
    );
    assert_eq!(status(&bob.ok("/api/v1/presence").await), "away");
    wa2.stream.close(None).await.unwrap();
    drop(wa2);
    let f = wb.next_of("presence").await;
    assert_eq!(
        (f["user"].as_str(), f["status"].as_str()),
        (Some("alice"), Some("offline"))
    );
    // Last seen is persisted (a view update, not a log entry per heartbeat).
    let mut last_seen = Value::Null;
    for _ in 0..100 {
        let v = bob.ok("/api/v1/presence?users=alice").await;
        assert_eq!(status(&v), "offline");
        last_seen = v["users"][0]["last_seen_us"].clone();
        if last_seen.is_i64() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(last_seen.is_i64(), "last seen recorded");
    // Dave never heard any of it.
    let h = wd.head();
    wd.subscribe(h).await;
    wd.send(json!({"type": "ping", "id": 9})).await;
    let f = wd.next().await;
    assert_eq!(f["type"], "pong", "dave got {f}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_cut_off_and_the_others_get_everything() {
    let server = TestServer::start_with(|c| {
        c.storage.hub_capacity = 16;
        c.chat.ws_send_timeout_secs = 2;
    })
    .await;
    let p = people(&server, &["alice", "bob", "slow"], &[]).await;
    let (alice, bob, slow) = (&p[0], &p[1], &p[2]);
    let g = alice.group("Flood", &["bob", "slow"]).await;

    // The slow client has a tiny receive buffer and never reads after subscribing.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(slow.client.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(crate::support::client_config(
        server.state().tls().ca_pem().unwrap(),
        &[b"http/1.1"],
    )))
    .connect(
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
        tcp,
    )
    .await
    .unwrap();
    let mut ws = Ws::over(
        tls,
        &slow.client,
        &[("authorization", format!("Bearer {}", slow.token))],
    )
    .await
    .unwrap();
    let h = ws.head();
    ws.subscribe(h).await;

    let mut wb = bob.ws().await;
    let h = wb.head();
    wb.subscribe(h).await;
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 300 {
            got.push(wb.next_entry("chat.message").await["seq"].as_u64().unwrap());
        }
        got
    });
    let text = "x".repeat(16 * 1024 - 64);
    let mut sent = Vec::new();
    for i in 0..300 {
        sent.push(alice.say(&g, &format!("f{i}"), &text).await);
    }
    assert_eq!(
        reader.await.unwrap(),
        sent,
        "a normal reader gets every message in order"
    );
    // The slow one was disconnected: its presence drops to offline.
    let mut status = Value::Null;
    for _ in 0..200 {
        let v = alice.ok("/api/v1/presence?users=slow").await;
        status = v["users"][0]["status"].clone();
        if status == "offline" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "offline", "the slow consumer was disconnected");
    // What it did get before the cut ends with the reason, or just ends.
    let frames = ws.until_closed(Duration::from_secs(30)).await;
    let messages = frames.iter().filter(|f| f["type"] == "entry").count();
    assert!(messages < 300, "it was cut off before the end ({messages})");
    if let Some(last) = frames.last().filter(|f| f["type"] == "error") {
        assert_eq!(last["code"], "too_slow");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_errors_and_hurt_nothing() {
    let server = TestServer::start_with(|c| c.chat.ws_max_frame_bytes = 32 * 1024).await;
    let p = people(&server, &["alice", "bob"], &[]).await;
    let alice = &p[0];
    let g = alice.group("Frames", &["bob"]).await;
    let mut w = alice.ws().await;
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    for (frame, code) in [
        ("not json", "bad_frame"),
        ("[1,2]", "bad_frame"),
        (r#"{"type":"launch_missiles"}"#, "unknown_type"),
        (r#"{"type":"send","conv":"x"}"#, "bad_frame"),
        (r#"{"type":"subscribe","since":"yesterday"}"#, "bad_frame"),
    ] {
        w.stream.send(Message::text(frame)).await.unwrap();
        assert_eq!(w.next_of("error").await["code"], code, "{frame}");
    }
    w.stream
        .send(Message::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    assert_eq!(w.next_of("error").await["code"], "binary_not_supported");
    w.send(json!({"type": "send", "id": 5, "conv": "no-such", "key": "k", "text": "x"}))
        .await;
    let e = w.next_of("error").await;
    assert_eq!(
        (e["id"].as_u64(), e["code"].as_str()),
        (Some(5), Some("no_such_conversation"))
    );
    w.send(json!({"type": "send", "id": 6, "conv": g, "key": "k", "text": "still fine"}))
        .await;
    assert_eq!(w.next_of("ack").await["id"], 6);
    w.send(json!({"type": "subscribe", "since": 0})).await;
    loop {
        if w.next().await["type"] == "caught_up" {
            break;
        }
    }
    w.send(json!({"type": "subscribe", "since": 0})).await;
    assert_eq!(w.next_of("error").await["code"], "already_subscribed");
    // An oversized frame ends that connection, and only that one.
    let big =
        json!({"type": "send", "conv": g, "key": "big", "text": "y".repeat(40 * 1024)}).to_string();
    let _ = w.stream.send(Message::text(big)).await;
    w.until_closed(Duration::from_secs(10)).await;
    let mut again = alice.ws().await;
    again.send(json!({"type": "ping", "id": 1})).await;
    assert_eq!(again.next_of("pong").await["id"], 1);
    assert_eq!(
        alice.history(&g, "").await["messages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_at_the_size_limit_is_taken_whole() {
    // The server's read buffer is a small fraction of the limit, so a frame this long arrives
    // over many TLS records and reads: it must still be taken whole, and more than once.
    let server = TestServer::start().await;
    let p = people(&server, &["alice", "bob"], &[]).await;
    let alice = &p[0];
    let g = alice.group("Long lines", &["bob"]).await;
    let mut w = alice.ws().await;
    let max = w.hello["max_frame_bytes"].as_u64().unwrap() as usize;
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    // JSON whitespace before the closing brace brings the frame to an exact length.
    let frame = |id: u64, len: usize| {
        let mut f = json!({"type": "send", "id": id, "conv": g, "key": format!("k{id}"),
            "text": "x".repeat(16 * 1024 - 64)})
        .to_string();
        assert!(f.len() <= len);
        f.insert_str(f.len() - 1, &" ".repeat(len - f.len()));
        assert_eq!(f.len(), len);
        f
    };
    for id in [1, 2] {
        w.stream.send(Message::text(frame(id, max))).await.unwrap();
        let ack = w.next_of("ack").await;
        assert_eq!(
            (ack["id"].as_u64(), ack["duplicate"].as_bool()),
            (Some(id), Some(false))
        );
    }
    let texts: Vec<usize> = alice.history(&g, "").await["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().len())
        .collect();
    assert_eq!(texts, [16 * 1024 - 64; 2]);
    // One byte more is over the limit and ends the connection.
    let _ = w.stream.send(Message::text(frame(3, max + 1))).await;
    w.until_closed(Duration::from_secs(10)).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_websockets_need_this_servers_origin() {
    let server = TestServer::start().await;
    people(&server, &["alice"], &[]).await;
    let c = server.client();
    let host = format!("localhost:{}", c.addr.port());
    let login = c
        .request(Method::POST, "/api/v1/auth/login")
        .header("content-type", "application/json")
        .header("origin", format!("https://{host}"))
        .body(http_body_util::Full::from(
            json!({"username": "alice", "password": PW, "session": "cookie"}).to_string(),
        ))
        .unwrap();
    let res = c.send(login).await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    let cookie = res
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("; ");
    let refused = Ws::connect(
        &c,
        &[
            ("cookie", cookie.clone()),
            ("origin", "https://evil.example".into()),
        ],
    )
    .await;
    assert_eq!(refused.err(), Some(403));
    let refused = Ws::connect(&c, &[("cookie", cookie.clone())]).await;
    assert_eq!(refused.err(), Some(403));
    let ok = Ws::connect(
        &c,
        &[("cookie", cookie), ("origin", format!("https://{host}"))],
    )
    .await;
    assert!(ok.is_ok());
    // No credentials at all: 401 before any upgrade.
    assert_eq!(Ws::connect(&c, &[]).await.err(), Some(401));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_shows_only_what_was_seen_while_a_member() {
    let server = TestServer::start().await;
    let p = people(&server, &["alice", "dave"], &[]).await;
    let (alice, dave) = (&p[0], &p[1]);
    // A group: its history policy is `joined`, so replay and history follow membership spans
    // (a channel's `shared` past is tested in history_policy.rs).
    let ch = alice.group("spans", &[]).await;
    alice.say(&ch, "m1", "before dave").await;
    let add = format!("/api/v1/conversations/{ch}/members");
    let leave = format!("/api/v1/conversations/{ch}/leave");
    assert_eq!(
        alice.post(&add, json!({"users": ["dave"]})).await.status,
        200
    );
    let m2 = alice.say(&ch, "m2", "dave is here").await;
    assert_eq!(dave.post(&leave, json!({})).await.status, 204);
    alice.say(&ch, "m3", "dave is away").await;
    assert_eq!(
        alice.post(&add, json!({"users": ["dave"]})).await.status,
        200
    );
    let m4 = alice.say(&ch, "m4", "dave is back").await;

    let mut w = dave.ws().await;
    let all = w.subscribe(0).await;
    let kinds: Vec<&str> = all.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "chat.joined",
            "chat.message",
            "chat.left",
            "chat.joined",
            "chat.message"
        ]
    );
    assert_eq!(all[1]["seq"], m2);
    assert_eq!(all[4]["seq"], m4);
    // History over REST follows the same spans.
    let h = dave.history(&ch, "").await;
    let seqs: Vec<u64> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [m2, m4]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_socket_gets_the_same_bytes_live_and_on_replay() {
    let server = TestServer::start().await;
    let p = people(&server, &["alice", "bob", "carol"], &[]).await;
    let (alice, bob, carol) = (&p[0], &p[1], &p[2]);
    let g = alice.group("Shared frames", &["bob", "carol"]).await;
    let mut sockets = vec![alice.ws().await, bob.ws().await, carol.ws().await];
    // A second socket of one user: sockets, not users, share the rendering.
    sockets.push(bob.ws().await);
    for w in sockets.iter_mut() {
        let head = w.head();
        assert!(w.subscribe(head).await.is_empty());
    }
    // Text that needs escaping, and several entries in one burst.
    let texts = [
        "plain",
        "quote \" and \\ backslash",
        "ünïcödé ⚙ \n newline",
        "<b>&amp;</b>",
    ];
    let mut seqs = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        seqs.push(alice.say(&g, &format!("k{i}"), t).await);
    }
    let mut live: Vec<Vec<String>> = Vec::new();
    for w in sockets.iter_mut() {
        let mut got = Vec::new();
        for _ in &texts {
            got.push(w.next_entry_text("chat.message").await);
        }
        live.push(got);
    }
    for (i, t) in texts.iter().enumerate() {
        let v: Value = serde_json::from_str(&live[0][i]).unwrap();
        assert_eq!(v["seq"], seqs[i]);
        assert_eq!(v["body"]["text"], *t);
        assert_eq!(v["author"], "alice");
        for other in &live[1..] {
            assert_eq!(other[i], live[0][i], "every socket gets identical bytes");
        }
    }
    // A socket that replays the same entries from the log gets the same bytes as live.
    let mut late = carol.ws().await;
    let since = seqs[0] - 1;
    late.send(json!({"type": "subscribe", "since": since}))
        .await;
    for (i, frame) in live[0].iter().enumerate() {
        assert_eq!(
            &late.next_entry_text("chat.message").await,
            frame,
            "replayed entry {i} is byte-identical to its live frame"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_changes_nothing_over_the_socket() {
    let server = TestServer::start().await;
    let p = people(&server, &["alice", "vic"], &["vic"]).await;
    let (alice, vic) = (&p[0], &p[1]);
    server
        .user("audrey", plantwire::store::Role::Auditor, PW)
        .await;
    let audrey = Api::login(&server.client(), "audrey", PW).await;
    let g = alice.group("Audit", &["audrey", "vic"]).await;
    let seq = alice.say(&g, "a1", "read me").await;
    let reads = |s: &TestServer| {
        let log = s.state().log();
        let rtx = log.read().unwrap();
        (1..=log.head(&rtx).unwrap())
            .filter_map(|n| log.entry(&rtx, n).unwrap())
            .filter(|e| e.kind == "chat.read")
            .count()
    };

    let mut wa = audrey.ws().await;
    let head = server.head_seq();
    wa.send(json!({"type": "read", "id": 7, "conv": g, "seq": seq}))
        .await;
    let err = wa.next_of("error").await;
    assert_eq!(
        (err["id"].as_u64(), err["code"].as_str()),
        (Some(7), Some("read_only_role"))
    );
    wa.send(json!({"type": "presence", "status": "away"})).await;
    assert_eq!(wa.next_of("error").await["code"], "read_only_role");
    // Nothing was written: no read entry, no receipt, the head did not move.
    assert_eq!(server.head_seq(), head);
    assert_eq!(reads(&server), 0);

    // The same frame from a viewer is a read marker: the check is the auditor's, not the frame's.
    let mut wv = vic.ws().await;
    wv.send(json!({"type": "read", "id": 8, "conv": g, "seq": seq}))
        .await;
    let ack = wv.next_of("read_ack").await;
    assert_eq!(ack["last_read_seq"], seq);
    assert_eq!(reads(&server), 1);
    server.stop().await;
}
