//! Search over the real server: words, prefixes and filters over messages, events and alarms,
//! what a user may see, edits and redactions, the raw store bytes, reindexing and bad queries.

use hyper::Method;
use serde_json::{Value, json};

use crate::chat_support::{Api, PW, people};
use crate::support::TestServer;

fn hits(v: &Value) -> Vec<(String, u64)> {
    v["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits in {v}"))
        .iter()
        .map(|h| {
            (
                h["kind"].as_str().unwrap().to_string(),
                h["seq"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn search(api: &Api, query: &str) -> Value {
    api.ok(&format!("/api/v1/search?{query}")).await
}

async fn publish(server: &TestServer, token: &str, body: Value) -> u64 {
    let res = server
        .client()
        .post_json("/api/v1/events", Some(token), &body)
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    res.json()["seq"].as_u64().unwrap()
}

#[tokio::test]
async fn finds_messages_events_and_alarms_only_where_the_user_may_look() {
    let server = TestServer::start().await;
    let ppl = people(&server, &["alice", "bob", "carol"], &[]).await;
    let (alice, bob, carol) = (&ppl[0], &ppl[1], &ppl[2]);
    let g = alice.group("shift-a", &["bob"]).await;
    let m1 = alice
        .say(&g, "k1", "Pump 7 cavitation again, checking the strainer")
        .await;
    let m2 = bob.say(&g, "k2", "Strainer looked clean yesterday").await;
    let secret = carol.direct("bob").await;
    let hidden = carol
        .say(&secret, "k3", "cavitation rumours are overblown")
        .await;
    let dev = server.device("pump-7").await;
    let ev = publish(
        &server,
        &dev,
        json!({"source": "pump-7", "type": "vibration.high", "message": "bearing noise",
               "attributes": {"note": "cavitation suspected", "rpm": 1450}}),
    )
    .await;
    let alarm = publish(
        &server,
        &dev,
        json!({"source": "pump-7", "type": "pressure", "severity": "error",
               "message": "suction pressure low", "condition": "suction.low"}),
    )
    .await;

    // A word in a message and in an event attribute; newest first; carol's DM stays hidden.
    let v = search(alice, "q=cavitation").await;
    assert_eq!(
        hits(&v),
        [("event".to_string(), ev), ("message".to_string(), m1)]
    );
    let msg = &v["hits"][1];
    assert_eq!(msg["conv"], g.as_str());
    assert_eq!(msg["author"], "user:alice");
    assert!(
        msg["snippet"].as_str().unwrap().contains("«cavitation»"),
        "{msg}"
    );
    assert!(v["hits"][0]["stream"].as_str().is_some());
    // Bob is in both conversations; carol only sees hers and the site-wide event.
    let v = search(bob, "q=cavitation").await;
    assert_eq!(
        hits(&v).iter().map(|h| h.1).collect::<Vec<_>>(),
        [ev, hidden, m1]
    );
    let v = search(carol, "q=cavitation&kind=message").await;
    assert_eq!(hits(&v), [("message".to_string(), hidden)]);

    // Prefixes, two words, and the filters.
    let v = search(alice, "q=strain*").await;
    assert_eq!(hits(&v).iter().map(|h| h.1).collect::<Vec<_>>(), [m2, m1]);
    let v = search(alice, "q=strainer+clean").await;
    assert_eq!(hits(&v).iter().map(|h| h.1).collect::<Vec<_>>(), [m2]);
    let v = search(alice, "q=strainer&author=bob").await;
    assert_eq!(hits(&v).iter().map(|h| h.1).collect::<Vec<_>>(), [m2]);
    let v = search(alice, &format!("q=strainer&conv={secret}")).await;
    assert!(hits(&v).is_empty());
    let v = search(alice, "q=cavitation&kind=event&author=pump-7").await;
    assert_eq!(hits(&v).iter().map(|h| h.1).collect::<Vec<_>>(), [ev]);
    let v = search(alice, "q=strainer&limit=1").await;
    assert_eq!(hits(&v).iter().map(|h| h.1).collect::<Vec<_>>(), [m2]);
    let next = v["next"].as_u64().unwrap();
    let v = search(alice, &format!("q=strainer&limit=1&before={next}")).await;
    assert_eq!(hits(&v).iter().map(|h| h.1).collect::<Vec<_>>(), [m1]);
    let v = search(alice, "q=strainer&until=1").await;
    assert!(hits(&v).is_empty());

    // The alarm the event raised is found by its text, with its occurrence.
    let v = search(alice, "q=suction&kind=alarm").await;
    let h = &v["hits"][0];
    assert_eq!(h["kind"], "alarm", "{v}");
    assert_eq!(h["alarm"].as_u64(), Some(h["seq"].as_u64().unwrap()));
    assert!(h["seq"].as_u64().unwrap() > alarm);
}

#[tokio::test]
async fn edits_are_found_by_new_words_and_redactions_and_forgotten_entries_not_at_all() {
    let server = TestServer::start().await;
    let ppl = people(&server, &["alice", "bob"], &[]).await;
    let alice = &ppl[0];
    let g = alice.group("maint", &["bob"]).await;
    let m = alice.say(&g, "k1", "replace the gasket on valve 3").await;
    let gone = alice.say(&g, "k2", "gasket order placed").await;
    assert_eq!(hits(&search(alice, "q=gasket").await).len(), 2);
    // Prefixes exactly as long as an indexed prefix length also find the word itself.
    assert_eq!(hits(&search(alice, "q=gasket*").await).len(), 2);
    assert_eq!(hits(&search(alice, "q=gas*").await).len(), 2);
    assert_eq!(
        hits(&search(alice, "q=the*").await),
        [("message".to_string(), m)]
    );

    let path = format!("/api/v1/conversations/{g}/messages/{m}");
    let r = alice
        .call(
            Method::PUT,
            &path,
            Some(json!({"text": "replace the diaphragm on valve 3"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = alice
        .call(
            Method::DELETE,
            &format!("/api/v1/conversations/{g}/messages/{gone}"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    assert!(hits(&search(alice, "q=gasket").await).is_empty());
    let v = search(alice, "q=diaphragm").await;
    assert_eq!(hits(&v), [("message".to_string(), m)]);
    assert!(
        v["hits"][0]["snippet"]
            .as_str()
            .unwrap()
            .contains("«diaphragm»")
    );
    // A word the edit kept is found once, on the message.
    assert_eq!(
        hits(&search(alice, "q=valve").await),
        [("message".to_string(), m)]
    );

    // What a retention purge forgets is never shown again.
    let other = alice.say(&g, "k3", "valve 9 replaced").await;
    assert_eq!(hits(&search(alice, "q=valve").await).len(), 2);
    plantwire::search::forget(server.state().log(), vec![other])
        .await
        .unwrap();
    assert_eq!(
        hits(&search(alice, "q=valve").await),
        [("message".to_string(), m)]
    );
}

#[tokio::test]
async fn the_store_file_holds_no_searched_word_and_reindex_gives_the_same_answers() {
    let server = TestServer::start().await;
    let ppl = people(&server, &["alice"], &[]).await;
    let alice = &ppl[0];
    let g = alice.group("quartermasters", &[]).await;
    alice
        .say(&g, "k1", "Xylophonic resonance heard near the quenchtower")
        .await;
    let dev = server.device("line-4").await;
    publish(
        &server,
        &dev,
        json!({"source": "line-4", "type": "note", "attributes": {"remark": "zanzibarite deposits"}}),
    )
    .await;
    let before = (
        search(alice, "q=xylophonic").await["hits"].clone(),
        search(alice, "q=zanzib*").await["hits"].clone(),
        search(alice, "q=quench*").await["hits"].clone(),
    );
    assert_eq!(before.0.as_array().unwrap().len(), 1);
    assert_eq!(before.1.as_array().unwrap().len(), 1);

    plantwire::search::reindex(server.state().log())
        .await
        .unwrap();
    let after = (
        search(alice, "q=xylophonic").await["hits"].clone(),
        search(alice, "q=zanzib*").await["hits"].clone(),
        search(alice, "q=quench*").await["hits"].clone(),
    );
    assert_eq!(before, after);

    let path = server.state().log().store().path().to_path_buf();
    let _dir = server.stop().await;
    let file = std::fs::read(path).unwrap();
    // The scan sees what is stored in clear (a conversation name)...
    assert!(file.windows(14).any(|w| w == b"quartermasters"));
    // ...and no word of a message or an event attribute.
    for word in [
        "xylophonic",
        "Xylophonic",
        "quenchtower",
        "zanzibarite",
        "zanzib",
    ] {
        assert!(
            !file.windows(word.len()).any(|w| w == word.as_bytes()),
            "{word} is in the store in clear"
        );
    }
}

#[tokio::test]
async fn bad_queries_are_refused_with_stable_codes() {
    let server = TestServer::start().await;
    server
        .user("alice", plantwire::store::Role::Operator, PW)
        .await;
    let alice = Api::login(&server.client(), "alice", PW).await;
    let long = "a".repeat(300);
    let many: String = (0..9).map(|i| format!("w{i}+")).collect();
    for (query, code) in [
        ("q=", "empty_query"),
        ("q=%21%21", "empty_query"),
        (&format!("q={long}")[..], "query_too_long"),
        (&format!("q={many}")[..], "too_many_terms"),
        ("q=pu*", "prefix_too_short"),
        ("q=pump&limit=0", "invalid_limit"),
        ("q=pump&limit=101", "invalid_limit"),
        ("q=pump&kind=video", "invalid_kind"),
        ("q=pump&since=yesterday", "invalid_time"),
        ("q=pump&since=5&until=4", "invalid_range"),
        ("q=pump&conv=c1&kind=event", "invalid_query"),
        ("q=pump&colour=red", "invalid_query"),
        ("q=pump&limit=x", "invalid_query"),
    ] {
        let r = alice.get(&format!("/api/v1/search?{query}")).await;
        assert_eq!(
            (r.status.as_u16(), r.error_code().as_str()),
            (400, code),
            "{query}"
        );
    }
    let r = server.client().get("/api/v1/search?q=pump").await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn search_reindex_runs_offline_and_through_the_running_server() {
    use crate::process::{Running, command, default_server_section, init, write_config};
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "{}[auth]\nargon2_memory_kib = 64\nargon2_iterations = 1\n",
            default_server_section()
        ),
    );
    let c = cfg.to_str().unwrap();
    init(&cfg);
    let run = |args: &[&str]| {
        let o = command(args).current_dir(dir.path()).output().unwrap();
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        );
        assert!(o.status.success(), "{out}{err}");
        (out, err)
    };
    let (out, _) = run(&["search", "reindex", "--config", c]);
    assert!(out.contains("search index rebuilt"), "{out}");
    let server = Running::start(&cfg);
    let (out, err) = run(&["search", "reindex", "--config", c]);
    assert!(out.contains("search index rebuilt"), "{out}");
    assert!(err.contains("through the running server"), "{err}");
    drop(server);
}

/// An incident answer is searchable: its members find it as a message hit in the incident's
/// conversation (the answer's seq), someone outside the incident does not.
#[tokio::test]
async fn incident_answers_are_found_by_the_incidents_members_only() {
    let server = TestServer::start().await;
    server.user("boss", plantwire::store::Role::Admin, PW).await;
    let boss = Api::login(&server.client(), "boss", PW).await;
    let ppl = people(&server, &["olga", "carl"], &[]).await;
    let (olga, carl) = (&ppl[0], &ppl[1]);
    let template = json!({"id": "trip", "name": "Trip", "title": "{source} tripped",
        "questions": [{"id": "notes", "label": "Notes", "type": "text", "max_length": 200}]});
    let r = boss.post("/api/v1/templates", template).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let dev = server.device("pump-7").await;
    let raised = server
        .client()
        .with_bearer(
            Method::POST,
            "/api/v1/alarms",
            &dev,
            Some(
                json!({"source": "pump-7", "condition": "trip", "active": true,
                "priority": "high", "message": "pump tripped"}),
            ),
        )
        .await;
    assert_eq!(raised.status, 201, "{:?}", raised.body);
    let alarm = raised.json()["id"].as_u64().unwrap();
    let r = olga
        .post(
            "/api/v1/incidents",
            json!({"template": "trip", "alarm": alarm}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let r = olga
        .post(
            &format!("/api/v1/incidents/{id}/answers"),
            json!({"answers": {"notes": "impeller galled by debris"}}),
        )
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let answered = r.json()["seq"].as_u64().unwrap();

    let found = search(olga, "q=galled").await;
    assert_eq!(hits(&found), [("message".to_string(), answered)], "{found}");
    assert_eq!(found["hits"][0]["conv"], id.as_str());
    assert!(
        found["hits"][0]["snippet"]
            .as_str()
            .unwrap()
            .contains("«galled»"),
        "{found}"
    );
    let prefix = search(olga, "q=impel*").await;
    assert_eq!(hits(&prefix).len(), 1, "{prefix}");
    let outside = search(carl, "q=galled").await;
    assert!(hits(&outside).is_empty(), "{outside}");
}
