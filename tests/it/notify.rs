//! systemd's side of `Type=notify`, played by the test: the real binary gets a `NOTIFY_SOCKET`
//! (a path, or an abstract `@name`) and `WATCHDOG_USEC`; READY, WATCHDOG and STOPPING must arrive.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use crate::process::{Running, command, default_server_section, write_config};
use crate::support::Client;

/// Waits for the next datagram; `None` after `limit`.
fn next(sock: &UnixDatagram, limit: Duration) -> Option<String> {
    sock.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    match sock.recv(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(_) => None,
    }
}

async fn lifecycle(sock: UnixDatagram, notify_socket: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), default_server_section());
    let mut cmd = command(&["serve", "--config", cfg.to_str().unwrap()]);
    cmd.env("NOTIFY_SOCKET", notify_socket)
        .env("WATCHDOG_USEC", "400000");
    let server = Running::spawn(cmd);

    let ready = next(&sock, Duration::from_secs(30)).expect("no READY=1");
    assert!(
        ready.lines().any(|l| l == "READY=1"),
        "first message: {ready:?}"
    );
    assert!(ready.contains("STATUS=serving site bin-test"), "{ready:?}");
    // READY=1 means ready: listening, and /readyz agrees.
    let ca = std::fs::read_to_string(dir.path().join("state/tls/ca.crt")).unwrap();
    let client = Client::new(server.addr, &ca);
    assert_eq!(client.get("/readyz").await.status, 200);

    // The watchdog is fed (at half the interval) by a task that proves the server works.
    for _ in 0..3 {
        let msg = next(&sock, Duration::from_secs(30)).expect("no WATCHDOG=1");
        assert_eq!(msg, "WATCHDOG=1", "{}", server.log_text());
    }

    server.signal("-TERM");
    let mut stopping = false;
    while let Some(msg) = next(&sock, Duration::from_secs(15)) {
        if msg.lines().any(|l| l == "STOPPING=1") {
            stopping = true;
            break;
        }
        assert_eq!(msg, "WATCHDOG=1", "unexpected message {msg:?}");
    }
    assert!(stopping, "no STOPPING=1: {}", server.log_text());
    assert!(server.wait(Duration::from_secs(15)).success());
    // Nothing after STOPPING: the watchdog stopped with it.
    assert_eq!(next(&sock, Duration::from_millis(500)), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_on_a_socket_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    lifecycle(sock, path.to_str().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_on_an_abstract_socket() {
    let mut name = [0u8; 12];
    aws_lc_rs::rand::fill(&mut name).unwrap();
    let name = format!("plantwire-test-{}", hex::encode(name));
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    lifecycle(sock, &format!("@{name}")).await;
}
