//! The OpenAPI document of the REST API, generated from the handlers' annotations into
//! `docs/openapi.json` and served from there at `/api/v1/openapi.json`; tests keep the file, the
//! annotations and the route table in step.

use axum::http::header;
use axum::response::IntoResponse;
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

/// The document as a value, generated from the annotations. Only the tests call it: the server
/// serves [`DOCUMENT`], so the generator (about 0.9 MB of machine code, a tenth of the binary's
/// text, all of it mapped at start) is not linked into the shipped binary.
pub fn spec() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The file's text as [`spec`] renders it (pretty JSON and a final newline).
pub fn render(doc: &utoipa::openapi::OpenApi) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(doc).map(|s| s + "\n")
}

/// `docs/openapi.json`, as the test `the_checked_in_document_is_the_generated_one` keeps it.
pub const DOCUMENT: &str = include_str!("../../docs/openapi.json");

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health", responses((status = 200, description = "OpenAPI 3.1 JSON")))]
pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set to regenerate `docs/openapi.json` after an annotation changed.
    const WRITE: &str = "PLANTWIRE_WRITE_OPENAPI";

    #[test]
    fn the_checked_in_document_is_the_generated_one() {
        let generated = render(&spec()).unwrap();
        assert_eq!(
            generated,
            render(&spec()).unwrap(),
            "rendering is not stable"
        );
        if std::env::var_os(WRITE).is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
            std::fs::write(path, &generated).unwrap();
            return;
        }
        assert!(
            generated == DOCUMENT,
            "docs/openapi.json is not what the annotations generate; refresh it with \
             `{WRITE}=1 cargo test --lib the_checked_in_document_is_the_generated_one`"
        );
    }
}
