//! Helpers for the messaging tests: a signed-in REST session and a WebSocket client over the same
//! pinned TLS, speaking HTTP/1.1 (WebSockets upgrade from HTTP/1.1).

#![allow(dead_code)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::Method;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{Client, Resp, TestServer};

pub const PW: &str = "correct horse battery staple 7";

/// A signed-in user's REST session.
#[derive(Clone)]
pub struct Api {
    pub client: Client,
    pub token: String,
    pub user: String,
}

impl Api {
    pub async fn login(client: &Client, user: &str, pw: &str) -> Self {
        let res = client
            .post_json(
                "/api/v1/auth/login",
                None,
                &json!({"username": user, "password": pw}),
            )
            .await;
        assert_eq!(res.status, 200, "login {user}: {:?}", res.body);
        Self {
            client: client.clone(),
            token: res.json()["access_token"].as_str().unwrap().to_string(),
            user: user.to_string(),
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut b = self
            .client
            .request(method, path)
            .header("authorization", format!("Bearer {}", self.token));
        let body = match body {
            Some(v) => {
                b = b.header("content-type", "application/json");
                Full::from(serde_json::to_vec(&v).unwrap())
            }
            None => Full::default(),
        };
        self.client.send(b.body(body).unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body)).await
    }

    /// GET that must succeed, as JSON.
    pub async fn ok(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status, 200, "GET {path}: {:?}", r.body);
        r.json()
    }

    /// Sends a message over REST and returns its seq.
    pub async fn say(&self, conv: &str, key: &str, text: &str) -> u64 {
        let r = self
            .post(
                &format!("/api/v1/conversations/{conv}/messages"),
                json!({"key": key, "text": text}),
            )
            .await;
        assert!(r.status == 201 || r.status == 200, "send: {:?}", r.body);
        r.json()["seq"].as_u64().unwrap()
    }

    pub async fn group(&self, name: &str, members: &[&str]) -> String {
        let r = self
            .post(
                "/api/v1/conversations",
                json!({"kind": "group", "name": name, "members": members}),
            )
            .await;
        assert_eq!(r.status, 201, "group: {:?}", r.body);
        r.json()["id"].as_str().unwrap().to_string()
    }

    pub async fn direct(&self, other: &str) -> String {
        let r = self
            .post(&format!("/api/v1/conversations/direct/{other}"), json!({}))
            .await;
        assert_eq!(r.status, 200, "direct: {:?}", r.body);
        r.json()["id"].as_str().unwrap().to_string()
    }

    pub async fn history(&self, conv: &str, query: &str) -> Value {
        self.ok(&format!("/api/v1/conversations/{conv}/messages{query}"))
            .await
    }

    pub async fn ws(&self) -> Ws {
        Ws::connect(
            &self.client,
            &[("authorization", format!("Bearer {}", self.token))],
        )
        .await
        .unwrap()
    }
}

/// Creates users (all operators unless named in `viewers`) and signs them in.
pub async fn people(server: &TestServer, names: &[&str], viewers: &[&str]) -> Vec<Api> {
    let mut out = Vec::new();
    for n in names {
        let role = if viewers.contains(n) {
            plantwire::store::Role::Viewer
        } else {
            plantwire::store::Role::Operator
        };
        server.user(n, role, PW).await;
        out.push(Api::login(&server.client(), n, PW).await);
    }
    out
}

pub type WsStream = WebSocketStream<TlsStream<TcpStream>>;

/// A WebSocket client that reads JSON frames, skipping pings.
pub struct Ws {
    pub stream: WsStream,
    pub hello: Value,
}

impl Ws {
    /// Connects with extra headers; `Err` carries the HTTP status of a refused upgrade.
    pub async fn connect(client: &Client, headers: &[(&str, String)]) -> Result<Self, u16> {
        let tls = client.tls().await;
        Self::over(tls, client, headers).await
    }

    pub async fn over(
        tls: TlsStream<TcpStream>,
        client: &Client,
        headers: &[(&str, String)],
    ) -> Result<Self, u16> {
        let url = format!("wss://localhost:{}/api/v1/ws", client.addr.port());
        let mut req = url.into_client_request().unwrap();
        for (k, v) in headers {
            req.headers_mut().insert(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        match tokio_tungstenite::client_async(req, tls).await {
            Ok((stream, _)) => {
                let mut ws = Self {
                    stream,
                    hello: Value::Null,
                };
                ws.hello = ws.next().await;
                assert_eq!(ws.hello["type"], "hello", "{}", ws.hello);
                Ok(ws)
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
            Err(e) => panic!("websocket connect failed: {e}"),
        }
    }

    pub fn head(&self) -> u64 {
        self.hello["head"].as_u64().unwrap()
    }

    pub async fn send(&mut self, v: Value) {
        self.stream
            .send(Message::text(v.to_string()))
            .await
            .unwrap();
    }

    /// The next JSON frame, within 10 s.
    pub async fn next(&mut self) -> Value {
        self.try_next(Duration::from_secs(10))
            .await
            .expect("no frame within 10 s")
    }

    /// The next JSON frame, or `None` on timeout or end of stream.
    pub async fn try_next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??;
            match msg {
                Ok(Message::Text(t)) => return Some(serde_json::from_str(t.as_str()).unwrap()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The text of the next `entry` frame whose kind is `kind`, byte for byte as it came.
    pub async fn next_entry_text(&mut self, kind: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let msg = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("no entry within 10 s")
                .expect("the stream ended");
            if let Message::Text(t) = msg.unwrap() {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "entry" && v["kind"] == kind {
                    return t.as_str().to_string();
                }
            }
        }
    }

    /// The next frame of type `t`, skipping others (typing, presence, receipts…).
    pub async fn next_of(&mut self, t: &str) -> Value {
        loop {
            let f = self.next().await;
            if f["type"] == t {
                return f;
            }
        }
    }

    /// The next `entry` frame whose kind is `kind`.
    pub async fn next_entry(&mut self, kind: &str) -> Value {
        loop {
            let f = self.next_of("entry").await;
            if f["kind"] == kind {
                return f;
            }
        }
    }

    /// Subscribes from `since` and collects every entry until `caught_up`.
    pub async fn subscribe(&mut self, since: u64) -> Vec<Value> {
        self.send(json!({"type": "subscribe", "since": since}))
            .await;
        let mut out = Vec::new();
        loop {
            let f = self.next().await;
            match f["type"].as_str().unwrap() {
                "entry" => out.push(f),
                "caught_up" => return out,
                "typing" | "presence" => {}
                other => panic!("unexpected frame {other}: {f}"),
            }
        }
    }

    /// Reads frames until the server closes: the JSON frames it sent before, and the close code
    /// if it sent one.
    pub async fn until_close_code(&mut self, wait: Duration) -> (Vec<Value>, Option<u16>) {
        let deadline = tokio::time::Instant::now() + wait;
        let mut frames = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => panic!("the server did not close the connection in time"),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return (frames, frame.map(|f| u16::from(f.code)));
                }
                Ok(None) | Ok(Some(Err(_))) => return (frames, None),
                Ok(Some(Ok(Message::Text(t)))) => {
                    frames.push(serde_json::from_str(t.as_str()).unwrap())
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Reads frames until the server ends the connection; returns them.
    pub async fn until_closed(&mut self, wait: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => panic!("the server did not close the connection in time"),
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return out,
                Ok(Some(Ok(Message::Text(t)))) => {
                    out.push(serde_json::from_str(t.as_str()).unwrap())
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}
