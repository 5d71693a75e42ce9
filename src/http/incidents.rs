//! The incident API: open (operators), list and read (members; admins all), state changes and
//! structured answers (members who may post), and the report as HTML or JSON.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::ApiError;
use super::extract::{ApiJson, Operator, RequireRole, Viewer};
use crate::chat::{Actor, validate_conv_id};
use crate::error::Rejection;
use crate::incidents::lifecycle::{
    self, AnswerRequest, Answered, AssignRequest, Assigned, StateChanged, StateRequest,
};
use crate::incidents::open::{self, OpenRequest, Opened};
use crate::incidents::read::{self, Filter, IncidentView, Summary};
use crate::incidents::report::{self, Report};
use crate::state::AppState;

/// The report page's policy: no script at all, styles only from this origin's stylesheet.
const REPORT_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn actor<R>(me: &RequireRole<R>) -> Actor {
    Actor::of(&me.0.user)
}

/// An id that cannot be an incident's is the same 404 as an unknown one.
fn check_id(id: &str) -> Result<(), Rejection> {
    validate_conv_id(id).map_err(|_| crate::incidents::no_incident())
}

/// Opens an incident from an alarm occurrence, an event or nothing, with a template's current
/// version.
#[utoipa::path(post, path = "/api/v1/incidents", tag = "incidents", request_body = OpenRequest, responses((status = 201, body = Opened), (status = 404, body = super::error::ErrorResponse), (status = 409, body = super::error::ErrorResponse, description = "alarm_has_incident, template_archived"), (status = 422, body = super::error::ErrorResponse)))]
pub async fn open(
    State(state): State<AppState>,
    me: RequireRole<Operator>,
    ApiJson(req): ApiJson<OpenRequest>,
) -> Result<(StatusCode, Json<Opened>), ApiError> {
    // An alarm out of the opener's scope (HQ's alarm about a site it has no grant on) is one
    // that does not exist: the incident would show its source, condition and attributes.
    if let Some(id) = req.alarm {
        let scope = super::alarms::scope(&state, &me.0)?;
        if !crate::alarms::sees(state.log(), id, &scope)? {
            return Err(crate::alarms::no_such_alarm().into());
        }
    }
    let opened = open::open(state.log(), &actor(&me).user, req).await?;
    Ok((StatusCode::CREATED, Json(opened)))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct IncidentList {
    pub incidents: Vec<Summary>,
}

/// The incidents the caller may read (members; admins see all), newest first.
#[utoipa::path(get, path = "/api/v1/incidents", tag = "incidents", params(Filter), responses((status = 200, body = IncidentList)))]
pub async fn list(
    State(state): State<AppState>,
    me: RequireRole<Viewer>,
    Query(f): Query<Filter>,
) -> Result<Json<IncidentList>, ApiError> {
    // A scan of every incident row: on a blocking thread.
    let (log, who) = (state.log().clone(), actor(&me));
    let incidents = tokio::task::spawn_blocking(move || read::list(&log, &who, &f))
        .await
        .map_err(|e| ApiError::internal(&e))??;
    Ok(Json(IncidentList { incidents }))
}

/// One incident: its pinned questions filled, current answers, state, links.
#[utoipa::path(get, path = "/api/v1/incidents/{id}", tag = "incidents", params(("id" = String, Path)), responses((status = 200, body = IncidentView), (status = 404, body = super::error::ErrorResponse)))]
pub async fn get(
    State(state): State<AppState>,
    me: RequireRole<Viewer>,
    Path(id): Path<String>,
) -> Result<Json<IncidentView>, ApiError> {
    check_id(&id)?;
    Ok(Json(read::get(state.log(), &actor(&me), &id)?))
}

/// Changes the state; reopening needs a reason, resolving every required answer.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/state", tag = "incidents", params(("id" = String, Path)), request_body = StateRequest, responses((status = 200, body = StateChanged), (status = 409, body = super::error::ErrorResponse), (status = 422, body = super::error::ErrorResponse, description = "invalid_answers: required questions unanswered")))]
pub async fn set_state(
    State(state): State<AppState>,
    me: RequireRole<Viewer>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<StateRequest>,
) -> Result<Json<StateChanged>, ApiError> {
    check_id(&id)?;
    Ok(Json(
        lifecycle::set_state(state.log(), &actor(&me), &id, req).await?,
    ))
}

/// Assigns the incident (the assignee is called in) and/or sets its severity.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/assign", tag = "incidents", params(("id" = String, Path)), request_body = AssignRequest, responses((status = 200, body = Assigned), (status = 404, body = super::error::ErrorResponse), (status = 403, body = super::error::ErrorResponse)))]
pub async fn assign(
    State(state): State<AppState>,
    me: RequireRole<Viewer>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AssignRequest>,
) -> Result<Json<Assigned>, ApiError> {
    check_id(&id)?;
    Ok(Json(
        lifecycle::assign(state.log(), &actor(&me), &id, req).await?,
    ))
}

/// Answers some or all questions; checked against the incident's pinned template version.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/answers", tag = "incidents", params(("id" = String, Path)), request_body = AnswerRequest, responses((status = 201, body = Answered), (status = 422, body = super::error::ErrorResponse, description = "invalid_answers, with fields: question id → why; nothing stored"), (status = 403, body = super::error::ErrorResponse)))]
pub async fn answer(
    State(state): State<AppState>,
    me: RequireRole<Viewer>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AnswerRequest>,
) -> Result<(StatusCode, Json<Answered>), ApiError> {
    check_id(&id)?;
    let a = lifecycle::answer(state.log(), &actor(&me), &id, req).await?;
    Ok((StatusCode::CREATED, Json(a)))
}

/// The report: printable HTML, or JSON with `Accept: application/json`.
#[utoipa::path(get, path = "/api/v1/incidents/{id}/report", tag = "incidents", params(("id" = String, Path)), responses((status = 200, body = Report, description = "JSON with Accept: application/json, else text/html"), (status = 404, body = super::error::ErrorResponse)))]
pub async fn report(
    State(state): State<AppState>,
    me: RequireRole<Viewer>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    // Up to 20,000 entries unsealed: on a blocking thread, not an async worker.
    let (log, who) = (state.log().clone(), actor(&me));
    let r = tokio::task::spawn_blocking(move || report::build(&log, &who, &id))
        .await
        .map_err(|e| ApiError::internal(&e))??;
    let json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    if json {
        return Ok(Json(r).into_response());
    }
    let css = format!("/assets/{}/report.css", super::ui::version());
    let mut res = report::html(&r, &css).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(REPORT_CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
