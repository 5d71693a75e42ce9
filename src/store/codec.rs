//! The versioned byte layout of stored log records (the values of the `log_seq_record` table).
//! Layout v1, all integers big-endian:
//!   version u8 = 1 | ts i64 (UTC µs) | kind: u8 len + bytes | stream: u16 len + bytes |
//!   author: u16 len + bytes | prev [32] | hash [32] | key_id u32 | nonce [12] | ciphertext (rest, incl. GCM tag)
//! Layout v2, an entry whose payload retention purged: v1 up to and including `hash`, nothing
//! after; a replicated legacy stub (a class the site does not ship) is v2 with empty kind,
//! stream, author. v1 and v2 are entries hashed with chain v1 (`log::entry::canonical`).
//! Layout v3, a whole entry hashed with chain v2 (`log::entry::canonical_v2`): v1 with its
//! content digest [32] right after `hash`. Layout v4, a purged chain-v2 entry: v3 up to and
//! including the digest; a replicated chain-v2 stub is v4 with empty kind, stream, author.

use super::seal::Sealed;

/// A whole entry of chain v1.
pub const RECORD_VERSION: u8 = 1;
/// A record whose sealed body was removed by retention (the chain fields are kept), chain v1.
pub const PURGED_RECORD_VERSION: u8 = 2;
/// A whole entry of chain v2: v1's layout plus the content digest.
pub const RECORD_VERSION_V2: u8 = 3;
/// A purged entry (or a stub) of chain v2: the chain fields and the content digest.
pub const PURGED_RECORD_VERSION_V2: u8 = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("record is truncated")]
    Truncated,
    #[error("unknown record version {0}")]
    Version(u8),
    #[error("a field is not valid UTF-8")]
    Utf8,
    #[error("a field is too long to encode")]
    TooLong,
    #[error("the entry's payload was purged by retention")]
    Purged,
}

/// The clear fields of a stored record, any version, without its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    pub ts: i64,
    pub kind: String,
    pub stream: String,
    pub author: String,
    pub prev: [u8; 32],
    pub hash: [u8; 32],
    /// The content digest of a chain-v2 entry (records v3 and v4); `None` for chain v1.
    pub digest: Option<[u8; 32]>,
    /// True for a v2 or v4 record: the body is gone.
    pub purged: bool,
}

impl RecordMeta {
    /// Reads the clear fields of a record of any version; returns them and the length of that
    /// part (for a whole entry, where its sealed body starts).
    pub fn decode(bytes: &[u8]) -> Result<(Self, usize), CodecError> {
        let mut r = Reader { buf: bytes };
        let version = r.take(1)?[0];
        let (chain_v2, purged) = match version {
            RECORD_VERSION => (false, false),
            PURGED_RECORD_VERSION => (false, true),
            RECORD_VERSION_V2 => (true, false),
            PURGED_RECORD_VERSION_V2 => (true, true),
            other => return Err(CodecError::Version(other)),
        };
        let ts = i64::from_be_bytes(r.array::<8>()?);
        let kind_len = usize::from(r.take(1)?[0]);
        let kind = r.string(kind_len)?;
        let stream_len = usize::from(u16::from_be_bytes(r.array::<2>()?));
        let stream = r.string(stream_len)?;
        let author_len = usize::from(u16::from_be_bytes(r.array::<2>()?));
        let author = r.string(author_len)?;
        let prev = r.array::<32>()?;
        let hash = r.array::<32>()?;
        let digest = if chain_v2 {
            Some(r.array::<32>()?)
        } else {
            None
        };
        if purged && !r.buf.is_empty() {
            return Err(CodecError::Version(version));
        }
        let meta = Self {
            ts,
            kind,
            stream,
            author,
            prev,
            hash,
            digest,
            purged,
        };
        Ok((meta, bytes.len() - r.buf.len()))
    }

    /// Whether this is a replicated stub: purged with no kind (a real entry always has one).
    pub fn is_stub(&self) -> bool {
        self.purged && self.kind.is_empty()
    }

    /// Whether this is a legacy stub: a stub of a chain-v1 entry, whose hash cannot be
    /// recomputed (a chain-v2 stub keeps the digest its hash is over).
    pub fn is_legacy_stub(&self) -> bool {
        self.is_stub() && self.digest.is_none()
    }

    /// The record of a replicated stub: `ts`, `prev` and `hash`, and for a chain-v2 entry its
    /// content digest (v4, else v2); kind, stream and author empty.
    pub fn stub_record(
        ts: i64,
        prev: &[u8; 32],
        hash: &[u8; 32],
        digest: Option<&[u8; 32]>,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 8 + 1 + 2 + 2 + 96);
        out.push(if digest.is_some() {
            PURGED_RECORD_VERSION_V2
        } else {
            PURGED_RECORD_VERSION
        });
        out.extend_from_slice(&ts.to_be_bytes());
        out.push(0);
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(prev);
        out.extend_from_slice(hash);
        if let Some(d) = digest {
            out.extend_from_slice(d);
        }
        out
    }

    /// The purged record of a whole one: its clear fields (and digest), no body; v1 becomes
    /// v2, v3 becomes v4.
    pub fn purged_record(whole: &[u8]) -> Result<Vec<u8>, CodecError> {
        let (meta, len) = Self::decode(whole)?;
        if meta.purged {
            return Err(CodecError::Purged);
        }
        let mut out = whole[..len].to_vec();
        out[0] = if meta.digest.is_some() {
            PURGED_RECORD_VERSION_V2
        } else {
            PURGED_RECORD_VERSION
        };
        Ok(out)
    }
}

/// One stored log entry: the clear metadata, the chain links and the sealed body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub ts: i64,
    pub kind: String,
    pub stream: String,
    pub author: String,
    pub prev: [u8; 32],
    pub hash: [u8; 32],
    /// The content digest of a chain-v2 entry (record v3); `None` writes a chain-v1 record (v1).
    pub digest: Option<[u8; 32]>,
    pub sealed: Sealed,
}

impl LogRecord {
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(
            1 + 8
                + 5
                + self.kind.len()
                + self.stream.len()
                + self.author.len()
                + 112
                + self.sealed.ciphertext.len(),
        );
        out.push(if self.digest.is_some() {
            RECORD_VERSION_V2
        } else {
            RECORD_VERSION
        });
        out.extend_from_slice(&self.ts.to_be_bytes());
        let kind_len = u8::try_from(self.kind.len()).map_err(|_| CodecError::TooLong)?;
        out.push(kind_len);
        out.extend_from_slice(self.kind.as_bytes());
        for field in [&self.stream, &self.author] {
            let len = u16::try_from(field.len()).map_err(|_| CodecError::TooLong)?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out.extend_from_slice(&self.prev);
        out.extend_from_slice(&self.hash);
        if let Some(d) = &self.digest {
            out.extend_from_slice(d);
        }
        out.extend_from_slice(&self.sealed.key_id.to_be_bytes());
        out.extend_from_slice(&self.sealed.nonce);
        out.extend_from_slice(&self.sealed.ciphertext);
        Ok(out)
    }

    /// Decodes a whole record (v1 or v3); a purged one (v2, v4) is `CodecError::Purged`.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let (meta, len) = RecordMeta::decode(bytes)?;
        if meta.purged {
            return Err(CodecError::Purged);
        }
        let mut r = Reader { buf: &bytes[len..] };
        let RecordMeta {
            ts,
            kind,
            stream,
            author,
            prev,
            hash,
            digest,
            ..
        } = meta;
        let key_id = u32::from_be_bytes(r.array::<4>()?);
        let nonce = r.array::<12>()?;
        if r.buf.len() < 16 {
            return Err(CodecError::Truncated);
        }
        Ok(Self {
            ts,
            kind,
            stream,
            author,
            prev,
            hash,
            digest,
            sealed: Sealed {
                key_id,
                nonce,
                ciphertext: r.buf.to_vec(),
            },
        })
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(CodecError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn string(&mut self, n: usize) -> Result<String, CodecError> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| CodecError::Utf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_rejects_truncation() {
        let rec = LogRecord {
            ts: 1_700_000_000_000_000,
            kind: "event".into(),
            stream: "events/pump".into(),
            author: "device:pump".into(),
            prev: [1; 32],
            hash: [2; 32],
            digest: None,
            sealed: Sealed {
                key_id: 9,
                nonce: [3; 12],
                ciphertext: vec![4; 40],
            },
        };
        let bytes = rec.encode().unwrap();
        assert_eq!(LogRecord::decode(&bytes).unwrap(), rec);
        assert_eq!(
            LogRecord::decode(&bytes[..bytes.len() - 30]),
            Err(CodecError::Truncated)
        );
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert_eq!(LogRecord::decode(&bad), Err(CodecError::Version(9)));
    }

    #[test]
    fn a_purged_record_keeps_the_clear_fields_and_no_body() {
        let rec = LogRecord {
            ts: 5,
            kind: "event".into(),
            stream: "events/pump".into(),
            author: "device:pump".into(),
            prev: [1; 32],
            hash: [2; 32],
            digest: None,
            sealed: Sealed {
                key_id: 9,
                nonce: [3; 12],
                ciphertext: vec![4; 40],
            },
        };
        let v1 = rec.encode().unwrap();
        let v2 = RecordMeta::purged_record(&v1).unwrap();
        assert_eq!(v2[0], PURGED_RECORD_VERSION);
        assert_eq!(v2.len(), v1.len() - 4 - 12 - 40);
        assert_eq!(LogRecord::decode(&v2), Err(CodecError::Purged));
        let (meta, _) = RecordMeta::decode(&v2).unwrap();
        assert!(meta.purged);
        assert_eq!((meta.ts, meta.prev, meta.hash), (5, [1; 32], [2; 32]));
        assert_eq!(RecordMeta::purged_record(&v2), Err(CodecError::Purged));
        let (meta, _) = RecordMeta::decode(&v1).unwrap();
        assert!(!meta.purged);
    }

    #[test]
    fn a_stub_record_is_a_purged_record_without_kind() {
        let v2 = RecordMeta::stub_record(5, &[1; 32], &[2; 32], None);
        let (meta, len) = RecordMeta::decode(&v2).unwrap();
        assert_eq!(len, v2.len());
        assert!(meta.purged && meta.is_stub() && meta.is_legacy_stub());
        assert_eq!((meta.ts, meta.prev, meta.hash), (5, [1; 32], [2; 32]));
        assert_eq!(LogRecord::decode(&v2), Err(CodecError::Purged));
        let v4 = RecordMeta::stub_record(5, &[1; 32], &[2; 32], Some(&[7; 32]));
        assert_eq!((v4[0], v4.len()), (PURGED_RECORD_VERSION_V2, v2.len() + 32));
        let (meta, _) = RecordMeta::decode(&v4).unwrap();
        assert!(meta.is_stub() && !meta.is_legacy_stub());
        assert_eq!(meta.digest, Some([7; 32]));
        assert_eq!(LogRecord::decode(&v4), Err(CodecError::Purged));
    }

    /// A chain-v2 entry is record v3 (v1 plus the content digest after `hash`); purged it is
    /// v4, keeping the digest. The v3 bytes of a fixed record, byte for byte.
    #[test]
    fn a_chain_v2_record_keeps_its_digest_whole_and_purged() {
        let rec = LogRecord {
            ts: 5,
            kind: "k".into(),
            stream: "s".into(),
            author: "a".into(),
            prev: [1; 32],
            hash: [2; 32],
            digest: Some([6; 32]),
            sealed: Sealed {
                key_id: 9,
                nonce: [3; 12],
                ciphertext: vec![4; 16],
            },
        };
        let v3 = rec.encode().unwrap();
        let mut want = vec![RECORD_VERSION_V2];
        want.extend_from_slice(&5i64.to_be_bytes());
        want.extend_from_slice(&[1, b'k', 0, 1, b's', 0, 1, b'a']);
        want.extend_from_slice(&[1; 32]);
        want.extend_from_slice(&[2; 32]);
        want.extend_from_slice(&[6; 32]);
        want.extend_from_slice(&9u32.to_be_bytes());
        want.extend_from_slice(&[3; 12]);
        want.extend_from_slice(&[4; 16]);
        assert_eq!(v3, want);
        assert_eq!(LogRecord::decode(&v3).unwrap(), rec);
        let v4 = RecordMeta::purged_record(&v3).unwrap();
        assert_eq!(v4[0], PURGED_RECORD_VERSION_V2);
        assert_eq!(v4.len(), v3.len() - 4 - 12 - 16);
        let (meta, len) = RecordMeta::decode(&v4).unwrap();
        assert_eq!(len, v4.len());
        assert!(meta.purged && !meta.is_stub());
        assert_eq!((meta.kind.as_str(), meta.digest), ("k", Some([6; 32])));
        assert_eq!(LogRecord::decode(&v4), Err(CodecError::Purged));
        assert_eq!(
            LogRecord::decode(&v3[..v3.len() - 20]),
            Err(CodecError::Truncated)
        );
    }
}
