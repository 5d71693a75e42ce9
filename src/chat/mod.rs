//! Messaging domain rules: conversations and membership, messages, read markers, contacts,
//! attachments, presence and replay visibility. Every change is a log entry plus view updates.

pub mod attachment_gc;
pub mod attachment_limits;
pub mod attachments;
pub mod contacts;
pub mod conversations;
pub mod messages;
pub mod presence;
pub mod replay;
pub mod system_dm;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::error::Rejection;
use crate::log::{AppendError, Author, NewEntry, Tx};
use crate::store::{AttachmentRef, ConvKind, ConvRow, MemberRow, Role, StoreError, UserRow};

pub use presence::{Ephemeral, Live, PresenceStatus};

/// Log kinds of conversation entries; the body's `type` is the part after `chat.`.
pub const KIND_PREFIX: &str = "chat.";
/// Log kinds of contact entries; the body's `type` is the part after `contact.`.
pub const CONTACT_PREFIX: &str = "contact.";
/// Streams of conversations are `conv/<id>`.
pub const CONV_STREAM_PREFIX: &str = "conv/";
/// Streams of contact pairs are `contacts/<a>:<b>` with `a < b`.
pub const CONTACT_STREAM_PREFIX: &str = "contacts/";

/// The body of a `chat.*` entry. `type` names the change; `conv` is always present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatBody {
    Created {
        conv: String,
        conv_kind: ConvKind,
        name: String,
        members: Vec<String>,
    },
    Joined {
        conv: String,
        users: Vec<String>,
        by: String,
    },
    Left {
        conv: String,
        users: Vec<String>,
        by: String,
        /// Who became owner because the last owner left.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new_owner: Option<String>,
    },
    Renamed {
        conv: String,
        name: String,
    },
    Message {
        conv: String,
        /// The sender's idempotency key: a retry with it returns this entry's seq.
        key: String,
        text: String,
        mentions: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<u64>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<AttachmentRef>,
    },
    Edited {
        conv: String,
        target: u64,
        text: String,
        mentions: Vec<String>,
    },
    Redacted {
        conv: String,
        target: u64,
    },
    Reacted {
        conv: String,
        target: u64,
        emoji: String,
        added: bool,
    },
    Read {
        conv: String,
        seq: u64,
    },
}

impl ChatBody {
    /// The log kind: `chat.<type>`.
    pub fn kind(&self) -> &'static str {
        match self {
            ChatBody::Created { .. } => "chat.created",
            ChatBody::Joined { .. } => "chat.joined",
            ChatBody::Left { .. } => "chat.left",
            ChatBody::Renamed { .. } => "chat.renamed",
            ChatBody::Message { .. } => "chat.message",
            ChatBody::Edited { .. } => "chat.edited",
            ChatBody::Redacted { .. } => "chat.redacted",
            ChatBody::Reacted { .. } => "chat.reacted",
            ChatBody::Read { .. } => "chat.read",
        }
    }

    pub fn conv(&self) -> &str {
        match self {
            ChatBody::Created { conv, .. }
            | ChatBody::Joined { conv, .. }
            | ChatBody::Left { conv, .. }
            | ChatBody::Renamed { conv, .. }
            | ChatBody::Message { conv, .. }
            | ChatBody::Edited { conv, .. }
            | ChatBody::Redacted { conv, .. }
            | ChatBody::Reacted { conv, .. }
            | ChatBody::Read { conv, .. } => conv,
        }
    }
}

/// Who is acting: the lower-cased username and the site role.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user: String,
    pub role: Role,
}

impl Actor {
    pub fn of(row: &UserRow) -> Self {
        Self {
            user: crate::users::key(&row.username),
            role: row.role,
        }
    }

    /// Viewers read; posting needs at least an operator.
    pub fn require_poster(&self) -> Result<(), Rejection> {
        if self.role >= Role::Operator {
            Ok(())
        } else {
            Err(Rejection::forbidden(
                "read_only",
                "viewers can read but not post",
            ))
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// An auditor reads but changes nothing, whichever transport it comes by (HTTP or socket).
    pub fn require_not_auditor(&self) -> Result<(), Rejection> {
        if self.role == Role::Auditor {
            Err(Rejection::forbidden(
                "read_only_role",
                "an auditor reads but changes nothing",
            ))
        } else {
            Ok(())
        }
    }
}

pub fn conv_stream(conv: &str) -> String {
    format!("{CONV_STREAM_PREFIX}{conv}")
}

/// The id of the one direct conversation of two users (lower-cased usernames).
pub fn direct_id(a: &str, b: &str) -> String {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    format!("dm:{x}:{y}")
}

/// The two users of a direct conversation id.
pub fn direct_pair(id: &str) -> Option<(&str, &str)> {
    id.strip_prefix("dm:")?.split_once(':')
}

/// Checks the shape of a conversation id from a URL or frame: 1-80 of `a-z 0-9 : . _ -`.
pub fn validate_conv_id(id: &str) -> Result<(), Rejection> {
    let ok = !id.is_empty()
        && id.len() <= 80
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b":._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Rejection::not_found(
            "no_such_conversation",
            "no conversation with this id",
        ))
    }
}

/// A fresh random id with a prefix, e.g. `g-3f9a…`.
pub fn random_id(prefix: &str) -> Result<String, StoreError> {
    let mut b = [0u8; 10];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| StoreError::Random)?;
    Ok(format!("{prefix}-{}", hex::encode(b)))
}

pub(crate) fn no_conversation() -> Rejection {
    Rejection::not_found("no_such_conversation", "no conversation with this id")
}

/// Appends a chat entry to the conversation's stream, authored by the user `by`.
pub(crate) fn append(tx: &mut Tx<'_>, by: &str, body: &ChatBody) -> Result<u64, AppendError> {
    let entry = NewEntry::json(
        body.kind(),
        &conv_stream(body.conv()),
        &Author::user(by),
        body,
    )?;
    tx.append(entry)
}

/// The conversation and the caller's active membership, or 404 (a non-member learns nothing).
pub(crate) fn active_member(
    tx: &mut Tx<'_>,
    conv: &str,
    user: &str,
) -> Result<(ConvRow, MemberRow), AppendError> {
    let c = tx.views().conv(conv)?.ok_or_else(no_conversation)?;
    match tx.views().member(conv, user)? {
        Some(m) if m.active => Ok((c, m)),
        _ => Err(no_conversation().into()),
    }
}

/// Text with no control characters other than tab and newlines.
pub(crate) fn clean_text(s: &str) -> bool {
    !s.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
}
