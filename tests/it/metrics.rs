//! `/metrics` over real TLS: who may read it (admin, scraper token; not anonymous, not an
//! operator, not a wrong token), and that the numbers move with real traffic.

use http_body_util::Full;
use hyper::Method;
use plantwire::store::Role;
use serde_json::json;

use crate::support::{Client, Resp, TestServer};

const PW: &str = "correct horse battery";

async fn access_token(c: &Client, user: &str) -> String {
    let res = c
        .post_json(
            "/api/v1/auth/login",
            None,
            &json!({"username": user, "password": PW}),
        )
        .await;
    assert_eq!(res.status, 200);
    res.json()["access_token"].as_str().unwrap().to_string()
}

async fn scrape(c: &Client, bearer: Option<&str>) -> Resp {
    let mut b = c.request(Method::GET, "/metrics");
    if let Some(t) = bearer {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    c.send(b.body(Full::default()).unwrap()).await
}

/// The value of the sample `name{labels}` (labels exactly as rendered), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_an_admin_or_the_token_and_follow_traffic() {
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("metrics.token");
    std::fs::write(&token_file, "scrape-me-0123456789abcdef\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let tf = token_file.clone();
    let server = TestServer::start_with(move |c| c.metrics.token_file = Some(tf)).await;
    server.user("boss", Role::Admin, PW).await;
    server.user("oper", Role::Operator, PW).await;
    let c = server.client();

    assert_eq!(scrape(&c, None).await.status, 401);
    let res = scrape(&c, Some("not-the-token")).await;
    assert_eq!(res.status, 401);
    assert_eq!(res.error_code(), "unauthorized");
    let op = access_token(&c, "oper").await;
    let res = scrape(&c, Some(&op)).await;
    assert_eq!(res.status, 403);
    assert_eq!(res.error_code(), "forbidden");

    let device = server.device("pump-7").await;
    for i in 0..5 {
        assert_eq!(c.event(&device, &format!("e{i}")).await.status, 201);
    }
    assert_eq!(c.get("/healthz").await.status, 200);
    assert_eq!(c.get("/no/such/thing").await.status, 404);

    let res = scrape(&c, Some("scrape-me-0123456789abcdef")).await;
    assert_eq!(res.status, 200);
    assert!(
        res.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        res.headers
    );
    let text = String::from_utf8(res.body.to_vec()).unwrap();
    let count = |route: &str, method: &str, status: u16| {
        sample(
            &text,
            &format!(
                "plantwire_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(count("/api/v1/events", "POST", 201), Some(5.0), "{text}");
    assert_eq!(count("/healthz", "GET", 200), Some(1.0), "{text}");
    assert_eq!(count("unmatched", "GET", 404), Some(1.0), "{text}");
    assert_eq!(count("/metrics", "GET", 403), Some(1.0), "{text}");
    // Five events plus the device registration and two users: all durably appended.
    let appends = sample(&text, "plantwire_log_appends_total").unwrap();
    assert!(appends >= 5.0, "{text}");
    let commits = sample(&text, "plantwire_log_commit_seconds_count").unwrap();
    assert!(commits >= 1.0 && commits <= appends, "{text}");
    assert_eq!(
        sample(&text, "plantwire_log_commit_batch_size_sum"),
        Some(appends),
        "{text}"
    );
    assert!(sample(&text, "plantwire_store_size_bytes").unwrap() > 0.0);
    assert_eq!(sample(&text, "plantwire_log_queue_depth"), Some(0.0));
    assert_eq!(sample(&text, "plantwire_websocket_clients"), Some(0.0));
    // This scrape's own connection is open while it is answered.
    assert!(sample(&text, "plantwire_open_connections").unwrap() >= 1.0);
    assert!(
        text.lines().any(|l| l.starts_with("plantwire_build_info{")
            && l.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"));
    // Every metric the Grafana dashboard queries exists.
    let dashboard = include_str!("../../packaging/grafana-dashboard.json");
    for token in dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if !token.starts_with("plantwire_") {
            continue;
        }
        let base = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| token.strip_suffix(s))
            .unwrap_or(token);
        assert!(
            text.contains(&format!("# TYPE {base} ")),
            "the dashboard queries {token}, which /metrics does not export"
        );
    }

    // A signed-in admin may read them too.
    let boss = access_token(&c, "boss").await;
    let res = scrape(&c, Some(&boss)).await;
    assert_eq!(res.status, 200);
    let text = String::from_utf8(res.body.to_vec()).unwrap();
    assert_eq!(count_in(&text, "/metrics", 200), Some(1.0), "{text}");
    server.stop().await;
}

fn count_in(text: &str, route: &str, status: u16) -> Option<f64> {
    sample(
        text,
        &format!(
            "plantwire_http_requests_total{{method=\"GET\",route=\"{route}\",status=\"{status}\"}}"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_turned_off() {
    let server = TestServer::start_with(|c| c.metrics.enabled = false).await;
    server.user("boss", Role::Admin, PW).await;
    let c = server.client();
    let boss = access_token(&c, "boss").await;
    let res = scrape(&c, Some(&boss)).await;
    assert_eq!(res.status, 404);
    assert_eq!(res.error_code(), "not_found");
    server.stop().await;
}
