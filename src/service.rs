//! systemd integration: `sd_notify` datagrams (READY, WATCHDOG, STOPPING, STATUS) to `NOTIFY_SOCKET`,
//! and the watchdog task that feeds systemd only while the server really serves. A no-op elsewhere.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::state::AppState;
use crate::supervisor::Supervisor;

/// The supervisor's name for the watchdog task (stopped first at shutdown, before STOPPING=1).
pub const WATCHDOG_TASK: &str = "watchdog";

/// Where systemd listens for our state changes (`NOTIFY_SOCKET`), if it does.
#[derive(Debug)]
pub struct Notifier {
    addr: SocketAddr,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`: a path, or `@name` for an abstract socket. None when unset.
    pub fn from_env() -> Option<Self> {
        let raw = std::env::var_os("NOTIFY_SOCKET")?;
        let raw = raw.to_string_lossy();
        let addr = if let Some(name) = raw.strip_prefix('@') {
            SocketAddr::from_abstract_name(name.as_bytes())
        } else {
            SocketAddr::from_pathname(raw.as_ref())
        };
        match addr {
            Ok(addr) => Some(Self { addr }),
            Err(e) => {
                tracing::warn!(error = %e, "NOTIFY_SOCKET is not a usable address; not notifying systemd");
                None
            }
        }
    }

    /// Sends one datagram of `KEY=value` lines. Failures are logged, never fatal: a lost
    /// notification shows up as a systemd timeout, which is the right failure to see.
    pub fn notify(&self, state: &str) {
        let sent =
            UnixDatagram::unbound().and_then(|s| s.send_to_addr(state.as_bytes(), &self.addr));
        if let Err(e) = sent {
            tracing::warn!(error = %e, "cannot notify systemd");
        }
    }
}

/// How often systemd wants a sign of life: `WATCHDOG_USEC`, when `WATCHDOG_PID` is unset or us.
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_string_lossy().trim() != std::process::id().to_string() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// The systemd side of a running server: READY=1 has been sent (and the watchdog runs under
/// the supervisor).
#[derive(Debug)]
pub struct Lifecycle {
    notifier: Option<Notifier>,
}

impl Lifecycle {
    /// Call once the listeners accept and `/readyz` says ready. Sends READY=1 and starts the
    /// watchdog, as the supervisor's task `watchdog`, when systemd asked for one.
    pub fn ready(state: &AppState, supervisor: &mut Supervisor) -> Self {
        let notifier = Notifier::from_env();
        if let Some(n) = &notifier {
            n.notify(&format!(
                "READY=1\nSTATUS=serving site {}\nMAINPID={}",
                state.log().site(),
                std::process::id()
            ));
            if let Some(every) = watchdog_interval() {
                let notifier = Notifier {
                    addr: n.addr.clone(),
                };
                let state = state.clone();
                supervisor.spawn(WATCHDOG_TASK, move |stop| {
                    feed_watchdog(state, notifier, every, stop)
                });
            }
        }
        Self { notifier }
    }

    /// Call when shutdown starts: STOPPING=1 (systemd's stop timeout takes over from here; the
    /// supervisor stops the watchdog).
    pub fn stopping(self) {
        if let Some(n) = &self.notifier {
            n.notify("STOPPING=1\nSTATUS=draining connections");
        }
    }
}

/// Why one liveness probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("the sequencer did not commit a round trip: {0}")]
    Sequencer(#[source] crate::log::SubmitError),
    #[error("the server is not ready")]
    NotReady,
    #[error("the probe did not finish within {0:?}")]
    Timeout(Duration),
}

/// One proof that the server works: the runtime scheduled this task, the server still says it is
/// ready (listening, not draining), and a job made a round trip through the sequencer (the single
/// writer takes work and the store commits; an empty commit, a few hundred microseconds).
pub async fn probe(state: &AppState, limit: Duration) -> Result<(), ProbeError> {
    let work = async {
        if !state.is_ready() {
            return Err(ProbeError::NotReady);
        }
        state
            .log()
            .submit(|_tx| Ok(()))
            .await
            .map_err(ProbeError::Sequencer)
    };
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| ProbeError::Timeout(limit))?
}

/// Sends WATCHDOG=1 at half the interval, each time only after a successful probe. A failed
/// probe sends nothing, so a wedged server is restarted by systemd.
async fn feed_watchdog(
    state: AppState,
    notifier: Notifier,
    every: Duration,
    stop: CancellationToken,
) {
    let period = every / 2;
    tracing::info!(
        interval_ms = every.as_millis() as u64,
        "systemd watchdog enabled"
    );
    loop {
        match probe(&state, period).await {
            Ok(()) => notifier.notify("WATCHDOG=1"),
            Err(e) => {
                tracing::error!(error = %e, "liveness probe failed; not feeding the watchdog")
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
    }
}
