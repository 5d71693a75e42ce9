//! `plantwire bench chat`: the fan-out workload against a running server over TLS — users in one
//! group on WebSockets, closed-loop senders, delivery latency at every receiver, and idle sockets.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::ingest::process_cpu_us;
use super::{Latencies, percentiles};

#[derive(Debug, Clone)]
pub struct ChatBench {
    pub addr: SocketAddr,
    pub ca_file: std::path::PathBuf,
    pub admin_password: String,
    pub users: usize,
    pub senders: usize,
    pub messages: usize,
    pub idle: usize,
    /// The server's pid, to read its resident memory.
    pub server_pid: Option<u32>,
}

#[derive(Debug)]
pub struct ChatResult {
    pub acked: usize,
    pub seconds: f64,
    pub sends_per_second: f64,
    pub ack: Latencies,
    pub delivery: Latencies,
    pub deliveries: usize,
    pub lost: usize,
    pub idle_connected: usize,
    pub idle_delivery: Option<Latencies>,
    pub rss_before_idle_kib: Option<u64>,
    pub rss_with_idle_kib: Option<u64>,
    /// CPU time (user + system, µs) of the server and of this client over the send phase, from
    /// the first send until every receiver is done.
    pub server_cpu_us: Option<u64>,
    pub client_cpu_us: Option<u64>,
    /// The server's CPU time over the fan-out to the idle sockets, and the frames it delivered.
    pub idle_server_cpu_us: Option<u64>,
    pub idle_frames: usize,
    /// The paced fan-out after it: one message at a time, the next only once every idle socket
    /// has the last, so no message waits behind another's fan-out.
    pub paced: Option<Paced>,
}

/// The paced fan-out, per message: from the send to the last idle socket, and to the ack.
#[derive(Debug)]
pub struct Paced {
    pub messages: usize,
    pub to_last: Latencies,
    pub to_ack: Latencies,
    pub server_cpu_us: Option<u64>,
    pub frames: usize,
}

pub(super) type Ws = WebSocketStream<TlsStream<TcpStream>>;

pub(super) struct Http {
    addr: SocketAddr,
    tls: TlsConnector,
}

impl Http {
    pub(super) fn new(addr: SocketAddr, ca_pem: &str) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.context("CA file")?)?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            addr,
            tls: TlsConnector::from(Arc::new(cfg)),
        })
    }

    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(super) async fn connect(&self) -> anyhow::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("localhost")?;
        Ok(self.tls.connect(name, tcp).await?)
    }

    pub(super) async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> anyhow::Result<(u16, Value)> {
        let tls = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("localhost:{}", self.addr.port()))
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let res = sender
            .send_request(req.body(Full::new(Bytes::from(body.to_string())))?)
            .await?;
        let status = res.status().as_u16();
        let bytes = res.into_body().collect().await?.to_bytes();
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, v))
    }

    /// Signs in; a one-time password is replaced by `new_password` first.
    pub(super) async fn sign_in(
        &self,
        user: &str,
        password: &str,
        new_password: &str,
    ) -> anyhow::Result<String> {
        let (s, v) = self
            .call(
                "POST",
                "/api/v1/auth/login",
                None,
                json!({"username": user, "password": password}),
            )
            .await?;
        if s != 200 {
            bail!("sign-in of {user} failed: {s} {v}");
        }
        let token = v["access_token"].as_str().unwrap_or_default().to_string();
        if v["user"]["must_change_password"] != true {
            return Ok(token);
        }
        let (s, v) = self
            .call(
                "POST",
                "/api/v1/auth/password",
                Some(&token),
                json!({"current_password": password, "new_password": new_password}),
            )
            .await?;
        if s != 200 {
            bail!("password change of {user} failed: {s} {v}");
        }
        let (s, v) = self
            .call(
                "POST",
                "/api/v1/auth/login",
                None,
                json!({"username": user, "password": new_password}),
            )
            .await?;
        if s != 200 {
            bail!("second sign-in of {user} failed: {s} {v}");
        }
        Ok(v["access_token"].as_str().unwrap_or_default().to_string())
    }

    async fn ws(&self, token: &str) -> anyhow::Result<(Ws, u64)> {
        let tls = self.connect().await?;
        let mut req =
            format!("wss://localhost:{}/api/v1/ws", self.addr.port()).into_client_request()?;
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        let (mut ws, _) = tokio_tungstenite::client_async(req, tls).await?;
        let hello = next_json(&mut ws).await?;
        let head = hello["head"]
            .as_u64()
            .ok_or_else(|| anyhow!("no hello: {hello}"))?;
        ws.send(Message::text(
            json!({"type": "subscribe", "since": head}).to_string(),
        ))
        .await?;
        loop {
            if next_json(&mut ws).await?["type"] == "caught_up" {
                return Ok((ws, head));
            }
        }
    }
}

pub(super) async fn next_json<S>(ws: &mut S) -> anyhow::Result<Value>
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(t.as_str())?),
            Some(Ok(Message::Close(f))) => bail!("closed by the server: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection ended"),
        }
    }
}

pub(super) fn random_token() -> String {
    let mut b = [0u8; 12];
    let _ = aws_lc_rs::rand::fill(&mut b);
    hex::encode(b)
}

pub(super) fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Messages sent to the idle sockets in each of the closed-loop and the paced phases.
const IDLE_MESSAGES: usize = 20;

/// What a receiver saw: (message number, latency µs) for every message entry.
type Seen = Vec<(u64, u64)>;

/// Reads one connection: message entries become (number, latency), each also passed to `tap`
/// as it arrives when one is given; acks go to `acks`. Hands the stream back for the next phase.
async fn receive(
    mut rx: SplitStream<Ws>,
    start: Instant,
    acks: Option<mpsc::Sender<u64>>,
    want: usize,
    tap: Option<mpsc::Sender<(u64, u64)>>,
) -> (Seen, SplitStream<Ws>) {
    let mut seen = Vec::with_capacity(want);
    while seen.len() < want {
        let v = match tokio::time::timeout(Duration::from_secs(15), next_json(&mut rx)).await {
            Ok(Ok(v)) => v,
            _ => break,
        };
        match v["type"].as_str() {
            Some("entry") if v["kind"] == "chat.message" => {
                let now = start.elapsed().as_micros() as u64;
                let text = v["body"]["text"].as_str().unwrap_or_default();
                let mut parts = text.split(' ');
                let n = parts.next().and_then(|p| p.parse::<u64>().ok());
                let at = parts.next().and_then(|p| p.parse::<u64>().ok());
                if let (Some(n), Some(at)) = (n, at) {
                    let lat = now.saturating_sub(at);
                    seen.push((n, lat));
                    if let Some(tap) = &tap {
                        let _ = tap.send((n, lat)).await;
                    }
                }
            }
            Some("ack") => {
                if let (Some(tx), Some(seq)) = (&acks, v["seq"].as_u64()) {
                    let _ = tx.send(seq).await;
                }
            }
            Some("error") => break,
            _ => {}
        }
    }
    (seen, rx)
}

/// One closed-loop sender: send, wait for the ack, repeat. Returns ack latencies.
async fn send_loop(
    mut tx: SplitSink<Ws, Message>,
    mut acks: mpsc::Receiver<u64>,
    conv: String,
    numbers: Vec<u64>,
    start: Instant,
) -> anyhow::Result<(Vec<u64>, SplitSink<Ws, Message>, mpsc::Receiver<u64>)> {
    let mut lat = Vec::with_capacity(numbers.len());
    for n in numbers {
        lat.push(send_one(&mut tx, &mut acks, &conv, n, start).await?);
    }
    Ok((lat, tx, acks))
}

/// Sends message `n` (its text carries the send time) and waits for its ack; returns the ack
/// latency in µs.
async fn send_one(
    tx: &mut SplitSink<Ws, Message>,
    acks: &mut mpsc::Receiver<u64>,
    conv: &str,
    n: u64,
    start: Instant,
) -> anyhow::Result<u64> {
    let t0 = start.elapsed().as_micros() as u64;
    let frame = json!({"type": "send", "conv": conv, "key": format!("bench-{n}-{}", random_token()), "text": format!("{n} {t0} fan-out benchmark message")});
    tx.send(Message::text(frame.to_string())).await?;
    tokio::time::timeout(Duration::from_secs(30), acks.recv())
        .await?
        .ok_or_else(|| anyhow!("connection ended"))?;
    Ok(start.elapsed().as_micros() as u64 - t0)
}

/// The paced fan-out: sends `numbers` one at a time over `tx`, each only once all `sockets`
/// receivers have reported the one before on `tap`. Per message: the latency to the last
/// socket (the largest of the receivers' send-to-arrival latencies) and to the ack.
async fn paced(
    tx: &mut SplitSink<Ws, Message>,
    acks: &mut mpsc::Receiver<u64>,
    tap: &mut mpsc::Receiver<(u64, u64)>,
    conv: &str,
    numbers: &[u64],
    sockets: usize,
    start: Instant,
) -> anyhow::Result<(Vec<u64>, Vec<u64>)> {
    let mut to_last = Vec::with_capacity(numbers.len());
    let mut to_ack = Vec::with_capacity(numbers.len());
    for &n in numbers {
        to_ack.push(send_one(tx, acks, conv, n, start).await?);
        let (mut got, mut last) = (0, 0);
        while got < sockets {
            let (m, lat) = tokio::time::timeout(Duration::from_secs(15), tap.recv())
                .await
                .context("paced fan-out: a socket did not get its message in 15 s")?
                .ok_or_else(|| anyhow!("paced fan-out: the receivers ended"))?;
            if m != n {
                bail!("paced fan-out: message {m} arrived while waiting for {n}");
            }
            got += 1;
            last = last.max(lat);
        }
        to_last.push(last);
    }
    Ok((to_last, to_ack))
}

pub async fn run(b: &ChatBench) -> anyhow::Result<ChatResult> {
    if b.senders == 0 || b.senders > b.users || b.users < 2 {
        bail!("need 2 or more users and 1..=users senders");
    }
    let ca = std::fs::read_to_string(&b.ca_file)
        .with_context(|| format!("reading {}", b.ca_file.display()))?;
    let http = Arc::new(Http::new(b.addr, &ca)?);
    let admin_pw = format!("bench-admin-{}", random_token());
    let admin = http.sign_in("admin", &b.admin_password, &admin_pw).await?;
    if admin_pw != b.admin_password {
        eprintln!("note: the admin's one-time password was replaced by {admin_pw}");
    }
    let run_id = &random_token()[..6];
    let mut tokens = Vec::new();
    let mut names = Vec::new();
    for i in 0..b.users {
        let name = format!("bench-{run_id}-{i:02}");
        let (s, v) = http
            .call(
                "POST",
                "/api/v1/admin/users",
                Some(&admin),
                json!({"username": name, "display_name": name, "role": "operator"}),
            )
            .await?;
        if s != 201 {
            bail!("creating {name}: {s} {v}");
        }
        let otp = v["one_time_password"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        tokens.push(
            http.sign_in(&name, &otp, &format!("pw-{}", random_token()))
                .await?,
        );
        names.push(name);
    }
    let (s, v) = http
        .call(
            "POST",
            "/api/v1/conversations",
            Some(&tokens[0]),
            json!({"kind": "group", "name": format!("bench {run_id}"), "members": names[1..]}),
        )
        .await?;
    if s != 201 {
        bail!("creating the group: {s} {v}");
    }
    let conv = v["id"].as_str().unwrap_or_default().to_string();

    let start = Instant::now();
    let per_sender = b.messages / b.senders;
    let total = per_sender * b.senders;
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let (ws, _) = http.ws(token).await?;
        let (tx, rx) = ws.split();
        if i < b.senders {
            let (ack_tx, ack_rx) = mpsc::channel(4);
            // A sender's own connection gets its acks and everyone's messages (its own included).
            receivers.push((
                false,
                tokio::spawn(receive(rx, start, Some(ack_tx), total, None)),
            ));
            let numbers: Vec<u64> = (0..per_sender)
                .map(|k| (k * b.senders + i) as u64)
                .collect();
            senders.push((tx, ack_rx, numbers));
        } else {
            receivers.push((true, tokio::spawn(receive(rx, start, None, total, None))));
            drop(tx);
        }
    }
    let server_cpu0 = b.server_pid.and_then(process_cpu_us);
    let client_cpu0 = process_cpu_us(std::process::id());
    let t0 = Instant::now();
    let mut loops = Vec::new();
    for (tx, acks, numbers) in senders {
        loops.push(tokio::spawn(send_loop(
            tx,
            acks,
            conv.clone(),
            numbers,
            start,
        )));
    }
    let mut ack_lat = Vec::new();
    for l in loops {
        ack_lat.extend(l.await??.0);
    }
    let seconds = t0.elapsed().as_secs_f64();
    let mut delivery = Vec::new();
    let mut lost = 0;
    let mut deliveries = 0;
    for (pure, r) in receivers {
        let (seen, _) = r.await?;
        let got: HashSet<u64> = seen.iter().map(|(n, _)| *n).collect();
        lost += total - got.len().min(total);
        deliveries += seen.len();
        if pure {
            delivery.extend(seen.iter().map(|(_, l)| *l));
        }
    }
    let since = |before: Option<u64>, after: Option<u64>| {
        before.zip(after).map(|(b, a)| a.saturating_sub(b))
    };
    let server_cpu_us = since(server_cpu0, b.server_pid.and_then(process_cpu_us));
    let client_cpu_us = since(client_cpu0, process_cpu_us(std::process::id()));

    // Idle sockets: open them, read the server's memory, then time one fan-out to all of them.
    // Both readings come after 2 s of quiet, so the argon2 work areas of the sign-ins (freed
    // after 1 s idle) are in neither and the difference is the sockets'.
    if b.idle > 0 {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let rss_before_idle_kib = b.server_pid.and_then(rss_kib);
    let mut idle = Vec::new();
    for i in 0..b.idle {
        let (ws, _) = http
            .ws(&tokens[i % tokens.len()])
            .await
            .with_context(|| format!("idle socket {i}"))?;
        idle.push(ws);
    }
    let mut idle_delivery = None;
    let mut rss_with_idle_kib = None;
    let mut idle_server_cpu_us = None;
    let mut idle_frames = 0;
    let mut paced_result = None;
    if !idle.is_empty() {
        tokio::time::sleep(Duration::from_secs(2)).await;
        rss_with_idle_kib = b.server_pid.and_then(rss_kib);
        let mut waits = Vec::new();
        for ws in idle {
            let (_, rx) = ws.split();
            waits.push(tokio::spawn(receive(rx, start, None, IDLE_MESSAGES, None)));
        }
        let (ws, _) = http.ws(&tokens[0]).await?;
        let (tx, rx) = ws.split();
        let (ack_tx, ack_rx) = mpsc::channel(4);
        let keep = tokio::spawn(receive(rx, start, Some(ack_tx), 2 * IDLE_MESSAGES, None));
        let numbers: Vec<u64> = (1_000_000..1_000_000 + IDLE_MESSAGES as u64).collect();
        let cpu0 = b.server_pid.and_then(process_cpu_us);
        let (_, mut tx, mut ack_rx) = send_loop(tx, ack_rx, conv.clone(), numbers, start).await?;
        let mut lat = Vec::new();
        let mut streams = Vec::new();
        for w in waits {
            let (seen, rx) = w.await?;
            // Only a socket that got every message takes part in the paced phase: one that
            // timed out or was closed would hold it up, or hand it a late first-phase frame.
            if seen.len() == IDLE_MESSAGES {
                streams.push(rx);
            }
            lat.extend(seen.into_iter().map(|(_, l)| l));
        }
        idle_server_cpu_us = since(cpu0, b.server_pid.and_then(process_cpu_us));
        idle_frames = lat.len();
        idle_delivery = Some(percentiles(lat));

        // Paced: the closed loop above sends the next message as soon as the last is acked,
        // while its fan-out still runs; here each message has the sockets to itself.
        let numbers: Vec<u64> = (2_000_000..2_000_000 + IDLE_MESSAGES as u64).collect();
        let (tap_tx, mut tap_rx) = mpsc::channel(streams.len() * numbers.len());
        let sockets = streams.len();
        let mut waits = Vec::new();
        for rx in streams {
            let tap = Some(tap_tx.clone());
            waits.push(tokio::spawn(receive(rx, start, None, numbers.len(), tap)));
        }
        drop(tap_tx);
        let cpu0 = b.server_pid.and_then(process_cpu_us);
        let outcome = paced(
            &mut tx,
            &mut ack_rx,
            &mut tap_rx,
            &conv,
            &numbers,
            sockets,
            start,
        )
        .await;
        let server_cpu_us = since(cpu0, b.server_pid.and_then(process_cpu_us));
        keep.abort();
        match outcome {
            Ok((to_last, to_ack)) => {
                let mut frames = 0;
                for w in waits {
                    frames += w.await?.0.len();
                }
                paced_result = Some(Paced {
                    messages: to_last.len(),
                    to_last: percentiles(to_last),
                    to_ack: percentiles(to_ack),
                    server_cpu_us,
                    frames,
                });
            }
            // The figures measured so far stand; the paced one is left out, and said so.
            Err(e) => {
                for w in &waits {
                    w.abort();
                }
                eprintln!("paced fan-out left out: {e:#}");
            }
        }
    }
    Ok(ChatResult {
        acked: ack_lat.len(),
        seconds,
        sends_per_second: ack_lat.len() as f64 / seconds,
        ack: percentiles(ack_lat),
        delivery: percentiles(delivery),
        deliveries,
        lost,
        idle_connected: b.idle,
        idle_delivery,
        rss_before_idle_kib,
        rss_with_idle_kib,
        server_cpu_us,
        client_cpu_us,
        idle_server_cpu_us,
        idle_frames,
        paced: paced_result,
    })
}
