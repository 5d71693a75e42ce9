//! HQ's site routes, every one scoped by the caller's sites (admins and auditors: all; others:
//! their grants): `GET /api/v1/sites` (replication status, as `plantwire site list --json`), the
//! all-sites overview, one site's replicated entries and its gaps. Read-only; 404 when not an HQ.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{CurrentUser, RequireRole, Viewer};
use crate::replication::gap::GapView;
use crate::replication::grants::SiteScope;
use crate::replication::runtime::HqRuntime;
use crate::replication::views::{self, EntryPage, SiteOverview};
use crate::replication::{ReplicationError, SiteStatus};
use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct SiteList {
    pub sites: Vec<SiteStatus>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OverviewList {
    pub sites: Vec<SiteOverview>,
}

pub(super) fn hq(state: &AppState) -> Result<&HqRuntime, ApiError> {
    state
        .replication()
        .and_then(|r| r.hq())
        .ok_or_else(ApiError::not_found)
}

pub(super) fn replication_error(e: ReplicationError) -> ApiError {
    match e {
        ReplicationError::Rejected(r) => ApiError::from(r),
        ReplicationError::Store(s) => ApiError::from(s),
        ReplicationError::Submit(s) => ApiError::from(s),
        other => ApiError::internal(&other),
    }
}

/// The one answer for a site that does not exist and for one the caller may not see, so that
/// neither leaks the other.
pub(super) fn unknown_site() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "unknown_site", "no such site")
}

pub(super) fn scope(state: &AppState, me: &CurrentUser) -> Result<SiteScope, ApiError> {
    Ok(SiteScope::of(state.log(), &me.user)?)
}

/// HQ's runtime and the caller's scope when `site` is enrolled and the caller may read it
/// (`whole`: its entries whole, not withheld); otherwise the one `unknown_site` answer.
pub(super) fn readable_site<'a>(
    state: &'a AppState,
    me: &CurrentUser,
    site: &str,
    whole: bool,
) -> Result<(&'a HqRuntime, SiteScope), ApiError> {
    let h = hq(state)?;
    let scope = scope(state, me)?;
    let enrolled = || -> Result<bool, ApiError> {
        Ok(h.hq
            .replicas
            .sites()
            .map_err(replication_error)?
            .iter()
            .any(|s| s == site))
    };
    if !scope.allows(site) || (whole && !scope.reads_all_kinds(site)) || !enrolled()? {
        return Err(unknown_site());
    }
    Ok((h, scope))
}

#[utoipa::path(get, path = "/api/v1/sites", tag = "sites", responses((status = 200, body = SiteList, description = "the sites the caller may read: all for admins and auditors, the granted ones for others"), (status = 404, body = super::error::ErrorResponse, description = "this server is not an HQ")))]
pub async fn list(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
) -> Result<Json<SiteList>, ApiError> {
    let h = hq(&state)?;
    let scope = scope(&state, &me)?;
    let mut sites = Vec::new();
    for site in h.hq.replicas.sites().map_err(replication_error)? {
        if scope.allows(&site) {
            sites.push(
                h.hq.replicas
                    .status(&site)
                    .await
                    .map_err(replication_error)?,
            );
        }
    }
    Ok(Json(SiteList { sites }))
}

#[utoipa::path(get, path = "/api/v1/sites/overview", tag = "sites", responses((status = 200, body = OverviewList, description = "per readable site: status, connected, unacknowledged alarms by priority"), (status = 404, body = super::error::ErrorResponse, description = "this server is not an HQ")))]
pub async fn overview(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
) -> Result<Json<OverviewList>, ApiError> {
    let h = hq(&state)?;
    let scope = scope(&state, &me)?;
    let sites = views::overview(&h.hq.replicas, &h.hq.sites, &h.tallies, |s| scope.allows(s))
        .await
        .map_err(replication_error)?;
    Ok(Json(OverviewList { sites }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EntriesQuery {
    /// Entries after this seq, oldest first.
    pub since: Option<u64>,
    /// Entries before this seq, newest first (the default is from the newest).
    pub before: Option<u64>,
    /// 1-500, default 100.
    pub limit: Option<usize>,
    /// One kind (`event`), or every kind under a prefix ending in `.` (`alarm.`).
    pub kind: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/sites/{site}/entries", tag = "sites", params(("site" = String, Path, description = "the site's name"), EntriesQuery), responses((status = 200, body = EntryPage), (status = 400, body = super::error::ErrorResponse), (status = 404, body = super::error::ErrorResponse, description = "`unknown_site`: no such site, or not one the caller may read (the same answer)")))]
pub async fn entries(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Path(site): Path<String>,
    q: Result<Query<EntriesQuery>, QueryRejection>,
) -> Result<Json<EntryPage>, ApiError> {
    let (h, scope) = readable_site(&state, &me, &site, false)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let query = views::EntryQuery {
        since: q.since,
        before: q.before,
        limit: q.limit,
        kind: q.kind,
        all_kinds: scope.reads_all_kinds(&site),
    };
    if !h.hq.replicas.has_replica(&site) {
        // Enrolled, nothing shipped yet.
        views::check(&query).map_err(replication_error)?;
        return Ok(Json(EntryPage {
            site,
            entries: Vec::new(),
            next: None,
            attachments: query.all_kinds,
        }));
    }
    let replica =
        h.hq.replicas
            .replica(&site)
            .await
            .map_err(replication_error)?;
    let page = tokio::task::spawn_blocking(move || views::entries(&site, &replica, &query))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(replication_error)?;
    Ok(Json(page))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct GapList {
    pub site: String,
    /// The newest gap records first (at most `limit`), each checked against the site's pinned
    /// key and the hash HQ holds at its `to`.
    pub gaps: Vec<GapView>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GapsQuery {
    /// 1-500, default 100.
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/sites/{site}/gaps", tag = "sites", params(("site" = String, Path, description = "the site's name"), GapsQuery), responses((status = 200, body = GapList, description = "the ranges the site dropped before HQ had them, newest first"), (status = 400, body = super::error::ErrorResponse), (status = 404, body = super::error::ErrorResponse, description = "`unknown_site`: no such site, or not one the caller may read (the same answer)")))]
pub async fn gaps(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Path(site): Path<String>,
    q: Result<Query<GapsQuery>, QueryRejection>,
) -> Result<Json<GapList>, ApiError> {
    let (h, _) = readable_site(&state, &me, &site, false)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("invalid_limit", "limit is 1-500"));
    }
    if !h.hq.replicas.has_replica(&site) {
        return Ok(Json(GapList {
            site,
            gaps: Vec::new(),
        }));
    }
    let replica =
        h.hq.replicas
            .replica(&site)
            .await
            .map_err(replication_error)?;
    let gaps = tokio::task::spawn_blocking(move || crate::replication::gap::list(&replica, limit))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(replication_error)?;
    Ok(Json(GapList { site, gaps }))
}
