//! The edge's site-certificate renewal: once a third of its validity is left (or on `replication
//! renew`), it asks HQ for a new certificate for the same key over the current one, then swaps
//! the certificate file atomically. HQ keeps taking the old one until it expires.

use std::path::Path;

use rcgen::PublicKeyData;
use serde::Serialize;

use super::ReplicationError;
use super::net::{self, Conn, EnrolAnswer, RenewRequest};
use super::ship::{CERT_FILE, KEY_FILE, identity_dir, write_private};
use crate::error::Rejection;

/// Held while a renewal runs.
const LOCK_FILE: &str = "renew.lock";

/// When the site's certificate is valid (UTC µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Validity {
    pub not_before_us: i64,
    pub not_after_us: i64,
}

impl Validity {
    /// From when the edge renews: the last third of the validity.
    pub fn renew_from_us(&self) -> i64 {
        self.not_after_us - (self.not_after_us - self.not_before_us) / 3
    }

    /// Whether `now_us` is in the last third of the validity (or past it).
    pub fn due(&self, now_us: i64) -> bool {
        now_us >= self.renew_from_us()
    }
}

fn bad_cert() -> Rejection {
    Rejection::invalid(
        "bad_identity",
        "the site certificate is not a PEM certificate",
    )
}

/// The validity of the certificate in `pem` (the first one of the chain).
pub fn validity_of(pem: &[u8]) -> Result<Validity, ReplicationError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(pem).map_err(|_| bad_cert())?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|_| bad_cert())?;
    let us = |t: x509_parser::time::ASN1Time| t.timestamp().saturating_mul(1_000_000);
    Ok(Validity {
        not_before_us: us(cert.validity().not_before),
        not_after_us: us(cert.validity().not_after),
    })
}

/// The enrolled site certificate's validity; `None` when not enrolled.
pub fn validity(state_dir: &Path) -> Result<Option<Validity>, ReplicationError> {
    let path = identity_dir(state_dir).join(CERT_FILE);
    match std::fs::read(&path) {
        Ok(pem) => validity_of(&pem).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ReplicationError::Io { path, source }),
    }
}

/// Renews over `conn` (opened with the current certificate, to HQ's pinned CA): a CSR for the
/// site's key, HQ's answer checked to be a certificate for this key, written to a temporary
/// file and renamed over the old one. Returns the new validity. The running shipper uses the new
/// certificate from its next connection.
pub async fn renew(
    site: &str,
    state_dir: &Path,
    conn: &mut Conn,
) -> Result<Validity, ReplicationError> {
    let dir = identity_dir(state_dir);
    // One renewal at a time (the shipper's and `replication renew`): two would each be answered
    // over the same old certificate, and HQ keeps only the newest.
    let lock_path = dir.join(LOCK_FILE);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| ReplicationError::Io {
            path: lock_path.clone(),
            source,
        })?;
    // Released when `lock` closes, also when the process dies.
    if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        return Err(Rejection::conflict(
            "renewal_in_progress",
            "another renewal of the site certificate is running",
        )
        .into());
    }
    let key_path = dir.join(KEY_FILE);
    let key_pem = std::fs::read_to_string(&key_path).map_err(|source| ReplicationError::Io {
        path: key_path,
        source,
    })?;
    let key = rcgen::KeyPair::from_pem(&key_pem)
        .map_err(|_| Rejection::invalid("bad_identity", "the site key is not a PEM key"))?;
    let csr_pem = super::ship::csr(&key, site)?;
    let body = serde_json::to_vec(&RenewRequest { csr_pem })?;
    let answer: EnrolAnswer = serde_json::from_slice(&conn.post(net::PATH_RENEW, body).await?)?;
    let validity = validity_of(answer.cert_pem.as_bytes())?;
    let der = {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(answer.cert_pem.as_bytes()).map_err(|_| bad_cert())?
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|_| bad_cert())?;
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(Rejection::invalid(
            "bad_answer",
            "HQ's renewed certificate is not for this site's key",
        )
        .into());
    }
    let tmp = dir.join(format!("{CERT_FILE}.tmp"));
    write_private(&tmp, answer.cert_pem.as_bytes())?;
    let path = dir.join(CERT_FILE);
    std::fs::rename(&tmp, &path).map_err(|source| ReplicationError::Io {
        path: path.clone(),
        source,
    })?;
    if let Ok(d) = std::fs::File::open(&dir) {
        // The rename is durable once the directory is synced; a crash before leaves the old
        // certificate, which HQ still takes, and the next session renews again.
        let _ = d.sync_all();
    }
    Ok(validity)
}

/// `plantwire replication renew`: renews now, whether or not the server runs (the shipper reads
/// the certificate at each connection).
pub async fn renew_now(site: &str, state_dir: &Path) -> Result<Validity, ReplicationError> {
    let Some(id) = super::ship::load_identity(state_dir)? else {
        return Err(Rejection::not_found("not_enrolled", "this site is not enrolled at HQ").into());
    };
    let mut conn = Conn::open(&id.hq, id.config).await?;
    renew(site, state_dir, &mut conn).await
}
