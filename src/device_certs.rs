//! Device certificates: issuing (server-made key or CSR) and renewal for a device, the rows that
//! map a certificate's fingerprint to its device, the CRL's input, and the peer check per request.

use serde::Serialize;

use crate::devices::AuthCache;
use crate::error::Rejection;
use crate::log::{Author, Log, NewEntry, SubmitError};
use crate::store::{DeviceCertRow, DeviceRow, StoreError};
use crate::tls::issue::{DeviceCa, IssueError, Issued, KeyBundle, RevokedSerial};

pub const KIND_CERT_ISSUED: &str = "device.cert_issued";
pub const KIND_CERT_RENEWED: &str = "device.cert_renewed";
/// The token hash of a device that has no token (certificate only).
pub const NO_TOKEN: [u8; 32] = [0u8; 32];

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Issue(#[from] IssueError),
}

impl CertError {
    fn rejected(r: Rejection) -> Self {
        Self::Submit(SubmitError::Rejected(r))
    }
}

/// How the device gets its key.
#[derive(Debug, Clone)]
pub enum Enrol {
    /// The server makes the key and returns it once.
    ServerKey,
    /// The device keeps its key and sends this CSR (PEM).
    Csr(String),
}

/// What an issue or renewal hands back, once.
#[derive(Debug)]
pub struct Bundle {
    pub seq: u64,
    pub issued: Issued,
    /// `None` for a CSR: the key never left the device.
    pub key: Option<KeyBundle>,
    pub ca_pem: String,
}

#[derive(Serialize)]
struct CertEntry<'a> {
    name: &'a str,
    serial: &'a str,
    fingerprint_sha256: String,
    not_after_us: i64,
    enrolment: &'static str,
}

#[derive(Serialize)]
struct AddedWithCert<'a> {
    name: &'a str,
    credential: &'static str,
}

fn issue(
    ca: &DeviceCa,
    name: &str,
    enrol: &Enrol,
    days: u32,
    now_us: i64,
) -> Result<(Issued, Option<KeyBundle>), CertError> {
    let now = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_us) * 1000)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    match enrol {
        Enrol::ServerKey => {
            let (issued, key) = ca.issue_with_key(name, now, days)?;
            Ok((issued, Some(key)))
        }
        Enrol::Csr(pem) => match ca.issue_from_csr(name, pem, now, days) {
            Ok(issued) => Ok((issued, None)),
            Err(IssueError::BadCsr(e)) => Err(CertError::rejected(Rejection::invalid(
                "bad_csr",
                format!("the certificate signing request is not valid: {e}"),
            ))),
            Err(IssueError::CsrTooLarge) => Err(CertError::rejected(Rejection::invalid(
                "bad_csr",
                IssueError::CsrTooLarge.to_string(),
            ))),
            Err(e) => Err(e.into()),
        },
    }
}

fn entry(
    kind: &str,
    name: &str,
    by: &Author,
    issued: &Issued,
    enrol: &Enrol,
) -> Result<NewEntry, SubmitError> {
    Ok(NewEntry::json(
        kind,
        crate::devices::STREAM,
        by,
        &CertEntry {
            name,
            serial: &issued.serial_hex,
            fingerprint_sha256: hex::encode(issued.fingerprint),
            not_after_us: issued.not_after_us,
            enrolment: match enrol {
                Enrol::ServerKey => "server_key",
                Enrol::Csr(_) => "csr",
            },
        },
    )?)
}

fn cert_row(name: &str, issued: &Issued, at_us: i64) -> DeviceCertRow {
    DeviceCertRow {
        fingerprint: hex::encode(issued.fingerprint),
        device: name.to_string(),
        serial: issued.serial_hex.clone(),
        issued_at_us: at_us,
        not_after_us: issued.not_after_us,
        revoked_at_us: None,
    }
}

/// Registers a device whose credential is a certificate from the site CA (no token).
pub async fn add(
    log: &Log,
    ca: &DeviceCa,
    name: &str,
    by: &Author,
    enrol: Enrol,
    days: u32,
) -> Result<Bundle, CertError> {
    crate::devices::validate_name(name).map_err(CertError::rejected)?;
    if log
        .read()
        .map_err(store)?
        .device(name)
        .map_err(store)?
        .is_some()
    {
        return Err(CertError::rejected(exists()));
    }
    let (issued, key) = issue(ca, name, &enrol, days, log.now_us())?;
    let added = NewEntry::json(
        crate::devices::KIND_ADDED,
        crate::devices::STREAM,
        by,
        &AddedWithCert {
            name,
            credential: "certificate",
        },
    )
    .map_err(SubmitError::from)?;
    let cert_entry = entry(KIND_CERT_ISSUED, name, by, &issued, &enrol)?;
    let (name_c, by_c, issued_c) = (name.to_string(), by.to_string(), issued.clone());
    let seq = log
        .submit(move |tx| {
            if tx.views().device(&name_c)?.is_some() {
                return Err(exists().into());
            }
            let now = tx.now_us();
            tx.views().put_device(&DeviceRow {
                name: name_c.clone(),
                token_hash: NO_TOKEN,
                created_at_us: now,
                created_by: by_c.clone(),
                revoked_at_us: None,
            })?;
            tx.views()
                .put_device_cert(&issued_c.fingerprint, &cert_row(&name_c, &issued_c, now))?;
            tx.append(added.clone())?;
            tx.append(cert_entry.clone())
        })
        .await?;
    Ok(Bundle {
        seq,
        issued,
        key,
        ca_pem: ca.cert_pem().to_string(),
    })
}

/// Issues a further certificate to an active device (token or certificate). Its earlier
/// certificates stay valid until they expire or the device is revoked.
pub async fn renew(
    log: &Log,
    ca: &DeviceCa,
    name: &str,
    by: &Author,
    enrol: Enrol,
    days: u32,
) -> Result<Bundle, CertError> {
    match log.read().map_err(store)?.device(name).map_err(store)? {
        None => return Err(CertError::rejected(no_such_device())),
        Some(d) if d.revoked_at_us.is_some() => {
            return Err(CertError::rejected(Rejection::conflict(
                "already_revoked",
                "this device is revoked; add a new one",
            )));
        }
        Some(_) => {}
    }
    let (issued, key) = issue(ca, name, &enrol, days, log.now_us())?;
    let had_cert = !certs_of(log, name)?.is_empty();
    let kind = if had_cert {
        KIND_CERT_RENEWED
    } else {
        KIND_CERT_ISSUED
    };
    let e = entry(kind, name, by, &issued, &enrol)?;
    let (name_c, issued_c) = (name.to_string(), issued.clone());
    let seq = log
        .submit(move |tx| {
            match tx.views().device(&name_c)? {
                Some(d) if d.revoked_at_us.is_none() => {}
                _ => return Err(no_such_device().into()),
            }
            let now = tx.now_us();
            tx.views()
                .put_device_cert(&issued_c.fingerprint, &cert_row(&name_c, &issued_c, now))?;
            tx.append(e.clone())
        })
        .await?;
    Ok(Bundle {
        seq,
        issued,
        key,
        ca_pem: ca.cert_pem().to_string(),
    })
}

fn store(e: StoreError) -> CertError {
    CertError::Submit(SubmitError::Storage(std::sync::Arc::new(e)))
}

fn exists() -> Rejection {
    Rejection::conflict("device_exists", "a device with this name exists")
}

fn no_such_device() -> Rejection {
    Rejection::not_found("no_such_device", "no active device with this name")
}

/// Every certificate issued to `name`, oldest first.
pub fn certs_of(log: &Log, name: &str) -> Result<Vec<DeviceCertRow>, CertError> {
    let mut all: Vec<DeviceCertRow> = log
        .read()
        .map_err(store)?
        .device_certs()
        .map_err(store)?
        .into_iter()
        .filter(|c| c.device == name)
        .collect();
    all.sort_by_key(|c| c.issued_at_us);
    Ok(all)
}

/// The active device a verified peer certificate belongs to: its row must exist, be unrevoked,
/// unexpired at `now_us`, and its device active. Checked on every request: from `cache` while no
/// device row has changed since it was read, but the expiry always against `now_us`, since time
/// passes without a commit.
pub fn authenticate(
    log: &Log,
    cache: &AuthCache,
    fingerprint: &[u8; 32],
    now_us: i64,
) -> Result<Option<DeviceRow>, StoreError> {
    // Read before the snapshot (see `devices::authenticate`).
    let generation = log.devices_generation();
    if let Some((device, not_after_us)) = cache.certificate(fingerprint, generation) {
        return Ok((not_after_us >= now_us).then_some(device));
    }
    let rtx = log.read()?;
    let Some(cert) = rtx.device_cert(fingerprint)? else {
        return Ok(None);
    };
    if cert.revoked_at_us.is_some() || cert.not_after_us < now_us {
        return Ok(None);
    }
    let device = rtx
        .device(&cert.device)?
        .filter(|d| d.revoked_at_us.is_none());
    if let Some(d) = &device {
        cache.insert_certificate(*fingerprint, generation, d.clone(), cert.not_after_us);
    }
    Ok(device)
}

/// The CRL's number and revoked serials, from one read snapshot.
pub fn crl_input(log: &Log) -> Result<(u64, Vec<RevokedSerial>), StoreError> {
    let rtx = log.read()?;
    let revoked = rtx
        .device_certs()?
        .into_iter()
        .filter_map(|c| {
            c.revoked_at_us.map(|at| RevokedSerial {
                serial_hex: c.serial,
                revoked_at_us: at,
            })
        })
        .collect();
    Ok((rtx.crl_number()?, revoked))
}

/// Inside a revocation: marks every certificate of `name` revoked and raises the CRL number.
/// Returns the revoked serials.
pub fn revoke_in(
    views: &mut crate::store::WriteTx,
    name: &str,
    now_us: i64,
) -> Result<Vec<String>, StoreError> {
    let mut serials = Vec::new();
    for mut c in views.certs_of_device(name)? {
        if c.revoked_at_us.is_none() {
            c.revoked_at_us = Some(now_us);
            let mut fp = [0u8; 32];
            if hex::decode_to_slice(&c.fingerprint, &mut fp).is_ok() {
                views.put_device_cert(&fp, &c)?;
                serials.push(c.serial.clone());
            }
        }
    }
    views.bump_crl_number()?;
    Ok(serials)
}
