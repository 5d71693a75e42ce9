//! ntfy for alarms: the clear by sequence id on the publish side, and the subscribe side (JSON
//! stream, SSE, poll, since) read by a client written here from ntfy's documented wire format.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::chat_support::{Api, PW, people};
use crate::support::{Client, TestServer, test_author};

/// An open streaming response, read chunk by chunk.
pub(crate) struct Stream {
    body: Incoming,
    buf: String,
    _conn: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Stream {
    /// Reads until `sep` and returns what came before it (without it).
    pub(crate) async fn until(&mut self, sep: &str) -> String {
        loop {
            if let Some(i) = self.buf.find(sep) {
                let out = self.buf[..i].to_string();
                self.buf.drain(..i + sep.len());
                return out;
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("nothing within 10 s")
                .expect("stream ended")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                self.buf.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }

    /// Whether the stream ends within 10 s (whatever it still sends before).
    async fn ends(&mut self) -> bool {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.body.frame()).await {
                Err(_) => return false,
                Ok(None | Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// ntfy JSON stream: one object a line.
    async fn json_line(&mut self) -> Value {
        serde_json::from_str(&self.until("\n").await).unwrap()
    }

    /// One SSE event: its `event:` (or `message`) and the JSON of its `data:`.
    async fn sse_event(&mut self) -> (String, Value) {
        let block = self.until("\n\n").await;
        let mut event = "message".to_string();
        let mut data = Value::Null;
        for line in block.lines() {
            if let Some(e) = line.strip_prefix("event: ") {
                event = e.to_string();
            } else if let Some(d) = line.strip_prefix("data: ") {
                data = serde_json::from_str(d).unwrap();
            }
        }
        (event, data)
    }
}

pub(crate) async fn get_stream(
    c: &Client,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, Stream) {
    let (s, _, st) = get_stream_as(c, path, token.map(|t| format!("Bearer {t}"))).await;
    (s, st)
}

/// Opens `path` with `authorization` as the header value; answers the status, the response's
/// `WWW-Authenticate` and the body.
async fn get_stream_as(
    c: &Client,
    path: &str,
    authorization: Option<String>,
) -> (StatusCode, Option<String>, Stream) {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(c.tls().await))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut b = c.request(Method::GET, path);
    if let Some(v) = authorization {
        b = b.header("authorization", v);
    }
    let res = sender
        .send_request(b.body(Full::default()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    (
        status,
        challenge,
        Stream {
            body: res.into_body(),
            buf: String::new(),
            _conn: sender,
        },
    )
}

async fn device_alarm(c: &Client, token: &str, source: &str, priority: &str) -> u64 {
    let r = c
        .with_bearer(
            Method::POST,
            "/api/v1/alarms",
            token,
            Some(
                json!({"source": source, "condition": "pressure.high", "active": true,
                        "priority": priority, "message": "above 12 bar"}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.json()["seq"].as_u64().unwrap()
}

async fn ntfy(
    c: &Client,
    method: Method,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
) -> crate::support::Resp {
    let mut b = c
        .request(method, path)
        .header("authorization", format!("Bearer {token}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    c.send(b.body(Full::from("Pump 7 pressure high")).unwrap())
        .await
}

async fn alarm_of(api: &Api, source: &str) -> Value {
    let list = api.ok(&format!("/api/v1/alarms?source={source}")).await;
    list["alarms"][0].clone()
}

#[tokio::test]
async fn ntfy_clear_and_delete_by_sequence_id_clear_the_alarm_and_keep_its_priority() {
    let server = TestServer::start().await;
    let token = server.device("gw-1").await;
    let c = server.client();
    let ops = people(&server, &["olga"], &[]).await;
    let olga = &ops[0];
    let hdr = [("x-sequence-id", "p7"), ("x-priority", "5")];
    let r = ntfy(&c, Method::POST, "/ntfy/pump-7", &token, &hdr).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let a = alarm_of(olga, "pump-7").await;
    assert_eq!(
        (a["state"].as_str(), a["priority"].as_str()),
        (Some("unack"), Some("critical"))
    );

    let r = ntfy(&c, Method::PUT, "/ntfy/pump-7/p7/clear", &token, &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["event"], "message_clear");
    assert_eq!(r.json()["sequence_id"], "p7");
    let a = alarm_of(olga, "pump-7").await;
    assert_eq!(a["state"], "rtn_unack");
    assert_eq!(a["priority"], "critical");

    // Raised again by the next message with the sequence id, then deleted: cleared again.
    ntfy(&c, Method::POST, "/ntfy/pump-7", &token, &hdr).await;
    assert_eq!(alarm_of(olga, "pump-7").await["state"], "unack");
    let r = ntfy(&c, Method::DELETE, "/ntfy/pump-7/p7", &token, &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["event"], "message_delete");
    assert_eq!(alarm_of(olga, "pump-7").await["state"], "rtn_unack");

    // Bad input changes nothing; a user token is not a device.
    let head = server.head_seq();
    let bad = ntfy(&c, Method::PUT, "/ntfy/pump-7/bad%20id/clear", &token, &[]).await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    assert_eq!(bad.error_code(), "invalid_ntfy");
    let as_user = ntfy(&c, Method::DELETE, "/ntfy/pump-7/p7", &olga.token, &[]).await;
    assert_eq!(as_user.status, 401, "{:?}", as_user.body);
    assert_eq!(server.head_seq(), head);
}

#[tokio::test]
async fn an_ntfy_client_follows_alarm_topics_by_json_stream_sse_and_poll() {
    let server = TestServer::start().await;
    let token = server.device("plc-1").await;
    let c = server.client();
    let ops = people(&server, &["vic"], &["vic"]).await;
    let vic = &ops[0];

    // Refusals: no credentials, a device token, an unknown topic, a bad since.
    let (s, _) = get_stream(&c, "/ntfy/alarms/json", None).await;
    assert_eq!(s, 401);
    let (s, _) = get_stream(&c, "/ntfy/alarms/json", Some(&token)).await;
    assert_eq!(s, 401);
    let r = vic.get("/ntfy/pumps/json").await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (404, "no_such_topic".into())
    );
    let r = vic.get("/ntfy/alarms/json?since=yesterday").await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (400, "invalid_since".into())
    );

    // A viewer subscribes to high and above: first `open`, then only what is at least high.
    let (s, mut high) = get_stream(&c, "/ntfy/alarms-high/json", Some(&vic.token)).await;
    assert_eq!(s, 200);
    let first = high.json_line().await;
    assert_eq!(first["event"], "open");
    assert_eq!(first["topic"], "alarms-high");
    assert!(first["time"].as_i64().unwrap() > 0 && first["id"].is_string());

    let s1 = device_alarm(&c, &token, "pump-7", "high").await;
    let m = high.json_line().await;
    assert_eq!(m["event"], "message");
    assert_eq!(m["id"], format!("a{s1}"));
    assert_eq!(m["topic"], "alarms-high");
    assert_eq!(m["priority"], 4);
    assert!(
        m["message"]
            .as_str()
            .unwrap()
            .contains("pump-7 / pressure.high: above 12 bar"),
        "{m}"
    );
    assert!(
        m["title"].as_str().unwrap().contains("high alarm raised"),
        "{m}"
    );
    assert_eq!(m["tags"], json!(["rotating_light", "high"]));
    let s2 = device_alarm(&c, &token, "pump-8", "medium").await;
    let s3 = device_alarm(&c, &token, "pump-9", "critical").await;
    let m = high.json_line().await;
    assert_eq!(
        m["id"],
        format!("a{s3}"),
        "the medium one is not on alarms-high: {m}"
    );
    assert_eq!(m["priority"], 5);

    // Poll: what `since` names, then the end; no `open`.
    let all = vic.get("/ntfy/alarms/json?poll=1&since=all").await;
    assert_eq!(all.status, 200);
    let ids: Vec<String> = std::str::from_utf8(&all.body)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids, [format!("a{s1}"), format!("a{s2}"), format!("a{s3}")]);
    let after = vic
        .get(&format!("/ntfy/alarms/json?poll=1&since=a{s1}"))
        .await;
    assert_eq!(std::str::from_utf8(&after.body).unwrap().lines().count(), 2);
    let recent = vic.get("/ntfy/alarms-critical/json?poll=1&since=10m").await;
    assert_eq!(
        std::str::from_utf8(&recent.body).unwrap().lines().count(),
        1
    );

    // WebSocket: each event one JSON text message, `open` first.
    {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("wss://localhost:{}/ntfy/alarms/ws?since=all", c.addr.port());
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {}", vic.token).parse().unwrap(),
        );
        let (mut ws, _) = tokio_tungstenite::client_async(req, c.tls().await)
            .await
            .unwrap();
        let mut events = Vec::new();
        while events.len() < 4 {
            let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                events.push(serde_json::from_str::<Value>(t.as_str()).unwrap());
            }
        }
        assert_eq!(events[0]["event"], "open");
        assert_eq!(events[3]["id"], format!("a{s3}"));
    }

    // SSE: `event: open`, then the messages as `data:`.
    let (s, mut sse) = get_stream(&c, "/ntfy/alarms/sse?since=all", Some(&vic.token)).await;
    assert_eq!(s, 200);
    let (ev, data) = sse.sse_event().await;
    assert_eq!(
        (ev.as_str(), data["event"].as_str()),
        ("open", Some("open"))
    );
    for seq in [s1, s2, s3] {
        let (ev, data) = sse.sse_event().await;
        assert_eq!(ev, "message");
        assert_eq!(data["id"], format!("a{seq}"));
    }
}

#[tokio::test]
async fn a_user_holds_at_most_eight_subscriptions() {
    let server = TestServer::start().await;
    let c = server.client();
    let ops = people(&server, &["capped"], &["capped"]).await;
    let mut open = Vec::new();
    for _ in 0..8 {
        let (s, mut st) = get_stream(&c, "/ntfy/alarms/json", Some(&ops[0].token)).await;
        assert_eq!(s, 200);
        assert_eq!(st.json_line().await["event"], "open");
        open.push(st);
    }
    let r = ops[0].get("/ntfy/alarms/json").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.error_code(), "too_many_subscriptions");
    // Closing one frees its slot.
    drop(open.pop());
    let mut freed = false;
    for _ in 0..100 {
        let (s, st) = get_stream(&c, "/ntfy/alarms/json", Some(&ops[0].token)).await;
        if s == 200 {
            open.push(st);
            freed = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(freed);
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {pair}")
}

#[tokio::test]
async fn the_ntfy_app_s_basic_credentials_open_json_sse_and_auth_query_streams() {
    use base64::Engine;
    let server = TestServer::start().await;
    let token = server.device("plc-1").await;
    let c = server.client();
    people(&server, &["vic"], &["vic"]).await;

    let (s, _, mut json) = get_stream_as(&c, "/ntfy/alarms/json", Some(basic("vic", PW))).await;
    assert_eq!(s, 200);
    assert_eq!(json.json_line().await["event"], "open");
    let (s, _, mut sse) = get_stream_as(&c, "/ntfy/alarms/sse", Some(basic("vic", PW))).await;
    assert_eq!(s, 200);
    assert_eq!(sse.sse_event().await.0, "open");
    // ntfy's `?auth=`: the header value in base64 (URL alphabet, no padding), no header at all.
    let q = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(basic("vic", PW));
    let (s, _, mut by_query) =
        get_stream_as(&c, &format!("/ntfy/alarms/json?auth={q}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(by_query.json_line().await["event"], "open");

    let seq = device_alarm(&c, &token, "pump-7", "high").await;
    let m = json.json_line().await;
    assert_eq!(
        (m["event"].as_str(), m["id"].clone()),
        (Some("message"), json!(format!("a{seq}")))
    );
    let (ev, data) = sse.sse_event().await;
    assert_eq!(
        (ev.as_str(), data["id"].clone()),
        ("message", json!(format!("a{seq}")))
    );
    assert_eq!(by_query.json_line().await["id"], format!("a{seq}"));
}

#[tokio::test]
async fn a_wrong_basic_password_is_a_401_basic_challenge_and_counts_toward_lockout() {
    let server = TestServer::start_with(|c| c.auth.throttle_after = 3).await;
    let c = server.client();
    people(&server, &["vic"], &["vic"]).await;
    for _ in 0..3 {
        let (s, challenge, _) = get_stream_as(
            &c,
            "/ntfy/alarms/json",
            Some(basic("vic", "wrong password!")),
        )
        .await;
        assert_eq!(s, 401);
        assert_eq!(challenge.as_deref(), Some("Basic realm=\"plantwire\""));
    }
    // Locked out now, even with the right password.
    let (s, _, _) = get_stream_as(&c, "/ntfy/alarms/sse", Some(basic("vic", PW))).await;
    assert_eq!(s, 429);
    // The failures are security events in the log, as for sign-in, without the password.
    let log = server.state().log();
    let rtx = log.read().unwrap();
    let mut failed = 0;
    rtx.scan_log(1, |seq, raw| {
        let e = log.decode(seq, raw).unwrap();
        assert!(!String::from_utf8_lossy(&e.body).contains("wrong password!"));
        failed += usize::from(e.kind == "auth.login_failed");
        true
    })
    .unwrap();
    assert_eq!(failed, 3);
}

#[tokio::test]
async fn a_basic_stream_ends_when_its_user_is_disabled_or_their_password_changes() {
    let server = TestServer::start().await;
    let c = server.client();
    people(&server, &["vic", "ida"], &["vic"]).await;
    let (s, _, mut vic) = get_stream_as(&c, "/ntfy/alarms/json", Some(basic("vic", PW))).await;
    assert_eq!(s, 200);
    assert_eq!(vic.json_line().await["event"], "open");
    let (s, _, mut ida) = get_stream_as(&c, "/ntfy/alarms/sse", Some(basic("ida", PW))).await;
    assert_eq!(s, 200);
    assert_eq!(ida.sse_event().await.0, "open");

    let log = server.state().log();
    plantwire::users::set_status(
        log,
        "vic",
        plantwire::store::UserStatus::Disabled,
        &test_author(),
    )
    .await
    .unwrap();
    assert!(vic.ends().await, "a disabled user's stream must end");
    let (s, _, _) = get_stream_as(&c, "/ntfy/alarms/json", Some(basic("vic", PW))).await;
    assert_eq!(s, 403);

    let hash = server
        .state()
        .auth()
        .hasher
        .hash("another long passphrase 9")
        .await
        .unwrap();
    plantwire::users::set_password_hash(log, "ida", hash, false, &test_author())
        .await
        .unwrap();
    assert!(
        ida.ends().await,
        "a stream must end when its password changes"
    );
    let (s, _, _) = get_stream_as(&c, "/ntfy/alarms/json", Some(basic("ida", PW))).await;
    assert_eq!(s, 401);
}
