//! Log entries and their canonical encoding, the input of the hash chain.
//! The encoding is versioned and byte-exact on every architecture; changing it means a new version.

use std::sync::Arc;

use aws_lc_rs::digest::{Context, SHA256};
use serde::Serialize;

use super::author::Author;

/// Version of the canonical encoding below.
pub const CANONICAL_VERSION: u8 = 1;
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
}

impl Entry {
    /// Who wrote it, typed (old forms included: see [`Author::parse`]).
    pub fn by(&self) -> Author {
        Author::parse(&self.author)
    }

    /// `SHA-256(prev ‖ canonical)`, what `hash` must equal.
    pub fn computed_hash(&self) -> [u8; 32] {
        chain_hash(
            &self.prev,
            &canonical(
                &self.site,
                self.seq,
                self.ts,
                &self.kind,
                &self.stream,
                &self.author,
                &self.body,
            ),
        )
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
}
