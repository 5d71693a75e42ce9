//! The one layer every request passes (the edge): the credential gate of the route table, a
//! request id, the request counter, uniform JSON error bodies, the security headers, the access log
//! and the drain of an unread body. One layer, not six: each `from_fn` layer costs every request a
//! boxed future and a clone of the request's path. Headers (Authorization, Cookie) and query
//! strings never reach the log.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::Instrument;

use super::drain::Unread;
use super::error::{ApiError, ErrorBody, default_code};
use super::{Access, RouteSpec, extract, ntfy_auth};
use crate::state::AppState;

/// The id of the request being served, also sent back as `x-request-id` and in error bodies:
/// 16 hex digits, unique within the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId(u64);

impl RequestId {
    /// The id as 16 lower-case hex digits in `buf`, without an allocation.
    fn hex(self, buf: &mut [u8; 16]) -> &str {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, b) in buf.iter_mut().enumerate() {
            let shift = 60 - 4 * i;
            *b = HEX[((self.0 >> shift) & 0xf) as usize];
        }
        std::str::from_utf8(buf).unwrap_or("0000000000000000")
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex(&mut [0u8; 16]))
    }
}

/// Request ids: a counter passed through a bijective mix and a per-process random key, so ids
/// never repeat within a process and do not reveal how many requests came before.
#[derive(Debug)]
struct RequestIds {
    key: u64,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let mut b = [0u8; 8];
        // Without randomness the ids stay unique, only guessable.
        let _ = aws_lc_rs::rand::fill(&mut b);
        Self {
            key: u64::from_le_bytes(b),
            next: AtomicU64::new(0),
        }
    }

    fn next(&self) -> RequestId {
        // The finaliser of splitmix64: a bijection on u64.
        let mut z = self.next.fetch_add(1, Ordering::Relaxed) ^ self.key;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        RequestId(z ^ (z >> 31))
    }
}

/// What the edge knows of the route table: each route's template (the metric's label, kept as
/// the table's `&'static str`) and who may call it by method.
#[derive(Debug, Default)]
struct Routes(HashMap<&'static str, Vec<(Method, Access)>>);

impl Routes {
    fn new(specs: &[RouteSpec]) -> Self {
        let mut map: HashMap<&'static str, Vec<(Method, Access)>> = HashMap::new();
        for spec in specs {
            map.entry(spec.path)
                .or_default()
                .push((spec.method.clone(), spec.access));
        }
        Self(map)
    }

    /// The route's template and, when its method is in the table, who may call it (`HEAD` is
    /// answered by the `GET` route).
    fn find(&self, path: &str, method: &Method) -> Option<(&'static str, Option<Access>)> {
        let (template, rows) = self.0.get_key_value(path)?;
        let wanted = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        let access = rows.iter().find(|(m, _)| m == wanted).map(|(_, a)| *a);
        Some((template, access))
    }
}

/// The edge layer's state, built once per router.
#[derive(Clone)]
pub struct Edge {
    state: AppState,
    ids: Arc<RequestIds>,
    routes: Arc<Routes>,
}

impl Edge {
    pub fn new(state: AppState, specs: &[RouteSpec]) -> Self {
        Self {
            state,
            ids: Arc::new(RequestIds::new()),
            routes: Arc::new(Routes::new(specs)),
        }
    }
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    code: &'a str,
    error: &'a str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<std::collections::BTreeMap<String, String>>,
}

/// The metric's label for a method: the standard ones by name, anything else as `other`, so a
/// client cannot grow the label set with invented methods.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Every non-public route refuses a request that carries no credential at all, before any
/// handler runs; the handlers' extractors then check the credential itself.
fn has_credentials(req: &Request) -> bool {
    extract::has_credentials(req.headers())
        || ntfy_auth::has_auth_query(req.uri())
        || req
            .extensions()
            .get::<crate::tls::gate::PeerCertificate>()
            .is_some()
}

/// The edge: runs after routing (`Router::layer`), so the matched route is known.
pub async fn edge(State(edge): State<Edge>, req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let id = edge.ids.next();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let (route, access) = match req.extensions().get::<MatchedPath>() {
        Some(m) => edge
            .routes
            .find(m.as_str(), &method)
            .unwrap_or(("other", None)),
        None => ("unmatched", None),
    };
    let needs_credentials = matches!(access, Some(Access::Device | Access::User));
    let (mut req, unread) = Unread::wrap(req);
    let mut res = if needs_credentials && !has_credentials(&req) {
        // Dropped here, the body goes back to `unread` to be drained like any other refusal's.
        drop(req);
        ApiError::unauthorized("authentication required").into_response()
    } else {
        req.extensions_mut().insert(id);
        let span = tracing::info_span!("request", id = %id);
        next.run(req).instrument(span).await
    };
    if let Some(unread) = unread {
        unread.drain(&mut res).await;
    }
    let status = res.status();
    edge.state
        .metrics()
        .request(method_label(&method), route, status.as_u16());
    let mut hex = [0u8; 16];
    let id_text = id.hex(&mut hex);
    if status.is_client_error() || status.is_server_error() {
        error_body(&mut res, id_text);
    }
    let h = res.headers_mut();
    security_headers(h);
    if let Ok(v) = HeaderValue::from_str(id_text) {
        h.insert(HeaderName::from_static("x-request-id"), v);
    }
    let path = clip(uri.path(), 256);
    let ms = crate::telemetry::millis(started.elapsed());
    match access_level(&method, path, status) {
        tracing::Level::DEBUG => {
            tracing::debug!(id = %id_text, %method, %path, status = status.as_u16(), ms, "request");
        }
        tracing::Level::WARN => {
            tracing::warn!(id = %id_text, %method, %path, status = status.as_u16(), ms, "request");
        }
        _ => tracing::info!(id = %id_text, %method, %path, status = status.as_u16(), ms, "request"),
    }
    res
}

/// Replaces an error response's body with the JSON error (code, message, request id, fields).
fn error_body(res: &mut Response, id: &str) {
    let status = res.status();
    let (code, message, fields) = match res.extensions_mut().remove::<ErrorBody>() {
        Some(b) => (b.code, b.message, b.fields),
        None => {
            let (c, m) = default_code(status);
            (c, m.to_string(), None)
        }
    };
    let body = serde_json::to_vec(&ErrorJson {
        code,
        error: &message,
        request_id: id,
        fields,
    })
    .unwrap_or_default();
    res.headers_mut().remove(header::CONTENT_LENGTH);
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    *res.body_mut() = Body::from(body);
}

/// The level of a request's access line. A machine may publish thousands of times a second: its
/// successes, and the back-pressure answers a flooding device gets by the thousand (429
/// rate_limited, 503 busy), are not worth a line each (the metrics count them per device and
/// code); its other refusals still are, and other server errors are warnings.
fn access_level(method: &axum::http::Method, path: &str, status: StatusCode) -> tracing::Level {
    let routine = status.is_success()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::SERVICE_UNAVAILABLE;
    if routine && is_device_publish(method, path) {
        tracing::Level::DEBUG
    } else if status.is_server_error() {
        tracing::Level::WARN
    } else {
        tracing::Level::INFO
    }
}

/// Whether a request is a device's publish (the `Device` routes of the table, all `POST`).
fn is_device_publish(method: &axum::http::Method, path: &str) -> bool {
    *method == axum::http::Method::POST
        && (path == "/api/v1/events"
            || path == "/api/v1/events/batch"
            || path == "/ntfy"
            || path.starts_with("/ntfy/")
            || path.starts_with("/api/v1/ingest/"))
}

/// Default-deny security headers; a route that sets its own value keeps it.
fn security_headers(h: &mut axum::http::HeaderMap) {
    let defaults: [(HeaderName, &'static str); 8] = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
        (
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=63072000; includeSubDomains",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in defaults {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use axum::http::StatusCode;
    use tracing::Level;

    use super::{RequestId, RequestIds, Routes, access_level, is_device_publish, method_label};
    use crate::http::{Access, route_specs};

    #[test]
    fn request_ids_are_16_hex_digits_and_never_repeat() {
        let ids = RequestIds::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20_000 {
            let id = ids.next();
            let mut buf = [0u8; 16];
            let text = id.hex(&mut buf).to_string();
            assert_eq!(text, id.to_string());
            assert_eq!(text.len(), 16);
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert!(seen.insert(text), "an id repeated");
        }
        // Consecutive requests do not get consecutive ids.
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(b.0.wrapping_sub(a.0), 1);
        let mut buf = [0u8; 16];
        assert_eq!(RequestId(0xab).hex(&mut buf), "00000000000000ab");
    }

    #[test]
    fn the_edge_knows_every_route_of_the_table_and_who_may_call_it() {
        let specs = route_specs();
        let routes = Routes::new(&specs);
        for spec in &specs {
            let (template, access) = routes.find(spec.path, &spec.method).unwrap();
            assert_eq!(template, spec.path);
            assert_eq!(access, Some(spec.access), "{} {}", spec.method, spec.path);
        }
        // HEAD is answered by the GET route, so it is gated like it.
        let (_, head) = routes.find("/api/v1/events", &Method::HEAD).unwrap();
        let (_, get) = routes.find("/api/v1/events", &Method::GET).unwrap();
        assert_eq!(head, get);
        assert_eq!(get, Some(Access::User));
        // A method the route does not have is left to the router's 405.
        assert_eq!(routes.find("/healthz", &Method::DELETE).unwrap().1, None);
        assert!(routes.find("/no/such/route", &Method::GET).is_none());
    }

    #[test]
    fn invented_methods_share_one_metric_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(method_label(&Method::TRACE), "other");
    }

    #[test]
    fn a_flooding_device_costs_no_line_per_refusal_but_other_errors_do() {
        let (post, publish) = (Method::POST, "/api/v1/events");
        assert_eq!(
            access_level(&post, publish, StatusCode::CREATED),
            Level::DEBUG
        );
        assert_eq!(
            access_level(&post, publish, StatusCode::TOO_MANY_REQUESTS),
            Level::DEBUG
        );
        assert_eq!(
            access_level(&post, publish, StatusCode::SERVICE_UNAVAILABLE),
            Level::DEBUG
        );
        assert_eq!(
            access_level(&post, publish, StatusCode::BAD_REQUEST),
            Level::INFO
        );
        assert_eq!(
            access_level(&post, publish, StatusCode::INTERNAL_SERVER_ERROR),
            Level::WARN
        );
        let login = "/api/v1/auth/login";
        assert_eq!(
            access_level(&post, login, StatusCode::TOO_MANY_REQUESTS),
            Level::INFO
        );
        assert_eq!(
            access_level(&post, login, StatusCode::SERVICE_UNAVAILABLE),
            Level::WARN
        );
    }

    #[test]
    fn only_the_device_publish_routes_are_quiet() {
        for path in [
            "/api/v1/events",
            "/api/v1/events/batch",
            "/ntfy",
            "/ntfy/boiler",
            "/api/v1/ingest/alertmanager",
            "/api/v1/ingest/grafana",
        ] {
            assert!(is_device_publish(&Method::POST, path), "{path}");
        }
        assert!(!is_device_publish(&Method::GET, "/api/v1/events"));
        assert!(!is_device_publish(&Method::POST, "/api/v1/events/manual"));
        assert!(!is_device_publish(&Method::POST, "/api/v1/auth/login"));
    }
}
