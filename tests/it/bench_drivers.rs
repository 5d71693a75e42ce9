//! The benchmark drivers against a real server: `bench ingest` publishes exactly the events it
//! counts, one per request and in batches, over HTTP/1.1 and HTTP/2.

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
