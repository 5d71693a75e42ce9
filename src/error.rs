//! Why a domain rule refused: a stable slug, a kind and text for people. A leaf module: it knows
//! nothing of HTTP (the mapping to statuses lives in `http::error`) and nothing of storage.

/// Why a domain rule refused a request. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    pub kind: RejectKind,
    /// A stable slug such as `invalid_name`.
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    Invalid,
    NotFound,
    Conflict,
    Forbidden,
}

impl Rejection {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind: RejectKind::Invalid,
            code,
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind: RejectKind::Conflict,
            code,
            message: message.into(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind: RejectKind::NotFound,
            code,
            message: message.into(),
        }
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind: RejectKind::Forbidden,
            code,
            message: message.into(),
        }
    }
}
