//! Writing an audit export: resolve the asked range (seqs or times) against the log, make sure a
//! signed checkpoint covers its end, then walk it page by page, each page from its own read
//! snapshot, so memory stays at one page whatever the size of the range.

use std::io::Write;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::format::{self, EntryLine, Header, Meta, Withheld};
use crate::error::Rejection;
use crate::log::checkpoint::{KIND_CHECKPOINT, STREAM as CHECKPOINTS, Signer};
use crate::log::checkpointer::{self, CheckpointStartError};
use crate::log::read::ReadError;
use crate::log::{Log, SubmitError};
use crate::store::{CodecError, ReadTx, RecordMeta, StoreError};

/// Entries one step reads (one read snapshot each).
const PAGE: u64 = 256;

/// One end of the asked range: a seq, or a time (the first entry at or after it for `from`, the
/// last at or before it for `to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    Seq(u64),
    /// UTC µs.
    Time(i64),
}

impl Bound {
    /// A bare integer is a seq; anything else must be RFC 3339 (`2026-12-01T03:00:00Z`).
    pub fn parse(name: &str, raw: &str) -> Result<Self, Rejection> {
        let raw = raw.trim();
        if let Ok(seq) = raw.parse::<u64>() {
            return Ok(Self::Seq(seq));
        }
        time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
            .ok()
            .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1000).ok())
            .map(Self::Time)
            .ok_or_else(|| {
                Rejection::invalid(
                    "invalid_range",
                    format!("{name} must be a seq or an RFC 3339 time (2026-12-01T03:00:00Z)"),
                )
            })
    }
}

/// What to export. `from` defaults to the oldest entry, `to` to the head.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRequest {
    pub from: Option<Bound>,
    pub to: Option<Bound>,
    pub stream: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("entry {seq}: the record cannot be decoded: {source}")]
    Decode {
        seq: u64,
        #[source]
        source: CodecError,
    },
    #[error("cannot checkpoint the head for the export: {0}")]
    Checkpoint(#[from] SubmitError),
    #[error(transparent)]
    Key(#[from] CheckpointStartError),
    #[error("cannot write the export: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot write the export: {0}")]
    Io(#[from] std::io::Error),
}

/// A resolved range: the header of the export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub header: Header,
}

fn bad_range(message: impl Into<String>) -> ExportError {
    Rejection::invalid("invalid_range", message).into()
}

/// Resolves `req` and, when no checkpoint at or after `to` exists yet, appends one of the head
/// (signed with `signer`), so that every export ends with a signature over its range.
pub async fn prepare(
    log: &Log,
    signer: &Arc<Signer>,
    req: &ExportRequest,
) -> Result<Plan, ExportError> {
    if let Some(s) = &req.stream
        && (s.is_empty() || s.len() > crate::log::entry::MAX_NAME_LEN)
    {
        return Err(bad_range("stream must be 1 to 256 characters"));
    }
    let (from, to) = {
        let rtx = log.read()?;
        resolve(log, &rtx, req)?
    };
    let end = match first_checkpoint(log, to)? {
        Some(end) => end,
        None => {
            checkpointer::ensure_key_logged(log, signer).await?;
            checkpointer::checkpoint_now(log, signer).await?;
            first_checkpoint(log, to)?.ok_or_else(|| bad_range("no checkpoint covers the range"))?
        }
    };
    Ok(Plan {
        header: Header {
            format: format::FORMAT.to_string(),
            version: format::VERSION,
            site: log.site().to_string(),
            from,
            to,
            end,
            stream: req.stream.clone(),
        },
    })
}

/// The seq of the first checkpoint entry at or after `to`.
fn first_checkpoint(log: &Log, to: u64) -> Result<Option<u64>, StoreError> {
    let rtx = log.read()?;
    let head = log.head(&rtx)?;
    Ok(rtx.stream_seqs(CHECKPOINTS, to, head, 1)?.first().copied())
}

fn ts_of(rtx: &ReadTx, seq: u64) -> Result<i64, ExportError> {
    let raw = rtx
        .log_raw(seq)?
        .ok_or_else(|| bad_range(format!("entry {seq} is not in the log")))?;
    RecordMeta::decode(&raw)
        .map(|(r, _)| r.ts)
        .map_err(|source| ExportError::Decode { seq, source })
}

/// The first seq in `lo..=hi` whose ts is at least `at` (`hi + 1` when none): ts never
/// decreases along the log, so a binary search over the records finds it.
fn first_at_or_after(rtx: &ReadTx, lo: u64, hi: u64, at: i64) -> Result<u64, ExportError> {
    let (mut lo, mut hi) = (lo, hi + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if ts_of(rtx, mid)? < at {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

fn resolve(log: &Log, rtx: &ReadTx, req: &ExportRequest) -> Result<(u64, u64), ExportError> {
    let head = log.head(rtx)?;
    let Some((first, _)) = rtx.log_bounds()? else {
        return Err(bad_range("the log is empty"));
    };
    let from = match req.from {
        None => first,
        Some(Bound::Seq(s)) => s.max(first),
        Some(Bound::Time(t)) => first_at_or_after(rtx, first, head, t)?,
    };
    let to = match req.to {
        None => head,
        Some(Bound::Seq(s)) => s.min(head),
        Some(Bound::Time(t)) => first_at_or_after(rtx, first, head, t.saturating_add(1))? - 1,
    };
    if from > head {
        return Err(bad_range(format!(
            "the range starts after the newest entry ({head})"
        )));
    }
    if from > to {
        return Err(bad_range("from is after to: the range holds no entry"));
    }
    Ok((from, to))
}

/// Where an export is in its walk.
pub struct Walk {
    log: Log,
    header: Header,
    next: u64,
    started: bool,
}

impl Walk {
    pub fn new(log: Log, plan: Plan) -> Self {
        Self {
            log,
            next: plan.header.from,
            header: plan.header,
            started: false,
        }
    }

    /// The next lines (the header first), from a fresh read snapshot; `None` when done.
    pub fn step(&mut self) -> Result<Option<Vec<u8>>, ExportError> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            format::write_line(&mut out, &self.header)?;
            return Ok(Some(out));
        }
        if self.next > self.header.end {
            return Ok(None);
        }
        let last = self.header.end.min(self.next.saturating_add(PAGE - 1));
        let rtx = self.log.read()?;
        for seq in self.next..=last {
            let line = self.line(&rtx, seq)?;
            format::write_line(&mut out, &line)?;
        }
        self.next = last + 1;
        Ok(Some(out))
    }

    /// One entry's line: opened when it is in the range (and the stream), or a checkpoint.
    fn line(&self, rtx: &ReadTx, seq: u64) -> Result<EntryLine, ExportError> {
        let raw = rtx
            .log_raw(seq)?
            .ok_or_else(|| bad_range(format!("entry {seq} is not in the log")))?;
        let (rec, _) =
            RecordMeta::decode(&raw).map_err(|source| ExportError::Decode { seq, source })?;
        let checkpoint = rec.kind == KIND_CHECKPOINT;
        let withheld = if rec.purged {
            Some(Withheld::Purged)
        } else if checkpoint {
            None
        } else if seq > self.header.to {
            Some(Withheld::OutsideRange)
        } else if self
            .header
            .stream
            .as_deref()
            .is_some_and(|s| s != rec.stream)
        {
            Some(Withheld::OtherStream)
        } else {
            None
        };
        Ok(match withheld {
            Some(why) => EntryLine::withheld(
                Meta {
                    seq,
                    ts: rec.ts,
                    kind: &rec.kind,
                    stream: &rec.stream,
                    author: &rec.author,
                    prev: &rec.prev,
                    hash: &rec.hash,
                    digest: rec.digest.as_ref(),
                },
                why,
            ),
            None => EntryLine::opened(&self.log.decode(seq, &raw)?),
        })
    }

    /// Writes the whole export to `out` (CLI and control socket); returns the entries written.
    pub fn write_all(mut self, out: &mut dyn Write) -> Result<u64, ExportError> {
        while let Some(chunk) = self.step()? {
            out.write_all(&chunk)?;
        }
        out.flush()?;
        Ok(self.header.end - self.header.from + 1)
    }
}
