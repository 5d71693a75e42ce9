//! The OpenAPI document of the REST API, generated from the handlers' annotations and served at
//! `/api/v1/openapi.json`; a test keeps it and the route table in step.

use axum::Json;
use utoipa::OpenApi;

use super::{
    accounts, alarms, attachments, auth, contacts, conversations, device_certs, devices, events,
    events_export, health, ingest, messages, metrics, presence, site_attachments, sites, users, ws,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "plantwire", description = "Secure messaging and event log for plant networks. The WebSocket frames are described in docs/protocol.md."),
    paths(
        health::healthz,
        health::readyz,
        health::ca_cert,
        health::site,
        metrics::metrics,
        document,
        auth::login,
        auth::refresh,
        auth::register,
        auth::logout,
        auth::me,
        auth::password,
        events::publish_one,
        events::publish_batch,
        events::publish_manual,
        events::list,
        ingest::ntfy_topic,
        ingest::ntfy_json,
        ingest::alertmanager,
        ingest::grafana,
        events_export::export,
        events_export::get,
        users::search,
        users::profile,
        users::admin_list,
        users::admin_create,
        users::admin_approve,
        users::admin_disable,
        users::admin_enable,
        users::admin_role,
        users::admin_reset_password,
        accounts::admin_reject,
        accounts::admin_summary,
        accounts::admin_sessions,
        accounts::admin_end_session,
        accounts::admin_audit,
        accounts::own_sessions,
        accounts::end_own_session,
        devices::list,
        sites::list,
        sites::overview,
        sites::entries,
        sites::gaps,
        site_attachments::download,
        super::site_grants::list,
        super::site_grants::put,
        super::site_grants::delete,
        devices::add,
        devices::revoke,
        device_certs::renew,
        device_certs::crl,
        conversations::list,
        conversations::create,
        conversations::open_direct,
        conversations::channels,
        conversations::get,
        conversations::rename,
        conversations::add_members,
        conversations::remove_member,
        conversations::join,
        conversations::leave,
        messages::history,
        messages::send,
        messages::edit,
        messages::redact,
        messages::react,
        messages::unreact,
        messages::read,
        contacts::list,
        contacts::request,
        contacts::accept,
        contacts::reject,
        contacts::remove,
        presence::list,
        attachments::upload,
        attachments::download,
        ws::upgrade,
        alarms::raise,
        alarms::list,
        alarms::history,
        alarms::ack_many,
        alarms::kpis,
        alarms::get,
        alarms::ack,
        alarms::shelve,
        alarms::unshelve,
        alarms::out_of_service,
        alarms::return_to_service,
        alarms::reset,
        alarms::comment,
        super::ntfy_clear::delete,
        super::ntfy_clear::clear_put,
        super::ntfy_subscribe::json,
        super::ntfy_subscribe::sse,
        super::ntfy_subscribe::ws,
        super::templates::list,
        super::templates::create,
        super::templates::preview,
        super::templates::get,
        super::templates::update,
        super::templates::delete,
        super::templates::archive,
        super::incidents::list,
        super::incidents::open,
        super::incidents::get,
        super::incidents::set_state,
        super::incidents::answer,
        super::incidents::assign,
        super::incidents::report,
        super::audit::site_key,
        super::audit::export,
        super::retention::get,
        super::retention::set_scope,
        super::search::search,
    ),
    components(schemas(super::error::ErrorResponse, super::events::Order)),
    modifiers(&Security),
)]
struct ApiDoc;

/// Every route but the public ones takes a bearer token or the session cookie.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(super::ACCESS_COOKIE))),
        );
        // Each operation's requirement comes from the route table, so the two cannot disagree.
        for spec in super::route_specs() {
            let Some(item) = doc.paths.paths.get_mut(spec.path) else {
                continue;
            };
            let op = match spec.method.as_str() {
                "GET" => item.get.as_mut(),
                "POST" => item.post.as_mut(),
                "PUT" => item.put.as_mut(),
                "DELETE" => item.delete.as_mut(),
                _ => None,
            };
            let Some(op) = op else { continue };
            let bearer = SecurityRequirement::new("bearer", Vec::<String>::new());
            let cookie = SecurityRequirement::new("cookie", Vec::<String>::new());
            op.security = match spec.access {
                super::Access::Public => Some(Vec::new()),
                super::Access::Device => Some(vec![bearer]),
                super::Access::User => Some(vec![bearer, cookie]),
            };
        }
    }
}

/// The document as a value (tests compare it with the route table).
pub fn spec() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health", responses((status = 200, description = "OpenAPI 3.1 JSON")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(spec())
}
