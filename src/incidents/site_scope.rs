//! Incidents about a replicated site (opened at HQ, by rule or by hand, from an alarm on source
//! `site/<name>`) are read only by who may read the site, the predicate of `AlarmScope`: every
//! reader of an incident (list, detail, history, socket, search) goes by active membership (and
//! admins), so the rule is kept here, on membership: no write makes a user out of the site's scope
//! an active member (open, assign, add members), and an ungrant or a role dropped below auditor
//! takes the user out of them (and off their assignee).

use crate::alarms::scope::{sees_site, site_of_alarms};
use crate::error::Rejection;
use crate::log::{AppendError, Tx};
use crate::store::{StoreError, WriteTx};

/// The site incident (conversation) `conv` is about, if it is an incident about one.
pub fn site_of(tx: &WriteTx, conv: &str) -> Result<Option<String>, StoreError> {
    match tx.incident(conv)? {
        Some(row) => site_of_alarms(tx, &row.alarms),
        None => Ok(None),
    }
}

/// Whether `user` (lower-cased key) may be a member of an incident about `site` (`None`: not
/// about a site, anyone); an unknown user may not.
pub fn may_take_part(tx: &WriteTx, site: Option<&str>, user: &str) -> Result<bool, StoreError> {
    let Some(site) = site else {
        return Ok(true);
    };
    match tx.user(user)? {
        Some(u) => sees_site(tx, user, u.role, site),
        None => Ok(false),
    }
}

/// The refusal of a member who may not read the incident's site (as `403`, naming only the
/// user the caller named).
pub fn not_granted(user: &str) -> Rejection {
    Rejection::forbidden(
        "not_granted",
        format!("{user} may not read the site this incident is about"),
    )
}

/// Takes `user` out of every incident about `site` they are an active member of (their grant on
/// it was just taken back), each a `chat.left` entry by `by`, and clears them as its assignee.
/// Reads the user's conversations only. Returns how many.
pub fn dismiss_from_site(
    tx: &mut Tx<'_>,
    user: &str,
    site: &str,
    by: &str,
) -> Result<usize, AppendError> {
    dismiss(tx, user, Some(site), by)
}

/// Takes `user` out of every incident about a site they may no longer read (their role just
/// dropped below auditor), as [`dismiss_from_site`] does. Returns how many.
pub fn dismiss_out_of_scope(tx: &mut Tx<'_>, user: &str, by: &str) -> Result<usize, AppendError> {
    dismiss(tx, user, None, by)
}

/// Out of the incidents about `only` (`None`: about any site) that `user` may not read.
fn dismiss(
    tx: &mut Tx<'_>,
    user: &str,
    only: Option<&str>,
    by: &str,
) -> Result<usize, AppendError> {
    let mut n = 0;
    for conv in tx.views().user_convs(user)? {
        let Some(site) = site_of(tx.views(), &conv)? else {
            continue;
        };
        if only.is_some_and(|o| o != site) || may_take_part(tx.views(), Some(&site), user)? {
            continue;
        }
        if crate::chat::conversations::remove_in_tx(tx, &conv, user, by)? {
            n += 1;
        }
        super::lifecycle::unassign_in_tx(tx, &conv, user, by)?;
    }
    Ok(n)
}
