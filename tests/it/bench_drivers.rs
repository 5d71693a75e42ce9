//! The benchmark drivers against a real server: `bench ingest` publishes exactly the events it
//! counts, one per request and in batches, over HTTP/1.1 and HTTP/2; `bench chat` delivers every
//! message it counts to every socket in all three phases; `bench search` sends and indexes
//! exactly the chat it counts.

use plantwire::bench::ingest::{Credential, IngestBench, Proto, run};

use crate::support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_ingest_stores_every_event_it_counts_singly_and_in_batches() {
    let server = TestServer::start().await;
    let token = server.device("bench-1").await;
    let ca_file = server.path().join("bench-ca.pem");
    std::fs::write(&ca_file, server.state().tls().ca_pem().unwrap()).unwrap();
    for batch in [1, 40] {
        let before = server.head_seq();
        let b = IngestBench {
            addr: server.addr,
            ca_file: ca_file.clone(),
            credential: Credential::Token(token.clone()),
            publishers: vec![3],
            protos: vec![Proto::Http1, Proto::Http2],
            count: 150,
            batch,
            server_pid: None,
        };
        let results = run(&b).await.unwrap();
        assert_eq!(results.len(), 2);
        for r in &results {
            assert_eq!(r.events, 150, "{batch} per request over {}", r.proto.name());
            assert_eq!(r.batch, batch);
            assert_eq!(r.refused, 0);
        }
        assert_eq!(server.head_seq() - before, 300, "{batch} per request");
    }
}

/// `bench chat` counts what really arrived: every message reaches every socket of the group in
/// the closed loop, on the idle sockets and in the paced phase, and the server's log holds
/// exactly the messages the bench says it sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_chat_delivers_every_message_it_counts_to_every_socket() {
    use plantwire::bench::chat::{ChatBench, run};
    let server = TestServer::start().await;
    let ca_file = server.path().join("bench-ca.pem");
    std::fs::write(&ca_file, server.state().tls().ca_pem().unwrap()).unwrap();
    let b = ChatBench {
        addr: server.addr,
        ca_file,
        admin_password: server.admin_otp(),
        users: 4,
        senders: 2,
        messages: 40,
        idle: 30,
        server_pid: Some(std::process::id()),
    };
    let before = server.head_seq();
    let r = run(&b).await.unwrap();
    assert_eq!(r.acked, 40);
    assert_eq!(r.lost, 0);
    // Every one of the 4 sockets (the senders' own included) has all 40.
    assert_eq!(r.deliveries, 4 * 40);
    assert!(r.delivery.p50_us > 0 && r.delivery.max_us >= r.delivery.p99_us);
    // 20 messages to each idle socket in the closed loop.
    assert_eq!(r.idle_frames, 30 * 20);
    assert_eq!(r.idle_lost, 0);
    // The paced phase went to every idle socket (it is left out otherwise).
    let paced = r.paced.expect("the paced phase ran");
    assert_eq!(paced.sockets, 30);
    assert_eq!(paced.messages, 100);
    assert_eq!(paced.frames, 30 * 100);
    assert!(paced.to_last.p50_us > 0 && paced.to_last.max_us >= paced.to_last.p99_us);
    assert!(paced.cpu.server_us.is_some() && paced.cpu.client_us.is_some());
    // The log: 40 + 20 + 100 messages beside the set-up (users, sign-ins, the group).
    let log = server.state().log();
    let rtx = log.read().unwrap();
    let messages = (before + 1..=log.head(&rtx).unwrap())
        .filter_map(|n| log.entry(&rtx, n).unwrap())
        .filter(|e| e.kind == "chat.message")
        .count();
    assert_eq!(messages, 160);
}

/// `bench search` sends exactly the messages it counts (its export holds one line for each, the
/// same texts for the same seed), indexes all of them and finds what it queries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_search_indexes_every_message_it_sends_and_its_queries_find_them() {
    use plantwire::bench::search::{SearchBench, run};
    let dir = tempfile::tempdir().unwrap();
    let bench = |export: &str| SearchBench {
        dir: dir.path().to_path_buf(),
        messages: 1_200,
        rate_messages: 100,
        senders: 4,
        runs: 20,
        seed: 18,
        cache_mib: 8,
        export: Some(dir.path().join(export)),
    };
    let r = run(&bench("a.tsv")).await.unwrap();
    assert_eq!(r.messages, 1_200);
    let text = std::fs::read_to_string(dir.path().join("a.tsv")).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 1_200);
    let bytes: u64 = lines
        .iter()
        .map(|l| l.rsplit('\t').next().unwrap().len() as u64)
        .sum();
    assert_eq!(r.text_bytes, bytes);
    // The last phase (everything after the two rate phases) is indexed in one go.
    assert!(r.index_entries >= 1_200 - 400, "{r:?}");
    assert!(r.blocks > 0 && r.index_bytes > 0, "{r:?}");
    assert!(r.one_word_hits > 0.0 && r.two_words_hits > 0.0, "{r:?}");
    assert!(r.peak_rss_kib.is_some(), "{r:?}");
    // The same seed, the same chat (authors and texts; conversation ids are new each run).
    run(&bench("b.tsv")).await.unwrap();
    let again = std::fs::read_to_string(dir.path().join("b.tsv")).unwrap();
    let chat = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split_once('\t').unwrap().1.to_string())
            .collect()
    };
    assert!(
        chat(&text) == chat(&again),
        "the same seed gives the same chat"
    );
}
