//! Replication chaos, real processes: an edge and an HQ in two network namespaces joined by a
//! veth pair; devices publish 20,000 events and a user chats at the edge while the link is cut
//! and throttled 10 times and each side is SIGKILLed and restarted 3 times. At the end HQ's
//! replica verifies and ends at the edge's head hash: the same seqs and hashes, none lost, none
//! twice. (The kernel here has no `sch_netem`, so the degraded link is a `tbf` rate limit.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{Value, json};

use crate::chat_support::{Api, PW};
use crate::netns::{Namespaces, in_namespace, ip};
use crate::process::{BIN, Running, clean, command, init, skip};
use crate::support::Client;

const EVENTS: usize = 20_000;
const PUBLISHERS: usize = 6;

/// The binary under test with `args`, run inside namespace `ns`.
fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, BIN]).args(args);
    clean(&mut c);
    c
}

fn config(dir: &Path, site: &str, replication: &str) -> PathBuf {
    let path = dir.join("plantwire.toml");
    let text = format!(
        "version = 1\nsite = \"{site}\"\nstate_dir = \"{}\"\n\
         [devices]\nlisten = []\n\
         [server]\nlisten = [\"127.0.0.1:8443\"]\ndrain_timeout_secs = 3\n\
         [auth]\nargon2_memory_kib = 64\nargon2_iterations = 1\n\
         [events]\nrate_per_sec = 1000000.0\nburst = 1000000\n\
         [storage]\ncheckpoint_every = 500\n\
         [replication]\n{replication}\n",
        dir.join("state").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs an admin command (through the control socket when the server runs) and returns stdout.
fn admin(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json_of(cmd: &mut Command) -> Value {
    serde_json::from_str(&admin(cmd)).unwrap()
}

/// A server in a namespace that the test kills and restarts.
struct Side {
    ns: String,
    config: PathBuf,
    running: Option<Running>,
}

impl Side {
    fn start(ns: &str, config: &Path) -> Self {
        let mut s = Self {
            ns: ns.to_string(),
            config: config.to_path_buf(),
            running: None,
        };
        s.restart();
        s
    }

    fn restart(&mut self) {
        let cfg = self.config.to_str().unwrap();
        self.running = Some(Running::spawn(in_ns(&self.ns, &["serve", "--config", cfg])));
    }

    fn kill(&mut self) {
        let mut r = self.running.take().unwrap();
        // `ip netns exec` execs the server, so the child is the server itself.
        r.child.kill().unwrap();
        r.child.wait().unwrap();
    }
}

/// What the load inside the edge's namespace did.
#[derive(Default)]
struct Load {
    acked_events: AtomicUsize,
    said: AtomicUsize,
    stop: AtomicBool,
}

/// Devices publish until `EVENTS` are acknowledged and a user chats until told to stop, both
/// retrying across the edge's restarts. Returns every acknowledged seq.
async fn load(ca: String, token: String, otp: String, l: Arc<Load>) -> Vec<u64> {
    let client = Client::new("127.0.0.1:8443".parse().unwrap(), &ca);
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let (client, token, l) = (client.clone(), token.clone(), l.clone());
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0.. {
                if l.acked_events.load(Ordering::Relaxed) >= EVENTS {
                    break;
                }
                let msg = format!("publisher {p} event {i}");
                match client.try_event(&token, &msg).await {
                    Some(r) if r.status == 201 => {
                        seqs.push(r.json()["seq"].as_u64().unwrap());
                        l.acked_events.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
            seqs
        }));
    }
    let chat = {
        let (client, l) = (client.clone(), l.clone());
        tokio::spawn(async move {
            // The first sign-in changes the one-time password.
            let first = Api::login(&client, "olga", &otp).await;
            let res = first
                .post(
                    "/api/v1/auth/password",
                    json!({"current_password": otp, "new_password": PW}),
                )
                .await;
            assert_eq!(res.status, 200, "{:?}", res.body);
            let olga = Api::login(&client, "olga", PW).await;
            let res = olga
                .post(
                    "/api/v1/conversations",
                    json!({"kind": "channel", "name": "control-room"}),
                )
                .await;
            assert_eq!(res.status, 201, "{:?}", res.body);
            let conv = res.json()["id"].as_str().unwrap().to_string();
            let path = format!("/api/v1/conversations/{conv}/messages");
            let mut seqs = Vec::new();
            for i in 0.. {
                if l.stop.load(Ordering::Relaxed) {
                    break;
                }
                let body = json!({"key": format!("m{i}"), "text": format!("shift note {i}")});
                let req = olga
                    .client
                    .request(Method::POST, &path)
                    .header("authorization", format!("Bearer {}", olga.token))
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::from(
                        serde_json::to_vec(&body).unwrap(),
                    ))
                    .unwrap();
                match olga.client.try_send(req).await {
                    Some(r) if r.status.is_success() => {
                        seqs.push(r.json()["seq"].as_u64().unwrap());
                        l.said.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
            seqs
        })
    };
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.extend(chat.await.unwrap());
    all
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[cfg_attr(
    not(pw_has_netns),
    ignore = "needs root, ip and network namespaces (CI runs it)"
)]
fn an_edge_and_hq_in_two_namespaces_replicate_exactly_once_through_cuts_and_kills() {
    if Command::new("tc").arg("-V").output().is_err() && skip("tc (iproute2) missing") {
        return;
    }
    let ns = Namespaces::create();
    let (edge_ns, hq_ns) = (ns.a.clone(), ns.b.clone());
    let hq_addr = format!("{}:8445", ns.addr_a(2));
    let hq_dir = tempfile::tempdir().unwrap();
    let edge_dir = tempfile::tempdir().unwrap();
    let hq_cfg = config(
        hq_dir.path(),
        "hq",
        &format!("role = \"hq\"\nlisten = [\"{hq_addr}\"]\nadvertise = \"{hq_addr}\""),
    );
    let edge_cfg = config(
        edge_dir.path(),
        "north",
        "role = \"edge\"\nbatch_entries = 256",
    );
    let (hq_c, edge_c) = (hq_cfg.to_str().unwrap(), edge_cfg.to_str().unwrap());
    init(&hq_cfg);
    init(&edge_cfg);

    let mut hq = Side::start(&hq_ns, &hq_cfg);
    let added = admin(&mut command(&["site", "add", "north", "--config", hq_c]));
    let code = added.lines().last().unwrap().trim().to_string();
    admin(&mut in_ns(
        &edge_ns,
        &["replication", "enroll", &code, "--config", edge_c],
    ));
    let otp = admin(&mut command(&["user", "add", "olga", "--config", edge_c]));
    let otp = otp.lines().last().unwrap().trim().to_string();
    let token = admin(&mut command(&[
        "device", "add", "plc-1", "--config", edge_c,
    ]));
    let token = token.lines().last().unwrap().trim().to_string();
    let mut edge = Side::start(&edge_ns, &edge_cfg);
    let ca = std::fs::read_to_string(edge_dir.path().join("state/tls/ca.crt")).unwrap();

    let l = Arc::new(Load::default());
    let driver = {
        let l = l.clone();
        in_namespace(&edge_ns, move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(load(ca, token, otp, l))
        })
    };

    // Ten link disruptions (cut, or throttled to 256 kbit/s), with the edge killed after the
    // 1st, 4th and 7th and HQ after the 2nd, 5th and 8th; the load runs throughout.
    let pace = Duration::from_millis(1500);
    for round in 0..10 {
        std::thread::sleep(pace);
        if round % 2 == 0 {
            ip(&["-n", &edge_ns, "link", "set", &ns.a_if, "down"]);
            std::thread::sleep(pace);
            ip(&["-n", &edge_ns, "link", "set", &ns.a_if, "up"]);
        } else {
            let tc = |args: &[&str]| {
                let out = Command::new("tc").args(args).output().unwrap();
                assert!(out.status.success(), "tc {args:?}: {out:?}");
            };
            tc(&[
                "-n", &edge_ns, "qdisc", "add", "dev", &ns.a_if, "root", "tbf", "rate", "256kbit",
                "burst", "16kbit", "latency", "200ms",
            ]);
            std::thread::sleep(pace);
            tc(&["-n", &edge_ns, "qdisc", "del", "dev", &ns.a_if, "root"]);
        }
        if [1, 4, 7].contains(&round) {
            edge.kill();
            std::thread::sleep(Duration::from_millis(300));
            edge.restart();
        }
        if [2, 5, 8].contains(&round) {
            hq.kill();
            std::thread::sleep(Duration::from_millis(300));
            hq.restart();
        }
    }
    wait_until(
        "20,000 acknowledged events",
        Duration::from_secs(600),
        || l.acked_events.load(Ordering::Relaxed) >= EVENTS,
    );
    l.stop.store(true, Ordering::Relaxed);
    let acked = driver.join().unwrap();
    let said = l.said.load(Ordering::Relaxed);
    assert!(said > 0, "the user chatted");
    let mut unique = acked.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), acked.len(), "every ack names its own seq");

    // HQ catches up: the edge's cursor (acknowledged by HQ) reaches its head.
    let mut status = Value::Null;
    wait_until(
        "the edge to be fully replicated",
        Duration::from_secs(300),
        || {
            status = json_of(&mut command(&[
                "replication",
                "status",
                "--json",
                "--config",
                edge_c,
            ]));
            status["lag_entries"] == 0 && status["cursor"] == status["head"]
        },
    );
    let edge_report = json_of(&mut command(&[
        "audit", "verify", "--json", "--config", edge_c,
    ]));
    let hq_report = json_of(&mut command(&[
        "audit", "verify", "--json", "--site", "north", "--config", hq_c,
    ]));
    assert_eq!(edge_report["problem"], Value::Null, "{edge_report}");
    assert_eq!(hq_report["problem"], Value::Null, "{hq_report}");
    // Both chains verify link by link from seq 1, so one head hash at one seq means the same
    // seqs and hashes all the way: nothing lost, nothing twice, nothing reordered.
    assert_eq!(hq_report["first_seq"], 1, "{hq_report}");
    assert_eq!(hq_report["last_seq"], edge_report["last_seq"]);
    assert_eq!(hq_report["entries"], edge_report["entries"]);
    assert_eq!(hq_report["head"], edge_report["head"]);
    assert_eq!(edge_report["last_seq"], status["head"]);
    let head = edge_report["last_seq"].as_u64().unwrap();
    assert!(
        acked.iter().all(|&s| s <= head),
        "every acknowledged entry is in the replicated chain"
    );
    assert!(
        hq_report["checkpoints"].as_u64().unwrap() > 0,
        "signed checkpoints travelled: {hq_report}"
    );
    let sites = json_of(&mut command(&["site", "list", "--json", "--config", hq_c]));
    assert_eq!(sites[0]["seq"], head, "{sites}");
    assert_eq!(sites[0]["history_rewritten"], false, "{sites}");
    eprintln!(
        "chaos: {} events and {said} messages acknowledged, head {head}, {} checkpoints",
        l.acked_events.load(Ordering::Relaxed),
        hq_report["checkpoints"]
    );
    drop((edge, hq));
}
