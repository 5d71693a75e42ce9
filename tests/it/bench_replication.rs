//! `bench replication` in process with a tiny load: the edge fills and ships exactly the events
//! it counts over the real TLS transport, HQ acknowledges them all, the wire figures add up, and
//! HQ's forwarder drains the replica into the real `nats-server -js` (when installed); the link
//! emulator carries bytes intact and replication through it ends on the same head at both ends.

use plantwire::bench::jetstream::Outcome::{Forwarded, Skipped};
use plantwire::bench::link::{LinkSpec, Relay};
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
            adaptive_batches: false,
            nats_server: None,
            link: None,
        };
        let o = run_both(&b).await.unwrap();
        let names: Vec<_> = o.runs.iter().map(|r| (r.name, r.entries)).collect();
        assert_eq!(
            names,
            [("loopback", 300), ("catch-up", 200), ("shipper cap", 100)],
            "{payload:?}"
        );
        let h = o.heads.as_ref().unwrap();
        assert_eq!((h.edge_seq, &h.edge_hash), (h.hq_seq, &h.hq_hash));
        assert!(o.runs.iter().all(|r| r.link_bytes.is_none()));
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

/// The link emulator carries a stream intact both ways, half-closes included, delays a round
/// trip by at least its RTT and counts what it carried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_relay_carries_bytes_intact_both_ways() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    // Upstream: reads to EOF, answers the bytes reversed, closes.
    let server = tokio::spawn(async move {
        let (mut s, _) = upstream.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        got.reverse();
        s.write_all(&got).await.unwrap();
        s.shutdown().await.unwrap();
        got.len()
    });
    let spec = LinkSpec::parse("8mbit,40ms").unwrap();
    let relay = Relay::start(up_addr, spec).await.unwrap();
    let sent: Vec<u8> = (0..150_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let started = std::time::Instant::now();
    let mut c = tokio::net::TcpStream::connect(relay.addr()).await.unwrap();
    c.write_all(&sent).await.unwrap();
    c.shutdown().await.unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(server.await.unwrap(), sent.len());
    back.reverse();
    assert!(back == sent, "the bytes came back altered");
    assert!(
        elapsed >= spec.rtt,
        "a round trip through a {:?} RTT link took {elapsed:?}",
        spec.rtt
    );
    let n = sent.len() as u64;
    assert_eq!(relay.carried(), (n, n));
    relay.stop().await;

    // The delay alone, without a rate cap: a few bytes there and back take at least the RTT.
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = echo.accept().await.unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).await.unwrap();
        s.write_all(&b).await.unwrap();
    });
    let spec = LinkSpec::parse("none,40ms").unwrap();
    let relay = Relay::start(echo_addr, spec).await.unwrap();
    let mut c = tokio::net::TcpStream::connect(relay.addr()).await.unwrap();
    let started = std::time::Instant::now();
    c.write_all(b"ping").await.unwrap();
    let mut b = [0u8; 4];
    c.read_exact(&mut b).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(&b, b"ping");
    assert!(
        elapsed >= spec.rtt,
        "4 bytes there and back through a {:?} RTT link took {elapsed:?}",
        spec.rtt
    );
    relay.stop().await;
}

/// Replication through the link emulator: every event shipped once, both ends on the same head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_replication_through_the_link_arrives_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let b = ReplicationBench {
        dir: dir.path().to_path_buf(),
        mode: Mode::Both,
        events: 400,
        backlog: 0,
        capped_events: 0,
        cap_bytes_per_sec: 0,
        body_bytes: 300,
        payload: Payload::Telemetry,
        batch_entries: 64,
        batch_bytes: 1 << 20,
        adaptive_batches: true,
        nats_server: None,
        link: Some(LinkSpec::parse("10mbit,20ms").unwrap()),
    };
    let o = run_both(&b).await.unwrap();
    let names: Vec<_> = o.runs.iter().map(|r| (r.name, r.entries)).collect();
    assert_eq!(names, [("link", 400)]);
    let h = o.heads.as_ref().unwrap();
    assert!(h.edge_seq >= 400, "{h:?}");
    assert_eq!((h.edge_seq, &h.edge_hash), (h.hq_seq, &h.hq_hash));
    // The run went through the relay: its deflated frames crossed it (the shipper's batches grow
    // past the 64 entries `wire` re-encodes, so they deflate a little better), and acks came back.
    let (up, down) = o.runs[0].link_bytes.unwrap();
    assert!(up >= o.wire.frame_deflated / 2, "{up} vs {:?}", o.wire);
    assert!(down > 0);
}
