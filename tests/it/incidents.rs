//! Incidents and question templates through the real server: placeholders filled from a device's
//! alarm, every field type accepted and refused per field with the chain head unmoved, pinned
//! template versions, rules across a retried raise and a restart, members and viewers, and a
//! report whose hashes match the log and catch a flipped byte.

use hyper::Method;
use plantwire::store::Role;
use serde_json::{Value, json};

use crate::chat_support::{Api, PW, people};
use crate::support::{Client, Resp, TestServer};

async fn admin(server: &TestServer, name: &str) -> Api {
    server.user(name, Role::Admin, PW).await;
    Api::login(&server.client(), name, PW).await
}

async fn device_raise(c: &Client, token: &str, body: Value) -> Resp {
    c.with_bearer(Method::POST, "/api/v1/alarms", token, Some(body))
        .await
}

fn pump(active: bool) -> Value {
    json!({"source": "pump-7", "condition": "pressure.high", "active": active, "priority": "high",
           "message": "discharge pressure above 12 bar", "attributes": {"bar": 12.4, "line": "B"}})
}

fn trip_template() -> Value {
    json!({
        "id": "pump-trip",
        "name": "Pump trip",
        "title": "{source} tripped at {attr.bar} bar ({priority}, {site})",
        "questions": [
            {"id": "cause", "label": "Why did {source} trip on line {attr.line}?", "type": "choice",
             "options": ["seal", "bearing", "other"], "required": true,
             "help": "Flow was {attr.flow} at {occurred_at}"},
            {"id": "notes", "label": "Notes", "type": "text", "max_length": 200}
        ]
    })
}

/// Every field type, each with its options.
fn all_types_template() -> Value {
    json!({
        "id": "all-types",
        "name": "All types",
        "title": "Check of {source}",
        "questions": [
            {"id": "wo", "label": "Work order", "type": "text", "max_length": 12,
             "pattern": "WO-\\d{4,6}", "required": true},
            {"id": "bar", "label": "Pressure", "type": "number", "min": 0, "max": 16,
             "unit": "bar", "decimals": 1},
            {"id": "cause", "label": "Cause", "type": "choice", "options": ["seal", "bearing"]},
            {"id": "checks", "label": "Checks", "type": "multi_choice",
             "options": ["valves", "filter", "motor"]},
            {"id": "restarted", "label": "Restarted?", "type": "boolean"},
            {"id": "at", "label": "Restarted at", "type": "datetime"},
            {"id": "photo", "label": "Gauge photo", "type": "file",
             "allowed_types": ["image/*"], "max_bytes": 4096},
            {"id": "pdf", "label": "Report", "type": "file", "allowed_types": ["application/pdf"]}
        ]
    })
}

fn png(n: usize) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend((0..n.saturating_sub(8)).map(|i| (i * 31 % 251) as u8));
    v
}

async fn upload(api: &Api, name: &str, data: Vec<u8>) -> String {
    let req = api
        .client
        .request(Method::POST, &format!("/api/v1/attachments?name={name}"))
        .header("authorization", format!("Bearer {}", api.token))
        .header("content-type", "image/png")
        .body(http_body_util::Full::from(data))
        .unwrap();
    let r = api.client.send(req).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.json()["id"].as_str().unwrap().to_string()
}

async fn created(api: &Api, path: &str, body: Value) -> Value {
    let r = api.post(path, body).await;
    assert_eq!(r.status, 201, "POST {path}: {:?}", r.body);
    r.json()
}

async fn answer(api: &Api, id: &str, answers: Value) -> Resp {
    api.post(
        &format!("/api/v1/incidents/{id}/answers"),
        json!({ "answers": answers }),
    )
    .await
}

async fn get_accept(api: &Api, path: &str, accept: &str) -> Resp {
    let req = api
        .client
        .request(Method::GET, path)
        .header("authorization", format!("Bearer {}", api.token))
        .header("accept", accept)
        .body(http_body_util::Full::default())
        .unwrap();
    api.client.send(req).await
}

/// The per-field errors of a 422 refusal with `code`.
fn fields(r: &Resp, code: &str) -> serde_json::Map<String, Value> {
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.error_code(), code);
    r.json()["fields"].as_object().cloned().unwrap()
}

#[tokio::test]
async fn placeholders_are_filled_from_a_device_alarm_and_unknown_ones_are_refused_at_save() {
    let server = TestServer::start().await;
    let token = server.device("plc-3").await;
    let boss = admin(&server, "boss").await;
    let ops = people(&server, &["olga"], &[]).await;
    let olga = &ops[0];

    // An unknown placeholder is refused when saved, field by field, and nothing is written.
    let head = server.head_seq();
    let mut bad = trip_template();
    bad["title"] = json!("{source} at {pressure}");
    bad["questions"][1]["help"] = json!("see {attr.}");
    let r = boss.post("/api/v1/templates", bad).await;
    let f = fields(&r, "invalid_template");
    assert!(f["title"].as_str().unwrap().contains("pressure"), "{f:?}");
    assert!(f.contains_key("questions[1].help"), "{f:?}");
    assert_eq!(server.head_seq(), head);
    // Operators do not write templates.
    let r = olga.post("/api/v1/templates", trip_template()).await;
    assert_eq!(r.status, 403, "{:?}", r.body);

    let t = created(&boss, "/api/v1/templates", trip_template()).await;
    assert_eq!(t["id"], "pump-trip");
    assert_eq!(t["version"], 1);

    let raised = device_raise(&server.client(), &token, pump(true)).await;
    assert_eq!(raised.status, 201, "{:?}", raised.body);
    let alarm = raised.json()["id"].as_u64().unwrap();

    let opened = created(
        olga,
        "/api/v1/incidents",
        json!({"template": "pump-trip", "alarm": alarm}),
    )
    .await;
    let site = server.state().log().site().to_string();
    assert_eq!(
        opened["title"],
        format!("pump-7 tripped at 12.4 bar (high, {site})")
    );
    assert_eq!(opened["version"], 1);
    assert_eq!(opened["conversation"], opened["id"]);
    let q = &opened["questions"][0];
    assert_eq!(q["label_filled"], "Why did pump-7 trip on line B?");
    // A value the alarm lacks is shown as missing, never as an empty string.
    let help = q["help_filled"].as_str().unwrap();
    assert!(
        help.starts_with("Flow was ‹missing: attr.flow› at 20"),
        "{help}"
    );
    assert_eq!(opened["severity"], "high");

    // The alarm shows its incident; a second incident for the same occurrence is refused.
    let id = opened["id"].as_str().unwrap();
    let detail = olga.ok(&format!("/api/v1/alarms/{alarm}")).await;
    assert_eq!(detail["incident"], id);
    let again = olga
        .post(
            "/api/v1/incidents",
            json!({"template": "pump-trip", "alarm": alarm}),
        )
        .await;
    assert_eq!(again.status, 409);
    assert_eq!(again.error_code(), "alarm_has_incident");

    // The incident is a conversation of kind incident: chat history and messages work in it.
    let conv = olga.ok(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(conv["kind"], "incident");
    olga.say(id, "k1", "on my way").await;
}

#[tokio::test]
async fn each_field_type_accepts_and_refuses_per_field_and_a_refusal_moves_nothing() {
    let server = TestServer::start().await;
    let boss = admin(&server, "boss").await;
    let ops = people(&server, &["olga"], &[]).await;
    let olga = &ops[0];
    created(&boss, "/api/v1/templates", all_types_template()).await;
    let opened = created(
        olga,
        "/api/v1/incidents",
        json!({"template": "all-types", "title": "Manual check"}),
    )
    .await;
    let id = opened["id"].as_str().unwrap();
    let small = upload(olga, "gauge.png", png(1000)).await;
    let big = upload(olga, "big.png", png(5000)).await;

    // One bad value per field type: each refused with its own reason, and the head stays.
    let head = server.head_seq();
    let bad = [
        ("wo", json!("WO-12")),
        ("wo", json!("")),
        ("wo", json!(42)),
        ("bar", json!(16.5)),
        ("bar", json!(1.25)),
        ("bar", json!("3")),
        ("cause", json!("pump")),
        ("checks", json!(["valves", "valves"])),
        ("checks", json!(["coffee"])),
        ("restarted", json!("yes")),
        ("at", json!("yesterday")),
        ("photo", json!(big)),
        ("photo", json!("att-nope")),
        ("pdf", json!(small)),
        ("nope", json!(1)),
    ];
    for (qid, v) in bad {
        let r = answer(olga, id, json!({ qid: v.clone() })).await;
        let f = fields(&r, "invalid_answers");
        assert!(f.contains_key(qid), "{qid} = {v}: {f:?}");
        assert_eq!(server.head_seq(), head, "{qid} = {v} moved the head");
    }
    // All bad at once: every field named, nothing stored.
    let r = answer(
        olga,
        id,
        json!({"wo": "x", "bar": -1, "restarted": 1, "at": "2026-13-01T00:00:00Z"}),
    )
    .await;
    let f = fields(&r, "invalid_answers");
    assert_eq!(f.len(), 4, "{f:?}");
    assert_eq!(server.head_seq(), head);

    // Good values for every type, first partly, then the rest.
    let r = answer(olga, id, json!({"wo": "WO-12345", "bar": 12.4})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = answer(
        olga,
        id,
        json!({"cause": "seal", "checks": ["valves", "motor"], "restarted": true,
               "at": "2026-12-01T06:30:00+01:00", "photo": small}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let seq = r.json()["seq"].as_u64().unwrap();
    assert_eq!(server.head_seq(), seq);
    let view = olga.ok(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(view["answers"]["wo"]["value"], "WO-12345");
    assert_eq!(view["answers"]["photo"]["value"], small);
    assert_eq!(view["answers"]["photo"]["by"], "user:olga");
    // An amendment is a new entry; the view shows the newest answer.
    let r = answer(olga, id, json!({"bar": 11.0})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let view = olga.ok(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(view["answers"]["bar"]["value"], 11.0);
    assert_eq!(view["answers"]["wo"]["seq"].as_u64().unwrap(), seq - 1);
}

#[tokio::test]
async fn a_template_edit_leaves_an_open_incident_on_its_version() {
    let server = TestServer::start().await;
    let boss = admin(&server, "boss").await;
    let ops = people(&server, &["olga"], &[]).await;
    let olga = &ops[0];
    created(&boss, "/api/v1/templates", trip_template()).await;
    let first = created(olga, "/api/v1/incidents", json!({"template": "pump-trip"})).await;
    let first = first["id"].as_str().unwrap();

    let mut v2 = trip_template();
    v2.as_object_mut().unwrap().remove("id");
    v2["questions"][0]["options"] = json!(["corrosion"]);
    let r = boss
        .call(Method::PUT, "/api/v1/templates/pump-trip", Some(v2))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["version"], 2);
    let tpl = boss.ok("/api/v1/templates/pump-trip?version=1").await;
    assert_eq!(tpl["current"]["questions"][0]["options"][0], "seal");
    assert_eq!(tpl["versions"].as_array().unwrap().len(), 2);

    // The incident opened on v1 answers against v1.
    let view = olga.ok(&format!("/api/v1/incidents/{first}")).await;
    assert_eq!(view["version"], 1);
    assert_eq!(
        answer(olga, first, json!({"cause": "seal"})).await.status,
        201
    );
    let r = answer(olga, first, json!({"cause": "corrosion"})).await;
    fields(&r, "invalid_answers");

    // A new incident takes v2.
    let second = created(olga, "/api/v1/incidents", json!({"template": "pump-trip"})).await;
    assert_eq!(second["version"], 2);
    let second = second["id"].as_str().unwrap();
    fields(
        &answer(olga, second, json!({"cause": "seal"})).await,
        "invalid_answers",
    );
    assert_eq!(
        answer(olga, second, json!({"cause": "corrosion"}))
            .await
            .status,
        201
    );

    // Archived: no new incident, the open ones go on.
    let r = boss
        .post("/api/v1/templates/pump-trip/archive", json!({}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = olga
        .post("/api/v1/incidents", json!({"template": "pump-trip"}))
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error_code(), "template_archived");
    assert_eq!(
        answer(olga, first, json!({"notes": "done"})).await.status,
        201
    );
    let list = boss.ok("/api/v1/templates").await;
    assert!(list["templates"].as_array().unwrap().is_empty());
    let list = boss.ok("/api/v1/templates?archived=true").await;
    assert_eq!(list["templates"][0]["incidents"], 2);

    // Never deleted while in use; one never used is deleted, its entries stay in the log.
    let head = server.head_seq();
    let r = boss
        .call(Method::DELETE, "/api/v1/templates/pump-trip", None)
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (409, "template_in_use".into())
    );
    assert_eq!(server.head_seq(), head);
    created(&boss, "/api/v1/templates", all_types_template()).await;
    let r = olga
        .call(Method::DELETE, "/api/v1/templates/all-types", None)
        .await;
    assert_eq!(r.status, 403);
    let r = boss
        .call(Method::DELETE, "/api/v1/templates/all-types", None)
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(boss.get("/api/v1/templates/all-types").await.status, 404);
    assert_eq!(
        boss.ok("/api/v1/templates?archived=true").await["templates"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn states_follow_the_chain_resolve_needs_required_answers_and_reopen_a_reason() {
    let server = TestServer::start().await;
    let boss = admin(&server, "boss").await;
    let ops = people(&server, &["olga"], &[]).await;
    let olga = &ops[0];
    created(&boss, "/api/v1/templates", trip_template()).await;
    let id = created(olga, "/api/v1/incidents", json!({"template": "pump-trip"})).await;
    let id = id["id"].as_str().unwrap();
    let path = format!("/api/v1/incidents/{id}/state");
    let state = |s: &str, reason: Option<&str>| {
        let mut b = json!({ "state": s });
        if let Some(r) = reason {
            b["reason"] = json!(r);
        }
        olga.post(&path, b)
    };
    assert_eq!(state("investigating", None).await.status, 200);
    let head = server.head_seq();
    let f = fields(&state("resolved", None).await, "invalid_answers");
    assert!(f.contains_key("cause"), "{f:?}");
    assert_eq!(server.head_seq(), head);
    assert_eq!(answer(olga, id, json!({"cause": "seal"})).await.status, 201);
    assert_eq!(state("resolved", None).await.status, 200);
    let r = state("open", None).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (400, "reason_required".into())
    );
    assert_eq!(
        state("investigating", Some("seal leaks again"))
            .await
            .status,
        200
    );
    assert_eq!(state("closed", None).await.status, 200);
    let r = state("closed", None).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (409, "same_state".into())
    );
    let view = olga.ok(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(view["state"], "closed");
    assert!(view["acked_at_us"].as_i64().is_some());
    let r = answer(olga, id, json!({"notes": "late"})).await;
    assert_eq!(r.error_code(), "incident_closed");
    let closed = olga.ok("/api/v1/incidents?state=closed").await;
    assert_eq!(closed["incidents"].as_array().unwrap().len(), 1);
    let open = olga.ok("/api/v1/incidents?state=open").await;
    assert!(open["incidents"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn only_members_read_or_answer_and_viewers_read_without_answering() {
    let server = TestServer::start().await;
    let boss = admin(&server, "boss").await;
    let p = people(&server, &["olga", "otto", "vera"], &["vera"]).await;
    let (olga, otto, vera) = (&p[0], &p[1], &p[2]);
    created(&boss, "/api/v1/templates", trip_template()).await;
    let opened = created(
        olga,
        "/api/v1/incidents",
        json!({"template": "pump-trip", "members": ["vera"], "assignee": "olga"}),
    )
    .await;
    let id = opened["id"].as_str().unwrap();

    // A viewer who is a member reads but cannot answer or change the state.
    let view = vera.ok(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(view["can_answer"], false);
    let head = server.head_seq();
    let r = answer(vera, id, json!({"cause": "seal"})).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (403, "read_only".into())
    );
    let r = vera
        .post(
            &format!("/api/v1/incidents/{id}/state"),
            json!({"state": "investigating"}),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(server.head_seq(), head);
    // A viewer does not open incidents either.
    let r = vera
        .post("/api/v1/incidents", json!({"template": "pump-trip"}))
        .await;
    assert_eq!(r.status, 403);

    // A non-member learns nothing.
    for path in [
        format!("/api/v1/incidents/{id}"),
        format!("/api/v1/incidents/{id}/report"),
    ] {
        assert_eq!(otto.get(&path).await.status, 404, "{path}");
    }
    assert_eq!(answer(otto, id, json!({"cause": "seal"})).await.status, 404);
    // Not even a refusal tells a non-member which questions the incident has.
    let r = answer(otto, id, json!({"cause": "no such option", "nope": 1})).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (404, "no_such_incident".into())
    );
    let r = otto
        .post(
            &format!("/api/v1/incidents/{id}/state"),
            json!({"state": "resolved"}),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (404, "no_such_incident".into())
    );
    assert!(
        otto.ok("/api/v1/incidents").await["incidents"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(server.head_seq(), head);

    // Members list it; filters by assignee and severity apply.
    let mine = olga.ok("/api/v1/incidents?assignee=olga").await;
    assert_eq!(mine["incidents"][0]["id"], id);
    let none = olga.ok("/api/v1/incidents?severity=critical").await;
    assert!(none["incidents"].as_array().unwrap().is_empty());
    let r = olga.get("/api/v1/incidents?colour=red").await;
    assert_eq!(r.status, 400);

    // Once added through chat's membership, otto reads and answers.
    let r = olga
        .post(
            &format!("/api/v1/conversations/{id}/members"),
            json!({"users": ["otto"]}),
        )
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    assert_eq!(
        answer(otto, id, json!({"cause": "bearing"})).await.status,
        201
    );
}

/// Rewrites one stored log record with the server stopped.
fn flip_byte(dir: &std::path::Path, seq: u64) {
    use plantwire::store::LogRecord;
    use redb::{ReadableTable, TableDefinition};
    const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log_seq_record");
    let db = redb::Database::open(dir.join(plantwire::bootstrap::STORE_FILE)).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(LOG).unwrap();
        let mut rec = LogRecord::decode(t.get(seq).unwrap().unwrap().value()).unwrap();
        let n = rec.sealed.ciphertext.len();
        rec.sealed.ciphertext[n / 2] ^= 0x01;
        t.insert(seq, rec.encode().unwrap().as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

#[tokio::test]
async fn the_report_quotes_hashes_that_match_the_log_and_audit_flags_a_flipped_byte() {
    let server = TestServer::start().await;
    let token = server.device("plc-3").await;
    let boss = admin(&server, "boss").await;
    let ops = people(&server, &["olga"], &[]).await;
    let olga = &ops[0];
    created(&boss, "/api/v1/templates", trip_template()).await;
    let alarm = device_raise(&server.client(), &token, pump(true))
        .await
        .json()["id"]
        .as_u64()
        .unwrap();
    let id = created(
        olga,
        "/api/v1/incidents",
        json!({"template": "pump-trip", "alarm": alarm}),
    )
    .await;
    let id = id["id"].as_str().unwrap().to_string();
    olga.say(&id, "k1", "seal is leaking").await;
    let ack = olga
        .post(
            &format!("/api/v1/alarms/{alarm}/ack"),
            json!({"comment": "seen"}),
        )
        .await;
    assert!(ack.status.is_success(), "{:?}", ack.body);
    let answered = answer(olga, &id, json!({"cause": "seal"})).await.json()["seq"]
        .as_u64()
        .unwrap();
    for s in ["investigating", "resolved"] {
        let r = olga
            .post(
                &format!("/api/v1/incidents/{id}/state"),
                json!({"state": s}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }

    let r = get_accept(
        olga,
        &format!("/api/v1/incidents/{id}/report"),
        "application/json",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let report = r.json();
    let timeline = report["timeline"].as_array().unwrap();
    let kinds: Vec<&str> = timeline
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    for k in [
        "alarm.raise",
        "alarm.ack",
        "chat.created",
        "incident.opened",
        "chat.message",
        "incident.answered",
        "incident.state",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    assert!(report["time_to_ack_us"].as_i64().is_some());
    assert!(report["time_to_resolve_us"].as_i64().is_some());
    let people: Vec<&str> = report["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["user"].as_str().unwrap())
        .collect();
    assert!(people.contains(&"olga"), "{people:?}");
    // Every quoted hash is the log's own.
    {
        let log = server.state().log();
        let rtx = log.read().unwrap();
        for t in timeline {
            let seq = t["seq"].as_u64().unwrap();
            let e = log.entry(&rtx, seq).unwrap().unwrap();
            assert_eq!(t["hash"], hex::encode(e.hash), "seq {seq}");
            assert_eq!(e.computed_hash(), e.hash);
        }
    }
    assert!(timeline.iter().any(|t| t["seq"] == answered));

    // The printable page: HTML, no script, a strict policy, the stylesheet from the UI's assets.
    let r = get_accept(olga, &format!("/api/v1/incidents/{id}/report"), "text/html").await;
    assert_eq!(r.status, 200);
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    let html = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(!html.contains("<script"), "{html}");
    assert!(
        html.contains(&hex::encode(
            server
                .state()
                .log()
                .entry(&server.state().log().read().unwrap(), answered)
                .unwrap()
                .unwrap()
                .hash
        ))
    );
    let css = html
        .split("href=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let sheet = olga.get(&css).await;
    assert_eq!(sheet.status, 200, "{css}");

    // A flipped byte in the stored answer: the offline audit names that entry.
    let dir = server.stop().await;
    flip_byte(dir.path(), answered);
    let config = crate::support::test_config(dir.path());
    let (store, key, site) = plantwire::state::open_offline(&config).unwrap();
    let report = plantwire::log::verify(&store, &site, &key).unwrap();
    assert!(
        matches!(report.problem, Some(plantwire::log::Problem::Unreadable { seq, .. }) if seq == answered),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_rule_opens_one_incident_per_occurrence_across_a_retried_raise_and_a_restart() {
    let rules = |c: &mut plantwire::config::Config| {
        c.incidents.rules = vec![plantwire::config::IncidentRule {
            name: "pumps".into(),
            min_priority: plantwire::store::Priority::High,
            source: "pump-*".into(),
            template: "pump-trip".into(),
            members: vec!["olga".into()],
            roster: Some("mechanical".into()),
        }];
        c.incidents.rosters = [("mechanical".to_string(), vec!["olga".into(), "ravi".into()])]
            .into_iter()
            .collect();
    };
    let server = TestServer::start_with(rules).await;
    let token = server.device("plc-3").await;
    let boss = admin(&server, "boss").await;
    people(&server, &["olga", "ravi"], &[]).await;
    created(&boss, "/api/v1/templates", trip_template()).await;

    let raised = device_raise(&server.client(), &token, pump(true)).await;
    assert_eq!(raised.status, 201);
    let alarm = raised.json()["id"].as_u64().unwrap();
    // A low-priority alarm and a non-matching source open nothing.
    let mut low = pump(true);
    low["source"] = json!("pump-8");
    low["priority"] = json!("low");
    assert_eq!(
        device_raise(&server.client(), &token, low).await.status,
        201
    );
    let mut other = pump(true);
    other["source"] = json!("valve-1");
    assert_eq!(
        device_raise(&server.client(), &token, other).await.status,
        201
    );
    let incident = wait_for_incident(&server, &boss, alarm).await;

    // The device retries the raise: same occurrence, no second incident.
    let again = device_raise(&server.client(), &token, pump(true)).await;
    assert_eq!(again.json()["id"].as_u64().unwrap(), alarm);

    // Restart on the same state dir, retry once more. The rules' cursor is wound back to the
    // start of the log as if it had been lost, so the raise is handled again after the restart:
    // the alarm → incident link alone keeps it at one incident.
    let dir = server.stop().await;
    rewind_rules_cursor(dir.path());
    let server = TestServer::start_in(dir, rules).await;
    let boss = Api::login(&server.client(), "boss", PW).await;
    let again = device_raise(&server.client(), &token, pump(true)).await;
    assert_eq!(again.json()["id"].as_u64().unwrap(), alarm);
    // Acknowledged and cleared (back to normal), a new raise is a new occurrence: its own
    // incident, once.
    let ack = boss
        .post(
            &format!("/api/v1/alarms/{alarm}/ack"),
            json!({"comment": "seen"}),
        )
        .await;
    assert!(ack.status.is_success(), "{:?}", ack.body);
    assert_eq!(
        device_raise(&server.client(), &token, pump(false))
            .await
            .status,
        201
    );
    let next = device_raise(&server.client(), &token, pump(true))
        .await
        .json()["id"]
        .as_u64()
        .unwrap();
    assert_ne!(next, alarm);
    let second = wait_for_incident(&server, &boss, next).await;
    assert_ne!(second, incident);
    let all = boss.ok("/api/v1/incidents").await;
    let all = all["incidents"].as_array().unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    for i in all {
        assert_eq!(i["opened_by"], "system");
        assert_eq!(i["alarms"].as_array().unwrap().len(), 1);
    }
    let olga = Api::login(&server.client(), "olga", PW).await;
    let view = olga.ok(&format!("/api/v1/incidents/{incident}")).await;
    assert_eq!(
        view["title"],
        format!(
            "pump-7 tripped at 12.4 bar (high, {})",
            server.state().log().site()
        )
    );
    // Ravi was called in by the rule's roster `mechanical`.
    let ravi = Api::login(&server.client(), "ravi", PW).await;
    let path = format!("/api/v1/incidents/{incident}");
    assert_eq!(ravi.get(&path).await.status, 200);

    // A rule naming a roster the config does not define is refused at start.
    let dir = tempfile::tempdir().unwrap();
    let mut bad = crate::support::test_config(dir.path());
    rules(&mut bad);
    bad.incidents.rules[0].roster = Some("electrical".into());
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("incidents.rules.roster"), "{err}");
}

/// Sets the incident rules' cursor in `meta` back to 0, with the server stopped.
fn rewind_rules_cursor(dir: &std::path::Path) {
    use redb::TableDefinition;
    const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta_name_value");
    let db = redb::Database::open(dir.join(plantwire::bootstrap::STORE_FILE)).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(META)
        .unwrap()
        .insert("incident_rules_cursor", 0u64.to_be_bytes().as_slice())
        .unwrap();
    txn.commit().unwrap();
}

/// Waits (on the log, not the clock) until the rule has linked `alarm` to an incident.
async fn wait_for_incident(server: &TestServer, boss: &Api, alarm: u64) -> String {
    let log = server.state().log();
    let mut follower = log.follow(log.head(&log.read().unwrap()).unwrap()).unwrap();
    loop {
        let detail = boss.ok(&format!("/api/v1/alarms/{alarm}")).await;
        if let Some(i) = detail["incident"].as_str() {
            return i.to_string();
        }
        // The next committed entry, whatever it is, before looking again.
        let _ = follower.next().await;
    }
}

#[tokio::test]
async fn members_follow_an_incident_live_and_on_resume_others_never_see_it() {
    let server = TestServer::start().await;
    let boss = admin(&server, "boss").await;
    let p = people(&server, &["olga", "otto"], &[]).await;
    let (olga, otto) = (&p[0], &p[1]);
    created(&boss, "/api/v1/templates", trip_template()).await;
    let shared = olga.group("Shift", &["otto"]).await;
    let since = server.head_seq();
    let mut olga_ws = olga.ws().await;
    olga_ws.subscribe(since).await;
    let mut otto_ws = otto.ws().await;
    otto_ws.subscribe(since).await;

    let id = created(olga, "/api/v1/incidents", json!({"template": "pump-trip"})).await;
    let id = id["id"].as_str().unwrap().to_string();
    assert_eq!(
        answer(olga, &id, json!({"cause": "seal"})).await.status,
        201
    );
    let f = olga_ws.next_entry("incident.opened").await;
    assert_eq!(f["stream"], format!("conv/{id}"));
    let f = olga_ws.next_entry("incident.answered").await;
    assert_eq!(f["body"]["answers"]["cause"], "seal");
    // Otto, not a member, gets the next thing he may see and nothing of the incident before it.
    olga.say(&shared, "k-after", "after the incident").await;
    let f = otto_ws.next_of("entry").await;
    assert_eq!(f["kind"], "chat.message", "{f}");
    assert_eq!(f["body"]["text"], "after the incident");

    // On resume, a member is replayed the incident's entries; a non-member none of them.
    let mut again = olga.ws().await;
    let replayed = again.subscribe(since).await;
    let kinds: Vec<&str> = replayed
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"incident.opened") && kinds.contains(&"incident.answered"),
        "{kinds:?}"
    );
    let mut again = otto.ws().await;
    let replayed = again.subscribe(since).await;
    assert!(
        replayed
            .iter()
            .all(|f| !f["stream"].as_str().unwrap().ends_with(&id)),
        "{replayed:?}"
    );
}

#[tokio::test]
async fn assigning_calls_the_assignee_in_and_severity_changes_are_entries() {
    let server = TestServer::start().await;
    let boss = admin(&server, "boss").await;
    let p = people(&server, &["olga", "otto", "vera"], &["vera"]).await;
    let (olga, otto, vera) = (&p[0], &p[1], &p[2]);
    created(&boss, "/api/v1/templates", trip_template()).await;
    let id = created(
        olga,
        "/api/v1/incidents",
        json!({"template": "pump-trip", "members": ["vera"]}),
    )
    .await;
    let id = id["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/incidents/{id}/assign");
    assert_eq!(
        otto.get(&format!("/api/v1/incidents/{id}")).await.status,
        404
    );

    let head = server.head_seq();
    for (who, body, status, code) in [
        (olga, json!({}), 400, "invalid_assignment"),
        (olga, json!({"assignee": "nobody"}), 404, "no_such_user"),
        (vera, json!({"severity": "low"}), 403, "read_only"),
        (otto, json!({"assignee": "otto"}), 404, "no_such_incident"),
    ] {
        let r = who.post(&path, body.clone()).await;
        assert_eq!(
            (r.status.as_u16(), r.error_code()),
            (status, code.into()),
            "{body}"
        );
    }
    assert_eq!(server.head_seq(), head);

    let r = olga
        .post(&path, json!({"assignee": "Otto", "severity": "critical"}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let view = otto.ok(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(view["assignee"], "otto");
    assert_eq!(view["severity"], "critical");
    assert_eq!(view["can_answer"], true);
    let mine = otto
        .ok("/api/v1/incidents?assignee=otto&severity=critical")
        .await;
    assert_eq!(mine["incidents"][0]["id"], id.as_str());
    let r = otto.post(&path, json!({"assignee": ""})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(olga.ok(&format!("/api/v1/incidents/{id}")).await["assignee"].is_null());
}

#[tokio::test]
async fn an_incident_from_an_event_is_filled_from_it_and_its_report_quotes_it() {
    let server = TestServer::start().await;
    let token = server.device("plc-3").await;
    let boss = admin(&server, "boss").await;
    let ops = people(&server, &["olga"], &[]).await;
    let olga = &ops[0];
    created(&boss, "/api/v1/templates", trip_template()).await;
    let r = server
        .client()
        .post_json(
            "/api/v1/events",
            Some(&token),
            &json!({"source": "pump-3", "type": "vibration.high", "severity": "warning",
                    "message": "bearing noise", "attributes": {"bar": 7, "line": "C"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let seq = r.json()["seq"].as_u64().unwrap();
    let opened = created(
        olga,
        "/api/v1/incidents",
        json!({"template": "pump-trip", "event_seq": seq}),
    )
    .await;
    let site = server.state().log().site().to_string();
    assert_eq!(
        opened["title"],
        format!("pump-3 tripped at 7 bar (medium, {site})")
    );
    assert_eq!(
        opened["questions"][0]["label_filled"],
        "Why did pump-3 trip on line C?"
    );
    let id = opened["id"].as_str().unwrap();
    let report = get_accept(
        olga,
        &format!("/api/v1/incidents/{id}/report"),
        "application/json",
    )
    .await
    .json();
    let quoted = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["seq"] == seq)
        .cloned()
        .unwrap();
    assert_eq!(quoted["kind"], "event");
    let log = server.state().log();
    let e = log.entry(&log.read().unwrap(), seq).unwrap().unwrap();
    assert_eq!(quoted["hash"], hex::encode(e.hash));
    let r = olga
        .post(
            "/api/v1/incidents",
            json!({"template": "pump-trip", "event_seq": 999_999}),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (404, "no_such_event".into())
    );
}
