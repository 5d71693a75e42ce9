//! Test harness: `TestServer` runs the real server in process on 127.0.0.1:0 with a temp state
//! directory; `Client` speaks HTTP/1.1 or HTTP/2 over TLS, trusting only that server's CA.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use plantwire::clock::{Clock, SystemClock};
use plantwire::config::Config;
use plantwire::state::AppState;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Whether the tests run in CI (`CI` set and not `false`/`0`, as `.ci/run` and most CI systems
/// do): there, a test whose tools are missing fails instead of skipping. Not a `PLANTWIRE_`
/// variable, because those are server configuration.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A config for tests: loopback port 0, the given state dir, a fixed site.
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut c = Config {
        site: Some("test-site".into()),
        state_dir: Some(dir.to_path_buf()),
        ..Config::default()
    };
    c.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    c.devices.listen = vec!["127.0.0.1:0".parse().unwrap()];
    c.server.drain_timeout_secs = 2;
    c.log.level = "warn".into();
    // Cheap hashing for tests only; production keeps the OWASP parameters.
    c.auth.argon2_memory_kib = 64;
    c.auth.argon2_iterations = 1;
    // No timed checkpoints behind a test's back (tests that count entries would see them); the
    // checkpoint tests turn them on.
    c.storage.checkpoint_every = 1_000_000;
    c.storage.checkpoint_secs = 86_400;
    // No disk-almost-full system alarm on a full CI disk: tests that want it lower this.
    c.alarms.disk_alarm_percent = 100;
    c.alarms.disk_warn_percent = 100;
    // Only the disk alarm (off above): the manual clock runs years past the test certificate,
    // and KPI tests script floods. Tests of the other system alarms turn theirs on.
    c.alarms.system_alarms = vec![plantwire::config::SystemAlarm::Disk];
    c
}

pub struct TestServer {
    pub dir: Option<TempDir>,
    pub addr: SocketAddr,
    pub state: Option<AppState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// At an HQ: its cache of site replicas.
    pub fn replicas(&self) -> std::sync::Arc<plantwire::replication::hq::Replicas> {
        self.state()
            .replication()
            .unwrap()
            .hq()
            .unwrap()
            .hq
            .replicas
            .clone()
    }

    /// At an HQ: `site`'s replica, opened through HQ's own cache of replicas.
    pub async fn replica(&self, site: &str) -> plantwire::log::Log {
        self.replicas().replica(site).await.unwrap()
    }

    /// The seq of the newest entry in the log (0 when empty), read from the store.
    pub fn head_seq(&self) -> u64 {
        self.state()
            .log()
            .read()
            .unwrap()
            .chain_head()
            .unwrap()
            .map_or(0, |h| h.seq)
    }

    pub async fn start() -> Self {
        Self::start_in(TempDir::new().unwrap(), |_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut Config)) -> Self {
        Self::start_in(TempDir::new().unwrap(), f).await
    }

    pub async fn start_in(dir: TempDir, f: impl FnOnce(&mut Config)) -> Self {
        Self::start_full(dir, Arc::new(SystemClock), f).await
    }

    /// Starts with a given clock (a `ManualClock` lets tests move time).
    pub async fn start_full(
        dir: TempDir,
        clock: Arc<dyn Clock>,
        f: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = test_config(dir.path());
        f(&mut config);
        config.validate().unwrap();
        let (state, listeners) = AppState::prepare(config, clock).await.unwrap();
        let addr = listeners[0].local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(plantwire::server::run(
            listeners,
            state.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            dir: Some(dir),
            addr,
            state: Some(state),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn state(&self) -> &AppState {
        self.state.as_ref().unwrap()
    }

    pub fn path(&self) -> std::path::PathBuf {
        self.dir.as_ref().unwrap().path().to_path_buf()
    }

    pub fn client(&self) -> Client {
        Client::new(self.addr, self.state().tls().ca_pem().unwrap())
    }

    /// Registers a device and returns its token.
    pub async fn device(&self, name: &str) -> String {
        plantwire::devices::add(self.state().log(), name, &test_author())
            .await
            .unwrap()
            .1
    }

    /// The first admin's one-time password, from the file first start wrote.
    pub fn admin_otp(&self) -> String {
        std::fs::read_to_string(self.path().join(plantwire::users::ADMIN_PASSWORD_FILE))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Creates an active user with a known password (no forced change) and returns nothing.
    pub async fn user(&self, name: &str, role: plantwire::store::Role, password: &str) {
        let hash = self.state().auth().hasher.hash(password).await.unwrap();
        plantwire::users::create(
            self.state().log(),
            plantwire::users::NewUser {
                username: name.into(),
                display_name: format!("{name} display"),
                password_hash: hash,
                role,
                status: plantwire::store::UserStatus::Active,
                must_change_password: false,
            },
            &test_author(),
        )
        .await
        .unwrap();
    }

    /// Stops the server (drain, writer flush, store closed) and hands back the state dir.
    pub async fn stop(mut self) -> TempDir {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
        self.state.take();
        self.dir.take().unwrap()
    }
}

/// A response, fully read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts the uniform error shape and returns its code.
    pub fn error_code(&self) -> String {
        let v = self.json();
        assert!(v["error"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
        assert!(
            v["request_id"].as_str().is_some_and(|s| s.len() == 16),
            "{v}"
        );
        v["code"].as_str().unwrap().to_string()
    }
}

#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    /// Source address to connect from (any 127.0.0.0/8 address works on loopback).
    pub source: Option<std::net::IpAddr>,
}

/// A root store holding only the given CA certificate(s).
pub fn roots(ca_pem: &str) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

pub fn client_config(ca_pem: &str, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let roots = roots(ca_pem);
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg
}

impl Client {
    pub fn new(addr: SocketAddr, ca_pem: &str) -> Self {
        Self {
            addr,
            config: Arc::new(client_config(ca_pem, &[b"http/1.1"])),
            source: None,
        }
    }

    /// The same client, connecting from another loopback address.
    pub fn with_source(&self, ip: &str) -> Self {
        Self {
            source: Some(ip.parse().unwrap()),
            ..self.clone()
        }
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        match self.source {
            None => TcpStream::connect(self.addr).await,
            Some(ip) => {
                let sock = tokio::net::TcpSocket::new_v4()?;
                sock.bind(SocketAddr::new(ip, 0))?;
                sock.connect(self.addr).await
            }
        }
    }

    pub async fn tls(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = self.connect().await.unwrap();
        TlsConnector::from(self.config.clone())
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    }

    /// One request on a fresh HTTP/1.1 connection.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Resp {
        self.try_send(req).await.expect("request failed")
    }

    /// Like `send`, but a failed connection or request is `None` (for crash tests).
    pub async fn try_send(&self, req: Request<Full<Bytes>>) -> Option<Resp> {
        let tcp = self.connect().await.ok()?;
        let tls = TlsConnector::from(self.config.clone())
            .connect(ServerName::try_from("localhost").ok()?, tcp)
            .await
            .ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .ok()?;
        tokio::spawn(conn);
        let res = sender.send_request(req).await.ok()?;
        let (parts, body) = res.into_parts();
        Some(Resp {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.ok()?.to_bytes(),
        })
    }

    pub async fn try_event(&self, token: &str, message: &str) -> Option<Resp> {
        let body =
            serde_json::json!({"source": "pump-7", "type": "pressure.high", "message": message});
        let req = self
            .request(Method::POST, "/api/v1/events")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(Full::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        self.try_send(req).await
    }

    pub fn request(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("localhost:{}", self.addr.port()))
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(
            self.request(Method::GET, path)
                .body(Full::default())
                .unwrap(),
        )
        .await
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: &serde_json::Value,
    ) -> Resp {
        let mut b = self
            .request(Method::POST, path)
            .header("content-type", "application/json");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        self.send(
            b.body(Full::from(serde_json::to_vec(body).unwrap()))
                .unwrap(),
        )
        .await
    }

    /// Any method with a bearer token and an optional JSON body.
    pub async fn with_bearer(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> Resp {
        let mut b = self
            .request(method, path)
            .header("authorization", format!("Bearer {token}"));
        let body = match body {
            Some(v) => {
                b = b.header("content-type", "application/json");
                Full::from(serde_json::to_vec(&v).unwrap())
            }
            None => Full::default(),
        };
        self.send(b.body(body).unwrap()).await
    }

    /// Publishes one event and returns the response.
    pub async fn event(&self, token: &str, message: &str) -> Resp {
        self.post_json(
            "/api/v1/events",
            Some(token),
            &serde_json::json!({"source": "pump-7", "type": "pressure.high", "message": message}),
        )
        .await
    }
}

/// The security headers every response must carry.
pub fn assert_security_headers(h: &HeaderMap) {
    let csp = h
        .get("content-security-policy")
        .expect("CSP")
        .to_str()
        .unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(h.get("strict-transport-security").is_some());
    assert_eq!(h.get("x-content-type-options").unwrap(), "nosniff");
    assert_eq!(h.get("referrer-policy").unwrap(), "no-referrer");
}

/// Who the tests' own administrative calls are by.
pub fn test_author() -> plantwire::log::Author {
    plantwire::log::Author::Cli("test".into())
}

/// Reads until the server closes; `None` if it is still open after `limit` seconds.
pub async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    limit: u64,
) -> Option<usize> {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    let mut n = 0;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(limit);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(n),
            Ok(Ok(k)) => n += k,
        }
    }
}
