//! The edge's client side: `replication enroll` (key, CSR, certificate and HQ's CA into
//! `<state_dir>/replication/`, 0600) and the shipper task that follows the log to HQ.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ReplicationError;
use super::edge::{Bucket, ShipClasses, acked, next_batch, record_ack};
use super::hq::Ack;
use super::net::{self, Conn, EnrolAnswer, EnrolRequest, NetError};
use super::sites::EnrolCode;
use super::sizer::Sizer;
use super::wire;
use crate::error::Rejection;
use crate::log::Log;

/// The directory of the edge's replication identity.
pub fn identity_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("replication")
}
const HQ_FILE: &str = "hq.txt";
const CA_FILE: &str = "hq-ca.pem";
pub(super) const CERT_FILE: &str = "site.crt";
pub(super) const KEY_FILE: &str = "site.key";

pub(super) fn write_private(path: &Path, data: &[u8]) -> Result<(), ReplicationError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| ReplicationError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(data).map_err(io)?;
    f.sync_all().map_err(io)
}

/// A CSR (PEM) for `key`, named `site` (HQ sets everything else).
pub(super) fn csr(key: &rcgen::KeyPair, site: &str) -> Result<String, ReplicationError> {
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, site);
    Ok(params
        .serialize_request(key)
        .and_then(|r| r.pem())
        .map_err(|e| Rejection::invalid("key_failed", e.to_string()))?)
}

/// `replication enroll CODE` for the site `site`: makes a P-256 key, sends a CSR with the token
/// to HQ over TLS pinned to the code's CA fingerprint, and stores what HQ answers.
pub async fn enroll(code: &str, site: &str, state_dir: &Path) -> Result<(), ReplicationError> {
    let code = EnrolCode::decode(code)?;
    if code.site != site {
        return Err(Rejection::invalid(
            "wrong_site",
            format!(
                "the code enrols site {:?}, and this server is site {site:?}",
                code.site
            ),
        )
        .into());
    }
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| Rejection::invalid("key_failed", e.to_string()))?;
    let csr_pem = csr(&key, site)?;
    // HQ pins the key the site signs its checkpoints with (made here if the server never ran).
    let signer = crate::bootstrap::ensure_signing_key(state_dir)
        .map_err(|e| Rejection::invalid("bad_signing_key", e.to_string()))
        .and_then(|der| {
            crate::log::checkpoint::Signer::from_pkcs8(site, &der)
                .map_err(|e| Rejection::invalid("bad_signing_key", e.to_string()))
        })?;
    let signing_key = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(signer.public_key())
    };
    let config = net::client_config(&code.ca_sha256, None)?;
    let mut conn = Conn::open(&code.hq, config).await?;
    let body = serde_json::to_vec(&EnrolRequest {
        site: site.to_string(),
        token: code.token.clone(),
        csr_pem,
        signing_key: Some(signing_key),
    })?;
    let answer: EnrolAnswer = serde_json::from_slice(&conn.post(net::PATH_ENROLL, body).await?)?;
    let ca = CertificateDer::from_pem_slice(answer.ca_pem.as_bytes())
        .map_err(|_| Rejection::invalid("bad_answer", "HQ's CA is not PEM"))?;
    if net::sha256_hex(ca.as_ref()) != code.ca_sha256.to_ascii_lowercase() {
        return Err(
            Rejection::invalid("bad_answer", "HQ sent another CA than the code pins").into(),
        );
    }
    let dir = identity_dir(state_dir);
    std::fs::create_dir_all(&dir).map_err(|source| ReplicationError::Io {
        path: dir.clone(),
        source,
    })?;
    write_private(&dir.join(KEY_FILE), key.serialize_pem().as_bytes())?;
    write_private(&dir.join(CERT_FILE), answer.cert_pem.as_bytes())?;
    write_private(&dir.join(CA_FILE), answer.ca_pem.as_bytes())?;
    write_private(
        &dir.join(HQ_FILE),
        format!("{}\n{}\n", code.hq, code.ca_sha256).as_bytes(),
    )?;
    Ok(())
}

/// The enrolled identity: HQ's address, its CA's SHA-256, and a client config with our key.
pub(super) struct Identity {
    pub(super) hq: String,
    pub(super) config: Arc<rustls::ClientConfig>,
}

pub(super) fn load_identity(state_dir: &Path) -> Result<Option<Identity>, ReplicationError> {
    let dir = identity_dir(state_dir);
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|source| ReplicationError::Io { path, source })
    };
    if !dir.join(HQ_FILE).exists() {
        return Ok(None);
    }
    let hq_text = String::from_utf8_lossy(&read(HQ_FILE)?).into_owned();
    let mut lines = hq_text.lines();
    let (Some(hq), Some(ca_sha256)) = (lines.next(), lines.next()) else {
        return Err(Rejection::invalid("bad_identity", "hq.txt is malformed").into());
    };
    let bad = || Rejection::invalid("bad_identity", "the site certificate or key is not PEM");
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(CERT_FILE)?)
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let key = PrivateKeyDer::from_pem_slice(&read(KEY_FILE)?).map_err(|_| bad())?;
    Ok(Some(Identity {
        hq: hq.to_string(),
        config: net::client_config(ca_sha256, Some((chain, key)))?,
    }))
}

/// How the shipper batches and how fast it may send.
#[derive(Debug, Clone, Copy)]
pub struct ShipOptions {
    pub batch_entries: usize,
    pub batch_bytes: usize,
    /// Bytes per second on the wire; 0 = no cap.
    pub bandwidth: u64,
    /// The classes that travel whole; the others as stubs.
    pub ship: ShipClasses,
    /// Grow batches up to four times `batch_entries` where round trips dominate (`sizer`);
    /// off: every batch is cut at `batch_entries`.
    pub adaptive: bool,
}

/// What the shipper reports: HQ's acknowledged seq and whether it is connected.
#[derive(Debug, Clone)]
pub struct ShipperWatch {
    pub acked: watch::Receiver<u64>,
    pub connected: watch::Receiver<bool>,
}

/// Starts the shipper: it runs until `stop`, reconnecting with backoff (1 s doubling to 30 s),
/// and never skips an entry: a refused batch is sent again after the backoff. Not enrolled yet,
/// it looks for the enrolment files every 5 s.
pub fn spawn(
    log: Log,
    state_dir: PathBuf,
    opts: ShipOptions,
    stop: CancellationToken,
) -> Result<(tokio::task::JoinHandle<()>, ShipperWatch), ReplicationError> {
    let (acked_tx, acked_rx) = watch::channel(acked(&log)?);
    let (conn_tx, conn_rx) = watch::channel(false);
    let task = spawn_with(log, state_dir, opts, stop, acked_tx, conn_tx);
    Ok((
        task,
        ShipperWatch {
            acked: acked_rx,
            connected: conn_rx,
        },
    ))
}

/// [`spawn`] reporting into given channels (the server's runtime owns them).
pub fn spawn_with(
    log: Log,
    state_dir: PathBuf,
    opts: ShipOptions,
    stop: CancellationToken,
    acked_tx: watch::Sender<u64>,
    conn_tx: watch::Sender<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_secs(1);
        let mut bucket = Bucket::new(opts.bandwidth);
        let mut renewal: Option<tokio::time::Instant> = None;
        if let Ok(a) = acked(&log) {
            acked_tx.send_replace(a);
        }
        while !stop.is_cancelled() {
            let session = session(
                &log,
                &state_dir,
                opts,
                (&mut bucket, &mut renewal),
                &acked_tx,
                &conn_tx,
            );
            let result = tokio::select! {
                r = session => r,
                () = stop.cancelled() => Ok(true),
            };
            conn_tx.send_replace(false);
            note_lag(&log, false);
            let wait = match result {
                Ok(true) => {
                    backoff = Duration::from_secs(1);
                    backoff
                }
                Ok(false) => Duration::from_secs(5),
                Err(e) => {
                    tracing::warn!(error = %e, "replication to HQ interrupted; retrying");
                    let w = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    w
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => {}
            }
        }
    })
}

/// Updates the lag gauges from the log and the cursor.
fn note_lag(log: &Log, connected: bool) {
    if let Ok(s) = super::edge::status(log, connected) {
        log.metrics()
            .set_replication_lag(log.site(), s.lag_entries, s.lag_seconds);
    }
}

/// How long the shipper waits before offering attachments again after HQ refused them.
const BLOBS_RETRY: Duration = Duration::from_secs(30);

/// How often an idle edge sends an empty batch (HQ records when it last heard from a site).
pub const HELLO_EVERY: Duration = Duration::from_secs(30);

/// How long after a renewal attempt the shipper tries again (a failed one, or one whose new
/// certificate is already due because HQ's clock and the edge's differ).
pub const RENEW_RETRY: Duration = Duration::from_secs(3600);

/// One connection's worth of shipping. `Ok(false)`: not enrolled yet. `renewal` is when the
/// shipper last tried to renew the site certificate.
async fn session(
    log: &Log,
    state_dir: &Path,
    opts: ShipOptions,
    (bucket, renewal): (&mut Bucket, &mut Option<tokio::time::Instant>),
    acked_tx: &watch::Sender<u64>,
    conn_tx: &watch::Sender<bool>,
) -> Result<bool, ReplicationError> {
    let Some(id) = load_identity(state_dir)? else {
        return Ok(false);
    };
    let mut conn = Conn::open(&id.hq, id.config).await?;
    conn_tx.send_replace(true);
    let may_renew = renewal.is_none_or(|t| t.elapsed() >= RENEW_RETRY);
    if may_renew && super::renew::validity(state_dir)?.is_some_and(|v| v.due(log.now_us())) {
        // A third of the certificate's life is left: renew, then reconnect with the new one. A
        // failure is logged and shipping goes on with the current certificate.
        *renewal = Some(tokio::time::Instant::now());
        match super::renew::renew(log.site(), state_dir, &mut conn).await {
            Ok(v) => {
                tracing::info!(not_after_us = v.not_after_us, "site certificate renewed");
                return Ok(true);
            }
            Err(e) => tracing::warn!(error = %e, "site certificate renewal failed"),
        }
    }
    let mut live = log.subscribe();
    // The first batch of a session goes out even when empty (HQ answers its cursor), and so
    // does one every HELLO_EVERY while idle, so HQ can tell an idle site from a silent one.
    let mut last_sent: Option<tokio::time::Instant> = None;
    let mut blobs_after = tokio::time::Instant::now();
    let mut sizer = Sizer::new(opts.batch_entries, opts.adaptive);
    loop {
        let batch = next_batch(log, acked(log)?, sizer.limit(), opts.batch_bytes, opts.ship)?;
        if batch.entries.is_empty() && last_sent.is_some_and(|t| t.elapsed() < HELLO_EVERY) {
            // Wait for anything new (or a periodic look, in case the hub lagged).
            tokio::select! {
                _ = live.recv() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = conn.closed() => return Err(NetError::Closed.into()),
            }
            note_lag(log, true);
            continue;
        }
        last_sent = Some(tokio::time::Instant::now());
        let entries = batch.entries.len();
        let bytes = wire::encode(&batch, true);
        let wait = bucket.take(bytes.len());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let sent = tokio::time::Instant::now();
        let answer = conn.post(net::PATH_BATCH, bytes).await?;
        sizer.record(entries, sent.elapsed());
        let ack: Ack = serde_json::from_slice(&answer)?;
        let head = record_ack(log, &ack).await?;
        note_lag(log, true);
        acked_tx.send_replace(head);
        // The attachments of what HQ now holds follow, by content hash. A refusal (a fault at
        // HQ) keeps the blob cursor and is tried again 30 s later, while the log ships on.
        if tokio::time::Instant::now() >= blobs_after {
            match super::blobs::ship(log, &mut conn, bucket, head, opts.ship).await {
                Ok(()) => {}
                Err(ReplicationError::Net(e @ NetError::Refused { .. })) => {
                    tracing::warn!(error = %e, "HQ refused attachments; trying again in 30 s");
                    blobs_after = tokio::time::Instant::now() + BLOBS_RETRY;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl From<NetError> for ReplicationError {
    fn from(e: NetError) -> Self {
        Self::Net(e)
    }
}

/// Sends one empty batch with the site's identity: HQ answers its head for the site (or refuses).
/// `replication status` uses it to tell whether HQ takes this site's batches right now.
pub async fn probe(log: &Log, state_dir: &Path) -> Result<Ack, ReplicationError> {
    let Some(id) = load_identity(state_dir)? else {
        return Err(Rejection::not_found("not_enrolled", "this site is not enrolled at HQ").into());
    };
    let mut batch = next_batch(log, 0, 1, 0, ShipClasses::ALL)?;
    batch.entries.clear();
    let mut conn = Conn::open(&id.hq, id.config).await?;
    let answer = conn
        .post(net::PATH_BATCH, wire::encode(&batch, true))
        .await?;
    Ok(serde_json::from_slice(&answer)?)
}
