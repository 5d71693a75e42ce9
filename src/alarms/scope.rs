//! Which alarms a reader sees: HQ's own alarms about a replicated site (source `site/<name>`) only
//! admins, auditors and the users granted that site; every other alarm everyone signed in. An open
//! socket or ntfy stream follows grant changes from the entries it sees ([`AlarmScope::follow`]).

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::log::Entry;
use crate::replication::grants::{KIND_GRANTED, KIND_UNGRANTED};
use crate::store::{ReadTx, Role, StoreError, WriteTx};

/// The source prefix of an alarm about one replicated site (`site/<name>`).
pub const SITE_SOURCE_PREFIX: &str = "site/";

/// The source of an alarm about replicated site `site`.
pub fn site_source(site: &str) -> String {
    format!("{SITE_SOURCE_PREFIX}{site}")
}

/// The site an alarm source names, if it is a per-site source.
pub fn site_of(source: &str) -> Option<&str> {
    source.strip_prefix(SITE_SOURCE_PREFIX)
}

/// The alarms one reader may see: every alarm not about a site, and the per-site alarms of the
/// sites in scope. The one predicate of every alarm reader (list, detail, history, KPIs, the
/// socket, search, ntfy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlarmScope {
    /// Admins and auditors (and the system): every alarm.
    All,
    /// Everyone else: the per-site alarms of these sites only (their grants at HQ).
    Sites(BTreeSet<String>),
}

impl AlarmScope {
    /// Of user `user` (lower-cased key) with role `role`, as of `rtx`: each request reads it anew,
    /// so a grant given or taken back counts at the next request; an open socket or ntfy stream
    /// reads it once and then applies the grant entries it follows ([`AlarmScope::follow`]).
    pub fn of(rtx: &ReadTx, user: &str, role: Role) -> Result<Self, StoreError> {
        if sees_every_site(role) {
            return Ok(Self::All);
        }
        Ok(Self::Sites(
            rtx.site_grants_of(user)?
                .into_iter()
                .map(|g| g.site)
                .collect(),
        ))
    }

    /// Applies live entry `e` to the scope of `user` (lower-cased key): a `site.granted` naming
    /// the user adds the site, a `site.ungranted` takes it away, at the entry's seq, without a
    /// store read; every other entry costs one comparison of its kind. Admins and auditors see
    /// all whatever the grants (a role change ends the user's sessions and sockets).
    pub fn follow(&mut self, user: &str, e: &Entry) {
        let granted = match e.kind.as_str() {
            KIND_GRANTED => true,
            KIND_UNGRANTED => false,
            _ => return,
        };
        let Self::Sites(sites) = self else {
            return;
        };
        let Ok(g) = serde_json::from_slice::<GrantNote>(&e.body) else {
            return;
        };
        if crate::users::key(&g.user) != user {
            return;
        }
        if granted {
            sites.insert(g.site);
        } else {
            sites.remove(&g.site);
        }
    }

    /// Whether an alarm of `source` is in scope.
    pub fn sees(&self, source: &str) -> bool {
        match (self, site_of(source)) {
            (Self::All, _) | (_, None) => true,
            (Self::Sites(s), Some(site)) => s.contains(site),
        }
    }
}

/// Admins and auditors see every site's alarms whatever the grants.
pub fn sees_every_site(role: Role) -> bool {
    matches!(role, Role::Admin | Role::Auditor)
}

/// The predicate of [`AlarmScope`] for one site inside a write: whether user `user` (lower-cased
/// key) of role `role` sees the alarms about `site`.
pub fn sees_site(tx: &WriteTx, user: &str, role: Role, site: &str) -> Result<bool, StoreError> {
    Ok(sees_every_site(role) || tx.site_grant(user, site)?.is_some())
}

/// The site that alarm occurrences `alarms` are about: the first whose source is `site/<name>`.
pub fn site_of_alarms(tx: &WriteTx, alarms: &[u64]) -> Result<Option<String>, StoreError> {
    for id in alarms {
        if let Some(row) = tx.alarm(*id)?
            && let Some(site) = site_of(&row.source)
        {
            return Ok(Some(site.to_string()));
        }
    }
    Ok(None)
}

/// What the scope reads of a grant entry's body.
#[derive(Deserialize)]
struct GrantNote {
    site: String,
    user: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_site_alarms_need_the_site() {
        let alpha = AlarmScope::Sites(BTreeSet::from(["alpha".to_string()]));
        assert!(alpha.sees("site/alpha"));
        assert!(!alpha.sees("site/bravo"));
        assert!(alpha.sees("plantwire"));
        assert!(alpha.sees("pump-7"));
        assert!(AlarmScope::All.sees("site/bravo"));
        assert!(!AlarmScope::Sites(BTreeSet::new()).sees(&site_source("bravo")));
    }

    fn entry(kind: &str, body: serde_json::Value) -> Entry {
        Entry {
            site: "hq".into(),
            seq: 1,
            ts: 0,
            kind: kind.into(),
            stream: crate::replication::grants::STREAM.into(),
            author: "system".into(),
            body: serde_json::to_vec(&body).unwrap_or_default(),
            prev: [0; 32],
            hash: [0; 32],
            chain: crate::log::entry::ChainVersion::V2,
        }
    }

    #[test]
    fn a_followed_scope_applies_the_grant_entries_naming_its_user_only() {
        let mut s = AlarmScope::Sites(BTreeSet::new());
        let granted = |site: &str, user: &str| {
            entry(
                KIND_GRANTED,
                serde_json::json!({"site": site, "user": user, "role": "viewer"}),
            )
        };
        // Another user's grant, another kind, an undecodable body: nothing changes.
        s.follow("alice", &granted("bravo", "bob"));
        s.follow(
            "alice",
            &entry(
                "alarm.raise",
                serde_json::json!({"site": "bravo", "user": "alice"}),
            ),
        );
        s.follow("alice", &entry(KIND_GRANTED, serde_json::json!([1])));
        assert!(!s.sees("site/bravo"));
        // The user's own (named as stored, any case) adds the site; an ungrant takes it away.
        s.follow("alice", &granted("bravo", "Alice"));
        assert!(s.sees("site/bravo") && !s.sees("site/alpha"));
        s.follow(
            "alice",
            &entry(
                KIND_UNGRANTED,
                serde_json::json!({"site": "bravo", "user": "alice"}),
            ),
        );
        assert!(!s.sees("site/bravo"));
        // Admins and auditors see all whatever passes.
        let mut all = AlarmScope::All;
        all.follow(
            "boss",
            &entry(
                KIND_UNGRANTED,
                serde_json::json!({"site": "bravo", "user": "boss"}),
            ),
        );
        assert_eq!(all, AlarmScope::All);
    }
}
