//! `plantwire bench ingest`: closed-loop event publishers against a running server over HTTPS
//! (HTTP/1.1 keep-alive or HTTP/2), events/s, latency, and the server's CPU per event.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{Latencies, percentiles};

/// The HTTP version the publishers speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// One keep-alive connection per publisher.
    Http1,
    /// Publishers share connections, 16 streams each.
    Http2,
}

impl Proto {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "h1" | "http1" | "http1.1" => Some(Self::Http1),
            "h2" | "http2" => Some(Self::Http2),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Http1 => "HTTP/1.1",
            Self::Http2 => "HTTP/2",
        }
    }
}

/// How the publishers authenticate: a device token (`Authorization: Bearer`, on the main
/// listener), or a device's client certificate and key (PEM; mutual TLS on the device listener).
#[derive(Debug, Clone)]
pub enum Credential {
    Token(String),
    Certificate { cert_pem: String, key_pem: String },
}

#[derive(Debug, Clone)]
pub struct IngestBench {
    pub addr: SocketAddr,
    pub ca_file: std::path::PathBuf,
    pub credential: Credential,
    pub publishers: Vec<usize>,
    pub protos: Vec<Proto>,
    /// Events per run (one run per protocol and publisher count).
    pub count: usize,
    /// Events per request: 1 posts each to `/api/v1/events`, more post them together to
    /// `/api/v1/events/batch`.
    pub batch: usize,
    /// The server's pid, to read its CPU time from `/proc`.
    pub server_pid: Option<u32>,
}

#[derive(Debug)]
pub struct IngestResult {
    pub proto: Proto,
    pub publishers: usize,
    /// Events per request.
    pub batch: usize,
    pub events: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub latency: Latencies,
    /// 429/503 answers that were retried.
    pub refused: usize,
    pub cpu_us_per_event: Option<f64>,
    /// The same for this bench process (the publishers), to show the client is not the limit.
    pub client_cpu_us_per_event: Option<f64>,
}

/// User plus system CPU time of a process, µs, from `/proc/<pid>/stat` (Linux's USER_HZ is 100
/// on every architecture it exposes to user space).
pub fn process_cpu_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name, which may itself hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after `) `.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 10_000)
}

fn connector(ca_pem: &str, proto: Proto, cred: &Credential) -> anyhow::Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.context("CA file")?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut cfg = match cred {
        Credential::Token(_) => builder.with_no_client_auth(),
        Credential::Certificate { cert_pem, key_pem } => {
            let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .context("certificate file")?;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .context("key file")?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    cfg.alpn_protocols = vec![match proto {
        Proto::Http1 => b"http/1.1".to_vec(),
        Proto::Http2 => b"h2".to_vec(),
    }];
    Ok(TlsConnector::from(Arc::new(cfg)))
}

/// One connection's request sender, of either version.
#[derive(Clone)]
enum Sender {
    H1(Arc<tokio::sync::Mutex<http1::SendRequest<Full<Bytes>>>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

async fn connect(tls: &TlsConnector, addr: SocketAddr, proto: Proto) -> anyhow::Result<Sender> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let stream = tls.connect(ServerName::try_from("localhost")?, tcp).await?;
    let io = TokioIo::new(stream);
    Ok(match proto {
        Proto::Http1 => {
            let (send, conn) = http1::handshake(io).await?;
            tokio::spawn(conn);
            Sender::H1(Arc::new(tokio::sync::Mutex::new(send)))
        }
        Proto::Http2 => {
            let (send, conn) = http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Sender::H2(send)
        }
    })
}

impl Sender {
    async fn publish(&mut self, req: Request<Full<Bytes>>) -> anyhow::Result<u16> {
        let res = match self {
            Self::H1(s) => {
                let mut s = s.lock().await;
                s.ready().await?;
                s.send_request(req).await?
            }
            Self::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let status = res.status().as_u16();
        res.into_body().collect().await?;
        Ok(status)
    }
}

/// Runs every protocol × publisher count, one after the other, against the same server.
pub async fn run(b: &IngestBench) -> anyhow::Result<Vec<IngestResult>> {
    let ca = std::fs::read_to_string(&b.ca_file)
        .with_context(|| format!("reading {}", b.ca_file.display()))?;
    let mut out = Vec::new();
    for &proto in &b.protos {
        let tls = connector(&ca, proto, &b.credential)?;
        for &publishers in &b.publishers {
            out.push(run_one(b, &tls, proto, publishers).await?);
        }
    }
    Ok(out)
}

async fn run_one(
    b: &IngestBench,
    tls: &TlsConnector,
    proto: Proto,
    publishers: usize,
) -> anyhow::Result<IngestResult> {
    let conns = match proto {
        Proto::Http1 => publishers,
        Proto::Http2 => publishers.div_ceil(16),
    };
    let mut senders = Vec::with_capacity(conns);
    for _ in 0..conns {
        senders.push(connect(tls, b.addr, proto).await?);
    }
    let auth = match &b.credential {
        Credential::Token(token) => Some(format!("Bearer {token}")),
        Credential::Certificate { .. } => None,
    };
    let host = format!("localhost:{}", b.addr.port());
    let issued = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let cpu_before = b.server_pid.and_then(process_cpu_us);
    let client_before = process_cpu_us(std::process::id());
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(publishers);
    for p in 0..publishers {
        let mut sender = senders[p % conns].clone();
        let (issued, refused) = (issued.clone(), refused.clone());
        let (auth, host, total, per) = (auth.clone(), host.clone(), b.count, b.batch.max(1));
        let path = if per == 1 {
            "/api/v1/events"
        } else {
            "/api/v1/events/batch"
        };
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let first = issued.fetch_add(per, Ordering::Relaxed);
                if first >= total {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let event = |n: usize| {
                    format!(
                        r#"{{"source":"bench-{p}","type":"bench.tick","severity":"info","message":"tick {n}","attributes":{{"n":{n}}}}}"#
                    )
                };
                let body = if per == 1 {
                    event(first)
                } else {
                    let events: Vec<String> = (first..(first + per).min(total)).map(event).collect();
                    format!(r#"{{"events":[{}]}}"#, events.join(","))
                };
                let t = Instant::now();
                loop {
                    let mut req = Request::post(path).header("host", &host);
                    if let Some(auth) = &auth {
                        req = req.header("authorization", auth);
                    }
                    let req = req
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body.clone())))?;
                    match sender.publish(req).await? {
                        201 => break,
                        429 | 503 => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        other => bail!("publish answered {other}"),
                    }
                }
                let took = t.elapsed().as_micros() as u64;
                lat.push((took, (first + per).min(total) - first));
            }
        }));
    }
    let mut all = Vec::with_capacity(b.count);
    let mut events = 0;
    for t in tasks {
        for (took, n) in t.await.map_err(|e| anyhow!("publisher: {e}"))?? {
            all.push(took);
            events += n;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_after = b.server_pid.and_then(process_cpu_us);
    let client_after = process_cpu_us(std::process::id());
    Ok(IngestResult {
        proto,
        publishers,
        batch: b.batch.max(1),
        events,
        seconds,
        per_second: events as f64 / seconds,
        latency: percentiles(all),
        refused: refused.load(Ordering::Relaxed),
        cpu_us_per_event: cpu_before
            .zip(cpu_after)
            .map(|(a, z)| z.saturating_sub(a) as f64 / events.max(1) as f64),
        client_cpu_us_per_event: client_before
            .zip(client_after)
            .map(|(a, z)| z.saturating_sub(a) as f64 / events.max(1) as f64),
    })
}
