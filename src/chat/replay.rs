//! Chat's audience on a live socket: members see a conversation's entries, membership changes
//! apply at their seq, and replay reads only the spans a user was a member for; redacted text is
//! scrubbed on replay.

use std::collections::HashSet;
use std::sync::Arc;

use super::contacts::pair_of_stream;
use super::{CONV_STREAM_PREFIX, ChatBody};
use crate::audience::{Audience, Viewer};
use crate::log::{Entry, Log};
use crate::store::{ConvKind, ReadTx, Span, StoreError};

/// The chat domain's entry kinds on a socket.
/// `incident.` entries live on their conversation's stream and have the same audience.
pub const KINDS: &[&str] = &[super::KIND_PREFIX, super::CONTACT_PREFIX, "incident."];

/// Chat's audience factory, registered in the composition root as domain `chat`.
pub fn audience(rtx: &ReadTx, viewer: &Viewer) -> Result<Box<dyn Audience>, StoreError> {
    Ok(Box::new(Visibility::load(rtx, &viewer.user)?))
}

/// A user's live view: the conversations they are in now.
#[derive(Debug, Clone)]
pub struct Visibility {
    user: String,
    convs: HashSet<String>,
}

impl Visibility {
    /// The user's active memberships in this read snapshot.
    pub fn load(rtx: &ReadTx, user: &str) -> Result<Self, StoreError> {
        let mut convs = HashSet::new();
        for id in rtx.user_convs(user)? {
            if rtx.member(&id, user)?.is_some_and(|m| m.active) {
                convs.insert(id);
            }
        }
        Ok(Self {
            user: user.to_string(),
            convs,
        })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn is_member(&self, conv: &str) -> bool {
        self.convs.contains(conv)
    }

    /// The conversations, for presence audiences.
    pub fn convs(&self) -> Arc<[String]> {
        self.convs.iter().cloned().collect()
    }

    /// Applies `e` if it changes membership, as [`Visibility::admit`] would, without the verdict:
    /// a socket that keeps this set only for typing and presence calls it for every live entry,
    /// and a message (most entries) changes nothing, so it costs no lookup in the set.
    pub fn observe(&mut self, e: &Entry) {
        if changes_membership(&e.kind) {
            let _ = self.admit(e);
        }
    }

    /// Whether the user sees `e`, applying membership changes in seq order: the user sees the
    /// entry that adds them and the one that removes them, nothing of the conversation after.
    pub fn admit(&mut self, e: &Entry) -> bool {
        if let Some(conv) = e.stream.strip_prefix(CONV_STREAM_PREFIX) {
            if changes_membership(&e.kind)
                && let Ok(body) = serde_json::from_slice::<ChatBody>(&e.body)
            {
                match body {
                    ChatBody::Created { members: users, .. } | ChatBody::Joined { users, .. }
                        if users.contains(&self.user) =>
                    {
                        self.convs.insert(conv.to_string());
                        return true;
                    }
                    ChatBody::Left { users, .. } if users.contains(&self.user) => {
                        return self.convs.remove(conv);
                    }
                    _ => {}
                }
            }
            return self.convs.contains(conv);
        }
        pair_of_stream(&e.stream).is_some_and(|(a, b)| a == self.user || b == self.user)
    }
}

/// The kinds whose body can add or remove members of a conversation.
fn changes_membership(kind: &str) -> bool {
    matches!(kind, "chat.created" | "chat.joined" | "chat.left")
}

/// How much of a conversation's past a member may read, after Matrix's `history_visibility`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryPolicy {
    /// Everything up to the end of their membership, including what came before they joined.
    Shared,
    /// Only what was written while they were a member.
    Joined,
}

/// Channels are open to anyone to join, so their past is `Shared`; groups and direct
/// conversations are `Joined`: an invited member never reads what was said before.
pub fn history_policy(kind: ConvKind) -> HistoryPolicy {
    match kind {
        // Whoever is called into an incident reads it from the start.
        ConvKind::Channel | ConvKind::Incident => HistoryPolicy::Shared,
        ConvKind::Direct | ConvKind::Group => HistoryPolicy::Joined,
    }
}

/// The one rule for REST history, last messages and replay: the seq ranges (inclusive, oldest
/// first, within `1..=head`) of a conversation that someone with these membership `spans` reads.
/// No spans (an admin looking on) reads nothing.
pub fn visible_ranges(kind: ConvKind, spans: &[Span], head: u64) -> Vec<(u64, u64)> {
    let end = |s: &Span| s.to.map_or(head, |to| to.min(head));
    match history_policy(kind) {
        HistoryPolicy::Joined => spans
            .iter()
            .map(|s| (s.from, end(s)))
            .filter(|(lo, hi)| lo <= hi)
            .collect(),
        HistoryPolicy::Shared => spans
            .iter()
            .map(end)
            .max()
            .map(|hi| vec![(1, hi)])
            .unwrap_or_default(),
    }
}

/// Whether `seq` lies in one of `ranges`.
pub fn in_ranges(ranges: &[(u64, u64)], seq: u64) -> bool {
    ranges.iter().any(|&(lo, hi)| lo <= seq && seq <= hi)
}

impl Audience for Visibility {
    fn admit(&mut self, e: &Entry) -> bool {
        Visibility::admit(self, e)
    }

    /// Every seq in `(since, head]` the user may see under each conversation's
    /// `history_policy` (`visible_ranges`); history they may not see is never read.
    fn replay(
        &self,
        rtx: &ReadTx,
        since: u64,
        head: u64,
        room: usize,
    ) -> Result<Option<Vec<u64>>, StoreError> {
        let user = self.user.as_str();
        let from = since.saturating_add(1);
        let mut seqs = Vec::new();
        let take =
            |stream: &str, lo: u64, hi: u64, seqs: &mut Vec<u64>| -> Result<bool, StoreError> {
                if lo > hi {
                    return Ok(true);
                }
                let left = room + 1 - seqs.len().min(room + 1);
                seqs.extend(rtx.stream_seqs(stream, lo, hi, left)?);
                Ok(seqs.len() <= room)
            };
        for id in rtx.user_convs(user)? {
            let Some(m) = rtx.member(&id, user)? else {
                continue;
            };
            let Some(c) = rtx.conv(&id)? else {
                continue;
            };
            let stream = super::conv_stream(&id);
            for (lo, hi) in visible_ranges(c.kind, &m.spans, head) {
                if !take(&stream, from.max(lo), hi, &mut seqs)? {
                    return Ok(None);
                }
            }
        }
        for c in rtx.contacts(user)? {
            let stream = super::contacts::contact_stream(user, &c.other);
            if !take(&stream, from, head, &mut seqs)? {
                return Ok(None);
            }
        }
        Ok(Some(seqs))
    }
}

/// The body to send on replay: a message (or an edit of one) that was redacted since loses its
/// text and attachments. `None` means send the stored body as it is.
pub fn scrub(log: &Log, rtx: &ReadTx, e: &Entry) -> Result<Option<Vec<u8>>, StoreError> {
    if !matches!(e.kind.as_str(), "chat.message" | "chat.edited") {
        return Ok(None);
    }
    let Ok(mut body) = serde_json::from_slice::<ChatBody>(&e.body) else {
        return Ok(None);
    };
    let (conv, target) = match &body {
        ChatBody::Message { conv, .. } => (conv.clone(), e.seq),
        ChatBody::Edited { conv, target, .. } => (conv.clone(), *target),
        _ => return Ok(None),
    };
    let redacted = super::messages::read_message(log, rtx, &conv, target)?
        .is_some_and(|m| m.redacted_seq.is_some());
    if !redacted {
        return Ok(None);
    }
    match &mut body {
        ChatBody::Message {
            text,
            attachments,
            mentions,
            ..
        } => {
            text.clear();
            attachments.clear();
            mentions.clear();
        }
        ChatBody::Edited { text, mentions, .. } => {
            text.clear();
            mentions.clear();
        }
        _ => {}
    }
    serde_json::to_vec(&body)
        .map(Some)
        .map_err(|source| StoreError::Encode {
            what: "replayed body",
            source,
        })
}
