//! A full disk, for real: the server runs on a small tmpfs the test mounts (root), the disk fills,
//! and the server must answer with stable codes, keep what it acknowledged, refuse nothing silently
//! and take writes again once space is freed, without a restart.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::process::skip;
use crate::support::TestServer;

/// A tmpfs of `mib` MiB mounted on a fresh temp dir; unmounted when dropped.
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    fn mount(mib: u32) -> Result<Self, String> {
        let dir = TempDir::new().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mounting a tmpfs needs root: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system with one file until it is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0x5au8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

#[tokio::test]
#[cfg_attr(not(pw_has_tmpfs), ignore = "needs root to mount a tmpfs (CI runs it)")]
async fn a_full_disk_is_answered_with_stable_codes_and_recovered_from_without_a_restart() {
    let fs = match Tmpfs::mount(24) {
        Ok(fs) => fs,
        Err(why) => {
            if skip(&why) {
                return;
            }
            unreachable!()
        }
    };
    let state = TempDir::new_in(fs.path()).unwrap();
    let server = TestServer::start_in(state, |_| {}).await;
    let token = server.device("pump-7").await;
    let client = server.client();
    let mut acked = Vec::new();
    let big = "x".repeat(3000);
    for i in 0..20 {
        let r = client.event(&token, &format!("{i} {big}")).await;
        assert_eq!(r.status, 201);
        acked.push((r.json()["seq"].as_u64().unwrap(), format!("{i} {big}")));
    }

    fill(&fs.path().join("filler"));
    // Publish until the disk says no (redb may still have free pages for a while).
    let mut refused = None;
    for i in 20..5_000 {
        let text = format!("{i} {big}");
        let r = client.event(&token, &text).await;
        match r.status.as_u16() {
            201 => acked.push((r.json()["seq"].as_u64().unwrap(), text)),
            _ => {
                refused = Some(r);
                break;
            }
        }
    }
    let refused = refused.expect("the disk never filled");
    assert_eq!(refused.status, 507, "{:?}", refused.body);
    assert_eq!(refused.error_code(), "insufficient_storage");
    assert!(refused.headers.get("retry-after").is_some());

    // While degraded: /readyz says so, the metric says so, writes keep their stable code and a
    // sign-in (a write) is not a 500, and an authenticated read is never a 401.
    let ready = client.get("/readyz").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.error_code(), "storage_degraded");
    let metrics = server.state().metrics().render(0, 0).unwrap();
    assert!(
        metrics.contains("plantwire_storage_degraded 1"),
        "{metrics}"
    );
    let again = client.event(&token, "while full").await;
    assert_eq!(again.status, 507, "{:?}", again.body);
    let login = client
        .post_json(
            "/api/v1/auth/login",
            None,
            &serde_json::json!({"username": "admin", "password": server.admin_otp()}),
        )
        .await;
    assert!(
        [503, 507].contains(&login.status.as_u16()),
        "sign-in while full: {} {:?}",
        login.status,
        login.body
    );

    // Space comes back: the writer reopens the store by itself.
    std::fs::remove_file(fs.path().join("filler")).unwrap();
    let mut recovered = false;
    for _ in 0..100 {
        let r = client.event(&token, "after space returned").await;
        if r.status == 201 {
            acked.push((
                r.json()["seq"].as_u64().unwrap(),
                "after space returned".into(),
            ));
            recovered = true;
            break;
        }
        assert!(
            [503, 507].contains(&r.status.as_u16()),
            "{} {:?}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "writes did not resume after space was freed");
    assert_eq!(client.get("/readyz").await.status, 200);

    // Every acknowledged event is there with its content, and nothing refused was stored.
    let log = server.state().log();
    let rtx = log.read().unwrap();
    for (seq, text) in &acked {
        let e = log
            .entry(&rtx, *seq)
            .unwrap()
            .expect("an acknowledged entry is missing");
        let body: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
        assert_eq!(body["message"], text.as_str());
    }
    let head = log.head(&rtx).unwrap();
    assert_eq!(head, acked.last().unwrap().0, "a refused write was stored");
    drop(rtx);
    let dir = server.stop().await;
    let (store, key, site) =
        plantwire::state::open_offline(&crate::support::test_config(dir.path())).unwrap();
    let report = plantwire::log::verify(&store, &site, &key).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
}
