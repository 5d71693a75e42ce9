//! Two network namespaces joined by a veth pair, made by the test (as root) and removed on drop;
//! what the discovery and replication-chaos tests run their processes in.

#![allow(dead_code)]

use std::process::Command;

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces `<id>a` and `<id>b` joined by a veth pair, with 10.x and fd00:: addresses of
/// their own. Removed on drop, also when the test fails.
pub struct Namespaces {
    pub a: String,
    pub b: String,
    pub a_if: String,
    pub b_if: String,
    pub subnet: u8,
}

impl Namespaces {
    pub fn create() -> Self {
        let mut r = [0u8; 3];
        aws_lc_rs::rand::fill(&mut r).unwrap();
        let id = format!("pw{}", hex::encode(r));
        let ns = Self {
            a: format!("{id}a"),
            b: format!("{id}b"),
            a_if: format!("{id}a"),
            b_if: format!("{id}b"),
            subnet: 100 + r[0] % 100,
        };
        ip(&["netns", "add", &ns.a]);
        ip(&["netns", "add", &ns.b]);
        let b_if = ns.b_if.clone();
        ip(&[
            "link", "add", &ns.a_if, "type", "veth", "peer", "name", &b_if,
        ]);
        ip(&["link", "set", &ns.a_if, "netns", &ns.a]);
        ip(&["link", "set", &b_if, "netns", &ns.b]);
        for (name, dev, host) in [(&ns.a, &ns.a_if, 1), (&ns.b, &b_if, 2)] {
            ip(&[
                "-n",
                name,
                "addr",
                "add",
                &format!("10.{}.0.{host}/24", ns.subnet),
                "dev",
                dev,
            ]);
            ip(&[
                "-n",
                name,
                "addr",
                "add",
                &format!("fd00:{}::{host}/64", ns.subnet),
                "dev",
                dev,
                "nodad",
            ]);
            ip(&["-n", name, "link", "set", "lo", "up"]);
            ip(&["-n", name, "link", "set", dev, "up"]);
        }
        ns
    }

    pub fn addr_a(&self, host: u8) -> String {
        format!("10.{}.0.{host}", self.subnet)
    }

    pub fn exec(&self, ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Deleting a namespace removes its end of the veth, and with it the pair.
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `f` on a new thread inside namespace `ns` (its sockets, and those of threads it starts,
/// live there), e.g. a client runtime that talks to a server listening in that namespace.
pub fn in_namespace<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    use std::os::fd::AsFd;
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        rustix::thread::move_into_link_name_space(
            fd.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        f()
    })
}
