//! The replication wire format v1: one batch of a site's entries (with the edge's newest signed
//! checkpoint) as the edge sends it, deflated; byte-exact and documented in `docs/replication.md`.

use std::sync::Arc;

use crate::log::Entry;

/// The first three bytes of every batch.
pub const MAGIC: &[u8; 3] = b"PWR";
/// The version of the frame and payload below.
pub const VERSION: u8 = 1;
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
    pub entries: Vec<Entry>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("not a replication batch (bad magic)")]
    Magic,
    #[error("unsupported batch version {0}")]
    Version(u8),
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

/// The uncompressed payload: `site | head u64 | checkpoint | count u32 | entries`, each entry
/// `seq u64 | ts i64 | kind | stream | author | body | prev [32] | hash [32]`; strings and
/// bytes as u32 big-endian length + bytes, an absent checkpoint as length 0.
fn payload(batch: &Batch) -> Vec<u8> {
    let mut out = Vec::new();
    put(&mut out, batch.site.as_bytes());
    out.extend_from_slice(&batch.head.to_be_bytes());
    put(
        &mut out,
        batch.checkpoint.as_deref().unwrap_or_default().as_bytes(),
    );
    out.extend_from_slice(&(batch.entries.len() as u32).to_be_bytes());
    for e in &batch.entries {
        out.extend_from_slice(&e.seq.to_be_bytes());
        out.extend_from_slice(&e.ts.to_be_bytes());
        put(&mut out, e.kind.as_bytes());
        put(&mut out, e.stream.as_bytes());
        put(&mut out, e.author.as_bytes());
        put(&mut out, &e.body);
        out.extend_from_slice(&e.prev);
        out.extend_from_slice(&e.hash);
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
    if bytes[3] != VERSION {
        return Err(WireError::Version(bytes[3]));
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
    // Each entry takes at least 96 bytes: the count cannot make us reserve more than the payload.
    let mut entries = Vec::with_capacity(count.min(payload.len() / 96));
    for _ in 0..count {
        let seq = r.u64()?;
        let ts = r.u64()? as i64;
        let kind = r.string()?;
        let stream = r.string()?;
        let author = r.string()?;
        let body = r.bytes()?.to_vec();
        let prev = r.hash()?;
        let hash = r.hash()?;
        entries.push(Entry {
            site: site_arc.clone(),
            seq,
            ts,
            kind,
            stream,
            author,
            body,
            prev,
            hash,
        });
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
            entries: vec![Entry {
                site,
                seq: 7,
                ts: 9,
                kind: "k".into(),
                stream: "s".into(),
                author: "a".into(),
                body: b"{}".to_vec(),
                prev: [1; 32],
                hash: [2; 32],
            }],
        }
    }

    /// The byte-exact frame of a fixed batch: if this fails, the wire format changed and needs
    /// a new version (and `docs/replication.md` a new section).
    #[test]
    fn the_uncompressed_frame_is_byte_exact() {
        let bytes = encode(&sample(), false);
        let golden = concat!(
            "505752",
            "01",
            "00",
            "00000080", // magic, version, flags, payload length
            "00000005",
            "6e6f727468",       // site "north"
            "0000000000000008", // the edge's head
            "00000002",
            "6e0a",     // checkpoint "n\n"
            "00000001", // one entry
            "0000000000000007",
            "0000000000000009", // seq, ts
            "000000016b",
            "0000000173",
            "0000000161",
            "000000027b7d", // kind, stream, author, body
            "0101010101010101010101010101010101010101010101010101010101010101", // prev
            "0202020202020202020202020202020202020202020202020202020202020202", // hash
        );
        assert_eq!(hex::encode(&bytes), golden);
        assert_eq!(decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn a_deflated_batch_round_trips_and_bad_frames_are_refused() {
        let bytes = encode(&sample(), true);
        assert_eq!(bytes[4], FLAG_DEFLATE);
        assert_eq!(decode(&bytes).unwrap(), sample());
        let plain = encode(&sample(), false);
        assert_eq!(decode(&plain[..plain.len() - 1]), Err(WireError::Length));
        let mut v2 = plain.clone();
        v2[3] = 2;
        assert_eq!(decode(&v2), Err(WireError::Version(2)));
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
