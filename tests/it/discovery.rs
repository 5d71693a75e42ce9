//! mDNS between two network namespaces joined by a veth pair (made here, as root): the real
//! binary announces in one; python-zeroconf (a peer we did not write) and `plantwire discover`
//! resolve it from the other; the fingerprint matches the served certificate; every announced
//! address answers `/healthz` (and an IPv4-only server announces no IPv6); goodbye on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::netns::{Namespaces, ip};
use crate::process::{BIN, Running, clean, skip, write_config};
use crate::support::TestServer;

const WATCHER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/zeroconf_watch.py");

/// The zeroconf watcher in namespace B; killed on drop.
struct Watcher {
    child: Child,
    lines: Receiver<Value>,
}

impl Watcher {
    fn start(ns: &Namespaces) -> Self {
        let mut child = ns
            .exec(&ns.b, "python3")
            .args([WATCHER, "120"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let w = Self { child, lines };
        let first = w.next_matching(Duration::from_secs(30), |v| v["event"] == "browsing");
        assert!(first.is_some(), "the zeroconf watcher did not start");
        w
    }

    /// The next event for which `pred` holds, within `limit`.
    fn next_matching(&self, limit: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if pred(&v) => return Some(v),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prerequisites_missing() -> Option<String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root {
        return Some("network namespaces need root".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("`ip` (iproute2) is not installed".into());
    }
    if Command::new("curl").arg("--version").output().is_err() {
        return Some("`curl` is not installed".into());
    }
    // `output()`, not `status()`: a missing module's traceback must not reach the terminal.
    let zeroconf = Command::new("python3")
        .args(["-c", "import zeroconf"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !zeroconf {
        return Some("python3 with zeroconf (pip install zeroconf) is not installed".into());
    }
    None
}

/// `GET /healthz` from namespace `from` to an announced address answers 200. A link-local
/// address is reached through `from`'s end of the veth (named like the namespace).
fn answers_healthz(ns: &Namespaces, from: &str, addr: &str, port: u64) -> bool {
    let addr = if addr.starts_with("fe80:") && !addr.contains('%') {
        format!("{addr}%{from}")
    } else {
        addr.to_string()
    };
    let host = if addr.contains(':') {
        format!("[{}]", addr.replace('%', "%25"))
    } else {
        addr
    };
    let out = ns
        .exec(from, "curl")
        .args(["--globoff", "-sk", "--max-time", "5", "-o", "/dev/null"])
        .args(["-w", "%{http_code}"])
        .arg(format!("https://{host}:{port}/healthz"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout) == "200"
}

/// The addresses of an announcement seen by the watcher.
fn announced(v: &Value) -> Vec<String> {
    v["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

fn ca_fingerprint(pem: &str) -> String {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let ca = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    plantwire::tls::fingerprint(&ca)
}

fn served_cert_fingerprint(state: &std::path::Path) -> String {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(state.join("tls/server.crt")).unwrap();
    let leaf = CertificateDer::pem_slice_iter(&pem)
        .next()
        .unwrap()
        .unwrap();
    plantwire::tls::fingerprint(&leaf)
}

#[test]
#[cfg_attr(
    not(pw_has_netns),
    ignore = "needs root, iproute2 and python3-zeroconf for network namespaces (CI runs it)"
)]
fn announced_across_namespaces_resolved_by_zeroconf_and_discover_then_goodbye() {
    if let Some(why) = prerequisites_missing() {
        if skip(&why) {
            return;
        }
    }
    let ns = Namespaces::create();
    let watcher = Watcher::start(&ns);

    let dir = tempfile::tempdir().unwrap();
    // A fresh namespace: the port is free. IPv4 and IPv6 side by side on it.
    let cfg = write_config(
        dir.path(),
        "[devices]\nlisten = [\"127.0.0.1:0\"]\n[server]\nlisten = [\"0.0.0.0:8443\", \"[::]:8443\"]\ndrain_timeout_secs = 3\n",
    );
    let mut cmd = ns.exec(&ns.a, BIN);
    cmd.args(["serve", "--config", cfg.to_str().unwrap()]);
    clean(&mut cmd).env("PLANTWIRE_DISCOVERY__ENABLED", "true");
    let server = Running::spawn(cmd);
    let fp = served_cert_fingerprint(&dir.path().join("state"));

    let is_ours = |v: &Value| {
        v["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("bin-test ("))
    };
    let added = watcher
        .next_matching(Duration::from_secs(30), |v| {
            v["event"] != "removed"
                && is_ours(v)
                && announced(v).contains(&ns.addr_a(1))
                && announced(v).iter().any(|a| a.contains(':'))
        })
        .unwrap_or_else(|| panic!("zeroconf did not resolve it: {}", server.log_text()));
    assert!(
        added["name"]
            .as_str()
            .unwrap()
            .ends_with("._plantwire._tcp.local."),
        "{added}"
    );
    assert_eq!(added["port"], server.addr.port(), "{added}");
    assert_eq!(added["txt"]["site"], "bin-test", "{added}");
    assert_eq!(
        added["txt"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{added}"
    );
    assert_eq!(added["txt"]["fp"], fp.as_str(), "{added}");
    let ca_fp =
        ca_fingerprint(&std::fs::read_to_string(dir.path().join("state/tls/ca.crt")).unwrap());
    assert_eq!(added["txt"]["ca"], ca_fp.as_str(), "{added}");
    assert_eq!(
        added["served_fp"],
        fp.as_str(),
        "the announced fingerprint is the certificate served at the announced address"
    );
    let addrs: Vec<&str> = added["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(addrs.contains(&ns.addr_a(1).as_str()), "{added}");
    assert!(
        addrs.iter().any(|a| a.contains(':')),
        "IPv6 is announced too: {added}"
    );
    assert!(
        !addrs.iter().any(|a| a.starts_with("127.") || *a == "::1"),
        "loopback is not announced: {added}"
    );
    for a in &addrs {
        assert!(
            answers_healthz(&ns, &ns.b, a, 8443),
            "announced {a} does not answer /healthz: {added}"
        );
    }

    // `plantwire discover` from the other namespace finds the same.
    let mut discover = ns.exec(&ns.b, BIN);
    discover.args(["discover", "--timeout", "4", "--json"]);
    clean(&mut discover);
    let out = discover.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let me = found
        .iter()
        .find(|i| i["site"] == "bin-test")
        .unwrap_or_else(|| panic!("discover did not find it: {found:?}"));
    assert_eq!(me["fingerprint"], fp.as_str());
    assert_eq!(me["ca_fingerprint"], ca_fp.as_str());
    assert_eq!(me["port"], server.addr.port());
    assert!(
        me["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == ns.addr_a(1).as_str()),
        "{me}"
    );

    // A new address on the interface is announced without a restart.
    let extra = ns.addr_a(3);
    ip(&[
        "-n",
        &ns.a,
        "addr",
        "add",
        &format!("{extra}/24"),
        "dev",
        &ns.a_if,
    ]);
    let updated = watcher.next_matching(Duration::from_secs(40), |v| {
        is_ours(v)
            && v["addresses"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == extra.as_str()))
    });
    assert!(
        updated.is_some(),
        "the new address was not announced: {}",
        server.log_text()
    );

    // SIGTERM: goodbye packets remove it at once (the PTR record's TTL is 75 minutes otherwise).
    server.signal("-TERM");
    let removed = watcher.next_matching(Duration::from_secs(20), |v| {
        v["event"] == "removed" && is_ours(v)
    });
    assert!(removed.is_some(), "no goodbye: {}", server.log_text());
    assert!(server.wait(Duration::from_secs(15)).success());

    // The default listener is IPv4 only: no IPv6 address is announced, and every announced one
    // answers.
    let cfg = write_config(
        dir.path(),
        "[devices]\nlisten = [\"127.0.0.1:0\"]\n[server]\nlisten = \"0.0.0.0:8443\"\ndrain_timeout_secs = 3\n",
    );
    let mut cmd = ns.exec(&ns.a, BIN);
    cmd.args(["serve", "--config", cfg.to_str().unwrap()]);
    clean(&mut cmd).env("PLANTWIRE_DISCOVERY__ENABLED", "true");
    let server = Running::spawn(cmd);
    let resolved = watcher.next_matching(Duration::from_secs(30), |v| {
        v["event"] != "removed" && is_ours(v)
    });
    assert!(
        resolved.is_some(),
        "zeroconf did not resolve it: {}",
        server.log_text()
    );
    // What `discover` hears over a few seconds: every address announced in that time.
    let mut discover = ns.exec(&ns.b, BIN);
    discover.args(["discover", "--timeout", "4", "--json"]);
    clean(&mut discover);
    let out = discover.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let me = found
        .iter()
        .find(|i| i["site"] == "bin-test")
        .unwrap_or_else(|| panic!("discover did not find it: {found:?}"));
    let addrs = announced(me);
    assert!(addrs.contains(&ns.addr_a(1)), "{me}");
    assert!(
        !addrs.iter().any(|a| a.contains(':')),
        "IPv6 is announced but not served: {me}"
    );
    for a in &addrs {
        assert!(answers_healthz(&ns, &ns.b, a, 8443), "{a}: {me}");
    }
    server.signal("-TERM");
    assert!(server.wait(Duration::from_secs(15)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_endpoint_shows_the_served_fingerprint_without_signing_in() {
    let server = TestServer::start().await;
    let c = server.client();
    let tls = c.tls().await;
    let served = plantwire::tls::fingerprint(&tls.get_ref().1.peer_certificates().unwrap()[0]);
    let res = c.get("/api/v1/site").await;
    assert_eq!(res.status, 200);
    let v = res.json();
    assert_eq!(v["site"], "test-site");
    assert_eq!(v["fingerprint"], served.as_str());
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    // The one to compare: the site CA's, the same as the CA offered at /ca.crt.
    let ca = String::from_utf8(c.get("/ca.crt").await.body.to_vec()).unwrap();
    let ca_fp = ca_fingerprint(&ca);
    assert_eq!(v["ca_fingerprint"], ca_fp.as_str());
    assert_ne!(ca_fp, served);
    server.stop().await;
}
