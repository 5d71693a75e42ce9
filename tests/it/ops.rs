//! What plant IT meets first, with the real binary where it matters: a bad log level and a port in
//! use stop the start before anything is created, IPv4 and IPv6 listeners coexist, `config check`
//! says what it loaded, request durations are logged readably, and backup will not overwrite.

use std::net::SocketAddr;
use std::time::Duration;

use crate::process::{Running, command, default_server_section, write_config};
use crate::support::{Client, TestServer};

fn run(args: &[&str]) -> (bool, String, String) {
    let out = command(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_misspelt_log_level_is_refused_by_config_check_and_by_serve() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!("{}[log]\nlevel = \"debugg\"\n", default_server_section()),
    );
    let c = cfg.to_str().unwrap();
    let (ok, _, err) = run(&["config", "check", "--config", c]);
    assert!(!ok, "config check accepted it");
    assert!(err.contains("log.level") && err.contains("debugg"), "{err}");

    let (ok, _, err) = run(&["serve", "--config", c]);
    assert!(!ok, "serve started with it");
    assert!(err.contains("log.level") && err.contains("debugg"), "{err}");
    assert!(
        !dir.path().join("state").exists(),
        "serve refused before creating anything"
    );

    // A filter that keeps plantwire's own errors out is refused the same way.
    let cfg = write_config(
        dir.path(),
        &format!("{}[log]\nlevel = \"redb=warn\"\n", default_server_section()),
    );
    let (ok, _, err) = run(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!ok && err.contains("log.level"), "{err}");
    assert!(!dir.path().join("state").exists());
}

#[test]
fn a_port_in_use_leaves_no_store_behind_and_points_at_listen() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let cfg = write_config(dir.path(), default_server_section());
    let (ok, _, err) = run(&[
        "serve",
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        &addr,
    ]);
    assert!(!ok);
    assert!(err.contains(&addr) && err.contains("--listen"), "{err}");
    let os = std::io::Error::from_raw_os_error(98).to_string();
    assert_eq!(err.matches(&os).count(), 1, "the OS error once: {err}");
    assert!(
        !dir.path().join("state").join("plantwire.redb").exists(),
        "a failed start left a new store behind"
    );
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_and_ipv6_wildcards_on_one_port_both_serve() {
    // A port free on both families right now.
    let port = std::net::TcpListener::bind("[::]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = TestServer::start_with(|c| {
        c.server.listen = vec![
            SocketAddr::from(([0, 0, 0, 0], port)),
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
        ];
    })
    .await;
    let ca = std::fs::read_to_string(server.path().join("tls/ca.crt")).unwrap();
    for addr in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let res = Client::new(addr.parse().unwrap(), &ca)
            .get("/healthz")
            .await;
        assert_eq!(res.status, 200, "{addr}");
    }
    server.stop().await;
}

#[test]
fn config_check_names_the_file_site_and_state_dir_and_takes_one_listen_string() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "[server]\nlisten = \"127.0.0.1:0\"\n");
    let (ok, out, err) = run(&["config", "check", "--config", cfg.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("# config file: {}", cfg.display())),
        "{out}"
    );
    assert!(out.contains("# site: bin-test"), "{out}");
    assert!(
        out.contains(&format!(
            "# state dir: {}",
            dir.path().join("state").display()
        )),
        "{out}"
    );
    assert!(out.contains("listen = [\"127.0.0.1:0\"]"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_durations_are_logged_to_a_tenth_of_a_millisecond() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), default_server_section());
    let server = Running::start(&cfg);
    let ca = std::fs::read_to_string(dir.path().join("state/tls/ca.crt")).unwrap();
    let client = Client::new(server.addr, &ca);
    for _ in 0..5 {
        assert_eq!(client.get("/healthz").await.status, 200);
    }
    server.signal("-TERM");
    let log = server.log.clone();
    assert!(server.wait(Duration::from_secs(15)).success());
    let log = log.lock().unwrap().join("\n");
    let values: Vec<&str> = log
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("ms="))
        .collect();
    assert!(values.len() >= 5, "{log}");
    for v in values {
        let decimals = v.split_once('.').map_or(0, |(_, d)| d.len());
        assert!(v.parse::<f64>().is_ok() && decimals <= 1, "ms={v}");
    }
    assert!(!log.contains("Some("), "{log}");
}

#[test]
fn backup_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), default_server_section());
    let c = cfg.to_str().unwrap();
    // Only `serve` creates a store.
    let server = Running::start(&cfg);
    server.signal("-TERM");
    assert!(server.wait(Duration::from_secs(15)).success());

    let file = dir.path().join("existing.pwbackup");
    std::fs::write(&file, b"keep me").unwrap();
    let f = file.to_str().unwrap();
    let (ok, out, err) = run(&["backup", f, "--config", c]);
    assert!(!ok && err.contains("--force"), "{out}{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    assert!(!dir.path().join("existing.pwbackup.partial").exists());
    let (ok, out, err) = run(&["backup", f, "--force", "--config", c]);
    assert!(ok, "{out}{err}");
    assert_ne!(std::fs::read(&file).unwrap(), b"keep me");
}
