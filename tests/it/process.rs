//! Running real plantwire processes: the binary under test (or a cross-built one under qemu, or in
//! a network namespace), with a clean environment, a config in a temp dir and stderr collected.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_plantwire");

/// Removes what the caller's environment could leak into a child: config overrides, log routing,
/// systemd's notify socket. mDNS stays off unless a test turns it on, so no test announces on
/// the host's own network.
pub fn clean(c: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("PLANTWIRE_")
            || matches!(
                k.as_str(),
                "RUST_LOG"
                    | "JOURNAL_STREAM"
                    | "NOTIFY_SOCKET"
                    | "WATCHDOG_USEC"
                    | "WATCHDOG_PID"
                    | "STATE_DIRECTORY"
                    | "CREDENTIALS_DIRECTORY"
            )
        {
            c.env_remove(k);
        }
    }
    c.env("PLANTWIRE_DISCOVERY__ENABLED", "false")
}

/// The binary under test with `args`.
pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args);
    clean(&mut c);
    c
}

pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("plantwire.toml");
    let text = format!(
        "version = 1\nsite = \"bin-test\"\nstate_dir = \"{}\"\n{extra}\n",
        dir.join("state").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `plantwire init` for `config`: admin commands never create a store, so tests make one first.
pub fn init(config: &Path) {
    let out = command(&["init", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "init: {out:?}");
}

/// `plantwire device add NAME` against the stopped store of `config`: the device's token.
pub fn add_device(config: &Path, name: &str) -> String {
    let out = command(&["device", "add", name, "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "device add: {out:?}");
    let token = String::from_utf8(out.stdout).unwrap();
    token.lines().last().unwrap().trim().to_string()
}

pub fn default_server_section() -> &'static str {
    // The device listener first, so that what callers append still lands in [server].
    "[devices]\nlisten = [\"127.0.0.1:0\"]\n[server]\nlisten = [\"127.0.0.1:0\"]\ndrain_timeout_secs = 3\n"
}

/// A running `plantwire serve`, with its stderr collected.
pub struct Running {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    /// The binary under test, serving `config`.
    pub fn start(config: &Path) -> Self {
        Self::spawn(command(&["serve", "--config", config.to_str().unwrap()]))
    }

    /// Spawns `cmd` (a `serve`) and waits until it logs its listening address.
    pub fn spawn(mut cmd: Command) -> Self {
        Self::spawn_within(&mut cmd, Duration::from_secs(30))
    }

    pub fn spawn_within(cmd: &mut Command, limit: Duration) -> Self {
        let mut child = cmd
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("addr=").nth(1) {
                    let _ = tx.send(addr.trim().parse::<SocketAddr>());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(limit) {
            Ok(Ok(addr)) => addr,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server did not start ({other:?}): {:?}",
                    log.lock().unwrap()
                );
            }
        };
        Self { child, addr, log }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    pub fn wait(mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "server did not exit in time: {:?}",
                    self.log.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Running {
    /// A test that fails midway must not leave a server behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Skips (returns true) when `why` applies locally; panics in CI, where nothing may be skipped.
pub fn skip(why: &str) -> bool {
    if crate::support::in_ci() {
        panic!("running in CI (CI is set) but this test cannot run: {why}");
    }
    eprintln!("SKIPPED (set up by .ci/run; in CI, with CI=true, this is a failure): {why}");
    true
}

/// Producers that publish events to a real server as fast as it acknowledges them, until it goes
/// away; what was acknowledged is kept as (seq, message). The SIGKILL and power-cut tests share it.
pub struct Producers {
    acked: std::sync::Arc<std::sync::Mutex<Vec<(u64, String)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Producers {
    /// Starts `n` producers; their messages are `<label> producer <p> event <i>`.
    pub fn start(client: &crate::support::Client, token: &str, label: &str, n: usize) -> Self {
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks = (0..n)
            .map(|p| {
                let (client, token, acked) = (client.clone(), token.to_string(), acked.clone());
                let label = label.to_string();
                tokio::spawn(async move {
                    for i in 0.. {
                        let msg = format!("{label} producer {p} event {i}");
                        let Some(res) = client.try_event(&token, &msg).await else {
                            return;
                        };
                        if res.status == 201 {
                            let seq = res.json()["seq"].as_u64().unwrap();
                            acked.lock().unwrap().push((seq, msg));
                        }
                    }
                })
            })
            .collect();
        Self { acked, tasks }
    }

    /// Waits for every producer to stop (the server is gone) and hands back what was acknowledged.
    pub async fn acknowledged(self) -> Vec<(u64, String)> {
        for t in self.tasks {
            t.await.unwrap();
        }
        self.acked.lock().unwrap().clone()
    }
}
