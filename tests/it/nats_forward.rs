//! HQ's forwarding to NATS JetStream against Debian's real `nats-server -js` on a free loopback
//! port: every replicated seq exactly once, through a NATS outage and an HQ restart.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use plantwire::config::{Config, ReplicationRole};
use plantwire::log::{Author, NewEntry};
use plantwire::replication::nats::{cursor, message};
use plantwire::retention::Class;

use crate::replication::enrolled;
use crate::support::TestServer;

const STREAM: &str = "PLANTWIRE";

/// A `nats-server -js` child, killed on drop.
struct NatsServer {
    child: Child,
}

impl NatsServer {
    /// Starts on `port` with its JetStream store in `dir`, and waits until it accepts.
    async fn start(port: u16, dir: &Path) -> Self {
        Self::start_with(port, dir, &[]).await
    }

    /// [`NatsServer::start`] with more arguments (`--user`/`--pass`, `--auth TOKEN`).
    async fn start_with(port: u16, dir: &Path, extra: &[&str]) -> Self {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server runs (apt-get install nats-server)");
        let server = Self { child };
        tokio::time::timeout(Duration::from_secs(30), async {
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("nats-server accepts within 30 s");
        server
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn hq_config(c: &mut Config, url: &str) {
    c.site = Some("hq".into());
    c.replication.role = ReplicationRole::Hq;
    c.replication.listen = vec!["127.0.0.1:0".parse().unwrap()];
    let n = &mut c.replication.nats;
    n.url = Some(url.to_string());
    n.stream = STREAM.into();
    n.max_in_flight = 8;
    n.persist_every = 4;
    // Only the batches wake the forwarder in this test: no sweep after the start.
    n.sweep_secs = 3600;
    n.ack_timeout_secs = 2;
}

/// Entries on a few streams of different classes.
async fn publish(edge: &TestServer, n: u64) {
    for i in 0..n {
        let stream = ["events/pumps", "alarms/boiler", "chat/ops"][(i % 3) as usize];
        let e = NewEntry::json(
            "test.note",
            stream,
            &Author::System,
            &serde_json::json!({ "n": i }),
        )
        .unwrap();
        edge.state()
            .log()
            .submit(move |tx| tx.append(e.clone()))
            .await
            .unwrap();
    }
}

/// Waits until the edge's whole log is at HQ; its head.
async fn shipped(edge: &TestServer) -> u64 {
    let head = edge.head_seq();
    let rt = edge.state().replication().unwrap().clone();
    let mut acked = rt.edge().unwrap().acked.subscribe();
    tokio::time::timeout(Duration::from_secs(60), acked.wait_for(|&a| a >= head))
        .await
        .expect("the edge ships to HQ")
        .unwrap();
    head
}

fn site_dir(hq: &TestServer) -> std::path::PathBuf {
    hq.state().state_dir().join("sites").join("north")
}

/// Waits until the forward cursor of `north` reaches `head`.
async fn forwarded(hq: &TestServer, head: u64) {
    forwarded_to(hq, STREAM, head).await;
}

/// Waits until `north`'s forward cursor for `stream` reaches `head`.
async fn forwarded_to(hq: &TestServer, stream: &str, head: u64) {
    let dir = site_dir(hq);
    tokio::time::timeout(Duration::from_secs(60), async {
        while cursor::load(&dir, stream).unwrap() < head {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the cursor reaches {head}"));
}

fn lag(hq: &TestServer) -> Option<u64> {
    let text = hq.state().metrics().render(0, 0).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("plantwire_nats_forward_lag_entries{site=\"north\"} "))
        .map(|v| v.trim().parse().unwrap())
}

/// The stream holds exactly seqs 1..=head of `north`, in order, once each: stream seq i is the
/// site's seq i, with its class's subject, its `Nats-Msg-Id` and its hash.
async fn assert_exactly_once(url: &str, hq: &TestServer, head: u64) {
    let client = async_nats::connect(url).await.unwrap();
    assert_stream_once(client, hq, head).await;
}

/// [`assert_exactly_once`] through a connected (and authenticated) client.
async fn assert_stream_once(client: async_nats::Client, hq: &TestServer, head: u64) {
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream(STREAM).await.unwrap();
    let info = stream.get_info().await.unwrap();
    assert_eq!(
        (
            info.state.messages,
            info.state.first_sequence,
            info.state.last_sequence
        ),
        (head, 1, head),
        "every seq once, nothing else"
    );
    let replica = hq.replica("north").await;
    let rtx = replica.read().unwrap();
    for seq in 1..=head {
        let m = stream.get_raw_message(seq).await.unwrap();
        let entry = replica.entry(&rtx, seq).unwrap().unwrap();
        let subject = format!("plantwire.north.{}", Class::of(&entry.stream).name());
        assert_eq!(m.subject.as_str(), subject, "seq {seq}");
        let id = m
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map(|v| v.as_str().to_string());
        assert_eq!(id.as_deref(), Some(format!("north:{seq}").as_str()));
        let state = m
            .headers
            .get("Plantwire-State")
            .map(|v| v.as_str().to_string());
        assert_eq!(state.as_deref(), Some("entry"));
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(v["seq"], seq);
        assert_eq!(v["site"], "north");
        assert_eq!(v["hash"], hex::encode(entry.hash));
        assert_eq!(v["digest"], hex::encode(entry.content_digest()));
        assert_eq!(v["stream"], entry.stream.as_str());
    }
}

/// Ships from an edge to an HQ forwarding to NATS, then: NATS killed (the cursor stays, the lag
/// shows) and restarted on its store (the rest arrives once); HQ stopped, its cursor wound back
/// to 3 and started again (the republished entries are duplicates JetStream drops).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(pw_has_nats), ignore = "needs nats-server (CI installs it)")]
async fn hq_forwards_every_entry_to_jetstream_once_through_an_outage_and_a_restart() {
    assert_eq!(message::msg_id("north", 7), "north:7");
    let nats_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let nats = NatsServer::start(port, nats_dir.path()).await;
    let url = format!("nats://127.0.0.1:{port}");

    let hq = TestServer::start_with(|c| hq_config(c, &url)).await;
    let edge_dir = enrolled(&hq, "north").await;
    let edge = TestServer::start_in(edge_dir, |c| {
        c.site = Some("north".into());
        c.replication.role = ReplicationRole::Edge;
    })
    .await;

    publish(&edge, 30).await;
    let head = shipped(&edge).await;
    forwarded(&hq, head).await;
    assert_exactly_once(&url, &hq, head).await;
    assert_eq!(lag(&hq), Some(0));

    // NATS down: HQ keeps receiving, the cursor stays and the lag grows.
    nats.kill();
    publish(&edge, 20).await;
    let head2 = shipped(&edge).await;
    assert!(head2 >= head + 20);
    tokio::time::timeout(Duration::from_secs(60), async {
        while lag(&hq).unwrap_or(0) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the lag shows while NATS is down");
    assert_eq!(cursor::load(&site_dir(&hq), STREAM).unwrap(), head);
    let nats = NatsServer::start(port, nats_dir.path()).await;
    forwarded(&hq, head2).await;
    assert_exactly_once(&url, &hq, head2).await;

    // HQ restarted with its cursor wound back: the republished tail is dropped as duplicates.
    let _edge_dir = edge.stop().await;
    let dir = hq.stop().await;
    let site = dir.path().join("sites").join("north");
    cursor::store(&site, STREAM, 3).await.unwrap();
    assert_eq!(cursor::load(&site, STREAM).unwrap(), 3);
    let hq = TestServer::start_in(dir, |c| hq_config(c, &url)).await;
    forwarded(&hq, head2).await;
    assert_exactly_once(&url, &hq, head2).await;
    assert_eq!(lag(&hq), Some(0));
    drop(nats);
}

/// `plantwire_nats_forward_failures_total{reason}` at `hq`.
fn failures(hq: &TestServer, reason: &str) -> u64 {
    let text = hq.state().metrics().render(0, 0).unwrap();
    let prefix = format!("plantwire_nats_forward_failures_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn secret_file(dir: &Path, name: &str, contents: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A nats-server that requires a user and password: HQ with the wrong password is refused (a
/// clear error naming the way, never the secret; the failures metric counts `auth`; the cursor
/// stays at 0); restarted with the right one, every entry arrives once. Then a nats-server that
/// requires a token, on a fresh store: HQ with `token_file` forwards everything again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(pw_has_nats), ignore = "needs nats-server (CI installs it)")]
async fn hq_authenticates_to_nats_and_waits_while_its_credentials_are_refused() {
    use plantwire::replication::nats::auth::NatsAuth;
    use plantwire::replication::nats::{ForwardError, Forwarder};

    let secrets = tempfile::tempdir().unwrap();
    let pw_file = secret_file(secrets.path(), "nats.pw", "wrong-pw-7f3a\n");
    let nats_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let nats = NatsServer::start_with(
        port,
        nats_dir.path(),
        &["--user", "hq", "--pass", "right-pw-91c2"],
    )
    .await;
    let url = format!("nats://127.0.0.1:{port}");
    let with_password = |c: &mut Config, file: &Path| {
        hq_config(c, &url);
        c.replication.nats.user = Some("hq".into());
        c.replication.nats.password_file = Some(file.to_path_buf());
    };

    let hq = TestServer::start_with(|c| with_password(c, &pw_file)).await;
    let edge_dir = enrolled(&hq, "north").await;
    let edge = TestServer::start_in(edge_dir, |c| {
        c.site = Some("north".into());
        c.replication.role = ReplicationRole::Edge;
    })
    .await;
    publish(&edge, 12).await;
    let head = shipped(&edge).await;
    tokio::time::timeout(Duration::from_secs(60), async {
        while failures(&hq, "auth") == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the refused credentials are counted");
    assert_eq!(cursor::load(&site_dir(&hq), STREAM).unwrap(), 0);

    // The error the forwarder logs: the way and the server's answer, not the password.
    let mut cfg = hq.state().config().replication.nats.clone();
    cfg.password_file = Some(pw_file.clone());
    let replicas = hq.replicas();
    let forwarder = Forwarder::new(cfg.clone(), replicas, hq.state().metrics().clone())
        .with_auth(NatsAuth::load(&cfg).unwrap());
    let Err(err) = forwarder.connect().await else {
        panic!("the wrong password is refused");
    };
    assert!(
        matches!(err, ForwardError::Auth { way: "user", .. }),
        "{err}"
    );
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("refused the credentials"), "{shown}");
    assert!(!shown.contains("wrong-pw"), "{shown}");
    // It holds HQ's replicas, and through them HQ's own log: gone before HQ stops.
    drop(forwarder);

    // The right password: everything arrives once.
    let dir = hq.stop().await;
    let pw_file = secret_file(secrets.path(), "nats.pw2", "right-pw-91c2\n");
    let hq = TestServer::start_in(dir, |c| with_password(c, &pw_file)).await;
    forwarded(&hq, head).await;
    let client =
        async_nats::ConnectOptions::with_user_and_password("hq".into(), "right-pw-91c2".into())
            .connect(&url)
            .await
            .unwrap();
    assert_stream_once(client, &hq, head).await;
    assert_eq!(lag(&hq), Some(0));

    // A token on a fresh NATS store: forwarded from seq 1 again.
    let _edge_dir = edge.stop().await;
    let dir = hq.stop().await;
    nats.kill();
    let nats_dir2 = tempfile::tempdir().unwrap();
    let _nats = NatsServer::start_with(port, nats_dir2.path(), &["--auth", "tok-55e1"]).await;
    cursor::store(&dir.path().join("sites").join("north"), STREAM, 0)
        .await
        .unwrap();
    let token_file = secret_file(secrets.path(), "nats.token", "tok-55e1\n");
    let hq = TestServer::start_in(dir, |c| {
        hq_config(c, &url);
        c.replication.nats.token_file = Some(token_file.clone());
    })
    .await;
    forwarded(&hq, head).await;
    let client = async_nats::ConnectOptions::with_token("tok-55e1".into())
        .connect(&url)
        .await
        .unwrap();
    assert_stream_once(client, &hq, head).await;
}
