//! `bench replication` in process with a tiny load: the edge fills and ships exactly the events
//! it counts over the real TLS transport, HQ acknowledges them all, the wire figures add up, and
//! HQ's forwarder drains the replica into the real `nats-server -js` (when installed).

use plantwire::bench::jetstream::Outcome::{Forwarded, Skipped};
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
            nats_server: None,
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
        assert!(w.frame_deflated < w.frame_v2_deflated, "v3 beats v2: {w:?}");
        assert_eq!(o.codecs.len(), 7);
        assert!(o.codecs.iter().all(|c| c.bytes_per_event > 0.0));
        // The JetStream row: HQ's forwarder drained every replicated entry (startup entries
        // included), or the row says why not.
        match o.jetstream {
            Some(Forwarded { entries, .. }) => assert!(entries >= 600, "{entries}"),
            Some(Skipped(why)) => {
                assert!(
                    plantwire::bench::jetstream::find_on_path().is_none(),
                    "nats-server is there, yet: {why}"
                );
                assert_eq!(why, "skipped: nats-server not found");
            }
            None => panic!("no JetStream row"),
        }
    }
    // The scratch state directories are removed.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
