//! The one mapping from errors to HTTP: statuses, stable machine-readable codes and `Retry-After`.
//! User text is kept apart from log detail: a 5xx body never carries anything internal.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::{RejectKind, Rejection};

/// What every error response carries, as documented in the OpenAPI document.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorResponse {
    /// Stable, machine-readable, e.g. `no_such_conversation`.
    pub code: String,
    /// For people.
    pub error: String,
    pub request_id: String,
    /// Per-field refusals, only on `422 invalid_answers` / `invalid_template` /
    /// `invalid_incident`: field or question id → why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<std::collections::BTreeMap<String, String>>,
}

/// The body of an error response; the HTTP layer adds the request id when it writes it.
#[derive(Debug, Clone)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
    /// Per-field refusals (`422 invalid_answers`, `invalid_template`): field → why.
    pub fields: Option<std::collections::BTreeMap<String, String>>,
}

/// An error as the API answers it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after_secs: Option<u64>,
    /// Per-field refusals, sent as `fields` beside `code`.
    pub fields: Option<std::collections::BTreeMap<String, String>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
            fields: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    pub fn busy(retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the server is busy; retry after the indicated delay",
            )
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after_secs: Some(5),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }

    /// Logs `detail` with the request's span and answers with a bare 500.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

/// The code used when a response left the router with an error status but no `ErrorBody`
/// (axum's own rejections, the body limit, a missing route or method).
pub fn default_code(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::BAD_REQUEST => ("bad_request", "the request is malformed"),
        StatusCode::UNAUTHORIZED => ("unauthorized", "authentication required"),
        StatusCode::FORBIDDEN => ("forbidden", "not allowed"),
        StatusCode::NOT_FOUND => ("not_found", "no such resource"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "method not allowed here"),
        StatusCode::CONFLICT => ("conflict", "conflicts with the current state"),
        StatusCode::PAYLOAD_TOO_LARGE => ("too_large", "the request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported_media_type", "unsupported content type")
        }
        StatusCode::UNPROCESSABLE_ENTITY => ("bad_request", "the request is malformed"),
        StatusCode::TOO_MANY_REQUESTS => ("rate_limited", "too many requests"),
        StatusCode::SERVICE_UNAVAILABLE => ("unavailable", "temporarily unavailable"),
        s if s.is_server_error() => ("internal", "internal error; see the server log"),
        _ => ("error", "request failed"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = self.status.into_response();
        if let Some(secs) = self.retry_after_secs {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res.extensions_mut().insert(ErrorBody {
            code: self.code,
            message: self.message,
            fields: self.fields,
        });
        res
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        let status = match r.kind {
            RejectKind::Invalid => StatusCode::BAD_REQUEST,
            RejectKind::NotFound => StatusCode::NOT_FOUND,
            RejectKind::Conflict => StatusCode::CONFLICT,
            RejectKind::Forbidden => StatusCode::FORBIDDEN,
        };
        Self::new(status, r.code, r.message)
    }
}

impl From<crate::log::SubmitError> for ApiError {
    fn from(e: crate::log::SubmitError) -> Self {
        use crate::log::SubmitError;
        match e {
            SubmitError::Busy => ApiError::busy(1),
            SubmitError::Rejected(r) => r.into(),
            SubmitError::ShuttingDown => ApiError::unavailable("the server is shutting down"),
            SubmitError::Storage(e) => storage(&e),
            other => ApiError::internal(&other),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        storage(&e)
    }
}

impl From<crate::users::UserError> for ApiError {
    fn from(e: crate::users::UserError) -> Self {
        match e {
            crate::users::UserError::Submit(s) => s.into(),
            crate::users::UserError::Hash(h) => ApiError::internal(&h),
        }
    }
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(e: crate::auth::AuthError) -> Self {
        use crate::auth::AuthError;
        match e {
            AuthError::BadCredentials => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "wrong username or password",
            ),
            AuthError::Throttled(secs) => ApiError {
                retry_after_secs: Some(secs),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many failed sign-ins; wait before trying again",
                )
            },
            AuthError::Pending => ApiError::new(
                StatusCode::FORBIDDEN,
                "account_pending",
                "this account waits for an administrator's approval",
            ),
            AuthError::Disabled => ApiError::new(
                StatusCode::FORBIDDEN,
                "account_disabled",
                "this account is disabled",
            ),
            AuthError::InvalidToken => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the token is invalid",
            ),
            AuthError::SessionEnded => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "session_ended",
                "the session has ended; sign in again",
            ),
            AuthError::Rejected(r) => r.into(),
            AuthError::Submit(s) => s.into(),
            // The session check never turns a storage fault into 401: clients would drop a
            // valid session. It is a 503/507 with Retry-After like any storage failure.
            AuthError::Store(e) => storage(&e),
            AuthError::Token(e) => ApiError::internal(&e),
            AuthError::Hash(e) => ApiError::internal(&e),
        }
    }
}

/// A storage failure as clients see it: a full disk is `507 insufficient_storage`, any other
/// I/O fault `503 storage_unavailable`, both with `Retry-After`, so a device can tell "retry
/// later" from a bug; a malformed row is a bug and a bare 500.
pub fn storage(e: &crate::store::StoreError) -> ApiError {
    use crate::store::Fault;
    match e.fault() {
        Fault::DiskFull => {
            tracing::warn!(error = %e, "storage full");
            ApiError {
                retry_after_secs: Some(STORAGE_RETRY_SECS),
                ..ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "insufficient_storage",
                    "the server's disk is full; nothing was stored; retry later",
                )
            }
        }
        Fault::Unavailable => {
            tracing::warn!(error = %e, "storage unavailable");
            ApiError {
                retry_after_secs: Some(STORAGE_RETRY_SECS),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "storage is unavailable; nothing was stored; retry later",
                )
            }
        }
        Fault::Bug => ApiError::internal(e),
    }
}

/// What `Retry-After` says when storage fails.
const STORAGE_RETRY_SECS: u64 = 5;
