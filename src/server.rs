//! The listener side: accept under the connection caps, refuse plaintext (bare redirect or close),
//! TLS handshake with a deadline, hyper HTTP/1.1+HTTP/2 with timeouts, and a bounded drain.

mod conns;
mod tracked;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::ServerConfig;
use crate::state::AppState;
use crate::supervisor::Supervisor;
use conns::{Refused, Slot, Table};
use tracked::{Counted, Slotted};

/// How long a connection closed for idleness or eviction gets to say goodbye (HTTP/2 GOAWAY)
/// before it is dropped, unless a request is still in flight on it.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How often a generated certificate is checked for renewal while serving (it is renewed 30 days
/// before its end, so a gateway that sleeps through a few checks still renews in time).
const RENEW_CHECK: Duration = Duration::from_secs(6 * 3600);

/// Binds every configured address. An IPv6 address is bound IPv6-only (`IPV6_V6ONLY`), whatever
/// the host's `bindv6only` default: `[::]:8443` then serves IPv6 and `0.0.0.0:8443` IPv4, and the
/// two coexist instead of the second failing with "address in use".
pub fn bind(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, crate::state::StartError> {
    addrs
        .iter()
        .map(|addr| {
            let err = |source| crate::state::StartError::Bind {
                addr: *addr,
                source,
            };
            TcpListener::from_std(bind_one(*addr).map_err(err)?).map_err(err)
        })
        .collect()
}

fn bind_one(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // As std does: a restart may bind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

struct ConnCtx {
    acceptor: TlsAcceptor,
    app: axum::Router,
    builder: auto::Builder<TokioExecutor>,
    cfg: ServerConfig,
    conns: Arc<Table>,
    drain: CancellationToken,
    hard_stop: CancellationToken,
    metrics: Arc<crate::metrics::Metrics>,
    /// Set on the device listener: who may connect, and the log to map certificates to devices.
    device: Option<(
        Arc<crate::tls::gate::DeviceGate>,
        crate::log::Log,
        Arc<crate::devices::AuthCache>,
    )>,
}

/// Serves until `shutdown` resolves, then stops accepting, drains open connections for up to
/// `drain_timeout_secs`, drops the rest, and stops the sequencer after it commits its queue.
pub async fn run<F>(listeners: Vec<TcpListener>, state: AppState, shutdown: F)
where
    F: Future<Output = ()> + Send,
{
    run_supervised(listeners, state, Supervisor::new(), shutdown).await;
}

/// [`run`] with the process's background tasks (`serve` puts the SIGHUP handler, mDNS and the
/// control socket there). The one shutdown order, after `shutdown` resolves:
/// 1. the watchdog stops, then systemd hears STOPPING=1 and `/readyz` says not ready;
/// 2. the listeners stop accepting;
/// 3. the other supervised tasks stop, the last started first (certificate renewal, control
///    socket, mDNS goodbye, SIGHUP handler), each within the drain deadline;
/// 4. open connections and WebSockets drain, and are dropped at the drain deadline;
/// 5. the writer commits what it has already accepted and stops.
pub async fn run_supervised<F>(
    listeners: Vec<TcpListener>,
    state: AppState,
    mut supervisor: Supervisor,
    shutdown: F,
) where
    F: Future<Output = ()> + Send,
{
    let cfg = state.config().server.clone();
    let drain = CancellationToken::new();
    let hard_stop = CancellationToken::new();
    let stop_accepting = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(cfg.header_read_timeout_secs))
        .max_buf_size(cfg.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(cfg.keep_alive_secs)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(128)
        .max_header_list_size(u32::try_from(cfg.max_header_bytes).unwrap_or(u32::MAX));
    let ctx = Arc::new(ConnCtx {
        acceptor: TlsAcceptor::from(state.tls().server_config()),
        app: crate::http::router(state.clone()),
        builder,
        cfg: cfg.clone(),
        conns: Table::new(cfg.max_connections, cfg.max_connections_per_address),
        drain: drain.clone(),
        hard_stop: hard_stop.clone(),
        metrics: state.metrics().clone(),
        device: None,
    });
    let mut accept_loops = Vec::new();
    for listener in listeners {
        accept_loops.push(tokio::spawn(accept_loop(
            listener,
            ctx.clone(),
            tracker.clone(),
            stop_accepting.clone(),
        )));
    }
    if let Some(dctx) = device_ctx(&state, &ctx) {
        for listener in state.take_device_listeners() {
            accept_loops.push(tokio::spawn(accept_loop(
                listener,
                dctx.clone(),
                tracker.clone(),
                stop_accepting.clone(),
            )));
        }
    }
    let renewing = state.clone();
    supervisor.spawn("tls-renewal", move |stop| renew_certificate(renewing, stop));
    let (log, signer) = (state.log().clone(), state.signer().clone());
    let storage = &state.config().storage;
    let policy = crate::log::checkpointer::Policy {
        every_entries: storage.checkpoint_every,
        interval_us: i64::from(storage.checkpoint_secs) * 1_000_000,
    };
    supervisor.spawn("checkpoints", move |stop| {
        crate::log::checkpointer::run(log, signer, policy, stop)
    });
    let alarm_log = state.log().clone();
    supervisor.spawn("alarm-timers", move |stop| {
        crate::alarms::timers::run(alarm_log, stop)
    });
    let (system_log, system_cfg) = (state.log().clone(), state.config().alarms.clone());
    let state_dir = state.state_dir().to_path_buf();
    let cert_state = state.clone();
    let probes = crate::alarms::system_checks::Probes {
        certs: Some(Arc::new(move || cert_state.tls().expiries())),
        queue_capacity: state.config().storage.queue_capacity,
        replication_lag: state
            .replication()
            .cloned()
            .map(|rt| replication_lag_probe(rt, state.log().clone())),
    };
    supervisor.spawn("system-alarms", move |stop| {
        crate::alarms::system::run(system_log, system_cfg, state_dir, probes, stop)
    });
    let (escalation_log, escalation_cfg) = (
        state.log().clone(),
        state.config().alarms.escalation.clone(),
    );
    supervisor.spawn("alarm-escalation", move |stop| {
        crate::alarms::escalation::run(escalation_log, escalation_cfg, stop)
    });
    let (rules_log, rules_cfg) = (state.log().clone(), state.config().incidents.clone());
    supervisor.spawn("incident-rules", move |stop| {
        crate::incidents::rules::run(rules_log, rules_cfg, stop)
    });
    if let Some(h) = state.replication().and_then(|rt| rt.hq()) {
        let (config, replicas, hq) = (
            state.config().clone(),
            h.hq.replicas.clone(),
            state.log().clone(),
        );
        supervisor.spawn("hq-retention", move |stop| {
            crate::replication::retention::run(config, replicas, hq, stop)
        });
        let nats = &state.config().replication.nats;
        if nats.enabled() {
            let forwarder = crate::replication::nats::Forwarder::new(
                nats.clone(),
                h.hq.replicas.clone(),
                state.metrics().clone(),
            )
            .with_auth(h.nats_auth.clone());
            supervisor.spawn("nats-forward", move |stop| forwarder.run(stop));
        }
    }
    if let Some(rt) = state.replication().cloned() {
        let (log, dir) = (state.log().clone(), state.state_dir().to_path_buf());
        let (opts, tls_state) = (
            crate::replication::runtime::ship_options(state.config()),
            state.clone(),
        );
        let hq_rt = rt.clone();
        supervisor.spawn("replication-hq", move |stop| async move {
            crate::replication::runtime::run_hq(hq_rt, tls_state.tls(), stop).await;
        });
        supervisor.spawn("replication-edge", move |stop| {
            crate::replication::runtime::run_edge(rt, log, dir, opts, stop)
        });
    }
    let indexing = state.log().clone();
    supervisor.spawn("search-indexer", move |stop| {
        crate::search::indexer::run(indexing, stop)
    });
    let pruning = state.log().clone();
    let retention = state.retention().clone();
    supervisor.spawn("retention", move |stop| retention.run(stop));
    supervisor.spawn("ingest-key-pruning", move |stop| {
        crate::events::prune_loop(pruning, stop)
    });
    let collecting = state.log().clone();
    let ttl_hours = state.config().attachments.unposted_ttl_hours;
    supervisor.spawn("attachment-gc", move |stop| {
        crate::chat::attachment_gc::run(collecting, ttl_hours, stop)
    });
    state.set_ready(true);
    // READY=1 and the watchdog under systemd (Type=notify); nothing otherwise.
    let lifecycle = crate::service::Lifecycle::ready(&state, &mut supervisor);
    shutdown.await;
    tracing::info!("shutting down: no new connections, draining open ones");
    let deadline = Duration::from_secs(cfg.drain_timeout_secs);
    supervisor
        .stop(crate::service::WATCHDOG_TASK, deadline)
        .await;
    lifecycle.stopping();
    state.set_ready(false);
    stop_accepting.cancel();
    for l in accept_loops {
        let _ = l.await;
    }
    supervisor.shutdown(deadline).await;
    drop(ctx);
    drain.cancel();
    tracker.close();
    let sockets = state.sockets();
    sockets.closing.cancel();
    sockets.tasks.close();
    let both = async { tokio::join!(tracker.wait(), sockets.tasks.wait()) };
    if tokio::time::timeout(deadline, both).await.is_err() {
        tracing::warn!("drain deadline passed; closing the remaining connections");
        hard_stop.cancel();
        sockets.abort.cancel();
        tokio::join!(tracker.wait(), sockets.tasks.wait());
    }
    state.log().close().await;
    tracing::info!("stopped");
}

async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<ConnCtx>,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        if ctx.device.is_some() {
            // Not `addr=`: scripts and tests take the first `addr=` as the main port.
            tracing::info!(mtls = %addr, "listening for devices (mutual TLS)");
        } else {
            tracing::info!(%addr, "listening (TLS)");
        }
    }
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => match ctx.conns.admit(peer.ip()) {
                Ok(slot) => {
                    let ctx = ctx.clone();
                    let open = ctx.metrics.connection();
                    tracker.spawn(async move {
                        serve_connection(stream, peer, ctx, slot).await;
                        drop(open);
                    });
                }
                Err(Refused::Full) => {
                    tracing::warn!(%peer, "connection cap reached, none idle; refusing connection");
                    drop(stream);
                }
                Err(Refused::PerAddress) => {
                    tracing::warn!(%peer, "per-address connection cap reached, none idle; refusing");
                    drop(stream);
                }
            },
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The device listener's context: the main one's router and settings with the device
/// acceptor, its own connection table under the same caps, and the gate.
fn device_ctx(state: &AppState, main: &ConnCtx) -> Option<Arc<ConnCtx>> {
    let gate = state.device_gate()?.clone();
    let config = match state.tls().device_server_config(gate.verifier()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "device listener disabled: cannot build its TLS config");
            return None;
        }
    };
    Some(Arc::new(ConnCtx {
        acceptor: TlsAcceptor::from(config),
        app: main.app.clone(),
        builder: main.builder.clone(),
        cfg: main.cfg.clone(),
        conns: Table::new(
            main.cfg.max_connections,
            main.cfg.max_connections_per_address,
        ),
        drain: main.drain.clone(),
        hard_stop: main.hard_stop.clone(),
        metrics: main.metrics.clone(),
        device: Some((gate, state.log().clone(), state.device_auth().clone())),
    }))
}

/// On the device listener: the device whose verified certificate opened the connection, checked
/// against the store and registered so that its revocation closes the connection. `None` (and
/// the connection is dropped) when the certificate maps to no active device.
fn admit_device(
    tls: &tokio_rustls::server::TlsStream<TcpStream>,
    peer: SocketAddr,
    ctx: &ConnCtx,
) -> Option<(
    crate::tls::gate::PeerCertificate,
    Option<crate::tls::gate::LiveDevice>,
)> {
    let Some((gate, log, cache)) = &ctx.device else {
        return None;
    };
    let cert = tls.get_ref().1.peer_certificates()?.first()?;
    let id = crate::tls::gate::PeerCertificate::of(cert);
    match crate::device_certs::authenticate(log, cache, &id.fingerprint, log.now_us()) {
        Ok(Some(device)) => Some((id, Some(gate.register(&device.name)))),
        Ok(None) => {
            tracing::info!(%peer, "device certificate of no active device; closing");
            None
        }
        Err(e) => {
            tracing::warn!(%peer, error = %e, "cannot check a device certificate; closing");
            None
        }
    }
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, ctx: Arc<ConnCtx>, slot: Slot) {
    let conn_state = slot.conn.clone();
    // A connection that has not finished its handshake when shutdown starts, or that is evicted
    // for a newcomer meanwhile, is simply dropped.
    let tls = tokio::select! {
        tls = accept_tls(stream, peer, &ctx) => tls,
        () = ctx.drain.cancelled() => None,
        () = conn_state.evicted.cancelled() => None,
    };
    let Some(tls) = tls else { return };
    let (peer_cert, live) = match &ctx.device {
        None => (None, None),
        Some(_) => match admit_device(&tls, peer, &ctx) {
            Some((id, live)) => (Some(id), live),
            None => return,
        },
    };
    // Revocation of the device cancels this; other connections never see it cancelled.
    let revoked = live
        .as_ref()
        .map_or_else(CancellationToken::new, |l| l.close.clone());
    // The first request's deadline runs from the end of the handshake.
    conn_state.restart_clock();
    let app = ctx
        .app
        .clone()
        .map_request(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            if let Some(id) = peer_cert {
                req.extensions_mut().insert(id);
            }
            req
        });
    let service = Counted::new(TowerToHyperService::new(app), conn_state.clone());
    // The socket carries the slot: an upgraded connection (a WebSocket) keeps it while it lives.
    let conn = ctx
        .builder
        .serve_connection_with_upgrades(TokioIo::new(Slotted::new(tls, slot)), service)
        .into_owned();
    let mut conn = std::pin::pin!(conn);
    let first = Duration::from_secs(ctx.cfg.first_request_timeout_secs);
    let idle = Duration::from_secs(ctx.cfg.idle_timeout_secs);
    let outcome = tokio::select! {
        r = conn.as_mut() => Ok(r),
        () = revoked.cancelled() => {
            tracing::info!(%peer, "device revoked: closing its connection");
            return;
        }
        () = ctx.drain.cancelled() => Err(Close::Drain),
        () = conn_state.evicted.cancelled() => Err(Close::Evicted),
        () = conn_state.idle_for(first, idle) => Err(Close::Idle),
    };
    let result = match outcome {
        Ok(r) => r,
        Err(Close::Drain) => {
            // Finish the requests in flight, refuse new ones, then close; unless time runs out.
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                r = conn.as_mut() => r,
                () = ctx.hard_stop.cancelled() => return,
            }
        }
        Err(why) => {
            tracing::debug!(%peer, ?why, "closing an idle connection");
            // HTTP/2 gets a GOAWAY; a request that raced in still finishes.
            conn.as_mut().graceful_shutdown();
            let settle = async {
                tokio::time::sleep(CLOSE_GRACE).await;
                conn_state.idle_for(CLOSE_GRACE, CLOSE_GRACE).await;
            };
            tokio::select! {
                r = conn.as_mut() => r,
                () = settle => return,
                () = ctx.hard_stop.cancelled() => return,
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
    drop(live);
}

/// Why the server closes a connection itself.
#[derive(Debug)]
enum Close {
    Drain,
    Evicted,
    Idle,
}

/// Renews a generated certificate before it runs out, for as long as the server accepts.
async fn renew_certificate(state: AppState, stop: CancellationToken) {
    let clock = state.log().clock().clone();
    let every = i64::try_from(RENEW_CHECK.as_micros()).unwrap_or(i64::MAX);
    loop {
        // The clock seam, not tokio's timer: a test moves time to drive the check.
        tokio::select! {
            () = stop.cancelled() => return,
            () = clock.sleep_until(clock.now_us().saturating_add(every)) => {}
        }
        let st = state.clone();
        let renewed = tokio::task::spawn_blocking(move || {
            let now_us = st.log().now_us();
            let now = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_us) * 1000)
                .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
            st.tls().renew(now)
        })
        .await;
        match renewed {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "TLS certificate renewal failed; will retry"),
            Err(e) => tracing::error!(error = %e, "TLS certificate renewal task failed"),
        }
    }
}

/// Peeks at the first byte: a TLS handshake is accepted within the deadline; plaintext gets the
/// bare redirect (or nothing) and `None`.
async fn accept_tls(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: &ConnCtx,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let _ = stream.set_nodelay(true);
    let handshake = Duration::from_secs(ctx.cfg.handshake_timeout_secs);
    let mut first = [0u8; 1];
    match tokio::time::timeout(handshake, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return None,
    }
    // A TLS record starts with 0x16 (handshake). Anything else is not for us.
    if first[0] != 0x16 {
        if ctx.cfg.redirect_plaintext {
            redirect_plaintext(stream, handshake).await;
        }
        return None;
    }
    match tokio::time::timeout(handshake, ctx.acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// Reads one plaintext request head (bounded in size and time) and answers with a bare redirect
/// to the same host over https: no body, no data, then close.
async fn redirect_plaintext(mut stream: TcpStream, deadline: Duration) {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    let read = tokio::time::timeout(deadline, async {
        while len < buf.len() {
            match stream.read(&mut buf[len..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    len += n;
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    if read.is_err() {
        return;
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let host = head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("host")
            .then(|| value.trim().to_string())
    });
    let valid = |h: &str| {
        !h.is_empty()
            && h.len() <= 255
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    };
    if let Some(host) = host.filter(|h| valid(h)) {
        let response = format!(
            "HTTP/1.1 301 Moved Permanently\r\nLocation: https://{host}/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let _ = stream.write_all(response.as_bytes()).await;
    }
    let _ = stream.shutdown().await;
}

/// How far behind replication is, for the lag alarm: at an edge, the age of the oldest entry HQ
/// has not acknowledged; at HQ, every site not revoked (`Replicas::behind`).
fn replication_lag_probe(
    rt: Arc<crate::replication::runtime::Runtime>,
    log: crate::log::Log,
) -> crate::alarms::system_checks::LagProbe {
    use crate::replication::runtime::Runtime;
    Arc::new(move || {
        let (rt, log) = (rt.clone(), log.clone());
        Box::pin(async move {
            match &*rt {
                Runtime::Edge(e) => {
                    let connected = *e.connected.borrow();
                    match crate::replication::edge::status(&log, connected) {
                        Ok(s) => vec![(log.site().to_string(), s.lag_seconds)],
                        Err(e) => {
                            tracing::warn!(error = %e, "reading the replication lag failed");
                            Vec::new()
                        }
                    }
                }
                Runtime::Hq(h) => {
                    let sites = h.hq.sites.clone();
                    h.hq.replicas
                        .behind()
                        .await
                        .into_iter()
                        .filter(|(site, _)| !matches!(sites.record(site), Ok(Some(r)) if r.revoked))
                        .collect()
                }
            }
        })
    })
}
