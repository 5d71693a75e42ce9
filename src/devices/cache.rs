//! The cache of device authentications: the answer of a token or certificate check, good only
//! while the store's devices generation is unchanged. It never holds a refusal (unknown tokens
//! are attacker input) and never outlives a commit to a device table.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::DeviceRow;

/// Most credentials held. A site has a few hundred devices at most, each with a token or a
/// certificate or two; when the map is full it is emptied and fills again from the store, so
/// memory stays bounded (about 200 KB) whatever peers send.
pub const CAPACITY: usize = 1024;

/// What a device presented: the SHA-256 of its bearer token or of its certificate's DER. Tagged,
/// so a token hash can never answer for a certificate with the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Credential {
    Token([u8; 32]),
    Certificate([u8; 32]),
}

#[derive(Debug)]
struct Cached {
    device: DeviceRow,
    /// The certificate's end of validity; `i64::MAX` for a token. Time passes without a commit,
    /// so the caller checks it on every hit.
    not_after_us: i64,
}

/// Every entry was read at `generation`: a lookup at another one misses (and the next insert
/// empties the map), so one comparison retires them all at once.
#[derive(Debug, Default)]
struct Entries {
    generation: u64,
    map: HashMap<Credential, Cached>,
}

/// Authenticated devices by credential, built once in the composition root (`AppState`) for its
/// site's log. The lock is held for one map operation, never across an await.
#[derive(Debug, Default)]
pub struct AuthCache {
    entries: Mutex<Entries>,
}

impl AuthCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The active device of token hash `hash`, if cached at `generation`.
    pub(crate) fn token(&self, hash: &[u8; 32], generation: u64) -> Option<DeviceRow> {
        self.get(&Credential::Token(*hash), generation)
            .map(|(device, _)| device)
    }

    /// The active device of certificate `fingerprint` and the certificate's `not_after_us`, if
    /// cached at `generation`.
    pub(crate) fn certificate(
        &self,
        fingerprint: &[u8; 32],
        generation: u64,
    ) -> Option<(DeviceRow, i64)> {
        self.get(&Credential::Certificate(*fingerprint), generation)
    }

    /// Keeps a positive answer read from a snapshot taken after `generation` was read.
    pub(crate) fn insert_token(&self, hash: [u8; 32], generation: u64, device: DeviceRow) {
        self.insert(Credential::Token(hash), generation, device, i64::MAX);
    }

    /// Like [`AuthCache::insert_token`], for a certificate valid until `not_after_us`.
    pub(crate) fn insert_certificate(
        &self,
        fingerprint: [u8; 32],
        generation: u64,
        device: DeviceRow,
        not_after_us: i64,
    ) {
        self.insert(
            Credential::Certificate(fingerprint),
            generation,
            device,
            not_after_us,
        );
    }

    /// How many credentials are held (the tests read it).
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.map.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, credential: &Credential, generation: u64) -> Option<(DeviceRow, i64)> {
        // A poisoned lock only costs the store read the cache would have saved.
        let entries = self.entries.lock().ok()?;
        if entries.generation != generation {
            return None;
        }
        let c = entries.map.get(credential)?;
        Some((c.device.clone(), c.not_after_us))
    }

    fn insert(
        &self,
        credential: Credential,
        generation: u64,
        device: DeviceRow,
        not_after_us: i64,
    ) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.generation != generation {
            // An answer read before a newer change must not come back under the newer number.
            if generation < entries.generation {
                return;
            }
            entries.map.clear();
            entries.generation = generation;
        }
        if entries.map.len() >= CAPACITY && !entries.map.contains_key(&credential) {
            entries.map.clear();
        }
        entries.map.insert(
            credential,
            Cached {
                device,
                not_after_us,
            },
        );
    }
}
