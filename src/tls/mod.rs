//! TLS for every listener: rustls with TLS 1.2/1.3 AEAD suites and ALPN h2/http1.1, the served
//! certificate behind a resolver that SIGHUP (given files) or renewal (generated) can swap without
//! touching open connections.

pub mod ca;
mod expiry;
pub mod gate;
pub mod issue;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use aws_lc_rs::digest::{SHA256, digest};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;
use crate::secret::{SecretError, read_secret_file};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} holds no usable PEM certificate or key")]
    Pem(PathBuf),
    #[error("certificate generation failed: {0}")]
    Generate(rcgen::Error),
    #[error("the system random generator failed")]
    Random,
    #[error("the key does not fit the certificate or is unsupported: {0}")]
    Key(rustls::Error),
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot build the device certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Hands out the current certificate to each new handshake.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

#[derive(Debug)]
enum Source {
    /// Made from the site CA in `dir`, which is kept to reissue it.
    Generated {
        dir: PathBuf,
        ca: Box<ca::SiteCa>,
    },
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
}

/// The server's TLS state: config for the acceptor, where the certificate comes from, the CA.
#[derive(Debug)]
pub struct TlsSetup {
    resolver: Arc<CertResolver>,
    server_config: Arc<rustls::ServerConfig>,
    source: Source,
    ca_pem: Option<String>,
}

impl TlsSetup {
    /// Uses the configured certificate, or ensures the site CA and a server certificate in
    /// `<state_dir>/tls`.
    pub fn load(config: &Config, state_dir: &Path, site: &str) -> Result<Self, TlsError> {
        let (certified, source, ca_pem) = match (&config.tls.cert_file, &config.tls.key_file) {
            (Some(cert), Some(key)) => {
                let ck = load_pair(cert, key)?;
                let ca_pem = match &config.tls.ca_file {
                    Some(p) => Some(
                        String::from_utf8(std::fs::read(p).map_err(|source| TlsError::Io {
                            path: p.clone(),
                            source,
                        })?)
                        .map_err(|_| TlsError::Pem(p.clone()))?,
                    ),
                    None => None,
                };
                let source = Source::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                };
                (ck, source, ca_pem)
            }
            _ => {
                let dir = state_dir.join("tls");
                crate::bootstrap::ensure_state_dir(&dir).map_err(|e| TlsError::Io {
                    path: dir.clone(),
                    source: std::io::Error::other(e.to_string()),
                })?;
                let (site_ca, created) = ca::ensure_site_ca(&dir, site)?;
                if created {
                    tracing::info!(path = %ca::ca_cert_path(&dir).display(), "created the site CA");
                }
                tracing::info!(
                    ca_fingerprint = %fingerprint(&site_ca.cert_der),
                    "site CA (SHA-256): the fingerprint to compare when you install /ca.crt"
                );
                let (chain, key) = ca::ensure_server_cert(
                    &dir,
                    &site_ca,
                    &ca::Names::of_this_host(),
                    time::OffsetDateTime::now_utc(),
                )?;
                let ck = certified_key(chain.as_bytes(), key.as_bytes(), &dir)?;
                let ca_pem = Some(site_ca.cert_pem.clone());
                let source = Source::Generated {
                    dir,
                    ca: Box::new(site_ca),
                };
                (ck, source, ca_pem)
            }
        };
        let resolver = Arc::new(CertResolver {
            current: ArcSwap::from_pointee(certified),
        });
        let server_config = build_server_config(resolver.clone())?;
        let setup = Self {
            resolver,
            server_config,
            source,
            ca_pem,
        };
        tracing::info!(
            served_fingerprint = %setup.served_fingerprint(),
            "serving TLS certificate (SHA-256 of this certificate; it changes when renewed)"
        );
        Ok(setup)
    }

    /// Re-reads a configured certificate and key and swaps them in for new handshakes.
    /// Open connections keep theirs. A generated certificate is left as it is.
    pub fn reload(&self) -> Result<(), TlsError> {
        match &self.source {
            Source::Files { cert, key } => {
                let ck = load_pair(cert, key)?;
                self.resolver.current.store(Arc::new(ck));
                tracing::info!(served_fingerprint = %self.served_fingerprint(), "TLS certificate reloaded");
            }
            Source::Generated { .. } => {
                tracing::info!("TLS certificate is generated; nothing to reload");
            }
        }
        Ok(())
    }

    /// For a generated certificate: reissues it when, at `now`, it nears its end or no longer
    /// covers this host's names, and swaps it in for new handshakes; open connections keep the
    /// old one. True when it was swapped. Blocking (files, key generation).
    pub fn renew(&self, now: time::OffsetDateTime) -> Result<bool, TlsError> {
        let Source::Generated { dir, ca } = &self.source else {
            return Ok(false);
        };
        let (chain, key) = ca::ensure_server_cert(dir, ca, &ca::Names::of_this_host(), now)?;
        let ck = certified_key(chain.as_bytes(), key.as_bytes(), dir)?;
        if ck.cert.first() == self.resolver.current.load().cert.first() {
            return Ok(false);
        }
        self.resolver.current.store(Arc::new(ck));
        tracing::info!(served_fingerprint = %self.served_fingerprint(), "TLS certificate renewed");
        Ok(true)
    }

    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.server_config.clone()
    }

    /// The device listener's config: the same served certificate, a client certificate required
    /// and checked by `verifier`, and no resumption at all (no TLS 1.3 tickets, no session
    /// cache), so every connection is a full handshake against the current CRL.
    pub fn device_server_config(
        &self,
        verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.resolver.clone());
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        cfg.send_tls13_tickets = 0;
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Ok(Arc::new(cfg))
    }

    /// The CA certificate clients can install to trust this server, when known.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// SHA-256 fingerprint of the site CA (the first certificate of [`Self::ca_pem`]): the one
    /// fingerprint for people to compare, since it stays the same when the served certificate is
    /// renewed. `None` when no CA is known (a configured certificate without `tls.ca_file`).
    pub fn ca_fingerprint(&self) -> Option<String> {
        let pem = self.ca_pem.as_deref()?;
        let first = CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()?
            .ok()?;
        Some(fingerprint(&first))
    }

    /// SHA-256 fingerprint of the leaf certificate served right now; it changes at every renewal.
    pub fn served_fingerprint(&self) -> String {
        self.resolver
            .current
            .load()
            .cert
            .first()
            .map(fingerprint)
            .unwrap_or_default()
    }
}

/// Upper-case, colon-separated SHA-256 of a DER certificate, as browsers show it.
pub fn fingerprint(der: &CertificateDer<'_>) -> String {
    digest(&SHA256, der.as_ref())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn build_server_config(resolver: Arc<CertResolver>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|source| TlsError::Io {
        path: cert.to_path_buf(),
        source,
    })?;
    let key_pem = read_secret_file(key)?;
    certified_key(&cert_pem, &key_pem, key)
}

fn certified_key(cert_pem: &[u8], key_pem: &[u8], origin: &Path) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::Pem(origin.to_path_buf()))?;
    if certs.is_empty() {
        return Err(TlsError::Pem(origin.to_path_buf()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::Pem(origin.to_path_buf()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(TlsError::Key)?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match().map_err(TlsError::Key)?;
    Ok(ck)
}
