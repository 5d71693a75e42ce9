//! Messages: send (idempotent by a client key), edit, redact, react, read markers and history.
//! The message view row holds the current text, sealed like entry bodies, and is updated in the
//! same transaction as the entry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::conversations::require_contact;
use super::{Actor, ChatBody, active_member, append, clean_text, direct_pair, no_conversation};
use crate::config::ChatConfig;
use crate::error::Rejection;
use crate::log::{AppendError, Log, SubmitError, Tx};
use crate::store::{AttachmentRef, ConvKind, MessageRow, ReadTx, StoreError};

/// Most attachments on one message.
pub const MAX_ATTACHMENTS: usize = 10;
/// Most people one message mentions.
const MAX_MENTIONS: usize = 50;
/// Most distinct reactions on one message.
const MAX_REACTIONS: usize = 32;
/// Default and largest history page.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 200;

/// A message to send.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// Chosen by the client, unique per user (1-64 printable ASCII): a retry with the same key
    /// returns the first send's seq and never stores a second message.
    pub key: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub reply_to: Option<u64>,
    /// Ids of uploaded attachments.
    #[serde(default)]
    pub attachments: Vec<String>,
}

/// The answer to a send.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Sent {
    pub conv: String,
    pub seq: u64,
    pub key: String,
    /// True when this key had already been used: nothing new was stored.
    pub duplicate: bool,
}

/// A message as history shows it: latest edit applied, redacted text hidden.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MessageView {
    pub seq: u64,
    pub author: String,
    pub ts_us: i64,
    pub text: String,
    pub mentions: Vec<String>,
    pub reply_to: Option<u64>,
    pub attachments: Vec<AttachmentRef>,
    pub edited_at_us: Option<i64>,
    pub redacted: bool,
    pub reactions: BTreeMap<String, Vec<String>>,
}

impl From<MessageRow> for MessageView {
    fn from(m: MessageRow) -> Self {
        Self {
            seq: m.seq,
            author: m.author,
            ts_us: m.ts_us,
            text: m.text,
            mentions: m.mentions,
            reply_to: m.reply_to,
            attachments: m.attachments,
            edited_at_us: m.edited_at_us,
            redacted: m.redacted_seq.is_some(),
            reactions: m.reactions,
        }
    }
}

/// The caller's read position after a read marker.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReadMarker {
    pub conv: String,
    pub last_read_seq: u64,
    pub unread: u64,
}

fn aad(conv: &str, seq: u64) -> Vec<u8> {
    format!("msg/{conv}/{seq}").into_bytes()
}

pub(super) fn seal_row(tx: &mut Tx<'_>, conv: &str, row: &MessageRow) -> Result<(), StoreError> {
    let plain = row.encode()?;
    let sealed = tx.key().seal_bytes(&aad(conv, row.seq), &plain)?;
    tx.views().put_message_sealed(conv, row.seq, &sealed)
}

fn open_row(
    key: &crate::store::DataKey,
    conv: &str,
    seq: u64,
    sealed: &[u8],
) -> Result<MessageRow, StoreError> {
    let plain = key.open_bytes(&aad(conv, seq), sealed)?;
    MessageRow::decode(&plain)
}

/// One message row, opened.
pub fn read_message(
    log: &Log,
    rtx: &ReadTx,
    conv: &str,
    seq: u64,
) -> Result<Option<MessageRow>, StoreError> {
    rtx.message_sealed(conv, seq)?
        .map(|s| MessageRow::decode(&log.open_view(&aad(conv, seq), &s)?))
        .transpose()
}

fn load_row(tx: &mut Tx<'_>, conv: &str, seq: u64) -> Result<MessageRow, AppendError> {
    let sealed = tx
        .views()
        .message_sealed(conv, seq)?
        .ok_or_else(|| Rejection::not_found("no_such_message", "no message with this seq here"))?;
    Ok(open_row(tx.key(), conv, seq, &sealed)?)
}

fn validate_key(key: &str) -> Result<(), Rejection> {
    if (1..=64).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(Rejection::invalid(
            "invalid_key",
            "key is 1-64 printable ASCII characters, unique per message",
        ))
    }
}

fn validate_text(text: &str, max: usize, allow_empty: bool) -> Result<(), Rejection> {
    if text.len() > max {
        return Err(Rejection::invalid(
            "message_too_long",
            format!("the text is {} bytes; the limit is {max}", text.len()),
        ));
    }
    if !allow_empty && text.trim().is_empty() {
        return Err(Rejection::invalid("empty_message", "the message is empty"));
    }
    if !clean_text(text) {
        return Err(Rejection::invalid(
            "invalid_text",
            "the text contains control characters",
        ));
    }
    Ok(())
}

/// The `@name` tokens of a text, lower-cased, without duplicates.
pub fn mention_candidates(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let bytes = text.as_bytes();
    for (i, _) in text.match_indices('@') {
        if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'@') {
            continue;
        }
        let name: String = text[i + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            .collect();
        let name = name.trim_end_matches(['.', '-', '_']).to_ascii_lowercase();
        if (3..=32).contains(&name.len()) && !out.contains(&name) {
            out.push(name);
        }
        if out.len() >= MAX_MENTIONS {
            break;
        }
    }
    out
}

/// Mentioned active members other than the author.
fn resolve_mentions(
    tx: &mut Tx<'_>,
    conv: &str,
    author: &str,
    text: &str,
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for name in mention_candidates(text) {
        if name != author && tx.views().member(conv, &name)?.is_some_and(|m| m.active) {
            out.push(name);
        }
    }
    Ok(out)
}

/// Sends a message. Durable when this returns; a repeated key returns the first seq.
pub async fn send(
    log: &Log,
    cfg: &ChatConfig,
    actor: &Actor,
    conv: &str,
    msg: SendMessage,
) -> Result<Sent, SubmitError> {
    let reject = SubmitError::Rejected;
    actor.require_poster().map_err(reject)?;
    validate_key(&msg.key).map_err(reject)?;
    validate_text(
        &msg.text,
        cfg.max_message_bytes,
        !msg.attachments.is_empty(),
    )
    .map_err(reject)?;
    if msg.attachments.len() > MAX_ATTACHMENTS {
        return Err(reject(Rejection::invalid(
            "too_many_attachments",
            format!("at most {MAX_ATTACHMENTS} attachments per message"),
        )));
    }
    let me = actor.user.clone();
    let id = conv.to_string();
    let mode = cfg.direct_messages;
    log.submit(move |tx| {
        if let Some(seq) = tx.views().idempotent(&me, &id, &msg.key)? {
            return Ok(Sent {
                conv: id.clone(),
                seq,
                key: msg.key.clone(),
                duplicate: true,
            });
        }
        let (mut c, mut mine) = active_member(tx, &id, &me)?;
        if c.kind == ConvKind::Direct
            && let Some((a, b)) = direct_pair(&id)
        {
            require_contact(tx, mode, &me, if a == me { b } else { a })?;
        }
        if let Some(r) = msg.reply_to
            && tx.views().message_sealed(&id, r)?.is_none()
        {
            return Err(Rejection::invalid(
                "invalid_reply",
                "reply_to is not a message of this conversation",
            )
            .into());
        }
        let mut attachments = Vec::with_capacity(msg.attachments.len());
        for a in &msg.attachments {
            attachments.push(super::attachments::usable(tx, a, &me)?);
        }
        let mentions = resolve_mentions(tx, &id, &me, &msg.text)?;
        let body = ChatBody::Message {
            conv: id.clone(),
            key: msg.key.clone(),
            text: msg.text.clone(),
            mentions: mentions.clone(),
            reply_to: msg.reply_to,
            attachments: attachments.clone(),
        };
        let seq = append(tx, &me, &body)?;
        c.message_count += 1;
        c.last_seq = seq;
        c.last_message_seq = seq;
        let row = MessageRow {
            seq,
            n: c.message_count,
            author: me.clone(),
            ts_us: tx.now_us(),
            text: msg.text.clone(),
            mentions: mentions.clone(),
            reply_to: msg.reply_to,
            attachments: attachments.clone(),
            edited_seq: None,
            edited_at_us: None,
            redacted_seq: None,
            redacted_by: None,
            reactions: BTreeMap::new(),
        };
        seal_row(tx, &id, &row)?;
        tx.views().put_idempotent(&me, &id, &msg.key, seq)?;
        for m in &mentions {
            tx.views().put_mention(m, &id, seq)?;
        }
        for a in &attachments {
            tx.views().put_attachment_conv(&a.id, &id)?;
            tx.views().put_attachment_ref(seq, &a.id)?;
        }
        // The sender has read what they wrote.
        mine.last_read_seq = seq;
        mine.read_count = c.message_count;
        tx.views().update_member(&mine)?;
        if c.kind == ConvKind::Direct {
            // A new message brings a hidden direct conversation back.
            for mut m in tx.views().members(&id)? {
                if m.hidden && m.user != me {
                    m.hidden = false;
                    tx.views().update_member(&m)?;
                }
            }
        }
        tx.views().put_conv(&c)?;
        Ok(Sent {
            conv: id.clone(),
            seq,
            key: msg.key.clone(),
            duplicate: false,
        })
    })
    .await
}

/// Replaces the text of one's own message; the old text stays in the log.
pub async fn edit(
    log: &Log,
    cfg: &ChatConfig,
    actor: &Actor,
    conv: &str,
    target: u64,
    text: &str,
) -> Result<u64, SubmitError> {
    actor.require_poster().map_err(SubmitError::Rejected)?;
    validate_text(text, cfg.max_message_bytes, false).map_err(SubmitError::Rejected)?;
    let me = actor.user.clone();
    let id = conv.to_string();
    let text = text.to_string();
    log.submit(move |tx| {
        active_member(tx, &id, &me)?;
        let mut row = load_row(tx, &id, target)?;
        if row.author != me {
            return Err(
                Rejection::forbidden("not_author", "only the author edits a message").into(),
            );
        }
        if row.redacted_seq.is_some() {
            return Err(Rejection::conflict("redacted", "the message was deleted").into());
        }
        let mentions = resolve_mentions(tx, &id, &me, &text)?;
        let seq = append(
            tx,
            &me,
            &ChatBody::Edited {
                conv: id.clone(),
                target,
                text: text.clone(),
                mentions: mentions.clone(),
            },
        )?;
        // Mentions follow the text: the message counts for whom it mentions now.
        for m in &row.mentions {
            if !mentions.contains(m) {
                tx.views().remove_mention(m, &id, target)?;
            }
        }
        for m in &mentions {
            if !row.mentions.contains(m) {
                tx.views().put_mention(m, &id, target)?;
            }
        }
        row.text = text.clone();
        row.mentions = mentions;
        row.edited_seq = Some(seq);
        row.edited_at_us = Some(tx.now_us());
        seal_row(tx, &id, &row)?;
        Ok(seq)
    })
    .await
}

/// Deletes a message's content (its author, or a site admin); the entry stays in the log.
pub async fn redact(log: &Log, actor: &Actor, conv: &str, target: u64) -> Result<u64, SubmitError> {
    let me = actor.user.clone();
    let actor = actor.clone();
    let id = conv.to_string();
    log.submit(move |tx| {
        let is_member = tx.views().member(&id, &me)?.is_some_and(|m| m.active);
        if !is_member && !actor.is_admin() {
            return Err(no_conversation().into());
        }
        let mut row = load_row(tx, &id, target)?;
        let own = row.author == me && actor.require_poster().is_ok();
        if !own && !actor.is_admin() {
            return Err(Rejection::forbidden(
                "not_author",
                "only the author or an admin deletes a message",
            )
            .into());
        }
        if row.redacted_seq.is_some() {
            return Err(Rejection::conflict("redacted", "the message was already deleted").into());
        }
        let seq = append(
            tx,
            &me,
            &ChatBody::Redacted {
                conv: id.clone(),
                target,
            },
        )?;
        for m in std::mem::take(&mut row.mentions) {
            tx.views().remove_mention(&m, &id, target)?;
        }
        for a in std::mem::take(&mut row.attachments) {
            tx.views().remove_attachment_conv(&a.id, &id)?;
        }
        row.text.clear();
        row.reactions.clear();
        row.redacted_seq = Some(seq);
        row.redacted_by = Some(me.clone());
        seal_row(tx, &id, &row)?;
        Ok(seq)
    })
    .await
}

fn validate_emoji(e: &str) -> Result<(), Rejection> {
    if (1..=32).contains(&e.len()) && !e.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Ok(())
    } else {
        Err(Rejection::invalid(
            "invalid_emoji",
            "a reaction is 1-32 bytes without spaces",
        ))
    }
}

/// Adds or removes the caller's reaction; `None` when nothing changed.
pub async fn react(
    log: &Log,
    actor: &Actor,
    conv: &str,
    target: u64,
    emoji: &str,
    added: bool,
) -> Result<Option<u64>, SubmitError> {
    actor.require_poster().map_err(SubmitError::Rejected)?;
    validate_emoji(emoji).map_err(SubmitError::Rejected)?;
    let me = actor.user.clone();
    let id = conv.to_string();
    let emoji = emoji.to_string();
    log.submit(move |tx| {
        active_member(tx, &id, &me)?;
        let mut row = load_row(tx, &id, target)?;
        if row.redacted_seq.is_some() {
            return Err(Rejection::conflict("redacted", "the message was deleted").into());
        }
        let who = row.reactions.get(&emoji).cloned().unwrap_or_default();
        if who.contains(&me) == added {
            return Ok(None);
        }
        if added && !row.reactions.contains_key(&emoji) && row.reactions.len() >= MAX_REACTIONS {
            return Err(Rejection::conflict(
                "too_many_reactions",
                "this message has too many different reactions",
            )
            .into());
        }
        let seq = append(
            tx,
            &me,
            &ChatBody::Reacted {
                conv: id.clone(),
                target,
                emoji: emoji.clone(),
                added,
            },
        )?;
        let list = row.reactions.entry(emoji.clone()).or_default();
        if added {
            list.push(me.clone());
        } else {
            list.retain(|u| *u != me);
            if list.is_empty() {
                row.reactions.remove(&emoji);
            }
        }
        seal_row(tx, &id, &row)?;
        Ok(Some(seq))
    })
    .await
}

/// Moves the caller's read marker forward to `seq` (never back); others see it as a receipt.
/// An auditor is refused (`read_only_role`): the marker is an entry others see.
pub async fn mark_read(
    log: &Log,
    actor: &Actor,
    conv: &str,
    seq: u64,
) -> Result<ReadMarker, SubmitError> {
    actor.require_not_auditor()?;
    let me = actor.user.clone();
    let id = conv.to_string();
    log.submit(move |tx| {
        let (c, mut m) = active_member(tx, &id, &me)?;
        if seq >= tx.next_seq() {
            return Err(
                Rejection::invalid("invalid_seq", "seq is beyond the end of the log").into(),
            );
        }
        // Read entries do not move `last_seq`, so marking read cannot feed on itself.
        let seq = seq.min(c.last_seq);
        if seq <= m.last_read_seq {
            return Ok(ReadMarker {
                conv: id.clone(),
                last_read_seq: m.last_read_seq,
                unread: c.message_count.saturating_sub(m.read_count),
            });
        }
        let read_count = match tx.views().messages_sealed(&id, 0, seq, true, 1)?.pop() {
            Some((s, sealed)) => open_row(tx.key(), &id, s, &sealed)?.n,
            None => 0,
        };
        append(
            tx,
            &me,
            &ChatBody::Read {
                conv: id.clone(),
                seq,
            },
        )?;
        m.last_read_seq = seq;
        m.read_count = m.read_count.max(read_count);
        tx.views().update_member(&m)?;
        Ok(ReadMarker {
            conv: id.clone(),
            last_read_seq: seq,
            unread: c.message_count.saturating_sub(m.read_count),
        })
    })
    .await
}

/// Which page of history.
#[derive(Debug, Clone, Copy, Default)]
pub struct Page {
    pub before: Option<u64>,
    pub after: Option<u64>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct History {
    /// Oldest first.
    pub messages: Vec<MessageView>,
    /// Whether more messages lie beyond this page in the direction asked.
    pub has_more: bool,
}

/// A page of a conversation's messages, for its active members only, and of those only what the
/// conversation's history policy lets them read (`replay::visible_ranges`, as replay uses).
pub fn history(log: &Log, user: &str, conv: &str, page: Page) -> Result<History, SubmitError> {
    let storage = super::conversations::storage;
    let rtx = log.read().map_err(storage)?;
    let (Some(m), Some(c)) = (
        rtx.member(conv, user).map_err(storage)?,
        rtx.conv(conv).map_err(storage)?,
    ) else {
        return Err(SubmitError::Rejected(no_conversation()));
    };
    if !m.active {
        return Err(SubmitError::Rejected(no_conversation()));
    }
    let visible = super::replay::visible_ranges(c.kind, &m.spans, c.last_seq);
    let limit = page.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(SubmitError::Rejected(Rejection::invalid(
            "invalid_limit",
            format!("limit is 1-{MAX_PAGE}"),
        )));
    }
    let rows = match (page.before, page.after) {
        (Some(_), Some(_)) => {
            return Err(SubmitError::Rejected(Rejection::invalid(
                "invalid_page",
                "give before or after, not both",
            )));
        }
        (None, Some(after)) => page_in(
            &rtx,
            conv,
            &visible,
            after.saturating_add(1),
            u64::MAX,
            false,
            limit + 1,
        ),
        (before, None) => {
            let to = before.map_or(u64::MAX, |b| b.saturating_sub(1));
            page_in(&rtx, conv, &visible, 0, to, true, limit + 1)
        }
    }
    .map_err(storage)?;
    let has_more = rows.len() > limit;
    let mut messages = Vec::with_capacity(limit);
    for (seq, sealed) in rows.into_iter().take(limit) {
        messages.push(MessageView::from(
            log.open_view(&aad(conv, seq), &sealed)
                .map_err(StoreError::from)
                .and_then(|plain| MessageRow::decode(&plain))
                .map_err(storage)?,
        ));
    }
    messages.sort_by_key(|m| m.seq);
    Ok(History { messages, has_more })
}

/// Up to `limit` sealed messages with seqs in `from..=to` that also lie in `ranges`, walking the
/// ranges newest or oldest first.
fn page_in(
    rtx: &ReadTx,
    conv: &str,
    ranges: &[(u64, u64)],
    from: u64,
    to: u64,
    newest_first: bool,
    limit: usize,
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let mut out = Vec::new();
    let mut walk: Vec<(u64, u64)> = ranges.to_vec();
    if newest_first {
        walk.reverse();
    }
    for (lo, hi) in walk {
        let (lo, hi) = (lo.max(from), hi.min(to));
        if lo > hi || out.len() >= limit {
            continue;
        }
        out.extend(rtx.messages_sealed(conv, lo, hi, newest_first, limit - out.len())?);
    }
    Ok(out)
}
