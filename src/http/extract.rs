//! Request extractors that answer in our error format: JSON bodies (content type, size, shape)
//! and device authentication by API token.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::devices;
use crate::state::AppState;
use crate::store::DeviceRow;

/// A JSON body: `application/json` required (415), within the body limit (413), well-formed and of
/// the expected shape with no unknown fields (400).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    "the request body is larger than the server accepts",
                )
            } else {
                ApiError::bad_request("bad_body", "the request body could not be read")
            }
        })?;
        parse_object(&bytes).map(ApiJson)
    }
}

/// Parses a request body that must be a JSON object of shape `T` (400 `invalid_json` otherwise);
/// serde alone would also take a positional array for a struct.
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the body must be a JSON object",
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("invalid JSON body: {e}")))
}

/// An active device, authenticated by the verified client certificate of a device-listener
/// connection (looked up again on every request) or by `Authorization: Bearer pwd_…`.
pub struct DeviceAuth(pub DeviceRow);

impl FromRequestParts<AppState> for DeviceAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(peer) = parts.extensions.get::<crate::tls::gate::PeerCertificate>() {
            let log = state.log();
            let cache = state.device_auth();
            return match crate::device_certs::authenticate(
                log,
                cache,
                &peer.fingerprint,
                log.now_us(),
            )? {
                Some(device) => Ok(DeviceAuth(device)),
                None => Err(ApiError::unauthorized(
                    "this device certificate is revoked, expired or unknown",
                )),
            };
        }
        let token = bearer(&parts.headers)
            .ok_or_else(|| ApiError::unauthorized("a device API token is required"))?;
        match devices::authenticate(state.log(), state.device_auth(), &token)? {
            Some(device) => Ok(DeviceAuth(device)),
            None => Err(ApiError::unauthorized("unknown or revoked device token")),
        }
    }
}

/// Cookie names for browser sessions.
pub const ACCESS_COOKIE: &str = "pw_access";
pub const REFRESH_COOKIE: &str = "pw_refresh";

/// Paths a user with a one-time password may still use.
const ALLOWED_BEFORE_PASSWORD_CHANGE: [&str; 3] = [
    "/api/v1/auth/password",
    "/api/v1/auth/me",
    "/api/v1/auth/logout",
];

/// The only writes an auditor may make: to its own account (sign out, its password, ending one
/// of its own sessions). Every other state-changing request is refused before its handler runs.
fn auditor_may_write(method: &axum::http::Method, path: &str) -> bool {
    match *method {
        axum::http::Method::POST => {
            matches!(path, "/api/v1/auth/logout" | "/api/v1/auth/password")
        }
        axum::http::Method::DELETE => path
            .strip_prefix("/api/v1/auth/sessions/")
            .is_some_and(|id| !id.is_empty() && !id.contains('/')),
        _ => false,
    }
}

/// The value of cookie `name`, from any `Cookie` header.
pub fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

pub(super) fn bearer(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string())
}

/// Whether the request carries any credential at all (used by the route guard).
pub fn has_credentials(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key(header::AUTHORIZATION) || cookie(headers, ACCESS_COOKIE).is_some()
}

/// A cookie-authenticated, state-changing request must come from a page of this server.
pub fn check_same_origin(parts: &Parts) -> Result<(), ApiError> {
    check_origin(&parts.headers, &parts.uri)
}

/// The same check from the headers and URI alone (WebSocket upgrades).
pub fn check_origin(
    headers: &axum::http::HeaderMap,
    uri: &axum::http::Uri,
) -> Result<(), ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()));
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(&format!("https://{h}")) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "bad_origin",
            "a cookie-authenticated request must come from this server's own pages",
        )),
    }
}

/// The signed-in person, by `Authorization: Bearer` or the access cookie.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: crate::store::UserRow,
    pub claims: crate::auth::AccessClaims,
    pub via_cookie: bool,
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (token, via_cookie) = match bearer(&parts.headers) {
            Some(t) => (t, false),
            None => match cookie(&parts.headers, ACCESS_COOKIE) {
                Some(t) => (t, true),
                None => return Err(ApiError::unauthorized("sign in first")),
            },
        };
        let unsafe_method = !matches!(parts.method.as_str(), "GET" | "HEAD" | "OPTIONS");
        if via_cookie && unsafe_method {
            check_same_origin(parts)?;
        }
        let (user, claims) = crate::auth::sessions::authenticate(state.log(), state.auth(), &token)
            .map_err(|e| match e {
                // A storage fault says nothing about the token: never 401, or clients drop a
                // valid session.
                crate::auth::AuthError::Store(s) => super::error::storage(&s),
                other => ApiError::unauthorized(other.to_string()),
            })?;
        if user.must_change_password && !ALLOWED_BEFORE_PASSWORD_CHANGE.contains(&parts.uri.path())
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "password_change_required",
                "set a new password first (POST /api/v1/auth/password)",
            ));
        }
        if user.role == crate::store::Role::Auditor
            && unsafe_method
            && !auditor_may_write(&parts.method, parts.uri.path())
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "read_only_role",
                "an auditor reads but changes nothing",
            ));
        }
        Ok(Self {
            user,
            claims,
            via_cookie,
        })
    }
}

/// A minimum role, as a type.
pub trait MinRole {
    const ROLE: crate::store::Role;
}

#[derive(Debug)]
pub struct Viewer;
#[derive(Debug)]
pub struct Operator;
#[derive(Debug)]
pub struct Admin;

impl MinRole for Viewer {
    const ROLE: crate::store::Role = crate::store::Role::Viewer;
}
impl MinRole for Operator {
    const ROLE: crate::store::Role = crate::store::Role::Operator;
}
impl MinRole for Admin {
    const ROLE: crate::store::Role = crate::store::Role::Admin;
}

/// A signed-in person with at least role `R`.
#[derive(Debug)]
pub struct RequireRole<R>(pub CurrentUser, pub std::marker::PhantomData<R>);

impl<R: MinRole + Send + Sync> FromRequestParts<AppState> for RequireRole<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let current = CurrentUser::from_request_parts(parts, state).await?;
        if current.user.role < R::ROLE {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "your role does not allow this",
            ));
        }
        Ok(Self(current, std::marker::PhantomData))
    }
}
