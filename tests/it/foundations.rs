//! The seams of the foundations issue, end to end: one session check for requests and sockets,
//! sockets that close the moment their session ends, and events read through their indexes.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::chat_support::{Api, PW, people};
use crate::support::{TestServer, test_author};
use plantwire::clock::ManualClock;
use plantwire::log::{Author, NewEntry};

#[tokio::test]
async fn an_expired_session_closes_the_socket() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000_000));
    let server = TestServer::start_full(tempfile::TempDir::new().unwrap(), clock.clone(), |c| {
        c.chat.ws_ping_secs = 1;
        c.auth.refresh_ttl_secs = 300;
        c.auth.access_ttl_secs = 3600;
    })
    .await;
    let apis = people(&server, &["alice"], &[]).await;
    let mut ws = apis[0].ws().await;
    ws.subscribe(0).await;
    // The session (not the access token) runs out.
    clock.advance_us(301 * 1_000_000);
    let (_, code) = ws.until_close_code(Duration::from_secs(10)).await;
    assert_eq!(code, Some(4401), "an expired session must close the socket");
    server.stop().await;
}

#[tokio::test]
async fn a_disabled_user_s_socket_closes_at_once_and_its_writes_are_refused() {
    // Pings every 60 s: a close within seconds comes from the change itself, not a ping.
    let server = TestServer::start_with(|c| c.chat.ws_ping_secs = 60).await;
    let apis = people(&server, &["alice", "bob"], &[]).await;
    let (alice, bob) = (&apis[0], &apis[1]);
    let conv = alice.group("shift", &["bob"]).await;
    let mut bob_ws = bob.ws().await;
    bob_ws.subscribe(0).await;

    plantwire::users::set_status(
        server.state().log(),
        "bob",
        plantwire::store::UserStatus::Disabled,
        &test_author(),
    )
    .await
    .unwrap();
    // A send right after the change is not stored, whatever the socket does with it, and what
    // the conversation gets after the change never reaches the closed socket.
    bob_ws
        .send(json!({"type": "send", "id": 1, "conv": conv, "key": "late-1", "text": "after disable"}))
        .await;
    alice
        .say(&conv, "a-late", "for bob's eyes, after he was disabled")
        .await;
    let (frames, code) = bob_ws.until_close_code(Duration::from_secs(5)).await;
    assert_eq!(code, Some(4401), "the socket closes when the session ends");
    assert!(
        frames
            .iter()
            .all(|f| f["type"] != "entry" && f["type"] != "ack"),
        "nothing after the change: {frames:?}"
    );
    let history = alice.history(&conv, "").await;
    let texts: Vec<_> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(!texts.contains(&"after disable".to_string()), "{texts:?}");
    server.stop().await;
}

#[tokio::test]
async fn events_are_found_across_50_000_chat_entries() {
    let server = TestServer::start().await;
    let token = server.device("pump-7").await;
    let client = server.client();
    let first = client.event(&token, "before the chatter").await.json()["seq"]
        .as_u64()
        .unwrap();
    // 50,000 chat entries in one commit, straight through the log.
    server
        .state()
        .log()
        .submit(|tx| {
            for n in 0..50_000u32 {
                let e = NewEntry::json(
                    "chat.message",
                    "conv/g-noise",
                    &Author::user("alice"),
                    &json!({"type": "message", "conv": "g-noise", "key": format!("k{n}"), "text": "noise", "mentions": []}),
                )?;
                tx.append(e)?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let second = client.event(&token, "after the chatter").await.json()["seq"]
        .as_u64()
        .unwrap();
    assert_eq!(second, first + 50_001);

    server
        .user("olga", plantwire::store::Role::Viewer, PW)
        .await;
    let olga = Api::login(&client, "olga", PW).await;
    let after = olga.ok(&format!("/api/v1/events?after={first}")).await;
    let seqs = |v: &serde_json::Value| -> Vec<u64> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(seqs(&after), [second]);
    let newest = olga.ok("/api/v1/events?order=desc&limit=10").await;
    assert_eq!(seqs(&newest), [second, first]);
    let by_type = olga
        .ok("/api/v1/events?type=pressure.high&source=pump-7")
        .await;
    assert_eq!(seqs(&by_type).len(), 2);
    server.stop().await;
}
