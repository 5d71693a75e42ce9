//! Reading events back over the real server: every filter of `GET /api/v1/events`, cursor paging,
//! one event with its chain fields, CSV/JSONL export, and live events on the socket.

use std::sync::Arc;

use hyper::Method;
use serde_json::{Value, json};

use crate::chat_support::{Api, PW, Ws};
use crate::support::{Client, Resp, TestServer};
use plantwire::clock::ManualClock;
use plantwire::log::{Author, NewEntry};
use plantwire::store::Role;

/// 2027-01-15T08:00:00Z in µs.
const T0: i64 = 1_800_000_000_000_000;
const SECOND: i64 = 1_000_000;

fn seqs(v: &Value) -> Vec<u64> {
    v["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events in {v}"))
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

async fn publish(client: &Client, token: &str, body: Value) -> u64 {
    let res = client.post_json("/api/v1/events", Some(token), &body).await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    res.json()["seq"].as_u64().unwrap()
}

async fn get(api: &Api, path: &str) -> Resp {
    api.call(Method::GET, path, None).await
}

/// Follows `next` from `first_query` to the end and returns every page's seqs.
async fn pages(api: &Api, base: &str, desc: bool) -> Vec<Vec<u64>> {
    let mut out = Vec::new();
    let mut path = base.to_string();
    loop {
        let page = api.ok(&path).await;
        out.push(seqs(&page));
        let Some(next) = page["next"].as_u64() else {
            return out;
        };
        let cursor = if desc { "before" } else { "after" };
        path = format!("{base}&{cursor}={next}");
    }
}

#[tokio::test]
async fn every_filter_narrows_and_paging_follows_next_both_ways() {
    let clock = Arc::new(ManualClock::new(T0 - 60 * SECOND));
    let server =
        TestServer::start_full(tempfile::TempDir::new().unwrap(), clock.clone(), |_| {}).await;
    let pump = server.device("pump-7").await;
    let valve = server.device("valve-2").await;
    server.user("olga", Role::Operator, PW).await;
    let client = server.client();
    let olga = Api::login(&client, "olga", PW).await;

    clock.set_us(T0);
    let e1 = publish(
        &client,
        &pump,
        json!({"source": "pump-7", "type": "run", "severity": "info"}),
    )
    .await;
    clock.set_us(T0 + SECOND);
    let e2 = publish(
        &client,
        &pump,
        json!({"source": "pump-7", "type": "pressure.high", "severity": "warning"}),
    )
    .await;
    clock.set_us(T0 + 2 * SECOND);
    let e3 = publish(
        &client,
        &valve,
        json!({"source": "valve-2", "type": "stuck", "severity": "critical"}),
    )
    .await;
    clock.set_us(T0 + 3 * SECOND);
    // A manual event about the same source, by a person: not the device's.
    let manual = olga
        .post(
            "/api/v1/events/manual",
            json!({"source": "pump-7", "type": "leak", "severity": "error"}),
        )
        .await;
    assert_eq!(manual.status, 201, "{:?}", manual.body);
    let e4 = manual.json()["seq"].as_u64().unwrap();
    clock.set_us(T0 + 4 * SECOND);
    let e5 = publish(
        &client,
        &pump,
        json!({"source": "pump-7", "type": "run", "severity": "debug"}),
    )
    .await;

    let q = |p: &str| format!("/api/v1/events?{p}");
    assert_eq!(seqs(&olga.ok(&q("")).await), [e1, e2, e3, e4, e5]);
    // Minimum severity.
    assert_eq!(seqs(&olga.ok(&q("severity=warning")).await), [e2, e3, e4]);
    assert_eq!(seqs(&olga.ok(&q("severity=Critical")).await), [e3]);
    assert_eq!(
        seqs(&olga.ok(&q("severity=debug")).await),
        [e1, e2, e3, e4, e5]
    );
    // Device: its own events only, not a person's about the same source.
    assert_eq!(seqs(&olga.ok(&q("device=pump-7")).await), [e1, e2, e5]);
    assert_eq!(seqs(&olga.ok(&q("device=valve-2")).await), [e3]);
    assert_eq!(
        seqs(&olga.ok(&q("device=pump-7&severity=warning")).await),
        [e2]
    );
    assert_eq!(
        seqs(&olga.ok(&q("source=pump-7&severity=notice")).await),
        [e2, e4]
    );
    assert_eq!(seqs(&olga.ok(&q("device=nobody")).await), Vec::<u64>::new());
    // Time bounds, inclusive, in both forms and the old aliases.
    let window = [e2, e3, e4];
    for p in [
        format!("since={}&until={}", T0 + SECOND, T0 + 3 * SECOND),
        "since=2027-01-15T08:00:01Z&until=2027-01-15T08:00:03Z".to_string(),
        "since=2027-01-15T09:00:01%2B01:00&until=2027-01-15T08:00:03.000000Z".to_string(),
        format!("since_us={}&until_us={}", T0 + SECOND, T0 + 3 * SECOND),
    ] {
        assert_eq!(seqs(&olga.ok(&q(&p)).await), window, "{p}");
    }
    assert_eq!(
        seqs(
            &olga
                .ok(&q("since=2027-01-15T08:00:02Z&severity=error"))
                .await
        ),
        [e3, e4]
    );
    assert_eq!(
        seqs(&olga.ok(&q("until=2027-01-15T07:00:00Z")).await),
        Vec::<u64>::new()
    );
    // Paging: newest first with `before=next`, oldest first with `after=next`.
    assert_eq!(
        pages(&olga, &q("order=desc&limit=2"), true).await,
        [vec![e5, e4], vec![e3, e2], vec![e1]]
    );
    assert_eq!(
        pages(&olga, &q("limit=2"), false).await,
        [vec![e1, e2], vec![e3, e4], vec![e5]]
    );
    assert_eq!(
        pages(&olga, &q("device=pump-7&limit=1&order=desc"), true).await,
        [vec![e5], vec![e2], vec![e1]]
    );

    // Bad parameters: 400 with a stable code, nothing changes.
    let head = server.head_seq();
    for (p, code) in [
        ("severity=loud", "invalid_severity"),
        ("since=yesterday", "invalid_time"),
        ("until=2027-13-01T00:00:00Z", "invalid_time"),
        ("since=1&since_us=2", "invalid_query"),
        ("after=abc", "invalid_query"),
        ("colour=red", "invalid_query"),
        ("format=csv", "invalid_query"),
    ] {
        let res = get(&olga, &q(p)).await;
        assert_eq!(res.status, 400, "{p}: {:?}", res.body);
        assert_eq!(res.error_code(), code, "{p}");
    }
    assert_eq!(server.head_seq(), head);
    server.stop().await;
}

#[tokio::test]
async fn an_event_published_before_50_000_chat_messages_is_found_by_a_filtered_query() {
    let server = TestServer::start().await;
    let boiler = server.device("boiler-1").await;
    let pump = server.device("pump-7").await;
    let client = server.client();
    let wanted = publish(
        &client,
        &boiler,
        json!({"source": "boiler-1", "type": "flame.out", "severity": "critical"}),
    )
    .await;
    // Routine events of every other kind around it, then 50,000 chat messages in batches.
    for n in 0..20 {
        publish(
            &client,
            &pump,
            json!({"source": "pump-7", "type": "run", "message": format!("{n}")}),
        )
        .await;
    }
    for batch in 0..10u32 {
        server
            .state()
            .log()
            .submit(move |tx| {
                for n in 0..5_000u32 {
                    let key = format!("k{batch}-{n}");
                    let e = NewEntry::json(
                        "chat.message",
                        "conv/g-noise",
                        &Author::user("alice"),
                        &json!({"type": "message", "conv": "g-noise", "key": key, "text": "noise", "mentions": []}),
                    )?;
                    tx.append(e)?;
                }
                Ok(())
            })
            .await
            .unwrap();
    }
    publish(&client, &pump, json!({"source": "pump-7", "type": "run"})).await;
    assert!(server.head_seq() > wanted + 50_000);
    server.user("vera", Role::Viewer, PW).await;
    let vera = Api::login(&client, "vera", PW).await;
    for p in [
        "severity=critical",
        "device=boiler-1",
        "severity=error&order=desc&limit=1",
        "device=boiler-1&severity=critical&since=2000-01-01T00:00:00Z",
        "type=flame.out",
        "source=boiler-1&order=desc",
    ] {
        let found = vera.ok(&format!("/api/v1/events?{p}")).await;
        assert_eq!(seqs(&found), [wanted], "{p}");
        assert!(found.get("next").is_none(), "{p}: {found}");
    }
    server.stop().await;
}

#[tokio::test]
async fn one_event_is_read_with_its_seq_prev_and_hash() {
    let server = TestServer::start().await;
    let pump = server.device("pump-7").await;
    let client = server.client();
    let seq = publish(
        &client,
        &pump,
        json!({"source": "pump-7", "type": "run", "attributes": {"rpm": 1450}}),
    )
    .await;
    server.user("vera", Role::Viewer, PW).await;
    let vera = Api::login(&client, "vera", PW).await;
    let got = vera.ok(&format!("/api/v1/events/{seq}")).await;
    let log = server.state().log();
    let rtx = log.read().unwrap();
    let entry = log.entry(&rtx, seq).unwrap().unwrap();
    assert_eq!(got["seq"], seq);
    assert_eq!(got["hash"], hex::encode(entry.hash));
    assert_eq!(got["prev"], hex::encode(entry.prev));
    assert_eq!(got["author"], "device:pump-7");
    assert_eq!(got["stream"], "events/pump-7");
    assert_eq!(got["body"]["attributes"]["rpm"], 1450);
    // A seq that is not an event (the first admin's creation), one past the head, not a number.
    for s in ["1", &(server.head_seq() + 1).to_string(), "abc"] {
        let res = get(&vera, &format!("/api/v1/events/{s}")).await;
        assert_eq!(res.status, 404, "{s}");
        assert_eq!(res.error_code(), "no_such_event");
    }
    server.stop().await;
}

/// A strict RFC 4180 reader: quoted fields with doubled quotes, CRLF line ends.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' => {
                assert!(field.is_empty(), "a quote inside an unquoted field");
                quoted = true;
            }
            ',' => row.push(std::mem::take(&mut field)),
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "CR without LF");
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            '\n' => panic!("a bare LF ends a line"),
            c => field.push(c),
        }
    }
    assert!(
        field.is_empty() && row.is_empty(),
        "the last line has no CRLF"
    );
    rows
}

#[tokio::test]
async fn exports_stream_every_page_as_csv_and_jsonl_matching_the_listing() {
    // 1,200 events at once: past the default per-device burst of 1,000.
    let server = TestServer::start_with(|c| c.events.burst = 10_000).await;
    let pump = server.device("pump-7").await;
    let other = server.device("valve-2").await;
    let client = server.client();
    // 1,200 events from the pump (more than two export pages), interleaved with another device.
    for b in 0..3 {
        let events: Vec<Value> = (0..400)
            .map(|n| {
                let message = match (b, n) {
                    (1, 7) => "=HYPERLINK(\"http://x\"),\"quoted\"\r\nsecond line".to_string(),
                    (2, 9) => "-2+3".to_string(),
                    _ => format!("reading {b}/{n}"),
                };
                json!({"source": "pump-7", "type": "reading", "severity": if n % 2 == 0 { "info" } else { "warning" },
                       "message": message, "attributes": {"n": n, "label": "a,b"}})
            })
            .collect();
        let res = client
            .post_json(
                "/api/v1/events/batch",
                Some(&pump),
                &json!({"events": events}),
            )
            .await;
        assert_eq!(res.status, 201, "{:?}", res.body);
        publish(
            &client,
            &other,
            json!({"source": "valve-2", "type": "stuck"}),
        )
        .await;
    }
    server.user("vera", Role::Viewer, PW).await;
    let vera = Api::login(&client, "vera", PW).await;
    // What the listing gives, page by page.
    let mut listed = Vec::new();
    let mut path = "/api/v1/events?device=pump-7&limit=500".to_string();
    loop {
        let page = vera.ok(&path).await;
        listed.extend(page["events"].as_array().unwrap().iter().cloned());
        let Some(next) = page["next"].as_u64() else {
            break;
        };
        path = format!("/api/v1/events?device=pump-7&limit=500&after={next}");
    }
    assert_eq!(listed.len(), 1200);

    let jsonl = get(&vera, "/api/v1/events/export?device=pump-7&format=jsonl").await;
    assert_eq!(jsonl.status, 200);
    assert_eq!(jsonl.headers["content-type"], "application/x-ndjson");
    let text = String::from_utf8(jsonl.body.to_vec()).unwrap();
    let exported: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(exported, listed);

    let csv = get(&vera, "/api/v1/events/export?device=pump-7&format=csv").await;
    assert_eq!(csv.status, 200);
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    assert!(
        csv.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("events.csv")
    );
    let rows = parse_csv(std::str::from_utf8(&csv.body).unwrap());
    assert_eq!(
        rows[0],
        [
            "seq",
            "ts",
            "ts_us",
            "by",
            "source",
            "type",
            "severity",
            "message",
            "attributes",
            "occurred_at_us",
            "condition",
            "state"
        ]
    );
    assert_eq!(rows.len(), 1201);
    for (row, e) in rows[1..].iter().zip(&listed) {
        assert_eq!(row[0], e["seq"].to_string());
        assert_eq!(row[2], e["ts_us"].to_string());
        assert_eq!(row[3], "device:pump-7");
        assert_eq!(row[6], e["severity"].as_str().unwrap());
        let attrs: Value = serde_json::from_str(&row[8]).unwrap();
        assert_eq!(attrs, e["attributes"]);
        let message = e["message"].as_str().unwrap();
        if message.starts_with(['=', '-']) {
            assert_eq!(row[7], format!("'{message}"), "formula guard");
        } else {
            assert_eq!(row[7], message);
        }
    }
    assert!(rows.iter().any(|r| r[7].starts_with("'=HYPERLINK")));

    // Accept picks the format; `limit` caps the rows; filters apply as in the listing.
    let res = vera
        .client
        .send(
            vera.client
                .request(
                    Method::GET,
                    "/api/v1/events/export?severity=warning&limit=10",
                )
                .header("authorization", format!("Bearer {}", vera.token))
                .header("accept", "application/x-ndjson")
                .body(Default::default())
                .unwrap(),
        )
        .await;
    assert_eq!(res.headers["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = std::str::from_utf8(&res.body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 10);
    assert!(lines.iter().all(|e| e["severity"] == "warning"));
    let res = get(&vera, "/api/v1/events/export?format=xml").await;
    assert_eq!(res.status, 400);
    assert_eq!(res.error_code(), "invalid_format");
    let res = get(&vera, "/api/v1/events/export?severity=loud").await;
    assert_eq!(res.error_code(), "invalid_severity");
    server.stop().await;
}

#[tokio::test]
async fn signed_in_users_get_events_live_and_resume_by_seq_and_devices_cannot_open_the_socket() {
    let server = TestServer::start().await;
    let pump = server.device("pump-7").await;
    let client = server.client();
    server.user("vera", Role::Viewer, PW).await;
    let vera = Api::login(&client, "vera", PW).await;

    // A device token is not a person's: no socket.
    let refused = Ws::connect(&client, &[("authorization", format!("Bearer {pump}"))]).await;
    assert_eq!(refused.err(), Some(401));

    let mut ws = vera.ws().await;
    let head = ws.head();
    ws.send(json!({"type": "subscribe", "since": head, "domains": ["events"]}))
        .await;
    ws.next_of("caught_up").await;
    let live = publish(
        &client,
        &pump,
        json!({"source": "pump-7", "type": "run", "severity": "warning"}),
    )
    .await;
    let frame = ws.next_entry("event").await;
    assert_eq!(frame["seq"], live);
    drop(ws);

    // Missed while away: replayed from the last seq seen, then live again.
    let missed = publish(&client, &pump, json!({"source": "pump-7", "type": "stop"})).await;
    let mut ws = vera.ws().await;
    ws.send(json!({"type": "subscribe", "since": live, "domains": ["events"]}))
        .await;
    let mut replayed = Vec::new();
    loop {
        let f = ws.next().await;
        match f["type"].as_str().unwrap() {
            "entry" => replayed.push(f["seq"].as_u64().unwrap()),
            "caught_up" => break,
            _ => {}
        }
    }
    assert_eq!(replayed, [missed]);
    let after = publish(&client, &pump, json!({"source": "pump-7", "type": "run"})).await;
    assert_eq!(ws.next_entry("event").await["seq"], after);
    server.stop().await;
}

#[tokio::test]
async fn an_export_stops_at_the_configured_row_cap() {
    let server = TestServer::start_with(|c| c.events.export_max_rows = 700).await;
    let pump = server.device("pump-7").await;
    let client = server.client();
    let events: Vec<Value> = (0..900)
        .map(|n| json!({"source": "pump-7", "type": "reading", "message": format!("r{n}")}))
        .collect();
    let res = client
        .post_json(
            "/api/v1/events/batch",
            Some(&pump),
            &json!({"events": events}),
        )
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    server.user("vera", Role::Viewer, PW).await;
    let vera = Api::login(&client, "vera", PW).await;
    for (query, rows) in [("", 700), ("&limit=5000", 700), ("&limit=3", 3)] {
        let res = get(&vera, &format!("/api/v1/events/export?format=jsonl{query}")).await;
        assert_eq!(res.status, 200);
        let lines = std::str::from_utf8(&res.body).unwrap().lines().count();
        assert_eq!(lines, rows, "{query}");
    }
    server.stop().await;
}
