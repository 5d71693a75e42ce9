//! Device client certificates from the site CA: issued with a server-made key (PEM + PKCS#12) or
//! from a device's CSR, and the CA-signed CRL of revoked device certificates.

use std::path::Path;

use aws_lc_rs::digest::{SHA256, digest};
use rcgen::{
    CertificateParams, CertificateRevocationListParams, CertificateSigningRequestParams,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, RevocationReason, RevokedCertParams, SanType,
    SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use super::TlsError;
use super::ca::{SiteCa, load_site_ca, random_serial};

/// Longest CSR accepted, PEM.
pub const MAX_CSR_BYTES: usize = 16 << 10;

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The server serves configured certificate files and holds no CA key.
    #[error(
        "device certificates need the site CA's key, and this server uses configured certificate files (tls.cert_file) without one"
    )]
    NoCaKey,
    #[error("the certificate signing request is not valid: {0}")]
    BadCsr(#[source] rcgen::Error),
    #[error("the certificate signing request is larger than {MAX_CSR_BYTES} bytes")]
    CsrTooLarge,
    #[error("signing failed: {0}")]
    Sign(#[source] rcgen::Error),
    #[error("cannot build the PKCS#12 file: {0}")]
    Pkcs12(#[source] p12_keystore::error::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The site CA, able to sign device certificates and the CRL.
#[derive(Debug)]
pub struct DeviceCa {
    ca: SiteCa,
    site: String,
}

/// A freshly issued certificate and what the device registry keeps of it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    /// SHA-256 of the DER certificate: the key of the device's certificate row.
    pub fingerprint: [u8; 32],
    /// The serial, lower-case hex, as the CRL lists it.
    pub serial_hex: String,
    pub not_after_us: i64,
}

/// The private key made for a device, returned once and never stored.
pub struct KeyBundle {
    pub key_pem: String,
    /// PKCS#12 (PBES2 AES-256-CBC, HMAC-SHA256) holding the key, the certificate and the CA.
    pub p12: Vec<u8>,
    /// The PKCS#12 password (random, shown once).
    pub p12_password: String,
}

impl std::fmt::Debug for KeyBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyBundle").finish_non_exhaustive()
    }
}

/// One revoked certificate, for the CRL.
#[derive(Debug, Clone)]
pub struct RevokedSerial {
    pub serial_hex: String,
    pub revoked_at_us: i64,
}

fn datetime(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl DeviceCa {
    /// The site CA of the generated TLS setup in `<state_dir>/tls`; [`IssueError::NoCaKey`] when
    /// the server uses configured files (or no CA was made yet).
    pub fn load(
        config: &crate::config::Config,
        state_dir: &Path,
        site: &str,
    ) -> Result<Self, IssueError> {
        if config.tls.cert_file.is_some() && config.tls.key_file.is_some() {
            return Err(IssueError::NoCaKey);
        }
        let ca = load_site_ca(&state_dir.join("tls"))?.ok_or(IssueError::NoCaKey)?;
        Ok(Self {
            ca,
            site: site.to_string(),
        })
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.ca.cert_der
    }

    pub fn cert_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    /// The device certificate's fields; the public key comes from the caller.
    fn params(
        &self,
        name: &str,
        now: OffsetDateTime,
        days: u32,
    ) -> Result<CertificateParams, IssueError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "plantwire");
        params.distinguished_name = dn;
        let uri = format!("urn:plantwire:device:{}:{name}", self.site);
        params.subject_alt_names = vec![SanType::URI(uri.try_into().map_err(IssueError::Sign)?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(i64::from(days));
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        Ok(params)
    }

    fn issuer(&self) -> Result<Issuer<'_, &KeyPair>, IssueError> {
        Issuer::from_ca_cert_der(&self.ca.cert_der, &self.ca.key).map_err(IssueError::Sign)
    }

    /// Makes a P-256 key and a certificate for it: the key is in the bundle, returned once.
    pub fn issue_with_key(
        &self,
        name: &str,
        now: OffsetDateTime,
        days: u32,
    ) -> Result<(Issued, KeyBundle), IssueError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(IssueError::Sign)?;
        let params = self.params(name, now, days)?;
        let cert = params
            .signed_by(&key, &self.issuer()?)
            .map_err(IssueError::Sign)?;
        let issued = issued(cert.pem(), cert.der().clone(), &params);
        let p12_password = random_password()?;
        let p12 = pkcs12(
            name,
            &key,
            &issued.cert_der,
            &self.ca.cert_der,
            &p12_password,
        )?;
        Ok((
            issued,
            KeyBundle {
                key_pem: key.serialize_pem(),
                p12,
                p12_password,
            },
        ))
    }

    /// Signs the public key of a device's CSR (its signature checked). Only the key is taken from
    /// the request: name, SAN, usages and lifetime are ours.
    pub fn issue_from_csr(
        &self,
        name: &str,
        csr_pem: &str,
        now: OffsetDateTime,
        days: u32,
    ) -> Result<Issued, IssueError> {
        if csr_pem.len() > MAX_CSR_BYTES {
            return Err(IssueError::CsrTooLarge);
        }
        let mut csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(IssueError::BadCsr)?;
        csr.params = self.params(name, now, days)?;
        let cert = csr.signed_by(&self.issuer()?).map_err(IssueError::Sign)?;
        Ok(issued(cert.pem(), cert.der().clone(), &csr.params))
    }

    /// The CRL numbered `number` listing `revoked`, dated from the newest revocation (or `now`
    /// when none), valid for a year; DER.
    pub fn crl(
        &self,
        number: u64,
        revoked: &[RevokedSerial],
        now: OffsetDateTime,
    ) -> Result<Vec<u8>, IssueError> {
        let this_update = revoked
            .iter()
            .map(|r| r.revoked_at_us)
            .max()
            .map_or(now, datetime);
        let mut revoked_certs = Vec::with_capacity(revoked.len());
        for r in revoked {
            let serial = hex::decode(&r.serial_hex).unwrap_or_default();
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: datetime(r.revoked_at_us),
                reason_code: Some(RevocationReason::CessationOfOperation),
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update,
            next_update: this_update + Duration::days(365),
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&self.issuer()?)
            .map_err(IssueError::Sign)?;
        Ok(crl.der().to_vec())
    }
}

fn issued(
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    params: &CertificateParams,
) -> Issued {
    let mut fingerprint = [0u8; 32];
    fingerprint.copy_from_slice(digest(&SHA256, cert_der.as_ref()).as_ref());
    // From the DER itself: the integer as encoded (no leading zero byte), as the CRL lists it.
    let serial_hex = x509_parser::parse_x509_certificate(cert_der.as_ref())
        .map(|(_, c)| hex::encode(c.raw_serial()))
        .unwrap_or_default();
    Issued {
        cert_pem,
        cert_der,
        fingerprint,
        serial_hex,
        not_after_us: i64::try_from(params.not_after.unix_timestamp_nanos() / 1000)
            .unwrap_or(i64::MAX),
    }
}

fn random_password() -> Result<String, IssueError> {
    use base64::Engine;
    let mut raw = [0u8; 18];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| TlsError::Random)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
}

fn pkcs12(
    name: &str,
    key: &KeyPair,
    cert: &CertificateDer<'_>,
    ca: &CertificateDer<'_>,
    password: &str,
) -> Result<Vec<u8>, IssueError> {
    use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
    let key = PrivateKey::from_der(&key.serialize_der()).map_err(IssueError::Pkcs12)?;
    let chain = [
        Certificate::from_der(cert.as_ref()).map_err(IssueError::Pkcs12)?,
        Certificate::from_der(ca.as_ref()).map_err(IssueError::Pkcs12)?,
    ];
    let key_id = digest(&SHA256, cert.as_ref()).as_ref()[..20].to_vec();
    let mut store = KeyStore::new();
    store.add_entry(
        name,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(key_id, key, chain)),
    );
    store.writer(password).write().map_err(IssueError::Pkcs12)
}
