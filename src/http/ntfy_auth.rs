//! Who subscribes to an ntfy alarm topic: `Authorization: Bearer` (access token) or HTTP Basic
//! `user:password` (as the ntfy app sends it), either also as ntfy's `?auth=` query parameter.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

use super::error::ApiError;
use crate::auth::{AuthError, sessions};
use crate::state::AppState;
use crate::store::UserRow;

/// What a 401 on these routes offers: the ntfy app then asks for a username and password.
const CHALLENGE: &str = "Basic realm=\"plantwire\"";

/// An active user of any role, with the `auth_version` their credential was checked against:
/// a stream ends once the stored user no longer matches it (see `still_valid`).
#[derive(Debug)]
pub struct NtfyUser {
    pub user: UserRow,
    pub auth_version: u64,
}

/// Whether the query carries ntfy's `auth=` parameter (the route guard lets such a request on
/// to the extractor, which checks it).
pub fn has_auth_query(uri: &axum::http::Uri) -> bool {
    uri.query()
        .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("auth=")))
}

/// The `Authorization` value: the header, else ntfy's `?auth=` (base64 of that value, either
/// alphabet, padding optional), else the browser's access cookie as Bearer.
fn credential(parts: &Parts) -> Option<String> {
    if let Some(v) = parts.headers.get(header::AUTHORIZATION) {
        return v.to_str().ok().map(str::to_string);
    }
    from_query(parts).or_else(|| {
        super::extract::cookie(&parts.headers, super::ACCESS_COOKIE).map(|t| format!("Bearer {t}"))
    })
}

fn from_query(parts: &Parts) -> Option<String> {
    let raw = parts
        .uri
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("auth="))?;
    let raw = raw.trim_end_matches("%3D").trim_end_matches('=');
    let bytes = URL_SAFE_NO_PAD
        .decode(raw)
        .or_else(|_| STANDARD_NO_PAD.decode(raw))
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn refuse(e: ApiError) -> Response {
    let mut res = e.into_response();
    if res.status() == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(CHALLENGE),
        );
    }
    res
}

fn auth_error(e: AuthError) -> ApiError {
    match e {
        // A storage fault says nothing about the credential: never 401.
        AuthError::Store(s) => super::error::storage(&s),
        e @ (AuthError::InvalidToken | AuthError::SessionEnded) => {
            ApiError::unauthorized(e.to_string())
        }
        other => other.into(),
    }
}

async fn check(parts: &Parts, state: &AppState) -> Result<NtfyUser, ApiError> {
    let value = credential(parts)
        .ok_or_else(|| ApiError::unauthorized("Basic or Bearer credentials are required"))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value.as_str(), ""));
    let rest = rest.trim();
    let user = if scheme.eq_ignore_ascii_case("bearer") {
        let (user, claims) =
            sessions::authenticate(state.log(), state.auth(), rest).map_err(auth_error)?;
        return finish(user, claims.ver);
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| ApiError::unauthorized("malformed Basic credentials"))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| ApiError::unauthorized("malformed Basic credentials"))?;
        let from = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .ok_or_else(|| ApiError::internal(&"the peer address is unknown"))?;
        sessions::verify_password(state.log(), state.auth(), username, password, from)
            .await
            .map_err(auth_error)?
    } else {
        return Err(ApiError::unauthorized(
            "Basic or Bearer credentials are required",
        ));
    };
    let version = user.auth_version;
    finish(user, version)
}

fn finish(user: UserRow, auth_version: u64) -> Result<NtfyUser, ApiError> {
    if user.must_change_password {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "password_change_required",
            "set a new password first (POST /api/v1/auth/password)",
        ));
    }
    Ok(NtfyUser { user, auth_version })
}

impl FromRequestParts<AppState> for NtfyUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        check(parts, state).await.map_err(refuse)
    }
}
