//! The real binary: config errors stop the start with a message naming the problem, SIGHUP swaps a
//! configured certificate, SIGKILL under load loses nothing acknowledged, and the CLI is clear.

use std::path::Path;
use std::time::Duration;

use crate::process::{Producers, Running, command, default_server_section, write_config};
use crate::support::Client;

fn stderr_of(args: &[&str]) -> (bool, String) {
    let out = command(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn bad_config_stops_the_start_and_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");

    std::fs::write(&cfg, "version = 1\n[server\nlisten = 3\n").unwrap();
    let (ok, err) = stderr_of(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("bad.toml"), "{err}");

    std::fs::write(
        &cfg,
        "version = 1\n[server]\nlisten_on = [\"127.0.0.1:0\"]\n",
    )
    .unwrap();
    let (ok, err) = stderr_of(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("listen_on"), "{err}");

    // A world-readable secret file.
    let key = dir.path().join("server.key");
    let cert = dir.path().join("server.crt");
    let kp = rcgen::KeyPair::generate().unwrap();
    let c = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    std::fs::write(&cert, c.pem()).unwrap();
    std::fs::write(&key, kp.serialize_pem()).unwrap();
    set_mode(&key, 0o644);
    let cfg = write_config(
        dir.path(),
        &format!(
            "{}[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            default_server_section(),
            cert.display(),
            key.display()
        ),
    );
    let (ok, err) = stderr_of(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains(key.to_str().unwrap()) && err.contains("chmod 600"),
        "{err}"
    );

    // An unknown key from the environment is named too; a known one overrides the file.
    let cfg = write_config(dir.path(), default_server_section());
    let out = command(&["config", "check", "--config", cfg.to_str().unwrap()])
        .env("PLANTWIRE_SERVER__BOGUS_LIMIT", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus_limit"));
    let out = command(&["config", "check", "--config", cfg.to_str().unwrap()])
        .env("PLANTWIRE_SERVER__MAX_CONNECTIONS", "77")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("max_connections = 77"));
}

#[test]
fn the_sample_config_is_valid() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/plantwire.toml");
    let text = std::fs::read_to_string(sample).unwrap();
    plantwire::Config::from_toml_str(&text).unwrap();
    let (ok, out) = stderr_of(&["config", "check", "--config", sample]);
    assert!(ok, "{out}");
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn issue_leaf(ca: &rcgen::Issuer<'_, rcgen::KeyPair>, dir: &Path) -> String {
    let kp = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&kp, ca)
        .unwrap();
    // Replace atomically, as a certificate tool would.
    for (name, pem) in [
        ("server.crt", cert.pem()),
        ("server.key", kp.serialize_pem()),
    ] {
        let tmp = dir.join(format!("{name}.new"));
        std::fs::write(&tmp, pem).unwrap();
        set_mode(&tmp, 0o600);
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
    plantwire::tls::fingerprint(cert.der())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_certificate_is_served_and_sighup_swaps_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let first = issue_leaf(&issuer, dir.path());
    let cfg = write_config(
        dir.path(),
        &format!(
            "{}[tls]\ncert_file = \"{d}/server.crt\"\nkey_file = \"{d}/server.key\"\nca_file = \"{d}/ca.pem\"\n",
            default_server_section(),
            d = dir.path().display()
        ),
    );
    let server = Running::start(&cfg);
    let client = Client::new(server.addr, &ca_cert.pem());
    let served = |client: Client| async move {
        let tls = client.tls().await;
        plantwire::tls::fingerprint(&tls.get_ref().1.peer_certificates().unwrap()[0])
    };
    assert_eq!(served(client.clone()).await, first);
    assert_eq!(client.get("/ca.crt").await.body, ca_cert.pem().as_bytes());

    // An open keep-alive connection from before the swap.
    let (mut old, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(client.tls().await))
            .await
            .unwrap();
    tokio::spawn(conn);

    let second = issue_leaf(&issuer, dir.path());
    assert_ne!(first, second);
    server.signal("-HUP");
    let mut now_served = String::new();
    for _ in 0..200 {
        now_served = served(client.clone()).await;
        if now_served == second {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(now_served, second, "{}", server.log_text());
    let res = old
        .send_request(
            client
                .request(hyper::Method::GET, "/healthz")
                .body(http_body_util::Full::<bytes::Bytes>::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the old connection survives the reload");
    drop(old);
    server.signal("-TERM");
    assert!(server.wait(Duration::from_secs(15)).success());
}

fn random_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    u64::from_le_bytes(b) % n
}

/// With the server of `cfg` stopped: every acknowledged (seq, message) is there, whole, with its
/// content, and the chain verifies.
fn assert_kept(cfg: &Path, acked: &[(u64, String)], what: &str) {
    let config = plantwire::Config::load(Some(cfg), &Default::default()).unwrap();
    let (store, key, site) = plantwire::state::open_offline(&config).unwrap();
    let rtx = store.read().unwrap();
    for (seq, msg) in acked {
        let entry = plantwire::log::read::entry(&rtx, &site, &key, *seq)
            .unwrap()
            .unwrap_or_else(|| panic!("{what}: acknowledged seq {seq} is missing after SIGKILL"));
        let body: serde_json::Value = serde_json::from_slice(&entry.body).unwrap();
        assert_eq!(body["message"], msg.as_str());
    }
    drop(rtx);
    let report = plantwire::log::verify(&store, &site, &key).unwrap();
    assert!(report.ok(), "{what}: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), default_server_section());
    crate::process::init(&cfg);
    let token = crate::process::add_device(&cfg, "pump");

    let mut acked_total = 0;
    for round in 0..4 {
        let server = Running::start(&cfg);
        let ca = std::fs::read_to_string(dir.path().join("state/tls/ca.crt")).unwrap();
        let client = Client::new(server.addr, &ca);
        let producers = Producers::start(&client, &token, &format!("round {round}"), 6);
        tokio::time::sleep(Duration::from_millis(300 + random_below(900))).await;
        let mut server = server;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        let acked = producers.acknowledged().await;
        acked_total += acked.len();

        assert_kept(&cfg, &acked, &format!("round {round}"));
        let (ok, out) = stderr_of(&["audit", "verify", "--config", cfg.to_str().unwrap()]);
        assert!(ok, "{out}");
    }
    eprintln!("acknowledged appends across the SIGKILL rounds: {acked_total}");
    assert!(acked_total > 0, "the load produced acknowledged appends");
}

/// After a SIGKILL under load the next start repairs the store (redb walks the whole file) and
/// logs it with its time; with `storage.quick_repair` every commit records redb's allocator state
/// and the next start skips the walk. Either way every acknowledged event is there and the chain
/// verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_the_repair_is_logged_and_quick_repair_skips_it() {
    const REPAIRED: &str = "the store was not closed cleanly";
    for quick in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let extra = format!(
            "[storage]\nquick_repair = {quick}\n{}",
            default_server_section()
        );
        let cfg = write_config(dir.path(), &extra);
        crate::process::init(&cfg);
        let token = crate::process::add_device(&cfg, "pump");
        let server = Running::start(&cfg);
        let ca = std::fs::read_to_string(dir.path().join("state/tls/ca.crt")).unwrap();
        let client = Client::new(server.addr, &ca);
        let producers = Producers::start(&client, &token, "before the kill", 4);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut server = server;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        let acked = producers.acknowledged().await;
        assert!(!acked.is_empty(), "quick_repair = {quick}");

        let server = Running::start(&cfg);
        let client = Client::new(server.addr, &ca);
        let log = server.log_text();
        assert_eq!(
            log.contains(REPAIRED),
            !quick,
            "quick_repair = {quick}: {log}"
        );
        if !quick {
            assert!(log.contains("repair_ms="), "{log}");
        }
        // Still serving: the next event lands after everything acknowledged before the kill.
        let res = client.event(&token, "after the restart").await;
        assert_eq!(res.status, 201, "quick_repair = {quick}");
        let last = acked.iter().map(|(seq, _)| *seq).max().unwrap();
        assert!(res.json()["seq"].as_u64().unwrap() > last);
        server.signal("-TERM");
        assert!(server.wait(Duration::from_secs(10)).success());

        assert_kept(&cfg, &acked, &format!("quick_repair = {quick}"));

        if !quick {
            continue;
        }
        // Killed idle: start-up must not commit without the allocator state. It once committed
        // the site identity at every start, which left the store to be walked after any crash
        // even with quick repair. (Without quick repair a commit of the search indexer, which
        // may still owe the cursor of the last event, can legitimately dirty the store here.)
        let mut server = Running::start(&cfg);
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        let server = Running::start(&cfg);
        let log = server.log_text();
        assert!(
            !log.contains(REPAIRED),
            "idle, quick_repair = {quick}: {log}"
        );
        server.signal("-TERM");
        assert!(server.wait(Duration::from_secs(10)).success());
    }
}

fn stdout_of(args: &[&str]) -> String {
    let out = command(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The default server config with cheap argon2 parameters, so CLI sign-ups are fast.
fn cheap_hashing_config(dir: &std::path::Path) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            "{}[auth]\nargon2_memory_kib = 64\nargon2_iterations = 1\n",
            default_server_section()
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_cli_works_offline_and_recovers_the_admin() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cheap_hashing_config(dir.path());
    let c = cfg.to_str().unwrap();
    crate::process::init(&cfg);
    let out = stdout_of(&["user", "add", "Grete", "--role", "viewer", "--config", c]);
    let otp = out.lines().last().unwrap().trim().to_string();
    assert_eq!(otp.len(), 20);
    stdout_of(&["user", "role", "grete", "operator", "--config", c]);
    let list = stdout_of(&["user", "list", "--config", c]);
    assert!(list.contains("Grete\tOperator\tActive"), "{list}");
    let out = stdout_of(&["user", "reset-admin", "--config", c]);
    let admin_otp = out.lines().last().unwrap().trim().to_string();
    let file = std::fs::read_to_string(
        dir.path()
            .join("state")
            .join(plantwire::users::ADMIN_PASSWORD_FILE),
    )
    .unwrap();
    assert_eq!(file.trim(), admin_otp);

    // The server takes it from here: both one-time passwords sign in (and must be changed).
    let server = Running::start(&cfg);
    let ca = std::fs::read_to_string(dir.path().join("state/tls/ca.crt")).unwrap();
    let client = Client::new(server.addr, &ca);
    for (user, pw) in [("grete", &otp), ("admin", &admin_otp)] {
        let res = client
            .post_json(
                "/api/v1/auth/login",
                None,
                &serde_json::json!({"username": user, "password": pw}),
            )
            .await;
        assert_eq!(res.status, 200, "{user}");
        assert_eq!(res.json()["user"]["must_change_password"], true);
    }
    // While it runs, the CLI works through its control socket; stopped, on the store.
    stdout_of(&["user", "disable", "grete", "--config", c]);
    server.signal("-TERM");
    assert!(server.wait(Duration::from_secs(15)).success());
    assert!(stdout_of(&["user", "list", "--config", c]).contains("Grete\tOperator\tDisabled"));
    stdout_of(&["user", "enable", "grete", "--config", c]);
    assert!(stdout_of(&["user", "list", "--config", c]).contains("Grete\tOperator\tActive"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_acknowledged_over_the_socket_survives_sigkill() {
    use crate::chat_support::{Api, PW};
    let dir = tempfile::tempdir().unwrap();
    let cfg = cheap_hashing_config(dir.path());
    let c = cfg.to_str().unwrap();
    crate::process::init(&cfg);
    let out = stdout_of(&["user", "add", "alice", "--config", c]);
    let otp = out.lines().last().unwrap().trim().to_string();

    let server = Running::start(&cfg);
    let ca = std::fs::read_to_string(dir.path().join("state/tls/ca.crt")).unwrap();
    let client = Client::new(server.addr, &ca);
    let first = Api::login(&client, "alice", &otp).await;
    let res = first
        .post(
            "/api/v1/auth/password",
            serde_json::json!({"current_password": otp, "new_password": PW}),
        )
        .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    let alice = Api::login(&client, "alice", PW).await;
    let res = alice
        .post(
            "/api/v1/conversations",
            serde_json::json!({"kind": "channel", "name": "control-room"}),
        )
        .await;
    let ch = res.json()["id"].as_str().unwrap().to_string();
    let mut ws = alice.ws().await;
    ws.send(serde_json::json!({"type": "send", "conv": ch, "key": "k1", "text": "valve 3 closed"}))
        .await;
    let ack = ws.next_of("ack").await;
    let mut server = server;
    server.child.kill().unwrap(); // SIGKILL right after the ack
    server.child.wait().unwrap();
    let seq = ack["seq"].as_u64().unwrap();

    let server = Running::start(&cfg);
    let client = Client::new(server.addr, &ca);
    let alice = Api::login(&client, "alice", PW).await;
    let h = alice.history(&ch, "").await;
    assert_eq!(h["messages"][0]["seq"], seq);
    assert_eq!(h["messages"][0]["text"], "valve 3 closed");
    // And the retry a client makes after reconnecting does not duplicate it.
    assert_eq!(alice.say(&ch, "k1", "valve 3 closed").await, seq);
    assert_eq!(
        alice.history(&ch, "").await["messages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    server.signal("-TERM");
    assert!(server.wait(Duration::from_secs(10)).success());
}
