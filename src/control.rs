//! The control socket `<state_dir>/control.sock`: local admin requests to the running server
//! (today: a backup stream). The socket is 0600 in the 0700 state dir and checks the peer's uid.
//!
//! Protocol: the client sends one line, `backup v1\n`; the server answers with the backup stream
//! (format in `store::backup`) and closes, or with one line `error: <reason>\n`.

use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// File name of the socket in the state directory.
pub const SOCKET_FILE: &str = "control.sock";
const BACKUP_REQUEST: &str = "backup v1";
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the server refused: {0}")]
    Refused(String),
}

/// The listening control socket of a running server.
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl ControlSocket {
    /// Binds `<state_dir>/control.sock`. A socket file left by a crashed server is replaced: the
    /// store lock, already held, proves no other server uses this state directory.
    pub fn start(state: &AppState) -> Result<Self, ControlError> {
        let path = state.state_dir().join(SOCKET_FILE);
        let err = |source| ControlError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        let listener = UnixListener::bind(&path).map_err(err)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        let owner = std::fs::metadata(&path).map_err(err)?.uid();
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, state.clone(), owner, stop.clone()));
        Ok(Self { path, stop, task })
    }

    /// Stops accepting and removes the socket file. A backup already streaming goes on until the
    /// process exits.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn accept_loop(listener: UnixListener, state: AppState, owner: u32, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _)) => {
                let state = state.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, state, owner).await {
                        tracing::warn!(error = %e, "control request failed");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve(stream: UnixStream, state: AppState, owner: u32) -> std::io::Result<()> {
    let uid = stream.peer_cred()?.uid();
    let mut stream = BufReader::new(stream);
    if uid != 0 && uid != owner {
        tracing::warn!(uid, "control request from another user refused");
        return stream.get_mut().write_all(b"error: not allowed\n").await;
    }
    let mut line = String::new();
    let read = tokio::time::timeout(REQUEST_DEADLINE, async {
        let mut limited = (&mut stream).take(128);
        limited.read_line(&mut line).await
    })
    .await;
    if !matches!(read, Ok(Ok(_))) {
        return Ok(());
    }
    if line.trim_end() != BACKUP_REQUEST {
        return stream
            .get_mut()
            .write_all(b"error: unknown request\n")
            .await;
    }
    tracing::info!(uid, "backup requested on the control socket");
    let std_stream = stream.into_inner().into_std()?;
    std_stream.set_nonblocking(false)?;
    let log = state.log().clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut out = BufWriter::with_capacity(256 << 10, std_stream);
        log.store().write_backup(&mut out, log.now_us())
    })
    .await;
    match result {
        Ok(Ok(m)) => {
            tracing::info!(head = m.chain_head.map_or(0, |h| h.seq), "backup streamed");
            Ok(())
        }
        Ok(Err(e)) => Err(std::io::Error::other(e.to_string())),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

/// Asks the server running on `state_dir` for a backup and copies it to `out`. `Ok(false)` when
/// no server listens there.
pub fn request_backup(state_dir: &Path, out: &mut dyn Write) -> Result<bool, ControlError> {
    let path = state_dir.join(SOCKET_FILE);
    let err = |source| ControlError::Io {
        path: path.clone(),
        source,
    };
    let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(false);
        }
        Err(e) => return Err(err(e)),
    };
    stream
        .write_all(format!("{BACKUP_REQUEST}\n").as_bytes())
        .map_err(err)?;
    let mut first = [0u8; 8];
    stream.read_exact(&mut first).map_err(err)?;
    if first.starts_with(b"error: ") {
        let mut rest = String::new();
        let _ = stream.read_to_string(&mut rest);
        let text = String::from_utf8_lossy(&first).into_owned() + &rest;
        return Err(ControlError::Refused(
            text.trim_start_matches("error: ").trim().to_string(),
        ));
    }
    out.write_all(&first).map_err(err)?;
    std::io::copy(&mut stream, out).map_err(err)?;
    Ok(true)
}
