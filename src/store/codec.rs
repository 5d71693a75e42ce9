//! The versioned byte layout of stored log records (the values of the `log_seq_record` table).
//! Layout v1, all integers big-endian:
//!   version u8 = 1 | ts i64 (UTC µs) | kind: u8 len + bytes | stream: u16 len + bytes |
//!   author: u16 len + bytes | prev [32] | hash [32] | key_id u32 | nonce [12] | ciphertext (rest, incl. GCM tag)
//! Layout v2, an entry whose payload retention purged: v1 up to and including `hash`, nothing
//! after; a replicated stub (a class the site does not ship) is v2 with empty kind, stream, author.

use super::seal::Sealed;

pub const RECORD_VERSION: u8 = 1;
/// A record whose sealed body was removed by retention (the chain fields are kept).
pub const PURGED_RECORD_VERSION: u8 = 2;

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

/// The clear fields of a stored record, v1 or v2 (purged), without its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    pub ts: i64,
    pub kind: String,
    pub stream: String,
    pub author: String,
    pub prev: [u8; 32],
    pub hash: [u8; 32],
    /// True for a v2 record: the body is gone.
    pub purged: bool,
}

impl RecordMeta {
    /// Reads the clear fields of a v1 or v2 record; returns them and the length of that part.
    pub fn decode(bytes: &[u8]) -> Result<(Self, usize), CodecError> {
        let mut r = Reader { buf: bytes };
        let version = r.take(1)?[0];
        if version != RECORD_VERSION && version != PURGED_RECORD_VERSION {
            return Err(CodecError::Version(version));
        }
        let ts = i64::from_be_bytes(r.array::<8>()?);
        let kind_len = usize::from(r.take(1)?[0]);
        let kind = r.string(kind_len)?;
        let stream_len = usize::from(u16::from_be_bytes(r.array::<2>()?));
        let stream = r.string(stream_len)?;
        let author_len = usize::from(u16::from_be_bytes(r.array::<2>()?));
        let author = r.string(author_len)?;
        let prev = r.array::<32>()?;
        let hash = r.array::<32>()?;
        let purged = version == PURGED_RECORD_VERSION;
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
            purged,
        };
        Ok((meta, bytes.len() - r.buf.len()))
    }

    /// Whether this is a replicated stub: v2 with no kind (a real entry always has one).
    pub fn is_stub(&self) -> bool {
        self.purged && self.kind.is_empty()
    }

    /// The v2 record of a replicated stub: `ts`, `prev` and `hash`; kind, stream and author empty.
    pub fn stub_record(ts: i64, prev: &[u8; 32], hash: &[u8; 32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 8 + 1 + 2 + 2 + 64);
        out.push(PURGED_RECORD_VERSION);
        out.extend_from_slice(&ts.to_be_bytes());
        out.push(0);
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(prev);
        out.extend_from_slice(hash);
        out
    }

    /// The v2 (purged) record of a v1 record: its clear fields, no body.
    pub fn purged_record(v1: &[u8]) -> Result<Vec<u8>, CodecError> {
        let (meta, len) = Self::decode(v1)?;
        if meta.purged {
            return Err(CodecError::Purged);
        }
        let mut out = v1[..len].to_vec();
        out[0] = PURGED_RECORD_VERSION;
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
                + 80
                + self.sealed.ciphertext.len(),
        );
        out.push(RECORD_VERSION);
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
        out.extend_from_slice(&self.sealed.key_id.to_be_bytes());
        out.extend_from_slice(&self.sealed.nonce);
        out.extend_from_slice(&self.sealed.ciphertext);
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader { buf: bytes };
        let version = r.take(1)?[0];
        if version == PURGED_RECORD_VERSION {
            return Err(CodecError::Purged);
        }
        if version != RECORD_VERSION {
            return Err(CodecError::Version(version));
        }
        let ts = i64::from_be_bytes(r.array::<8>()?);
        let kind_len = usize::from(r.take(1)?[0]);
        let kind = r.string(kind_len)?;
        let stream_len = usize::from(u16::from_be_bytes(r.array::<2>()?));
        let stream = r.string(stream_len)?;
        let author_len = usize::from(u16::from_be_bytes(r.array::<2>()?));
        let author = r.string(author_len)?;
        let prev = r.array::<32>()?;
        let hash = r.array::<32>()?;
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
        bad[0] = 3;
        assert_eq!(LogRecord::decode(&bad), Err(CodecError::Version(3)));
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
        let v2 = RecordMeta::stub_record(5, &[1; 32], &[2; 32]);
        let (meta, len) = RecordMeta::decode(&v2).unwrap();
        assert_eq!(len, v2.len());
        assert!(meta.purged && meta.is_stub());
        assert_eq!((meta.ts, meta.prev, meta.hash), (5, [1; 32], [2; 32]));
        assert_eq!(LogRecord::decode(&v2), Err(CodecError::Purged));
    }
}
