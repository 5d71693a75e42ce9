//! HQ: `GET /api/v1/sites/{site}/attachments/{id}`, an attachment a site's replicated entry
//! names, for those who read that site's entries whole (admins, auditors, an admin grant).

use axum::extract::{Path, State};
use axum::response::Response;

use super::attachments::file_response;
use super::error::ApiError;
use super::extract::{RequireRole, Viewer};
use super::sites::{readable_site, replication_error};
use crate::replication::blobs;
use crate::state::AppState;

/// One replicated attachment by the id the site's entry names (content deduplicated by SHA-256
/// per site). `404 unknown_site` for a site the caller may not read whole, `404
/// no_such_attachment` while it has not followed its entry (or never will).
#[utoipa::path(get, path = "/api/v1/sites/{site}/attachments/{id}", tag = "sites",
    params(("site" = String, Path), ("id" = String, Path, description = "the attachment's id at the site")),
    responses((status = 200, content_type = "application/octet-stream"), (status = 404, body = super::error::ErrorResponse)))]
pub async fn download(
    State(state): State<AppState>,
    RequireRole(me, _): RequireRole<Viewer>,
    Path((site, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (h, _) = readable_site(&state, &me, &site, true)?;
    let missing = || {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "no_such_attachment",
            "no attachment with this id",
        )
    };
    if !h.hq.replicas.has_replica(&site) {
        return Err(missing());
    }
    let replica =
        h.hq.replicas
            .replica(&site)
            .await
            .map_err(replication_error)?;
    let row = blobs::open(&replica, &id)?.ok_or_else(missing)?;
    file_response(replica, row)
}
