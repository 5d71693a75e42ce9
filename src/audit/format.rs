//! The lines of an audit export (JSON Lines, docs/log-format.md): one header, then one line per
//! entry. Each line is written in one canonical form (fixed key order, no spaces), which the check
//! requires byte for byte, so an edit anywhere in a line is noticed.

use serde::{Deserialize, Serialize};

use crate::log::Entry;
use crate::log::entry::ChainVersion;

/// `format` of the header line.
pub const FORMAT: &str = "plantwire-audit-export";
/// Version of this format written; a change to any line's shape is a new number. Version 2
/// adds `chain` and `digest` to the lines of chain-v2 entries.
pub const VERSION: u32 = 2;
/// Version 1: every entry of chain v1, no `chain` or `digest` field (still checked).
pub const VERSION_1: u32 = 1;
/// `chain` of a line whose entry is hashed with chain v2 (chain v1 lines carry no `chain`).
pub const CHAIN_V2: u8 = 2;

/// Line 1: what the export holds. Every field is checked against the lines that follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub site: String,
    /// The first seq exported (the first entry line).
    pub from: u64,
    /// The last seq asked for.
    pub to: u64,
    /// The last seq exported: the checkpoint entry that signs the entry before it, `>= to`.
    pub end: u64,
    /// Only this stream's bodies are opened (checkpoints always are).
    pub stream: Option<String>,
}

/// Why an entry line carries no body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Withheld {
    /// After `to`, exported only to reach the checkpoint that signs the range.
    OutsideRange,
    /// Of another stream than the export's `stream`.
    OtherStream,
    /// Its payload was purged by retention; the entry's place in the chain is kept.
    Purged,
}

/// One entry. Exactly one of `body`, `body_base64` and `withheld` is present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryLine {
    pub seq: u64,
    pub ts: i64,
    pub kind: String,
    pub stream: String,
    pub author: String,
    /// Hex of the 32-byte hash of the entry before.
    pub prev: String,
    /// Hex of this entry's 32-byte hash.
    pub hash: String,
    /// `2` for an entry hashed with chain v2; absent for chain v1 (and in a version 1 export).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<u8>,
    /// Hex of a chain-v2 entry's content digest (what its hash is over, with body or without).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The body's bytes as a JSON string, when they are UTF-8 (every body plantwire writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The body's bytes in standard padded base64, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld: Option<Withheld>,
}

impl EntryLine {
    /// The line of an opened entry.
    pub fn opened(e: &Entry) -> Self {
        let (body, body_base64) = match std::str::from_utf8(&e.body) {
            Ok(s) => (Some(s.to_string()), None),
            Err(_) => {
                use base64::Engine;
                let b = base64::engine::general_purpose::STANDARD.encode(&e.body);
                (None, Some(b))
            }
        };
        Self {
            seq: e.seq,
            ts: e.ts,
            kind: e.kind.clone(),
            stream: e.stream.clone(),
            author: e.author.clone(),
            prev: hex::encode(e.prev),
            hash: hex::encode(e.hash),
            chain: (e.chain == ChainVersion::V2).then_some(CHAIN_V2),
            digest: (e.chain == ChainVersion::V2).then(|| hex::encode(e.content_digest())),
            body,
            body_base64,
            withheld: None,
        }
    }

    /// The line of an entry whose body is not exported.
    pub fn withheld(meta: Meta<'_>, why: Withheld) -> Self {
        Self {
            seq: meta.seq,
            ts: meta.ts,
            kind: meta.kind.to_string(),
            stream: meta.stream.to_string(),
            author: meta.author.to_string(),
            prev: hex::encode(meta.prev),
            hash: hex::encode(meta.hash),
            chain: meta.digest.map(|_| CHAIN_V2),
            digest: meta.digest.map(hex::encode),
            body: None,
            body_base64: None,
            withheld: Some(why),
        }
    }
}

/// The clear fields of an entry, as the record stores them.
#[derive(Debug, Clone, Copy)]
pub struct Meta<'a> {
    pub seq: u64,
    pub ts: i64,
    pub kind: &'a str,
    pub stream: &'a str,
    pub author: &'a str,
    pub prev: &'a [u8; 32],
    pub hash: &'a [u8; 32],
    /// A chain-v2 entry's content digest; `None` for chain v1.
    pub digest: Option<&'a [u8; 32]>,
}

/// Appends `line` in its canonical form and a newline.
pub fn write_line<T: Serialize>(out: &mut Vec<u8>, line: &T) -> Result<(), serde_json::Error> {
    serde_json::to_writer(&mut *out, line)?;
    out.push(b'\n');
    Ok(())
}
