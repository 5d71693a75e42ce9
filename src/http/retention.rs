//! The admin routes of retention: the policy with every override and hold, and setting one scope's
//! override or legal hold (the same as `plantwire retention set|hold|release`).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Admin, ApiJson, RequireRole};
use crate::log::Author;
use crate::retention::{Keep, RetentionError, SITE_SCOPE, ScopeRow, stream_scope};
use crate::state::AppState;

/// One override or hold.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScopeView {
    /// `site` or `stream:<name>` (a conversation's stream is `conv/<id>`).
    scope: String,
    /// `inherit`, `forever`, `N days`, or absent (no override).
    keep: Option<String>,
    hold: bool,
    /// The site scope's keeps per class (`events`, `alarms`, `incidents`, `chat`, `admin`), over
    /// the configured ones; absent classes follow the config.
    #[schema(value_type = Object)]
    classes: crate::retention::ClassKeeps,
}

/// The configured policy and the stored overrides.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RetentionView {
    #[schema(value_type = Object)]
    config: crate::retention::RetentionConfig,
    scopes: Vec<ScopeView>,
    /// Purged entries still restorable (in their grace period).
    restorable: usize,
}

/// Exactly one of `site`, `stream`, `conversation`, and the scope's whole row (it replaces the
/// stored one): `keep` absent or null is no override, `hold` absent is false. With `class` (site
/// only), `keep` is that class's keep for the site and nothing else of the row changes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetScope {
    #[serde(default)]
    site: bool,
    stream: Option<String>,
    conversation: Option<String>,
    /// `inherit`, `forever`, `N days`; absent or `null`: no override.
    keep: Option<String>,
    hold: Option<bool>,
    /// `events`, `alarms`, `incidents`, `chat` or `admin`: set this class's keep (with `site`).
    class: Option<String>,
}

fn error(e: RetentionError) -> ApiError {
    match e {
        RetentionError::Store(s) => s.into(),
        RetentionError::Submit(s) => s.into(),
        other => ApiError::internal(&other),
    }
}

fn view(state: &AppState) -> Result<RetentionView, ApiError> {
    let r = state.retention();
    let scopes = r
        .scopes()
        .map_err(error)?
        .into_iter()
        .map(|(scope, row)| ScopeView {
            scope,
            keep: row.keep.map(String::from),
            hold: row.hold,
            classes: row.classes,
        })
        .collect();
    Ok(RetentionView {
        config: r.config().clone(),
        scopes,
        restorable: r.restorable().map_err(error)?.len(),
    })
}

#[utoipa::path(get, path = "/api/v1/admin/retention", tag = "admin", responses((status = 200, body = RetentionView), (status = 403, body = super::error::ErrorResponse)))]
pub async fn get(
    State(state): State<AppState>,
    _admin: RequireRole<Admin>,
) -> Result<Json<RetentionView>, ApiError> {
    Ok(Json(view(&state)?))
}

#[utoipa::path(put, path = "/api/v1/admin/retention/scope", tag = "admin", request_body = SetScope, responses((status = 200, body = RetentionView), (status = 400, body = super::error::ErrorResponse), (status = 403, body = super::error::ErrorResponse)))]
pub async fn set_scope(
    State(state): State<AppState>,
    RequireRole(admin, _): RequireRole<Admin>,
    ApiJson(req): ApiJson<SetScope>,
) -> Result<Json<RetentionView>, ApiError> {
    let key = match (&req.stream, &req.conversation, req.site) {
        (Some(s), None, false) if !s.is_empty() && s.len() <= 256 => stream_scope(s),
        (None, Some(c), false) if !c.is_empty() && c.len() <= 128 => {
            stream_scope(&format!("conv/{c}"))
        }
        (None, None, true) => SITE_SCOPE.to_string(),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_scope",
                "give exactly one of site: true, stream, conversation",
            ));
        }
    };
    let keep = req
        .keep
        .as_deref()
        .map(Keep::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_keep", e.to_string()))?;
    let r = state.retention();
    let by = Author::User(crate::users::key(&admin.user.username));
    if let Some(name) = &req.class {
        let class = crate::retention::Class::parse_or_reject(name)?;
        let (true, Some(keep), None) = (key == SITE_SCOPE, keep, req.hold) else {
            return Err(ApiError::bad_request(
                "invalid_scope",
                "a class keep takes site: true and keep, without hold",
            ));
        };
        r.set_class_keep(class, keep, &by).await.map_err(error)?;
        return Ok(Json(view(&state)?));
    }
    // The scope's class keeps stay as they are (set with `retention set --site --class`).
    let classes = r
        .scope_row(&key)
        .map_err(error)?
        .unwrap_or_default()
        .classes;
    let row = ScopeRow {
        keep,
        hold: req.hold.unwrap_or(false),
        classes,
    };
    let row = (row != ScopeRow::default()).then_some(row);
    r.set_scope(&key, row, &by).await.map_err(error)?;
    Ok(Json(view(&state)?))
}
