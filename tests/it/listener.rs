//! The listener under held connections: per-address and global caps that give way to newcomers by
//! closing the idlest connection, and the first-request and idle deadlines after the handshake.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::support::{Client, TestServer, client_config, closed_within};

/// A connection with a request in flight that never ends: its body is promised and not sent.
/// Returns once the server is reading that body (it asked for it with `100 Continue`).
pub async fn busy(client: &Client) -> TlsStream<TcpStream> {
    let mut tls = client.tls().await;
    tls.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
          content-length: 100\r\nexpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = [0u8; 25];
    tls.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 100 Continue\r\n\r\n");
    tls.write_all(b"{").await.unwrap();
    tls
}

#[tokio::test]
async fn idle_connections_held_by_some_addresses_never_lock_out_another() {
    let server = TestServer::start_with(|c| {
        c.server.max_connections = 8;
        c.server.max_connections_per_address = 4;
        // Long enough that only the caps close anything here.
        c.server.first_request_timeout_secs = 60;
        c.server.idle_timeout_secs = 60;
    })
    .await;
    let client = server.client();
    // Two peers each open more connections than their share, finish the handshake and send
    // nothing: between them they fill every slot.
    let mut held = Vec::new();
    for ip in ["127.0.0.2", "127.0.0.3"] {
        let peer = client.with_source(ip);
        for _ in 0..6 {
            held.push(peer.tls().await);
        }
    }
    // Each address keeps its share: its own idlest connections made room for its newer ones.
    for i in [0, 1, 6, 7] {
        assert!(
            closed_within(&mut held[i], 10).await.is_some(),
            "connection {i} is over its address's share"
        );
    }
    // Every slot is taken, all idle: a third address is still answered, more than once.
    for _ in 0..3 {
        assert_eq!(client.get("/healthz").await.status, 200);
    }
    assert!(
        closed_within(&mut held[2], 10).await.is_some(),
        "the idlest connection made room"
    );
    assert_eq!(
        closed_within(&mut held[11], 1).await,
        None,
        "the newest held connection is left alone"
    );
    server.stop().await;
}

#[tokio::test]
async fn idle_connections_are_reclaimed_at_their_deadlines() {
    let server = TestServer::start_with(|c| {
        c.server.first_request_timeout_secs = 1;
        c.server.idle_timeout_secs = 1;
    })
    .await;
    let ca = server.state().tls().ca_pem().unwrap().to_string();
    let h2 = Arc::new(client_config(&ca, &[b"h2"]));
    let connect = || async {
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        TlsConnector::from(h2.clone())
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    };
    // Handshake done, then silence: closed at the first-request deadline.
    let mut silent = connect().await;
    assert!(
        closed_within(&mut silent, 10).await.is_some(),
        "a silent TLS connection is closed"
    );
    let mut silent_h1 = server.client().tls().await;
    assert!(closed_within(&mut silent_h1, 10).await.is_some());

    // HTTP/2 with no open stream after one request: closed (GOAWAY) at the idle deadline.
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(connect().await),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let res = send
        .send_request(
            hyper::Request::get(format!("https://localhost:{}/healthz", server.addr.port()))
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    drop(res);
    tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("an idle HTTP/2 connection is closed by the server")
        .unwrap()
        .ok();
    // A request in flight is not idle, however long it takes.
    let mut slow = busy(&server.client()).await;
    assert_eq!(closed_within(&mut slow, 4).await, None);
    server.stop().await;
}

#[tokio::test]
async fn an_open_websocket_is_busy_neither_reclaimed_nor_evicted() {
    let server = TestServer::start_with(|c| {
        c.server.max_connections = 2;
        // Newcomers here are closed by eviction only; a served connection idles out at once.
        c.server.first_request_timeout_secs = 30;
        c.server.idle_timeout_secs = 1;
    })
    .await;
    let alice = crate::chat_support::people(&server, &["alice"], &[])
        .await
        .remove(0);
    let mut ws = alice.ws().await;
    ws.subscribe(0).await;
    // Two idle newcomers: the second can only get in by closing the first, never the socket.
    let mut first = server.client().tls().await;
    let _second = server.client().tls().await;
    assert!(closed_within(&mut first, 10).await.is_some());
    // Well past both deadlines, the socket still answers.
    tokio::time::sleep(Duration::from_secs(3)).await;
    ws.send(serde_json::json!({"type": "subscribe", "since": 0}))
        .await;
    assert_eq!(ws.next_of("error").await["code"], "already_subscribed");
    server.stop().await;
}
