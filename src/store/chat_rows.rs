//! Stored rows of the messaging views (conversations, members, messages, contacts, attachments),
//! each versioned; message rows and attachment chunks are sealed by the caller before they land.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::StoreError;
use super::rows::{from_versioned_json, versioned_json};

macro_rules! versioned_row {
    ($t:ty, $what:literal) => {
        impl $t {
            pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
                versioned_json(self)
            }

            pub fn decode(b: &[u8]) -> Result<Self, StoreError> {
                from_versioned_json(b, $what)
            }
        }

        impl super::table::Row for $t {
            fn encode(&self) -> Result<Vec<u8>, StoreError> {
                <$t>::encode(self)
            }

            fn decode(b: &[u8]) -> Result<Self, StoreError> {
                <$t>::decode(b)
            }
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConvKind {
    Direct,
    Group,
    Channel,
    /// An incident's conversation (`incidents`): opened only through the incidents API.
    Incident,
}

/// A conversation. Keyed by its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvRow {
    pub id: String,
    pub kind: ConvKind,
    /// Empty for direct conversations.
    pub name: String,
    pub created_by: String,
    pub created_at_us: i64,
    /// Seq of the newest entry of any kind in the conversation (orders the list).
    pub last_seq: u64,
    /// Seq of the newest message, 0 if none.
    pub last_message_seq: u64,
    /// Messages ever posted, redacted ones included; a message's `n` is its place in this count.
    pub message_count: u64,
    pub member_count: u32,
}
versioned_row!(ConvRow, "conversation");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    Owner,
    Member,
}

/// A stretch of membership: from the seq that added the user to the seq that removed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub from: u64,
    pub to: Option<u64>,
}

/// Most spans kept per member; older ones are dropped (replay then starts at the oldest kept).
pub const MAX_SPANS: usize = 16;

/// A user's place in a conversation, kept after they leave (for replay of what they saw).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRow {
    pub conv: String,
    /// Lower-cased username.
    pub user: String,
    pub role: MemberRole,
    pub active: bool,
    pub spans: Vec<Span>,
    /// Newest seq the user has read up to.
    pub last_read_seq: u64,
    /// The conversation's message count at `last_read_seq`.
    pub read_count: u64,
    /// Hidden from the user's list (a removed contact's direct conversation).
    pub hidden: bool,
}
versioned_row!(MemberRow, "member");

impl MemberRow {
    /// Whether the user was a member when entry `seq` was written.
    pub fn saw(&self, seq: u64) -> bool {
        self.spans
            .iter()
            .any(|s| s.from <= seq && s.to.is_none_or(|to| seq <= to))
    }
}

/// A message as it reads now: latest edit applied, redaction applied. Stored sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRow {
    pub seq: u64,
    /// Place in the conversation's message count, from 1.
    pub n: u64,
    pub author: String,
    pub ts_us: i64,
    pub text: String,
    pub mentions: Vec<String>,
    pub reply_to: Option<u64>,
    pub attachments: Vec<AttachmentRef>,
    pub edited_seq: Option<u64>,
    pub edited_at_us: Option<i64>,
    pub redacted_seq: Option<u64>,
    pub redacted_by: Option<String>,
    /// emoji → usernames, in the order they reacted.
    pub reactions: BTreeMap<String, Vec<String>>,
}
versioned_row!(MessageRow, "message");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContactState {
    /// The owner asked the other.
    Outgoing,
    /// The other asked the owner.
    Incoming,
    Accepted,
    /// Rejected or removed; kept so replay still finds the pair's stream.
    None,
}

/// One side of a contact pair; both sides are stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRow {
    pub owner: String,
    pub other: String,
    pub state: ContactState,
    pub since_us: i64,
}
versioned_row!(ContactRow, "contact");

/// What a message carries of an attachment, enough to show it without another request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttachmentRef {
    pub id: String,
    pub name: String,
    pub mime: String,
    pub size: u64,
}

/// An uploaded file; the content is in sealed chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRow {
    pub id: String,
    pub size: u64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// The sniffed media type.
    pub mime: String,
    pub name: String,
    pub uploader: String,
    pub created_at_us: i64,
    pub chunks: u32,
}
versioned_row!(AttachmentRow, "attachment");
