//! The OpenAPI document of the REST API, generated from the handlers' annotations and served at
//! `/api/v1/openapi.json`; a test keeps it and the route table in step.

use axum::Json;
use utoipa::OpenApi;

use super::{attachments, contacts, conversations, messages, presence, ws};

#[derive(OpenApi)]
#[openapi(
    info(title = "plantwire", description = "Secure messaging and event log for plant networks. The WebSocket frames are described in docs/protocol.md."),
    paths(
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
    ),
    components(schemas(crate::error::ErrorResponse)),
    modifiers(&Security),
)]
struct ApiDoc;

/// Every route but the public ones takes a bearer token or the session cookie.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
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
    }
}

/// The document as a value (tests compare it with the route table).
pub fn spec() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /api/v1/openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(spec())
}
