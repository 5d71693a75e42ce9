//! The admin CLI as plant IT runs it: it never creates a store, it finds the running server's
//! control socket and works through it, `audit verify` exits with documented codes, and the last
//! admin cannot be demoted or disabled.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use redb::ReadableTable;

use crate::process::{Running, command, default_server_section, init, write_config};
use crate::support::Client;

fn run_in(dir: &Path, args: &[&str]) -> Output {
    command(args).current_dir(dir).output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(o: &Output) -> String {
    let (out, err) = text(o);
    assert!(o.status.success(), "{:?}\n{out}\n{err}", o.status);
    out
}

fn cheap_config(dir: &Path) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            "{}[auth]\nargon2_memory_kib = 64\nargon2_iterations = 1\n",
            default_server_section()
        ),
    )
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[test]
fn admin_commands_in_an_empty_directory_refuse_and_create_nothing() {
    if Path::new(plantwire::config::DEFAULT_CONFIG_PATH).exists()
        || Path::new(plantwire::config::DEFAULT_STATE_DIR).exists()
    {
        panic!("this host has a packaged plantwire; the test needs a machine without one");
    }
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["device", "add", "x"][..],
        &["user", "add", "grete"],
        &["user", "list"],
        &["audit", "verify"],
    ] {
        let o = run_in(dir.path(), args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {err}");
        let looked = dir.path().join("plantwire-data").join("plantwire.redb");
        assert!(
            err.contains(&format!("no plantwire store at {}", looked.display())),
            "{args:?}: {err}"
        );
        assert!(err.contains("nothing was created"), "{err}");
        assert!(
            err.contains("/var/lib/plantwire"),
            "it names where it looked: {err}"
        );
        assert!(files_under(dir.path()).is_empty(), "{args:?} created files");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_work_through_the_control_socket_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cheap_config(dir.path());
    let c = cfg.to_str().unwrap();
    let server = Running::start(&cfg);
    let ca = std::fs::read_to_string(dir.path().join("state/tls/ca.crt")).unwrap();
    let client = Client::new(server.addr, &ca);

    let o = run_in(dir.path(), &["device", "add", "pump-7", "--config", c]);
    let out = ok(&o);
    let (_, err) = text(&o);
    assert!(err.contains("through the running server"), "{err}");
    assert!(err.contains("plantwire.redb"), "it says which store: {err}");
    let token = out.lines().last().unwrap().trim().to_string();
    // The token works at once against the running server.
    assert_eq!(client.event(&token, "first").await.status, 201);

    let out = ok(&run_in(
        dir.path(),
        &["user", "add", "grete", "--config", c],
    ));
    let otp = out.lines().last().unwrap().trim().to_string();
    let res = client
        .post_json(
            "/api/v1/auth/login",
            None,
            &serde_json::json!({"username": "grete", "password": otp}),
        )
        .await;
    assert_eq!(res.status, 200);

    let o = run_in(dir.path(), &["audit", "verify", "--config", c]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("result:  OK"), "{out}");
    assert!(
        err.contains("page-checksum check") && err.contains("skipped"),
        "{err}"
    );

    // The security events, read from the running server's snapshot (grete signed in above).
    let o = run_in(
        dir.path(),
        &["audit", "log", "--kind", "auth.*", "--config", c],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("auth.login"), "{out}");
    assert!(err.contains("through the running server"), "{err}");

    let file = dir.path().join("b.pwbackup");
    let out = ok(&run_in(
        dir.path(),
        &["backup", file.to_str().unwrap(), "--config", c],
    ));
    assert!(out.contains("the running server"), "{out}");

    let out = ok(&run_in(
        dir.path(),
        &["config", "check", "--running", "--config", c],
    ));
    assert!(out.contains("site = \"bin-test\""), "{out}");

    // The same output online and offline.
    let online_devices = ok(&run_in(dir.path(), &["device", "list", "--config", c]));
    let online_users = ok(&run_in(dir.path(), &["user", "list", "--config", c]));
    assert!(
        online_devices.contains("pump-7\tactive"),
        "{online_devices}"
    );
    server.signal("-TERM");
    assert!(server.wait(Duration::from_secs(15)).success());
    let o = run_in(dir.path(), &["device", "list", "--config", c]);
    // The same but for the in-memory ingest statistics, which only the running server has.
    let stats_cut = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.split('\t').take(3).collect::<Vec<_>>().join("\t"))
            .collect()
    };
    assert_eq!(stats_cut(&ok(&o)), stats_cut(&online_devices));
    // A header, then pump-7: created when and by whom; it published above, so the running server
    // knows when it was last seen (offline: "-").
    let row = |list: &str| -> Vec<String> {
        list.lines()
            .find(|l| l.starts_with("pump-7\t"))
            .unwrap()
            .split('\t')
            .map(str::to_string)
            .collect()
    };
    assert!(
        online_devices.starts_with("NAME\tSTATUS\tCREDENTIAL\tCREATED BY\tCREATED AT\tLAST SEEN")
    );
    let on = row(&online_devices);
    assert_eq!(on.len(), 8, "{on:?}");
    assert!(
        on[4].ends_with('Z') && on[4].contains('T'),
        "created at: {on:?}"
    );
    assert!(on[5].ends_with('Z'), "last seen: {on:?}");
    assert_eq!(on[7], "0", "refused: {on:?}");
    let off = row(&ok(&o));
    assert_eq!(off[4], on[4], "created at is in the store");
    assert_eq!(off[5..], ["-", "-", "-"], "{off:?}");
    assert!(text(&o).1.contains("the server is not running"));
    assert_eq!(
        ok(&run_in(dir.path(), &["user", "list", "--config", c])),
        online_users
    );
}

/// The on-disk log table, reached behind plantwire's back to damage one entry.
const LOG: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("log_seq_record");

fn damage_entry(store: &Path, seq: u64) {
    let db = redb::Database::create(store).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(LOG).unwrap();
        let raw = t.get(seq).unwrap().unwrap().value().to_vec();
        let mut rec = plantwire::store::LogRecord::decode(&raw).unwrap();
        rec.author = "device:someone-else".into();
        t.insert(seq, rec.encode().unwrap().as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn audit_verify_exit_codes_tell_damage_from_usage_from_cannot_open() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cheap_config(dir.path());
    let c = cfg.to_str().unwrap();
    let verify = |extra: &[&str]| {
        let mut args = vec!["audit", "verify", "--config", c];
        args.extend_from_slice(extra);
        let o = run_in(dir.path(), &args);
        let (out, err) = text(&o);
        (o.status.code(), out + &err)
    };
    // 3: no store.
    let (code, out) = verify(&[]);
    assert_eq!(code, Some(3), "{out}");
    init(&cfg);
    ok(&run_in(dir.path(), &["device", "add", "a", "--config", c]));
    ok(&run_in(dir.path(), &["device", "add", "b", "--config", c]));
    // 0: the chain verifies.
    let (code, out) = verify(&[]);
    assert_eq!(code, Some(0), "{out}");
    // 2: usage.
    let (code, out) = verify(&["--no-such-flag"]);
    assert_eq!(code, Some(2), "{out}");
    // 3: no key.
    let key = dir
        .path()
        .join("state")
        .join(plantwire::bootstrap::DATA_KEY_FILE);
    let aside = dir.path().join("data.key.aside");
    std::fs::rename(&key, &aside).unwrap();
    let (code, out) = verify(&[]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("no data key"), "{out}");
    std::fs::rename(&aside, &key).unwrap();
    // 1: the chain is damaged.
    damage_entry(
        &dir.path()
            .join("state")
            .join(plantwire::bootstrap::STORE_FILE),
        2,
    );
    let (code, out) = verify(&[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAILED"), "{out}");
}

#[test]
fn the_last_admin_cannot_be_demoted_or_disabled_and_approve_wants_a_pending_user() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cheap_config(dir.path());
    let c = cfg.to_str().unwrap();
    init(&cfg);
    ok(&run_in(dir.path(), &["user", "reset-admin", "--config", c]));
    for args in [
        &["user", "role", "admin", "viewer", "--config", c][..],
        &["user", "disable", "admin", "--config", c],
    ] {
        let o = run_in(dir.path(), args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("last active admin"), "{err}");
    }
    let users = ok(&run_in(dir.path(), &["user", "list", "--config", c]));
    assert!(users.contains("admin\tAdmin\tActive"), "{users}");
    // With a second admin, the first may step down.
    ok(&run_in(
        dir.path(),
        &["user", "add", "otto", "--role", "admin", "--config", c],
    ));
    ok(&run_in(
        dir.path(),
        &["user", "role", "admin", "operator", "--config", c],
    ));

    let o = run_in(dir.path(), &["user", "approve", "otto", "--config", c]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(err.contains("not waiting for approval"), "{err}");
    assert!(!out.contains("approved"), "{out}");
}

/// Another user (not root, not the service's) is told which path it cannot read and what to do,
/// with exit code 3, not "no store"; an OS refusal is printed once, with the fix. Needs root to
/// switch users; elsewhere it cannot be set up.
#[test]
fn a_user_without_access_is_told_the_path_and_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    // The effective uid, from the proc filesystem.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let root = status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    if !root && crate::process::skip("switching to `nobody` needs root") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = cheap_config(dir.path());
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    init(&cfg);
    let mut c = std::process::Command::new("setpriv");
    c.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        crate::process::BIN,
        "audit",
        "verify",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    crate::process::clean(&mut c);
    let o = c.current_dir(dir.path()).output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}{err}");
    // The control socket is the first thing it tries; it names it.
    let socket = dir
        .path()
        .join("state")
        .join(plantwire::control::SOCKET_FILE);
    assert!(err.contains(&socket.display().to_string()), "{err}");
    assert!(err.contains("permission denied"), "{err}");
    assert!(err.contains("run as root or the plantwire user"), "{err}");
    assert!(!err.contains("no plantwire store"), "{err}");

    // With the directory open but the data key 0600: the refused operation and its path, the OS
    // error once, and what to do.
    let state = dir.path().join("state");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = std::process::Command::new("setpriv");
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(crate::process::BIN)
        .args(["device", "list", "--config", cfg.to_str().unwrap()]);
    crate::process::clean(&mut c);
    let o = c.current_dir(dir.path()).output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}{err}");
    let key = state.join("data.key");
    assert!(
        err.contains(&format!("cannot read secret file {}", key.display())),
        "{err}"
    );
    assert_eq!(err.matches("os error 13").count(), 1, "once: {err}");
    assert!(err.contains("run this as root or as that user"), "{err}");
}

#[test]
fn init_on_an_existing_store_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cheap_config(dir.path());
    let c = cfg.to_str().unwrap();
    let out = ok(&run_in(dir.path(), &["init", "--config", c]));
    assert!(out.contains("created the store"), "{out}");
    let state = dir.path().join("state");
    let store = std::fs::read(state.join("plantwire.redb")).unwrap();
    // The key moves elsewhere (a systemd credential this shell does not see): a second `init`
    // must neither make a new key nor open (and migrate) the store.
    let key = state.join("data.key");
    std::fs::rename(&key, dir.path().join("key-elsewhere")).unwrap();
    let out = ok(&run_in(dir.path(), &["init", "--config", c]));
    assert!(out.contains("exists already"), "{out}");
    assert!(!key.exists(), "a stray data key was made");
    assert_eq!(std::fs::read(state.join("plantwire.redb")).unwrap(), store);
}
