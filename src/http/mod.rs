//! The HTTP surface: every route in one table with its access level (an explicit public
//! allow-list; everything else needs credentials), and the layers every response passes through.

mod accounts;
mod alarms;
mod attachments;
mod audit;
mod auth;
mod contacts;
mod conversations;
mod device_certs;
mod devices;
mod drain;
pub mod error;
mod events;
mod events_export;
mod extract;
mod health;
mod incidents;
mod ingest;
mod messages;
mod metrics;
mod middleware;
mod ntfy_auth;
mod ntfy_clear;
mod ntfy_subscribe;
pub mod openapi;
mod presence;
mod retention;
mod search;
mod site_attachments;
mod site_grants;
mod sites;
mod templates;
mod ui;
mod users;
mod ws;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, post, put};

use crate::state::AppState;

pub use extract::{
    ACCESS_COOKIE, Admin, ApiJson, CurrentUser, DeviceAuth, MinRole, Operator, REFRESH_COOKIE,
    RequireRole, Viewer,
};
pub use middleware::RequestId;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The allow-list: no credentials needed.
    Public,
    /// A device API token.
    Device,
    /// A signed-in person (the handler checks the role).
    User,
}

/// One row of the route table.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

fn table() -> Vec<(RouteSpec, MethodRouter<AppState>)> {
    use Access::{Device, Public, User};
    let r =
        |method: Method, path: &'static str, access: Access, handler: MethodRouter<AppState>| {
            (
                RouteSpec {
                    method,
                    path,
                    access,
                },
                handler,
            )
        };
    vec![
        // Public.
        r(Method::GET, "/healthz", Public, get(health::healthz)),
        r(Method::GET, "/readyz", Public, get(health::readyz)),
        r(Method::GET, "/ca.crt", Public, get(health::ca_cert)),
        r(Method::GET, "/ca.crl", Public, get(device_certs::crl)),
        r(Method::GET, "/api/v1/site", Public, get(health::site)),
        r(
            Method::GET,
            "/api/v1/site/key",
            Public,
            get(audit::site_key),
        ),
        r(
            Method::GET,
            "/api/v1/openapi.json",
            Public,
            get(openapi::document),
        ),
        r(
            Method::POST,
            "/api/v1/auth/login",
            Public,
            post(auth::login),
        ),
        r(
            Method::POST,
            "/api/v1/auth/refresh",
            Public,
            post(auth::refresh),
        ),
        r(
            Method::POST,
            "/api/v1/auth/register",
            Public,
            post(auth::register),
        ),
        // Devices.
        r(
            Method::POST,
            "/api/v1/events",
            Device,
            post(events::publish_one),
        ),
        r(
            Method::POST,
            "/api/v1/events/batch",
            Device,
            post(events::publish_batch),
        ),
        // Ingest adapters (devices): ntfy-compatible publish, Alertmanager and Grafana webhooks.
        r(
            Method::PUT,
            "/ntfy/{topic}",
            Device,
            put(ingest::ntfy_topic),
        ),
        r(
            Method::POST,
            "/ntfy/{topic}",
            Device,
            post(ingest::ntfy_topic),
        ),
        r(Method::POST, "/ntfy", Device, post(ingest::ntfy_json)),
        // ntfy's clear by sequence id (devices) and the subscribe side for alarm topics (users).
        r(
            Method::DELETE,
            "/ntfy/{topic}/{sequence_id}",
            Device,
            delete(ntfy_clear::delete),
        ),
        r(
            Method::PUT,
            "/ntfy/{topic}/{sequence_id}/clear",
            Device,
            put(ntfy_clear::clear_put),
        ),
        r(
            Method::POST,
            "/ntfy/{topic}/{sequence_id}/clear",
            Device,
            post(ntfy_clear::clear_put),
        ),
        r(
            Method::GET,
            "/ntfy/{topic}/json",
            User,
            get(ntfy_subscribe::json),
        ),
        r(
            Method::GET,
            "/ntfy/{topic}/sse",
            User,
            get(ntfy_subscribe::sse),
        ),
        r(
            Method::GET,
            "/ntfy/{topic}/ws",
            User,
            get(ntfy_subscribe::ws),
        ),
        r(
            Method::POST,
            "/api/v1/ingest/alertmanager",
            Device,
            post(ingest::alertmanager),
        ),
        r(
            Method::POST,
            "/api/v1/ingest/grafana",
            Device,
            post(ingest::grafana),
        ),
        // People (or, for /metrics, the scraper's token).
        r(Method::GET, "/metrics", User, get(metrics::metrics)),
        r(Method::GET, "/api/v1/auth/me", User, get(auth::me)),
        r(
            Method::POST,
            "/api/v1/auth/logout",
            User,
            post(auth::logout),
        ),
        r(
            Method::POST,
            "/api/v1/auth/password",
            User,
            post(auth::password),
        ),
        r(
            Method::GET,
            "/api/v1/auth/sessions",
            User,
            get(accounts::own_sessions),
        ),
        r(
            Method::DELETE,
            "/api/v1/auth/sessions/{id}",
            User,
            delete(accounts::end_own_session),
        ),
        r(Method::GET, "/api/v1/events", User, get(events::list)),
        r(Method::GET, "/api/v1/search", User, get(search::search)),
        r(
            Method::GET,
            "/api/v1/events/export",
            User,
            get(events_export::export),
        ),
        r(
            Method::GET,
            "/api/v1/events/{seq}",
            User,
            get(events_export::get),
        ),
        r(
            Method::POST,
            "/api/v1/events/manual",
            User,
            post(events::publish_manual),
        ),
        r(Method::GET, "/api/v1/users", User, get(users::search)),
        r(
            Method::GET,
            "/api/v1/users/{username}",
            User,
            get(users::profile),
        ),
        r(
            Method::GET,
            "/api/v1/admin/users",
            User,
            get(users::admin_list),
        ),
        r(
            Method::POST,
            "/api/v1/admin/users",
            User,
            post(users::admin_create),
        ),
        r(
            Method::POST,
            "/api/v1/admin/users/{username}/approve",
            User,
            post(users::admin_approve),
        ),
        r(
            Method::POST,
            "/api/v1/admin/users/{username}/reject",
            User,
            post(accounts::admin_reject),
        ),
        r(
            Method::GET,
            "/api/v1/admin/users/{username}/sessions",
            User,
            get(accounts::admin_sessions),
        ),
        r(
            Method::DELETE,
            "/api/v1/admin/users/{username}/sessions/{id}",
            User,
            delete(accounts::admin_end_session),
        ),
        r(
            Method::GET,
            "/api/v1/admin/summary",
            User,
            get(accounts::admin_summary),
        ),
        r(
            Method::GET,
            "/api/v1/admin/audit",
            User,
            get(accounts::admin_audit),
        ),
        r(
            Method::POST,
            "/api/v1/admin/users/{username}/disable",
            User,
            post(users::admin_disable),
        ),
        r(
            Method::POST,
            "/api/v1/admin/users/{username}/enable",
            User,
            post(users::admin_enable),
        ),
        r(
            Method::PUT,
            "/api/v1/admin/users/{username}/role",
            User,
            put(users::admin_role),
        ),
        r(
            Method::POST,
            "/api/v1/admin/users/{username}/reset-password",
            User,
            post(users::admin_reset_password),
        ),
        r(
            Method::GET,
            "/api/v1/admin/devices",
            User,
            get(devices::list),
        ),
        r(Method::GET, "/api/v1/sites", User, get(sites::list)),
        r(
            Method::GET,
            "/api/v1/sites/overview",
            User,
            get(sites::overview),
        ),
        r(
            Method::GET,
            "/api/v1/sites/{site}/entries",
            User,
            get(sites::entries),
        ),
        r(
            Method::GET,
            "/api/v1/sites/{site}/gaps",
            User,
            get(sites::gaps),
        ),
        // Grants at HQ: admins and auditors read them, admins change them.
        r(
            Method::GET,
            "/api/v1/sites/{site}/grants",
            User,
            get(site_grants::list),
        ),
        r(
            Method::PUT,
            "/api/v1/sites/{site}/grants/{user}",
            User,
            put(site_grants::put),
        ),
        r(
            Method::DELETE,
            "/api/v1/sites/{site}/grants/{user}",
            User,
            delete(site_grants::delete),
        ),
        r(
            Method::GET,
            "/api/v1/sites/{site}/attachments/{id}",
            User,
            get(site_attachments::download),
        ),
        r(
            Method::POST,
            "/api/v1/admin/devices",
            User,
            post(devices::add),
        ),
        r(
            Method::DELETE,
            "/api/v1/admin/devices/{name}",
            User,
            delete(devices::revoke),
        ),
        r(
            Method::POST,
            "/api/v1/admin/devices/{name}/renew",
            User,
            post(device_certs::renew),
        ),
        // Conversations and messages.
        r(
            Method::GET,
            "/api/v1/conversations",
            User,
            get(conversations::list),
        ),
        r(
            Method::POST,
            "/api/v1/conversations",
            User,
            post(conversations::create),
        ),
        r(
            Method::POST,
            "/api/v1/conversations/direct/{username}",
            User,
            post(conversations::open_direct),
        ),
        r(
            Method::GET,
            "/api/v1/channels",
            User,
            get(conversations::channels),
        ),
        r(
            Method::GET,
            "/api/v1/conversations/{id}",
            User,
            get(conversations::get),
        ),
        r(
            Method::PUT,
            "/api/v1/conversations/{id}/name",
            User,
            put(conversations::rename),
        ),
        r(
            Method::POST,
            "/api/v1/conversations/{id}/members",
            User,
            post(conversations::add_members),
        ),
        r(
            Method::DELETE,
            "/api/v1/conversations/{id}/members/{username}",
            User,
            delete(conversations::remove_member),
        ),
        r(
            Method::POST,
            "/api/v1/conversations/{id}/join",
            User,
            post(conversations::join),
        ),
        r(
            Method::POST,
            "/api/v1/conversations/{id}/leave",
            User,
            post(conversations::leave),
        ),
        r(
            Method::GET,
            "/api/v1/conversations/{id}/messages",
            User,
            get(messages::history),
        ),
        r(
            Method::POST,
            "/api/v1/conversations/{id}/messages",
            User,
            post(messages::send),
        ),
        r(
            Method::PUT,
            "/api/v1/conversations/{id}/messages/{seq}",
            User,
            put(messages::edit),
        ),
        r(
            Method::DELETE,
            "/api/v1/conversations/{id}/messages/{seq}",
            User,
            delete(messages::redact),
        ),
        r(
            Method::POST,
            "/api/v1/conversations/{id}/messages/{seq}/reactions",
            User,
            post(messages::react),
        ),
        r(
            Method::DELETE,
            "/api/v1/conversations/{id}/messages/{seq}/reactions/{emoji}",
            User,
            delete(messages::unreact),
        ),
        r(
            Method::POST,
            "/api/v1/conversations/{id}/read",
            User,
            post(messages::read),
        ),
        // Contacts, presence, attachments, the live socket.
        r(Method::GET, "/api/v1/contacts", User, get(contacts::list)),
        r(
            Method::POST,
            "/api/v1/contacts/requests",
            User,
            post(contacts::request),
        ),
        r(
            Method::POST,
            "/api/v1/contacts/requests/{username}/accept",
            User,
            post(contacts::accept),
        ),
        r(
            Method::POST,
            "/api/v1/contacts/requests/{username}/reject",
            User,
            post(contacts::reject),
        ),
        r(
            Method::DELETE,
            "/api/v1/contacts/{username}",
            User,
            delete(contacts::remove),
        ),
        r(Method::GET, "/api/v1/presence", User, get(presence::list)),
        // Uploads stream through their own bound (chat.max_attachment_bytes), not the body limit.
        r(
            Method::POST,
            "/api/v1/attachments",
            User,
            post(attachments::upload).layer(DefaultBodyLimit::disable()),
        ),
        r(
            Method::GET,
            "/api/v1/attachments/{id}",
            User,
            get(attachments::download),
        ),
        r(Method::GET, "/api/v1/ws", User, get(ws::upgrade)),
        // Alarms (raise and clear take a device token too).
        r(Method::POST, "/api/v1/alarms", User, post(alarms::raise)),
        r(Method::GET, "/api/v1/alarms", User, get(alarms::list)),
        r(
            Method::GET,
            "/api/v1/alarms/history",
            User,
            get(alarms::history),
        ),
        r(
            Method::POST,
            "/api/v1/alarms/ack",
            User,
            post(alarms::ack_many),
        ),
        r(Method::GET, "/api/v1/alarms/kpis", User, get(alarms::kpis)),
        r(Method::GET, "/api/v1/alarms/{id}", User, get(alarms::get)),
        r(
            Method::POST,
            "/api/v1/alarms/{id}/ack",
            User,
            post(alarms::ack),
        ),
        r(
            Method::POST,
            "/api/v1/alarms/{id}/shelve",
            User,
            post(alarms::shelve),
        ),
        r(
            Method::POST,
            "/api/v1/alarms/{id}/unshelve",
            User,
            post(alarms::unshelve),
        ),
        r(
            Method::POST,
            "/api/v1/alarms/{id}/out-of-service",
            User,
            post(alarms::out_of_service),
        ),
        r(
            Method::POST,
            "/api/v1/alarms/{id}/return-to-service",
            User,
            post(alarms::return_to_service),
        ),
        r(
            Method::POST,
            "/api/v1/alarms/{id}/reset",
            User,
            post(alarms::reset),
        ),
        r(
            Method::POST,
            "/api/v1/alarms/{id}/comment",
            User,
            post(alarms::comment),
        ),
        // Question templates (admins write) and incidents.
        r(Method::GET, "/api/v1/templates", User, get(templates::list)),
        r(
            Method::POST,
            "/api/v1/templates",
            User,
            post(templates::create),
        ),
        r(
            Method::POST,
            "/api/v1/templates/preview",
            User,
            post(templates::preview),
        ),
        r(
            Method::GET,
            "/api/v1/templates/{id}",
            User,
            get(templates::get),
        ),
        r(
            Method::PUT,
            "/api/v1/templates/{id}",
            User,
            put(templates::update),
        ),
        r(
            Method::DELETE,
            "/api/v1/templates/{id}",
            User,
            delete(templates::delete),
        ),
        r(
            Method::POST,
            "/api/v1/templates/{id}/archive",
            User,
            post(templates::archive),
        ),
        r(Method::GET, "/api/v1/incidents", User, get(incidents::list)),
        r(
            Method::POST,
            "/api/v1/incidents",
            User,
            post(incidents::open),
        ),
        r(
            Method::GET,
            "/api/v1/incidents/{id}",
            User,
            get(incidents::get),
        ),
        r(
            Method::POST,
            "/api/v1/incidents/{id}/state",
            User,
            post(incidents::set_state),
        ),
        r(
            Method::POST,
            "/api/v1/incidents/{id}/answers",
            User,
            post(incidents::answer),
        ),
        r(
            Method::POST,
            "/api/v1/incidents/{id}/assign",
            User,
            post(incidents::assign),
        ),
        r(
            Method::GET,
            "/api/v1/incidents/{id}/report",
            User,
            get(incidents::report),
        ),
        // Retention overrides and legal holds (admins).
        r(
            Method::GET,
            "/api/v1/admin/retention",
            User,
            get(retention::get),
        ),
        r(
            Method::PUT,
            "/api/v1/admin/retention/scope",
            User,
            put(retention::set_scope),
        ),
        // Audit export (admins).
        r(
            Method::GET,
            "/api/v1/audit/export",
            User,
            get(audit::export),
        ),
    ]
}

/// The route table without handlers (for docs and for tests that walk every route).
pub fn route_specs() -> Vec<RouteSpec> {
    table().into_iter().map(|(spec, _)| spec).collect()
}

/// Builds the router from the table.
pub fn router(state: AppState) -> Router {
    let max_body = state.config().server.max_body_bytes;
    let mut router = Router::new();
    let mut specs = Vec::new();
    for (spec, handler) in table() {
        router = router.route(spec.path, handler);
        specs.push(spec);
    }
    let edge = middleware::Edge::new(state.clone(), &specs);
    // The UI is the fallback rather than rows of the table: its paths are not API routes (the
    // OpenAPI document and `route_specs()` list only those), and it answers `/api/*` with the
    // same JSON 404 as before.
    router
        .fallback(|req: Request| async move { ui::Ui::serve(&req) })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(edge, middleware::edge))
        .with_state(state)
}
