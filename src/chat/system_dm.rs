//! Direct messages from the server itself (`system`) to one person: one conversation per person
//! (`dm:<user>:system`), created if missing, with the person its only member. Used by alarm escalation.

use std::collections::BTreeMap;

use super::conversations::{admit, new_conv};
use super::messages::seal_row;
use super::{ChatBody, conv_stream, direct_id};
use crate::log::{AppendError, Author, NewEntry, Tx};
use crate::store::{ConvKind, MemberRole, MessageRow, UserStatus};

/// The peer name of the server's direct conversations (a reserved username).
pub const SYSTEM_PEER: &str = "system";

fn append_system(tx: &mut Tx<'_>, body: &ChatBody) -> Result<u64, AppendError> {
    let entry = NewEntry::json(
        body.kind(),
        &conv_stream(body.conv()),
        &Author::System,
        body,
    )?;
    tx.append(entry)
}

/// Sends `text` from `system` to `user` (a lower-cased username) inside the job: opens the
/// conversation first when it does not exist yet. `key` is the message's idempotency key.
/// Returns the message's seq, or `None` when `user` is not an active account (nothing written).
pub fn send_in_tx(
    tx: &mut Tx<'_>,
    user: &str,
    key: &str,
    text: &str,
) -> Result<Option<u64>, AppendError> {
    if !tx
        .views()
        .user(user)?
        .is_some_and(|u| u.status == UserStatus::Active)
    {
        return Ok(None);
    }
    let id = direct_id(user, SYSTEM_PEER);
    let mut conv = match tx.views().conv(&id)? {
        Some(c) => c,
        None => {
            let body = ChatBody::Created {
                conv: id.clone(),
                conv_kind: ConvKind::Direct,
                name: String::new(),
                members: vec![user.to_string()],
            };
            let seq = append_system(tx, &body)?;
            let now = tx.now_us();
            new_conv(
                id.clone(),
                ConvKind::Direct,
                String::new(),
                SYSTEM_PEER,
                now,
                seq,
            )
        }
    };
    // Back in (and un-hidden) if the person left or hid it.
    let mut member = tx.views().member(&id, user)?;
    if !member.as_ref().is_some_and(|m| m.active) {
        let seq = match conv.last_seq {
            s if conv.member_count == 0 && member.is_none() => s,
            _ => append_system(
                tx,
                &ChatBody::Joined {
                    conv: id.clone(),
                    users: vec![user.to_string()],
                    by: SYSTEM_PEER.to_string(),
                },
            )?,
        };
        admit(tx, &mut conv, user, MemberRole::Member, seq)?;
        member = tx.views().member(&id, user)?;
    }
    if let Some(mut m) = member
        && m.hidden
    {
        m.hidden = false;
        tx.views().put_member(&m)?;
    }
    let body = ChatBody::Message {
        conv: id.clone(),
        key: key.to_string(),
        text: text.to_string(),
        mentions: Vec::new(),
        reply_to: None,
        attachments: Vec::new(),
    };
    let seq = append_system(tx, &body)?;
    conv.message_count += 1;
    conv.last_seq = seq;
    conv.last_message_seq = seq;
    let row = MessageRow {
        seq,
        n: conv.message_count,
        author: SYSTEM_PEER.to_string(),
        ts_us: tx.now_us(),
        text: text.to_string(),
        mentions: Vec::new(),
        reply_to: None,
        attachments: Vec::new(),
        edited_seq: None,
        edited_at_us: None,
        redacted_seq: None,
        redacted_by: None,
        reactions: BTreeMap::new(),
    };
    seal_row(tx, &id, &row)?;
    tx.views().put_conv(&conv)?;
    Ok(Some(seq))
}
