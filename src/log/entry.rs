//! Log entries and their canonical encoding, the input of the hash chain.
//! The encoding is versioned and byte-exact on every architecture; changing it means a new version.

use std::sync::Arc;

use aws_lc_rs::digest::{Context, SHA256};
use serde::Serialize;

use super::author::Author;

/// Version of the canonical encoding v1 (the whole entry).
pub const CANONICAL_VERSION: u8 = 1;
/// Version of the canonical encoding v2 (the entry's content as one digest).
pub const CANONICAL_VERSION_2: u8 = 2;
/// The `prev` of the first entry of a log.
pub const GENESIS: [u8; 32] = [0; 32];

pub const MAX_KIND_LEN: usize = 64;
pub const MAX_NAME_LEN: usize = 256;
pub const MAX_BODY_LEN: usize = 1 << 20;

/// An entry before the sequencer gives it a place in the log.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub kind: String,
    pub stream: String,
    pub author: Author,
    /// Kind-specific body, serialized JSON.
    pub body: Vec<u8>,
}

impl NewEntry {
    pub fn json<T: Serialize>(
        kind: &str,
        stream: &str,
        author: &Author,
        body: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            kind: kind.to_string(),
            stream: stream.to_string(),
            author: author.clone(),
            body: serde_json::to_vec(body)?,
        })
    }
}

/// Which canonical encoding an entry's hash is over. Stored with the entry (its record version),
/// never guessed: a log holds v1 entries written before chain v2 and v2 entries after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChainVersion {
    /// `hash = SHA-256(prev ‖ canonical v1)`: the whole entry (see [`canonical`]).
    V1,
    /// `hash = SHA-256(prev ‖ canonical v2)`: seq, ts and the content digest (see
    /// [`canonical_v2`]), so a hash-only stub carrying the digest can be re-hashed.
    V2,
}

impl ChainVersion {
    /// What every new entry is written with.
    pub const CURRENT: Self = Self::V2;

    /// The version byte of its canonical encoding.
    pub fn number(self) -> u8 {
        match self {
            Self::V1 => CANONICAL_VERSION,
            Self::V2 => CANONICAL_VERSION_2,
        }
    }
}

/// A committed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub site: Arc<str>,
    pub seq: u64,
    /// UTC microseconds; never decreases along the log.
    pub ts: i64,
    pub kind: String,
    pub stream: String,
    pub author: String,
    pub body: Vec<u8>,
    pub prev: [u8; 32],
    pub hash: [u8; 32],
    /// Which canonical encoding `hash` is over.
    pub chain: ChainVersion,
}

impl Entry {
    /// Who wrote it, typed (old forms included: see [`Author::parse`]).
    pub fn by(&self) -> Author {
        Author::parse(&self.author)
    }

    /// `SHA-256(kind | stream | author | body)`: what a chain-v2 hash commits to (and a stub
    /// of a chain-v2 entry carries).
    pub fn content_digest(&self) -> [u8; 32] {
        content_digest(&self.kind, &self.stream, &self.author, &self.body)
    }

    /// `SHA-256(prev ‖ canonical)` in the entry's chain version, what `hash` must equal.
    pub fn computed_hash(&self) -> [u8; 32] {
        let canon = match self.chain {
            ChainVersion::V1 => canonical(
                &self.site,
                self.seq,
                self.ts,
                &self.kind,
                &self.stream,
                &self.author,
                &self.body,
            ),
            ChainVersion::V2 => canonical_v2(&self.site, self.seq, self.ts, &self.content_digest()),
        };
        chain_hash(&self.prev, &canon)
    }
}

/// Canonical encoding v1, integers big-endian, strings as u32 length + UTF-8 bytes:
/// `version u8 | site | seq u64 | ts i64 | kind | stream | author | body (u32 length + bytes)`.
pub fn canonical(
    site: &str,
    seq: u64,
    ts: i64,
    kind: &str,
    stream: &str,
    author: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        1 + 16 + 20 + site.len() + kind.len() + stream.len() + author.len() + body.len(),
    );
    out.push(CANONICAL_VERSION);
    put_bytes(&mut out, site.as_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    put_bytes(&mut out, kind.as_bytes());
    put_bytes(&mut out, stream.as_bytes());
    put_bytes(&mut out, author.as_bytes());
    put_bytes(&mut out, body);
    out
}

/// The content digest of chain v2, with v1's string encoding (u32 big-endian length + bytes):
/// `SHA-256(kind | stream | author | body)`, each field as u32 length + bytes.
pub fn content_digest(kind: &str, stream: &str, author: &str, body: &[u8]) -> [u8; 32] {
    let mut ctx = Context::new(&SHA256);
    for field in [kind.as_bytes(), stream.as_bytes(), author.as_bytes(), body] {
        // Lengths are bounded far below u32::MAX by the append limits.
        ctx.update(&(field.len() as u32).to_be_bytes());
        ctx.update(field);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Canonical encoding v2, integers big-endian, the site as u32 length + UTF-8 bytes:
/// `version u8 = 2 | site | seq u64 | ts i64 | content digest [32]` (see [`content_digest`]).
/// The hash is `SHA-256(prev ‖ canonical v2)`: anyone holding the site name, seq, ts, prev and
/// digest (a stub) recomputes it without the entry's kind, stream, author or body.
pub fn canonical_v2(site: &str, seq: u64, ts: i64, digest: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 4 + site.len() + 16 + 32);
    out.push(CANONICAL_VERSION_2);
    put_bytes(&mut out, site.as_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(digest);
    out
}

/// The chain-v2 hash of an entry known by its digest (a stub, a purged record).
pub fn hash_v2(prev: &[u8; 32], site: &str, seq: u64, ts: i64, digest: &[u8; 32]) -> [u8; 32] {
    chain_hash(prev, &canonical_v2(site, seq, ts, digest))
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Lengths are bounded far below u32::MAX by the append limits.
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

pub fn chain_hash(prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut ctx = Context::new(&SHA256);
    ctx.update(prev);
    ctx.update(canonical);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Associated data for sealing a body: binds the ciphertext to its site and place in the log.
pub fn seal_aad(site: &str, seq: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(site.len() + 9);
    aad.extend_from_slice(site.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&seq.to_be_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed vector: if this fails, the canonical encoding changed and needs a new version.
    #[test]
    fn canonical_encoding_is_stable() {
        let c = canonical("p1", 1, 2, "event", "s", "a", b"{}");
        let mut expected = vec![1u8];
        expected.extend_from_slice(&[0, 0, 0, 2, b'p', b'1']);
        expected.extend_from_slice(&1u64.to_be_bytes());
        expected.extend_from_slice(&2i64.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 5, b'e', b'v', b'e', b'n', b't']);
        expected.extend_from_slice(&[0, 0, 0, 1, b's', 0, 0, 0, 1, b'a']);
        expected.extend_from_slice(&[0, 0, 0, 2, b'{', b'}']);
        assert_eq!(c, expected);
        assert_eq!(hex::encode(chain_hash(&GENESIS, &c)), GOLDEN);
    }

    const GOLDEN: &str = "146c4b797d1bd6f4cc2f4bc8946cb5e25341a3432f547b6e3a5f513a592aa227";

    /// Chain v2's fixed vector: the content digest's input, the canonical bytes and the hash.
    /// If this fails, chain v2 changed and needs a new version.
    #[test]
    fn canonical_v2_encoding_is_stable() {
        let mut digest_input = Vec::new();
        digest_input.extend_from_slice(&[0, 0, 0, 5, b'e', b'v', b'e', b'n', b't']);
        digest_input.extend_from_slice(&[0, 0, 0, 1, b's', 0, 0, 0, 1, b'a']);
        digest_input.extend_from_slice(&[0, 0, 0, 2, b'{', b'}']);
        let d = content_digest("event", "s", "a", b"{}");
        assert_eq!(
            d[..],
            *aws_lc_rs::digest::digest(&SHA256, &digest_input).as_ref()
        );
        assert_eq!(hex::encode(d), GOLDEN_DIGEST);
        let c = canonical_v2("p1", 1, 2, &d);
        let mut expected = vec![2u8];
        expected.extend_from_slice(&[0, 0, 0, 2, b'p', b'1']);
        expected.extend_from_slice(&1u64.to_be_bytes());
        expected.extend_from_slice(&2i64.to_be_bytes());
        expected.extend_from_slice(&d);
        assert_eq!(c, expected);
        assert_eq!(hex::encode(chain_hash(&GENESIS, &c)), GOLDEN_V2);
        let e = Entry {
            site: "p1".into(),
            seq: 1,
            ts: 2,
            kind: "event".into(),
            stream: "s".into(),
            author: "a".into(),
            body: b"{}".to_vec(),
            prev: GENESIS,
            hash: [0; 32],
            chain: ChainVersion::V2,
        };
        assert_eq!(hex::encode(e.computed_hash()), GOLDEN_V2);
        assert_eq!(hash_v2(&GENESIS, "p1", 1, 2, &d), e.computed_hash());
        let v1 = Entry {
            chain: ChainVersion::V1,
            ..e
        };
        assert_eq!(hex::encode(v1.computed_hash()), GOLDEN);
    }

    const GOLDEN_DIGEST: &str = "cba3a8964b5ad59fa907211dfe809d726eea273ef88d01d8fddf453a2a8046ba";
    const GOLDEN_V2: &str = "e819455968d0c5a537acbd5ce59e17706d35a1bf698e09c0a4fa4acfcaf56cfe";
}
