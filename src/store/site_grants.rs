//! HQ's per-site grants (schema v9): which HQ user may read which replicated site, and with what
//! role, keyed user first (every site-scoped request asks "which sites may this user see").

use serde::{Deserialize, Serialize};

use super::rows::{Role, from_versioned_json, versioned_json};
use super::table::Row;
use super::{ReadTx, SITE_GRANTS, StoreError, WriteTx};

/// One user's grant on one site, written with its `site.granted` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteGrantRow {
    pub site: String,
    /// The lower-cased username.
    pub user: String,
    pub role: Role,
    pub granted_at_us: i64,
    /// The stored author who granted it (`user:alice`, `system` for the CLI).
    pub granted_by: String,
}

impl Row for SiteGrantRow {
    fn encode(&self) -> Result<Vec<u8>, StoreError> {
        versioned_json(self)
    }

    fn decode(b: &[u8]) -> Result<Self, StoreError> {
        from_versioned_json(b, "site grant")
    }
}

/// The rows of one user: the keys `(user, "")..(user, "\u{10FFFF}")` hold exactly them, since a
/// site name is ASCII.
fn visit_user(
    txn: &impl super::table::Txn,
    user: &str,
    mut visit: impl FnMut(SiteGrantRow) -> bool,
) -> Result<(), StoreError> {
    SITE_GRANTS.range::<(&str, &str)>(txn, (user, "")..=(user, "\u{10FFFF}"), |_, g| visit(g))
}

impl ReadTx {
    /// The grant of `user` (lower-cased) on `site`.
    pub fn site_grant(&self, user: &str, site: &str) -> Result<Option<SiteGrantRow>, StoreError> {
        SITE_GRANTS.get(self, (user, site))
    }

    /// Every grant of `user` (lower-cased), by site.
    pub fn site_grants_of(&self, user: &str) -> Result<Vec<SiteGrantRow>, StoreError> {
        let mut out = Vec::new();
        visit_user(self, user, |g| {
            out.push(g);
            true
        })?;
        Ok(out)
    }

    /// Every grant (by user, then site), of `site` only when given, at most `limit`; the flag
    /// says the limit cut the scan short (more may exist).
    pub fn site_grants(
        &self,
        site: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<SiteGrantRow>, bool), StoreError> {
        let mut out = Vec::new();
        let mut capped = false;
        SITE_GRANTS.range::<(&str, &str)>(self, .., |_, g| {
            if site.is_none_or(|s| g.site == s) {
                if out.len() == limit {
                    capped = true;
                    return false;
                }
                out.push(g);
            }
            true
        })?;
        Ok((out, capped))
    }
}

impl WriteTx {
    pub fn site_grant(&self, user: &str, site: &str) -> Result<Option<SiteGrantRow>, StoreError> {
        SITE_GRANTS.get(self, (user, site))
    }

    pub fn put_site_grant(&mut self, row: &SiteGrantRow) -> Result<(), StoreError> {
        SITE_GRANTS.put(self, (row.user.as_str(), row.site.as_str()), row)
    }

    pub fn remove_site_grant(&mut self, user: &str, site: &str) -> Result<(), StoreError> {
        self.remove(SITE_GRANTS.def(), (user, site))
    }
}
