//! Sessions: sign-in with throttling, rotating refresh tokens with reuse detection (reuse of an
//! old token ends the whole session), sign-out, password change, and checking an access token.

use std::net::IpAddr;

use serde::Serialize;

use super::Auth;
use super::password::check_policy;
use super::tokens::{ACCESS_AUDIENCE, AccessClaims, new_refresh_token, new_session_id};
use crate::error::Rejection;
use crate::log::{Author, Log};
use crate::log::{NewEntry, SubmitError};
use crate::store::{SessionRow, StoreError, UserRow, UserStatus};
use crate::users;

pub const STREAM: &str = "security";
pub const KIND_LOGIN: &str = "auth.login";
pub const KIND_LOGIN_FAILED: &str = "auth.login_failed";
pub const KIND_LOCKOUT: &str = "auth.lockout";
pub const KIND_REFRESH_REUSE: &str = "auth.refresh_reuse";
pub const KIND_LOGOUT: &str = "auth.logout";
pub const KIND_SESSION_ENDED: &str = "auth.session_ended";
/// At most this many sessions are listed for one user.
pub const MAX_LISTED_SESSIONS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("wrong username or password")]
    BadCredentials,
    #[error("too many failed attempts; retry in {0} s")]
    Throttled(u64),
    #[error("this account waits for an administrator's approval")]
    Pending,
    #[error("this account is disabled")]
    Disabled,
    #[error("the token is invalid")]
    InvalidToken,
    #[error("the session has ended; sign in again")]
    SessionEnded,
    #[error(transparent)]
    Rejected(Rejection),
    #[error(transparent)]
    Submit(SubmitError),
    /// Reading the store failed: not the client's fault, never an answer of 401.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Token(#[from] super::tokens::TokenError),
    #[error(transparent)]
    Hash(#[from] super::password::HashError),
}

impl From<SubmitError> for AuthError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Rejected(r) => AuthError::Rejected(r),
            other => AuthError::Submit(other),
        }
    }
}

/// Tokens handed to a client after sign-in, refresh or a password change.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: String,
    pub session_id: String,
    pub user: UserRow,
}

#[derive(Serialize)]
struct Attempt<'a> {
    username: &'a str,
    from: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    lockout_secs: Option<u64>,
}

#[derive(Serialize)]
struct SessionEvent<'a> {
    username: &'a str,
    session: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
}

fn entry<T: Serialize>(kind: &str, author: &Author, body: &T) -> Result<NewEntry, AuthError> {
    Ok(NewEntry::json(kind, STREAM, author, body).map_err(SubmitError::from)?)
}

/// Who is on the other end of a sign-in or refresh, as the session list shows it.
#[derive(Debug, Clone)]
pub struct Client {
    pub address: IpAddr,
    /// A short summary of the `User-Agent` ([`summarise_agent`]).
    pub device: String,
}

impl Client {
    pub fn new(address: IpAddr, user_agent: Option<&str>) -> Self {
        Self {
            address,
            device: user_agent.map(summarise_agent).unwrap_or_default(),
        }
    }
}

/// "Firefox on Android", "curl", or the agent's first word: enough for a person to tell their
/// sessions apart, bounded (64 characters of printable ASCII), never the whole header.
pub fn summarise_agent(agent: &str) -> String {
    const BROWSERS: [(&str, &str); 8] = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chromium/", "Chromium"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
        ("python", "Python"),
    ];
    const SYSTEMS: [(&str, &str); 7] = [
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ];
    let browser = BROWSERS
        .iter()
        .find(|(k, _)| agent.contains(k))
        .map(|(_, v)| *v);
    let system = SYSTEMS
        .iter()
        .find(|(k, _)| agent.contains(k))
        .map(|(_, v)| *v);
    let text = match (browser, system) {
        (Some(b), Some(s)) => format!("{b} on {s}"),
        (Some(b), None) => b.to_string(),
        (None, _) => agent
            .split(['/', ' '])
            .next()
            .unwrap_or_default()
            .to_string(),
    };
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(64)
        .collect()
}

/// Checks a username and password and opens a session.
pub async fn login(
    log: &Log,
    auth: &Auth,
    username: &str,
    password: &str,
    client: &Client,
) -> Result<Issued, AuthError> {
    let user = verify_password(log, auth, username, password, client.address).await?;
    open_session(log, auth, &user, client).await
}

/// Checks a username and password from `from` under the sign-in throttles, recording failures
/// and lockouts as security events; returns the active user. Used by sign-in and by HTTP Basic
/// on the ntfy subscribe routes.
pub async fn verify_password(
    log: &Log,
    auth: &Auth,
    username: &str,
    password: &str,
    from: IpAddr,
) -> Result<UserRow, AuthError> {
    if username.is_empty() || username.len() > 64 || password.is_empty() || password.len() > 1024 {
        return Err(AuthError::Rejected(Rejection::invalid(
            "invalid_login",
            "username and password must be given, at most 64 and 1024 bytes",
        )));
    }
    let k = users::key(username);
    let user_addr = format!("{k}|{from}");
    let addr = from.to_string();
    let now = log.now_us();
    for (t, key) in [
        (&auth.by_user_addr, user_addr.as_str()),
        (&auth.by_addr, addr.as_str()),
        (&auth.by_user, k.as_str()),
    ] {
        if let Err(secs) = t.check(key, now) {
            let shown: String = username.chars().take(64).collect();
            tracing::warn!(
                event = KIND_LOCKOUT,
                username = ?shown,
                from = %addr,
                lockout_secs = secs,
                "sign-in refused: locked out"
            );
            return Err(AuthError::Throttled(secs));
        }
    }
    let user = log.read()?.user(&k)?;
    let ok = auth
        .hasher
        .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
        .await;
    if !ok {
        let waits = [
            auth.by_user_addr.fail(&user_addr, now),
            auth.by_addr.fail(&addr, now),
            auth.by_user.fail(&k, now),
        ];
        let lockout = waits.into_iter().flatten().max();
        let shown: String = username.chars().take(64).collect();
        // For fail2ban or a SIEM: fixed message, the facts in fields (the username quoted and
        // escaped, since it is whatever the client sent).
        tracing::warn!(
            event = KIND_LOGIN_FAILED,
            username = ?shown,
            from = %addr,
            "sign-in failed"
        );
        if let Some(secs) = lockout {
            tracing::warn!(
                event = KIND_LOCKOUT,
                username = ?shown,
                from = %addr,
                lockout_secs = secs,
                "sign-in locked out"
            );
        }
        let mut entries = vec![entry(
            KIND_LOGIN_FAILED,
            &Author::Anonymous,
            &Attempt {
                username: &shown,
                from: addr.clone(),
                lockout_secs: None,
            },
        )?];
        if let Some(secs) = lockout {
            entries.push(entry(
                KIND_LOCKOUT,
                &Author::Anonymous,
                &Attempt {
                    username: &shown,
                    from: addr.clone(),
                    lockout_secs: Some(secs),
                },
            )?);
        }
        log.submit(move |tx| {
            for e in &entries {
                tx.append(e.clone())?;
            }
            Ok(())
        })
        .await?;
        return Err(AuthError::BadCredentials);
    }
    let Some(user) = user else {
        return Err(AuthError::BadCredentials);
    };
    match user.status {
        UserStatus::Pending => return Err(AuthError::Pending),
        UserStatus::Disabled => return Err(AuthError::Disabled),
        UserStatus::Active => {}
    }
    auth.by_user_addr.succeed(&user_addr);
    Ok(user)
}

/// Starts a new session (a new refresh-token family) for `user`.
async fn open_session(
    log: &Log,
    auth: &Auth,
    user: &UserRow,
    client: &Client,
) -> Result<Issued, AuthError> {
    let (refresh, refresh_hash) = new_refresh_token()?;
    let sid = new_session_id()?;
    let k = users::key(&user.username);
    let ttl_us = secs_to_us(auth.config.refresh_ttl_secs);
    let event = entry(
        KIND_LOGIN,
        &Author::User(k.clone()),
        &SessionEvent {
            username: &user.username,
            session: &sid,
            from: Some(client.address.to_string()),
        },
    )?;
    let expected_version = user.auth_version;
    let sid_job = sid.clone();
    let device = client.device.clone();
    let address = client.address.to_string();
    let row = log
        .submit(move |tx| {
            let Some(mut row) = tx.views().user(&k)? else {
                return Err(Rejection::not_found("no_such_user", "no user with this name").into());
            };
            if row.auth_version != expected_version || row.status != UserStatus::Active {
                return Err(Rejection::conflict(
                    "account_changed",
                    "the account changed; sign in again",
                )
                .into());
            }
            let now = tx.now_us();
            row.last_seen_us = Some(now);
            tx.views().put_session(&SessionRow {
                id: sid_job.clone(),
                user: k.clone(),
                auth_version: row.auth_version,
                current_refresh: refresh_hash,
                created_at_us: now,
                expires_at_us: now.saturating_add(ttl_us),
                revoked_at_us: None,
                device: device.clone(),
                address: Some(address.clone()),
                last_used_us: Some(now),
            })?;
            tx.views().put_user(&row)?;
            tx.append(event.clone())?;
            Ok(row)
        })
        .await?;
    issue(log, auth, row, sid, refresh)
}

fn secs_to_us(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
}

fn issue(
    log: &Log,
    auth: &Auth,
    user: UserRow,
    sid: String,
    refresh: String,
) -> Result<Issued, AuthError> {
    let now_s = log.now_us() / 1_000_000;
    let ttl = auth.config.access_ttl_secs;
    let claims = AccessClaims {
        iss: log.site().to_string(),
        aud: ACCESS_AUDIENCE.into(),
        sub: users::key(&user.username),
        sid: sid.clone(),
        role: user.role,
        ver: user.auth_version,
        iat: now_s,
        exp: now_s + i64::try_from(ttl).unwrap_or(900),
    };
    let access_token = auth.keys.issue(&claims)?;
    Ok(Issued {
        access_token,
        expires_in: ttl,
        refresh_token: refresh,
        session_id: sid,
        user,
    })
}

enum Refreshed {
    Rotated(UserRow, String),
    Reused,
    Ended,
}

/// Exchanges a refresh token for new tokens. The old one stops working; presenting it again
/// ends the whole session.
pub async fn refresh(
    log: &Log,
    auth: &Auth,
    token: &str,
    client: &Client,
) -> Result<Issued, AuthError> {
    if !token.starts_with(super::tokens::REFRESH_PREFIX) || token.len() > 128 {
        return Err(AuthError::InvalidToken);
    }
    let presented = crate::secret::token_hash(token);
    let (next, next_hash) = new_refresh_token()?;
    let ttl_us = secs_to_us(auth.config.refresh_ttl_secs);
    let address = client.address.to_string();
    let device = client.device.clone();
    let outcome = log
        .submit(move |tx| {
            let Some(sid) = tx.views().session_of_refresh(&presented)? else {
                return Err(Rejection::invalid("invalid_token", "unknown refresh token").into());
            };
            let Some(mut session) = tx.views().session(&sid)? else {
                return Err(Rejection::invalid("invalid_token", "unknown refresh token").into());
            };
            let now = tx.now_us();
            if session.revoked_at_us.is_some() || session.expires_at_us < now {
                return Ok(Refreshed::Ended);
            }
            let user = tx.views().user(&session.user)?;
            if session.current_refresh != presented {
                // An old token came back: someone holds a copy. End the session for everyone.
                session.revoked_at_us = Some(now);
                tx.views().put_session(&session)?;
                let e = NewEntry::json(
                    KIND_REFRESH_REUSE,
                    STREAM,
                    &Author::System,
                    &SessionEvent {
                        username: &session.user,
                        session: &session.id,
                        from: None,
                    },
                )?;
                tx.append(e)?;
                return Ok(Refreshed::Reused);
            }
            let Some(mut user) = user.filter(|u| {
                u.status == UserStatus::Active && u.auth_version == session.auth_version
            }) else {
                session.revoked_at_us = Some(now);
                tx.views().put_session(&session)?;
                return Ok(Refreshed::Ended);
            };
            session.current_refresh = next_hash;
            session.expires_at_us = now.saturating_add(ttl_us);
            session.address = Some(address.clone());
            session.last_used_us = Some(now);
            if !device.is_empty() {
                session.device = device.clone();
            }
            tx.views().put_session(&session)?;
            user.last_seen_us = Some(now);
            tx.views().put_user(&user)?;
            Ok(Refreshed::Rotated(user, session.id))
        })
        .await
        .map_err(|e| match e {
            SubmitError::Rejected(_) => AuthError::InvalidToken,
            other => AuthError::Submit(other),
        })?;
    match outcome {
        Refreshed::Rotated(user, sid) => issue(log, auth, user, sid, next),
        Refreshed::Reused => Err(AuthError::InvalidToken),
        Refreshed::Ended => Err(AuthError::SessionEnded),
    }
}

/// Ends a session at once: its access and refresh tokens stop working.
pub async fn logout(log: &Log, session_id: &str, username: &str) -> Result<(), AuthError> {
    let sid = session_id.to_string();
    let e = entry(
        KIND_LOGOUT,
        &Author::User(users::key(username)),
        &SessionEvent {
            username,
            session: session_id,
            from: None,
        },
    )?;
    log.submit(move |tx| {
        if let Some(mut s) = tx.views().session(&sid)?
            && s.revoked_at_us.is_none()
        {
            s.revoked_at_us = Some(tx.now_us());
            tx.views().put_session(&s)?;
            tx.append(e.clone())?;
        }
        Ok(())
    })
    .await?;
    Ok(())
}

/// Checks an access token against the signature, the clock, the session and the user as stored
/// now, so sign-out, disabling, role and password changes take effect at once.
pub fn authenticate(
    log: &Log,
    auth: &Auth,
    token: &str,
) -> Result<(UserRow, AccessClaims), AuthError> {
    let now_us = log.now_us();
    let leeway = i64::try_from(auth.config.leeway_secs).unwrap_or(30);
    let claims = auth
        .keys
        .verify(token, log.site(), now_us / 1_000_000, leeway)
        .map_err(|e| match e {
            super::tokens::TokenError::Expired => AuthError::SessionEnded,
            _ => AuthError::InvalidToken,
        })?;
    let user = check_session(log, &claims)?;
    Ok((user, claims))
}

/// The one session check, for every request and for every write on a live socket: the session
/// exists, belongs to the token's user, is neither revoked nor expired, and the user is active
/// with the token's `auth_version`. Returns the user as stored now (its role included).
pub fn check_session(log: &Log, claims: &AccessClaims) -> Result<UserRow, AuthError> {
    let now_us = log.now_us();
    let rtx = log.read()?;
    let session = rtx.session(&claims.sid)?.ok_or(AuthError::InvalidToken)?;
    if session.user != claims.sub
        || session.revoked_at_us.is_some()
        || session.expires_at_us < now_us
    {
        return Err(AuthError::SessionEnded);
    }
    let user = rtx.user(&claims.sub)?.ok_or(AuthError::InvalidToken)?;
    if user.status != UserStatus::Active {
        return Err(AuthError::Disabled);
    }
    if user.auth_version != claims.ver || session.auth_version != claims.ver {
        return Err(AuthError::SessionEnded);
    }
    Ok(user)
}

/// The user (lower-cased) whose sessions `e` may have ended: sign-out, a reused refresh token, or
/// a change of status, role or password. Live sockets re-check their session when they see one.
pub fn may_end_sessions_of(e: &crate::log::Entry) -> Option<String> {
    let relevant = matches!(
        e.kind.as_str(),
        KIND_LOGOUT | KIND_REFRESH_REUSE | KIND_SESSION_ENDED
    ) || matches!(
        e.kind.as_str(),
        users::KIND_STATUS_CHANGED
            | users::KIND_ROLE_CHANGED
            | users::KIND_PASSWORD_CHANGED
            | users::KIND_PASSWORD_RESET
    );
    if !relevant {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Subject {
        username: String,
    }
    let s: Subject = serde_json::from_slice(&e.body).ok()?;
    Some(users::key(&s.username))
}

/// Changes one's own password after checking the current one; all other sessions end, and a new
/// session is opened for the caller.
pub async fn change_password(
    log: &Log,
    auth: &Auth,
    user: &UserRow,
    current: &str,
    new: &str,
    client: &Client,
) -> Result<Issued, AuthError> {
    if !auth.hasher.verify(current, Some(&user.password_hash)).await {
        return Err(AuthError::Rejected(Rejection::forbidden(
            "wrong_password",
            "the current password is wrong",
        )));
    }
    check_policy(new, &user.username).map_err(AuthError::Rejected)?;
    if new == current {
        return Err(AuthError::Rejected(Rejection::invalid(
            "same_password",
            "choose a password different from the current one",
        )));
    }
    let hash = auth.hasher.hash(new).await?;
    let by = Author::User(users::key(&user.username));
    let updated = users::set_password_hash(log, &user.username, hash, false, &by).await?;
    if users::key(&user.username) == users::FIRST_ADMIN {
        forget_first_password(&auth.first_admin_password_file);
    }
    open_session(log, auth, &updated, client).await
}

/// The one-time password in the file no longer works: remove the file so it cannot mislead.
fn forget_first_password(path: &std::path::Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::info!(file = %path.display(), "removed the first admin's one-time password file")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot remove the one-time password file")
        }
    }
}

/// The open sessions of `username` (neither ended nor expired), newest first, at most
/// [`MAX_LISTED_SESSIONS`]. A scan of the sessions table: it holds one row per sign-in.
pub fn open_sessions(log: &Log, username: &str) -> Result<Vec<SessionRow>, StoreError> {
    let k = users::key(username);
    let now = log.now_us();
    let mut out = Vec::new();
    log.read()?.scan_sessions(|s| {
        if s.user == k && s.revoked_at_us.is_none() && s.expires_at_us >= now {
            out.push(s);
        }
        true
    })?;
    out.sort_by_key(|s| std::cmp::Reverse(s.created_at_us));
    out.truncate(MAX_LISTED_SESSIONS);
    Ok(out)
}

/// Ends one session of `username` (an admin's or the user's own decision): its tokens stop
/// working at once and live sockets close. Unknown, foreign or already ended: `no_such_session`.
pub async fn end_session(
    log: &Log,
    username: &str,
    session_id: &str,
    by: &Author,
) -> Result<(), SubmitError> {
    let k = users::key(username);
    let sid = session_id.to_string();
    let e = NewEntry::json(
        KIND_SESSION_ENDED,
        STREAM,
        by,
        &SessionEvent {
            username: &k,
            session: session_id,
            from: None,
        },
    )?;
    log.submit(move |tx| {
        let now = tx.now_us();
        match tx.views().session(&sid)? {
            Some(mut s) if s.user == k && s.revoked_at_us.is_none() && s.expires_at_us >= now => {
                s.revoked_at_us = Some(now);
                tx.views().put_session(&s)?;
                tx.append(e.clone())?;
                Ok(())
            }
            _ => {
                Err(Rejection::not_found("no_such_session", "no open session with this id").into())
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::summarise_agent;

    #[test]
    fn agents_are_summarised_and_bounded() {
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(summarise_agent(firefox), "Firefox on Linux");
        let edge = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0";
        assert_eq!(summarise_agent(edge), "Edge on Windows");
        assert_eq!(summarise_agent("curl/8.5.0"), "curl");
        assert_eq!(summarise_agent("pump-gateway/2.1 (fw 7)"), "pump-gateway");
        let hostile = format!("{}\u{7}\n{}", "x".repeat(100), "y");
        let s = summarise_agent(&hostile);
        assert!(s.len() <= 64 && s.chars().all(|c| c.is_ascii_graphic() || c == ' '));
    }
}
