//! Device certificates and mutual TLS: issue (server key or CSR) and publish with curl, revocation
//! that refuses new handshakes, closes open connections and cannot be resumed around, the CRL,
//! browsers never asked for a certificate, and the CLI writing the bundle online and offline.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use plantwire::store::Role;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::process::{Running, command, default_server_section, write_config};
use crate::support::{Client, TestServer, provider, roots};

const PW: &str = "correct horse battery";

async fn admin(server: &TestServer) -> (Client, String) {
    server.user("ada", Role::Admin, PW).await;
    let c = server.client();
    let res = c
        .post_json(
            "/api/v1/auth/login",
            None,
            &json!({"username": "ada", "password": PW}),
        )
        .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    let token = res.json()["access_token"].as_str().unwrap().to_string();
    (c, token)
}

/// Adds a certificate device over the admin API and returns the whole answer.
async fn add_cert_device(c: &Client, admin: &str, name: &str, csr: Option<&str>) -> Value {
    let mut body = json!({"name": name, "credential": "certificate"});
    if let Some(csr) = csr {
        body["csr"] = json!(csr);
    }
    let res = c
        .with_bearer(Method::POST, "/api/v1/admin/devices", admin, Some(body))
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    res.json()
}

async fn revoke(c: &Client, admin: &str, name: &str) {
    let res = c
        .with_bearer(
            Method::DELETE,
            &format!("/api/v1/admin/devices/{name}"),
            admin,
            None,
        )
        .await;
    assert_eq!(res.status, 204, "{:?}", res.body);
}

fn device_addr(server: &TestServer) -> SocketAddr {
    server.state().device_addrs()[0]
}

fn mtls_config(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Arc<rustls::ClientConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca_pem))
        .with_client_auth_cert(certs, key)
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

fn event_request(addr: SocketAddr, message: &str) -> Request<Full<Bytes>> {
    let body = json!({"source": "gw", "type": "pressure.high", "message": message});
    Request::builder()
        .method(Method::POST)
        .uri("/api/v1/events")
        .header("host", format!("localhost:{}", addr.port()))
        .header("content-type", "application/json")
        .body(Full::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

/// One TLS connection with `cfg`; the handshake kind is reported from the client's side.
async fn connect(
    addr: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(cfg.clone())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// Publishes on a fresh connection; `None` when the handshake or the request fails.
async fn try_publish(
    addr: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
    message: &str,
) -> Option<u16> {
    let tls = connect(addr, cfg).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .ok()?;
    tokio::spawn(conn);
    let res = sender
        .send_request(event_request(addr, message))
        .await
        .ok()?;
    Some(res.status().as_u16())
}

/// Runs curl with the device's files; returns its exit status success and stdout.
async fn curl(
    addr: SocketAddr,
    dir: &std::path::Path,
    name: &str,
    message: &str,
) -> (bool, String) {
    let dir = dir.to_path_buf();
    let (name, message) = (name.to_string(), message.to_string());
    tokio::task::spawn_blocking(move || {
        let body = json!({"source": "gw", "type": "pressure.high", "message": message}).to_string();
        let out = std::process::Command::new("curl")
            .args(["-sS", "--fail-with-body", "--max-time", "20"])
            .arg("--cert")
            .arg(dir.join(format!("{name}.crt")))
            .arg("--key")
            .arg(dir.join(format!("{name}.key")))
            .arg("--cacert")
            .arg(dir.join("ca.crt"))
            .args(["-H", "content-type: application/json", "-d", &body])
            .arg(format!("https://127.0.0.1:{}/api/v1/events", addr.port()))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    })
    .await
    .unwrap()
}

fn have(tool: &str) -> bool {
    let found = std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        assert!(!crate::support::in_ci(), "{tool} is missing in CI");
        eprintln!("skipping: {tool} not installed");
    }
    found
}

fn csr_and_key() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(vec!["ignored.example".to_string()])
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    (csr, key.serialize_pem())
}

#[tokio::test]
async fn a_server_issued_and_a_csr_certificate_publish_with_curl_over_mutual_tls() {
    if !have("curl") {
        return;
    }
    let server = TestServer::start().await;
    let (c, admin) = admin(&server).await;
    let dir = tempfile::tempdir().unwrap();

    // Server-made key: PEM files (and a PKCS#12) from the one answer.
    let ans = add_cert_device(&c, &admin, "gw-1", None).await;
    let cert = &ans["certificate"];
    assert!(
        ans.get("token").is_none(),
        "a certificate device has no token"
    );
    assert_eq!(ans["device"]["has_token"], false);
    assert_eq!(ans["device"]["certificates"][0]["serial"], cert["serial"]);
    std::fs::write(dir.path().join("ca.crt"), cert["ca_pem"].as_str().unwrap()).unwrap();
    std::fs::write(
        dir.path().join("gw-1.crt"),
        cert["cert_pem"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("gw-1.key"),
        cert["key_pem"].as_str().unwrap(),
    )
    .unwrap();
    assert!(!cert["p12_base64"].as_str().unwrap().is_empty());
    // The certificate says who it is for, and that it is a client certificate.
    let der =
        CertificateDer::from_pem_slice(cert["cert_pem"].as_str().unwrap().as_bytes()).unwrap();
    let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert!(
        x.subject().to_string().contains("CN=gw-1"),
        "{}",
        x.subject()
    );
    let san = format!("{:?}", x.subject_alternative_name().unwrap().unwrap().value);
    assert!(san.contains("urn:plantwire:device:test-site:gw-1"), "{san}");
    let eku = x.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);

    let before = server.head_seq();
    let (ok, out) = curl(device_addr(&server), dir.path(), "gw-1", "over mTLS").await;
    assert!(ok, "curl failed: {out}");
    assert!(out.contains("\"seq\""), "{out}");
    assert_eq!(server.head_seq(), before + 1);

    // CSR: the key never leaves the "device"; only the certificate comes back.
    let (csr, key_pem) = csr_and_key();
    let ans = add_cert_device(&c, &admin, "gw-2", Some(&csr)).await;
    let cert = &ans["certificate"];
    assert!(cert.get("key_pem").is_none() && cert.get("p12_base64").is_none());
    std::fs::write(
        dir.path().join("gw-2.crt"),
        cert["cert_pem"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("gw-2.key"), key_pem).unwrap();
    let (ok, out) = curl(device_addr(&server), dir.path(), "gw-2", "from a CSR").await;
    assert!(ok, "curl failed: {out}");

    // The same certificate on the main port is not asked for: no identity there, so 401.
    let res = c.event("not-a-token", "x").await;
    assert_eq!(res.status, 401);
}

#[tokio::test]
async fn revocation_refuses_new_handshakes_closes_open_connections_and_is_not_resumed_around() {
    let server = TestServer::start().await;
    let (c, admin) = admin(&server).await;
    let ans = add_cert_device(&c, &admin, "gw-r", None).await;
    let cert = &ans["certificate"];
    let cfg = mtls_config(
        cert["ca_pem"].as_str().unwrap(),
        cert["cert_pem"].as_str().unwrap(),
        cert["key_pem"].as_str().unwrap(),
    );
    let addr = device_addr(&server);

    // One keep-alive connection, used once.
    let tls = connect(addr, &cfg).await.unwrap();
    assert_eq!(
        tls.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    let conn_task = tokio::spawn(conn);
    let res = sender
        .send_request(event_request(addr, "before"))
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.into_body().collect().await.unwrap();

    // The client keeps sessions, but the device listener gives it nothing to resume: a second
    // connection is a full handshake too, so a ticket can never skip the certificate check.
    let tls2 = connect(addr, &cfg).await.unwrap();
    assert_eq!(
        tls2.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Full),
        "the device listener must not resume sessions"
    );
    drop(tls2);

    revoke(&c, &admin, "gw-r").await;

    // The open connection is closed by the server (or, at the latest, refused on its request).
    match sender.send_request(event_request(addr, "after")).await {
        Err(_) => {}
        Ok(res) => assert_eq!(res.status(), 401, "a revoked device's request went through"),
    }
    tokio::time::timeout(Duration::from_secs(10), conn_task)
        .await
        .expect("the revoked device's connection stayed open")
        .unwrap()
        .ok();
    assert_eq!(server.state().device_gate().unwrap().live_connections(), 0);

    // A new handshake (with the same session store) is refused by the verifier itself: the
    // certificate is on the new CRL.
    assert_eq!(try_publish(addr, &cfg, "again").await, None);
    let err = match connect(addr, &cfg).await {
        Err(e) => e,
        Ok(mut tls) => {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = tls.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
            let mut buf = [0u8; 64];
            tls.read(&mut buf)
                .await
                .expect_err("the handshake was accepted")
        }
    };
    assert!(err.to_string().contains("CertificateRevoked"), "{err}");
}

#[tokio::test]
async fn the_crl_is_signed_by_the_ca_lists_revoked_serials_and_its_number_grows() {
    let server = TestServer::start().await;
    let (c, admin) = admin(&server).await;
    let a = add_cert_device(&c, &admin, "gw-a", None).await;
    let b = add_cert_device(&c, &admin, "gw-b", None).await;
    let ca_pem = a["certificate"]["ca_pem"].as_str().unwrap().to_string();
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap();
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    let ca_key = ca.public_key().subject_public_key.data.to_vec();

    let crl = |body: Bytes| {
        let (_, crl) = x509_parser::parse_x509_crl(&body).unwrap();
        let key = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
            ca_key.clone(),
        );
        key.verify(crl.tbs_cert_list.as_ref(), &crl.signature_value.data)
            .expect("the CRL is signed by the site CA");
        let number = crl.crl_number().map(|n| n.to_string()).unwrap_or_default();
        let serials: Vec<String> = crl
            .iter_revoked_certificates()
            .map(|r| hex::encode(r.raw_serial()))
            .collect();
        (number.parse::<u64>().unwrap(), serials)
    };
    let get = || async {
        let res = c.get("/ca.crl").await;
        assert_eq!(res.status, 200);
        assert_eq!(res.headers["content-type"], "application/pkix-crl");
        res.body
    };
    let (n0, serials) = crl(get().await);
    assert!(serials.is_empty());

    revoke(&c, &admin, "gw-a").await;
    let (n1, serials) = crl(get().await);
    assert!(n1 > n0, "{n1} > {n0}");
    assert_eq!(serials, vec![a["certificate"]["serial"].as_str().unwrap()]);

    revoke(&c, &admin, "gw-b").await;
    let (n2, serials) = crl(get().await);
    assert!(n2 > n1, "{n2} > {n1}");
    assert_eq!(serials.len(), 2);
    assert!(serials.contains(&b["certificate"]["serial"].as_str().unwrap().to_string()));

    // Every step is in the log, in the devices stream.
    let kinds: Vec<String> = {
        let log = server.state().log();
        let rtx = log.read().unwrap();
        let head = rtx.chain_head().unwrap().unwrap().seq;
        (1..=head)
            .filter_map(|seq| log.entry(&rtx, seq).unwrap())
            .map(|e| e.kind.clone())
            .filter(|k| k.starts_with("device."))
            .collect()
    };
    assert_eq!(
        kinds.iter().filter(|k| *k == "device.cert_issued").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "device.revoked").count(),
        2,
        "{kinds:?}"
    );
}

#[tokio::test]
async fn renewal_issues_a_new_certificate_and_the_old_one_stays_valid() {
    let server = TestServer::start().await;
    let (c, admin) = admin(&server).await;
    let first = add_cert_device(&c, &admin, "gw-n", None).await;
    let res = c
        .with_bearer(
            Method::POST,
            "/api/v1/admin/devices/gw-n/renew",
            &admin,
            Some(json!({})),
        )
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    let renewed = res.json();
    assert_ne!(
        renewed["certificate"]["serial"],
        first["certificate"]["serial"]
    );
    assert_eq!(
        renewed["device"]["certificates"].as_array().unwrap().len(),
        2
    );
    let addr = device_addr(&server);
    for cert in [&first["certificate"], &renewed["certificate"]] {
        let cfg = mtls_config(
            cert["ca_pem"].as_str().unwrap(),
            cert["cert_pem"].as_str().unwrap(),
            cert["key_pem"].as_str().unwrap(),
        );
        assert_eq!(try_publish(addr, &cfg, "renewed").await, Some(201));
    }
    // A token device can get a certificate the same way (then it has both).
    let res = c
        .with_bearer(
            Method::POST,
            "/api/v1/admin/devices",
            &admin,
            Some(json!({"name": "tok"})),
        )
        .await;
    assert_eq!(res.status, 201);
    let res = c
        .with_bearer(
            Method::POST,
            "/api/v1/admin/devices/tok/renew",
            &admin,
            Some(json!({})),
        )
        .await;
    assert_eq!(res.status, 201);
    assert_eq!(res.json()["device"]["has_token"], true);
    let res = c
        .with_bearer(
            Method::POST,
            "/api/v1/admin/devices/nobody/renew",
            &admin,
            Some(json!({})),
        )
        .await;
    assert_eq!(res.status, 404);
    assert_eq!(res.error_code(), "no_such_device");
}

/// Records whether the server asked for a client certificate.
#[derive(Debug, Default)]
struct AskRecorder {
    asked: AtomicBool,
}

impl rustls::client::ResolvesClientCert for AskRecorder {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.asked.store(true, Ordering::SeqCst);
        None
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn recording_config(ca_pem: &str) -> (Arc<rustls::ClientConfig>, Arc<AskRecorder>) {
    let rec = Arc::new(AskRecorder::default());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca_pem))
        .with_client_cert_resolver(rec.clone());
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    (Arc::new(cfg), rec)
}

#[tokio::test]
async fn a_browser_on_the_main_port_is_never_asked_for_a_certificate() {
    let server = TestServer::start().await;
    let ca = server.state().tls().ca_pem().unwrap().to_string();

    let (cfg, rec) = recording_config(&ca);
    let tls = connect(server.addr, &cfg).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let res = sender
        .send_request(
            Request::builder()
                .uri("/healthz")
                .header("host", "localhost")
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        !rec.asked.load(Ordering::SeqCst),
        "the main port sent a CertificateRequest"
    );

    // The device port does ask, and refuses a client that has none.
    let (cfg, rec) = recording_config(&ca);
    assert_eq!(try_publish(device_addr(&server), &cfg, "x").await, None);
    assert!(rec.asked.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_and_a_bad_csr_changes_nothing() {
    let server = TestServer::start().await;
    let (c, admin) = admin(&server).await;
    let ca = server.state().tls().ca_pem().unwrap().to_string();

    // Another CA, and a well-formed client certificate from it with the same name.
    let other_key = rcgen::KeyPair::generate().unwrap();
    let mut other = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    other.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    other.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let other_cert = other.self_signed(&other_key).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_der(other_cert.der(), &other_key).unwrap();
    let dev_key = rcgen::KeyPair::generate().unwrap();
    let mut dev = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    dev.distinguished_name
        .push(rcgen::DnType::CommonName, "gw-x");
    dev.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let dev_cert = dev.signed_by(&dev_key, &issuer).unwrap();
    let cfg = mtls_config(&ca, &dev_cert.pem(), &dev_key.serialize_pem());
    let before = server.head_seq();
    assert_eq!(
        try_publish(device_addr(&server), &cfg, "forged").await,
        None
    );

    let bad = "-----BEGIN CERTIFICATE REQUEST-----\nMIIBAAAA\n-----END CERTIFICATE REQUEST-----\n";
    let res = c
        .with_bearer(
            Method::POST,
            "/api/v1/admin/devices",
            &admin,
            Some(json!({"name": "gw-x", "credential": "certificate", "csr": bad})),
        )
        .await;
    assert_eq!(res.status, 400, "{:?}", res.body);
    assert_eq!(res.error_code(), "bad_csr");
    assert_eq!(server.head_seq(), before, "nothing was logged");
    assert!(
        server
            .state()
            .log()
            .read()
            .unwrap()
            .device("gw-x")
            .unwrap()
            .is_none()
    );
}

fn files(dir: &std::path::Path, name: &str) -> Vec<(String, u32)> {
    ["crt", "key", "p12"]
        .iter()
        .filter_map(|ext| {
            let p = dir.join(format!("{name}.{ext}"));
            let meta = std::fs::metadata(&p).ok()?;
            Some((ext.to_string(), meta.permissions().mode() & 0o777))
        })
        .collect()
}

#[test]
fn device_add_cert_writes_the_bundle_online_and_offline() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), default_server_section());
    let c = cfg.to_str().unwrap();
    let out_on = dir.path().join("on");
    let out_off = dir.path().join("off");
    std::fs::create_dir_all(&out_on).unwrap();
    std::fs::create_dir_all(&out_off).unwrap();

    let server = Running::start(&cfg);
    let o = command(&[
        "device",
        "add",
        "gw-on",
        "--cert",
        "--out",
        out_on.to_str().unwrap(),
        "--config",
        c,
    ])
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{o:?}");
    assert!(err.contains("through the running server"), "{err}");
    assert_eq!(
        files(&out_on, "gw-on"),
        vec![
            ("crt".to_string(), 0o644),
            ("key".to_string(), 0o600),
            ("p12".to_string(), 0o600)
        ]
    );
    // No key is left in the state directory.
    let leaked = std::process::Command::new("grep")
        .args(["-rl", "gw-on"])
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&leaked.stdout).contains(".key"),
        "{leaked:?}"
    );
    server.signal("-TERM");
    assert!(server.wait(Duration::from_secs(20)).success());

    // With a CSR, offline: only the certificate.
    let (csr, _key) = csr_and_key();
    let csr_path = dir.path().join("dev.csr");
    std::fs::write(&csr_path, csr).unwrap();
    let o = command(&[
        "device",
        "add",
        "gw-csr",
        "--cert",
        "--csr",
        csr_path.to_str().unwrap(),
        "--out",
        out_off.to_str().unwrap(),
        "--config",
        c,
    ])
    .output()
    .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(files(&out_off, "gw-csr"), vec![("crt".to_string(), 0o644)]);

    let o = command(&[
        "device",
        "add",
        "gw-off",
        "--cert",
        "--out",
        out_off.to_str().unwrap(),
        "--config",
        c,
    ])
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("the server is not running"),
        "{o:?}"
    );
    assert_eq!(files(&out_off, "gw-off").len(), 3);
    // The PKCS#12 opens with the password printed once (when openssl is there to check).
    let password = text
        .lines()
        .find_map(|l| l.strip_prefix("PKCS#12 password (shown only now): "))
        .unwrap()
        .to_string();
    if have("openssl") {
        let o = std::process::Command::new("openssl")
            .args(["pkcs12", "-noout", "-passin"])
            .arg(format!("pass:{password}"))
            .arg("-in")
            .arg(out_off.join("gw-off.p12"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
    }

    // Renewal and list offline.
    let o = command(&[
        "device",
        "renew",
        "gw-off",
        "--out",
        out_off.to_str().unwrap(),
        "--config",
        c,
    ])
    .output()
    .unwrap();
    assert!(o.status.success(), "{o:?}");
    let o = command(&["device", "list", "--config", c])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(list.contains("gw-off\tactive\tcertificates: 2"), "{list}");
}

#[tokio::test]
async fn with_configured_certificate_files_there_is_no_ca_key_and_a_clear_refusal() {
    let files = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let kp = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&kp, &issuer)
        .unwrap();
    let d = files.path();
    std::fs::write(d.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(d.join("server.crt"), leaf.pem()).unwrap();
    std::fs::write(d.join("server.key"), kp.serialize_pem()).unwrap();
    std::fs::set_permissions(d.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let server = TestServer::start_with(|c| {
        c.tls.cert_file = Some(d.join("server.crt"));
        c.tls.key_file = Some(d.join("server.key"));
        c.tls.ca_file = Some(d.join("ca.pem"));
    })
    .await;
    assert!(
        server.state().device_addrs().is_empty(),
        "no device listener"
    );
    let (c, admin) = admin(&server).await;
    let before = server.head_seq();
    let res = c
        .with_bearer(
            Method::POST,
            "/api/v1/admin/devices",
            &admin,
            Some(json!({"name": "gw-f", "credential": "certificate"})),
        )
        .await;
    assert_eq!(res.status, 409, "{:?}", res.body);
    assert_eq!(res.error_code(), "no_site_ca");
    assert_eq!(server.head_seq(), before);
    assert_eq!(c.get("/ca.crl").await.status, 404);
    // Tokens work as before.
    let res = c
        .with_bearer(
            Method::POST,
            "/api/v1/admin/devices",
            &admin,
            Some(json!({"name": "gw-t"})),
        )
        .await;
    assert_eq!(res.status, 201);
}
