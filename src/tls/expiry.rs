//! When the served certificate and the site CA end, for the certificate-expiry system alarm;
//! read from the resolver at each call, so a renewal or reload is seen at once.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::TlsSetup;

fn not_after_us(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.validity().not_after.timestamp().checked_mul(1_000_000)
}

impl TlsSetup {
    /// `(which, not after µs)` of the served certificate and of the site CA when there is one.
    pub fn expiries(&self) -> Vec<(&'static str, i64)> {
        let mut out = Vec::new();
        let served = self.resolver.current.load_full();
        if let Some(t) = served.cert.first().and_then(|c| not_after_us(c.as_ref())) {
            out.push(("served certificate", t));
        }
        if let Some(pem) = &self.ca_pem
            && let Some(Ok(ca)) = CertificateDer::pem_slice_iter(pem.as_bytes()).next()
            && let Some(t) = not_after_us(ca.as_ref())
        {
            out.push(("site CA certificate", t));
        }
        out
    }
}
