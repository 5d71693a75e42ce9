//! Grafana's webhook signature: a hex HMAC-SHA256 over the body, or over `timestamp:body` when
//! Grafana is set to send a timestamp header. Checked in constant time.

use aws_lc_rs::hmac;

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is missing")]
    Missing,
    #[error("the timestamp header is missing")]
    MissingTimestamp,
    #[error("the signature does not match")]
    Mismatch,
}

/// Verifies `given` (hex) against `secret` over the body, prefixed with `timestamp:` when given.
pub fn verify(
    secret: &[u8],
    body: &[u8],
    timestamp: Option<&str>,
    given: &str,
) -> Result<(), SignatureError> {
    let tag = hex::decode(given.trim()).map_err(|_| SignatureError::Mismatch)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, &signed(body, timestamp), &tag).map_err(|_| SignatureError::Mismatch)
}

/// What is signed: the body, or `timestamp:body`.
fn signed(body: &[u8], timestamp: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 24);
    if let Some(ts) = timestamp {
        out.extend_from_slice(ts.as_bytes());
        out.push(b':');
    }
    out.extend_from_slice(body);
    out
}

/// The hex signature of `body` (tests and the docs' examples).
pub fn sign(secret: &[u8], body: &[u8], timestamp: Option<&str>) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hex::encode(hmac::sign(&key, &signed(body, timestamp)).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_over_the_same_bytes_and_timestamp() {
        let sig = sign(b"s3cret", b"{}", None);
        assert_eq!(verify(b"s3cret", b"{}", None, &sig), Ok(()));
        assert_eq!(
            verify(b"other", b"{}", None, &sig),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"s3cret", b"{ }", None, &sig),
            Err(SignatureError::Mismatch)
        );
        let ts = sign(b"s3cret", b"{}", Some("1700000000"));
        assert_eq!(verify(b"s3cret", b"{}", Some("1700000000"), &ts), Ok(()));
        assert_eq!(
            verify(b"s3cret", b"{}", Some("1700000001"), &ts),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"s3cret", b"{}", None, "zz"),
            Err(SignatureError::Mismatch)
        );
    }
}
