//! The replication wire format v2 (v1 still read): one batch of a site's entries and hash-only
//! stubs with the edge's newest signed checkpoint, deflated; byte-exact, `docs/replication.md`.

use std::sync::Arc;

use crate::log::Entry;
use crate::log::entry::{ChainVersion, hash_v2};

/// The first three bytes of every batch.
pub const MAGIC: &[u8; 3] = b"PWR";
/// The version of the frame and payload below (what is written).
pub const VERSION: u8 = 2;
/// Version 1: every item a whole entry, no tag byte (still read: older edges ship to a newer HQ).
pub const VERSION_1: u8 = 1;
/// Item tag of a whole entry hashed with chain v1.
const TAG_ENTRY: u8 = 0;
/// Item tag of a legacy stub: seq, ts, prev and hash only (its class is not shipped; a chain-v1
/// entry, so its hash cannot be recomputed).
const TAG_STUB: u8 = 1;
/// Item tag of a whole entry hashed with chain v2 (same fields as tag 0).
const TAG_ENTRY_V2: u8 = 2;
/// Item tag of a stub of a chain-v2 entry: seq, ts, prev and its content digest; the receiver
/// recomputes its hash. A reader that does not know tags 2 and 3 refuses the batch with
/// `WireError::Tag` (an HQ older than chain v2: upgrade HQ before its edges).
const TAG_STUB_V2: u8 = 3;
/// Flag bit 0: the payload is raw deflate (RFC 1951).
pub const FLAG_DEFLATE: u8 = 0x01;
/// The largest payload a receiver inflates (a batch is bounded far below this).
pub const MAX_PAYLOAD: usize = 64 << 20;
const HEADER_LEN: usize = 3 + 1 + 1 + 4;

/// One batch: `entries` are consecutive seqs of `site`'s log; `checkpoint` is the edge's newest
/// signed note, if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub site: String,
    /// The edge's newest seq when it sent the batch (HQ's lag in entries).
    pub head: u64,
    pub checkpoint: Option<String>,
    pub entries: Vec<Shipped>,
}

/// What stands for an entry whose class the edge does not ship: only what the chain needs.
/// Of a chain-v2 entry it carries the content digest, and `hash` is recomputed from it (the
/// decoder does; tag 3 does not carry the hash). Of a chain-v1 entry (a legacy stub, `digest`
/// `None`) HQ cannot recompute `hash`; the next entry's `prev` and the site's signed
/// checkpoints commit to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stub {
    pub seq: u64,
    pub ts: i64,
    pub prev: [u8; 32],
    pub hash: [u8; 32],
    /// `SHA-256(kind | stream | author | body)` of a chain-v2 entry; `None` for a legacy stub.
    pub digest: Option<[u8; 32]>,
}

impl Stub {
    /// Whether its hash can be recomputed (a chain-v2 stub).
    pub fn verifiable(&self) -> bool {
        self.digest.is_some()
    }
}

/// One item of a batch: a whole entry, or a stub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shipped {
    Entry(Entry),
    Stub(Stub),
}

impl Shipped {
    pub fn seq(&self) -> u64 {
        match self {
            Self::Entry(e) => e.seq,
            Self::Stub(s) => s.seq,
        }
    }

    pub fn ts(&self) -> i64 {
        match self {
            Self::Entry(e) => e.ts,
            Self::Stub(s) => s.ts,
        }
    }

    pub fn prev(&self) -> [u8; 32] {
        match self {
            Self::Entry(e) => e.prev,
            Self::Stub(s) => s.prev,
        }
    }

    pub fn hash(&self) -> [u8; 32] {
        match self {
            Self::Entry(e) => e.hash,
            Self::Stub(s) => s.hash,
        }
    }

    /// The whole entry, `None` for a stub.
    pub fn entry(&self) -> Option<&Entry> {
        match self {
            Self::Entry(e) => Some(e),
            Self::Stub(_) => None,
        }
    }

    /// Whether this is a legacy stub (of a chain-v1 entry: its hash cannot be recomputed).
    pub fn is_legacy_stub(&self) -> bool {
        matches!(self, Self::Stub(s) if !s.verifiable())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("not a replication batch (bad magic)")]
    Magic,
    #[error(
        "unsupported batch version {0}: this side reads versions 1 and 2 (upgrade HQ before its edges)"
    )]
    Version(u8),
    #[error("unknown item tag {0} in the batch")]
    Tag(u8),
    #[error("unknown batch flags {0:#04x}")]
    Flags(u8),
    #[error("the batch is truncated")]
    Truncated,
    #[error("the batch payload is larger than {MAX_PAYLOAD} bytes")]
    TooLarge,
    #[error("the batch payload does not inflate")]
    Inflate,
    #[error("the batch payload length does not match its header")]
    Length,
    #[error("a string in the batch is not UTF-8")]
    Utf8,
    #[error("trailing bytes after the last entry")]
    Trailing,
}

/// Encodes `batch`, deflated when `compress` (level 6).
pub fn encode(batch: &Batch, compress: bool) -> Vec<u8> {
    let payload = payload(batch);
    let (flags, body) = if compress {
        (
            FLAG_DEFLATE,
            miniz_oxide::deflate::compress_to_vec(&payload, 6),
        )
    } else {
        (0, payload.clone())
    };
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(flags);
    // Payloads are bounded by MAX_PAYLOAD (batch size times the entry limits).
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The uncompressed payload: `site | head u64 | checkpoint | count u32 | items`, each item
/// `tag u8 | seq u64 | ts i64 | ...`: an entry (tag 0 chain v1, tag 2 chain v2) goes on `kind |
/// stream | author | body | prev [32] | hash [32]`, a legacy stub (tag 1) on `prev [32] | hash
/// [32]`, a chain-v2 stub (tag 3) on `prev [32] | digest [32]`; strings and bytes as u32
/// big-endian length + bytes, an absent checkpoint as length 0.
fn payload(batch: &Batch) -> Vec<u8> {
    let mut out = Vec::new();
    put(&mut out, batch.site.as_bytes());
    out.extend_from_slice(&batch.head.to_be_bytes());
    put(
        &mut out,
        batch.checkpoint.as_deref().unwrap_or_default().as_bytes(),
    );
    out.extend_from_slice(&(batch.entries.len() as u32).to_be_bytes());
    for item in &batch.entries {
        out.push(match item {
            Shipped::Entry(e) if e.chain == ChainVersion::V1 => TAG_ENTRY,
            Shipped::Entry(_) => TAG_ENTRY_V2,
            Shipped::Stub(s) if s.verifiable() => TAG_STUB_V2,
            Shipped::Stub(_) => TAG_STUB,
        });
        out.extend_from_slice(&item.seq().to_be_bytes());
        out.extend_from_slice(&item.ts().to_be_bytes());
        if let Shipped::Entry(e) = item {
            put(&mut out, e.kind.as_bytes());
            put(&mut out, e.stream.as_bytes());
            put(&mut out, e.author.as_bytes());
            put(&mut out, &e.body);
        }
        out.extend_from_slice(&item.prev());
        match item {
            Shipped::Stub(Stub {
                digest: Some(d), ..
            }) => out.extend_from_slice(d),
            _ => out.extend_from_slice(&item.hash()),
        }
    }
    out
}

fn put(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// Decodes a batch; every bound is checked before anything is allocated on its say-so.
pub fn decode(bytes: &[u8]) -> Result<Batch, WireError> {
    if bytes.len() < HEADER_LEN {
        return Err(WireError::Truncated);
    }
    if &bytes[..3] != MAGIC {
        return Err(WireError::Magic);
    }
    let version = bytes[3];
    if version != VERSION && version != VERSION_1 {
        return Err(WireError::Version(version));
    }
    let flags = bytes[4];
    if flags & !FLAG_DEFLATE != 0 {
        return Err(WireError::Flags(flags));
    }
    let len = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(WireError::TooLarge);
    }
    let body = &bytes[HEADER_LEN..];
    let inflated;
    let payload = if flags & FLAG_DEFLATE != 0 {
        inflated = miniz_oxide::inflate::decompress_to_vec_with_limit(body, len)
            .map_err(|_| WireError::Inflate)?;
        &inflated[..]
    } else {
        body
    };
    if payload.len() != len {
        return Err(WireError::Length);
    }
    let mut r = Reader { b: payload };
    let site = r.string()?;
    let head = r.u64()?;
    let checkpoint = Some(r.string()?).filter(|c| !c.is_empty());
    let count = r.u32()? as usize;
    let site_arc: Arc<str> = site.as_str().into();
    // Each item takes at least 81 bytes: the count cannot make us reserve more than the payload.
    let mut entries = Vec::with_capacity(count.min(payload.len() / 81));
    for _ in 0..count {
        let tag = if version == VERSION_1 {
            TAG_ENTRY
        } else {
            r.take(1)?[0]
        };
        let seq = r.u64()?;
        let ts = r.u64()? as i64;
        let chain = match tag {
            TAG_ENTRY => ChainVersion::V1,
            TAG_ENTRY_V2 => ChainVersion::V2,
            TAG_STUB => {
                let prev = r.hash()?;
                let hash = r.hash()?;
                entries.push(Shipped::Stub(Stub {
                    seq,
                    ts,
                    prev,
                    hash,
                    digest: None,
                }));
                continue;
            }
            TAG_STUB_V2 => {
                let prev = r.hash()?;
                let digest = r.hash()?;
                entries.push(Shipped::Stub(Stub {
                    seq,
                    ts,
                    prev,
                    hash: hash_v2(&prev, &site, seq, ts, &digest),
                    digest: Some(digest),
                }));
                continue;
            }
            other => return Err(WireError::Tag(other)),
        };
        let kind = r.string()?;
        let stream = r.string()?;
        let author = r.string()?;
        let body = r.bytes()?.to_vec();
        let prev = r.hash()?;
        let hash = r.hash()?;
        entries.push(Shipped::Entry(Entry {
            site: site_arc.clone(),
            seq,
            ts,
            kind,
            stream,
            author,
            body,
            prev,
            hash,
            chain,
        }));
    }
    if !r.b.is_empty() {
        return Err(WireError::Trailing);
    }
    Ok(Batch {
        site,
        head,
        checkpoint,
        entries,
    })
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.b.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }

    fn hash(&mut self) -> Result<[u8; 32], WireError> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(32)?);
        Ok(a)
    }

    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, WireError> {
        std::str::from_utf8(self.bytes()?)
            .map(str::to_string)
            .map_err(|_| WireError::Utf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Batch {
        let site: Arc<str> = "north".into();
        Batch {
            site: "north".into(),
            head: 8,
            checkpoint: Some("n\n".into()),
            entries: vec![
                Shipped::Entry(Entry {
                    site,
                    seq: 7,
                    ts: 9,
                    kind: "k".into(),
                    stream: "s".into(),
                    author: "a".into(),
                    body: b"{}".to_vec(),
                    prev: [1; 32],
                    hash: [2; 32],
                    chain: ChainVersion::V1,
                }),
                Shipped::Stub(Stub {
                    seq: 8,
                    ts: 10,
                    prev: [2; 32],
                    hash: [3; 32],
                    digest: None,
                }),
            ],
        }
    }

    /// The byte-exact frame of a fixed batch: if this fails, the wire format changed and needs
    /// a new version (and `docs/replication.md` a new section).
    #[test]
    fn the_uncompressed_frame_is_byte_exact() {
        let bytes = encode(&sample(), false);
        let golden = concat!(
            "505752",
            "02",
            "00",
            "000000d2", // magic, version, flags, payload length
            "00000005",
            "6e6f727468",       // site "north"
            "0000000000000008", // the edge's head
            "00000002",
            "6e0a",     // checkpoint "n\n"
            "00000002", // two items
            "00",       // an entry
            "0000000000000007",
            "0000000000000009", // seq, ts
            "000000016b",
            "0000000173",
            "0000000161",
            "000000027b7d", // kind, stream, author, body
            "0101010101010101010101010101010101010101010101010101010101010101", // prev
            "0202020202020202020202020202020202020202020202020202020202020202", // hash
            "01",           // a stub
            "0000000000000008",
            "000000000000000a", // seq, ts
            "0202020202020202020202020202020202020202020202020202020202020202", // prev
            "0303030303030303030303030303030303030303030303030303030303030303", // hash
        );
        assert_eq!(hex::encode(&bytes), golden);
        assert_eq!(decode(&bytes).unwrap(), sample());
    }

    /// Tags 2 and 3: a whole chain-v2 entry (the fields of tag 0) and a chain-v2 stub carrying
    /// its content digest where a legacy stub has its hash; the decoder recomputes that hash.
    #[test]
    fn chain_v2_items_are_byte_exact_and_a_stub_hash_is_recomputed() {
        let mut batch = sample();
        if let Shipped::Entry(e) = &mut batch.entries[0] {
            e.chain = ChainVersion::V2;
        }
        let digest = [4u8; 32];
        batch.entries[1] = Shipped::Stub(Stub {
            seq: 8,
            ts: 10,
            prev: [2; 32],
            hash: hash_v2(&[2; 32], "north", 8, 10, &digest),
            digest: Some(digest),
        });
        let bytes = encode(&batch, false);
        let golden = concat!(
            "505752",
            "02",
            "00",
            "000000d2",
            "00000005",
            "6e6f727468",
            "0000000000000008",
            "00000002",
            "6e0a",
            "00000002",
            "02", // a whole chain-v2 entry
            "0000000000000007",
            "0000000000000009",
            "000000016b",
            "0000000173",
            "0000000161",
            "000000027b7d",
            "0101010101010101010101010101010101010101010101010101010101010101",
            "0202020202020202020202020202020202020202020202020202020202020202",
            "03", // a chain-v2 stub: prev, then the digest
            "0000000000000008",
            "000000000000000a",
            "0202020202020202020202020202020202020202020202020202020202020202",
            "0404040404040404040404040404040404040404040404040404040404040404",
        );
        assert_eq!(hex::encode(&bytes), golden);
        assert_eq!(decode(&bytes).unwrap(), batch);
        assert!(batch.entries[1].hash() != [3; 32] && !batch.entries[1].is_legacy_stub());
    }

    /// A version 1 frame (an older edge) still decodes: every item a whole entry, no tag.
    #[test]
    fn a_version_1_frame_is_still_read() {
        let v1 = concat!(
            "505752",
            "01",
            "00",
            "00000080",
            "00000005",
            "6e6f727468",
            "0000000000000008",
            "00000002",
            "6e0a",
            "00000001",
            "0000000000000007",
            "0000000000000009",
            "000000016b",
            "0000000173",
            "0000000161",
            "000000027b7d",
            "0101010101010101010101010101010101010101010101010101010101010101",
            "0202020202020202020202020202020202020202020202020202020202020202",
        );
        let mut want = sample();
        want.entries.truncate(1);
        assert_eq!(decode(&hex::decode(v1).unwrap()).unwrap(), want);
    }

    #[test]
    fn a_deflated_batch_round_trips_and_bad_frames_are_refused() {
        let bytes = encode(&sample(), true);
        assert_eq!(bytes[4], FLAG_DEFLATE);
        assert_eq!(decode(&bytes).unwrap(), sample());
        let plain = encode(&sample(), false);
        assert_eq!(decode(&plain[..plain.len() - 1]), Err(WireError::Length));
        let mut v3 = plain.clone();
        v3[3] = 3;
        assert_eq!(decode(&v3), Err(WireError::Version(3)));
        let mut tag = plain.clone();
        // The first item's tag: after the header, site, head, checkpoint and count.
        tag[9 + 9 + 8 + 6 + 4] = 7;
        assert_eq!(decode(&tag), Err(WireError::Tag(7)));
        let mut flags = plain.clone();
        flags[4] = 0x80;
        assert_eq!(decode(&flags), Err(WireError::Flags(0x80)));
        assert_eq!(decode(b"XYZ\x01\x00\0\0\0\0"), Err(WireError::Magic));
        let mut huge = plain.clone();
        huge[5..9].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode(&huge), Err(WireError::TooLarge));
        let mut bomb = encode(&sample(), true);
        bomb[5..9].copy_from_slice(&10u32.to_be_bytes());
        assert_eq!(decode(&bomb), Err(WireError::Inflate));
    }
}
