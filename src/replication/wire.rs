//! The replication wire format v3 (v1 and v2 still read): one batch of a site's entries and
//! hash-only stubs with the edge's newest signed checkpoint, deflated; byte-exact,
//! `docs/replication.md`. It never carries a whole entry's hash: the receiver recomputes them.

use std::sync::Arc;

use crate::log::Entry;
use crate::log::entry::{ChainVersion, hash_v2};

/// The first three bytes of every batch.
pub const MAGIC: &[u8; 3] = b"PWR";
/// The version of the frame and payload below (what is written).
pub const VERSION: u8 = 3;
/// Version 2: every item with its seq, ts, prev and hash in full (still read).
pub const VERSION_2: u8 = 2;
/// Version 1: every item a whole entry, no tag byte (still read: older edges ship to a newer HQ).
pub const VERSION_1: u8 = 1;
/// Item tag of a whole entry hashed with chain v1.
const TAG_ENTRY: u8 = 0;
/// Item tag of a legacy stub (of a chain-v1 entry): its hash cannot be recomputed, so it is
/// carried (its class is not shipped).
const TAG_STUB: u8 = 1;
/// Item tag of a whole entry hashed with chain v2 (same fields as tag 0).
const TAG_ENTRY_V2: u8 = 2;
/// Item tag of a stub of a chain-v2 entry: its content digest; the receiver recomputes its hash.
/// A reader that does not know tags 2 and 3 refuses the batch with `WireError::Tag` (an HQ
/// older than chain v2: upgrade HQ before its edges).
const TAG_STUB_V2: u8 = 3;
/// Codec (the flags byte): the body is the payload as it is.
pub const FLAG_RAW: u8 = 0x00;
/// Codec (the flags byte): the body is raw deflate (RFC 1951) of the payload.
pub const FLAG_DEFLATE: u8 = 0x01;
/// The deflate level the edge writes (levels 6 and 9 measured, docs/benchmarks.md).
const DEFLATE_LEVEL: u8 = 6;
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
        "unsupported batch version {0}: this side reads versions 1, 2 and 3 (upgrade HQ before its edges)"
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
    #[error("a varint in the batch is longer than 10 bytes or overflows 64 bits")]
    Varint,
    #[error("the batch's seqs run past the largest seq")]
    SeqOverflow,
    #[error(
        "the batch's last hash does not match its entries chained from its first prev: the batch was altered or its entries are not the ones the edge hashed"
    )]
    LastHash,
    #[error(
        "the stub at seq {0} does not link to the item before it as recomputed: the batch was altered"
    )]
    StubPrev(u64),
    #[error("trailing bytes after the last entry")]
    Trailing,
}

impl WireError {
    /// The stable refusal code HQ answers with (400).
    pub fn code(&self) -> &'static str {
        match self {
            Self::LastHash => "bad_last_hash",
            Self::StubPrev(_) => "broken_link",
            _ => "bad_batch",
        }
    }
}

/// Encodes `batch` as version 3, deflated when `compress` (level 6). The items must be the
/// consecutive seqs of a chain (each `prev` the hash before it), as `edge::next_batch` reads
/// them: the receiver recomputes every whole entry's hash from the first `prev`.
pub fn encode(batch: &Batch, compress: bool) -> Vec<u8> {
    frame(VERSION, &payload(batch), compress)
}

/// Encodes `batch` as version 2 (what edges before v3 wrote): kept for the tests that show
/// HQ still reads it, and for the bench's comparison.
pub fn encode_v2(batch: &Batch, compress: bool) -> Vec<u8> {
    frame(VERSION_2, &payload_v2(batch), compress)
}

fn frame(version: u8, payload: &[u8], compress: bool) -> Vec<u8> {
    let (flags, body) = if compress {
        (
            FLAG_DEFLATE,
            miniz_oxide::deflate::compress_to_vec(payload, DEFLATE_LEVEL),
        )
    } else {
        (FLAG_RAW, payload.to_vec())
    };
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.push(version);
    out.push(flags);
    // Payloads are bounded by MAX_PAYLOAD (batch size times the entry limits).
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The version 3 payload; `varint` is unsigned LEB128 (7 bits a byte, low first, at most 10
/// bytes), `str`/`bytes` a varint length then the bytes:
/// `site str | head varint | checkpoint str | count varint`, then when count > 0:
/// `first seq varint | first prev [32] | count × item | last hash [32]`. An item is
/// `tag u8 | ts delta varint` (from the item before; the first from 0; wrapping u64) then, for
/// tag 0 (an entry hashed with chain v1) and tag 2 (chain v2), `kind str | stream str | author
/// str | body bytes`; for tag 1 (a legacy stub) `prev [32] | hash [32]` (its hash cannot be
/// recomputed; its prev binds what precedes it); for tag 3 (a chain-v2 stub) `digest [32]`.
/// Seqs run on from the first; each entry's `prev` is the hash of the item before.
fn payload(batch: &Batch) -> Vec<u8> {
    let mut out = Vec::new();
    put_str(&mut out, batch.site.as_bytes());
    put_varint(&mut out, batch.head);
    put_str(
        &mut out,
        batch.checkpoint.as_deref().unwrap_or_default().as_bytes(),
    );
    put_varint(&mut out, batch.entries.len() as u64);
    let (Some(first), Some(last)) = (batch.entries.first(), batch.entries.last()) else {
        return out;
    };
    put_varint(&mut out, first.seq());
    out.extend_from_slice(&first.prev());
    let mut ts = 0i64;
    for item in &batch.entries {
        out.push(tag(item));
        put_varint(&mut out, (item.ts() as u64).wrapping_sub(ts as u64));
        ts = item.ts();
        match item {
            Shipped::Entry(e) => {
                put_str(&mut out, e.kind.as_bytes());
                put_str(&mut out, e.stream.as_bytes());
                put_str(&mut out, e.author.as_bytes());
                put_str(&mut out, &e.body);
            }
            Shipped::Stub(Stub {
                digest: Some(d), ..
            }) => out.extend_from_slice(d),
            Shipped::Stub(s) => {
                out.extend_from_slice(&s.prev);
                out.extend_from_slice(&s.hash);
            }
        }
    }
    out.extend_from_slice(&last.hash());
    out
}

/// The item tag of `item` (the same in versions 2 and 3).
fn tag(item: &Shipped) -> u8 {
    match item {
        Shipped::Entry(e) if e.chain == ChainVersion::V1 => TAG_ENTRY,
        Shipped::Entry(_) => TAG_ENTRY_V2,
        Shipped::Stub(s) if s.verifiable() => TAG_STUB_V2,
        Shipped::Stub(_) => TAG_STUB,
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// The version 2 payload: `site | head u64 | checkpoint | count u32 | items`, each item
/// `tag u8 | seq u64 | ts i64 | ...`: an entry (tag 0 chain v1, tag 2 chain v2) goes on `kind |
/// stream | author | body | prev [32] | hash [32]`, a legacy stub (tag 1) on `prev [32] | hash
/// [32]`, a chain-v2 stub (tag 3) on `prev [32] | digest [32]`; strings and bytes as u32
/// big-endian length + bytes, an absent checkpoint as length 0.
fn payload_v2(batch: &Batch) -> Vec<u8> {
    let mut out = Vec::new();
    put(&mut out, batch.site.as_bytes());
    out.extend_from_slice(&batch.head.to_be_bytes());
    put(
        &mut out,
        batch.checkpoint.as_deref().unwrap_or_default().as_bytes(),
    );
    out.extend_from_slice(&(batch.entries.len() as u32).to_be_bytes());
    for item in &batch.entries {
        out.push(tag(item));
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

/// Decodes a batch of version 1, 2 or 3; every bound is checked before anything is allocated on
/// its say-so. A version 3 batch comes back linked: each whole entry's hash recomputed from the
/// batch's first prev, and the last one checked against the batch's last hash.
pub fn decode(bytes: &[u8]) -> Result<Batch, WireError> {
    if bytes.len() < HEADER_LEN {
        return Err(WireError::Truncated);
    }
    if &bytes[..3] != MAGIC {
        return Err(WireError::Magic);
    }
    let version = bytes[3];
    if !matches!(version, VERSION | VERSION_2 | VERSION_1) {
        return Err(WireError::Version(version));
    }
    let flags = bytes[4];
    if !matches!(flags, FLAG_RAW | FLAG_DEFLATE) {
        return Err(WireError::Flags(flags));
    }
    let len = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(WireError::TooLarge);
    }
    let body = &bytes[HEADER_LEN..];
    let inflated;
    let payload = if flags == FLAG_DEFLATE {
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
    let batch = if version == VERSION {
        decode_v3(&mut r)?
    } else {
        decode_v2(&mut r, version)?
    };
    if !r.b.is_empty() {
        return Err(WireError::Trailing);
    }
    Ok(batch)
}

fn decode_v3(r: &mut Reader<'_>) -> Result<Batch, WireError> {
    let site = r.str_v()?;
    let head = r.varint()?;
    let checkpoint = Some(r.str_v()?).filter(|c| !c.is_empty());
    let count = r.varint()?;
    let mut batch = Batch {
        site,
        head,
        checkpoint,
        entries: Vec::new(),
    };
    if count == 0 {
        return Ok(batch);
    }
    // Each item takes at least 2 bytes: the count cannot make us reserve more than the payload.
    let count = usize::try_from(count).map_err(|_| WireError::Truncated)?;
    batch.entries.reserve(count.min(r.b.len() / 2));
    let site_arc: Arc<str> = batch.site.as_str().into();
    let mut seq = r.varint()?;
    let mut prev = r.hash()?;
    let mut ts = 0i64;
    for i in 0..count {
        if i > 0 {
            seq = seq.checked_add(1).ok_or(WireError::SeqOverflow)?;
        }
        let tag = r.take(1)?[0];
        ts = (ts as u64).wrapping_add(r.varint()?) as i64;
        let item = match tag {
            TAG_ENTRY | TAG_ENTRY_V2 => {
                let mut e = Entry {
                    site: site_arc.clone(),
                    seq,
                    ts,
                    kind: r.str_v()?,
                    stream: r.str_v()?,
                    author: r.str_v()?,
                    body: r.bytes_v()?.to_vec(),
                    prev,
                    hash: [0; 32],
                    chain: if tag == TAG_ENTRY {
                        ChainVersion::V1
                    } else {
                        ChainVersion::V2
                    },
                };
                e.hash = e.computed_hash();
                Shipped::Entry(e)
            }
            TAG_STUB => {
                if r.hash()? != prev {
                    return Err(WireError::StubPrev(seq));
                }
                Shipped::Stub(Stub {
                    seq,
                    ts,
                    prev,
                    hash: r.hash()?,
                    digest: None,
                })
            }
            TAG_STUB_V2 => {
                let digest = r.hash()?;
                Shipped::Stub(Stub {
                    seq,
                    ts,
                    prev,
                    hash: hash_v2(&prev, &batch.site, seq, ts, &digest),
                    digest: Some(digest),
                })
            }
            other => return Err(WireError::Tag(other)),
        };
        prev = item.hash();
        batch.entries.push(item);
    }
    if r.hash()? != prev {
        return Err(WireError::LastHash);
    }
    Ok(batch)
}

fn decode_v2(r: &mut Reader<'_>, version: u8) -> Result<Batch, WireError> {
    let site = r.string()?;
    let head = r.u64()?;
    let checkpoint = Some(r.string()?).filter(|c| !c.is_empty());
    let count = r.u32()? as usize;
    let site_arc: Arc<str> = site.as_str().into();
    // Each item takes at least 81 bytes: the count cannot make us reserve more than the payload.
    let mut entries = Vec::with_capacity(count.min(r.b.len() / 81));
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

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(WireError::Varint);
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(WireError::Varint)
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
        utf8(self.bytes()?)
    }

    fn bytes_v(&mut self) -> Result<&'a [u8], WireError> {
        let n = usize::try_from(self.varint()?).map_err(|_| WireError::Truncated)?;
        self.take(n)
    }

    fn str_v(&mut self) -> Result<String, WireError> {
        utf8(self.bytes_v()?)
    }
}

fn utf8(b: &[u8]) -> Result<String, WireError> {
    std::str::from_utf8(b)
        .map(str::to_string)
        .map_err(|_| WireError::Utf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The v1/v2 sample: hashes as given (v2 carries them, nothing recomputes them).
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

    /// The v3 sample: the same items chained for real (the entry's hash is SHA-256 over it).
    fn sample_v3() -> Batch {
        let mut b = sample();
        let Shipped::Entry(e) = &mut b.entries[0] else {
            unreachable!()
        };
        e.hash = e.computed_hash();
        let hash = e.hash;
        let Shipped::Stub(s) = &mut b.entries[1] else {
            unreachable!()
        };
        s.prev = hash;
        b
    }

    /// Version 3 with chain v2: a whole chain-v2 entry and a chain-v2 stub (only its digest on
    /// the wire) round-trip, the stub's hash recomputed from the entry's; a changed digest no
    /// longer reaches the batch's last hash.
    #[test]
    fn v3_carries_chain_v2_entries_and_stubs_by_digest() {
        let mut b = sample();
        let Shipped::Entry(e) = &mut b.entries[0] else {
            unreachable!()
        };
        e.chain = ChainVersion::V2;
        e.hash = e.computed_hash();
        let prev = e.hash;
        let digest = [4u8; 32];
        b.entries[1] = Shipped::Stub(Stub {
            seq: 8,
            ts: 10,
            prev,
            hash: hash_v2(&prev, "north", 8, 10, &digest),
            digest: Some(digest),
        });
        let bytes = encode(&b, false);
        let tag_at = 9 + 6 + 1 + 3 + 1 + 1 + 32;
        assert_eq!(bytes[tag_at], TAG_ENTRY_V2);
        assert_eq!(decode(&bytes).unwrap(), b);
        let legacy = encode(&sample_v3(), false);
        assert_eq!(
            bytes.len() + 32,
            legacy.len(),
            "a chain-v2 stub carries only its digest"
        );
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 33] ^= 1;
        assert_eq!(decode(&bad), Err(WireError::LastHash));
    }

    /// The byte-exact v3 frame of a fixed batch: if this fails, the wire format changed and
    /// needs a new version (and `docs/replication.md` a new section).
    #[test]
    fn the_v3_frame_is_byte_exact() {
        let bytes = encode(&sample_v3(), false);
        let golden = concat!(
            "505752",
            "03",
            "00",
            "00000099", // magic, version, flags, payload length
            "05",
            "6e6f727468", // site "north"
            "08",         // the edge's head
            "02",
            "6e0a", // checkpoint "n\n"
            "02",   // two items
            "07",   // the first seq
            "0101010101010101010101010101010101010101010101010101010101010101", // first prev
            "00",
            "09", // an entry, ts 9 (delta from 0)
            "016b",
            "0173",
            "0161",
            "027b7d", // kind, stream, author, body
            "01",
            "01", // a stub, ts 10 (delta 1)
            "f5a2bd7c6d2d2e78b8c58725941771a434ce46e6f85a748e4b30eced2d5c3795", // its prev
            "0303030303030303030303030303030303030303030303030303030303030303", // its hash
            "0303030303030303030303030303030303030303030303030303030303030303", // last hash
        );
        assert_eq!(hex::encode(&bytes), golden);
        assert_eq!(decode(&bytes).unwrap(), sample_v3());
    }

    /// The v2 frame edges before v3 wrote is still read, hashes as carried.
    #[test]
    fn a_version_2_frame_is_still_read() {
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
        assert_eq!(hex::encode(encode_v2(&sample(), false)), golden);
        assert_eq!(decode(&hex::decode(golden).unwrap()).unwrap(), sample());
        let deflated = encode_v2(&sample(), true);
        assert_eq!(decode(&deflated).unwrap(), sample());
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
        let bytes = encode_v2(&batch, false);
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

    /// An empty batch (the edge's hello) carries no first seq, prev or last hash.
    #[test]
    fn an_empty_v3_batch_round_trips() {
        let mut b = sample_v3();
        b.entries.clear();
        b.checkpoint = None;
        let bytes = encode(&b, false);
        assert_eq!(hex::encode(&bytes[9..]), "056e6f727468080000");
        assert_eq!(decode(&bytes).unwrap(), b);
        assert_eq!(decode(&encode(&b, true)).unwrap(), b);
    }

    #[test]
    fn a_deflated_v3_batch_round_trips_and_every_truncation_is_refused() {
        let bytes = encode(&sample_v3(), true);
        assert_eq!(bytes[4], FLAG_DEFLATE);
        assert_eq!(decode(&bytes).unwrap(), sample_v3());
        let plain = encode(&sample_v3(), false);
        for cut in 0..plain.len() {
            assert!(decode(&plain[..cut]).is_err(), "cut at {cut}");
            // A shorter payload with a matching header length: truncated inside the payload.
            let mut short = plain[..cut.max(HEADER_LEN)].to_vec();
            let n = (short.len() - HEADER_LEN) as u32;
            short[5..9].copy_from_slice(&n.to_be_bytes());
            assert_eq!(decode(&short), Err(WireError::Truncated), "cut at {cut}");
        }
        let mut trailing = plain.clone();
        trailing.push(0);
        trailing[5..9].copy_from_slice(&((plain.len() - HEADER_LEN + 1) as u32).to_be_bytes());
        assert_eq!(decode(&trailing), Err(WireError::Trailing));
    }

    /// The last hash is what binds a v3 batch: a changed body, a changed stub hash or a changed
    /// first prev gives another last hash, and the batch is refused as `bad_last_hash`.
    #[test]
    fn a_v3_batch_whose_last_hash_does_not_match_is_refused() {
        let plain = encode(&sample_v3(), false);
        let body_at = plain.len() - 32 - 66 - 1; // the body's last byte, '}'
        assert_eq!(plain[body_at], b'}');
        let mut body = plain.clone();
        body[body_at] = b']';
        let mut first_prev = plain.clone();
        first_prev[9 + 6 + 1 + 3 + 1 + 1] ^= 1;
        let mut last = plain.clone();
        let n = last.len();
        last[n - 1] ^= 1;
        let mut stub = plain.clone();
        stub[n - 33] ^= 1;
        // A changed stub hash: the batch's last hash (the stub's own) no longer matches.
        for bad in [last, stub] {
            let err = decode(&bad).unwrap_err();
            assert_eq!(err, WireError::LastHash);
            assert_eq!(err.code(), "bad_last_hash");
        }
        // A changed entry (body or first prev) before a stub: the stub's prev, the edge's
        // hash of that entry, no longer matches the one recomputed.
        for bad in [body, first_prev] {
            let err = decode(&bad).unwrap_err();
            assert_eq!(err, WireError::StubPrev(8));
            assert_eq!(err.code(), "broken_link");
        }
    }

    /// Unknown tags, flags, versions and magic are refused; an entry's tag changed from chain v1
    /// to v2 no longer links to what follows; no length makes the receiver inflate past its
    /// bound.
    #[test]
    fn bad_v3_frames_are_refused() {
        let plain = encode(&sample_v3(), false);
        // The first item's tag: after the header, site, head, checkpoint, count, seq and prev.
        let tag_at = 9 + 6 + 1 + 3 + 1 + 1 + 32;
        assert_eq!(plain[tag_at], TAG_ENTRY);
        for tag in [4, 7, 255] {
            let mut t = plain.clone();
            t[tag_at] = tag;
            assert_eq!(decode(&t), Err(WireError::Tag(tag)));
        }
        // Read as chain v2, the entry hashes differently: the stub after it no longer links.
        let mut v2_tag = plain.clone();
        v2_tag[tag_at] = TAG_ENTRY_V2;
        assert_eq!(decode(&v2_tag), Err(WireError::StubPrev(8)));
        let mut v4 = plain.clone();
        v4[3] = 4;
        assert_eq!(decode(&v4), Err(WireError::Version(4)));
        for f in [0x02, 0x03, 0x80] {
            let mut flags = plain.clone();
            flags[4] = f;
            assert_eq!(decode(&flags), Err(WireError::Flags(f)));
        }
        assert_eq!(decode(b"XYZ\x03\x00\0\0\0\0"), Err(WireError::Magic));
        let mut huge = plain.clone();
        huge[5..9].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode(&huge), Err(WireError::TooLarge));
        let mut bomb = encode(&sample_v3(), true);
        bomb[5..9].copy_from_slice(&10u32.to_be_bytes());
        assert_eq!(decode(&bomb), Err(WireError::Inflate));
        let mut r = Reader { b: &[0xff; 11] };
        assert_eq!(r.varint(), Err(WireError::Varint));
        let mut r = Reader {
            b: &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
        };
        assert_eq!(r.varint(), Err(WireError::Varint));
        let mut r = Reader {
            b: &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        };
        assert_eq!(r.varint(), Ok(u64::MAX));
    }

    /// Timestamps that go back (never in a real log) and the extremes still round-trip.
    #[test]
    fn ts_deltas_wrap_without_loss() {
        let mut b = sample_v3();
        if let Shipped::Stub(s) = &mut b.entries[1] {
            s.ts = i64::MIN;
        }
        assert_eq!(decode(&encode(&b, false)).unwrap(), b);
    }
}
