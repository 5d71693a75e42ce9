//! Contacts: request, accept, reject, remove. Both sides' rows change in one commit with an entry
//! in the pair's stream `contacts/<a>:<b>`, so both people see it live and on replay.

use serde::{Deserialize, Serialize};

use super::{Actor, CONTACT_STREAM_PREFIX, direct_id};
use crate::error::Rejection;
use crate::log::{AppendError, Author, Log, NewEntry, SubmitError, Tx};
use crate::store::{ContactRow, ContactState, StoreError, UserStatus};

/// The body of a `contact.*` entry; `from` is who acted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContactBody {
    Request { from: String, to: String },
    Accepted { from: String, to: String },
    Rejected { from: String, to: String },
    Removed { from: String, to: String },
}

impl ContactBody {
    fn kind(&self) -> &'static str {
        match self {
            ContactBody::Request { .. } => "contact.request",
            ContactBody::Accepted { .. } => "contact.accepted",
            ContactBody::Rejected { .. } => "contact.rejected",
            ContactBody::Removed { .. } => "contact.removed",
        }
    }
}

/// The stream of a pair, the same whichever way round.
pub fn contact_stream(a: &str, b: &str) -> String {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    format!("{CONTACT_STREAM_PREFIX}{x}:{y}")
}

/// The two users of a contact stream.
pub fn pair_of_stream(stream: &str) -> Option<(&str, &str)> {
    stream.strip_prefix(CONTACT_STREAM_PREFIX)?.split_once(':')
}

/// A contact or a pending request as its owner sees it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContactView {
    pub username: String,
    pub display_name: String,
    pub state: ContactState,
    pub since_us: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Contacts {
    pub contacts: Vec<ContactView>,
    /// Requests others sent to me.
    pub incoming: Vec<ContactView>,
    /// Requests I sent.
    pub outgoing: Vec<ContactView>,
}

fn state_of(tx: &mut Tx<'_>, me: &str, other: &str) -> Result<ContactState, StoreError> {
    Ok(tx
        .views()
        .contact(me, other)?
        .map_or(ContactState::None, |c| c.state))
}

/// Sets both rows and appends the entry.
fn change(
    tx: &mut Tx<'_>,
    me: &str,
    other: &str,
    mine: ContactState,
    theirs: ContactState,
    body: ContactBody,
) -> Result<(), AppendError> {
    let entry = NewEntry::json(
        body.kind(),
        &contact_stream(me, other),
        &Author::user(me),
        &body,
    )?;
    tx.append(entry)?;
    let now = tx.now_us();
    for (owner, o, state) in [(me, other, mine), (other, me, theirs)] {
        tx.views().put_contact(&ContactRow {
            owner: owner.to_string(),
            other: o.to_string(),
            state,
            since_us: now,
        })?;
    }
    Ok(())
}

async fn act(
    log: &Log,
    actor: &Actor,
    other: &str,
    f: fn(&mut Tx<'_>, &str, &str, ContactState) -> Result<ContactState, AppendError>,
) -> Result<ContactState, SubmitError> {
    let me = actor.user.clone();
    let other = crate::users::key(other);
    if me == other {
        return Err(SubmitError::Rejected(Rejection::invalid(
            "self_contact",
            "you cannot be your own contact",
        )));
    }
    log.submit(move |tx| {
        match tx.views().user(&other)? {
            Some(u) if u.status == UserStatus::Active => {}
            _ => {
                return Err(
                    Rejection::not_found("no_such_user", "no active user with this name").into(),
                );
            }
        }
        let current = state_of(tx, &me, &other)?;
        f(tx, &me, &other, current)
    })
    .await
}

/// Asks `other` to be a contact. If they already asked me, this accepts.
pub async fn request(log: &Log, actor: &Actor, other: &str) -> Result<ContactState, SubmitError> {
    act(log, actor, other, |tx, me, other, current| match current {
        ContactState::Accepted => {
            Err(Rejection::conflict("already_contacts", "you are already contacts").into())
        }
        ContactState::Outgoing => Ok(ContactState::Outgoing),
        ContactState::Incoming => {
            let body = ContactBody::Accepted {
                from: me.into(),
                to: other.into(),
            };
            change(
                tx,
                me,
                other,
                ContactState::Accepted,
                ContactState::Accepted,
                body,
            )?;
            Ok(ContactState::Accepted)
        }
        ContactState::None => {
            let body = ContactBody::Request {
                from: me.into(),
                to: other.into(),
            };
            change(
                tx,
                me,
                other,
                ContactState::Outgoing,
                ContactState::Incoming,
                body,
            )?;
            Ok(ContactState::Outgoing)
        }
    })
    .await
}

/// Accepts or turns down `other`'s pending request.
fn answer(
    tx: &mut Tx<'_>,
    me: &str,
    other: &str,
    current: ContactState,
    accept: bool,
) -> Result<ContactState, AppendError> {
    if current != ContactState::Incoming {
        return Err(Rejection::not_found("no_request", "no pending request from this user").into());
    }
    let (from, to) = (me.to_string(), other.to_string());
    let (state, body) = if accept {
        (ContactState::Accepted, ContactBody::Accepted { from, to })
    } else {
        (ContactState::None, ContactBody::Rejected { from, to })
    };
    change(tx, me, other, state, state, body)?;
    Ok(state)
}

/// Accepts `other`'s pending request.
pub async fn accept(log: &Log, actor: &Actor, other: &str) -> Result<ContactState, SubmitError> {
    act(log, actor, other, |tx, me, other, current| {
        answer(tx, me, other, current, true)
    })
    .await
}

/// Turns down `other`'s pending request.
pub async fn reject(log: &Log, actor: &Actor, other: &str) -> Result<ContactState, SubmitError> {
    act(log, actor, other, |tx, me, other, current| {
        answer(tx, me, other, current, false)
    })
    .await
}

/// Removes a contact (or withdraws my request). Our direct conversation is hidden for me; the log
/// keeps its history.
pub async fn remove(log: &Log, actor: &Actor, other: &str) -> Result<ContactState, SubmitError> {
    act(log, actor, other, |tx, me, other, current| {
        if !matches!(current, ContactState::Accepted | ContactState::Outgoing) {
            return Err(Rejection::not_found("not_a_contact", "this user is not a contact").into());
        }
        let body = ContactBody::Removed {
            from: me.into(),
            to: other.into(),
        };
        change(tx, me, other, ContactState::None, ContactState::None, body)?;
        let dm = direct_id(me, other);
        if let Some(mut m) = tx.views().member(&dm, me)? {
            m.hidden = true;
            tx.views().put_member(&m)?;
        }
        Ok(ContactState::None)
    })
    .await
}

/// My contacts and pending requests.
pub fn list(log: &Log, me: &str) -> Result<Contacts, StoreError> {
    let rtx = log.read()?;
    let mut out = Contacts {
        contacts: Vec::new(),
        incoming: Vec::new(),
        outgoing: Vec::new(),
    };
    for c in rtx.contacts(me)? {
        let display_name = rtx
            .user(&c.other)?
            .map(|u| u.display_name)
            .unwrap_or_default();
        let view = ContactView {
            username: c.other,
            display_name,
            state: c.state,
            since_us: c.since_us,
        };
        match c.state {
            ContactState::Accepted => out.contacts.push(view),
            ContactState::Incoming => out.incoming.push(view),
            ContactState::Outgoing => out.outgoing.push(view),
            ContactState::None => {}
        }
    }
    Ok(out)
}
