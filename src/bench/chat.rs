//! `plantwire bench chat`: the fan-out workload against a running server over TLS — users in one
//! group on WebSockets, closed-loop senders, delivery latency at every receiver, and idle sockets.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

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
    /// CPU time over the send phase, from the first send until every receiver is done.
    pub cpu: Cpu,
    /// CPU time over the fan-out to the idle sockets, and the frames delivered.
    pub idle_cpu: Cpu,
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
    pub cpu: Cpu,
    pub frames: usize,
}

/// CPU time (user + system, µs) of the server and of this client, each when it could be read.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cpu {
    pub server_us: Option<u64>,
    pub client_us: Option<u64>,
}

impl Cpu {
    fn now(server_pid: Option<u32>) -> Self {
        Self {
            server_us: server_pid.and_then(process_cpu_us),
            client_us: process_cpu_us(std::process::id()),
        }
    }

    /// The CPU spent from `before` to `self`.
    fn since(self, before: Self) -> Self {
        let d = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| a.saturating_sub(b));
        Self {
            server_us: d(self.server_us, before.server_us),
            client_us: d(self.client_us, before.client_us),
        }
    }

    /// Both, per `frames`, as text ("?" where unknown).
    pub fn per_frame(&self, frames: usize) -> (String, String) {
        let per = |v: Option<u64>| {
            v.map_or("?".to_string(), |c| {
                format!("{:.2}", c as f64 / frames.max(1) as f64)
            })
        };
        (per(self.server_us), per(self.client_us))
    }
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
        // A frame here is well under 1 KiB; tungstenite's default 128 KiB read buffer per socket
        // would be 128 MB over 1,000 idle sockets, each frame landing in a cold one.
        let cfg = WebSocketConfig::default().read_buffer_size(WS_READ_BUFFER);
        let (mut ws, _) = tokio_tungstenite::client_async_with_config(req, tls, Some(cfg)).await?;
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

/// The bench client's read buffer per WebSocket.
const WS_READ_BUFFER: usize = 8 * 1024;

/// Messages sent to the idle sockets in the closed-loop phase.
const IDLE_MESSAGES: usize = 20;

/// Messages of the paced phase, one at a time: enough for a p99 that is not the maximum.
const PACED_MESSAGES: usize = 100;

/// How long a reader waits for its next frame before it gives up on the phase.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// What a receiver saw: (message number, latency µs) for every message entry.
type Seen = Vec<(u64, u64)>;

/// The fields of a server frame the bench reads. Everything else in the frame is skipped by the
/// parser without being built, so a receiver spends little per frame beside the TLS record: the
/// client must cost less than the server for the fan-out figures to be the server's.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    body: Option<FrameBody<'a>>,
}

#[derive(Deserialize)]
struct FrameBody<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
}

/// What one frame means to the bench.
enum Arrival {
    /// A chat message of the bench: its number and its send time (µs since `start`).
    Message(u64, u64),
    /// The ack of the send with this idempotency key.
    Ack(String),
    /// The server refused something or closed the socket: the phase ends for this socket.
    Error,
    Other,
}

/// Reads the next frame of `ws` and says what it is; `None` when the socket timed out, failed or
/// was closed.
async fn next_frame(ws: &mut Ws) -> Option<Arrival> {
    loop {
        let text = match tokio::time::timeout(READ_TIMEOUT, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            Ok(Some(Ok(_))) => continue,
        };
        // A frame the bench cannot read is not one of its messages; a missing message is
        // counted as lost at the end, so nothing is hidden by skipping it.
        let Ok(f) = serde_json::from_str::<Frame>(text.as_str()) else {
            return Some(Arrival::Other);
        };
        return Some(match (f.ty.as_ref(), f.kind.as_deref()) {
            ("entry", Some("chat.message")) => {
                let text = f.body.and_then(|b| b.text).unwrap_or_default();
                let mut parts = text.split(' ');
                let n = parts.next().and_then(|p| p.parse::<u64>().ok());
                let at = parts.next().and_then(|p| p.parse::<u64>().ok());
                match (n, at) {
                    (Some(n), Some(at)) => Arrival::Message(n, at),
                    _ => Arrival::Other,
                }
            }
            ("ack", _) => Arrival::Ack(f.key.unwrap_or_default().into_owned()),
            ("error", _) => Arrival::Error,
            _ => Arrival::Other,
        });
    }
}

fn since_start(start: Instant) -> u64 {
    start.elapsed().as_micros() as u64
}

/// The paced phase's tally, shared by every receiver: per message, how many sockets have it and
/// the latest arrival. The receiver that completes a message wakes the sender.
struct Pace {
    first: u64,
    sockets: usize,
    got: Vec<AtomicUsize>,
    last_us: Vec<AtomicU64>,
    done: Notify,
}

impl Pace {
    fn new(first: u64, messages: usize, sockets: usize) -> Self {
        Self {
            first,
            sockets,
            got: (0..messages).map(|_| AtomicUsize::new(0)).collect(),
            last_us: (0..messages).map(|_| AtomicU64::new(0)).collect(),
            done: Notify::new(),
        }
    }

    /// Message `n` reached one more socket, `lat` µs after it was sent. Numbers outside the
    /// phase (a late frame of the phase before) are not counted.
    fn arrived(&self, n: u64, lat: u64) {
        let Some(i) = n.checked_sub(self.first).map(|i| i as usize) else {
            return;
        };
        let (Some(got), Some(last)) = (self.got.get(i), self.last_us.get(i)) else {
            return;
        };
        last.fetch_max(lat, Ordering::Relaxed);
        if got.fetch_add(1, Ordering::AcqRel) + 1 == self.sockets {
            self.done.notify_waiters();
        }
    }
}

/// Reads one connection until it has `want` of the bench's messages: each becomes (number,
/// latency), and is told to `pace` when one is given. Hands the socket back for the next phase.
async fn receive(mut ws: Ws, start: Instant, want: usize, pace: Option<Arc<Pace>>) -> (Seen, Ws) {
    let mut seen = Vec::with_capacity(want);
    while seen.len() < want {
        match next_frame(&mut ws).await {
            Some(Arrival::Message(n, at)) => {
                let lat = since_start(start).saturating_sub(at);
                seen.push((n, lat));
                if let Some(pace) = &pace {
                    pace.arrived(n, lat);
                }
            }
            Some(Arrival::Ack(_) | Arrival::Other) => {}
            Some(Arrival::Error) | None => break,
        }
    }
    (seen, ws)
}

/// One closed-loop sender on its own socket: send, read until the ack, repeat; then read on
/// until the socket has `want` messages (everyone's, its own included). Returns the ack
/// latencies and what the socket received.
async fn send_loop(
    mut ws: Ws,
    conv: String,
    numbers: Vec<u64>,
    want: usize,
    start: Instant,
) -> anyhow::Result<(Vec<u64>, Seen, Ws)> {
    let mut lat = Vec::with_capacity(numbers.len());
    let mut seen = Vec::with_capacity(want);
    for n in numbers {
        lat.push(send_one(&mut ws, &conv, n, start, &mut seen).await?);
    }
    while seen.len() < want {
        match next_frame(&mut ws).await {
            Some(Arrival::Message(n, at)) => seen.push((n, since_start(start).saturating_sub(at))),
            Some(Arrival::Ack(_) | Arrival::Other) => {}
            Some(Arrival::Error) | None => break,
        }
    }
    Ok((lat, seen, ws))
}

/// Sends message `n` (its text carries the send time) and reads until its ack, keeping the
/// messages that arrive meanwhile in `seen`; returns the ack latency in µs.
async fn send_one(
    ws: &mut Ws,
    conv: &str,
    n: u64,
    start: Instant,
    seen: &mut Seen,
) -> anyhow::Result<u64> {
    let t0 = since_start(start);
    let key = format!("bench-{n}-{}", random_token());
    let frame = json!({"type": "send", "conv": conv, "key": key, "text": format!("{n} {t0} fan-out benchmark message")});
    ws.send(Message::text(frame.to_string())).await?;
    loop {
        match next_frame(ws).await {
            Some(Arrival::Ack(k)) if k == key => return Ok(since_start(start) - t0),
            Some(Arrival::Message(m, at)) => seen.push((m, since_start(start).saturating_sub(at))),
            Some(Arrival::Ack(_) | Arrival::Other) => {}
            Some(Arrival::Error) => bail!("the server refused message {n}"),
            None => bail!("no ack for message {n}: the socket timed out or closed"),
        }
    }
}

/// The paced fan-out: sends `pace`'s messages one at a time over `ws`, each only once every
/// socket of `pace` has the one before. Per message: the latency to the last socket (the
/// largest of the receivers' send-to-arrival latencies) and to the ack.
async fn paced(
    ws: &mut Ws,
    pace: &Pace,
    conv: &str,
    start: Instant,
) -> anyhow::Result<(Vec<u64>, Vec<u64>)> {
    let messages = pace.got.len();
    let mut to_last = Vec::with_capacity(messages);
    let mut to_ack = Vec::with_capacity(messages);
    let mut own = Vec::new();
    for i in 0..messages {
        let n = pace.first + i as u64;
        to_ack.push(send_one(ws, conv, n, start, &mut own).await?);
        let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
        loop {
            // Registered before the count is read, so the last socket's wake-up is not missed.
            let done = pace.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            let got = pace.got[i].load(Ordering::Acquire);
            if got >= pace.sockets {
                break;
            }
            tokio::time::timeout_at(deadline, done)
                .await
                .with_context(|| {
                    format!(
                        "paced fan-out: message {n} reached {got} of {} sockets in 15 s",
                        pace.sockets
                    )
                })?;
        }
        to_last.push(pace.last_us[i].load(Ordering::Relaxed));
        own.clear();
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
        if i < b.senders {
            // A sender's own socket gets its acks and everyone's messages (its own included).
            let numbers: Vec<u64> = (0..per_sender)
                .map(|k| (k * b.senders + i) as u64)
                .collect();
            senders.push((ws, numbers));
        } else {
            receivers.push(tokio::spawn(receive(ws, start, total, None)));
        }
    }
    let cpu0 = Cpu::now(b.server_pid);
    let t0 = Instant::now();
    let mut loops = Vec::new();
    for (ws, numbers) in senders {
        loops.push(tokio::spawn(send_loop(
            ws,
            conv.clone(),
            numbers,
            total,
            start,
        )));
    }
    let mut ack_lat = Vec::new();
    let mut lost = 0;
    let mut deliveries = 0;
    let mut tally = |seen: &Seen| {
        let got: HashSet<u64> = seen.iter().map(|(n, _)| *n).collect();
        lost += total - got.len().min(total);
        deliveries += seen.len();
    };
    for l in loops {
        let (lat, seen, _) = l.await??;
        ack_lat.extend(lat);
        tally(&seen);
    }
    let seconds = t0.elapsed().as_secs_f64();
    let mut delivery = Vec::new();
    for r in receivers {
        let (seen, _) = r.await?;
        tally(&seen);
        delivery.extend(seen.iter().map(|(_, l)| *l));
    }
    let cpu = Cpu::now(b.server_pid).since(cpu0);

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
    let mut idle_cpu = Cpu::default();
    let mut idle_frames = 0;
    let mut paced_result = None;
    if !idle.is_empty() {
        tokio::time::sleep(Duration::from_secs(2)).await;
        rss_with_idle_kib = b.server_pid.and_then(rss_kib);
        let mut waits = Vec::new();
        for ws in idle {
            waits.push(tokio::spawn(receive(ws, start, IDLE_MESSAGES, None)));
        }
        let (ws, _) = http.ws(&tokens[0]).await?;
        let numbers: Vec<u64> = (1_000_000..1_000_000 + IDLE_MESSAGES as u64).collect();
        let cpu0 = Cpu::now(b.server_pid);
        let (_, _, mut ws) = send_loop(ws, conv.clone(), numbers, 0, start).await?;
        let mut lat = Vec::new();
        let mut sockets = Vec::new();
        for w in waits {
            let (seen, ws) = w.await?;
            // Only a socket that got every message takes part in the paced phase: one that
            // timed out or was closed would hold it up.
            if seen.len() == IDLE_MESSAGES {
                sockets.push(ws);
            }
            lat.extend(seen.into_iter().map(|(_, l)| l));
        }
        idle_cpu = Cpu::now(b.server_pid).since(cpu0);
        idle_frames = lat.len();
        idle_delivery = Some(percentiles(lat));

        // Paced: the closed loop above sends the next message as soon as the last is acked,
        // while its fan-out still runs; here each message has the sockets to itself.
        let pace = Arc::new(Pace::new(2_000_000, PACED_MESSAGES, sockets.len()));
        let mut waits = Vec::new();
        for ws in sockets {
            waits.push(tokio::spawn(receive(
                ws,
                start,
                PACED_MESSAGES,
                Some(pace.clone()),
            )));
        }
        let cpu0 = Cpu::now(b.server_pid);
        let outcome = paced(&mut ws, &pace, &conv, start).await;
        let cpu = Cpu::now(b.server_pid).since(cpu0);
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
                    cpu,
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
        cpu,
        idle_cpu,
        idle_frames,
        paced: paced_result,
    })
}
