//! The control socket `<state_dir>/control.sock`: local admin requests to the running server
//! (backup stream, admin commands). The socket is 0600 in the 0700 state dir and checks the peer's uid.
//!
//! Protocol (docs/operations.md): the client sends one line. `backup v1\n`: the server answers with
//! the backup stream (format in `store::backup`) and closes. `admin v1 <JSON>\n`: the server runs
//! the command and answers one JSON line `{"code","stdout","stderr"}`. A refusal is one line
//! `error: <reason>\n`.

use std::io::{BufRead, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use serde::{Deserialize, Serialize};

use crate::admin::{Ctx, Outcome, Request};
use crate::log::Author;
use crate::state::AppState;

/// File name of the socket in the state directory.
pub const SOCKET_FILE: &str = "control.sock";
const BACKUP_REQUEST: &str = "backup v1";
const ADMIN_PREFIX: &str = "admin v1 ";
const AUDIT_EXPORT_PREFIX: &str = "audit-export v1 ";
/// Longest request line accepted.
const MAX_REQUEST: u64 = 64 << 10;
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot reach the control socket {0}: permission denied; run as root or the plantwire user (sudo plantwire ... or sudo -u plantwire plantwire ...)"
    )]
    PermissionDenied(PathBuf),
    #[error("the server refused: {0}")]
    Refused(String),
    #[error("control socket {path}: the server's answer is not valid: {source}")]
    BadAnswer {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// An admin command and who the CLI says asked (`SUDO_USER` or `USER`). The log's author comes
/// from the peer's uid ([`author_of`]); the claimed name is believed only from root.
#[derive(Debug, Serialize, Deserialize)]
struct AdminEnvelope {
    by: String,
    request: Request,
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
        let mut limited = (&mut stream).take(MAX_REQUEST);
        limited.read_line(&mut line).await
    })
    .await;
    if !matches!(read, Ok(Ok(_))) {
        return Ok(());
    }
    if let Some(json) = line.trim_end().strip_prefix(ADMIN_PREFIX) {
        let outcome = match serde_json::from_str::<AdminEnvelope>(json) {
            Ok(env) => run_admin(&state, uid, env).await,
            Err(e) => Outcome::error(crate::admin::EXIT_USAGE, &e),
        };
        let mut answer = serde_json::to_string(&outcome).map_err(std::io::Error::other)?;
        answer.push('\n');
        return stream.get_mut().write_all(answer.as_bytes()).await;
    }
    if let Some(json) = line.trim_end().strip_prefix(AUDIT_EXPORT_PREFIX) {
        return serve_audit_export(stream.into_inner(), &state, uid, json).await;
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
    let state_dir = state.state_dir().to_path_buf();
    // At an HQ, every site's record files and replica follow HQ's own store.
    let replicas = state
        .replication()
        .and_then(|rt| rt.hq())
        .map(|h| h.hq.replicas.clone());
    let runtime = tokio::runtime::Handle::current();
    let result = tokio::task::spawn_blocking(move || {
        let mut out = BufWriter::with_capacity(256 << 10, std_stream);
        let files = crate::site_files::collect(&state_dir, |aad, b| log.seal_view(aad, b))
            .map_err(std::io::Error::other)?;
        let Some(replicas) = replicas else {
            return log
                .store()
                .write_backup(&mut out, log.now_us(), &files)
                .map_err(std::io::Error::other);
        };
        let sites = crate::replication::backup::site_names(replicas.root())
            .map_err(std::io::Error::other)?;
        let mut source = crate::replication::backup::OnlineSites { replicas, runtime };
        log.store()
            .write_backup_with_sites(&mut out, log.now_us(), &files, &sites, &mut source)
            .map_err(std::io::Error::other)
    })
    .await;
    match result {
        Ok(Ok(m)) => {
            tracing::info!(
                head = m.chain_head.map_or(0, |h| h.seq),
                sites = m.sites.len(),
                "backup streamed"
            );
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

/// `audit-export v1 <JSON>`: the export streamed onto the socket, or one `error: ` line when the
/// range is refused before anything is written.
async fn serve_audit_export(
    mut stream: UnixStream,
    state: &AppState,
    uid: u32,
    json: &str,
) -> std::io::Result<()> {
    let req = match serde_json::from_str::<crate::audit::ExportRequest>(json) {
        Ok(r) => r,
        Err(e) => return stream.write_all(format!("error: {e}\n").as_bytes()).await,
    };
    tracing::info!(uid, request = ?req, "audit export requested on the control socket");
    let plan = match crate::audit::prepare(state.log(), state.signer(), &req).await {
        Ok(p) => p,
        Err(e) => return stream.write_all(format!("error: {e}\n").as_bytes()).await,
    };
    let std_stream = stream.into_std()?;
    std_stream.set_nonblocking(false)?;
    let walk = crate::audit::Walk::new(state.log().clone(), plan);
    tokio::task::spawn_blocking(move || {
        let mut out = BufWriter::with_capacity(256 << 10, std_stream);
        walk.write_all(&mut out).map_err(std::io::Error::other)
    })
    .await
    .map_err(std::io::Error::other)?
    .map(|_| ())
}

/// The author of an online admin command: the account of the peer's uid, as the kernel reports
/// it. Root may name the person it acts for (`sudo` sets `SUDO_USER`), since root can act as
/// anyone anyway; any other uid is recorded as itself, whatever it claims. `accounts` is the
/// text of `/etc/passwd`; a uid it does not list is `uid<N>`.
fn author_of(uid: u32, claimed: &str, accounts: &str) -> Author {
    let claimed_ok = !claimed.is_empty()
        && claimed.len() <= 64
        && claimed
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if uid == 0 && claimed_ok {
        return Author::Cli(claimed.to_string());
    }
    let name = accounts.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let id = f.nth(1)?.parse::<u32>().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_string())
    });
    Author::Cli(name.unwrap_or_else(|| format!("uid{uid}")))
}

/// The account list, or nothing when it cannot be read (then authors are `uid<N>`).
fn accounts() -> String {
    std::fs::read_to_string("/etc/passwd").unwrap_or_default()
}

async fn run_admin(state: &AppState, uid: u32, env: AdminEnvelope) -> Outcome {
    let by = author_of(uid, &env.by, &accounts());
    tracing::info!(uid, claimed = %env.by, by = %by, request = ?env.request, "admin command on the control socket");
    let ctx = Ctx {
        log: state.log(),
        auth: state.auth(),
        config: state.config(),
        state_dir: state.state_dir(),
        by,
        online: true,
        ingest: Some(state.ingest()),
        replication: state.replication(),
    };
    // The two that walk the log read for a while: on a blocking thread, never on one of the few
    // async workers that serve requests.
    let log = state.log().clone();
    let blocking = match env.request.clone() {
        Request::AuditVerify { json } => Some(tokio::task::spawn_blocking(move || {
            crate::admin::verify_live(&log, json, true)
        })),
        Request::AuditLog {
            kind,
            since,
            limit,
            json,
        } => Some(tokio::task::spawn_blocking(move || {
            crate::admin::audit_log_outcome(&log, &kind, since, limit, json)
        })),
        _ => None,
    };
    match blocking {
        Some(task) => task
            .await
            .unwrap_or_else(|e| crate::admin::Outcome::error(crate::admin::EXIT_FAILED, &e)),
        None => {
            let outcome = crate::admin::execute(&ctx, &env.request).await;
            if let Request::Device {
                device: crate::cli::DeviceCommand::Revoke { name },
            } = &env.request
            {
                if outcome.code == crate::admin::EXIT_OK {
                    // The new CRL for the next handshakes; the device's connections close.
                    if let Err(e) = state.device_revoked(name) {
                        tracing::error!(error = %e, device = %name, "device revoked, but the CRL could not be renewed");
                    }
                }
            }
            outcome
        }
    }
}

/// Connects to the server's control socket; `None` when no server listens there.
fn connect(path: &Path) -> Result<Option<std::os::unix::net::UnixStream>, ControlError> {
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(s) => Ok(Some(s)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(None)
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(ControlError::PermissionDenied(path.to_path_buf()))
        }
        Err(source) => Err(ControlError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Runs `request` in the server running on `state_dir`. `Ok(None)` when no server listens there.
pub fn request_admin(
    state_dir: &Path,
    request: &Request,
    by: &str,
) -> Result<Option<Outcome>, ControlError> {
    let path = state_dir.join(SOCKET_FILE);
    let Some(stream) = connect(&path)? else {
        return Ok(None);
    };
    let err = |source| ControlError::Io {
        path: path.clone(),
        source,
    };
    let env = AdminEnvelope {
        by: by.to_string(),
        request: request.clone(),
    };
    let json = serde_json::to_string(&env).map_err(|source| ControlError::BadAnswer {
        path: path.clone(),
        source,
    })?;
    (&stream)
        .write_all(format!("{ADMIN_PREFIX}{json}\n").as_bytes())
        .map_err(err)?;
    let mut answer = String::new();
    std::io::BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(err)?;
    if let Some(reason) = answer.strip_prefix("error: ") {
        return Err(ControlError::Refused(reason.trim().to_string()));
    }
    serde_json::from_str(&answer)
        .map(Some)
        .map_err(|source| ControlError::BadAnswer { path, source })
}

/// Asks the server running on `state_dir` for a backup and copies it to `out`. `Ok(false)` when
/// no server listens there.
pub fn request_backup(state_dir: &Path, out: &mut dyn Write) -> Result<bool, ControlError> {
    let path = state_dir.join(SOCKET_FILE);
    let err = |source| ControlError::Io {
        path: path.clone(),
        source,
    };
    let Some(mut stream) = connect(&path)? else {
        return Ok(false);
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

/// Asks the server running on `state_dir` for an audit export and copies it to `out`.
/// `Ok(false)` when no server listens there.
pub fn request_audit_export(
    state_dir: &Path,
    req: &crate::audit::ExportRequest,
    out: &mut dyn Write,
) -> Result<bool, ControlError> {
    let path = state_dir.join(SOCKET_FILE);
    let err = |source| ControlError::Io {
        path: path.clone(),
        source,
    };
    let Some(mut stream) = connect(&path)? else {
        return Ok(false);
    };
    let json = serde_json::to_string(req).map_err(|source| ControlError::BadAnswer {
        path: path.clone(),
        source,
    })?;
    stream
        .write_all(format!("{AUDIT_EXPORT_PREFIX}{json}\n").as_bytes())
        .map_err(err)?;
    let mut reader = std::io::BufReader::with_capacity(256 << 10, stream);
    let mut first = Vec::new();
    reader.read_until(b'\n', &mut first).map_err(err)?;
    if let Some(reason) = first.strip_prefix(b"error: ") {
        return Err(ControlError::Refused(
            String::from_utf8_lossy(reason).trim().to_string(),
        ));
    }
    if first.is_empty() {
        return Err(ControlError::Refused("the server closed the export".into()));
    }
    let header: crate::audit::format::Header =
        serde_json::from_slice(&first).map_err(|source| ControlError::BadAnswer {
            path: path.clone(),
            source,
        })?;
    out.write_all(&first).map_err(err)?;
    // Line by line, keeping the last: an export is complete only when it ends with the entry
    // its header names as the end (the checkpoint), so a server that stops midway is an error
    // here, not a short file with exit status 0.
    let (mut line, mut last) = (Vec::new(), Vec::new());
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(err)? == 0 {
            break;
        }
        out.write_all(&line).map_err(err)?;
        std::mem::swap(&mut line, &mut last);
    }
    let complete = last.ends_with(b"\n")
        && serde_json::from_slice::<crate::audit::format::EntryLine>(&last)
            .is_ok_and(|l| l.seq == header.end);
    if !complete {
        return Err(ControlError::Refused(format!(
            "the export stopped before its last entry (seq {}): the file is incomplete",
            header.end
        )));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::author_of;
    use crate::log::Author;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nplantwire:x:998:998::/var/lib/plantwire:/usr/sbin/nologin\n";

    #[test]
    fn the_author_is_the_peer_uid_not_what_the_cli_claims() {
        assert_eq!(
            author_of(998, "root", PASSWD),
            Author::Cli("plantwire".into())
        );
        assert_eq!(author_of(0, "alice", PASSWD), Author::Cli("alice".into()));
        assert_eq!(author_of(0, "", PASSWD), Author::Cli("root".into()));
        assert_eq!(
            author_of(0, "bad name\n", PASSWD),
            Author::Cli("root".into())
        );
        assert_eq!(
            author_of(1234, "root", PASSWD),
            Author::Cli("uid1234".into())
        );
    }
}
