//! The replication transport: HQ's listener (TLS, client certificates from HQ's CA, HTTP/1.1
//! `POST /replication/v1/enroll` and `/batch`) and the edge's client, which pins HQ's CA.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::hq::Replicas;
use super::sites::Sites;
use super::{ReplicationError, wire};
use crate::clock::Clock;
use crate::error::{RejectKind, Rejection};
use crate::tls::issue::DeviceCa;
use crate::tls::issue::IssueError;

pub const PATH_BATCH: &str = "/replication/v1/batch";
pub const PATH_ENROLL: &str = "/replication/v1/enroll";
/// A site renews its certificate over its current one (same key, a new CSR).
pub const PATH_RENEW: &str = "/replication/v1/renew";
/// Which attachment contents HQ lacks (`blobs::Wanted` → `blobs::WantedAnswer`).
pub const PATH_BLOBS_WANTED: &str = "/replication/v1/blobs/wanted";
/// One attachment's content (`blobs::blob_body`).
pub const PATH_BLOB: &str = "/replication/v1/blob";
/// The largest request body HQ reads.
pub const MAX_BODY: usize = (64 << 20) + (64 << 10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot reach HQ at {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HQ closed the connection")]
    Closed,
    #[error("HQ did not answer in time")]
    Timeout,
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("building a request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("HQ refused ({status}): {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("HQ's address {0:?} is not host:port")]
    Address(String),
}

/// What HQ's listener needs.
pub struct Hq {
    pub replicas: Arc<Replicas>,
    pub sites: Arc<Sites>,
    pub ca: Arc<DeviceCa>,
    pub cert_days: u32,
    pub clock: Arc<dyn Clock>,
}

/// The enrolment request: the site, the one-time token, a CSR for the site's key and the site's
/// checkpoint-signing public key, which HQ pins (absent from edges older than the pin: HQ then
/// trusts the first key the site's log carries, as before).
#[derive(Debug, Serialize, Deserialize)]
pub struct EnrolRequest {
    pub site: String,
    pub token: String,
    pub csr_pem: String,
    /// Base64 of the 32-byte Ed25519 public key.
    #[serde(default)]
    pub signing_key: Option<String>,
}

/// The renewal request, sent over the site's current certificate: a CSR for the same key.
#[derive(Debug, Serialize, Deserialize)]
pub struct RenewRequest {
    pub csr_pem: String,
}

/// HQ's answer: the site's certificate and HQ's CA.
#[derive(Debug, Serialize, Deserialize)]
pub struct EnrolAnswer {
    pub cert_pem: String,
    pub ca_pem: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

/// HQ's TLS config: HQ's served certificate; a client certificate is optional at the handshake
/// (enrolment has none) and, when shown, must chain to HQ's CA; no resumption.
pub fn server_config(
    tls: &crate::tls::TlsSetup,
    ca: &DeviceCa,
) -> Result<Arc<rustls::ServerConfig>, ReplicationError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().clone()).map_err(NetError::Tls)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| NetError::Tls(rustls::Error::General(e.to_string())))?;
    Ok(tls.device_server_config(verifier)?)
}

/// Serves HQ's replication listener until `stop`. A site's connections close when it is
/// revoked; every batch request checks the certificate again.
pub async fn serve(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    hq: Arc<Hq>,
    stop: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "replication listener: accept failed");
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        let (acceptor, hq, stop) = (acceptor.clone(), hq.clone(), stop.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "replication handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let cert: Option<Arc<[u8]>> = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref().into());
            let cut = cert
                .as_deref()
                .and_then(|c| hq.sites.site_of(c))
                .map(|s| hq.sites.watch(&s))
                .unwrap_or_default();
            let svc = hyper::service::service_fn(move |req| {
                let (hq, cert) = (hq.clone(), cert.clone());
                async move { Ok::<_, Infallible>(handle(&hq, cert.as_deref(), req).await) }
            });
            let conn =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc);
            tokio::select! {
                _ = conn => {}
                () = cut.cancelled() => tracing::info!(%peer, "site revoked: closing its connection"),
                () = stop.cancelled() => {}
            }
        });
    }
}

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(&ErrorBody {
        code: code.to_string(),
        message: message.to_string(),
    })
    .unwrap_or_default();
    reply(status, body)
}

fn status_of(r: &Rejection) -> StatusCode {
    match r.kind {
        RejectKind::Invalid => StatusCode::BAD_REQUEST,
        RejectKind::NotFound => StatusCode::NOT_FOUND,
        RejectKind::Conflict => StatusCode::CONFLICT,
        RejectKind::Forbidden => StatusCode::FORBIDDEN,
    }
}

fn failed(e: &ReplicationError) -> Response<Full<Bytes>> {
    match e.rejection() {
        Some(r) => refuse(status_of(r), r.code, &r.message),
        None => {
            tracing::error!(error = %e, "replication request failed");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the request failed at HQ",
            )
        }
    }
}

async fn handle(hq: &Hq, cert: Option<&[u8]>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::POST {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "POST only",
        );
    }
    let path = req.uri().path().to_string();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the body is too large",
            );
        }
    };
    match path.as_str() {
        PATH_BATCH => {
            let Some(site) = cert.and_then(|c| hq.sites.site_of(c)) else {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "unknown_certificate",
                    "no enrolled site has this certificate",
                );
            };
            let batch = match wire::decode(&body) {
                Ok(b) => b,
                Err(e) => return refuse(StatusCode::BAD_REQUEST, e.code(), &e.to_string()),
            };
            match hq.replicas.receive(&site, batch).await {
                Ok(ack) => reply(StatusCode::OK, serde_json::to_vec(&ack).unwrap_or_default()),
                Err(e) => failed(&e),
            }
        }
        PATH_ENROLL => match enrol(hq, &body).await {
            Ok(a) => reply(StatusCode::OK, serde_json::to_vec(&a).unwrap_or_default()),
            Err(e) => failed(&e),
        },
        PATH_BLOBS_WANTED | PATH_BLOB => {
            let Some(site) = cert.and_then(|c| hq.sites.site_of(c)) else {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "unknown_certificate",
                    "no enrolled site has this certificate",
                );
            };
            match blob_request(hq, &site, &path, &body).await {
                Ok(b) => reply(StatusCode::OK, b),
                Err(e) => failed(&e),
            }
        }
        PATH_RENEW => {
            let Some((site, cert)) = cert.and_then(|c| hq.sites.site_of(c).map(|s| (s, c))) else {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "unknown_certificate",
                    "no enrolled site has this certificate",
                );
            };
            match renew(hq, &site, cert, &body) {
                Ok(a) => reply(StatusCode::OK, serde_json::to_vec(&a).unwrap_or_default()),
                Err(e) => failed(&e),
            }
        }
        _ => refuse(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    }
}

async fn blob_request(
    hq: &Hq,
    site: &str,
    path: &str,
    body: &[u8],
) -> Result<Vec<u8>, ReplicationError> {
    let replica = hq.replicas.replica(site).await?;
    if path == PATH_BLOB {
        super::blobs::store(&replica, body).await?;
        return Ok(b"{}".to_vec());
    }
    let req: super::blobs::Wanted = serde_json::from_slice(body)
        .map_err(|_| Rejection::invalid("bad_blob", "not a list of attachment references"))?;
    Ok(serde_json::to_vec(
        &super::blobs::wanted(&replica, req.refs).await?,
    )?)
}

fn now_of(hq: &Hq) -> (i64, time::OffsetDateTime) {
    let now_us = hq.clock.now_us();
    let now = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_us) * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    (now_us, now)
}

async fn enrol(hq: &Hq, body: &[u8]) -> Result<EnrolAnswer, ReplicationError> {
    let req: EnrolRequest = serde_json::from_slice(body)
        .map_err(|_| Rejection::invalid("bad_request", "not an enrolment request"))?;
    let pin = req
        .signing_key
        .as_deref()
        .map(super::witness::parse_key)
        .transpose()?;
    let (now_us, now) = now_of(hq);
    let cert_pem = hq.sites.redeem(&req.site, &req.token, now_us, || {
        let issued = hq
            .ca
            .issue_from_csr(&req.site, &req.csr_pem, now, hq.cert_days)?;
        Ok((issued.cert_der.to_vec(), issued.cert_pem))
    })?;
    hq.replicas.create_site(&req.site)?;
    if pin.is_none() {
        tracing::warn!(
            site = %req.site,
            "the edge sent no signing key to pin (an older release): HQ trusts the first key its log carries"
        );
    }
    hq.replicas.pin_signing_key(&req.site, pin).await?;
    tracing::info!(site = %req.site, "site enrolled");
    Ok(EnrolAnswer {
        cert_pem,
        ca_pem: hq.ca.cert_pem().to_string(),
    })
}

/// A renewal keeps the site's key: the CSR's public key must be the one of the certificate the
/// site presented (`400 bad_csr` otherwise), so a copy of a site certificate cannot be turned
/// into one for another key.
fn same_key(presented: &[u8], csr_pem: &str) -> Result<(), ReplicationError> {
    use rustls_pki_types::CertificateSigningRequestDer;
    use rustls_pki_types::pem::PemObject;
    use x509_parser::prelude::FromDer;
    let bad = |m: &str| Rejection::invalid("bad_csr", m.to_string());
    let csr = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|_| bad("the CSR is not PEM"))?;
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(csr.as_ref())
            .map_err(|_| bad("the CSR does not parse"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(presented)
        .map_err(|_| bad("the presented certificate does not parse"))?;
    if req.certification_request_info.subject_pki.raw != cert.public_key().raw {
        return Err(bad("a renewal keeps the site's key: the CSR names another key").into());
    }
    Ok(())
}

fn renew(
    hq: &Hq,
    site: &str,
    presented: &[u8],
    body: &[u8],
) -> Result<EnrolAnswer, ReplicationError> {
    let req: RenewRequest = serde_json::from_slice(body)
        .map_err(|_| Rejection::invalid("bad_request", "not a renewal request"))?;
    same_key(presented, &req.csr_pem)?;
    let (_, now) = now_of(hq);
    let cert_pem = hq.sites.renew(site, presented, || {
        let issued = hq
            .ca
            .issue_from_csr(site, &req.csr_pem, now, hq.cert_days)
            .map_err(|e| match e {
                IssueError::BadCsr(_) | IssueError::CsrTooLarge => {
                    ReplicationError::from(Rejection::invalid("bad_csr", e.to_string()))
                }
                other => other.into(),
            })?;
        Ok((issued.cert_der.to_vec(), issued.cert_pem))
    })?;
    tracing::info!(site, "site certificate renewed");
    Ok(EnrolAnswer {
        cert_pem,
        ca_pem: hq.ca.cert_pem().to_string(),
    })
}

/// The edge's check of HQ: the chain must lead to the CA whose SHA-256 is pinned (the CA comes
/// in the served chain). Host names are not checked: the pinned CA is HQ's own private CA and
/// whatever it signed for serving is HQ.
#[derive(Debug)]
pub struct PinnedCa {
    ca_sha256: String,
    provider: Arc<CryptoProvider>,
}

impl PinnedCa {
    pub fn new(ca_sha256: &str) -> Self {
        Self {
            ca_sha256: ca_sha256.to_ascii_lowercase(),
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        }
    }
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b).as_ref())
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| sha256_hex(c.as_ref()) == self.ca_sha256)
            .ok_or(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// One HTTP/1.1 connection to HQ.
pub struct Conn {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    /// Cancelled when the connection ends (HQ closed it, e.g. on revocation).
    closed: CancellationToken,
}

impl Conn {
    /// Connects to `addr` (`host:port`) with `config`.
    pub async fn open(addr: &str, config: Arc<rustls::ClientConfig>) -> Result<Self, NetError> {
        let host = addr
            .rsplit_once(':')
            .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
            .ok_or_else(|| NetError::Address(addr.to_string()))?;
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| NetError::Address(addr.to_string()))?;
        let tcp = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| NetError::Timeout)?
            .map_err(|source| NetError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let tls = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            tokio_rustls::TlsConnector::from(config).connect(name, tcp),
        )
        .await
        .map_err(|_| NetError::Timeout)?
        .map_err(|source| NetError::Connect {
            addr: addr.to_string(),
            source,
        })?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        let closed = CancellationToken::new();
        let done = closed.clone();
        tokio::spawn(async move {
            let _ = conn.await;
            done.cancel();
        });
        Ok(Self { send, closed })
    }

    /// Resolves when the connection has ended.
    pub async fn closed(&self) {
        self.closed.cancelled().await;
    }

    /// POSTs `body` to `path`; a non-2xx answer becomes [`NetError::Refused`] with HQ's code.
    pub async fn post(&mut self, path: &str, body: Vec<u8>) -> Result<Bytes, NetError> {
        self.send.ready().await?;
        let req = Request::post(path)
            .header(hyper::header::HOST, "plantwire-hq")
            .body(Full::new(Bytes::from(body)))?;
        let resp = self.send.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if status.is_success() {
            return Ok(body);
        }
        let e: ErrorBody = serde_json::from_slice(&body).unwrap_or(ErrorBody {
            code: "unknown".into(),
            message: String::from_utf8_lossy(&body).into_owned(),
        });
        Err(NetError::Refused {
            status: status.as_u16(),
            code: e.code,
            message: e.message,
        })
    }
}

/// A client config that pins HQ's CA, with the site's certificate when enrolled.
pub fn client_config(
    ca_sha256: &str,
    identity: Option<(
        Vec<CertificateDer<'static>>,
        rustls_pki_types::PrivateKeyDer<'static>,
    )>,
) -> Result<Arc<rustls::ClientConfig>, NetError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa::new(ca_sha256)));
    let mut cfg = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr_for(key: &rcgen::KeyPair) -> String {
        super::super::ship::csr(key, "north").unwrap()
    }

    /// A renewal keeps the key: a CSR for the presented certificate's key passes, one for
    /// another key is `bad_csr`, and so is one that is not a CSR.
    #[test]
    fn a_renewal_must_keep_the_sites_key() {
        let key = || rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let (mine, other) = (key(), key());
        let cert = rcgen::CertificateParams::new(vec!["north".to_string()])
            .unwrap()
            .self_signed(&mine)
            .unwrap();
        assert!(same_key(cert.der(), &csr_for(&mine)).is_ok());
        for csr in [csr_for(&other), "not a csr".to_string()] {
            let err = same_key(cert.der(), &csr).unwrap_err();
            assert_eq!(err.rejection().map(|r| r.code), Some("bad_csr"));
        }
    }
}
