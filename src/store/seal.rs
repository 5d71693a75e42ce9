//! Sealing at rest: AES-256-GCM under the site's data key, a random 96-bit nonce per record.
//! The key never leaves this type; callers see only sealed bytes, the key id and its fingerprint.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::hmac;

/// Length of a data key in bytes.
pub const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("a data key must be {KEY_LEN} bytes")]
    KeyLength,
    #[error("the system random generator failed")]
    Random,
    #[error("sealing failed")]
    Seal,
    #[error("the sealed body does not open with this key (wrong key, or the record was altered)")]
    Open,
    #[error("a sealed value is too short")]
    Truncated,
    #[error("the record was sealed with key id {found:08x}, this store's key is {expected:08x}")]
    KeyId { found: u32, expected: u32 },
}

/// A body sealed with a data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: u32,
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the 16-byte GCM tag.
    pub ciphertext: Vec<u8>,
}

/// The site's data key. Debug output never shows the key.
pub struct DataKey {
    id: u32,
    fingerprint: [u8; 32],
    key: LessSafeKey,
    /// The search index's token key, derived from the data key (see [`DataKey::search_mac`]).
    search: hmac::Key,
}

/// Length of the token MACs kept in the search index (truncated HMAC-SHA-256).
pub const SEARCH_MAC_LEN: usize = 8;

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKey(id={:08x})", self.id)
    }
}

impl DataKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        if bytes.len() != KEY_LEN {
            return Err(SealError::KeyLength);
        }
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SealError::KeyLength)?,
        );
        let mut ctx = b"plantwire data key fingerprint v1".to_vec();
        ctx.extend_from_slice(bytes);
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(digest(&SHA256, &ctx).as_ref());
        let id = u32::from_be_bytes([
            fingerprint[0],
            fingerprint[1],
            fingerprint[2],
            fingerprint[3],
        ]);
        // The search key: HMAC-SHA-256 keyed with the data key over a fixed label, so the data
        // key itself never keys anything but AES-GCM, and the MACs say nothing of the key.
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, bytes),
            b"plantwire search token key v1",
        );
        let search = hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref());
        Ok(Self {
            id,
            fingerprint,
            key,
            search,
        })
    }

    /// Makes fresh key material from the system's random generator.
    pub fn generate_bytes() -> Result<[u8; KEY_LEN], SealError> {
        let mut raw = [0u8; KEY_LEN];
        aws_lc_rs::rand::fill(&mut raw).map_err(|_| SealError::Random)?;
        Ok(raw)
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// A one-way fingerprint of the key, kept in the store to notice a swapped key.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The search index's name for a token: HMAC-SHA-256 under the derived search key,
    /// truncated to [`SEARCH_MAC_LEN`] bytes. Equal tokens give equal MACs; nothing else leaks.
    pub fn search_mac(&self, token: &[u8]) -> [u8; SEARCH_MAC_LEN] {
        let tag = hmac::sign(&self.search, token);
        let mut out = [0u8; SEARCH_MAC_LEN];
        out.copy_from_slice(&tag.as_ref()[..SEARCH_MAC_LEN]);
        out
    }

    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Sealed, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| SealError::Seal)?;
        Ok(Sealed {
            key_id: self.id,
            nonce,
            ciphertext: buf,
        })
    }

    /// Seals a view value into one byte string: key id u32 BE | nonce [12] | ciphertext and tag.
    pub fn seal_bytes(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let s = self.seal(aad, plaintext)?;
        let mut out = Vec::with_capacity(4 + NONCE_LEN + s.ciphertext.len());
        out.extend_from_slice(&s.key_id.to_be_bytes());
        out.extend_from_slice(&s.nonce);
        out.extend_from_slice(&s.ciphertext);
        Ok(out)
    }

    /// Opens what `seal_bytes` made.
    pub fn open_bytes(&self, aad: &[u8], bytes: &[u8]) -> Result<Vec<u8>, SealError> {
        if bytes.len() < 4 + NONCE_LEN {
            return Err(SealError::Truncated);
        }
        let (id, rest) = bytes.split_at(4);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let mut key_id = [0u8; 4];
        key_id.copy_from_slice(id);
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(nonce);
        self.open(
            aad,
            &Sealed {
                key_id: u32::from_be_bytes(key_id),
                nonce: n,
                ciphertext: ciphertext.to_vec(),
            },
        )
    }

    pub fn open(&self, aad: &[u8], sealed: &Sealed) -> Result<Vec<u8>, SealError> {
        if sealed.key_id != self.id {
            return Err(SealError::KeyId {
                found: sealed.key_id,
                expected: self.id,
            });
        }
        let mut buf = sealed.ciphertext.clone();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(sealed.nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| SealError::Open)?;
        let len = plain.len();
        buf.truncate(len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_binds_aad() {
        let key = DataKey::from_bytes(&[7u8; 32]).unwrap();
        let sealed = key.seal(b"site/1", b"hello").unwrap();
        assert_ne!(sealed.ciphertext[..5], b"hello"[..]);
        assert_eq!(key.open(b"site/1", &sealed).unwrap(), b"hello");
        assert!(matches!(key.open(b"site/2", &sealed), Err(SealError::Open)));
        let other = DataKey::from_bytes(&[8u8; 32]).unwrap();
        assert!(matches!(
            other.open(b"site/1", &sealed),
            Err(SealError::KeyId { .. })
        ));
        let bytes = key.seal_bytes(b"row", b"view").unwrap();
        assert_eq!(key.open_bytes(b"row", &bytes).unwrap(), b"view");
        assert!(key.open_bytes(b"other", &bytes).is_err());
        assert!(matches!(
            key.open_bytes(b"row", &bytes[..10]),
            Err(SealError::Truncated)
        ));
    }
}
