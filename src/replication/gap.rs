//! Gap records: an edge that drops payloads HQ has not acknowledged (`[replication]
//! drop_unreplicated_after`) names them first in a signed `replication.gap` entry; HQ checks it.
//!
//! The signed text (gap note v1), byte for byte, every line ending in `\n`, in the signed-note
//! shape of `log::checkpoint` and signed by the same site key:
//!
//! ```text
//! plantwire/<site>             origin: names the log and the key
//! replication.gap/v1           the note's type and version (never a decimal: not a checkpoint)
//! <from> <to> <count>          the seq range dropped and how many entries in it lost their payload
//! <prev>                       base64 (standard, padded) of entry <from>'s prev hash
//! <hash>                       base64 of entry <to>'s hash
//! <acked>                      the highest seq HQ had acknowledged when the edge dropped them
//! <reason>                     printable ASCII, at most 200 bytes (the policy that dropped them)
//!                              an empty line ends the body
//! — plantwire/<site> <sig>     as a checkpoint's signature line
//! ```

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::log::checkpoint::{self, Signer};
use crate::log::{AppendError, Author, Entry, Log, NewEntry, Tx};
use crate::retention::{Change, Hook};
use crate::store::ReadTx;

/// Kind of the entry naming a range dropped before HQ had it.
pub const KIND: &str = "replication.gap";
/// Its stream: `system/*` always travels whole and is never purged.
pub const STREAM: &str = "system/replication";
/// The second line of the signed text.
pub const VERSION_LINE: &str = "replication.gap/v1";
/// The longest reason (bytes).
pub const MAX_REASON: usize = 200;

/// `[replication] drop_unreplicated_after`: `never` (the default), or `N days`: retention may
/// then purge, by its normal rules, entries older than that even when HQ has not acknowledged
/// them, each batch after a signed gap record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DropAfter(pub Option<u32>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not `never` or `N days` (N from 1 to 36500)")]
pub struct DropAfterError(pub String);

impl DropAfter {
    pub fn parse(raw: &str) -> Result<Self, DropAfterError> {
        if raw.trim().eq_ignore_ascii_case("never") {
            return Ok(Self(None));
        }
        match crate::retention::Keep::parse(raw) {
            Ok(crate::retention::Keep::Days(d)) => Ok(Self(Some(d))),
            _ => Err(DropAfterError(raw.to_string())),
        }
    }

    /// The age (µs) past which unacknowledged entries may be dropped; `None`: never.
    pub fn micros(self) -> Option<i64> {
        self.0.map(|d| i64::from(d) * 86_400_000_000)
    }

    /// The reason a gap record gives.
    pub fn reason(self) -> String {
        match self.0 {
            Some(d) => format!("drop_unreplicated_after = {d} days"),
            None => "drop_unreplicated_after = never".into(),
        }
    }
}

impl TryFrom<String> for DropAfter {
    type Error = DropAfterError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<DropAfter> for String {
    fn from(d: DropAfter) -> Self {
        match d.0 {
            Some(n) => format!("{n} days"),
            None => "never".into(),
        }
    }
}

/// What a gap record states (and its note signs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub from: u64,
    pub to: u64,
    pub count: u64,
    pub prev: [u8; 32],
    pub hash: [u8; 32],
    pub acked: u64,
    pub reason: String,
}

/// The body of a `replication.gap` entry: the statement in clear (hex hashes) and its note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GapBody {
    pub v: u8,
    pub from: u64,
    pub to: u64,
    pub count: u64,
    /// Hex of entry `from`'s prev hash.
    pub prev: String,
    /// Hex of entry `to`'s hash.
    pub hash: String,
    pub acked: u64,
    pub reason: String,
    /// The signed text and its signature line.
    pub note: String,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum GapError {
    #[error("the gap note does not verify: {0}")]
    Signature(#[from] checkpoint::CheckpointError),
    #[error("the gap note is malformed: {0}")]
    Malformed(&'static str),
    #[error("the gap record's fields differ from its signed note")]
    Mismatch,
}

/// A reason as the note carries it: printable ASCII, no line break, at most [`MAX_REASON`].
fn clean_reason(reason: &str) -> String {
    reason
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(MAX_REASON)
        .collect()
}

/// The signed text of `st` for `site`'s log (see the module doc).
pub fn text(site: &str, st: &Statement) -> String {
    format!(
        "{}\n{VERSION_LINE}\n{} {} {}\n{}\n{}\n{}\n{}\n",
        checkpoint::origin(site),
        st.from,
        st.to,
        st.count,
        STANDARD.encode(st.prev),
        STANDARD.encode(st.hash),
        st.acked,
        clean_reason(&st.reason),
    )
}

/// The entry body for `st`, signed by the site's key.
pub fn body(signer: &Signer, site: &str, st: &Statement) -> GapBody {
    GapBody {
        v: 1,
        from: st.from,
        to: st.to,
        count: st.count,
        prev: hex::encode(st.prev),
        hash: hex::encode(st.hash),
        acked: st.acked,
        reason: clean_reason(&st.reason),
        note: signer.sign_text(&text(site, st)),
    }
}

fn decimal(s: Option<&str>) -> Result<u64, GapError> {
    let s = s.ok_or(GapError::Malformed("a line is missing"))?;
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(GapError::Malformed("a number is not decimal"));
    }
    s.parse()
        .map_err(|_| GapError::Malformed("a number is too large"))
}

fn hash32(s: Option<&str>) -> Result<[u8; 32], GapError> {
    STANDARD
        .decode(s.ok_or(GapError::Malformed("a line is missing"))?)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or(GapError::Malformed("a hash is not 32 bytes of base64"))
}

/// Checks `body`'s note against `site`'s key and that its clear fields say what the note signs;
/// returns the signed statement.
pub fn verify(site: &str, key: &[u8; 32], body: &GapBody) -> Result<Statement, GapError> {
    let text = checkpoint::verify_text(&body.note, &checkpoint::origin(site), key)?;
    let mut lines = text.strip_suffix('\n').unwrap_or(text).split('\n');
    lines.next();
    if lines.next() != Some(VERSION_LINE) {
        return Err(GapError::Malformed("not a replication.gap/v1 note"));
    }
    let mut range = lines
        .next()
        .ok_or(GapError::Malformed("no range"))?
        .split(' ');
    let (from, to, count) = (
        decimal(range.next())?,
        decimal(range.next())?,
        decimal(range.next())?,
    );
    if range.next().is_some() || from > to || count == 0 || count > to - from + 1 {
        return Err(GapError::Malformed(
            "the range is not from <= to with 1..=len entries",
        ));
    }
    let st = Statement {
        from,
        to,
        count,
        prev: hash32(lines.next())?,
        hash: hash32(lines.next())?,
        acked: decimal(lines.next())?,
        reason: lines
            .next()
            .ok_or(GapError::Malformed("no reason"))?
            .to_string(),
    };
    if lines.next().is_some() {
        return Err(GapError::Malformed("extra lines"));
    }
    let same = body.v == 1
        && (body.from, body.to, body.count, body.acked) == (st.from, st.to, st.count, st.acked)
        && body.prev == hex::encode(st.prev)
        && body.hash == hex::encode(st.hash)
        && body.reason == st.reason;
    if !same {
        return Err(GapError::Mismatch);
    }
    Ok(st)
}

fn meta_u64(bytes: Option<Vec<u8>>) -> u64 {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map_or(0, u64::from_be_bytes)
}

/// The edge's retention hook: in each purge batch's transaction, before the payloads go, when
/// any seq to be purged is above HQ's acknowledged cursor, or at or below it with attachments
/// that have not followed to HQ (above the blob cursor), appends one signed gap record spanning
/// them (from the lowest to the highest such seq) in the same commit, so no payload or
/// attachment is ever gone without its record.
pub fn edge_hook(signer: Arc<Signer>, reason: String) -> Hook {
    Arc::new(move |tx: &mut Tx<'_>, change: Change, seqs: &[u64]| {
        if change != Change::Purging {
            return Ok(());
        }
        let acked = meta_u64(tx.views().replication_meta_in_tx("acked")?);
        let followed = meta_u64(tx.views().replication_meta_in_tx(super::blobs::CURSOR)?);
        let mut dropped = Vec::new();
        for &s in seqs {
            if s > acked || (s > followed && tx.views().has_attachment_refs(s)?) {
                dropped.push(s);
            }
        }
        let (Some(&from), Some(&to)) = (dropped.first(), dropped.last()) else {
            return Ok(());
        };
        let count = u64::try_from(dropped.len()).unwrap_or(u64::MAX);
        // Cannot happen for a seq just purged; refusing purges nothing rather than silently.
        let missing = || {
            AppendError::from(crate::error::Rejection::conflict(
                "gap_unrecorded",
                "a dropped entry has no record to name in its gap record",
            ))
        };
        let prev = tx.views().log_meta(from)?.ok_or_else(missing)?.prev;
        let hash = tx.views().log_meta(to)?.ok_or_else(missing)?.hash;
        let st = Statement {
            from,
            to,
            count,
            prev,
            hash,
            acked,
            reason: reason.clone(),
        };
        let site = tx.site().to_string();
        let body = body(&signer, &site, &st);
        tx.append(NewEntry::json(KIND, STREAM, &Author::System, &body)?)?;
        Ok(())
    })
}

/// The highest seq older than `age_us` (0 when none): what the drop policy lets retention reach.
pub fn aged_floor(log: &Log, age_us: i64) -> Result<u64, crate::store::StoreError> {
    let cutoff = log.now_us().saturating_sub(age_us);
    let rtx = log.read()?;
    let head = rtx.chain_head()?.map_or(0, |h| h.seq);
    // Timestamps never go back along the log: the last seq at or before the cutoff by bisection.
    let (mut lo, mut hi) = (0u64, head);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        match rtx.log_meta(mid)? {
            Some(m) if m.ts <= cutoff => lo = mid,
            _ => hi = mid - 1,
        }
    }
    Ok(lo)
}

/// One gap as HQ shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GapView {
    /// The seq of the `replication.gap` entry in the site's log.
    pub seq: u64,
    /// When the edge wrote it (µs).
    pub ts: i64,
    pub from: u64,
    pub to: u64,
    /// Entries in `from..=to` whose payload was dropped (the others stayed whole).
    pub count: u64,
    /// Hex of entry `to`'s hash.
    pub hash: String,
    /// HQ's acknowledged seq at the edge when it dropped them.
    pub acked: u64,
    pub reason: String,
    /// The note verifies with the site's pinned key and names the hash HQ holds at `to`.
    pub verified: bool,
    /// Why it did not verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The gaps of one site, as `site list` and `GET /api/v1/sites` show them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GapSummary {
    pub count: u64,
    pub unverified: u64,
    pub latest: Option<GapView>,
}

/// Replica meta row: the [`GapSummary`] (JSON), kept in the commit that appends each gap.
const SUMMARY: &str = "gaps";

/// Checks a replicated gap entry: the note by `key` (`None`: the site sent no key), its fields,
/// and the hash `held` at its `to` (`None`: HQ holds no entry there).
pub fn view(site: &str, key: Option<&[u8; 32]>, e: &Entry, held: Option<[u8; 32]>) -> GapView {
    let body: Result<GapBody, _> = serde_json::from_slice(&e.body);
    let mut v = GapView {
        seq: e.seq,
        ts: e.ts,
        from: 0,
        to: 0,
        count: 0,
        hash: String::new(),
        acked: 0,
        reason: String::new(),
        verified: false,
        problem: None,
    };
    let body = match body {
        Ok(b) => b,
        Err(_) => {
            v.problem = Some("the body is not a gap record".into());
            return v;
        }
    };
    (v.from, v.to, v.count, v.acked) = (body.from, body.to, body.count, body.acked);
    v.hash.clone_from(&body.hash);
    v.reason.clone_from(&body.reason);
    v.problem = match key.map(|k| verify(site, k, &body)) {
        None => Some("no signing key is known for the site".into()),
        Some(Err(e)) => Some(e.to_string()),
        Some(Ok(st)) if held != Some(st.hash) => {
            Some(format!("HQ holds another hash at seq {}", st.to))
        }
        Some(Ok(_)) => None,
    };
    v.verified = v.problem.is_none();
    v
}

/// At HQ, in the commit that appended `entries`: checks and counts each gap record among them.
/// Returns the gaps found, for the alarm raised after the commit.
pub fn note_gaps(
    tx: &mut Tx<'_>,
    site: &str,
    key: Option<&[u8; 32]>,
    entries: &[super::wire::Shipped],
) -> Result<Vec<GapView>, AppendError> {
    let mut found = Vec::new();
    for e in entries.iter().filter_map(super::wire::Shipped::entry) {
        if e.kind != KIND || e.stream != STREAM {
            continue;
        }
        let to = serde_json::from_slice::<GapBody>(&e.body).map_or(0, |b| b.to);
        // This batch's items are not in the store until the commit: their hash from the batch.
        let held = match entries.iter().find(|i| i.seq() == to) {
            Some(item) => Some(item.hash()),
            None => tx.views().log_meta(to)?.map(|m| m.hash),
        };
        found.push(view(site, key, e, held));
    }
    if found.is_empty() {
        return Ok(found);
    }
    let mut summary: GapSummary = tx
        .views()
        .replication_meta_in_tx(SUMMARY)?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    for g in &found {
        summary.count += 1;
        summary.unverified += u64::from(!g.verified);
        summary.latest = Some(g.clone());
    }
    tx.views()
        .set_replication_meta(SUMMARY, &serde_json::to_vec(&summary)?)?;
    Ok(found)
}

/// The site's gap summary at HQ.
pub fn summary(rtx: &ReadTx) -> Result<GapSummary, crate::store::StoreError> {
    Ok(rtx
        .replication_meta(SUMMARY)?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default())
}

/// The newest `limit` gaps of a replica, newest first, each checked again against the site's
/// key (pinned at enrolment, else the one its log names).
pub fn list(replica: &Log, limit: usize) -> Result<Vec<GapView>, super::ReplicationError> {
    let key = super::witness::site_key(replica, &[])?;
    let key = key.as_ref();
    let rtx = replica.read()?;
    let head = replica.head(&rtx)?;
    let mut out = Vec::new();
    for seq in rtx.stream_seqs_newest(STREAM, 0, head, limit)? {
        let Some(e) = replica.entry_of_kind(&rtx, seq, KIND)? else {
            continue;
        };
        let to = serde_json::from_slice::<GapBody>(&e.body).map_or(0, |b| b.to);
        let held = rtx.log_meta(to)?.map(|m| m.hash);
        out.push(view(replica.site(), key, &e, held));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-exact signed note for a fixed key and statement: a change to the format shows.
    #[test]
    fn the_gap_note_is_byte_exact_and_verifies() {
        let signer = Signer::from_seed("plant-a", &[7; 32]).unwrap();
        let st = Statement {
            from: 10,
            to: 12,
            count: 3,
            prev: [0x11; 32],
            hash: [0xAB; 32],
            acked: 9,
            reason: "drop_unreplicated_after = 30 days".into(),
        };
        let b = body(&signer, "plant-a", &st);
        let golden = "plantwire/plant-a\nreplication.gap/v1\n10 12 3\nERERERERERERERERERERERERERERERERERERERERERE=\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n9\ndrop_unreplicated_after = 30 days\n\n\u{2014} plantwire/plant-a hEMoEhKaYJysTFVeHdtHi69u19vW0M0hpgTy+ab7xZlmI9x82SJnyPUI5AD8Ja/poc82/qKXkcPBSjhyJxDwg6UpUgQ=\n";
        assert_eq!(b.note, golden);
        assert_eq!(verify("plant-a", &signer.public_key(), &b), Ok(st.clone()));
        // The note is no checkpoint.
        assert!(checkpoint::verify(&b.note, "plantwire/plant-a", &signer.public_key()).is_err());
        // A changed field, a changed note or another key does not verify.
        let other = Signer::from_seed("plant-a", &[9; 32]).unwrap();
        assert!(verify("plant-a", &other.public_key(), &b).is_err());
        assert_eq!(
            verify(
                "plant-a",
                &signer.public_key(),
                &GapBody {
                    to: 13,
                    ..b.clone()
                }
            ),
            Err(GapError::Mismatch)
        );
        let forged = GapBody {
            note: b.note.replacen("10 12 3", "10 13 3", 1),
            ..b.clone()
        };
        assert!(matches!(
            verify("plant-a", &signer.public_key(), &forged),
            Err(GapError::Signature(_))
        ));
        assert!(verify("plant-b", &signer.public_key(), &b).is_err());
    }

    #[test]
    fn the_policy_parses() {
        assert_eq!(DropAfter::parse("never"), Ok(DropAfter(None)));
        assert_eq!(DropAfter::parse("30 days"), Ok(DropAfter(Some(30))));
        assert!(DropAfter::parse("forever").is_err());
        assert!(DropAfter::parse("0 days").is_err());
        assert_eq!(String::from(DropAfter(Some(7))), "7 days");
        assert_eq!(DropAfter::default().micros(), None);
    }
}
