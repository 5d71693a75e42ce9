//! TLS-only listener: pinned-CA handshakes, ALPN, plaintext refusal, certificate persistence.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::support::{TestServer, client_config, closed_within, provider, roots};

#[tokio::test]
async fn tls13_handshake_with_pinned_site_ca_and_alpn() {
    let server = TestServer::start().await;
    let ca = server.state().tls().ca_pem().unwrap().to_string();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots(&ca))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let tls = TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS 1.3 handshake against the pinned site CA");
    let (_, conn) = tls.get_ref();
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
    // The served leaf is the one the server reports.
    let leaf = &conn.peer_certificates().unwrap()[0];
    assert_eq!(
        plantwire::tls::fingerprint(leaf),
        server.state().tls().served_fingerprint()
    );

    // HTTP/2 over that connection answers.
    let (mut send, h2conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(h2conn);
    let res = send
        .send_request(
            hyper::Request::get(format!("https://localhost:{}/healthz", server.addr.port()))
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), hyper::Version::HTTP_2);

    // TLS 1.2 with an AEAD suite also works; the IP address SAN covers 127.0.0.1.
    let cfg12 = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots(&ca))
        .with_no_client_auth();
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let tls = TlsConnector::from(Arc::new(cfg12))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .expect("TLS 1.2 handshake");
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_trusts_another_ca_is_refused() {
    let server = TestServer::start().await;
    let other = TestServer::start().await;
    let foreign_ca = other.state().tls().ca_pem().unwrap().to_string();
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let result = TlsConnector::from(Arc::new(client_config(&foreign_ca, &[])))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await;
    assert!(
        result.is_err(),
        "a certificate from another site CA must not verify"
    );
    server.stop().await;
    other.stop().await;
}

async fn raw_exchange(addr: std::net::SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(payload).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(15),
        tcp.read_to_end(&mut out),
    )
    .await
    .expect("the server closes a plaintext connection")
    .ok();
    out
}

#[tokio::test]
async fn plaintext_http_gets_no_data() {
    let server = TestServer::start().await;
    let res = raw_exchange(
        server.addr,
        b"GET /healthz HTTP/1.1\r\nHost: gateway.local:8443\r\n\r\n",
    )
    .await;
    let text = String::from_utf8(res).unwrap();
    assert!(text.starts_with("HTTP/1.1 301 "), "{text}");
    assert!(
        text.contains("Location: https://gateway.local:8443/\r\n"),
        "{text}"
    );
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(body.is_empty(), "a redirect carries no body: {body:?}");
    assert!(!text.contains("ok"), "no data from the app: {text}");

    // No usable Host: the connection is just closed.
    let res = raw_exchange(server.addr, b"GET / HTTP/1.1\r\nHost: <evil>\r\n\r\n").await;
    assert!(res.is_empty(), "{:?}", String::from_utf8_lossy(&res));
    let res = raw_exchange(server.addr, b"\x00\x01garbage\r\n\r\n").await;
    assert!(res.is_empty());

    // With redirects off, plaintext is simply closed.
    let quiet = TestServer::start_with(|c| c.server.redirect_plaintext = false).await;
    let res = raw_exchange(quiet.addr, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(res.is_empty());
    server.stop().await;
    quiet.stop().await;
}

#[tokio::test]
async fn generated_certificate_survives_a_restart_and_ca_is_downloadable() {
    let server = TestServer::start().await;
    let fp = server.state().tls().served_fingerprint();
    let ca = server.state().tls().ca_pem().unwrap().to_string();
    let res = server.client().get("/ca.crt").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.headers["content-type"], "application/x-pem-file");
    assert_eq!(res.body, ca.as_bytes());
    let tls_dir = server.path().join("tls");
    for f in ["ca.crt", "ca.key", "server.crt", "server.key"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(tls_dir.join(f)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let dir = server.stop().await;
    let again = TestServer::start_in(dir, |_| {}).await;
    assert_eq!(again.state().tls().served_fingerprint(), fp);
    assert_eq!(again.state().tls().ca_pem().unwrap(), ca);
    assert_eq!(again.client().get("/healthz").await.status, 200);
    again.stop().await;
}

#[tokio::test]
async fn the_connection_cap_refuses_extra_connections_when_none_is_idle() {
    let server = TestServer::start_with(|c| {
        c.server.max_connections = 2;
    })
    .await;
    // Two connections with a request in flight (a body that never ends) hold both slots; an
    // idle one would have been closed to make room (see `listener`).
    let mut held_a = crate::listener::busy(&server.client()).await;
    let _held_b = crate::listener::busy(&server.client()).await;
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third.write_all(b"\x16\x03\x01").await.ok();
    assert_eq!(
        closed_within(&mut third, 10).await,
        Some(0),
        "over the cap: closed unanswered"
    );
    assert_eq!(
        closed_within(&mut held_a, 1).await,
        None,
        "the held slots stay open"
    );
    server.stop().await;
}

#[tokio::test]
async fn silent_and_idle_connections_are_dropped() {
    let server = TestServer::start_with(|c| {
        c.server.handshake_timeout_secs = 1;
        c.server.header_read_timeout_secs = 1;
    })
    .await;
    // A TCP peer that never starts TLS is closed at the handshake deadline.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(
        closed_within(&mut silent, 10).await,
        Some(0),
        "handshake deadline"
    );

    // An idle keep-alive HTTP/1.1 connection is closed after the header-read deadline.
    let mut tls = server.client().tls().await;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tls.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(
        closed_within(&mut tls, 10).await.is_some(),
        "idle connection closed"
    );
    server.stop().await;
}

/// notAfter - notBefore of the first certificate in a PEM chain, and its notAfter.
fn leaf_lifetime(pem: &str) -> (time::Duration, time::OffsetDateTime) {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let v = cert.validity();
    (
        time::Duration::seconds(v.not_after.timestamp() - v.not_before.timestamp()),
        time::OffsetDateTime::from_unix_timestamp(v.not_after.timestamp()).unwrap(),
    )
}

#[tokio::test]
async fn the_generated_server_certificate_lives_at_most_397_days() {
    let server = TestServer::start().await;
    let chain = std::fs::read_to_string(server.path().join("tls/server.crt")).unwrap();
    let (lifetime, _) = leaf_lifetime(&chain);
    // Apple refuses more than 825 days; public CAs stop at 398.
    assert!(
        lifetime <= time::Duration::days(397),
        "server certificate valid for {} days",
        lifetime.whole_days()
    );
    server.stop().await;
}

/// Writes a server certificate for this host's names, signed by the site CA in `tls`, that ends
/// `days_left` days from now.
fn write_server_cert(tls: &std::path::Path, days_left: i64) {
    use rcgen::{CertificateParams, Issuer, KeyPair, SanType};
    use rustls::pki_types::pem::PemObject;
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(tls.join("ca.key")).unwrap()).unwrap();
    let ca_pem = std::fs::read_to_string(tls.join("ca.crt")).unwrap();
    let ca_der = rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap();
    let issuer = Issuer::from_ca_cert_der(&ca_der, &ca_key).unwrap();
    let names = plantwire::tls::ca::Names::of_this_host();
    let mut params = CertificateParams::default();
    for dns in &names.dns {
        params
            .subject_alt_names
            .push(SanType::DnsName(dns.clone().try_into().unwrap()));
    }
    for ip in &names.ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(300);
    params.not_after = now + time::Duration::days(days_left);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(tls.join("server.crt"), format!("{}{ca_pem}", cert.pem())).unwrap();
    std::fs::write(tls.join("server.key"), key.serialize_pem()).unwrap();
}

#[tokio::test]
async fn a_generated_certificate_is_renewed_while_serving_without_dropping_connections() {
    let first = TestServer::start().await;
    let dir = first.stop().await;
    // A certificate with 40 days left is still good at start (renewal starts at 30)...
    write_server_cert(&dir.path().join("tls"), 40);
    let server = TestServer::start_in(dir, |_| {}).await;
    let old = server.state().tls().served_fingerprint();
    let served = std::fs::read_to_string(server.path().join("tls/server.crt")).unwrap();
    assert_eq!(
        leaf_lifetime(&served).0,
        time::Duration::days(340),
        "kept at start"
    );
    let mut open = server.client().tls().await;
    open.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    open.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");

    // ...and today the periodic check leaves it alone,
    let now = time::OffsetDateTime::now_utc();
    assert!(!server.state().tls().renew(now).unwrap());
    // while 15 days later it is within 30 days of its end: reissued and swapped in.
    assert!(
        server
            .state()
            .tls()
            .renew(now + time::Duration::days(15))
            .unwrap()
    );
    let new = server.state().tls().served_fingerprint();
    assert_ne!(new, old);
    let reissued = std::fs::read_to_string(server.path().join("tls/server.crt")).unwrap();
    let (lifetime, not_after) = leaf_lifetime(&reissued);
    assert!(lifetime <= time::Duration::days(397));
    assert!(not_after > now + time::Duration::days(390));

    // New handshakes get the new certificate; the open connection carries on with the old one.
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let ca = server.state().tls().ca_pem().unwrap().to_string();
    let tls = TlsConnector::from(Arc::new(client_config(&ca, &[b"http/1.1"])))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let leaf = &tls.get_ref().1.peer_certificates().unwrap()[0];
    assert_eq!(plantwire::tls::fingerprint(leaf), new);
    let mut rest = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        // The first response's body ("ok"-ish) and a second request on the same connection.
        open.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        open.read_to_end(&mut rest).await.ok();
    })
    .await
    .unwrap();
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("HTTP/1.1 200"), "{rest}");
    server.stop().await;
}
