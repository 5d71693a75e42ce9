//! Answering a search: parse and bound the query, intersect the posting lists newest first, then
//! open each candidate to drop what the viewer may not see or what no longer says the words.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::audience::Viewer;
use crate::chat::messages::read_message;
use crate::chat::replay::visible_ranges;
use crate::error::Rejection;
use crate::log::{Author, Log};
use crate::store::seal::SEARCH_MAC_LEN;
use crate::store::{LogRecord, ReadTx, StoreError};

use super::postings;
use super::tokenize::{self, MIN_PREFIX, PREFIX_LENS};

/// Longest query text, in bytes.
pub const MAX_QUERY_LEN: usize = 256;
/// Most terms in one query.
pub const MAX_TERMS: usize = 8;
pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;
/// Most posting blocks one query opens; past it the answer is cut and carries `next`.
pub const MAX_BLOCKS: usize = 4_096;
/// Most candidate entries one query opens; past it the answer is cut and carries `next`.
pub const MAX_CANDIDATES: usize = 2_000;
/// Characters of context on each side of the first match in a snippet.
const SNIPPET_CONTEXT: usize = 60;
/// The markers around a matched word in a snippet.
pub const MARK_OPEN: char = '«';
pub const MARK_CLOSE: char = '»';

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HitKind {
    /// A chat message (its newest edit), incident answers included.
    Message,
    /// An event's message, source, type or text attributes.
    Event,
    /// An alarm entry's texts (raise, clear, acknowledge, shelve comments).
    Alarm,
}

impl HitKind {
    fn of(kind: &str) -> Option<Self> {
        match kind {
            "chat.message" | "chat.edited" | crate::incidents::KIND_ANSWERED => Some(Self::Message),
            "event" => Some(Self::Event),
            k if k.starts_with("alarm.") => Some(Self::Alarm),
            _ => None,
        }
    }
}

/// One search, every field checked by [`Query::check`].
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub q: String,
    pub kind: Option<HitKind>,
    /// Only messages of this conversation.
    pub conv: Option<String>,
    /// Only entries by this user or device, or events and alarms of this source.
    pub author: Option<String>,
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
    /// Only postings below this seq (the `next` of a previous answer).
    pub before: Option<u64>,
    pub limit: Option<usize>,
}

/// A searched word; `prefix` when the query wrote it with a trailing `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub text: String,
    pub prefix: bool,
}

/// The terms of a query text: words, and prefixes written `pump*`. Bad input is a `Rejection`.
pub fn parse(q: &str) -> Result<Vec<Term>, Rejection> {
    if q.len() > MAX_QUERY_LEN {
        return Err(Rejection::invalid(
            "query_too_long",
            format!("a query is at most {MAX_QUERY_LEN} bytes"),
        ));
    }
    let mut terms: Vec<Term> = Vec::new();
    for chunk in q.split_whitespace() {
        let (body, star) = match chunk.strip_suffix('*') {
            Some(b) => (b, true),
            None => (chunk, false),
        };
        let mut words: Vec<String> = tokenize::words(body).collect();
        let last_short = star
            && tokenize::words(body).next().is_none()
            && body.chars().filter(|c| c.is_alphanumeric()).count() > 0;
        if last_short {
            return Err(prefix_too_short());
        }
        let last = words.pop();
        for w in words {
            terms.push(Term {
                text: w,
                prefix: false,
            });
        }
        if let Some(w) = last {
            if star && w.chars().count() < MIN_PREFIX {
                return Err(prefix_too_short());
            }
            terms.push(Term {
                text: w,
                prefix: star,
            });
        }
    }
    terms.dedup();
    if terms.is_empty() {
        return Err(Rejection::invalid(
            "empty_query",
            "the query has no word of two or more letters or digits",
        ));
    }
    if terms.len() > MAX_TERMS {
        return Err(Rejection::invalid(
            "too_many_terms",
            format!("a query has at most {MAX_TERMS} words"),
        ));
    }
    Ok(terms)
}

fn prefix_too_short() -> Rejection {
    Rejection::invalid(
        "prefix_too_short",
        format!("a prefix (`word*`) has at least {MIN_PREFIX} letters"),
    )
}

impl Query {
    /// The terms and the page size, or why the query is refused.
    pub fn check(&self) -> Result<(Vec<Term>, usize), Rejection> {
        let terms = parse(&self.q)?;
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(Rejection::invalid(
                "invalid_limit",
                format!("limit is 1-{MAX_LIMIT}"),
            ));
        }
        if let (Some(s), Some(u)) = (self.since_us, self.until_us)
            && s > u
        {
            return Err(Rejection::invalid("invalid_range", "since is after until"));
        }
        if self.conv.is_some() && self.kind.is_some_and(|k| k != HitKind::Message) {
            return Err(Rejection::invalid(
                "invalid_query",
                "conv filters messages: give kind=message or no kind",
            ));
        }
        Ok((terms, limit))
    }
}

/// One hit: what it is, where it lives, and a snippet with the matched words between
/// [`MARK_OPEN`] and [`MARK_CLOSE`].
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Hit {
    pub kind: HitKind,
    /// The message's seq (for an edited message, the original one), the event's or the alarm
    /// entry's.
    pub seq: u64,
    pub ts_us: i64,
    /// `user:<name>`, `device:<name>`, ... as the log records it.
    pub author: String,
    /// The conversation of a message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conv: Option<String>,
    /// The log stream (an event's stream, `conv/<id>`, `alarms/<id>`).
    pub stream: String,
    /// The alarm occurrence of an alarm entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alarm: Option<u64>,
    pub snippet: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Results {
    /// Newest first.
    pub hits: Vec<Hit>,
    /// Present when more may follow (the page is full, or the query reached its work bound):
    /// ask again with `before` set to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
    /// The newest seq the index covered when this answer was made.
    pub indexed_to: u64,
}

/// Why a search failed (bad input is a `Rejection` from [`Query::check`]).
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a search posting block does not open: {0}")]
    Block(#[from] postings::AppendPostingsError),
}

type Mac = [u8; SEARCH_MAC_LEN];

/// One posting list, read newest block first.
struct Source {
    mac: Mac,
    /// Blocks with a first seq below this are still unread.
    below: u64,
    /// Postings of the blocks read, ascending; the head is the last.
    buf: Vec<u64>,
    /// Only postings below this.
    before: u64,
    done: bool,
}

struct Budget {
    blocks: usize,
    candidates: usize,
}

/// One term's postings: its list, or for a prefix exactly as long as an indexed prefix length
/// the union of that prefix's list and the word's (a word is not indexed again as its own prefix).
struct List {
    sources: Vec<Source>,
}

impl List {
    fn new(log: &Log, term: &Term, before: u64) -> Self {
        let mut keys = Vec::new();
        if term.prefix {
            let n = term.text.chars().count();
            let len = PREFIX_LENS.iter().copied().filter(|l| *l <= n).max();
            let len = len.unwrap_or(MIN_PREFIX);
            keys.push(tokenize::prefix_key(
                &term.text.chars().take(len).collect::<String>(),
            ));
            if len == n {
                keys.push(tokenize::word_key(&term.text));
            }
        } else {
            keys.push(tokenize::word_key(&term.text));
        }
        let sources = keys
            .iter()
            .map(|k| Source {
                mac: log.search_mac(k),
                below: before,
                buf: Vec::new(),
                before,
                done: false,
            })
            .collect();
        Self { sources }
    }

    /// The newest posting not yet popped; `Err(None)` when the block budget ran out.
    fn peek(
        &mut self,
        log: &Log,
        rtx: &ReadTx,
        budget: &mut Budget,
    ) -> Result<Option<u64>, Option<SearchError>> {
        let mut head = None;
        for s in &mut self.sources {
            head = head.max(s.peek(log, rtx, budget)?);
        }
        Ok(head)
    }

    /// The newest posting already read, if any.
    fn last(&self) -> Option<u64> {
        self.sources
            .iter()
            .filter_map(|s| s.buf.last().copied())
            .max()
    }

    /// Drops every read posting above `target`, and `target` itself when `inclusive`.
    fn skip(&mut self, target: u64, inclusive: bool) {
        for s in &mut self.sources {
            while s
                .buf
                .last()
                .is_some_and(|h| *h > target || (inclusive && *h == target))
            {
                s.buf.pop();
            }
        }
    }
}

impl Source {
    /// The newest posting not yet popped; `Err(None)` when the block budget ran out.
    fn peek(
        &mut self,
        log: &Log,
        rtx: &ReadTx,
        budget: &mut Budget,
    ) -> Result<Option<u64>, Option<SearchError>> {
        while self.buf.is_empty() && !self.done {
            if budget.blocks == 0 {
                return Err(None);
            }
            budget.blocks -= 1;
            let mut blocks = rtx
                .search_blocks_rev(&self.mac, self.below, 1)
                .map_err(|e| Some(e.into()))?;
            let Some((first, sealed)) = blocks.pop() else {
                self.done = true;
                break;
            };
            self.below = first;
            let plain = log
                .open_view(&postings::aad(&self.mac, first), &sealed)
                .map_err(|e| Some(SearchError::Store(e.into())))?;
            let seqs =
                postings::decode(first, &plain).map_err(|e| Some(SearchError::Block(e.into())))?;
            self.buf = seqs.into_iter().filter(|s| *s < self.before).collect();
        }
        Ok(self.buf.last().copied())
    }
}

/// Runs `query` for `viewer` over the snapshot `rtx`.
pub fn search(
    log: &Log,
    rtx: &ReadTx,
    viewer: &Viewer,
    query: &Query,
) -> Result<Results, SearchError> {
    let (terms, limit) = query.check()?;
    let indexed_to = rtx.search_cursor()?;
    let before = query.before.unwrap_or(u64::MAX);
    let mut lists: Vec<List> = terms.iter().map(|t| List::new(log, t, before)).collect();
    let mut budget = Budget {
        blocks: MAX_BLOCKS,
        candidates: MAX_CANDIDATES,
    };
    let mut ctx = Context {
        log,
        rtx,
        viewer,
        query,
        terms: &terms,
        convs: HashMap::new(),
        alarms: crate::alarms::AlarmScope::of(rtx, &viewer.user, viewer.role)?,
    };
    let mut hits = Vec::new();
    loop {
        let mut heads = Vec::with_capacity(lists.len());
        for l in &mut lists {
            match l.peek(log, rtx, &mut budget) {
                Ok(Some(h)) => heads.push(h),
                Ok(None) => {
                    return Ok(Results {
                        hits,
                        next: None,
                        indexed_to,
                    });
                }
                Err(None) => {
                    let read = lists.iter().filter_map(List::last);
                    let next = heads.iter().copied().chain(read).min().map(|m| m + 1);
                    return Ok(Results {
                        hits,
                        next,
                        indexed_to,
                    });
                }
                Err(Some(e)) => return Err(e),
            }
        }
        let target = heads.iter().copied().min().unwrap_or(0);
        if heads.iter().all(|h| *h == target) {
            if budget.candidates == 0 {
                return Ok(Results {
                    hits,
                    next: Some(target + 1),
                    indexed_to,
                });
            }
            budget.candidates -= 1;
            for l in &mut lists {
                l.skip(target, true);
            }
            match ctx.check(target)? {
                Verdict::Hit(h) => {
                    hits.push(*h);
                    if hits.len() >= limit {
                        return Ok(Results {
                            hits,
                            next: Some(target),
                            indexed_to,
                        });
                    }
                }
                Verdict::Skip => {}
                Verdict::Stop => {
                    return Ok(Results {
                        hits,
                        next: None,
                        indexed_to,
                    });
                }
            }
        } else {
            for l in &mut lists {
                l.skip(target, false);
            }
        }
    }
}

enum Verdict {
    Hit(Box<Hit>),
    Skip,
    /// Older than `since`: nothing further down can match.
    Stop,
}

struct Context<'a> {
    log: &'a Log,
    rtx: &'a ReadTx,
    viewer: &'a Viewer,
    query: &'a Query,
    terms: &'a [Term],
    /// Per conversation: the ranges of seqs the viewer may read (`None`: not a member).
    convs: HashMap<String, Option<Vec<(u64, u64)>>>,
    /// The alarms the viewer may see (HQ's alarms about a site need a grant on it).
    alarms: crate::alarms::AlarmScope,
}

impl Context<'_> {
    fn visible_ranges(&mut self, conv: &str) -> Result<Option<&Vec<(u64, u64)>>, StoreError> {
        if !self.convs.contains_key(conv) {
            let ranges = match (
                self.rtx.member(conv, &self.viewer.user)?,
                self.rtx.conv(conv)?,
            ) {
                (Some(m), Some(c)) if m.active => {
                    Some(visible_ranges(c.kind, &m.spans, c.last_seq))
                }
                _ => None,
            };
            self.convs.insert(conv.to_string(), ranges);
        }
        Ok(self.convs.get(conv).and_then(Option::as_ref))
    }

    /// Whether posting `seq` is a hit for this viewer and query, with its snippet.
    fn check(&mut self, seq: u64) -> Result<Verdict, SearchError> {
        if self.rtx.search_forgotten(seq)? {
            return Ok(Verdict::Skip);
        }
        let Some(raw) = self.rtx.log_raw(seq)? else {
            return Ok(Verdict::Skip);
        };
        let Ok(rec) = LogRecord::decode(&raw) else {
            return Ok(Verdict::Skip);
        };
        let Some(kind) = HitKind::of(&rec.kind) else {
            return Ok(Verdict::Skip);
        };
        let q = self.query;
        if q.since_us.is_some_and(|s| rec.ts < s) {
            return Ok(Verdict::Stop);
        }
        if q.until_us.is_some_and(|u| rec.ts > u) || q.kind.is_some_and(|k| k != kind) {
            return Ok(Verdict::Skip);
        }
        let conv = rec.stream.strip_prefix(crate::chat::CONV_STREAM_PREFIX);
        if kind == HitKind::Message {
            let Some(conv) = conv else {
                return Ok(Verdict::Skip);
            };
            if q.conv.as_deref().is_some_and(|c| c != conv) || self.visible_ranges(conv)?.is_none()
            {
                return Ok(Verdict::Skip);
            }
        } else if q.conv.is_some() {
            return Ok(Verdict::Skip);
        }
        // A purged or unreadable body is no hit.
        let Ok(entry) = self.log.decode(seq, &raw) else {
            return Ok(Verdict::Skip);
        };
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(&entry.body) else {
            return Ok(Verdict::Skip);
        };
        if kind == HitKind::Alarm {
            let source = body
                .pointer("/alarm/source")
                .and_then(serde_json::Value::as_str);
            if !source.is_some_and(|s| self.alarms.sees(s)) {
                return Ok(Verdict::Skip);
            }
        }
        let author = Author::parse(&rec.author);
        let mut hit_seq = seq;
        // An incident answer is its own entry (an amendment is another): the whole body is the
        // text, seen by the incident's members within their spans.
        let answer = rec.kind == crate::incidents::KIND_ANSWERED;
        if let (true, Some(conv)) = (answer, conv) {
            let in_range = self
                .visible_ranges(conv)?
                .is_some_and(|r| r.iter().any(|(lo, hi)| (*lo..=*hi).contains(&seq)));
            if !in_range {
                return Ok(Verdict::Skip);
            }
        } else if let (HitKind::Message, Some(conv)) = (kind, conv) {
            let target = match rec.kind.as_str() {
                "chat.edited" => body.get("target").and_then(serde_json::Value::as_u64),
                _ => Some(seq),
            };
            let Some(target) = target else {
                return Ok(Verdict::Skip);
            };
            let in_range = self
                .visible_ranges(conv)?
                .is_some_and(|r| r.iter().any(|(lo, hi)| (*lo..=*hi).contains(&target)));
            let Some(row) = read_message(self.log, self.rtx, conv, target)? else {
                return Ok(Verdict::Skip);
            };
            // Only the message's current text counts: the original until an edit, then the
            // newest edit; a redacted message is never a hit.
            let current = if target == seq {
                row.edited_seq.is_none()
            } else {
                row.edited_seq == Some(seq)
            };
            if !in_range || !current || row.redacted_seq.is_some() {
                return Ok(Verdict::Skip);
            }
            hit_seq = target;
        }
        if let Some(who) = &q.author {
            let who = who.to_lowercase();
            let source = body.get("source").and_then(serde_json::Value::as_str);
            let by_name = author.name().to_lowercase() == who || rec.author.to_lowercase() == who;
            let by_source =
                kind != HitKind::Message && source.is_some_and(|s| s.to_lowercase() == who);
            if !by_name && !by_source {
                return Ok(Verdict::Skip);
            }
        }
        let texts = tokenize::body_strings(&body);
        let Some(snippet) = snippet(&texts, self.terms) else {
            return Ok(Verdict::Skip);
        };
        let alarm = (kind == HitKind::Alarm)
            .then(|| {
                rec.stream
                    .strip_prefix("alarms/")
                    .and_then(|s| s.parse().ok())
            })
            .flatten();
        Ok(Verdict::Hit(Box::new(Hit {
            kind,
            seq: hit_seq,
            ts_us: rec.ts,
            author: rec.author.clone(),
            conv: conv
                .filter(|_| kind == HitKind::Message)
                .map(str::to_string),
            stream: rec.stream.clone(),
            alarm,
            snippet,
        })))
    }
}

fn term_matches(term: &Term, word: &str) -> bool {
    if term.prefix {
        word.starts_with(&term.text)
    } else {
        word == term.text
    }
}

/// The snippet of the first text with a match, if every term matches some word of `texts`:
/// up to [`SNIPPET_CONTEXT`] characters around the first match, each matching word marked.
pub fn snippet(texts: &[&str], terms: &[Term]) -> Option<String> {
    let words: BTreeSet<String> = texts.iter().flat_map(|t| tokenize::words(t)).collect();
    if !terms
        .iter()
        .all(|t| words.iter().any(|w| term_matches(t, w)))
    {
        return None;
    }
    let text = texts
        .iter()
        .find(|t| tokenize::words(t).any(|w| terms.iter().any(|term| term_matches(term, &w))))?;
    let chars: Vec<char> = text.chars().collect();
    // Word spans (char offsets) of the text, marked where a term matches.
    let mut spans = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_alphanumeric() {
            let start = i;
            while i < chars.len() && chars[i].is_alphanumeric() {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let word: String = word
                .chars()
                .flat_map(char::to_lowercase)
                .take(tokenize::MAX_TOKEN)
                .collect();
            if terms.iter().any(|t| term_matches(t, &word)) {
                spans.push((start, i));
            }
        } else {
            i += 1;
        }
    }
    let first = spans.first()?.0;
    let from = first.saturating_sub(SNIPPET_CONTEXT);
    let to = (first + SNIPPET_CONTEXT * 2).min(chars.len());
    let mut out = String::new();
    if from > 0 {
        out.push('…');
    }
    for (i, c) in chars.iter().enumerate().take(to).skip(from) {
        if spans.iter().any(|(s, _)| *s == i) {
            out.push(MARK_OPEN);
        }
        out.push(*c);
        if spans.iter().any(|(_, e)| *e == i + 1) {
            out.push(MARK_CLOSE);
        }
    }
    if spans.iter().any(|(s, e)| *s < to && *e > to) {
        out.push(MARK_CLOSE);
    }
    if to < chars.len() {
        out.push('…');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str, prefix: bool) -> Term {
        Term {
            text: text.into(),
            prefix,
        }
    }

    #[test]
    fn parse_reads_words_and_prefixes_and_refuses_bad_queries() {
        assert_eq!(
            parse("Pump pres*").unwrap(),
            [t("pump", false), t("pres", true)]
        );
        assert_eq!(
            parse("valve-ab12*").unwrap(),
            [t("valve", false), t("ab12", true)]
        );
        assert_eq!(parse("pu*").unwrap_err().code, "prefix_too_short");
        assert_eq!(parse("  ! ").unwrap_err().code, "empty_query");
        assert_eq!(parse(&"ab ".repeat(9)).unwrap(), [t("ab", false)]);
        let many: String = (0..9).map(|i| format!("w{i} ")).collect();
        assert_eq!(parse(&many).unwrap_err().code, "too_many_terms");
        assert_eq!(parse(&"a".repeat(300)).unwrap_err().code, "query_too_long");
    }

    #[test]
    fn snippet_marks_matches_and_needs_every_term() {
        let s = snippet(
            &["Pump 7 pressure high"],
            &[t("pump", false), t("pres", true)],
        )
        .unwrap();
        assert_eq!(s, "«Pump» 7 «pressure» high");
        assert!(snippet(&["Pump 7"], &[t("pump", false), t("valve", false)]).is_none());
        let long = format!("{} needle {}", "x ".repeat(100), "y ".repeat(100));
        let s = snippet(&[&long], &[t("needle", false)]).unwrap();
        assert!(s.starts_with('…') && s.ends_with('…') && s.contains("«needle»"));
    }
}
