//! HQ tenancy: which HQ user may read which replicated site. A grant is a row of HQ's store written
//! with a `site.granted` / `site.ungranted` entry of HQ's log; admins and auditors read every site.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ReplicationError;
use super::hq::{Replicas, valid_site};
use crate::error::Rejection;
use crate::log::{Author, Log, NewEntry};
use crate::store::{Role, SiteGrantRow, StoreError, UserRow, UserStatus};

/// HQ's own stream of grant entries (admins see it live, like `admin/users`).
pub const STREAM: &str = "admin/sites";
pub const KIND_GRANTED: &str = "site.granted";
pub const KIND_UNGRANTED: &str = "site.ungranted";
/// The most grants `site grants` lists.
pub const MAX_LISTED: usize = 10_000;

/// The role a grant gives on one site. Every site view at HQ is read-only today, so each of them
/// reads; the role is kept (and audited) for what a site's operators and admins may do from HQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantRole {
    Viewer,
    Operator,
    Admin,
}

impl From<GrantRole> for Role {
    fn from(r: GrantRole) -> Self {
        match r {
            GrantRole::Viewer => Role::Viewer,
            GrantRole::Operator => Role::Operator,
            GrantRole::Admin => Role::Admin,
        }
    }
}

#[derive(Serialize)]
struct GrantBody<'a> {
    site: &'a str,
    user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
}

fn no_such_site() -> Rejection {
    Rejection::not_found("unknown_site", "no such site is enrolled")
}

/// Grants `username` (an HQ user) `role` on `site` (an enrolled site), or changes the role of an
/// existing grant. Returns the stored grant.
pub async fn grant(
    log: &Log,
    replicas: &Replicas,
    site: &str,
    username: &str,
    role: GrantRole,
    by: &Author,
) -> Result<SiteGrantRow, ReplicationError> {
    if !valid_site(site) || !replicas.site_dir(site).is_dir() {
        return Err(no_such_site().into());
    }
    let user = crate::users::key(username);
    let site = site.to_string();
    let by = by.clone();
    let role = Role::from(role);
    Ok(log
        .submit(move |tx| {
            let Some(u) = tx.views().user(&user)? else {
                return Err(
                    Rejection::not_found("no_such_user", "no HQ user with this name").into(),
                );
            };
            let row = SiteGrantRow {
                site: site.clone(),
                user: user.clone(),
                role,
                granted_at_us: tx.now_us(),
                granted_by: by.to_string(),
            };
            let body = GrantBody {
                site: &site,
                user: &u.username,
                role: Some(role),
            };
            let entry = NewEntry::json(KIND_GRANTED, STREAM, &by, &body)?;
            tx.views().put_site_grant(&row)?;
            tx.append(entry)?;
            Ok(row)
        })
        .await?)
}

/// Takes back the grant of `username` on `site` and takes them out of the incidents about the
/// site (`incidents::site_scope`); `no_grant` when there is none.
pub async fn ungrant(
    log: &Log,
    site: &str,
    username: &str,
    by: &Author,
) -> Result<(), ReplicationError> {
    let user = crate::users::key(username);
    let site = site.to_string();
    let by = by.clone();
    Ok(log
        .submit(move |tx| {
            if tx.views().site_grant(&user, &site)?.is_none() {
                return Err(Rejection::not_found(
                    "no_grant",
                    "this user has no grant on this site",
                )
                .into());
            }
            let body = GrantBody {
                site: &site,
                user: &user,
                role: None,
            };
            let entry = NewEntry::json(KIND_UNGRANTED, STREAM, &by, &body)?;
            tx.views().remove_site_grant(&user, &site)?;
            tx.append(entry)?;
            // Out of the site's scope, out of its incidents too (`incidents::site_scope`).
            let by_name = match &by {
                Author::User(u) => u.as_str(),
                _ => "system",
            };
            crate::incidents::site_scope::dismiss_from_site(tx, &user, &site, by_name)?;
            Ok(())
        })
        .await?)
}

/// The grants, of one site or all (filtered during the scan), ordered by site then user; at most
/// `MAX_LISTED`, the flag saying more exist.
pub fn list(log: &Log, site: Option<&str>) -> Result<(Vec<SiteGrantRow>, bool), StoreError> {
    let (mut all, capped) = log.read()?.site_grants(site, MAX_LISTED)?;
    all.sort_by(|a, b| (&a.site, &a.user).cmp(&(&b.site, &b.user)));
    Ok((all, capped))
}

/// Which sites a person at HQ may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteScope {
    /// Admins and auditors: every site.
    All,
    /// Everyone else: the sites granted to them, with the granted role.
    Granted(BTreeMap<String, Role>),
}

impl SiteScope {
    /// Of an active HQ user, as the store holds it now (a grant taken back counts at once).
    pub fn of(log: &Log, user: &UserRow) -> Result<Self, StoreError> {
        if user.status != UserStatus::Active {
            return Ok(Self::Granted(BTreeMap::new()));
        }
        if matches!(user.role, Role::Admin | Role::Auditor) {
            return Ok(Self::All);
        }
        let grants = log
            .read()?
            .site_grants_of(&crate::users::key(&user.username))?;
        Ok(Self::Granted(
            grants.into_iter().map(|g| (g.site, g.role)).collect(),
        ))
    }

    pub fn allows(&self, site: &str) -> bool {
        match self {
            Self::All => true,
            Self::Granted(m) => m.contains_key(site),
        }
    }

    /// Whether every kind of `site`'s entries reads whole: for admins and auditors (the audit
    /// role reads all) and a site grant of admin. A grant below admin reads the site-wide kinds
    /// only (`views::SITE_WIDE_KINDS`); the rest come withheld.
    pub fn reads_all_kinds(&self, site: &str) -> bool {
        match self {
            Self::All => true,
            Self::Granted(m) => m.get(site) == Some(&Role::Admin),
        }
    }
}
