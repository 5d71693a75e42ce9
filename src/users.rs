//! People: usernames and their rules, creation, roles, status, passwords, registration, search and
//! the first admin. Every change is a log entry (without the password) in the same commit.

use std::path::Path;

use serde::Serialize;

use crate::auth::Auth;
use crate::auth::password::{self, HashError, check_policy};
use crate::config::Registration;
use crate::error::Rejection;
use crate::log::{AppendError, Author, Log, NewEntry, SubmitError, Tx};
use crate::store::{Role, StoreError, UserRow, UserStatus, WriteTx};

pub const STREAM: &str = "admin/users";
pub const KIND_CREATED: &str = "user.created";
pub const KIND_PASSWORD_CHANGED: &str = "user.password_changed";
pub const KIND_PASSWORD_RESET: &str = "user.password_reset";
pub const KIND_ROLE_CHANGED: &str = "user.role_changed";
pub const KIND_STATUS_CHANGED: &str = "user.status_changed";
pub const KIND_REJECTED: &str = "user.rejected";
/// Name of the first admin account.
pub const FIRST_ADMIN: &str = "admin";
/// File in the state directory that receives the first admin's one-time password.
pub const ADMIN_PASSWORD_FILE: &str = "initial-admin-password";

/// Why an account change that hashes a password failed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Hash(#[from] HashError),
}

impl From<Rejection> for UserError {
    fn from(r: Rejection) -> Self {
        UserError::Submit(SubmitError::Rejected(r))
    }
}

/// The lookup key of a username: ASCII letters folded, nothing else (usernames are ASCII, so a
/// Kelvin sign U+212A stays itself and never signs in as `k`).
pub fn key(username: &str) -> String {
    username.to_ascii_lowercase()
}

/// 3-32 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
pub fn validate_username(name: &str) -> Result<(), Rejection> {
    let ok = (3..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    // `system` is the server's own name in direct messages (alarm escalation).
    if ok && key(name) == crate::chat::system_dm::SYSTEM_PEER {
        return Err(Rejection::conflict(
            "username_taken",
            "this username is reserved",
        ));
    }
    if ok {
        Ok(())
    } else {
        Err(Rejection::invalid(
            "invalid_username",
            "a username is 3-32 characters of letters, digits, '.', '_', '-', starting with a letter or digit",
        ))
    }
}

pub fn validate_display_name(name: &str) -> Result<(), Rejection> {
    let n = name.chars().count();
    if (1..=64).contains(&n) && !name.chars().any(char::is_control) && !name.trim().is_empty() {
        Ok(())
    } else {
        Err(Rejection::invalid(
            "invalid_display_name",
            "a display name is 1-64 characters without control characters",
        ))
    }
}

#[derive(Serialize)]
struct Created<'a> {
    username: &'a str,
    display_name: &'a str,
    role: Role,
    status: UserStatus,
}

#[derive(Serialize)]
struct Changed<'a> {
    username: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<UserStatus>,
}

/// What a new account starts with.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub password_hash: String,
    pub role: Role,
    pub status: UserStatus,
    pub must_change_password: bool,
}

fn json_entry<T: Serialize>(kind: &str, by: &Author, body: &T) -> Result<NewEntry, SubmitError> {
    Ok(NewEntry::json(kind, STREAM, by, body)?)
}

/// Creates an account; a username taken in any letter case is a conflict.
pub async fn create(log: &Log, mut new: NewUser, by: &Author) -> Result<UserRow, SubmitError> {
    new.display_name = crate::text::strip_format(&new.display_name);
    validate_username(&new.username).map_err(SubmitError::Rejected)?;
    validate_display_name(&new.display_name).map_err(SubmitError::Rejected)?;
    let entry = json_entry(
        KIND_CREATED,
        by,
        &Created {
            username: &new.username,
            display_name: &new.display_name,
            role: new.role,
            status: new.status,
        },
    )?;
    log.submit(move |tx| {
        if tx.views().user(&key(&new.username))?.is_some() {
            return Err(Rejection::conflict("username_taken", "this username is taken").into());
        }
        let row = UserRow {
            username: new.username.clone(),
            display_name: new.display_name.clone(),
            password_hash: new.password_hash.clone(),
            role: new.role,
            status: new.status,
            must_change_password: new.must_change_password,
            auth_version: 1,
            created_at_us: tx.now_us(),
            last_seen_us: None,
        };
        tx.views().put_user(&row)?;
        tx.append(entry.clone())?;
        Ok(row)
    })
    .await
}

/// Applies `change` to an existing user and logs `kind`. `bump` ends its tokens and sessions.
async fn update(
    log: &Log,
    username: &str,
    by: &Author,
    kind: &'static str,
    bump: bool,
    mut change: impl FnMut(&mut UserRow) -> Result<(), Rejection> + Send + 'static,
) -> Result<UserRow, SubmitError> {
    let k = key(username);
    let by = by.clone();
    log.submit(move |tx| update_in_tx(tx, &k, &by, kind, bump, &mut change))
        .await
}

/// [`update`] in the job, for the user with key `k`.
fn update_in_tx(
    tx: &mut Tx<'_>,
    k: &str,
    by: &Author,
    kind: &'static str,
    bump: bool,
    change: impl FnOnce(&mut UserRow) -> Result<(), Rejection>,
) -> Result<UserRow, AppendError> {
    let Some(mut row) = tx.views().user(k)? else {
        return Err(Rejection::not_found("no_such_user", "no user with this name").into());
    };
    let was_admin = is_active_admin(&row);
    change(&mut row)?;
    if was_admin && !is_active_admin(&row) && !other_active_admin(tx.views(), k)? {
        return Err(Rejection::conflict(
            "last_admin",
            "this is the last active admin; make another account admin first (or use `plantwire user reset-admin`)",
        )
        .into());
    }
    if bump {
        row.auth_version += 1;
    }
    let body = Changed {
        username: &row.username,
        role: (kind == KIND_ROLE_CHANGED).then_some(row.role),
        status: (kind == KIND_STATUS_CHANGED).then_some(row.status),
    };
    let entry = NewEntry::json(kind, STREAM, by, &body)?;
    tx.views().put_user(&row)?;
    tx.append(entry)?;
    Ok(row)
}

fn is_active_admin(u: &UserRow) -> bool {
    u.role == Role::Admin && u.status == UserStatus::Active
}

/// Whether an active admin other than `except` (a username key) exists.
fn other_active_admin(views: &WriteTx, except: &str) -> Result<bool, StoreError> {
    let mut found = false;
    views.scan_users(|u| {
        found = is_active_admin(&u) && key(&u.username) != except;
        !found
    })?;
    Ok(found)
}

pub async fn set_role(
    log: &Log,
    username: &str,
    role: Role,
    by: &Author,
) -> Result<UserRow, SubmitError> {
    let k = key(username);
    let by = by.clone();
    log.submit(move |tx| {
        let row = update_in_tx(tx, &k, &by, KIND_ROLE_CHANGED, true, |row| {
            row.role = role;
            Ok(())
        })?;
        // Below auditor: out of the incidents about the sites they no longer read (the same
        // commit; `incidents::site_scope`).
        if !crate::alarms::scope::sees_every_site(role) {
            let by_name = match &by {
                Author::User(u) => u.as_str(),
                _ => "system",
            };
            crate::incidents::site_scope::dismiss_out_of_scope(tx, &k, by_name)?;
        }
        Ok(row)
    })
    .await
}

/// Approve (pending → active), disable, or enable an account.
pub async fn set_status(
    log: &Log,
    username: &str,
    status: UserStatus,
    by: &Author,
) -> Result<UserRow, SubmitError> {
    update(log, username, by, KIND_STATUS_CHANGED, true, move |row| {
        if status == UserStatus::Pending {
            return Err(Rejection::invalid(
                "invalid_status",
                "an account cannot be set back to pending",
            ));
        }
        row.status = status;
        Ok(())
    })
    .await
}

/// Rejects a pending registration: the row is deleted (the name is free again) and the
/// rejection is logged. Only a pending account can be rejected.
pub async fn reject(log: &Log, username: &str, by: &Author) -> Result<(), SubmitError> {
    let k = key(username);
    let by = by.clone();
    log.submit(move |tx| {
        let Some(row) = tx.views().user(&k)? else {
            return Err(Rejection::not_found("no_such_user", "no user with this name").into());
        };
        if row.status != UserStatus::Pending {
            return Err(Rejection::conflict(
                "not_pending",
                "this account is not waiting for approval",
            )
            .into());
        }
        let body = Changed {
            username: &row.username,
            role: None,
            status: None,
        };
        let entry = NewEntry::json(KIND_REJECTED, STREAM, &by, &body)?;
        tx.views().remove_user(&k)?;
        tx.append(entry)?;
        Ok(())
    })
    .await
}

/// How many registrations wait for an admin.
pub fn pending_count(log: &Log) -> Result<usize, StoreError> {
    let mut n = 0;
    log.read()?.scan_users(None, |u| {
        n += usize::from(u.status == UserStatus::Pending);
        true
    })?;
    Ok(n)
}

/// Approves a registration request (pending → active); any other account is `not_pending`.
pub async fn approve(log: &Log, username: &str, by: &Author) -> Result<UserRow, SubmitError> {
    update(log, username, by, KIND_STATUS_CHANGED, true, move |row| {
        if row.status != UserStatus::Pending {
            return Err(Rejection::conflict(
                "not_pending",
                "this account is not waiting for approval",
            ));
        }
        row.status = UserStatus::Active;
        Ok(())
    })
    .await
}

/// Sets a new password hash. `one_time` marks it for change at next sign-in (admin resets).
pub async fn set_password_hash(
    log: &Log,
    username: &str,
    hash: String,
    one_time: bool,
    by: &Author,
) -> Result<UserRow, SubmitError> {
    let kind = if one_time {
        KIND_PASSWORD_RESET
    } else {
        KIND_PASSWORD_CHANGED
    };
    update(log, username, by, kind, true, move |row| {
        row.password_hash = hash.clone();
        row.must_change_password = one_time;
        Ok(())
    })
    .await
}

/// A fresh one-time password and its hash.
pub async fn one_time_password(auth: &Auth) -> Result<(String, String), HashError> {
    let otp = password::random_password()?;
    let hash = auth.hasher.hash(&otp).await?;
    Ok((otp, hash))
}

/// Makes a one-time password for `username` and stores its hash; returns the password.
pub async fn reset_password(
    log: &Log,
    auth: &Auth,
    username: &str,
    by: &Author,
) -> Result<String, UserError> {
    let (otp, hash) = one_time_password(auth).await?;
    set_password_hash(log, username, hash, true, by).await?;
    Ok(otp)
}

/// Self-service registration under the configured policy.
pub async fn register(
    log: &Log,
    auth: &Auth,
    username: &str,
    display_name: &str,
    password_text: &str,
) -> Result<UserRow, UserError> {
    let status = match auth.config.registration {
        Registration::Closed => {
            return Err(Rejection::forbidden(
                "registration_closed",
                "registration is closed; ask an administrator for an account",
            )
            .into());
        }
        Registration::Approval => UserStatus::Pending,
        Registration::Open => UserStatus::Active,
    };
    validate_username(username)?;
    validate_display_name(display_name)?;
    check_policy(password_text, username)?;
    let hash = auth.hasher.hash(password_text).await?;
    create(
        log,
        NewUser {
            username: username.to_string(),
            display_name: display_name.to_string(),
            password_hash: hash,
            role: Role::Operator,
            status,
            must_change_password: false,
        },
        &Author::User(key(username)),
    )
    .await
    .map_err(UserError::from)
}

/// First start: when no active admin exists, create (or reset) `admin` with a one-time password,
/// written to a 0600 file in the state directory and printed once to the log.
pub async fn ensure_first_admin(
    log: &Log,
    auth: &Auth,
    state_dir: &Path,
) -> Result<Option<String>, UserError> {
    let exists = {
        let rtx = log.read().map_err(SubmitError::from)?;
        let mut any = false;
        rtx.scan_users(None, |u| {
            any = u.role == Role::Admin && u.status == UserStatus::Active;
            !any
        })
        .map_err(SubmitError::from)?;
        any
    };
    if exists {
        return Ok(None);
    }
    let otp = reset_admin(log, auth, state_dir, &Author::System).await?;
    tracing::warn!(
        username = FIRST_ADMIN,
        password = %otp,
        file = %state_dir.join(ADMIN_PASSWORD_FILE).display(),
        "created the first admin with a one-time password; it must be changed at first sign-in"
    );
    Ok(Some(otp))
}

/// Recovers the `admin` account: active, admin role, a new one-time password (also written to the
/// password file). Returns the password.
pub async fn reset_admin(
    log: &Log,
    auth: &Auth,
    state_dir: &Path,
    by: &Author,
) -> Result<String, UserError> {
    let (otp, hash) = one_time_password(auth).await?;
    let existing = log
        .read()
        .and_then(|r| r.user(FIRST_ADMIN))
        .map_err(SubmitError::from)?;
    match existing {
        None => {
            create(
                log,
                NewUser {
                    username: FIRST_ADMIN.into(),
                    display_name: "Administrator".into(),
                    password_hash: hash,
                    role: Role::Admin,
                    status: UserStatus::Active,
                    must_change_password: true,
                },
                by,
            )
            .await?;
        }
        Some(_) => {
            update(
                log,
                FIRST_ADMIN,
                by,
                KIND_PASSWORD_RESET,
                true,
                move |row| {
                    row.password_hash = hash.clone();
                    row.must_change_password = true;
                    row.role = Role::Admin;
                    row.status = UserStatus::Active;
                    Ok(())
                },
            )
            .await?;
        }
    }
    let path = state_dir.join(ADMIN_PASSWORD_FILE);
    let _ = std::fs::remove_file(&path);
    crate::secret::write_new_secret_file(&path, format!("{otp}\n").as_bytes())
        .map_err(|source| SubmitError::File { path, source })?;
    Ok(otp)
}

/// Prefix search on username and display name (case-insensitive), active users only, in
/// username order from the one after `after` (a cursor: the last username of the page before).
pub fn search(
    log: &Log,
    q: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<UserRow>, StoreError> {
    let q = q.to_lowercase();
    let mut out = Vec::new();
    let rtx = log.read()?;
    let visit = |u: UserRow| {
        let hit = u.username.to_lowercase().starts_with(&q)
            || u.display_name.to_lowercase().starts_with(&q)
            || u.display_name
                .to_lowercase()
                .split_whitespace()
                .any(|w| w.starts_with(&q));
        if hit && u.status == UserStatus::Active {
            out.push(u);
        }
        out.len() < limit
    };
    rtx.scan_users(after.map(key).as_deref(), visit)?;
    Ok(out)
}

/// All users (admin listing), optionally only those with `status`.
pub fn list(log: &Log, status: Option<UserStatus>) -> Result<Vec<UserRow>, StoreError> {
    let mut out = Vec::new();
    log.read()?.scan_users(None, |u| {
        if status.is_none_or(|s| s == u.status) {
            out.push(u);
        }
        true
    })?;
    Ok(out)
}

pub fn get(log: &Log, username: &str) -> Result<Option<UserRow>, StoreError> {
    log.read()?.user(&key(username))
}

/// Records when the user's last live connection closed: a view update without a log entry, so
/// presence costs no entry per heartbeat.
pub async fn touch_last_seen(log: &Log, username: &str) -> Result<(), SubmitError> {
    let k = key(username);
    log.submit(move |tx| {
        if let Some(mut row) = tx.views().user(&k)? {
            row.last_seen_us = Some(tx.now_us());
            tx.views().put_user(&row)?;
        }
        Ok(())
    })
    .await
}
