//! The template API: create, new version, archive (admins); list and read (everyone signed in);
//! preview a definition filled from a sample context (the builder's live preview).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Admin, ApiJson, RequireRole, Viewer};
use crate::incidents::templates::{self, Detail, Filled, NewTemplate, Summary, TemplateDef};
use crate::incidents::{Context, IncidentError};
use crate::log::Author;
use crate::state::AppState;

impl From<IncidentError> for ApiError {
    fn from(e: IncidentError) -> Self {
        match e {
            IncidentError::Submit(s) => s.into(),
            IncidentError::Fields { code, fields } => ApiError {
                fields: Some(fields),
                ..ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    code,
                    "some fields were refused; see fields",
                )
            },
            IncidentError::Store(s) => s.into(),
            IncidentError::Read(crate::log::read::ReadError::Store(s)) => s.into(),
            other => ApiError::internal(&other),
        }
    }
}

fn admin(me: &RequireRole<Admin>) -> Author {
    Author::user(&crate::users::key(&me.0.user.username))
}

/// A template as saved.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Saved {
    #[serde(flatten)]
    pub template: Summary,
    /// The seq of the version's `template.saved` entry.
    pub seq: u64,
}

fn saved(row: &crate::store::TemplateRow) -> Saved {
    Saved {
        template: Summary::from(row),
        seq: row.versions.last().copied().unwrap_or(0),
    }
}

/// Creates a template (version 1). Admins only; refused fields are `422 invalid_template`.
#[utoipa::path(post, path = "/api/v1/templates", tag = "incidents", request_body = NewTemplate, responses((status = 201, body = Saved), (status = 422, body = super::error::ErrorResponse, description = "invalid_template, with fields"), (status = 409, body = super::error::ErrorResponse)))]
pub async fn create(
    State(state): State<AppState>,
    me: RequireRole<Admin>,
    ApiJson(t): ApiJson<NewTemplate>,
) -> Result<(StatusCode, Json<Saved>), ApiError> {
    let row = templates::create(state.log(), &admin(&me), t).await?;
    Ok((StatusCode::CREATED, Json(saved(&row))))
}

/// Saves a new version; open incidents stay on theirs. Admins only.
#[utoipa::path(put, path = "/api/v1/templates/{id}", tag = "incidents", params(("id" = String, Path)), request_body = TemplateDef, responses((status = 200, body = Saved), (status = 422, body = super::error::ErrorResponse), (status = 404, body = super::error::ErrorResponse)))]
pub async fn update(
    State(state): State<AppState>,
    me: RequireRole<Admin>,
    Path(id): Path<String>,
    ApiJson(def): ApiJson<TemplateDef>,
) -> Result<Json<Saved>, ApiError> {
    let row = templates::update(state.log(), &admin(&me), &id, def).await?;
    Ok(Json(saved(&row)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveRequest {
    /// `false` restores an archived template.
    #[serde(default = "yes")]
    pub archived: bool,
}

fn yes() -> bool {
    true
}

/// Archives (or restores) a template: it opens no new incident. Templates are never deleted.
#[utoipa::path(post, path = "/api/v1/templates/{id}/archive", tag = "incidents", params(("id" = String, Path)), request_body = ArchiveRequest, responses((status = 200, body = Saved), (status = 404, body = super::error::ErrorResponse)))]
pub async fn archive(
    State(state): State<AppState>,
    me: RequireRole<Admin>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ArchiveRequest>,
) -> Result<Json<Saved>, ApiError> {
    let row = templates::set_archived(state.log(), &admin(&me), &id, req.archived).await?;
    Ok(Json(saved(&row)))
}

/// Deletes a template no incident was opened with; one in use is `409 template_in_use`.
#[utoipa::path(delete, path = "/api/v1/templates/{id}", tag = "incidents", params(("id" = String, Path)), responses((status = 204), (status = 404, body = super::error::ErrorResponse), (status = 409, body = super::error::ErrorResponse, description = "template_in_use")))]
pub async fn delete(
    State(state): State<AppState>,
    me: RequireRole<Admin>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    templates::delete(state.log(), &admin(&me), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Include archived templates.
    #[serde(default)]
    pub archived: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TemplateList {
    pub templates: Vec<Summary>,
}

/// The templates.
#[utoipa::path(get, path = "/api/v1/templates", tag = "incidents", params(ListQuery), responses((status = 200, body = TemplateList)))]
pub async fn list(
    State(state): State<AppState>,
    _me: RequireRole<Viewer>,
    Query(q): Query<ListQuery>,
) -> Result<Json<TemplateList>, ApiError> {
    Ok(Json(TemplateList {
        templates: templates::list(state.log(), q.archived)?,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GetQuery {
    /// A past version (default: the current one).
    pub version: Option<u32>,
}

/// One template: its current definition (or `?version=`) and every version's seq.
#[utoipa::path(get, path = "/api/v1/templates/{id}", tag = "incidents", params(("id" = String, Path), GetQuery), responses((status = 200, body = Detail), (status = 404, body = super::error::ErrorResponse)))]
pub async fn get(
    State(state): State<AppState>,
    _me: RequireRole<Viewer>,
    Path(id): Path<String>,
    Query(q): Query<GetQuery>,
) -> Result<Json<Detail>, ApiError> {
    let mut d = templates::get(state.log(), &id)?;
    if let Some(v) = q.version {
        let rtx = state.log().read()?;
        let row = rtx.template(&id)?.ok_or_else(templates::no_template)?;
        d.current = templates::version(state.log(), &rtx, &row, v)?.ok_or_else(|| {
            crate::error::Rejection::not_found("no_such_version", "no such version")
        })?;
    }
    Ok(Json(d))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    pub template: TemplateDef,
    #[serde(default)]
    pub context: Context,
}

/// Checks a definition and fills it from a sample context; nothing is stored.
#[utoipa::path(post, path = "/api/v1/templates/preview", tag = "incidents", request_body = PreviewRequest, responses((status = 200, body = Filled), (status = 422, body = super::error::ErrorResponse)))]
pub async fn preview(
    _me: RequireRole<Viewer>,
    ApiJson(req): ApiJson<PreviewRequest>,
) -> Result<Json<Filled>, ApiError> {
    Ok(Json(templates::preview(&req.template, &req.context)?))
}
