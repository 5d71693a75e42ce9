//! Security events for admins: sign-ins, failures, lockouts and ended sessions, read back from the
//! `security` stream newest first, bounded. Read-only; the entries are written by `sessions`.

use serde::Serialize;

use super::sessions::STREAM;
use crate::error::Rejection;
use crate::log::Entry;
use crate::log::read::ReadError;
use crate::store::ReadTx;

/// Default and largest page.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
/// At most this many index rows are looked at per request, whatever the kind filter.
const MAX_SCANNED: usize = 10_000;

/// What to list: a kind (`auth.login_failed`) or a prefix (`auth.*`), entries after `since`.
#[derive(Debug, Clone)]
pub struct Query {
    pattern: String,
    pub since: u64,
    pub limit: usize,
}

impl Query {
    /// Checks the pattern (letters, digits, `.`, `_`, an optional trailing `*`) and bounds the
    /// limit.
    pub fn new(kind: &str, since: Option<u64>, limit: Option<usize>) -> Result<Self, Rejection> {
        let body = kind.strip_suffix('*').unwrap_or(kind);
        let ok = kind.len() <= 64
            && body
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_'));
        if !ok {
            return Err(Rejection::invalid(
                "invalid_kind",
                "kind is a kind such as auth.login_failed or a prefix such as auth.*",
            ));
        }
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(Rejection::invalid(
                "invalid_limit",
                format!("limit is 1 to {MAX_LIMIT}"),
            ));
        }
        Ok(Self {
            pattern: kind.to_string(),
            since: since.unwrap_or(0),
            limit,
        })
    }

    fn matches(&self, kind: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => kind.starts_with(prefix),
            None => kind == self.pattern,
        }
    }
}

/// One security event as an admin sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SecurityEvent {
    pub seq: u64,
    pub ts_us: i64,
    pub kind: String,
    pub author: String,
    /// The entry's body: `username`, `from` (address), `lockout_secs`, `session` as the kind has.
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
}

/// The matching events of the `security` stream with `seq > since`, newest first, at most
/// `q.limit`. `entry` reads and unseals one entry (the log's, or an offline store's).
pub fn list(
    rtx: &ReadTx,
    head: u64,
    q: &Query,
    entry: impl Fn(&ReadTx, u64) -> Result<Option<Entry>, ReadError>,
) -> Result<Vec<SecurityEvent>, ReadError> {
    let mut out = Vec::new();
    let mut to = head;
    let mut scanned = 0;
    while out.len() < q.limit && scanned < MAX_SCANNED {
        let chunk = (MAX_SCANNED - scanned).min(500);
        let seqs = rtx.stream_seqs_newest(STREAM, q.since, to, chunk)?;
        let Some(&oldest) = seqs.last() else { break };
        scanned += seqs.len();
        for seq in seqs {
            let Some(e) = entry(rtx, seq)? else { continue };
            if !q.matches(&e.kind) {
                continue;
            }
            out.push(SecurityEvent {
                seq,
                ts_us: e.ts,
                kind: e.kind,
                author: e.author,
                body: serde_json::from_slice(&e.body).unwrap_or(serde_json::Value::Null),
            });
            if out.len() >= q.limit {
                break;
            }
        }
        to = oldest - 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::Query;

    #[test]
    fn patterns_are_checked_and_match_prefixes() {
        let q = Query::new("auth.*", None, None).unwrap();
        assert!(q.matches("auth.login_failed") && !q.matches("user.created"));
        let q = Query::new("auth.lockout", Some(3), Some(5)).unwrap();
        assert!(q.matches("auth.lockout") && !q.matches("auth.lockouts"));
        assert_eq!(
            Query::new("auth/*", None, None).unwrap_err().code,
            "invalid_kind"
        );
        assert_eq!(
            Query::new("auth.*", None, Some(0)).unwrap_err().code,
            "invalid_limit"
        );
    }
}
