//! Sign-in, refresh, sign-out, "me", password change and registration. Browsers get HttpOnly,
//! Secure, SameSite=Strict cookies (`session: "cookie"`); other clients get tokens in the body.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{
    ACCESS_COOKIE, ApiJson, CurrentUser, REFRESH_COOKIE, check_same_origin, cookie, parse_object,
};
use crate::auth::{Issued, sessions};
use crate::state::AppState;
use crate::store::{Role, UserRow, UserStatus};
use crate::users;

/// How the client wants its session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionMode {
    /// Tokens in the response body, sent back as `Authorization: Bearer`.
    #[default]
    Token,
    /// HttpOnly cookies, for browsers.
    Cookie,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub session: SessionMode,
}

/// What a person sees of their own account.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub status: UserStatus,
    pub must_change_password: bool,
    pub site: String,
    /// In `GET /api/v1/auth/me` only: this server is an HQ (its `/api/v1/sites` routes answer).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hq: bool,
}

impl Me {
    pub fn of(u: &UserRow, site: &str) -> Self {
        Self {
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            role: u.role,
            status: u.status,
            must_change_password: u.must_change_password,
            site: site.to_string(),
            hq: false,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub token_type: &'static str,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub user: Me,
}

fn set_cookie(res: &mut Response, name: &str, value: &str, path: &str, max_age: u64) {
    let c = format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn clear_cookies(res: &mut Response) {
    set_cookie(res, ACCESS_COOKIE, "", "/", 0);
    set_cookie(res, REFRESH_COOKIE, "", "/api/v1/auth", 0);
}

fn respond(state: &AppState, issued: Issued, mode: SessionMode) -> Response {
    let me = Me::of(&issued.user, state.log().site());
    let cookie_mode = mode == SessionMode::Cookie;
    let body = TokenResponse {
        token_type: "Bearer",
        expires_in: issued.expires_in,
        access_token: (!cookie_mode).then(|| issued.access_token.clone()),
        refresh_token: (!cookie_mode).then(|| issued.refresh_token.clone()),
        user: me,
    };
    let mut res = Json(body).into_response();
    if cookie_mode {
        set_cookie(
            &mut res,
            ACCESS_COOKIE,
            &issued.access_token,
            "/",
            issued.expires_in,
        );
        let refresh_ttl = state.config().auth.refresh_ttl_secs;
        set_cookie(
            &mut res,
            REFRESH_COOKIE,
            &issued.refresh_token,
            "/api/v1/auth",
            refresh_ttl,
        );
    }
    res
}

/// The session list's view of the caller: its address and what its `User-Agent` says it is.
fn client_of(peer: SocketAddr, headers: &axum::http::HeaderMap) -> sessions::Client {
    let agent = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    sessions::Client::new(peer.ip(), agent)
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest, responses((status = 200, body = TokenResponse), (status = 401, body = super::error::ErrorResponse), (status = 429, body = super::error::ErrorResponse)))]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    parts: Parts,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    if req.session == SessionMode::Cookie {
        check_same_origin(&parts)?;
    }
    let issued = sessions::login(
        state.log(),
        state.auth(),
        &req.username,
        &req.password,
        &client_of(peer, &parts.headers),
    )
    .await?;
    Ok(respond(&state, issued, req.session))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Refresh by the cookie (browsers, same origin required) or by a JSON body.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest, responses((status = 200, body = TokenResponse), (status = 401, body = super::error::ErrorResponse)))]
pub async fn refresh(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    parts: Parts,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (token, mode) = match cookie(&parts.headers, REFRESH_COOKIE) {
        Some(t) if body.is_empty() => {
            check_same_origin(&parts)?;
            (t, SessionMode::Cookie)
        }
        _ => {
            let req: RefreshRequest = parse_object(&body)?;
            (req.refresh_token, SessionMode::Token)
        }
    };
    let client = client_of(peer, &parts.headers);
    match sessions::refresh(state.log(), state.auth(), &token, &client).await {
        Ok(issued) => Ok(respond(&state, issued, mode)),
        Err(e) => {
            let mut res = ApiError::from(e).into_response();
            if mode == SessionMode::Cookie {
                clear_cookies(&mut res);
            }
            Ok(res)
        }
    }
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", responses((status = 204)))]
pub async fn logout(State(state): State<AppState>, me: CurrentUser) -> Result<Response, ApiError> {
    sessions::logout(state.log(), &me.claims.sid, &me.user.username).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    clear_cookies(&mut res);
    Ok(res)
}

#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", responses((status = 200, body = Me)))]
pub async fn me(State(state): State<AppState>, me: CurrentUser) -> Json<Me> {
    let mut out = Me::of(&me.user, state.log().site());
    out.hq = state.replication().and_then(|r| r.hq()).is_some();
    Json(out)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", request_body = PasswordChange, responses((status = 200, body = TokenResponse), (status = 400, body = super::error::ErrorResponse)))]
pub async fn password(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    me: CurrentUser,
    ApiJson(req): ApiJson<PasswordChange>,
) -> Result<Response, ApiError> {
    let issued = sessions::change_password(
        state.log(),
        state.auth(),
        &me.user,
        &req.current_password,
        &req.new_password,
        &client_of(peer, &headers),
    )
    .await?;
    let mode = if me.via_cookie {
        SessionMode::Cookie
    } else {
        SessionMode::Token
    };
    Ok(respond(&state, issued, mode))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub username: String,
    pub display_name: String,
    pub password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Registered {
    pub username: String,
    pub status: UserStatus,
}

#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = RegisterRequest, responses((status = 201, body = Registered), (status = 403, body = super::error::ErrorResponse)))]
pub async fn register(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    let row = users::register(
        state.log(),
        state.auth(),
        &req.username,
        &req.display_name,
        &req.password,
    )
    .await?;
    let status = if row.status == UserStatus::Pending {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(Registered {
            username: row.username,
            status: row.status,
        }),
    ))
}
