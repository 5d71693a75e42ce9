//! The lazyfs harness (`tests/lazyfs`, docs/testing.md): builds the tool once, mounts it over a
//! backing dir, sends it `cut`, `full`, `space`, `delay <ms>`, `status`, and unmounts on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use crate::process::skip;

/// Why the tool cannot run here, if it cannot.
fn prerequisites_missing() -> Option<String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Some("mounting lazyfs (FUSE) needs root".into());
    }
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing".into());
    }
    if Command::new("fusermount3").arg("-V").output().is_err() {
        return Some("fusermount3 is not installed (apt-get install fuse3)".into());
    }
    None
}

/// Builds tests/lazyfs once per test process, beside this crate's target dir, and returns its path.
pub fn binary() -> Option<PathBuf> {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    if let Some(why) = prerequisites_missing() {
        skip(&why);
        return None;
    }
    let bin = BIN.get_or_init(|| {
        // <target>/<profile>/deps/it-<hash>
        let exe = std::env::current_exe().unwrap();
        let target = exe.ancestors().nth(3).unwrap().join("lazyfs");
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lazyfs/Cargo.toml");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "build",
                "--release",
                "--locked",
                "--manifest-path",
                manifest,
            ])
            .arg("--target-dir")
            .arg(&target)
            .env_remove("RUSTFLAGS")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "building lazyfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join("release/lazyfs")
    });
    Some(bin.clone())
}

/// A mounted lazyfs; unmounted on drop.
pub struct Lazyfs {
    child: Child,
    mnt: PathBuf,
    socket: PathBuf,
}

impl Lazyfs {
    pub fn mount(bin: &Path, backing: &Path, mnt: &Path) -> Self {
        std::fs::create_dir_all(backing).unwrap();
        std::fs::create_dir_all(mnt).unwrap();
        let socket = mnt.with_extension("sock");
        let mut child = Command::new(bin)
            .arg("mount")
            .args([backing, mnt, &socket])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "lazyfs did not mount");
        Self {
            child,
            mnt: mnt.to_path_buf(),
            socket,
        }
    }

    /// Mounted with fsyncs that take `ms`, so a cut often finds a commit in flight.
    pub fn mount_slow(bin: &Path, backing: &Path, mnt: &Path, ms: u64) -> Self {
        let fs = Self::mount(bin, backing, mnt);
        fs.ctl(&format!("delay {ms}"));
        fs
    }

    /// One control command (`cut`, `cut torn`, `full`, `space`, `status`); its `ok ...` reply.
    pub fn ctl(&self, command: &str) -> String {
        let mut conn = UnixStream::connect(&self.socket).unwrap();
        writeln!(conn, "{command}").unwrap();
        let mut reply = String::new();
        conn.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("ok"), "{command}: {reply}");
        reply.trim().to_string()
    }
}

impl Drop for Lazyfs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("fusermount3")
            .arg("-uz")
            .arg(&self.mnt)
            .status();
    }
}
