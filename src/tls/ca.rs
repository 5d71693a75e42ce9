//! The site CA and the server certificate it signs, made on first start and kept (0600) in the
//! state directory. The server certificate is reissued when it no longer covers this host's names
//! or nears its end, at start and by the periodic check while serving.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

use super::TlsError;
use crate::secret::read_secret_file;

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "server.crt";
const SERVER_KEY: &str = "server.key";
/// Reissue the server certificate when it has less than this left.
const RENEW_BEFORE_DAYS: i64 = 30;
/// The server certificate's whole lifetime, notBefore to notAfter. Apple platforms refuse a TLS
/// server certificate valid for more than 825 days even under a user-installed CA, and public
/// CAs stop at 398; 397 stays under both. The CA itself is long-lived.
pub const SERVER_CERT_DAYS: i64 = 397;

/// The site's own certificate authority.
pub struct SiteCa {
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub(super) key: KeyPair,
}

impl std::fmt::Debug for SiteCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteCa").finish_non_exhaustive()
    }
}

/// What the generated server certificate must cover.
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub dns: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
}

impl Names {
    /// The host name, `<host>.local`, `localhost`, loopback and this machine's addresses.
    pub fn of_this_host() -> Self {
        let mut names = Names::default();
        let host = gethostname::gethostname().to_string_lossy().to_lowercase();
        if !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            names
                .dns
                .insert(format!("{}.local", host.split('.').next().unwrap_or(&host)));
            names.dns.insert(host);
        }
        names.dns.insert("localhost".into());
        names.ips.insert(IpAddr::from([127, 0, 0, 1]));
        names
            .ips
            .insert(IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
        if let Ok(ifaces) = if_addrs::get_if_addrs() {
            for iface in ifaces {
                let ip = iface.ip();
                let link_local_v6 =
                    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
                if !link_local_v6 {
                    names.ips.insert(ip);
                }
            }
        }
        names
    }
}

fn write_private(path: &Path, contents: &str) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

fn read_text(path: &Path) -> Result<String, TlsError> {
    let bytes = read_secret_file(path)?;
    String::from_utf8(bytes).map_err(|_| TlsError::Pem(path.to_path_buf()))
}

/// Loads the site CA from `dir`, or makes one. Returns it and whether it is new.
pub fn ensure_site_ca(dir: &Path, site: &str) -> Result<(SiteCa, bool), TlsError> {
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    if cert_path.exists() && key_path.exists() {
        let cert_pem = read_text(&cert_path)?;
        let key = KeyPair::from_pem(&read_text(&key_path)?).map_err(TlsError::Generate)?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|_| TlsError::Pem(cert_path.clone()))?;
        return Ok((
            SiteCa {
                cert_pem,
                cert_der,
                key,
            },
            false,
        ));
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(TlsError::Generate)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("plantwire site CA {site}"));
    dn.push(DnType::OrganizationName, "plantwire");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(365 * 20);
    params.serial_number = Some(random_serial()?);
    let cert = params.self_signed(&key).map_err(TlsError::Generate)?;
    write_private(&key_path, &key.serialize_pem())?;
    write_private(&cert_path, &cert.pem())?;
    Ok((
        SiteCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key,
        },
        true,
    ))
}

/// Loads the site CA from `dir` if both its files are there; never makes one (offline admin
/// commands must not create TLS material).
pub fn load_site_ca(dir: &Path) -> Result<Option<SiteCa>, TlsError> {
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    if !(cert_path.exists() && key_path.exists()) {
        return Ok(None);
    }
    let cert_pem = read_text(&cert_path)?;
    let key = KeyPair::from_pem(&read_text(&key_path)?).map_err(TlsError::Generate)?;
    let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|_| TlsError::Pem(cert_path.clone()))?;
    Ok(Some(SiteCa {
        cert_pem,
        cert_der,
        key,
    }))
}

pub(super) fn random_serial() -> Result<rcgen::SerialNumber, TlsError> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| TlsError::Random)?;
    b[0] &= 0x7f;
    Ok(rcgen::SerialNumber::from_slice(&b))
}

/// Returns the server certificate chain and key PEM, reusing the stored one while it is signed by
/// `ca`, covers `names` and has more than `RENEW_BEFORE_DAYS` left at `check_at`. A new one is
/// always dated from the system's time, which is what clients check it against.
pub fn ensure_server_cert(
    dir: &Path,
    ca: &SiteCa,
    names: &Names,
    check_at: OffsetDateTime,
) -> Result<(String, String), TlsError> {
    let cert_path = dir.join(SERVER_CERT);
    let key_path = dir.join(SERVER_KEY);
    if cert_path.exists() && key_path.exists() {
        let cert_pem = read_text(&cert_path)?;
        let key_pem = read_text(&key_path)?;
        if still_good(&cert_pem, ca, names, check_at) {
            return Ok((cert_pem, key_pem));
        }
        tracing::info!("reissuing the server certificate (names changed, expiring, or new CA)");
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(TlsError::Generate)?;
    let mut sans: Vec<SanType> = Vec::new();
    for dns in &names.dns {
        sans.push(SanType::DnsName(
            dns.clone().try_into().map_err(TlsError::Generate)?,
        ));
    }
    for ip in &names.ips {
        sans.push(SanType::IpAddress(*ip));
    }
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names
            .dns
            .iter()
            .next()
            .cloned()
            .unwrap_or_else(|| "plantwire".into()),
    );
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = params.not_before + Duration::days(SERVER_CERT_DAYS);
    params.serial_number = Some(random_serial()?);
    let issuer = Issuer::from_ca_cert_der(&ca.cert_der, &ca.key).map_err(TlsError::Generate)?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(TlsError::Generate)?;
    let chain = format!("{}{}", cert.pem(), ca.cert_pem);
    write_private(&key_path, &key.serialize_pem())?;
    write_private(&cert_path, &chain)?;
    Ok((chain, key.serialize_pem()))
}

fn still_good(cert_pem: &str, ca: &SiteCa, names: &Names, check_at: OffsetDateTime) -> bool {
    let Ok(der) = CertificateDer::from_pem_slice(cert_pem.as_bytes()) else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return false;
    };
    let Ok((_, ca_cert)) = x509_parser::parse_x509_certificate(&ca.cert_der) else {
        return false;
    };
    let ca_key = UnparsedPublicKey::new(
        &ECDSA_P256_SHA256_ASN1,
        ca_cert.public_key().subject_public_key.data.to_vec(),
    );
    if ca_key
        .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
        .is_err()
    {
        return false;
    }
    let renew_at = check_at + Duration::days(RENEW_BEFORE_DAYS);
    if cert.validity().not_after.timestamp() < renew_at.unix_timestamp() {
        return false;
    }
    let mut dns = BTreeSet::new();
    let mut ips = BTreeSet::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => {
                    dns.insert(d.to_string());
                }
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        ips.insert(IpAddr::from(a));
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        ips.insert(IpAddr::from(a));
                    }
                }
                _ => {}
            }
        }
    }
    names.dns.is_subset(&dns) && names.ips.is_subset(&ips)
}

/// Paths of the generated material, for messages.
pub fn ca_cert_path(dir: &Path) -> PathBuf {
    dir.join(CA_CERT)
}
