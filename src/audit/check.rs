//! The offline check of an audit export (`plantwire audit verify --file`): needs only the export
//! and the site's public key, never a store or data key. It stops at the first line that fails.

use std::io::BufRead;

use serde::Serialize;

use super::format::{self, EntryLine, Header, Withheld};
use super::key::SiteKey;
use crate::log::checkpoint::{self, KIND_CHECKPOINT};
use crate::log::checkpointer::CheckpointBody;
use crate::log::entry::{GENESIS, canonical, chain_hash, content_digest, hash_v2};

/// Longest line read (a 1 MiB body escaped as JSON stays well below).
const MAX_LINE: u64 = 16 << 20;

/// What a good export holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub site: String,
    pub from: u64,
    pub to: u64,
    pub end: u64,
    pub stream: Option<String>,
    pub entries: u64,
    /// Entries whose body was exported and re-hashed.
    pub opened: u64,
    /// Entries exported without a body (chain v1: checked by their links only; chain v2: also
    /// re-hashed from their digest).
    pub withheld: u64,
    pub checkpoints: u64,
    /// The highest seq a checkpoint signs.
    pub signed_to: u64,
    /// Runs of entries whose payload retention purged: `[first, last]` seqs.
    pub purged: Vec<[u64; 2]>,
}

/// The first line that does not hold, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("line {line}: {reason}")]
pub struct CheckFailure {
    pub line: u64,
    pub reason: String,
}

fn fail<T>(line: u64, reason: impl Into<String>) -> Result<T, CheckFailure> {
    Err(CheckFailure {
        line,
        reason: reason.into(),
    })
}

/// Reads one line (without its newline); `None` at the end.
fn next_line(input: &mut dyn BufRead, n: u64) -> Result<Option<Vec<u8>>, CheckFailure> {
    let mut buf = Vec::new();
    let read = std::io::Read::take(&mut *input, MAX_LINE)
        .read_until(b'\n', &mut buf)
        .or_else(|e| fail(n, format!("cannot read: {e}")))?;
    if read == 0 {
        return Ok(None);
    }
    if buf.pop() != Some(b'\n') {
        return fail(n, "the line does not end with a newline (cut short?)");
    }
    Ok(Some(buf))
}

/// Parses `raw` as `T` and requires it to be exactly `T`'s canonical form.
fn parse_canonical<T>(raw: &[u8], n: u64) -> Result<T, CheckFailure>
where
    T: serde::de::DeserializeOwned + Serialize,
{
    let v: T =
        serde_json::from_slice(raw).or_else(|e| fail(n, format!("not a valid line: {e}")))?;
    let mut again = Vec::with_capacity(raw.len() + 1);
    format::write_line(&mut again, &v).or_else(|e| fail(n, e.to_string()))?;
    if again[..again.len() - 1] != *raw {
        return fail(
            n,
            "the line is not in the export's canonical form (altered)",
        );
    }
    Ok(v)
}

fn hash32(s: &str, what: &str, n: u64) -> Result<[u8; 32], CheckFailure> {
    hex::decode(s)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map_or_else(|| fail(n, format!("{what} is not 64 hex digits")), Ok)
}

/// Checks the export read from `input` against `key`.
pub fn check(input: &mut dyn BufRead, key: &SiteKey) -> Result<CheckReport, CheckFailure> {
    let Some(raw) = next_line(input, 1)? else {
        return fail(1, "the export is empty");
    };
    let header: Header = parse_canonical(&raw, 1)?;
    if header.format != format::FORMAT
        || (header.version != format::VERSION && header.version != format::VERSION_1)
    {
        return fail(
            1,
            format!(
                "not a {} version {} or {} export",
                format::FORMAT,
                format::VERSION_1,
                format::VERSION
            ),
        );
    }
    if header.site != key.site() {
        return fail(
            1,
            format!(
                "the export is of site {:?}, the key of {:?}",
                header.site,
                key.site()
            ),
        );
    }
    if header.from == 0 || header.from > header.to || header.to > header.end {
        return fail(1, "from <= to <= end does not hold");
    }
    let mut state = Walk::new(header, key);
    let mut n = 1;
    while let Some(raw) = next_line(input, n + 1)? {
        n += 1;
        let line: EntryLine = parse_canonical(&raw, n)?;
        state.entry(&line, n)?;
    }
    state.finish(n)
}

struct Walk<'a> {
    key: &'a SiteKey,
    /// The header's version: a version 1 export has no chain-v2 line.
    version: u32,
    origin: String,
    report: CheckReport,
    prev_hash: Option<[u8; 32]>,
    expected: u64,
}

impl<'a> Walk<'a> {
    fn new(h: Header, key: &'a SiteKey) -> Self {
        Self {
            key,
            version: h.version,
            origin: checkpoint::origin(&h.site),
            expected: h.from,
            report: CheckReport {
                site: h.site,
                from: h.from,
                to: h.to,
                end: h.end,
                stream: h.stream,
                entries: 0,
                opened: 0,
                withheld: 0,
                checkpoints: 0,
                signed_to: 0,
                purged: Vec::new(),
            },
            prev_hash: None,
        }
    }

    fn entry(&mut self, e: &EntryLine, n: u64) -> Result<(), CheckFailure> {
        let r = &mut self.report;
        if e.seq != self.expected {
            return fail(
                n,
                format!("entry {} where {} was due", e.seq, self.expected),
            );
        }
        if e.seq > r.end {
            return fail(
                n,
                format!("entry {} is after the header's end {}", e.seq, r.end),
            );
        }
        let prev = hash32(&e.prev, "prev", n)?;
        let hash = hash32(&e.hash, "hash", n)?;
        // The first line's prev is where the range hangs on the chain; the checkpoints after it
        // sign it (through every hash up to them). Only entry 1 has a known prev.
        let linked = match self.prev_hash {
            Some(p) => prev == p,
            None => e.seq != 1 || prev == GENESIS,
        };
        if !linked {
            return fail(
                n,
                format!("prev does not link to the hash of entry {}", e.seq - 1),
            );
        }
        // Chain v1 lines carry neither `chain` nor `digest`; chain v2 lines both.
        let digest = match (e.chain, &e.digest) {
            (None, None) => None,
            (Some(format::CHAIN_V2), Some(d)) if self.version >= format::VERSION => {
                Some(hash32(d, "digest", n)?)
            }
            _ => {
                return fail(
                    n,
                    "chain and digest do not agree with each other or the header",
                );
            }
        };
        let checkpoint = e.kind == KIND_CHECKPOINT;
        let in_stream = r.stream.as_deref().is_none_or(|s| s == e.stream);
        let body = match (&e.body, &e.body_base64, e.withheld) {
            (Some(b), None, None) => Some(b.as_bytes().to_vec()),
            (None, Some(b), None) => {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD.decode(b);
                Some(bytes.or_else(|_| fail(n, "body_base64 is not base64"))?)
            }
            (None, None, Some(why)) => {
                let due = if checkpoint {
                    None
                } else if e.seq > r.to {
                    Some(Withheld::OutsideRange)
                } else if !in_stream {
                    Some(Withheld::OtherStream)
                } else {
                    None
                };
                if why != Withheld::Purged && Some(why) != due {
                    return fail(n, "this entry's body should have been exported");
                }
                if why == Withheld::Purged {
                    match r.purged.last_mut() {
                        Some(run) if run[1] + 1 == e.seq => run[1] = e.seq,
                        _ => r.purged.push([e.seq, e.seq]),
                    }
                }
                None
            }
            _ => {
                return fail(
                    n,
                    "exactly one of body, body_base64 and withheld is allowed",
                );
            }
        };
        match body {
            Some(body) => {
                if !checkpoint && (e.seq > r.to || !in_stream) {
                    return fail(n, "the header's range and stream do not include this entry");
                }
                if checkpoint {
                    let note: CheckpointBody = serde_json::from_slice(&body)
                        .or_else(|err| fail(n, format!("checkpoint body: {err}")))?;
                    let c = checkpoint::verify(&note.note, &self.origin, &self.key.public_key)
                        .or_else(|err| fail(n, format!("checkpoint does not verify: {err}")))?;
                    if c.size + 1 != e.seq || c.root != prev {
                        return fail(
                            n,
                            format!("checkpoint signs entry {} with another hash", c.size),
                        );
                    }
                    r.checkpoints += 1;
                    r.signed_to = c.size;
                }
                let computed = match &digest {
                    None => {
                        let c =
                            canonical(&r.site, e.seq, e.ts, &e.kind, &e.stream, &e.author, &body);
                        chain_hash(&prev, &c)
                    }
                    Some(d) => {
                        if content_digest(&e.kind, &e.stream, &e.author, &body) != *d {
                            return fail(
                                n,
                                format!("entry {} does not match its digest (altered)", e.seq),
                            );
                        }
                        hash_v2(&prev, &r.site, e.seq, e.ts, d)
                    }
                };
                if computed != hash {
                    return fail(
                        n,
                        format!("entry {} does not match its hash (altered)", e.seq),
                    );
                }
                r.opened += 1;
            }
            None => {
                // Without a body a chain-v2 entry is still re-hashed, from its digest.
                if let Some(d) = &digest
                    && hash_v2(&prev, &r.site, e.seq, e.ts, d) != hash
                {
                    return fail(
                        n,
                        format!("entry {} does not match its hash (altered)", e.seq),
                    );
                }
                r.withheld += 1;
            }
        }
        r.entries += 1;
        self.prev_hash = Some(hash);
        self.expected = e.seq + 1;
        Ok(())
    }

    fn finish(self, n: u64) -> Result<CheckReport, CheckFailure> {
        let r = self.report;
        if self.expected != r.end + 1 {
            return fail(
                n,
                format!(
                    "the export stops before entry {}, its header's end (cut short)",
                    r.end
                ),
            );
        }
        if r.checkpoints == 0 || r.signed_to + 1 != r.end {
            return fail(
                n,
                "the export does not end with a checkpoint that signs its range",
            );
        }
        Ok(r)
    }
}
