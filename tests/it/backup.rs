//! Backup and restore with the real binary: a backup taken through the running server while
//! producers keep writing, restored into an empty state dir, holds every entry up to its manifest's
//! chain head and verifies; damaged files, newer schemas and existing stores are refused.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::process::{Running, command, default_server_section, write_config};
use crate::support::Client;

fn run(args: &[&str]) -> (bool, String) {
    let out = command(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn manifest(file: &Path) -> plantwire::store::backup::Manifest {
    let mut f = std::io::BufReader::new(std::fs::File::open(file).unwrap());
    plantwire::store::backup::read_manifest(&mut f).unwrap()
}

async fn wait_for_acks(acked: &Mutex<Vec<(u64, String)>>, at_least: usize) {
    for _ in 0..3000 {
        if acked.lock().unwrap().len() >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("producers did not get {at_least} acknowledgements");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_writes_restores_into_an_empty_state_dir_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), default_server_section());
    let c = cfg.to_str().unwrap();
    crate::process::init(&cfg);
    let (ok, out) = run(&["device", "add", "pump", "--config", c]);
    assert!(ok, "{out}");
    let token = out
        .lines()
        .find(|l| l.starts_with(plantwire::devices::TOKEN_PREFIX))
        .unwrap()
        .trim()
        .to_string();

    let server = Running::start(&cfg);
    let ca = std::fs::read_to_string(dir.path().join("state/tls/ca.crt")).unwrap();
    let client = Client::new(server.addr, &ca);
    let acked = Arc::new(Mutex::new(Vec::<(u64, String)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    for p in 0..4 {
        let (client, token, acked, stop) =
            (client.clone(), token.clone(), acked.clone(), stop.clone());
        producers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let msg = format!("producer {p} event {i}");
                let res = client.event(&token, &msg).await;
                assert_eq!(res.status, 201);
                acked
                    .lock()
                    .unwrap()
                    .push((res.json()["seq"].as_u64().unwrap(), msg));
                i += 1;
            }
        }));
    }
    wait_for_acks(&acked, 100).await;
    let acked_before: u64 = acked.lock().unwrap().iter().map(|a| a.0).max().unwrap();
    let file = dir.path().join("live.pwbackup");
    let f = file.to_str().unwrap().to_string();
    let cc = c.to_string();
    let (ok, out) = tokio::task::spawn_blocking(move || run(&["backup", &f, "--config", &cc]))
        .await
        .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("from the running server"), "{out}");
    let after = acked.lock().unwrap().len();
    wait_for_acks(&acked, after + 40).await;
    stop.store(true, Ordering::SeqCst);
    for p in producers {
        p.await.unwrap();
    }
    server.signal("-TERM");
    assert!(server.wait(Duration::from_secs(15)).success());

    let m = manifest(&file);
    assert_eq!(m.site, "bin-test");
    assert_eq!(m.schema_version, plantwire::store::SCHEMA_VERSION);
    let head = m.chain_head.clone().unwrap().seq;
    let acked = acked.lock().unwrap().clone();
    let last = acked.iter().map(|a| a.0).max().unwrap();
    assert!(
        head >= acked_before,
        "everything acknowledged before the backup is in it"
    );
    assert!(
        last > head,
        "writes went on after the snapshot ({last} > {head})"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The data key is not in the backup, in any form a grep would find.
    let key = std::fs::read_to_string(dir.path().join("state/data.key")).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    assert!(
        !bytes
            .windows(key.trim().len())
            .any(|w| w == key.trim().as_bytes())
    );

    // The site CA key, the JWT key and the checkpoint-signing key travel sealed: never in clear.
    for secret in [
        "state/tls/ca.key",
        "state/jwt-signing.key",
        "state/site-signing.key",
    ] {
        let clear = std::fs::read(dir.path().join(secret)).unwrap();
        assert!(
            !bytes.windows(40).any(|w| clear.windows(40).any(|c| c == w)),
            "{secret} in clear in the backup"
        );
    }

    // Restore into an empty state dir on "another machine": same site, key brought separately.
    let other = tempfile::tempdir().unwrap();
    let cfg2 = write_config(other.path(), default_server_section());
    let c2 = cfg2.to_str().unwrap();
    // Without the data key the sealed CA cannot come back: refused, nothing written.
    let (ok, out) = run(&["restore", file.to_str().unwrap(), "--config", c2]);
    assert!(
        !ok && out.contains("put the backup's key in place"),
        "{out}"
    );
    assert!(!other.path().join("state/plantwire.redb").exists());
    let key_path = other.path().join("state/data.key");
    std::fs::write(&key_path, &key).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, out) = run(&["restore", file.to_str().unwrap(), "--config", c2]);
    assert!(ok, "{out}");
    for name in plantwire::site_files::CARRIED {
        // An edge's replication identity exists only once it enrolled: absent here, not made.
        let Ok(a) = std::fs::read(dir.path().join("state").join(name)) else {
            assert!(
                name.starts_with("replication/"),
                "{name} is in the state dir"
            );
            assert!(!other.path().join("state").join(name).exists());
            continue;
        };
        let p = other.path().join("state").join(name);
        assert_eq!(a, std::fs::read(&p).unwrap(), "{name} restored");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    let out = command(&["audit", "verify", "--json", "--config", c2])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // The JSON is all of stdout; which store was used goes to stderr.
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["first_seq"], 1);
    assert_eq!(report["last_seq"], head);
    assert_eq!(report["head"], m.chain_head.as_ref().unwrap().hash.as_str());

    // Every acknowledged entry up to the head is there with its content; nothing after it.
    let config = plantwire::Config::load(Some(&cfg2), &Default::default()).unwrap();
    let (store, key, site) = plantwire::state::open_offline(&config).unwrap();
    let rtx = store.read().unwrap();
    for (seq, msg) in acked.iter().filter(|a| a.0 <= head) {
        let entry = plantwire::log::read::entry(&rtx, &site, &key, *seq)
            .unwrap()
            .unwrap_or_else(|| panic!("seq {seq} missing after restore"));
        let body: serde_json::Value = serde_json::from_slice(&entry.body).unwrap();
        assert_eq!(body["message"], msg.as_str());
    }
    assert!(
        plantwire::log::read::entry(&rtx, &site, &key, head + 1)
            .unwrap()
            .is_none()
    );
    drop(rtx);
    drop(store);

    // A restored store serves: the device registered before the backup still publishes, over
    // TLS pinned to the old gateway's CA (the fingerprint is unchanged).
    let server = Running::start(&cfg2);
    let ca2 = std::fs::read_to_string(other.path().join("state/tls/ca.crt")).unwrap();
    assert_eq!(ca2, ca, "the site CA is the one backed up");
    assert!(
        !server.log_text().contains("created the site CA"),
        "{}",
        server.log_text()
    );
    let res = Client::new(server.addr, &ca)
        .event(&token, "after restore")
        .await;
    assert_eq!(res.status, 201);
    assert_eq!(res.json()["seq"], head + 1);
    server.signal("-TERM");
    assert!(server.wait(Duration::from_secs(15)).success());

    // Restoring over an existing store needs --force and keeps the old one beside.
    let (ok, out) = run(&["restore", file.to_str().unwrap(), "--config", c2]);
    assert!(!ok && out.contains("--force"), "{out}");
    let (ok, out) = run(&["restore", file.to_str().unwrap(), "--force", "--config", c2]);
    assert!(ok, "{out}");
    assert!(out.contains("before-restore"), "{out}");
    let (ok, out) = run(&["audit", "verify", "--config", c2]);
    assert!(ok, "{out}");

    // With the server stopped, backup reads the store directly.
    let offline = dir.path().join("offline.pwbackup");
    let (ok, out) = run(&["backup", offline.to_str().unwrap(), "--config", c]);
    assert!(ok && out.contains("server stopped"), "{out}");
    assert_eq!(manifest(&offline).chain_head.unwrap().seq, last);
}

#[test]
fn damaged_or_newer_backups_are_refused_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), default_server_section());
    let c = cfg.to_str().unwrap();
    crate::process::init(&cfg);
    assert!(run(&["device", "add", "pump", "--config", c]).0);
    let file = dir.path().join("b.pwbackup");
    let (ok, out) = run(&["backup", file.to_str().unwrap(), "--config", c]);
    assert!(ok, "{out}");
    let good = std::fs::read(&file).unwrap();

    let restore = |bytes: &[u8], what: &str| {
        let target = tempfile::tempdir().unwrap();
        let cfg2 = write_config(target.path(), default_server_section());
        let f = target.path().join("x.pwbackup");
        std::fs::write(&f, bytes).unwrap();
        // The backup's key is in place, so what refuses is the damage.
        std::fs::create_dir_all(target.path().join("state")).unwrap();
        let key = target.path().join("state/data.key");
        std::fs::copy(dir.path().join("state/data.key"), &key).unwrap();
        let (ok, out) = run(&[
            "restore",
            f.to_str().unwrap(),
            "--config",
            cfg2.to_str().unwrap(),
        ]);
        assert!(!ok, "{what}: {out}");
        let state = target.path().join("state");
        let left: Vec<_> = std::fs::read_dir(&state)
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            !left.iter().any(|n| n.to_string_lossy().contains("redb")),
            "{what}: left {left:?}"
        );
        out
    };

    // One flipped bit in a row.
    let mut flipped = good.clone();
    let at = good.len() - 60;
    flipped[at] ^= 0x01;
    let out = restore(&flipped, "flipped bit");
    assert!(out.contains("checksum") || out.contains("corrupt"), "{out}");
    // Cut short.
    let out = restore(&good[..good.len() - 10], "truncated");
    assert!(out.contains("checksum"), "{out}");
    // Not a backup at all.
    let out = restore(b"hello, world, not a backup", "garbage");
    assert!(out.contains("not a plantwire backup"), "{out}");
    // A newer schema: only the number differs (and the manifest's length prefix, bytes 12..16,
    // when the number gains a digit).
    let text = String::from_utf8_lossy(&good).into_owned();
    let current = format!("\"schema_version\":{}", plantwire::store::SCHEMA_VERSION);
    assert!(text.contains(&current));
    let pos = good
        .windows(current.len())
        .position(|w| w == current.as_bytes())
        .unwrap();
    let bumped = format!(
        "\"schema_version\":{}",
        plantwire::store::SCHEMA_VERSION + 1
    );
    let mut newer = good[..pos].to_vec();
    newer.extend_from_slice(bumped.as_bytes());
    newer.extend_from_slice(&good[pos + current.len()..]);
    let grown = u32::try_from(bumped.len() - current.len()).unwrap();
    let len = u32::from_be_bytes(newer[12..16].try_into().unwrap()) + grown;
    newer[12..16].copy_from_slice(&len.to_be_bytes());
    let out = restore(&newer, "newer schema");
    assert!(out.contains("newer than this build"), "{out}");
    // A data key that is not the backup's is refused before anything is written.
    let target = tempfile::tempdir().unwrap();
    let cfg_k = write_config(target.path(), default_server_section());
    std::fs::create_dir_all(target.path().join("state")).unwrap();
    let other_key = target.path().join("state/data.key");
    let mut raw = [0u8; 32];
    aws_lc_rs::rand::fill(&mut raw).unwrap();
    use base64::Engine;
    std::fs::write(
        &other_key,
        base64::engine::general_purpose::STANDARD.encode(raw),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&other_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, out) = run(&[
        "restore",
        file.to_str().unwrap(),
        "--config",
        cfg_k.to_str().unwrap(),
    ]);
    assert!(!ok && out.contains("not the key of this backup"), "{out}");
    assert!(!target.path().join("state/plantwire.redb").exists());

    // Another site's backup is refused before anything is written.
    let target = tempfile::tempdir().unwrap();
    let cfg3 = target.path().join("other.toml");
    std::fs::write(
        &cfg3,
        format!(
            "version = 1\nsite = \"elsewhere\"\nstate_dir = \"{}\"\n",
            target.path().join("state").display()
        ),
    )
    .unwrap();
    let (ok, out) = run(&[
        "restore",
        file.to_str().unwrap(),
        "--config",
        cfg3.to_str().unwrap(),
    ]);
    assert!(!ok && out.contains("site"), "{out}");
}
