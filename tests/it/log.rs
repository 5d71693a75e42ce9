//! The log through the real server: dense seqs under concurrency, a verifying chain, tamper
//! detection, sealed bodies, back-pressure, and refusal of a foreign key or newer schema.

use std::sync::Arc;

use plantwire::log::{Problem, verify};
use plantwire::store::{LogRecord, Store, StoreError};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::support::TestServer;

/// The on-disk table the tamper tests reach behind the server's back.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log_seq_record");

fn store_path(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join(plantwire::bootstrap::STORE_FILE)
}

/// Rewrites one stored record with `f`, with the server stopped.
fn tamper(dir: &std::path::Path, seq: u64, f: impl FnOnce(&mut LogRecord)) {
    let db = redb::Database::open(store_path(dir)).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(LOG).unwrap();
        let mut rec = LogRecord::decode(t.get(seq).unwrap().unwrap().value()).unwrap();
        f(&mut rec);
        t.insert(seq, rec.encode().unwrap().as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

fn raw_record(dir: &std::path::Path, seq: u64) -> Vec<u8> {
    let db = redb::Database::open(store_path(dir)).unwrap();
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(LOG).unwrap();
    t.get(seq).unwrap().unwrap().value().to_vec()
}

/// Runs the offline audit with the server stopped.
fn audit(dir: &std::path::Path) -> plantwire::log::VerifyReport {
    let config = crate::support::test_config(dir);
    let (store, key, site) = plantwire::state::open_offline(&config).unwrap();
    verify(&store, &site, &key).unwrap()
}

#[tokio::test]
async fn concurrent_appends_get_dense_seqs_and_the_chain_verifies() {
    let server = TestServer::start().await;
    let token = server.device("pump-7").await;
    let client = server.client();
    let base = server.head_seq();
    let mut tasks = Vec::new();
    for t in 0..16 {
        let client = client.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..25 {
                let res = client.event(&token, &format!("task {t} event {i}")).await;
                assert_eq!(res.status, 201);
                seqs.push(res.json()["seq"].as_u64().unwrap());
            }
            seqs
        }));
    }
    let mut all: Vec<u64> = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    // After the first-start entries and the device registration, the 400 events follow densely.
    assert_eq!(all, (base + 1..=base + 400).collect::<Vec<u64>>());
    // A batch gets consecutive seqs in one commit.
    let res = client
        .post_json(
            "/api/v1/events/batch",
            Some(&token),
            &serde_json::json!({"events": [
                {"source": "a", "type": "x"}, {"source": "b", "type": "y"}, {"source": "c", "type": "z"}
            ]}),
        )
        .await;
    assert_eq!(res.status, 201);
    assert_eq!(
        res.json()["seqs"],
        serde_json::json!([base + 401, base + 402, base + 403])
    );
    let dir = server.stop().await;
    let report = audit(dir.path());
    assert!(report.ok(), "{report:?}");
    let last = base + 403;
    assert_eq!(
        (report.entries, report.first_seq, report.last_seq),
        (last, Some(1), Some(last))
    );
}

#[tokio::test]
async fn audit_names_the_first_altered_entry() {
    let server = TestServer::start().await;
    let token = server.device("pump-7").await;
    for i in 0..10 {
        assert_eq!(
            server.client().event(&token, &format!("e{i}")).await.status,
            201
        );
    }
    let dir = server.stop().await;
    assert!(audit(dir.path()).ok());
    let original = raw_record(dir.path(), 5);

    // A rewritten sealed body no longer opens.
    tamper(dir.path(), 5, |r| {
        let n = r.sealed.ciphertext.len();
        r.sealed.ciphertext[n / 2] ^= 0x01;
    });
    let report = audit(dir.path());
    assert!(
        matches!(report.problem, Some(Problem::Unreadable { seq: 5, .. })),
        "{report:?}"
    );
    restore(dir.path(), 5, &original);
    assert!(audit(dir.path()).ok());

    // A changed clear field (the author) breaks the hash.
    let before = raw_record(dir.path(), 7);
    tamper(dir.path(), 7, |r| r.author = "device:someone-else".into());
    let report = audit(dir.path());
    assert_eq!(report.problem, Some(Problem::HashMismatch { seq: 7 }));
    restore(dir.path(), 7, &before);

    // A rewritten stored hash no longer matches the content.
    tamper(dir.path(), 7, |r| r.hash[0] ^= 0xff);
    let report = audit(dir.path());
    assert_eq!(report.problem, Some(Problem::HashMismatch { seq: 7 }));
    restore(dir.path(), 7, &before);

    // A forged entry with a consistent own hash breaks the link from the next one.
    tamper(dir.path(), 7, |r| r.prev[0] ^= 0xff);
    let report = audit(dir.path());
    assert_eq!(report.problem, Some(Problem::BrokenLink { seq: 7 }));
    restore(dir.path(), 7, &before);
    assert!(audit(dir.path()).ok());

    // Flip one byte of the file itself, inside the stored record of seq 4.
    let rec4 = raw_record(dir.path(), 4);
    let path = store_path(dir.path());
    let mut file = std::fs::read(&path).unwrap();
    let needle = &rec4[rec4.len() - 24..];
    let mut hits = 0;
    let mut at = 0;
    while let Some(pos) = find(&file[at..], needle) {
        file[at + pos + 3] ^= 0x80;
        at += pos + needle.len();
        hits += 1;
    }
    assert!(hits > 0, "the record's bytes are in the file");
    std::fs::write(&path, &file).unwrap();
    let report = audit(dir.path());
    match &report.problem {
        Some(Problem::Unreadable { seq: 4, .. }) | Some(Problem::StoreDamaged { .. }) => {}
        other => panic!("a flipped byte must be reported, got {other:?}"),
    }
}

fn restore(dir: &std::path::Path, seq: u64, raw: &[u8]) {
    let db = redb::Database::open(store_path(dir)).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(LOG).unwrap().insert(seq, raw).unwrap();
    txn.commit().unwrap();
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn bodies_are_not_readable_in_the_file() {
    let server = TestServer::start().await;
    let token = server.device("pump-7").await;
    let marker = "gauge-reading-PLAINTEXT-7f3a9c";
    let res = server.client().event(&token, marker).await;
    let seq = res.json()["seq"].as_u64().unwrap();
    // It is stored and readable through the key...
    let log = server.state().log();
    let entry = log.entry(&log.read().unwrap(), seq).unwrap().unwrap();
    assert!(String::from_utf8(entry.body).unwrap().contains(marker));
    let dir = server.stop().await;
    // ...but not in the file.
    let file = std::fs::read(store_path(dir.path())).unwrap();
    assert!(
        find(&file, marker.as_bytes()).is_none(),
        "plaintext body found in the store file"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("data.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn a_full_queue_answers_503_and_the_server_stays_responsive() {
    let server = TestServer::start_with(|c| c.storage.queue_capacity = 2).await;
    let token = server.device("pump-7").await;
    let client = server.client();
    let seq = server.state().log().clone();

    // Hold the writer inside a batch until we let it go.
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    let mut started_tx = Some(started_tx);
    let blocker = tokio::spawn({
        let seq = seq.clone();
        async move {
            seq.submit(move |_tx| {
                if let Some(s) = started_tx.take() {
                    let _ = s.send(());
                }
                let _ = wait.recv();
                Ok(())
            })
            .await
        }
    });
    started.await.unwrap();

    // Two appends fill the queue.
    let queued: Vec<_> = (0..2)
        .map(|i| {
            let client = client.clone();
            let token = token.clone();
            tokio::spawn(async move { client.event(&token, &format!("queued {i}")).await })
        })
        .collect();
    for _ in 0..500 {
        if seq.queue_depth() == 2 {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(seq.queue_depth(), 2);

    let res = client.event(&token, "one too many").await;
    assert_eq!(res.status, 503);
    assert_eq!(res.error_code(), "busy");
    assert_eq!(res.headers["retry-after"], "1");
    assert_eq!(client.get("/healthz").await.status, 200);

    release.send(()).unwrap();
    blocker.await.unwrap().unwrap();
    for q in queued {
        assert_eq!(q.await.unwrap().status, 201);
    }
    assert_eq!(client.event(&token, "after").await.status, 201);
    server.stop().await;
}

#[tokio::test]
async fn a_foreign_key_or_a_newer_schema_is_refused() {
    let server = TestServer::start().await;
    let dir = server.stop().await;
    // Another data key for the same store.
    let mut config = crate::support::test_config(dir.path());
    config.storage.data_key = Some(base64_key(9));
    let metrics = Arc::new(plantwire::metrics::Metrics::new());
    let err = plantwire::state::open_log(&config, Arc::new(plantwire::clock::SystemClock), metrics)
        .unwrap_err();
    assert!(err.to_string().contains("data key does not match"), "{err}");

    // A schema from the future.
    {
        let db = redb::Database::open(store_path(dir.path())).unwrap();
        let txn = db.begin_write().unwrap();
        let meta: TableDefinition<&str, &[u8]> = TableDefinition::new("meta_name_value");
        txn.open_table(meta)
            .unwrap()
            .insert("schema_version", 99u32.to_be_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(&store_path(dir.path()), 1 << 20).unwrap_err();
    assert!(
        matches!(err, StoreError::Downgrade { found: 99, .. }),
        "{err}"
    );
}

fn base64_key(byte: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

/// The running server signs its head by policy (every 5 entries here); `audit verify` checks
/// every checkpoint; a start with another signing key is refused and names the file.
#[tokio::test]
async fn the_server_checkpoints_its_head_and_a_swapped_key_is_refused() {
    let server = TestServer::start_with(|c| c.storage.checkpoint_every = 5).await;
    let mut hub = server.state().log().subscribe();
    let token = server.device("pump-7").await;
    for i in 0..12 {
        assert_eq!(
            server.client().event(&token, &format!("e{i}")).await.status,
            201
        );
    }
    let mut checkpoints = Vec::new();
    while checkpoints.len() < 2 {
        let e = tokio::time::timeout(std::time::Duration::from_secs(30), hub.recv())
            .await
            .expect("a checkpoint within 30 s")
            .unwrap();
        if e.kind == plantwire::log::checkpoint::KIND_CHECKPOINT {
            checkpoints.push(e.seq);
        }
    }
    let dir = server.stop().await;
    let report = audit(dir.path());
    assert!(report.ok(), "{report:?}");
    assert!(report.checkpoints >= 2, "{report:?}");

    // Another key in the file: the start is refused, nothing is re-signed under it.
    let key_file = dir.path().join(plantwire::bootstrap::SIGNING_KEY_FILE);
    let original = std::fs::read(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    plantwire::bootstrap::ensure_signing_key(dir.path()).unwrap();
    let config = crate::support::test_config(dir.path());
    let err =
        match plantwire::state::AppState::prepare(config, Arc::new(plantwire::clock::SystemClock))
            .await
        {
            Ok(_) => panic!("a swapped signing key must be refused"),
            Err(e) => e.to_string(),
        };
    assert!(err.contains("site-signing.key"), "{err}");
    std::fs::write(&key_file, original).unwrap();
    let server = TestServer::start_in(dir, |_| {}).await;
    server.stop().await;
}
