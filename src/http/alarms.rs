//! The alarm API: raise/clear (devices and operators), list, journal, ack (one or a list), shelve,
//! unshelve, out of service, reset, comment, history (JSON or CSV), KPIs. Viewers read only.

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{ApiJson, CurrentUser, DeviceAuth, Operator, RequireRole, Viewer};
use crate::alarms::{
    self, AckResult, AlarmView, Applied, Command, HistoryItem, JournalItem, Priority, ShelveMode,
    Signal, Transition,
};
use crate::log::Author;
use crate::state::AppState;

/// Who may raise and clear: a device by its token, or an operator (or admin).
pub struct Raiser(pub Author);

impl FromRequestParts<AppState> for Raiser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let device_token = super::extract::bearer(&parts.headers)
            .is_some_and(|t| t.starts_with(crate::devices::TOKEN_PREFIX));
        if device_token {
            let DeviceAuth(device) = DeviceAuth::from_request_parts(parts, state).await?;
            return Ok(Raiser(Author::device(&device.name)));
        }
        let RequireRole(me, _) = RequireRole::<Operator>::from_request_parts(parts, state).await?;
        Ok(Raiser(user(&me)))
    }
}

fn user(me: &CurrentUser) -> Author {
    Author::User(crate::users::key(&me.user.username))
}

/// The alarms `me` may read (HQ's alarms about a site need a grant on it).
pub(super) fn scope(state: &AppState, me: &CurrentUser) -> Result<alarms::AlarmScope, ApiError> {
    let rtx = state.log().read()?;
    Ok(alarms::AlarmScope::of(
        &rtx,
        &crate::users::key(&me.user.username),
        me.user.role,
    )?)
}

fn read_error(e: alarms::ReadError) -> ApiError {
    match e {
        alarms::ReadError::Store(s) => ApiError::from(s),
        other => ApiError::internal(&other),
    }
}

/// What a raise or clear did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Raised {
    /// Whether an entry was written; `false` for a repeat that changes nothing.
    pub changed: bool,
    /// The condition's current occurrence (absent for a clear of a condition never raised).
    pub id: Option<u64>,
    pub state: Option<alarms::State>,
    /// The entry's seq, when one was written.
    pub seq: Option<u64>,
    pub kind: Option<String>,
}

/// Raises (`active: true`) or clears (`active: false`) a condition; 201 when an entry was
/// written, 200 when nothing changed.
#[utoipa::path(post, path = "/api/v1/alarms", tag = "alarms", request_body = Signal, responses((status = 201, body = Raised), (status = 200, body = Raised, description = "nothing changed; nothing was written")))]
pub async fn raise(
    State(state): State<AppState>,
    Raiser(by): Raiser,
    ApiJson(signal): ApiJson<Signal>,
) -> Result<(StatusCode, Json<Raised>), ApiError> {
    let applied = alarms::raise(state.log(), &by, signal).await?;
    let alarm = applied.alarm();
    let body = Raised {
        changed: applied.transition().is_some(),
        id: alarm.map(|a| a.id),
        state: alarm.map(alarms::state_of),
        seq: applied.transition().map(|t| t.seq),
        kind: applied.transition().map(|t| t.kind.to_string()),
    };
    let status = match applied {
        Applied::Changed(_) => StatusCode::CREATED,
        Applied::Unchanged(_) => StatusCode::OK,
    };
    Ok((status, Json(body)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `normal`, `unack`, `acked` or `rtn_unack`; without it, alarms back to normal are left
    /// out unless shelved or out of service.
    pub state: Option<alarms::State>,
    pub priority: Option<Priority>,
    pub source: Option<String>,
    pub shelved: Option<bool>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AlarmList {
    pub alarms: Vec<AlarmView>,
}

/// The current alarms (the newest occurrence of each condition), highest priority first.
#[utoipa::path(get, path = "/api/v1/alarms", tag = "alarms", params(ListQuery), responses((status = 200, body = AlarmList)))]
pub async fn list(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Query(q): Query<ListQuery>,
) -> Result<Json<AlarmList>, ApiError> {
    let scope = scope(&state, &me)?;
    let filter = alarms::Filter {
        state: q.state,
        priority: q.priority,
        source: q.source,
        shelved: q.shelved,
    };
    let alarms = alarms::list(state.log(), &filter, &scope).map_err(read_error)?;
    Ok(Json(AlarmList { alarms }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AlarmDetail {
    #[serde(flatten)]
    pub alarm: AlarmView,
    /// Every transition of this occurrence, oldest first.
    pub journal: Vec<JournalItem>,
    /// The incident this occurrence opened or is linked to.
    pub incident: Option<String>,
}

/// One alarm occurrence with its journal.
#[utoipa::path(get, path = "/api/v1/alarms/{id}", tag = "alarms", params(("id" = u64, Path)), responses((status = 200, body = AlarmDetail), (status = 404, body = super::error::ErrorResponse)))]
pub async fn get(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Path(id): Path<u64>,
) -> Result<Json<AlarmDetail>, ApiError> {
    let scope = scope(&state, &me)?;
    match alarms::get(state.log(), id, &scope).map_err(read_error)? {
        Some((alarm, journal)) => Ok(Json(AlarmDetail {
            incident: crate::incidents::read::of_alarm(state.log(), id)?,
            alarm,
            journal,
        })),
        None => Err(alarms::no_such_alarm().into()),
    }
}

/// What a command did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Acted {
    pub id: u64,
    pub seq: u64,
    pub kind: String,
    pub state: alarms::State,
    pub alarm: AlarmView,
}

impl From<Transition> for Acted {
    fn from(t: Transition) -> Self {
        Self {
            id: t.alarm.id,
            seq: t.seq,
            kind: t.kind.to_string(),
            state: alarms::state_of(&t.alarm),
            alarm: t.alarm.into(),
        }
    }
}

/// One command on alarm `id` by `me`; an alarm `me` may not read is `404 no_such_alarm`.
async fn act(
    state: &AppState,
    me: &CurrentUser,
    id: u64,
    cmd: Command,
) -> Result<Json<Acted>, ApiError> {
    let scope = scope(state, me)?;
    let t = alarms::act(
        state.log(),
        &state.config().alarms,
        &user(me),
        &scope,
        id,
        cmd,
    )
    .await?;
    Ok(Json(t.into()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    #[serde(default)]
    pub comment: Option<String>,
}

/// Acknowledges one alarm; a second acknowledgement is `409 already_acked`.
#[utoipa::path(post, path = "/api/v1/alarms/{id}/ack", tag = "alarms", params(("id" = u64, Path)), request_body = AckBody, responses((status = 200, body = Acted), (status = 409, body = super::error::ErrorResponse)))]
pub async fn ack(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Operator>,
    Path(id): Path<u64>,
    ApiJson(b): ApiJson<AckBody>,
) -> Result<Json<Acted>, ApiError> {
    act(&state, &me, id, Command::Ack { comment: b.comment }).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckManyBody {
    /// The alarms to acknowledge (those the operator sees), 1-10,000.
    pub ids: Vec<u64>,
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AckOne {
    pub id: u64,
    /// The ack entry's seq, when this one was acknowledged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Why not, when refused (`already_acked`, `no_such_alarm`, `comment_required`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AckMany {
    pub acked: usize,
    pub results: Vec<AckOne>,
}

/// Acknowledges a given list ("ack visible") in one commit; each id says how it went.
#[utoipa::path(post, path = "/api/v1/alarms/ack", tag = "alarms", request_body = AckManyBody, responses((status = 200, body = AckMany)))]
pub async fn ack_many(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Operator>,
    ApiJson(b): ApiJson<AckManyBody>,
) -> Result<Json<AckMany>, ApiError> {
    let scope = scope(&state, &me)?;
    let results = alarms::ack_many(
        state.log(),
        &state.config().alarms,
        &user(&me),
        &scope,
        b.ids,
        b.comment,
    )
    .await?;
    let mut acked = 0;
    let results = results
        .into_iter()
        .map(|(id, r)| match r {
            AckResult::Acked(t) => {
                acked += 1;
                AckOne {
                    id,
                    seq: Some(t.seq),
                    code: None,
                }
            }
            AckResult::Refused(r) => AckOne {
                id,
                seq: None,
                code: Some(r.code.to_string()),
            },
        })
        .collect();
    Ok(Json(AckMany { acked, results }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShelveBody {
    pub mode: ShelveMode,
    /// For `timed`: 1 up to `alarms.max_shelve_minutes`.
    #[serde(default)]
    pub minutes: Option<u32>,
    pub reason: String,
}

/// Shelves an alarm: one-shot (until it returns to normal, at most the maximum) or timed.
#[utoipa::path(post, path = "/api/v1/alarms/{id}/shelve", tag = "alarms", params(("id" = u64, Path)), request_body = ShelveBody, responses((status = 200, body = Acted), (status = 400, body = super::error::ErrorResponse, description = "`shelve_too_long` and other bad input")))]
pub async fn shelve(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Operator>,
    Path(id): Path<u64>,
    ApiJson(b): ApiJson<ShelveBody>,
) -> Result<Json<Acted>, ApiError> {
    let cmd = Command::Shelve {
        mode: b.mode,
        minutes: b.minutes,
        reason: b.reason,
    };
    act(&state, &me, id, cmd).await
}

/// Unshelves by hand: the alarm comes back acknowledged.
#[utoipa::path(post, path = "/api/v1/alarms/{id}/unshelve", tag = "alarms", params(("id" = u64, Path)), responses((status = 200, body = Acted)))]
pub async fn unshelve(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Operator>,
    Path(id): Path<u64>,
) -> Result<Json<Acted>, ApiError> {
    act(&state, &me, id, Command::Unshelve).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    pub reason: String,
}

fn may_take_out_of_service(state: &AppState, me: &CurrentUser) -> Result<(), ApiError> {
    if me.user.role < state.config().alarms.out_of_service_role {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "your role may not take alarms out of service",
        ));
    }
    Ok(())
}

/// Takes an alarm out of service (the role in `alarms.out_of_service_role`, admin by default).
#[utoipa::path(post, path = "/api/v1/alarms/{id}/out-of-service", tag = "alarms", params(("id" = u64, Path)), request_body = ReasonBody, responses((status = 200, body = Acted)))]
pub async fn out_of_service(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Operator>,
    Path(id): Path<u64>,
    ApiJson(b): ApiJson<ReasonBody>,
) -> Result<Json<Acted>, ApiError> {
    may_take_out_of_service(&state, &me)?;
    act(&state, &me, id, Command::OutOfService { reason: b.reason }).await
}

/// Returns an alarm to service.
#[utoipa::path(post, path = "/api/v1/alarms/{id}/return-to-service", tag = "alarms", params(("id" = u64, Path)), responses((status = 200, body = Acted)))]
pub async fn return_to_service(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Operator>,
    Path(id): Path<u64>,
) -> Result<Json<Acted>, ApiError> {
    may_take_out_of_service(&state, &me)?;
    act(&state, &me, id, Command::ReturnToService).await
}

/// Resets a latched alarm whose input has cleared.
#[utoipa::path(post, path = "/api/v1/alarms/{id}/reset", tag = "alarms", params(("id" = u64, Path)), responses((status = 200, body = Acted)))]
pub async fn reset(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Operator>,
    Path(id): Path<u64>,
) -> Result<Json<Acted>, ApiError> {
    act(&state, &me, id, Command::Reset).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentBody {
    pub text: String,
}

/// Adds a comment to an alarm's journal.
#[utoipa::path(post, path = "/api/v1/alarms/{id}/comment", tag = "alarms", params(("id" = u64, Path)), request_body = CommentBody, responses((status = 200, body = Acted)))]
pub async fn comment(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Operator>,
    Path(id): Path<u64>,
    ApiJson(b): ApiJson<CommentBody>,
) -> Result<Json<Acted>, ApiError> {
    act(&state, &me, id, Command::Comment { text: b.text }).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// Transitions logged at or after this time (UTC µs).
    pub since: Option<i64>,
    /// Transitions logged at or before this time (UTC µs).
    pub until: Option<i64>,
    pub source: Option<String>,
    pub priority: Option<Priority>,
    /// Only transitions after this seq: the `next` of the page before.
    pub after: Option<u64>,
    /// 1-10,000, default 1,000.
    pub limit: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct History {
    pub transitions: Vec<HistoryItem>,
    /// Set whenever more may follow: ask again with `after=next` until it is absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// The CSV answer's header that carries the page's `next`.
pub const NEXT_HEADER: &str = "x-next-after";

/// Alarm transitions by time, oldest first: JSON, or CSV with `Accept: text/csv`.
#[utoipa::path(get, path = "/api/v1/alarms/history", tag = "alarms", params(HistoryParams), responses((status = 200, body = History, content_type = "application/json"), (status = 200, description = "the same rows as CSV", content_type = "text/csv")))]
pub async fn history(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    headers: HeaderMap,
    Query(q): Query<HistoryParams>,
) -> Result<Response, ApiError> {
    let scope = scope(&state, &me)?;
    let query = alarms::HistoryQuery {
        since_us: q.since,
        until_us: q.until,
        source: q.source,
        priority: q.priority,
        after: q.after,
        limit: q.limit.unwrap_or(1000).clamp(1, 10_000),
    };
    let log = state.log().clone();
    let page = tokio::task::spawn_blocking(move || alarms::history(&log, &query, &scope))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(read_error)?;
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"));
    if wants_csv {
        let body = alarms::history_csv(&page.items);
        let mut res = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response();
        if let Some(n) = page.next {
            res.headers_mut()
                .insert(NEXT_HEADER, axum::http::HeaderValue::from(n));
        }
        return Ok(res);
    }
    Ok(Json(History {
        transitions: page.items,
        next: page.next,
    })
    .into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct KpiParams {
    /// Start of the range (UTC µs); default 24 h before `until`.
    pub since: Option<i64>,
    /// End of the range (UTC µs); default now.
    pub until: Option<i64>,
}

/// Alarm KPIs over a time range, computed from the log, with what stands and is shelved now.
#[utoipa::path(get, path = "/api/v1/alarms/kpis", tag = "alarms", params(KpiParams), responses((status = 200, body = alarms::kpis::Kpis), (status = 400, body = super::error::ErrorResponse, description = "`invalid_range`")))]
pub async fn kpis(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Query(q): Query<KpiParams>,
) -> Result<Json<alarms::kpis::Kpis>, ApiError> {
    let scope = scope(&state, &me)?;
    let until = q.until.unwrap_or_else(|| state.log().now_us());
    let since = q
        .since
        .unwrap_or(until.saturating_sub(alarms::kpis::STALE_US));
    if since >= until {
        return Err(ApiError::bad_request(
            "invalid_range",
            "since must be before until",
        ));
    }
    let log = state.log().clone();
    let k = tokio::task::spawn_blocking(move || alarms::kpis::kpis(&log, since, until, &scope))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(read_error)?;
    Ok(Json(k))
}
