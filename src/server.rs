//! The listener side: accept with a connection cap, refuse plaintext (bare redirect or close),
//! TLS handshake with a deadline, hyper HTTP/1.1+HTTP/2 with timeouts, and a bounded drain.

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
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::ServerConfig;
use crate::state::AppState;
use crate::supervisor::Supervisor;

/// Binds every configured address.
pub fn bind(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, crate::state::StartError> {
    addrs
        .iter()
        .map(|addr| {
            let std = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|source| crate::state::StartError::Bind {
                    addr: *addr,
                    source,
                })?;
            TcpListener::from_std(std).map_err(|source| crate::state::StartError::Bind {
                addr: *addr,
                source,
            })
        })
        .collect()
}

struct ConnCtx {
    acceptor: TlsAcceptor,
    app: axum::Router,
    builder: auto::Builder<TokioExecutor>,
    cfg: ServerConfig,
    drain: CancellationToken,
    hard_stop: CancellationToken,
    metrics: Arc<crate::metrics::Metrics>,
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
/// 3. the other supervised tasks stop, the last started first (control socket, mDNS goodbye,
///    SIGHUP handler), each within the drain deadline;
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
        drain: drain.clone(),
        hard_stop: hard_stop.clone(),
        metrics: state.metrics().clone(),
    });
    let slots = Arc::new(Semaphore::new(cfg.max_connections));
    let mut accept_loops = Vec::new();
    for listener in listeners {
        accept_loops.push(tokio::spawn(accept_loop(
            listener,
            ctx.clone(),
            slots.clone(),
            tracker.clone(),
            stop_accepting.clone(),
        )));
    }
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
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "listening (TLS)");
    }
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    let ctx = ctx.clone();
                    let open = ctx.metrics.connection();
                    tracker.spawn(async move {
                        serve_connection(stream, peer, ctx).await;
                        drop((open, permit));
                    });
                }
                Err(_) => {
                    tracing::warn!(%peer, "connection cap reached; refusing connection");
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

async fn serve_connection(stream: TcpStream, peer: SocketAddr, ctx: Arc<ConnCtx>) {
    // A connection that has not finished its handshake when shutdown starts is simply dropped.
    let tls = tokio::select! {
        tls = accept_tls(stream, peer, &ctx) => tls,
        () = ctx.drain.cancelled() => None,
    };
    let Some(tls) = tls else { return };
    let app = ctx
        .app
        .clone()
        .map_request(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        });
    let service = TowerToHyperService::new(app);
    let conn = ctx
        .builder
        .serve_connection_with_upgrades(TokioIo::new(tls), service)
        .into_owned();
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => Some(r),
        () = ctx.drain.cancelled() => None,
    };
    let result = match result {
        Some(r) => r,
        None => {
            // Finish the requests in flight, refuse new ones, then close; unless time runs out.
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                r = conn.as_mut() => r,
                () = ctx.hard_stop.cancelled() => return,
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
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
