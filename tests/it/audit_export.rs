//! Audit exports an auditor checks alone: `site key` and `GET /api/v1/site/key` give the public
//! key, `audit export` (CLI through the running server, offline, and the admin API) writes JSON
//! Lines, and `audit verify --file` checks it in an empty directory with only that key; one
//! changed character anywhere fails, naming the line.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use hyper::Method;
use plantwire::store::Role;
use serde_json::{Value, json};

use crate::process::{Running, command, default_server_section, write_config};
use crate::support::{Client, TestServer};

fn run_in(dir: &Path, args: &[&str]) -> Output {
    command(args).current_dir(dir).output().unwrap()
}

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{:?}\n{out}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// `audit verify --file` run in `dir` (nothing else there): exit code and stdout.
fn verify_in(dir: &Path, export: &str, key: &str) -> (Option<i32>, String) {
    std::fs::write(dir.join("export.jsonl"), export).unwrap();
    std::fs::write(dir.join("site.pub"), key).unwrap();
    let o = run_in(
        dir,
        &[
            "audit",
            "verify",
            "--file",
            "export.jsonl",
            "--public-key",
            "site.pub",
        ],
    );
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.code(), text)
}

/// The export with the first character after `after` in line `n` (1-based) replaced by another
/// of its kind (a hex digit by a hex digit, a letter by a letter).
fn flip(export: &str, n: usize, after: &str) -> String {
    let mut lines: Vec<String> = export.lines().map(str::to_string).collect();
    let line = &mut lines[n - 1];
    let at = line.find(after).unwrap() + after.len();
    let was = line[at..].chars().next().unwrap();
    let now = match was {
        '0' => '1',
        c if c.is_ascii_hexdigit() => '0',
        'A' => 'B',
        _ => 'A',
    };
    line.replace_range(at..at + was.len_utf8(), &now.to_string());
    lines.join("\n") + "\n"
}

fn line_of(export: &str, pred: impl Fn(&Value) -> bool) -> usize {
    export
        .lines()
        .position(|l| pred(&serde_json::from_str(l).unwrap()))
        .unwrap()
        + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_verifies_in_an_empty_directory_and_one_changed_character_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), default_server_section());
    let c = cfg.to_str().unwrap();
    let server = Running::start(&cfg);
    let ca = std::fs::read_to_string(dir.path().join("state/tls/ca.crt")).unwrap();
    let client = Client::new(server.addr, &ca);
    let token = ok(&run_in(
        dir.path(),
        &["device", "add", "pump-7", "--config", c],
    ))
    .lines()
    .last()
    .unwrap()
    .trim()
    .to_string();
    for i in 0..5 {
        assert_eq!(
            client
                .event(&token, &format!("pressure high {i}"))
                .await
                .status,
            201
        );
    }

    // The key, through the running server and at its public URL: the same line.
    let key = ok(&run_in(dir.path(), &["site", "key", "--config", c]));
    assert!(key.starts_with("plantwire/bin-test+"), "{key}");
    let served = client.get("/api/v1/site/key").await;
    assert_eq!(served.status, 200);
    assert_eq!(String::from_utf8_lossy(&served.body), key);

    let out = dir.path().join("audit.jsonl");
    ok(&run_in(
        dir.path(),
        &[
            "audit",
            "export",
            "--config",
            c,
            "--out",
            out.to_str().unwrap(),
        ],
    ));
    let export = std::fs::read_to_string(&out).unwrap();
    let header: Value = serde_json::from_str(export.lines().next().unwrap()).unwrap();
    assert_eq!(header["format"], "plantwire-audit-export");
    assert_eq!(header["from"], 1);

    // An empty directory, no config, no state: only the export and the key.
    let fresh = tempfile::tempdir().unwrap();
    let (code, text) = verify_in(fresh.path(), &export, &key);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("export verifies"), "{text}");
    let mut left: Vec<_> = std::fs::read_dir(fresh.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["export.jsonl", "site.pub"], "it created nothing");

    // One changed character: in an event's body, a hash, a prev, a checkpoint's signature.
    let event = line_of(&export, |v| {
        v["kind"] == "event"
            && v["body"]
                .as_str()
                .is_some_and(|b| b.contains("pressure high 3"))
    });
    let checkpoint = line_of(&export, |v| v["kind"] == "log.checkpoint");
    let cases = [
        (event, flip(&export, event, "pressure high ")),
        (event, flip(&export, event, "\"hash\":\"")),
        (event, flip(&export, event, "\"prev\":\"")),
        (
            checkpoint,
            flip(&export, checkpoint, "\u{2014} plantwire/bin-test "),
        ),
        (1, export.replacen("\"to\":", "\"to\": ", 1)),
    ];
    for (line, changed) in cases {
        assert_ne!(changed, export);
        let (code, text) = verify_in(fresh.path(), &changed, &key);
        assert_eq!(code, Some(1), "{text}");
        assert!(
            text.contains(&format!("line {line}:")),
            "line {line}: {text}"
        );
    }
    // Cut short: the last line (the signing checkpoint) missing.
    let n = export.lines().count();
    let cut: String = export
        .lines()
        .take(n - 1)
        .map(|l| format!("{l}\n"))
        .collect();
    let (code, text) = verify_in(fresh.path(), &cut, &key);
    assert_eq!(code, Some(1), "{text}");
    // Another site's key.
    let other = "plantwire/bin-test+00000000+AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n";
    let (code, _) = verify_in(fresh.path(), &export, other);
    assert_eq!(code, Some(2), "a malformed key is a usage error");

    // Stopped: the same command exports from the store, a range by seq.
    server.signal("-TERM");
    assert!(server.wait(Duration::from_secs(10)).success());
    let out2 = dir.path().join("range.jsonl");
    ok(&run_in(
        dir.path(),
        &[
            "audit",
            "export",
            "--config",
            c,
            "--from",
            "3",
            "--to",
            "6",
            "--out",
            out2.to_str().unwrap(),
        ],
    ));
    let range = std::fs::read_to_string(&out2).unwrap();
    let header: Value = serde_json::from_str(range.lines().next().unwrap()).unwrap();
    assert_eq!(
        (header["from"].as_u64(), header["to"].as_u64()),
        (Some(3), Some(6))
    );
    let (code, text) = verify_in(fresh.path(), &range, &key);
    assert_eq!(code, Some(0), "{text}");
    // A range that holds nothing is refused as a usage error and writes no file.
    let o = run_in(
        dir.path(),
        &[
            "audit", "export", "--config", c, "--from", "9", "--to", "4", "--out", "x.jsonl",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(!dir.path().join("x.jsonl").exists());
}

const PW: &str = "correct horse battery";

async fn login(server: &TestServer, name: &str, role: Role) -> (Client, String) {
    server.user(name, role, PW).await;
    let c = server.client();
    let res = c
        .post_json(
            "/api/v1/auth/login",
            None,
            &json!({"username": name, "password": PW}),
        )
        .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    (c, res.json()["access_token"].as_str().unwrap().to_string())
}

async fn get(c: &Client, token: &str, path: &str) -> crate::support::Resp {
    c.send(
        c.request(Method::GET, path)
            .header("authorization", format!("Bearer {token}"))
            .body(Default::default())
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn admins_export_over_the_api_streamed_and_a_stream_export_withholds_other_bodies() {
    let server = TestServer::start().await;
    let token = server.device("pump-7").await;
    let device2 = server.device("pump-8").await;
    let c = server.client();
    for i in 0..3 {
        assert_eq!(c.event(&token, &format!("seven {i}")).await.status, 201);
        assert_eq!(c.event(&device2, &format!("eight {i}")).await.status, 201);
    }
    let (c, admin) = login(&server, "ada", Role::Admin).await;
    let key_text = String::from_utf8(c.get("/api/v1/site/key").await.body.to_vec()).unwrap();
    let key = plantwire::audit::SiteKey::parse(&key_text).unwrap();

    let res = get(&c, &admin, "/api/v1/audit/export").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.headers["content-type"], "application/x-ndjson");
    let report = plantwire::audit::check(&mut &res.body[..], &key).unwrap();
    assert_eq!(report.from, 1);
    assert_eq!(report.withheld, 0);

    let res = get(&c, &admin, "/api/v1/audit/export?stream=events/pump-7").await;
    assert_eq!(res.status, 200);
    let text = String::from_utf8(res.body.to_vec()).unwrap();
    let report = plantwire::audit::check(&mut text.as_bytes(), &key).unwrap();
    assert!(report.withheld >= 3, "{report:?}");
    assert!(
        text.contains("seven 2") && !text.contains("eight 2"),
        "{text}"
    );
    // An opened body where the header says it must be withheld fails.
    let line = line_of(&text, |v| v["stream"] == "events/pump-8");
    assert!(plantwire::audit::check(&mut text.as_bytes(), &key).is_ok());
    let v: Value = serde_json::from_str(text.lines().nth(line - 1).unwrap()).unwrap();
    assert_eq!(v["withheld"], "other_stream");

    // Bad ranges are 400 with a stable code; others than admins are refused.
    for q in ["from=9&to=2", "from=yesterday", "to=0", "bogus=1"] {
        let res = get(&c, &admin, &format!("/api/v1/audit/export?{q}")).await;
        assert_eq!(res.status, 400, "{q}");
        let code = res.error_code();
        assert!(
            code == "invalid_range" || code == "invalid_query",
            "{q}: {code}"
        );
    }
    let (_, viewer) = login(&server, "vic", Role::Operator).await;
    assert_eq!(get(&c, &viewer, "/api/v1/audit/export").await.status, 403);
    assert_eq!(c.get("/api/v1/audit/export").await.status, 401);
}

/// `from` and `to` as RFC 3339 times pick the first entry at or after `from` and the last at or
/// before `to` (by the log's time, which never decreases).
#[tokio::test]
async fn an_export_by_time_takes_the_entries_between_the_two_times() {
    use plantwire::clock::ManualClock;
    const T0: i64 = 1_800_000_000_000_000;
    const HOUR: i64 = 3_600_000_000;
    let clock = std::sync::Arc::new(ManualClock::new(T0));
    let server = TestServer::start_full(tempfile::tempdir().unwrap(), clock.clone(), |_| {}).await;
    let token = server.device("pump-7").await;
    let c = server.client();
    let mut seqs = Vec::new();
    for h in 1..=4 {
        clock.set_us(T0 + h * HOUR);
        seqs.push(
            c.event(&token, &format!("hour {h}")).await.json()["seq"]
                .as_u64()
                .unwrap(),
        );
    }
    let (c, admin) = login(&server, "ada", Role::Admin).await;
    let rfc = |us: i64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    // From half past hour 1 to half past hour 3: the events of hours 2 and 3.
    let q = format!(
        "/api/v1/audit/export?from={}&to={}",
        rfc(T0 + HOUR + HOUR / 2),
        rfc(T0 + 3 * HOUR + HOUR / 2)
    );
    let res = get(&c, &admin, &q).await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    let text = String::from_utf8(res.body.to_vec()).unwrap();
    let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["from"].as_u64(), Some(seqs[1]));
    assert_eq!(header["to"].as_u64(), Some(seqs[2]));
    let key = plantwire::audit::SiteKey::new(
        server.state().log().site(),
        server.state().signer().public_key(),
    );
    let report = plantwire::audit::check(&mut text.as_bytes(), &key).unwrap();
    assert!(text.contains("hour 2") && text.contains("hour 3"));
    assert!(
        !text.contains("hour 4") && !text.contains("hour 1"),
        "{text}"
    );
    assert_eq!(report.to, seqs[2]);
}
