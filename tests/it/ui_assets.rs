//! The embedded UI as plain HTTP: a strict CSP on index.html, versioned assets served immutable,
//! ETag revalidation, the SPA fallback for browser paths, and `/api/*` still JSON 404s.

use http_body_util::Full;
use hyper::Method;

use crate::support::{Client, Resp, TestServer};

async fn get_with(client: &Client, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut b = client.request(Method::GET, path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    client.send(b.body(Full::default()).unwrap()).await
}

fn header<'a>(r: &'a Resp, name: &str) -> &'a str {
    r.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_str()
        .unwrap()
}

/// The asset URLs index.html refers to.
fn asset_urls(html: &str) -> Vec<String> {
    html.split('"')
        .filter(|s| s.starts_with("/assets/"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_has_a_strict_csp_and_is_revalidated() {
    let server = TestServer::start().await;
    let c = server.client();
    let r = get_with(&c, "/", &[("accept", "text/html")]).await;
    assert_eq!(r.status, 200);
    assert!(header(&r, "content-type").starts_with("text/html"));
    assert_eq!(header(&r, "cache-control"), "no-cache");
    let csp = header(&r, "content-security-policy");
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    let html = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(!html.contains("__VERSION__"));
    // No inline script or style, nothing from another host.
    assert!(!html.contains("<style") && !html.contains("style=") && !html.contains("http"));
    assert!(
        html.matches("<script").count()
            == html
                .matches("<script type=\"module\" src=\"/assets/")
                .count()
    );

    let etag = header(&r, "etag").to_string();
    let again = get_with(
        &c,
        "/",
        &[("accept", "text/html"), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(header(&again, "etag"), etag);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_are_versioned_immutable_and_revalidate_with_etags() {
    let server = TestServer::start().await;
    let c = server.client();
    let html = String::from_utf8(c.get("/").await.body.to_vec()).unwrap();
    let urls = asset_urls(&html);
    assert!(urls.iter().any(|u| u.ends_with("/js/app.js")), "{urls:?}");
    assert!(urls.iter().any(|u| u.ends_with("/app.css")), "{urls:?}");
    for url in &urls {
        let r = c.get(url).await;
        assert_eq!(r.status, 200, "{url}");
        assert_eq!(
            header(&r, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        let etag = header(&r, "etag").to_string();
        let again = get_with(&c, url, &[("if-none-match", &etag)]).await;
        assert_eq!(again.status, 304, "{url}");
    }
    let js = urls.iter().find(|u| u.ends_with("/js/app.js")).unwrap();
    assert!(header(&c.get(js).await, "content-type").starts_with("text/javascript"));
    // Modules import each other relatively, so they resolve inside the same version.
    let dom = js.replace("/app.js", "/dom.js");
    assert_eq!(c.get(&dom).await.status, 200);
    // Another version, or an unversioned path, is not served.
    let version = js.split('/').nth(2).unwrap();
    assert_eq!(
        c.get(&js.replace(version, "0000000000000000")).await.status,
        404
    );
    assert_eq!(c.get("/assets/js/app.js").await.status, 404);
    assert_eq!(
        c.get(&format!("/assets/{version}/README.md")).await.status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_paths_fall_back_to_the_app_and_the_api_keeps_json_404s() {
    let server = TestServer::start().await;
    let c = server.client();
    let r = get_with(&c, "/c/dm:alice:bob", &[("accept", "text/html,*/*")]).await;
    assert_eq!(r.status, 200);
    assert!(header(&r, "content-type").starts_with("text/html"));
    assert!(header(&r, "content-security-policy").contains("script-src 'self'"));

    // Not a browser asking for a page: a JSON 404.
    let r = get_with(&c, "/nothing-here", &[("accept", "application/json")]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "not_found");

    for path in ["/api/v1/nope", "/api/nope", "/api"] {
        let r = get_with(&c, path, &[("accept", "text/html")]).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.error_code(), "not_found");
        assert!(header(&r, "content-type").starts_with("application/json"));
    }
    // Only GET and HEAD reach the UI.
    let r = c
        .send(
            c.request(Method::POST, "/")
                .header("accept", "text/html")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "not_found");
}
