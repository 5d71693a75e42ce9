//! Who reads which past of a conversation: an admin looking on gets details but no content; a
//! late joiner of a group gets nothing from before; a channel's past is open to its members.
//! REST history, last messages and WebSocket replay follow the same rule.

use hyper::Method;
use serde_json::{Value, json};

use crate::chat_support::{Api, PW, people};
use crate::support::TestServer;

/// The texts of the `chat.message` entries of `conv` among replayed entries.
fn replayed_texts(entries: &[Value], conv: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e["kind"] == "chat.message" && e["body"]["conv"] == conv)
        .map(|e| e["body"]["text"].as_str().unwrap().to_string())
        .collect()
}

fn history_texts(h: &Value) -> Vec<String> {
    h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn an_admin_looking_on_sees_details_but_no_message_content() {
    let server = TestServer::start().await;
    let p = people(&server, &["alice", "bob"], &[]).await;
    let (alice, bob) = (&p[0], &p[1]);
    server.user("adam", plantwire::store::Role::Admin, PW).await;
    let adam = Api::login(&server.client(), "adam", PW).await;

    let g = alice.group("Shift A", &["bob"]).await;
    alice.say(&g, "g1", "the group secret").await;
    let dm = alice.direct("bob").await;
    bob.say(&dm, "d1", "the direct secret").await;

    for conv in [&g, &dm] {
        let r = adam.get(&format!("/api/v1/conversations/{conv}")).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let d = r.json();
        assert!(d["last_message"].is_null(), "{d}");
        assert_eq!(d["members"].as_array().unwrap().len(), 2, "details stay");
        let text = String::from_utf8_lossy(&r.body);
        assert!(!text.contains("secret"), "content leaked: {text}");
        // Members still see their last message.
        let mine = alice.ok(&format!("/api/v1/conversations/{conv}")).await;
        assert!(
            mine["last_message"]["text"]
                .as_str()
                .unwrap()
                .contains("secret")
        );
    }
}

#[tokio::test]
async fn a_late_joiner_of_a_group_reads_nothing_from_before_over_rest_or_replay() {
    let server = TestServer::start().await;
    let p = people(&server, &["alice", "bob", "carol"], &[]).await;
    let (alice, carol) = (&p[0], &p[2]);
    let g = alice.group("Shift B", &["bob"]).await;
    alice.say(&g, "a1", "before carol 1").await;
    alice.say(&g, "a2", "before carol 2").await;
    let r = alice
        .post(
            &format!("/api/v1/conversations/{g}/members"),
            json!({"users": ["carol"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // Nothing yet since she joined: no history, no last message.
    assert!(history_texts(&carol.history(&g, "").await).is_empty());
    let d = carol.ok(&format!("/api/v1/conversations/{g}")).await;
    assert!(d["last_message"].is_null(), "{d}");
    let listed = carol.ok("/api/v1/conversations").await;
    let mine = listed["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == g)
        .unwrap()
        .clone();
    assert!(mine["last_message"].is_null(), "{mine}");

    alice.say(&g, "a3", "after carol").await;
    assert_eq!(history_texts(&carol.history(&g, "").await), ["after carol"]);
    // Paging backwards from the newest or forwards from 0 gives no more.
    let newest = carol.history(&g, "").await["messages"][0]["seq"]
        .as_u64()
        .unwrap();
    let older = carol.history(&g, &format!("?before={newest}")).await;
    assert!(history_texts(&older).is_empty(), "{older}");
    assert_eq!(older["has_more"], false);
    assert_eq!(
        history_texts(&carol.history(&g, "?after=0").await),
        ["after carol"]
    );
    // The WebSocket replay agrees.
    let mut ws = carol.ws().await;
    let entries = ws.subscribe(0).await;
    assert_eq!(replayed_texts(&entries, &g), ["after carol"]);
    // Alice, there from the start, still reads everything.
    assert_eq!(history_texts(&alice.history(&g, "").await).len(), 3);

    // Leaving and coming back: the time away stays unread, both stretches of membership read.
    let leave = format!("/api/v1/conversations/{g}/members/carol");
    assert_eq!(carol.call(Method::DELETE, &leave, None).await.status, 204);
    alice.say(&g, "a4", "while carol is away").await;
    let r = alice
        .post(
            &format!("/api/v1/conversations/{g}/members"),
            json!({"users": ["carol"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    alice.say(&g, "a5", "carol is back").await;
    assert_eq!(
        history_texts(&carol.history(&g, "").await),
        ["after carol", "carol is back"]
    );
    assert_eq!(
        history_texts(&carol.history(&g, "?limit=1").await),
        ["carol is back"]
    );
    let mut ws = carol.ws().await;
    assert_eq!(
        replayed_texts(&ws.subscribe(0).await, &g),
        ["after carol", "carol is back"]
    );
}

#[tokio::test]
async fn a_channel_shows_its_whole_past_to_members_over_rest_and_replay() {
    let server = TestServer::start().await;
    let p = people(&server, &["alice", "dave"], &[]).await;
    let (alice, dave) = (&p[0], &p[1]);
    let r = alice
        .post(
            "/api/v1/conversations",
            json!({"kind": "channel", "name": "control-room"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let ch = r.json()["id"].as_str().unwrap().to_string();
    alice.say(&ch, "c1", "before dave").await;
    let join = format!("/api/v1/conversations/{ch}/join");
    assert_eq!(dave.post(&join, json!({})).await.status, 200);

    assert_eq!(history_texts(&dave.history(&ch, "").await), ["before dave"]);
    let d = dave.ok(&format!("/api/v1/conversations/{ch}")).await;
    assert_eq!(d["last_message"]["text"], "before dave");
    let mut ws = dave.ws().await;
    assert_eq!(replayed_texts(&ws.subscribe(0).await, &ch), ["before dave"]);

    // After leaving, what came later is not theirs (and history needs membership at all).
    assert_eq!(
        dave.post(&format!("/api/v1/conversations/{ch}/leave"), json!({}))
            .await
            .status,
        204
    );
    alice.say(&ch, "c2", "after dave left").await;
    let mut ws = dave.ws().await;
    assert_eq!(replayed_texts(&ws.subscribe(0).await, &ch), ["before dave"]);
}
