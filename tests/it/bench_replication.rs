//! `bench replication` in process with a tiny load: the edge fills and ships exactly the events
//! it counts over the real TLS transport, HQ acknowledges them all, and the wire figures add up.

use plantwire::bench::replication::{Mode, Payload, ReplicationBench, run_both};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_replication_ships_every_event_it_counts_and_measures_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    for payload in [Payload::Telemetry, Payload::Random] {
        let b = ReplicationBench {
            dir: dir.path().to_path_buf(),
            mode: Mode::Both,
            events: 300,
            backlog: 200,
            capped_events: 100,
            cap_bytes_per_sec: 10 << 20,
            body_bytes: 300,
            payload,
            batch_entries: 64,
            batch_bytes: 1 << 20,
        };
        let o = run_both(&b).await.unwrap();
        let names: Vec<_> = o.runs.iter().map(|r| (r.name, r.entries)).collect();
        assert_eq!(
            names,
            [("loopback", 300), ("catch-up", 200), ("shipper cap", 100)],
            "{payload:?}"
        );
        let w = &o.wire;
        assert_eq!(w.entries, 300);
        assert_eq!(w.batches, 5, "300 events in batches of 64");
        let body = w.body_json / w.entries;
        assert!((280..=300).contains(&body), "{body} B of JSON per event");
        assert!(w.frame_plain > w.body_json);
        assert!(w.frame_deflated < w.frame_plain, "{w:?}");
    }
    // The scratch state directories are removed.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
