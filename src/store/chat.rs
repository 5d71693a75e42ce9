//! Typed access to the messaging view tables, for read transactions and for the sequencer's write
//! transaction alike (the read half is one macro so both see the same rows the same way).

use redb::ReadableTable;

use super::{
    ATTACHMENT_CHUNKS, ATTACHMENT_CONVS, ATTACHMENTS, AttachmentRow, CHANNELS, CONTACTS, CONVS,
    ContactRow, ConvRow, IDEMPOTENCY, MEMBERS, MENTIONS, MESSAGES, MemberRow, ReadTx, STREAM_INDEX,
    StoreError, USER_CONVS, WriteTx,
};

/// Most rows one listing call returns, whatever the caller asks.
const MAX_LIST: usize = 10_000;

macro_rules! chat_reads {
    () => {
        pub fn conv(&self, id: &str) -> Result<Option<ConvRow>, StoreError> {
            CONVS.get(self, id)
        }

        pub fn member(&self, conv: &str, user: &str) -> Result<Option<MemberRow>, StoreError> {
            MEMBERS.get(self, (conv, user))
        }

        /// Every member row of a conversation, past members included, by username.
        pub fn members(&self, conv: &str) -> Result<Vec<MemberRow>, StoreError> {
            let mut out = Vec::new();
            MEMBERS.range(self, (conv, "").., |k, m| {
                let more = k.0 == conv && out.len() < MAX_LIST;
                if more {
                    out.push(m);
                }
                more
            })?;
            Ok(out)
        }

        /// Ids of every conversation the user is or was in.
        pub fn user_convs(&self, user: &str) -> Result<Vec<String>, StoreError> {
            let t = self.txn.open_table(USER_CONVS)?;
            let mut out = Vec::new();
            for row in t.range((user, "")..)? {
                let (k, _) = row?;
                let (u, c) = k.value();
                if u != user || out.len() >= MAX_LIST {
                    break;
                }
                out.push(c.to_string());
            }
            Ok(out)
        }

        pub fn channel(&self, name: &str) -> Result<Option<String>, StoreError> {
            let t = self.txn.open_table(CHANNELS)?;
            let id = t.get(name)?.map(|v| v.value().to_string());
            Ok(id)
        }

        /// Every channel as (lower-cased name, conversation id).
        pub fn channels(&self) -> Result<Vec<(String, String)>, StoreError> {
            let t = self.txn.open_table(CHANNELS)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                if out.len() >= MAX_LIST {
                    break;
                }
                out.push((k.value().to_string(), v.value().to_string()));
            }
            Ok(out)
        }

        /// The sealed row of one message.
        pub fn message_sealed(&self, conv: &str, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
            let t = self.txn.open_table(MESSAGES)?;
            let v = t.get((conv, seq))?.map(|v| v.value().to_vec());
            Ok(v)
        }

        /// Sealed message rows with `from <= seq <= to`, newest first when `newest_first`,
        /// at most `limit`.
        pub fn messages_sealed(
            &self,
            conv: &str,
            from: u64,
            to: u64,
            newest_first: bool,
            limit: usize,
        ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
            let t = self.txn.open_table(MESSAGES)?;
            let mut out = Vec::new();
            if from > to {
                return Ok(out);
            }
            let range = t.range((conv, from)..=(conv, to))?;
            let mut push = |row: Result<
                (
                    redb::AccessGuard<'_, (&str, u64)>,
                    redb::AccessGuard<'_, &[u8]>,
                ),
                redb::StorageError,
            >|
             -> Result<bool, StoreError> {
                let (k, v) = row?;
                out.push((k.value().1, v.value().to_vec()));
                Ok(out.len() < limit.min(MAX_LIST))
            };
            if newest_first {
                for row in range.rev() {
                    if !push(row)? {
                        break;
                    }
                }
            } else {
                for row in range {
                    if !push(row)? {
                        break;
                    }
                }
            }
            Ok(out)
        }

        pub fn idempotent(
            &self,
            user: &str,
            conv: &str,
            key: &str,
        ) -> Result<Option<u64>, StoreError> {
            let t = self.txn.open_table(IDEMPOTENCY)?;
            let v = t.get((user, conv, key))?.map(|v| v.value());
            Ok(v)
        }

        /// Messages in `conv` after `after` that mention `user`.
        pub fn mention_count(&self, user: &str, conv: &str, after: u64) -> Result<u64, StoreError> {
            let t = self.txn.open_table(MENTIONS)?;
            let mut n = 0u64;
            for row in t.range((user, conv, after.saturating_add(1))..=(user, conv, u64::MAX))? {
                row?;
                n += 1;
            }
            Ok(n)
        }

        pub fn contact(&self, owner: &str, other: &str) -> Result<Option<ContactRow>, StoreError> {
            CONTACTS.get(self, (owner, other))
        }

        /// Every contact row owned by `owner`, in any state.
        pub fn contacts(&self, owner: &str) -> Result<Vec<ContactRow>, StoreError> {
            let mut out = Vec::new();
            CONTACTS.range(self, (owner, "").., |k, c| {
                let more = k.0 == owner && out.len() < MAX_LIST;
                if more {
                    out.push(c);
                }
                more
            })?;
            Ok(out)
        }

        pub fn attachment(&self, id: &str) -> Result<Option<AttachmentRow>, StoreError> {
            ATTACHMENTS.get(self, id)
        }

        /// Conversations an attachment was posted in.
        pub fn attachment_convs(&self, id: &str) -> Result<Vec<String>, StoreError> {
            let t = self.txn.open_table(ATTACHMENT_CONVS)?;
            let mut out = Vec::new();
            for row in t.range((id, "")..)? {
                let (k, _) = row?;
                let (a, c) = k.value();
                if a != id || out.len() >= MAX_LIST {
                    break;
                }
                out.push(c.to_string());
            }
            Ok(out)
        }
    };
}

impl ReadTx {
    chat_reads!();

    /// One sealed chunk of an attachment.
    pub fn attachment_chunk(&self, id: &str, n: u32) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self.txn.open_table(ATTACHMENT_CHUNKS)?;
        let v = t.get((id, n))?.map(|v| v.value().to_vec());
        Ok(v)
    }

    /// Seqs of `stream` with `from <= seq <= to`, oldest first, at most `limit`.
    pub fn stream_seqs(
        &self,
        stream: &str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let t = self.txn.open_table(STREAM_INDEX)?;
        let mut out = Vec::new();
        if from > to {
            return Ok(out);
        }
        for row in t.range((stream, from)..=(stream, to))? {
            let (k, _) = row?;
            out.push(k.value().1);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

impl WriteTx {
    chat_reads!();

    pub fn put_conv(&mut self, row: &ConvRow) -> Result<(), StoreError> {
        CONVS.put(self, row.id.as_str(), row)
    }

    /// Stores a member row and indexes the conversation under the user.
    pub fn put_member(&mut self, row: &MemberRow) -> Result<(), StoreError> {
        let conv_user = (row.conv.as_str(), row.user.as_str());
        MEMBERS.put(self, conv_user, row)?;
        self.put(USER_CONVS, (row.user.as_str(), row.conv.as_str()), ())
    }

    /// Rewrites a member row that is already stored (read marker, hidden flag) and leaves the
    /// user→conversation index alone: `put_member` wrote it with the row and no update changes
    /// it, so a send touches one tree fewer. A row not stored yet is refused as a bug.
    pub fn update_member(&mut self, row: &MemberRow) -> Result<(), StoreError> {
        let conv_user = (row.conv.as_str(), row.user.as_str());
        if MEMBERS.replace(self, conv_user, row)? {
            Ok(())
        } else {
            Err(StoreError::NotStored { what: "member" })
        }
    }

    pub fn put_channel(&mut self, name: &str, conv: &str) -> Result<(), StoreError> {
        self.put(CHANNELS, name, conv)
    }

    pub fn remove_channel(&mut self, name: &str) -> Result<(), StoreError> {
        self.remove(CHANNELS, name)
    }

    pub fn put_message_sealed(
        &mut self,
        conv: &str,
        seq: u64,
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        self.put(MESSAGES, (conv, seq), sealed)
    }

    pub fn put_idempotent(
        &mut self,
        user: &str,
        conv: &str,
        key: &str,
        seq: u64,
    ) -> Result<(), StoreError> {
        self.put(IDEMPOTENCY, (user, conv, key), seq)
    }

    pub fn put_mention(&mut self, user: &str, conv: &str, seq: u64) -> Result<(), StoreError> {
        self.put(MENTIONS, (user, conv, seq), ())
    }

    pub fn remove_mention(&mut self, user: &str, conv: &str, seq: u64) -> Result<(), StoreError> {
        self.remove(MENTIONS, (user, conv, seq))
    }

    pub fn put_contact(&mut self, row: &ContactRow) -> Result<(), StoreError> {
        let pair = (row.owner.as_str(), row.other.as_str());
        CONTACTS.put(self, pair, row)
    }

    pub fn put_attachment(&mut self, row: &AttachmentRow) -> Result<(), StoreError> {
        ATTACHMENTS.put(self, row.id.as_str(), row)
    }

    pub fn put_attachment_chunk(
        &mut self,
        id: &str,
        n: u32,
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        self.put(ATTACHMENT_CHUNKS, (id, n), sealed)
    }

    /// Counts one more message in `conv` carrying the attachment.
    pub fn put_attachment_conv(&mut self, id: &str, conv: &str) -> Result<(), StoreError> {
        self.attachment_posted(id)?;
        let n = self.attachment_conv_count(id, conv)?;
        self.put(ATTACHMENT_CONVS, (id, conv), n.saturating_add(1))
    }
}

impl WriteTx {
    /// Counts one message fewer; at zero the conversation's members lose access.
    pub fn remove_attachment_conv(&mut self, id: &str, conv: &str) -> Result<(), StoreError> {
        match self.attachment_conv_count(id, conv)? {
            n if n <= 1 => self.remove(ATTACHMENT_CONVS, (id, conv)),
            n => self.put(ATTACHMENT_CONVS, (id, conv), n - 1),
        }
    }

    fn attachment_conv_count(&self, id: &str, conv: &str) -> Result<u32, StoreError> {
        let t = self.txn.open_table(ATTACHMENT_CONVS)?;
        let n = t.get((id, conv))?.map_or(0, |v| v.value());
        Ok(n)
    }
}
