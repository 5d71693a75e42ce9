//! Answers given before the request body is read (404, 401, 403, 415, 413) reach curl over
//! HTTP/2: the real `curl` binary, ALPN h2, the site CA pinned, 50 refusals in a row.

use std::process::Command;

use crate::support::{TestServer, in_ci};

fn curl_available() -> bool {
    Command::new("curl").arg("--version").output().is_ok()
}

#[tokio::test]
#[cfg_attr(not(pw_has_curl), ignore = "needs curl (CI runs it)")]
async fn curl_over_http2_reads_every_early_refusal() {
    if !curl_available() {
        assert!(!in_ci(), "curl is required in CI");
        eprintln!("skipped: no curl");
        return;
    }
    let server = TestServer::start_with(|c| c.server.max_body_bytes = 1024).await;
    let token = server.device("press-1").await;
    let dir = server.path();
    let ca = dir.join("ca-for-curl.pem");
    std::fs::write(&ca, server.state().tls().ca_pem().unwrap()).unwrap();
    let big = dir.join("big.json");
    std::fs::write(&big, format!("{{\"pad\":\"{}\"}}", "x".repeat(8 << 10))).unwrap();
    let base = format!("https://127.0.0.1:{}", server.addr.port());
    let auth = format!("authorization: Bearer {token}");
    let big_arg = format!("@{}", big.display());
    // (expected status, path, extra curl arguments)
    let kinds: Vec<(&str, &str, Vec<&str>)> = vec![
        ("404", "/api/v1/nope", vec!["-d", "{\"a\":1}"]),
        ("401", "/api/v1/events", vec!["-d", "{\"a\":1}"]),
        (
            "403",
            "/api/v1/conversations/direct/bob",
            vec![
                "-H",
                "cookie: pw_access=x",
                "-H",
                "origin: https://evil.example",
                "-d",
                "{}",
            ],
        ),
        // `-d` sends a form content type: the JSON route refuses it unread.
        (
            "415",
            "/api/v1/events",
            vec!["-H", &auth, "-d", "{\"a\":1}"],
        ),
        (
            "413",
            "/api/v1/events",
            vec![
                "-H",
                &auth,
                "-H",
                "content-type: application/json",
                "--data-binary",
                &big_arg,
            ],
        ),
    ];
    let ca_arg = ca.display().to_string();
    let mut failures = Vec::new();
    for i in 0..50 {
        let (want, path, extra) = &kinds[i % kinds.len()];
        let url = format!("{base}{path}");
        let mut args = vec![
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            "--http2",
            "--max-time",
            "10",
            "--cacert",
            &ca_arg,
            "-X",
            "POST",
        ];
        args.extend(extra.iter().copied());
        args.push(&url);
        let args: Vec<String> = args.into_iter().map(str::to_string).collect();
        let out = tokio::task::spawn_blocking(move || Command::new("curl").args(&args).output())
            .await
            .unwrap()
            .unwrap();
        let printed = String::from_utf8_lossy(&out.stdout).to_string();
        if printed != format!("{want} 2") {
            failures.push(format!(
                "#{i} {path}: wanted {want} over h2, curl printed {printed:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 50: {failures:#?}",
        failures.len()
    );
    server.stop().await;
}
