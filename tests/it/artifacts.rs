//! The release artifacts `packaging/build.sh` makes (CI builds them before `cargo test`): static
//! executables, the cross-built ones serving a login under qemu, the .deb in a scratch root, the
//! tarballs. Missing artifacts skip locally and fail under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{Running, clean, default_server_section, skip, write_config};
use crate::support::Client;

const TARGETS: [&str; 3] = [
    "x86_64-unknown-linux-musl",
    "aarch64-unknown-linux-musl",
    "armv7-unknown-linux-gnueabihf",
];

/// Where build.sh put its output: `$PLANTWIRE_ARTIFACTS`, else `$CARGO_TARGET_DIR`, else ./target.
fn artifacts_dir() -> PathBuf {
    std::env::var_os("PLANTWIRE_ARTIFACTS")
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR"))
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// `path` below the artifacts dir, if built; else skips (locally) or fails (CI) naming `how`.
fn artifact(path: &str, how: &str) -> Option<PathBuf> {
    let p = artifacts_dir().join(path);
    if p.exists() {
        return Some(p);
    }
    assert!(skip(&format!("{} is missing ({how})", p.display())));
    None
}

fn binary(target: &str) -> Option<PathBuf> {
    artifact(
        &format!("{target}/release/plantwire"),
        &format!("packaging/build.sh {target}"),
    )
}

fn dist_file(name: &str) -> Option<PathBuf> {
    artifact(
        &format!("dist/{name}"),
        "packaging/build.sh <target> --package",
    )
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
#[cfg_attr(
    not(pw_has_artifacts),
    ignore = "needs the release artifacts of packaging/build.sh (CI runs it)"
)]
fn release_binaries_are_static_executables() {
    for target in TARGETS {
        let Some(bin) = binary(target) else { continue };
        let file = stdout(Command::new("file").arg("-b").arg(&bin));
        assert!(
            file.contains("statically linked") || file.contains("static-pie linked"),
            "{target}: {file}"
        );
        let arch = match target {
            t if t.starts_with("x86_64") => "x86-64",
            t if t.starts_with("aarch64") => "ARM aarch64",
            _ => "ARM, EABI5",
        };
        assert!(file.contains(arch), "{target}: {file}");
        let program_headers = stdout(Command::new("readelf").args(["-lW"]).arg(&bin));
        assert!(
            !program_headers.contains("INTERP"),
            "{target} asks for a program interpreter"
        );
        let dynamic = stdout(Command::new("readelf").args(["-dW"]).arg(&bin));
        assert!(
            !dynamic.contains("(NEEDED)"),
            "{target} needs shared libraries: {dynamic}"
        );
        let size = std::fs::metadata(&bin).unwrap().len();
        eprintln!("{target}: {size} bytes; {}", file.trim());
    }
    // ldd agrees for the native one (it cannot load foreign binaries).
    if let Some(bin) = binary(TARGETS[0]) {
        let out = Command::new("ldd").arg(&bin).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains("statically linked") || text.contains("not a dynamic executable"),
            "{text}"
        );
    }
}

async fn serve_a_login_under(qemu: &str, target: &str) {
    let Some(bin) = binary(target) else { return };
    if Command::new(qemu).arg("--version").output().is_err()
        && skip(&format!(
            "{qemu} is missing (apt-get install qemu-user-static)"
        ))
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "{}[auth]\nargon2_memory_kib = 1024\nargon2_iterations = 1\n",
            default_server_section()
        ),
    );
    let mut cmd = Command::new(qemu);
    cmd.arg(&bin)
        .args(["serve", "--config", cfg.to_str().unwrap()]);
    clean(&mut cmd);
    // Emulated, key generation and the first admin's hash take a while.
    let server = Running::spawn_within(&mut cmd, Duration::from_secs(180));
    let ca = std::fs::read_to_string(dir.path().join("state/tls/ca.crt")).unwrap();
    let client = Client::new(server.addr, &ca);
    let res = client.get("/healthz").await;
    assert_eq!(res.status, 200, "{target}");
    assert_eq!(res.json()["status"], "ok");
    let otp = std::fs::read_to_string(
        dir.path()
            .join("state")
            .join(plantwire::users::ADMIN_PASSWORD_FILE),
    )
    .unwrap();
    let res = client
        .post_json(
            "/api/v1/auth/login",
            None,
            &serde_json::json!({"username": "admin", "password": otp.trim()}),
        )
        .await;
    assert_eq!(res.status, 200, "{target}: {:?}", res.body);
    let v = res.json();
    assert!(v["access_token"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(v["user"]["must_change_password"], true);
    let res = client.get("/api/v1/site").await;
    let served = {
        let tls = client.tls().await;
        plantwire::tls::fingerprint(&tls.get_ref().1.peer_certificates().unwrap()[0])
    };
    assert_eq!(res.json()["fingerprint"], served.as_str());
    server.signal("-TERM");
    assert!(server.wait(Duration::from_secs(60)).success(), "{target}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_qemu_aarch64),
    ignore = "needs qemu-aarch64-static and the aarch64 artifact (CI runs it)"
)]
async fn aarch64_binary_serves_a_login_under_qemu() {
    serve_a_login_under("qemu-aarch64-static", "aarch64-unknown-linux-musl").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_qemu_arm),
    ignore = "needs qemu-arm-static and the armv7 artifact (CI runs it)"
)]
async fn armv7_binary_serves_a_login_under_qemu() {
    serve_a_login_under("qemu-arm-static", "armv7-unknown-linux-gnueabihf").await;
}

fn deb_name(arch: &str) -> String {
    format!("plantwire_{}_{arch}.deb", env!("CARGO_PKG_VERSION"))
}

#[test]
#[cfg_attr(
    not(pw_has_artifacts),
    ignore = "needs the packages of packaging/build.sh --package (CI runs it)"
)]
fn debs_install_into_a_scratch_root_with_files_where_they_belong() {
    for arch in ["amd64", "arm64", "armhf"] {
        let Some(deb) = dist_file(&deb_name(arch)) else {
            continue;
        };
        // No maintainer scripts: installing never enables or starts the service.
        let control = stdout(Command::new("dpkg-deb").arg("-I").arg(&deb));
        for script in ["postinst", "preinst", "prerm", "postrm"] {
            assert!(!control.contains(script), "{arch}: {control}");
        }
        assert!(
            control.contains(&format!("Architecture: {arch}")),
            "{control}"
        );

        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(r.join("var/lib/dpkg/status"), "").unwrap();
        let mut install = Command::new("dpkg");
        install
            .arg(format!("--root={}", r.display()))
            .arg("--log=/dev/null");
        if arch != "amd64" {
            install.arg("--force-architecture");
        }
        stdout(install.arg("-i").arg(&deb));
        let status = stdout(
            Command::new("dpkg")
                .arg(format!("--root={}", r.display()))
                .args(["-s", "plantwire"]),
        );
        assert!(status.contains("Status: install ok installed"), "{status}");

        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| {
            std::fs::metadata(r.join(p))
                .unwrap_or_else(|e| panic!("{arch}: {p}: {e}"))
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("usr/bin/plantwire"), 0o755);
        assert_eq!(mode("lib/systemd/system/plantwire.service"), 0o644);
        assert_eq!(mode("etc/plantwire/plantwire.toml"), 0o644);
        assert_eq!(mode("usr/share/man/man1/plantwire.1.gz"), 0o644);
        assert_eq!(mode("usr/share/doc/plantwire/copyright"), 0o644);
        assert_eq!(mode("usr/share/doc/plantwire/changelog.gz"), 0o644);
        // The README under /usr/share/doc speaks of the packaged service, not of `cargo run`.
        assert_eq!(mode("usr/share/doc/plantwire/README.Debian"), 0o644);
        let readme =
            std::fs::read_to_string(r.join("usr/share/doc/plantwire/README.Debian")).unwrap();
        assert!(
            readme.contains("systemctl enable --now plantwire"),
            "{readme}"
        );
        assert!(!readme.contains("cargo"), "{readme}");
        assert!(!r.join("usr/share/doc/plantwire/README.md").exists());
        let conffiles =
            std::fs::read_to_string(r.join("var/lib/dpkg/info/plantwire.conffiles")).unwrap();
        assert_eq!(conffiles.trim(), "/etc/plantwire/plantwire.toml");
        // The installed config is the commented sample, and it is valid.
        let installed = std::fs::read_to_string(r.join("etc/plantwire/plantwire.toml")).unwrap();
        plantwire::Config::from_toml_str(&installed).unwrap();
        let unit = std::fs::read_to_string(r.join("lib/systemd/system/plantwire.service")).unwrap();
        assert!(unit.contains("Type=notify"));
        if arch == "amd64" {
            let v = stdout(Command::new(r.join("usr/bin/plantwire")).arg("version"));
            assert_eq!(v.trim(), format!("plantwire {}", env!("CARGO_PKG_VERSION")));
        }
    }
}

#[test]
#[cfg_attr(
    not(pw_has_artifacts),
    ignore = "needs the packages of packaging/build.sh --package (CI runs it)"
)]
fn tarballs_hold_binary_unit_config_man_page_and_readme() {
    for target in TARGETS {
        let name = format!("plantwire-{}-{target}", env!("CARGO_PKG_VERSION"));
        let Some(tarball) = dist_file(&format!("{name}.tar.gz")) else {
            continue;
        };
        let listing = stdout(Command::new("tar").arg("-tvzf").arg(&tarball));
        for (file, mode) in [
            ("plantwire", "-rwxr-xr-x"),
            ("plantwire.service", "-rw-r--r--"),
            ("plantwire.toml", "-rw-r--r--"),
            ("plantwire.1", "-rw-r--r--"),
            ("README.md", "-rw-r--r--"),
        ] {
            let path = format!("{name}/{file}");
            assert!(
                listing
                    .lines()
                    .any(|l| l.starts_with(mode) && l.ends_with(&path)),
                "{target}: {path} ({mode}) not in\n{listing}"
            );
        }
    }
}
