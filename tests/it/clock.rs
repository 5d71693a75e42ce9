//! The log's time when the wall clock steps back, driven through the injectable clock: `ts` never
//! decreases, and each step larger than `storage.clock_step_secs` is one `clock.stepped` entry.

use std::sync::Arc;

use plantwire::clock::ManualClock;
use plantwire::log::tx::{CLOCK_STREAM, ClockStepped, KIND_CLOCK_STEPPED};
use tempfile::TempDir;

use crate::support::TestServer;

const S: i64 = 1_000_000;
/// 2030-01-01T00:00:00Z, as the wall clock of a gateway that booted with its clock ahead.
const AHEAD: i64 = 1_893_456_000 * S;

/// Every entry after `after` as (seq, ts, kind, stream, body).
fn entries(server: &TestServer, after: u64) -> Vec<(u64, i64, String, String, Vec<u8>)> {
    let log = server.state().log();
    let rtx = log.read().unwrap();
    let mut out = Vec::new();
    rtx.scan_log(after + 1, |seq, raw| {
        let e = log.decode(seq, raw).unwrap();
        out.push((seq, e.ts, e.kind, e.stream, e.body));
        true
    })
    .unwrap();
    out
}

fn steps(server: &TestServer, after: u64) -> Vec<(i64, ClockStepped)> {
    entries(server, after)
        .into_iter()
        .filter(|e| e.2 == KIND_CLOCK_STEPPED)
        .map(|e| {
            assert_eq!(e.3, CLOCK_STREAM);
            (e.1, serde_json::from_slice(&e.4).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn a_backward_clock_step_is_recorded_once_and_ts_never_goes_back() {
    let clock = Arc::new(ManualClock::new(AHEAD));
    let server = TestServer::start_full(TempDir::new().unwrap(), clock.clone(), |c| {
        c.storage.clock_step_secs = 60;
    })
    .await;
    let token = server.device("pump-7").await;
    let c = server.client();
    assert_eq!(c.event(&token, "one").await.status, 201);
    let start = server.head_seq();

    // A step back within the threshold: ts holds, nothing recorded.
    clock.advance_us(-30 * S);
    assert_eq!(c.event(&token, "two").await.status, 201);
    assert!(steps(&server, 0).is_empty());

    // NTP corrects the clock by two hours: one entry, with both readings.
    clock.advance_us(-2 * 3600 * S);
    let corrected = AHEAD - 30 * S - 2 * 3600 * S;
    assert_eq!(c.event(&token, "three").await.status, 201);
    clock.advance_us(S);
    assert_eq!(c.event(&token, "four").await.status, 201);
    clock.advance_us(S);
    assert_eq!(c.event(&token, "five").await.status, 201);
    let got = steps(&server, 0);
    assert_eq!(got.len(), 1, "one entry per step: {got:?}");
    let (ts, step) = &got[0];
    assert_eq!(step.previous_us, AHEAD - 30 * S);
    assert_eq!(step.wall_us, corrected);
    assert_eq!(step.step_us, 2 * 3600 * S);
    assert_eq!(*ts, AHEAD, "the entry's own ts is the log's monotonic time");

    // ts never decreased and holds at the newest ts while the clock is behind it.
    let all = entries(&server, 0);
    assert!(all.windows(2).all(|w| w[0].1 <= w[1].1), "ts went back");
    assert!(all.iter().filter(|e| e.0 > start).all(|e| e.1 == AHEAD));

    // A second step is a second entry.
    clock.advance_us(-10 * 60 * S);
    assert_eq!(c.event(&token, "six").await.status, 201);
    let got = steps(&server, 0);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1].1.previous_us, corrected + 2 * S);
    assert_eq!(got[1].1.wall_us, corrected + 2 * S - 10 * 60 * S);
}

#[tokio::test]
async fn a_restart_with_the_clock_behind_the_log_is_recorded() {
    let clock = Arc::new(ManualClock::new(AHEAD));
    let server = TestServer::start_full(TempDir::new().unwrap(), clock, |_| {}).await;
    let token = server.device("pump-7").await;
    assert_eq!(server.client().event(&token, "ahead").await.status, 201);
    let dir = server.stop().await;

    // The next boot has the true time, a day earlier.
    let behind = AHEAD - 24 * 3600 * S;
    let clock = Arc::new(ManualClock::new(behind));
    let server = TestServer::start_full(dir, clock, |_| {}).await;
    assert_eq!(server.client().event(&token, "behind").await.status, 201);
    let got = steps(&server, 0);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1.previous_us, AHEAD);
    assert_eq!(got[0].1.wall_us, behind);
    let last = entries(&server, 0).pop().unwrap();
    assert_eq!(last.1, AHEAD, "ts holds");
}
