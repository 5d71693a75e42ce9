//! Layers on every response: a request id, uniform JSON error bodies, the security headers and
//! the access log. Headers (Authorization, Cookie) and query strings never reach the log.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;
use tracing::Instrument;

use super::error::{ErrorBody, default_code};

/// The id of the request being served, also sent back as `x-request-id`.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

#[derive(Serialize)]
struct ErrorJson<'a> {
    code: &'a str,
    error: &'a str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<std::collections::BTreeMap<String, String>>,
}

fn new_request_id() -> String {
    let mut b = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        return "0000000000000000".into();
    }
    hex::encode(b)
}

/// Outermost layer: request id, JSON error bodies for every error status, access log.
pub async fn finish(mut req: Request, next: Next) -> Response {
    let id = new_request_id();
    let method = req.method().clone();
    let path: String = req.uri().path().chars().take(256).collect();
    req.extensions_mut().insert(RequestId(id.clone()));
    let started = std::time::Instant::now();
    let span = tracing::info_span!("request", id = %id, method = %method, path = %path);
    let mut res = next.run(req).instrument(span).await;
    let status = res.status();
    if status.is_client_error() || status.is_server_error() {
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
            request_id: &id,
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
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), v);
    }
    let ms = crate::telemetry::millis(started.elapsed());
    match access_level(&method, &path, status) {
        tracing::Level::DEBUG => {
            tracing::debug!(id = %id, %method, %path, status = status.as_u16(), ms, "request");
        }
        tracing::Level::WARN => {
            tracing::warn!(id = %id, %method, %path, status = status.as_u16(), ms, "request");
        }
        _ => tracing::info!(id = %id, %method, %path, status = status.as_u16(), ms, "request"),
    }
    res
}

/// Whether a request is a device's publish (the `Device` routes of the table, all `POST`).
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

fn is_device_publish(method: &axum::http::Method, path: &str) -> bool {
    *method == axum::http::Method::POST
        && (path == "/api/v1/events"
            || path == "/api/v1/events/batch"
            || path == "/ntfy"
            || path.starts_with("/ntfy/")
            || path.starts_with("/api/v1/ingest/"))
}

/// Default-deny security headers; a route that sets its own value keeps it.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
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
    res
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use axum::http::StatusCode;
    use tracing::Level;

    use super::{access_level, is_device_publish};

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
