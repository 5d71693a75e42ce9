//! Probes, for the integration tests only, which outside prerequisites this machine has (a browser,
//! curl, nats-server, qemu, root, FUSE, the release artifacts) and sets one `pw_has_*` cfg for each present.
//!
//! A test whose prerequisite is missing is then marked ignored, with the reason, so `cargo test` counts
//! it as "ignored" in its summary instead of passing after a hidden "SKIPPED". With `CI` set (as
//! `.ci/run` does), every cfg is set: nothing is ignored, and a missing tool fails the test.
//! The library and binary never read these cfgs. See docs/testing.md.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const CFGS: &[&str] = &[
    "pw_has_browser",
    "pw_has_curl",
    "pw_has_netns",
    "pw_has_fuse",
    "pw_has_tmpfs",
    "pw_has_artifacts",
    "pw_has_qemu_aarch64",
    "pw_has_qemu_arm",
    "pw_has_nats",
];

fn main() {
    for cfg in CFGS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    for var in [
        "CI",
        "PATH",
        "CHROMEDRIVER",
        "CHROME",
        "PLANTWIRE_ARTIFACTS",
        "CARGO_TARGET_DIR",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rerun-if-changed=src/build.rs");
    // A tool installed into a directory already on PATH changes that directory's mtime.
    for dir in path_dirs().iter().filter(|d| d.is_dir()) {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    for cfg in CFGS {
        if ci || present(cfg) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}

fn present(cfg: &str) -> bool {
    match cfg {
        "pw_has_browser" => {
            (given("CHROMEDRIVER") || which("chromedriver"))
                && (given("CHROME")
                    || ["chromium", "chromium-browser", "google-chrome"]
                        .iter()
                        .any(|b| which(b)))
        }
        "pw_has_curl" => which("curl"),
        "pw_has_nats" => which("nats-server"),
        "pw_has_netns" => root() && which("ip") && which("curl") && python_module("zeroconf"),
        "pw_has_fuse" => root() && Path::new("/dev/fuse").exists() && which("fusermount3"),
        "pw_has_tmpfs" => root() && which("mount"),
        "pw_has_artifacts" => artifacts().join("dist").is_dir(),
        "pw_has_qemu_aarch64" => {
            which("qemu-aarch64-static")
                && artifacts()
                    .join("aarch64-unknown-linux-musl/release/plantwire")
                    .is_file()
        }
        "pw_has_qemu_arm" => {
            which("qemu-arm-static")
                && artifacts()
                    .join("armv7-unknown-linux-gnueabihf/release/plantwire")
                    .is_file()
        }
        _ => false,
    }
}

fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default()
}

fn which(name: &str) -> bool {
    path_dirs().iter().any(|d| d.join(name).is_file())
}

fn given(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|p| Path::new(&p).is_file())
}

fn root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Quietly: a missing module must not print a Python traceback into the build output.
fn python_module(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Where packaging/build.sh puts its output, as tests/it/artifacts.rs looks for it.
fn artifacts() -> PathBuf {
    std::env::var_os("PLANTWIRE_ARTIFACTS")
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR"))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default()).join("target")
        })
}
