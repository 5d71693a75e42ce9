//! `plantwire bench chat`: the fan-out workload against a running server over TLS — users in one
//! group on WebSockets, closed-loop senders, delivery latency at every receiver, and idle sockets.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::ingest::process_cpu_us;
use super::{Latencies, percentiles};

mod socket;

use socket::{Pace, Seen, missing, paced, receive, send_loop};

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
    /// Messages of the closed loop that did not reach an idle socket, over all of them.
    pub idle_lost: usize,
    /// The paced fan-out after it: one message at a time, the next only once every idle socket
    /// has the last, so no message waits behind another's fan-out.
    pub paced: Option<Paced>,
}

/// The paced fan-out, per message: from the send to the last idle socket, and to the ack.
#[derive(Debug)]
pub struct Paced {
    pub messages: usize,
    /// The idle sockets it went to: all of them, or the phase is left out.
    pub sockets: usize,
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

    /// A client of the server at `addr` that trusts the CA in `ca_file`, and the admin signed in
    /// with it (a one-time password is replaced first, and the new one printed).
    pub(super) async fn as_admin(
        addr: SocketAddr,
        ca_file: &Path,
        admin_password: &str,
    ) -> anyhow::Result<(Arc<Self>, String)> {
        let ca = std::fs::read_to_string(ca_file)
            .with_context(|| format!("reading {}", ca_file.display()))?;
        let http = Arc::new(Self::new(addr, &ca)?);
        let admin_pw = format!("bench-admin-{}", random_token());
        let admin = http.sign_in("admin", admin_password, &admin_pw).await?;
        if admin_pw != admin_password {
            eprintln!("note: the admin's one-time password was replaced by {admin_pw}");
        }
        Ok((http, admin))
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

pub async fn run(b: &ChatBench) -> anyhow::Result<ChatResult> {
    if b.senders == 0 || b.senders > b.users || b.users < 2 {
        bail!("need 2 or more users and 1..=users senders");
    }
    let (http, admin) = Http::as_admin(b.addr, &b.ca_file, &b.admin_password).await?;
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
        lost += missing(seen, total);
        deliveries += seen.len();
    };
    let mut last_ack = t0;
    for l in loops {
        let sent = l.await??;
        ack_lat.extend(sent.acks);
        last_ack = last_ack.max(sent.last_ack);
        tally(&sent.seen);
    }
    let seconds = last_ack.duration_since(t0).as_secs_f64();
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
    let mut idle_lost = 0;
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
        let ws = send_loop(ws, conv.clone(), numbers, 0, start).await?.ws;
        let mut lat = Vec::new();
        let mut sockets = Vec::new();
        for w in waits {
            let (seen, ws) = w.await?;
            let lost = missing(&seen, IDLE_MESSAGES);
            idle_lost += lost;
            if lost == 0 {
                sockets.push(ws);
            }
            lat.extend(seen.into_iter().map(|(_, l)| l));
        }
        idle_cpu = Cpu::now(b.server_pid).since(cpu0);
        idle_frames = lat.len();
        idle_delivery = Some(percentiles(lat));
        // A socket that lost a message (timed out, or closed by the server) would hold the
        // paced phase up, and a phase over the others only would flatter it: left out.
        if sockets.len() < b.idle {
            eprintln!(
                "paced fan-out left out: {} of {} idle sockets lost messages",
                b.idle - sockets.len(),
                b.idle
            );
        } else {
            paced_result = paced_phase(ws, sockets, &conv, start, b.server_pid).await?;
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
        idle_lost,
        paced: paced_result,
    })
}

/// The paced fan-out over `sockets`, sending on `ws`: the closed loop before sends the next
/// message as soon as the last is acked, while its fan-out still runs; here each message has
/// the sockets to itself. `None` (and said so) when a message does not reach every socket.
async fn paced_phase(
    mut ws: Ws,
    sockets: Vec<Ws>,
    conv: &str,
    start: Instant,
    server_pid: Option<u32>,
) -> anyhow::Result<Option<Paced>> {
    let pace = Arc::new(Pace::new(2_000_000, PACED_MESSAGES, sockets.len()));
    let mut waits = Vec::new();
    for socket in sockets {
        let pace = Some(pace.clone());
        waits.push(tokio::spawn(receive(socket, start, PACED_MESSAGES, pace)));
    }
    let cpu0 = Cpu::now(server_pid);
    let outcome = paced(&mut ws, &pace, conv, start).await;
    let cpu = Cpu::now(server_pid).since(cpu0);
    match outcome {
        Ok((to_last, to_ack)) => {
            let mut frames = 0;
            for w in waits {
                frames += w.await?.0.len();
            }
            Ok(Some(Paced {
                messages: to_last.len(),
                sockets: pace.sockets,
                to_last: percentiles(to_last),
                to_ack: percentiles(to_ack),
                cpu,
                frames,
            }))
        }
        // The figures measured so far stand; the paced one is left out, and said so.
        Err(e) => {
            for w in &waits {
                w.abort();
            }
            eprintln!("paced fan-out left out: {e:#}");
            Ok(None)
        }
    }
}
