//! The device listener's gate: the client-certificate verifier (site CA + current CRL, swapped
//! whole on every revocation) and the registry of live device connections that revocation closes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use tokio_util::sync::CancellationToken;

use super::TlsError;
use super::issue::{DeviceCa, IssueError, RevokedSerial};

/// Delegates every check to the verifier of the moment: a handshake costs one atomic load, and a
/// new CRL applies to the next handshake.
#[derive(Debug)]
struct SwapVerifier {
    current: ArcSwap<Arc<dyn ClientCertVerifier>>,
    hints: Vec<DistinguishedName>,
}

impl ClientCertVerifier for SwapVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current
            .load()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current.load().supported_verify_schemes()
    }
}

/// The verifier, the CRL it enforces and the live device connections.
#[derive(Debug)]
pub struct DeviceGate {
    ca: DeviceCa,
    verifier: Arc<SwapVerifier>,
    crl: ArcSwap<Vec<u8>>,
    live: Mutex<HashMap<String, HashMap<u64, CancellationToken>>>,
    next_id: AtomicU64,
}

fn build_verifier(ca: &DeviceCa, crl_der: &[u8]) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().clone())?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .with_crls([CertificateRevocationListDer::from(crl_der.to_vec())])
            .only_check_end_entity_revocation()
            .build()?,
    )
}

impl DeviceGate {
    /// The gate for `ca` with CRL number `number` listing `revoked`.
    pub fn new(
        ca: DeviceCa,
        number: u64,
        revoked: &[RevokedSerial],
    ) -> Result<Arc<Self>, IssueError> {
        let crl = ca.crl(number, revoked, time::OffsetDateTime::now_utc())?;
        let current = build_verifier(&ca, &crl)?;
        let hints = current.root_hint_subjects().to_vec();
        Ok(Arc::new(Self {
            verifier: Arc::new(SwapVerifier {
                current: ArcSwap::from_pointee(current),
                hints,
            }),
            crl: ArcSwap::from_pointee(crl),
            ca,
            live: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        }))
    }

    pub fn ca(&self) -> &DeviceCa {
        &self.ca
    }

    /// The verifier for the device listener's `ServerConfig`.
    pub fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.verifier.clone()
    }

    /// The current CRL, DER.
    pub fn crl(&self) -> Arc<Vec<u8>> {
        self.crl.load_full()
    }

    /// Signs a new CRL and swaps in a verifier that enforces it: the next handshake sees it.
    pub fn update(&self, number: u64, revoked: &[RevokedSerial]) -> Result<(), IssueError> {
        let crl = self
            .ca
            .crl(number, revoked, time::OffsetDateTime::now_utc())?;
        let verifier = build_verifier(&self.ca, &crl)?;
        self.crl.store(Arc::new(crl));
        self.verifier.current.store(Arc::new(verifier));
        Ok(())
    }

    /// Registers a live connection of `device`; it is closed when [`Self::disconnect`] names the
    /// device. The registration ends when the returned guard drops.
    pub fn register(self: &Arc<Self>, device: &str) -> LiveDevice {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let close = CancellationToken::new();
        if let Ok(mut live) = self.live.lock() {
            live.entry(device.to_string())
                .or_default()
                .insert(id, close.clone());
        }
        LiveDevice {
            gate: self.clone(),
            device: device.to_string(),
            id,
            close,
        }
    }

    /// Closes every open connection of `device`; returns how many.
    pub fn disconnect(&self, device: &str) -> usize {
        let conns = self
            .live
            .lock()
            .ok()
            .and_then(|mut live| live.remove(device))
            .unwrap_or_default();
        for close in conns.values() {
            close.cancel();
        }
        conns.len()
    }

    /// Live device connections now.
    pub fn live_connections(&self) -> usize {
        self.live
            .lock()
            .map(|l| l.values().map(HashMap::len).sum())
            .unwrap_or(0)
    }
}

/// One live device connection's registration; cancelled `close` asks the connection to end.
#[derive(Debug)]
pub struct LiveDevice {
    gate: Arc<DeviceGate>,
    device: String,
    id: u64,
    pub close: CancellationToken,
}

impl Drop for LiveDevice {
    fn drop(&mut self) {
        let Ok(mut live) = self.gate.live.lock() else {
            return;
        };
        if let Some(conns) = live.get_mut(&self.device) {
            conns.remove(&self.id);
            if conns.is_empty() {
                live.remove(&self.device);
            }
        }
    }
}

/// The verified client certificate of a device-listener connection, put into every request's
/// extensions by the server; `DeviceAuth` maps it to the device row on each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCertificate {
    /// SHA-256 of the DER certificate.
    pub fingerprint: [u8; 32],
}

impl PeerCertificate {
    pub fn of(der: &CertificateDer<'_>) -> Self {
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.as_ref()).as_ref(),
        );
        Self { fingerprint }
    }
}
