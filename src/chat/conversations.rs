//! Conversations and membership: direct (one per pair), groups (owner invites) and channels (anyone
//! joins); listing with unread and mention counts. Membership changes are entries and apply at once.

use serde::{Deserialize, Serialize};

use super::messages::{MessageView, read_message};
use super::{Actor, ChatBody, append, direct_id, direct_pair, no_conversation};
use crate::config::ChatConfig;
use crate::config::DirectMessages;
use crate::error::Rejection;
use crate::log::{AppendError, Log, SubmitError, Tx};
use crate::store::{
    ContactState, ConvKind, ConvRow, MAX_SPANS, MemberRole, MemberRow, Span, StoreError, UserStatus,
};

/// A conversation in the caller's list.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConvSummary {
    pub id: String,
    pub kind: ConvKind,
    pub name: String,
    /// For a direct conversation: the other person.
    pub peer: Option<String>,
    pub member_count: u32,
    pub last_seq: u64,
    pub last_message: Option<MessageView>,
    pub last_read_seq: u64,
    pub unread: u64,
    pub mentions: u64,
    pub role: MemberRole,
}

/// A member as the other members see them ("seen by" comes from `last_read_seq`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberView {
    pub username: String,
    pub role: MemberRole,
    pub last_read_seq: u64,
}

/// One conversation with its members.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConvDetail {
    #[serde(flatten)]
    pub summary: ConvSummary,
    pub members: Vec<MemberView>,
}

/// A channel anyone may browse.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelInfo {
    pub id: String,
    pub name: String,
    pub member_count: u32,
    pub joined: bool,
}

fn validate_group_name(name: &str) -> Result<String, Rejection> {
    let name = crate::text::strip_format(name);
    let name = name.trim();
    let n = name.chars().count();
    if (1..=64).contains(&n) && super::clean_text(name) && !name.contains(['\n', '\r', '\t']) {
        Ok(name.to_string())
    } else {
        Err(Rejection::invalid(
            "invalid_name",
            "a group name is 1-64 characters without control characters",
        ))
    }
}

/// Channel names are like `control-room`: 1-48 of `a-z 0-9 - _`, a leading `#` is dropped.
fn validate_channel_name(name: &str) -> Result<String, Rejection> {
    let name = name.trim().trim_start_matches('#').to_ascii_lowercase();
    let ok = (1..=48).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(name)
    } else {
        Err(Rejection::invalid(
            "invalid_name",
            "a channel name is 1-48 characters of a-z, 0-9, '-' and '_'",
        ))
    }
}

/// An active user by lower-cased name, or 404.
fn active_user(tx: &mut Tx<'_>, user: &str) -> Result<(), AppendError> {
    match tx.views().user(user)? {
        Some(u) if u.status == UserStatus::Active => Ok(()),
        _ => Err(Rejection::not_found("no_such_user", format!("no active user {user:?}")).into()),
    }
}

/// Makes `user` an active member as of entry `seq`.
pub(crate) fn admit(
    tx: &mut Tx<'_>,
    conv: &mut ConvRow,
    user: &str,
    role: MemberRole,
    seq: u64,
) -> Result<(), StoreError> {
    let mut row = tx.views().member(&conv.id, user)?.unwrap_or(MemberRow {
        conv: conv.id.clone(),
        user: user.to_string(),
        role,
        active: false,
        spans: Vec::new(),
        last_read_seq: 0,
        read_count: 0,
        hidden: false,
    });
    if row.active {
        return Ok(());
    }
    row.active = true;
    row.role = role;
    row.hidden = false;
    row.spans.push(Span {
        from: seq,
        to: None,
    });
    if row.spans.len() > MAX_SPANS {
        row.spans.remove(0);
    }
    // A newcomer starts with nothing unread.
    row.last_read_seq = seq;
    row.read_count = conv.message_count;
    conv.member_count += 1;
    tx.views().put_member(&row)
}

/// Ends `user`'s membership with entry `seq`.
fn dismiss(
    tx: &mut Tx<'_>,
    conv: &mut ConvRow,
    mut row: MemberRow,
    seq: u64,
) -> Result<(), StoreError> {
    row.active = false;
    if let Some(last) = row.spans.last_mut() {
        last.to = Some(seq);
    }
    conv.member_count = conv.member_count.saturating_sub(1);
    tx.views().put_member(&row)
}

/// Opens (or finds) the direct conversation with `other`; `true` when it was just created.
pub async fn open_direct(
    log: &Log,
    cfg: &ChatConfig,
    actor: &Actor,
    other: &str,
) -> Result<(ConvRow, bool), SubmitError> {
    let other = crate::users::key(other);
    if other == actor.user {
        return Err(SubmitError::Rejected(Rejection::invalid(
            "self_conversation",
            "a direct conversation needs another person",
        )));
    }
    actor.require_poster().map_err(SubmitError::Rejected)?;
    let mode = cfg.direct_messages;
    let me = actor.user.clone();
    log.submit(move |tx| {
        active_user(tx, &other)?;
        require_contact(tx, mode, &me, &other)?;
        let id = direct_id(&me, &other);
        if let Some(conv) = tx.views().conv(&id)? {
            if let Some(mut m) = tx.views().member(&id, &me)?
                && m.hidden
            {
                m.hidden = false;
                tx.views().put_member(&m)?;
            }
            return Ok((conv, false));
        }
        let body = ChatBody::Created {
            conv: id.clone(),
            conv_kind: ConvKind::Direct,
            name: String::new(),
            members: vec![me.clone(), other.clone()],
        };
        let seq = append(tx, &me, &body)?;
        let mut conv = new_conv(id, ConvKind::Direct, String::new(), &me, tx.now_us(), seq);
        admit(tx, &mut conv, &me, MemberRole::Member, seq)?;
        admit(tx, &mut conv, &other, MemberRole::Member, seq)?;
        tx.views().put_conv(&conv)?;
        Ok((conv, true))
    })
    .await
}

/// With `direct_messages = "contacts"`, two people need an accepted contact request.
pub(crate) fn require_contact(
    tx: &mut Tx<'_>,
    mode: DirectMessages,
    me: &str,
    other: &str,
) -> Result<(), AppendError> {
    if mode == DirectMessages::Anyone {
        return Ok(());
    }
    match tx.views().contact(me, other)? {
        Some(c) if c.state == ContactState::Accepted => Ok(()),
        _ => Err(Rejection::forbidden(
            "not_a_contact",
            "direct messages need an accepted contact request on this site",
        )
        .into()),
    }
}

pub(crate) fn new_conv(
    id: String,
    kind: ConvKind,
    name: String,
    by: &str,
    now: i64,
    seq: u64,
) -> ConvRow {
    ConvRow {
        id,
        kind,
        name,
        created_by: by.to_string(),
        created_at_us: now,
        last_seq: seq,
        last_message_seq: 0,
        message_count: 0,
        member_count: 0,
    }
}

/// Creates a group (with invited members) or a channel (just the creator); the creator owns it.
pub async fn create(
    log: &Log,
    cfg: &ChatConfig,
    actor: &Actor,
    kind: ConvKind,
    name: &str,
    members: Vec<String>,
) -> Result<ConvRow, SubmitError> {
    actor.require_poster().map_err(SubmitError::Rejected)?;
    let max = cfg.max_members;
    let (name, prefix) = match kind {
        ConvKind::Group => (validate_group_name(name), "g"),
        ConvKind::Channel => (validate_channel_name(name), "c"),
        ConvKind::Direct => {
            return Err(SubmitError::Rejected(Rejection::invalid(
                "invalid_kind",
                "use POST /api/v1/conversations/direct/{username} for a direct conversation",
            )));
        }
        ConvKind::Incident => {
            return Err(SubmitError::Rejected(Rejection::invalid(
                "invalid_kind",
                "use POST /api/v1/incidents to open an incident",
            )));
        }
    };
    let name = name.map_err(SubmitError::Rejected)?;
    let mut invited: Vec<String> = members.iter().map(|m| crate::users::key(m)).collect();
    invited.retain(|m| *m != actor.user);
    invited.sort();
    invited.dedup();
    if kind == ConvKind::Channel && !invited.is_empty() {
        return Err(SubmitError::Rejected(Rejection::invalid(
            "invalid_members",
            "a channel starts with its creator; others join it",
        )));
    }
    if invited.len() + 1 > max {
        return Err(SubmitError::Rejected(Rejection::invalid(
            "too_many_members",
            format!("at most {max} members"),
        )));
    }
    let id = random_id_for(prefix)?;
    let me = actor.user.clone();
    log.submit(move |tx| {
        for m in &invited {
            active_user(tx, m)?;
        }
        if kind == ConvKind::Channel && tx.views().channel(&name)?.is_some() {
            return Err(
                Rejection::conflict("name_taken", "a channel with this name exists").into(),
            );
        }
        let mut all = vec![me.clone()];
        all.extend(invited.iter().cloned());
        let body = ChatBody::Created {
            conv: id.clone(),
            conv_kind: kind,
            name: name.clone(),
            members: all,
        };
        let seq = append(tx, &me, &body)?;
        let mut conv = new_conv(id.clone(), kind, name.clone(), &me, tx.now_us(), seq);
        admit(tx, &mut conv, &me, MemberRole::Owner, seq)?;
        for m in &invited {
            admit(tx, &mut conv, m, MemberRole::Member, seq)?;
        }
        if kind == ConvKind::Channel {
            tx.views().put_channel(&name, &id)?;
        }
        tx.views().put_conv(&conv)?;
        Ok(conv)
    })
    .await
}

fn random_id_for(prefix: &str) -> Result<String, SubmitError> {
    Ok(super::random_id(prefix)?)
}

/// The conversation and the actor's active membership, for members and for site admins (who
/// manage conversations they are not in); 404 for anyone else.
fn managed(
    tx: &mut Tx<'_>,
    id: &str,
    actor: &Actor,
) -> Result<(ConvRow, Option<MemberRow>), AppendError> {
    let c = tx.views().conv(id)?.ok_or_else(no_conversation)?;
    let mine = tx.views().member(id, &actor.user)?.filter(|m| m.active);
    if mine.is_none() && !actor.is_admin() {
        return Err(no_conversation().into());
    }
    Ok((c, mine))
}

/// Whether `actor` may manage members and the name: the owner, or a site admin.
fn may_manage(actor: &Actor, row: Option<&MemberRow>) -> bool {
    actor.is_admin() || row.is_some_and(|m| m.active && m.role == MemberRole::Owner)
}

/// Adds `users` (none of them members now) with one `chat.joined` entry by `by`.
fn add_users(
    tx: &mut Tx<'_>,
    c: &mut ConvRow,
    users: Vec<String>,
    by: &str,
    max: usize,
) -> Result<(), AppendError> {
    if c.member_count as usize + users.len() > max {
        return Err(
            Rejection::conflict("conversation_full", format!("at most {max} members")).into(),
        );
    }
    let body = ChatBody::Joined {
        conv: c.id.clone(),
        users: users.clone(),
        by: by.to_string(),
    };
    let seq = append(tx, by, &body)?;
    for u in &users {
        admit(tx, c, u, MemberRole::Member, seq)?;
    }
    c.last_seq = seq;
    tx.views().put_conv(c)?;
    Ok(())
}

/// Joins a channel. Joining one already joined changes nothing.
pub async fn join(
    log: &Log,
    cfg: &ChatConfig,
    actor: &Actor,
    conv: &str,
) -> Result<ConvRow, SubmitError> {
    let me = actor.user.clone();
    let id = conv.to_string();
    let max = cfg.max_members;
    log.submit(move |tx| {
        let mut c = tx.views().conv(&id)?.ok_or_else(no_conversation)?;
        if c.kind != ConvKind::Channel {
            return Err(no_conversation().into());
        }
        if tx.views().member(&id, &me)?.is_some_and(|m| m.active) {
            return Ok(c);
        }
        add_users(tx, &mut c, vec![me.clone()], &me, max)?;
        Ok(c)
    })
    .await
}

/// Adds people to a group (owner or admin) or a channel (any member).
pub async fn add_members(
    log: &Log,
    cfg: &ChatConfig,
    actor: &Actor,
    conv: &str,
    users: Vec<String>,
) -> Result<ConvRow, SubmitError> {
    actor.require_poster().map_err(SubmitError::Rejected)?;
    let me = actor.user.clone();
    let actor = actor.clone();
    let id = conv.to_string();
    let max = cfg.max_members;
    let mut users: Vec<String> = users.iter().map(|u| crate::users::key(u)).collect();
    users.sort();
    users.dedup();
    if users.is_empty() || users.len() > max {
        return Err(SubmitError::Rejected(Rejection::invalid(
            "invalid_members",
            format!("name 1 to {max} users"),
        )));
    }
    log.submit(move |tx| {
        let (mut c, mine) = managed(tx, &id, &actor)?;
        match c.kind {
            ConvKind::Direct => {
                return Err(Rejection::invalid(
                    "direct_conversation",
                    "a direct conversation has exactly two members",
                )
                .into());
            }
            ConvKind::Group if !may_manage(&actor, mine.as_ref()) => {
                return Err(Rejection::forbidden(
                    "not_owner",
                    "only the group's owner adds members",
                )
                .into());
            }
            _ => {}
        }
        let site = match c.kind {
            ConvKind::Incident => crate::incidents::site_scope::site_of(tx.views(), &id)?,
            _ => None,
        };
        let mut new = Vec::new();
        for u in &users {
            active_user(tx, u)?;
            if !crate::incidents::site_scope::may_take_part(tx.views(), site.as_deref(), u)? {
                return Err(crate::incidents::site_scope::not_granted(u).into());
            }
            if !tx.views().member(&id, u)?.is_some_and(|m| m.active) {
                new.push(u.clone());
            }
        }
        if new.is_empty() {
            return Ok(c);
        }
        add_users(tx, &mut c, new, &me, max)?;
        Ok(c)
    })
    .await
}

/// Removes `user` (the owner or an admin removes others; anyone may remove themself: leave).
/// In a direct conversation, leaving only hides it.
pub async fn remove_member(
    log: &Log,
    actor: &Actor,
    conv: &str,
    user: &str,
) -> Result<(), SubmitError> {
    let me = actor.user.clone();
    let actor = actor.clone();
    let id = conv.to_string();
    let target = crate::users::key(user);
    log.submit(move |tx| {
        let mut c = tx.views().conv(&id)?.ok_or_else(no_conversation)?;
        let mine = tx.views().member(&id, &me)?;
        let is_member = mine.as_ref().is_some_and(|m| m.active);
        let admin_removing_other = actor.is_admin() && target != me;
        if !is_member && !admin_removing_other {
            return Err(no_conversation().into());
        }
        if c.kind == ConvKind::Direct {
            if target != me {
                return Err(Rejection::invalid(
                    "direct_conversation",
                    "a direct conversation has exactly two members",
                )
                .into());
            }
            if let Some(mut m) = mine {
                m.hidden = true;
                tx.views().put_member(&m)?;
            }
            return Ok(());
        }
        if target != me && !may_manage(&actor, mine.as_ref()) {
            return Err(Rejection::forbidden("not_owner", "only the owner removes members").into());
        }
        let Some(row) = tx.views().member(&id, &target)?.filter(|m| m.active) else {
            return Err(Rejection::not_found("not_a_member", "this user is not a member").into());
        };
        leave(tx, &mut c, row, &me)
    })
    .await
}

/// Takes `user` out of conversation `conv` by `by` in the job, as [`remove_member`] does once
/// its checks passed; `false` when `user` is not an active member.
pub(crate) fn remove_in_tx(
    tx: &mut Tx<'_>,
    conv: &str,
    user: &str,
    by: &str,
) -> Result<bool, AppendError> {
    let Some(mut c) = tx.views().conv(conv)? else {
        return Ok(false);
    };
    let Some(row) = tx.views().member(conv, user)?.filter(|m| m.active) else {
        return Ok(false);
    };
    leave(tx, &mut c, row, by)?;
    Ok(true)
}

/// Ends membership `row` of `c` with a `chat.left` entry by `me`.
fn leave(tx: &mut Tx<'_>, c: &mut ConvRow, row: MemberRow, me: &str) -> Result<(), AppendError> {
    let id = c.id.clone();
    let target = row.user.clone();
    // When the last owner leaves, the longest-standing member takes over.
    let mut new_owner = None;
    if row.role == MemberRole::Owner {
        let members = tx.views().members(&id)?;
        let owners_left = members
            .iter()
            .filter(|m| m.active && m.role == MemberRole::Owner && m.user != target)
            .count();
        if owners_left == 0 {
            new_owner = members
                .iter()
                .filter(|m| m.active && m.user != target)
                .min_by_key(|m| m.spans.last().map_or(0, |s| s.from))
                .cloned();
        }
    }
    let seq = append(
        tx,
        me,
        &ChatBody::Left {
            conv: id,
            users: vec![target],
            by: me.to_string(),
            new_owner: new_owner.as_ref().map(|m| m.user.clone()),
        },
    )?;
    dismiss(tx, c, row, seq)?;
    if let Some(mut o) = new_owner {
        o.role = MemberRole::Owner;
        tx.views().put_member(&o)?;
    }
    c.last_seq = seq;
    tx.views().put_conv(c)?;
    Ok(())
}

/// Renames a group or channel (owner or admin).
pub async fn rename(
    log: &Log,
    actor: &Actor,
    conv: &str,
    name: &str,
) -> Result<ConvRow, SubmitError> {
    let me = actor.user.clone();
    let actor = actor.clone();
    let id = conv.to_string();
    let raw = name.to_string();
    log.submit(move |tx| {
        let (mut c, mine) = managed(tx, &id, &actor)?;
        if !may_manage(&actor, mine.as_ref()) {
            return Err(Rejection::forbidden("not_owner", "only the owner renames").into());
        }
        let name = match c.kind {
            ConvKind::Direct => {
                return Err(Rejection::invalid(
                    "direct_conversation",
                    "a direct conversation has no name",
                )
                .into());
            }
            ConvKind::Incident => {
                return Err(Rejection::invalid(
                    "incident_conversation",
                    "an incident's title belongs to the incident",
                )
                .into());
            }
            ConvKind::Group => validate_group_name(&raw)?,
            ConvKind::Channel => {
                let n = validate_channel_name(&raw)?;
                if n != c.name {
                    if tx.views().channel(&n)?.is_some() {
                        return Err(Rejection::conflict(
                            "name_taken",
                            "a channel with this name exists",
                        )
                        .into());
                    }
                    tx.views().remove_channel(&c.name)?;
                    tx.views().put_channel(&n, &id)?;
                }
                n
            }
        };
        let seq = append(
            tx,
            &me,
            &ChatBody::Renamed {
                conv: id.clone(),
                name: name.clone(),
            },
        )?;
        c.name = name;
        c.last_seq = seq;
        tx.views().put_conv(&c)?;
        Ok(c)
    })
    .await
}

fn summarize(
    log: &Log,
    rtx: &crate::store::ReadTx,
    c: ConvRow,
    m: &MemberRow,
) -> Result<ConvSummary, StoreError> {
    // The same rule as history: an onlooker (no spans) or a late joiner of a group gets no
    // message they could not read in the history.
    let visible = super::replay::visible_ranges(c.kind, &m.spans, c.last_seq);
    let last_message =
        if c.last_message_seq > 0 && super::replay::in_ranges(&visible, c.last_message_seq) {
            read_message(log, rtx, &c.id, c.last_message_seq)?.map(MessageView::from)
        } else {
            None
        };
    let peer = direct_pair(&c.id).map(|(a, b)| if a == m.user { b } else { a }.to_string());
    Ok(ConvSummary {
        unread: c.message_count.saturating_sub(m.read_count),
        mentions: rtx.mention_count(&m.user, &c.id, m.last_read_seq)?,
        id: c.id,
        kind: c.kind,
        name: c.name,
        peer,
        member_count: c.member_count,
        last_seq: c.last_seq,
        last_message,
        last_read_seq: m.last_read_seq,
        role: m.role,
    })
}

/// The caller's conversations, most recently active first (hidden ones left out).
pub fn list_mine(log: &Log, user: &str) -> Result<Vec<ConvSummary>, StoreError> {
    let rtx = log.read()?;
    let mut out = Vec::new();
    for id in rtx.user_convs(user)? {
        let Some(m) = rtx.member(&id, user)? else {
            continue;
        };
        if !m.active || m.hidden {
            continue;
        }
        if let Some(c) = rtx.conv(&id)? {
            out.push(summarize(log, &rtx, c, &m)?);
        }
    }
    out.sort_by_key(|c| std::cmp::Reverse(c.last_seq));
    Ok(out)
}

/// One conversation with its active members; only members see it (and site admins, who manage
/// conversations they are not in).
pub fn get(log: &Log, actor: &Actor, conv: &str) -> Result<ConvDetail, SubmitError> {
    let rtx = log.read().map_err(storage)?;
    let c = rtx.conv(conv).map_err(storage)?;
    let m = rtx
        .member(conv, &actor.user)
        .map_err(storage)?
        .filter(|m| m.active);
    let (c, m) = match (c, m) {
        (Some(c), Some(m)) => (c, m),
        (Some(c), None) if actor.is_admin() => {
            let onlooker = MemberRow {
                conv: c.id.clone(),
                user: actor.user.clone(),
                role: MemberRole::Member,
                active: false,
                spans: Vec::new(),
                last_read_seq: c.last_seq,
                read_count: c.message_count,
                hidden: false,
            };
            (c, onlooker)
        }
        _ => return Err(SubmitError::Rejected(no_conversation())),
    };
    let members = rtx
        .members(conv)
        .map_err(storage)?
        .into_iter()
        .filter(|m| m.active)
        .map(|m| MemberView {
            username: m.user,
            role: m.role,
            last_read_seq: m.last_read_seq,
        })
        .collect();
    let summary = summarize(log, &rtx, c, &m).map_err(storage)?;
    Ok(ConvDetail { summary, members })
}

/// Most people `peers` returns.
const MAX_PEERS: usize = 10_000;

/// The people who share an active conversation with `user` (themself included): whose presence
/// they may see.
pub fn peers(log: &Log, user: &str) -> Result<std::collections::BTreeSet<String>, StoreError> {
    let rtx = log.read()?;
    let mut peers = std::collections::BTreeSet::new();
    for conv in rtx.user_convs(user)? {
        if !rtx.member(&conv, user)?.is_some_and(|m| m.active) {
            continue;
        }
        for m in rtx.members(&conv)? {
            if m.active {
                peers.insert(m.user);
            }
        }
        if peers.len() > MAX_PEERS {
            break;
        }
    }
    Ok(peers)
}

/// Every channel, with whether the caller is in it.
pub fn channels(log: &Log, user: &str) -> Result<Vec<ChannelInfo>, StoreError> {
    let rtx = log.read()?;
    let mut out = Vec::new();
    for (name, id) in rtx.channels()? {
        let Some(c) = rtx.conv(&id)? else { continue };
        let joined = rtx.member(&id, user)?.is_some_and(|m| m.active);
        out.push(ChannelInfo {
            id,
            name,
            member_count: c.member_count,
            joined,
        });
    }
    Ok(out)
}

pub(crate) fn storage(e: StoreError) -> SubmitError {
    SubmitError::from(e)
}
