//! The shipper's batch size on a link where round trips dominate: from `batch_entries` up to four
//! times it, sized from two measured round trips. It never changes what is acknowledged.
//!
//! One batch is in flight at a time (exactly-once rests on it: the cursor moves only on HQ's
//! ack), so each batch pays a fixed cost `a` (the RTT, HQ's commit) beside a cost `b` per entry
//! (the link's rate, or HQ's CPU): a round trip of `n` entries takes `a + b·n`, and the link is
//! busy `b·n / (a + b·n)` of the time. With a backlog, after a full batch of the configured size
//! the next one is twice as large; the two round trips give `a` and `b`, and the size that keeps
//! the link busy [`BUSY`] of the time, `n = a/b · BUSY/(1-BUSY)`, holds for the rest of the
//! session, within `[batch_entries, GROWTH × batch_entries]` (at most [`CEILING`]).

use std::time::Duration;

/// The share of each round trip the batch's own entries should take.
pub const BUSY: f64 = 0.9;
/// How far past `batch_entries` a batch may grow.
pub const GROWTH: usize = 4;
/// The largest batch, as `replication.batch_entries` allows at most.
pub const CEILING: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Sizer {
    floor: usize,
    ceiling: usize,
    limit: usize,
    /// The previous full batch: entries and round trip.
    last: Option<(usize, Duration)>,
    /// A size was chosen from two round trips; no more probing in this session.
    settled: bool,
}

impl Sizer {
    /// Starts at `batch_entries`; `adaptive = false` keeps it there.
    pub fn new(batch_entries: usize, adaptive: bool) -> Self {
        let floor = batch_entries.max(1);
        let ceiling = if adaptive {
            floor.saturating_mul(GROWTH).min(CEILING).max(floor)
        } else {
            floor
        };
        Self {
            floor,
            ceiling,
            limit: floor,
            last: None,
            settled: false,
        }
    }

    /// The entries of the next batch.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Records an acknowledged batch of `n` entries, `took` from sending to HQ's answer. Only
    /// batches cut at the limit count: a shorter one means the edge has caught up (or hit
    /// `batch_bytes`), and says nothing about the link's pace under a backlog.
    pub fn record(&mut self, n: usize, took: Duration) {
        if self.settled || self.ceiling == self.floor || n < self.limit || n == 0 {
            return;
        }
        match self.last.replace((n, took)) {
            Some((n0, t0)) if n0 != n => {
                self.limit = self.fit((n0, t0), (n, took));
                self.settled = true;
            }
            _ => self.limit = n.saturating_mul(2).min(self.ceiling),
        }
    }

    /// The size from the line through two round trips.
    fn fit(&self, (n0, t0): (usize, Duration), (n1, t1): (usize, Duration)) -> usize {
        let (n0, n1) = (n0 as f64, n1 as f64);
        let (t0, t1) = (t0.as_secs_f64(), t1.as_secs_f64());
        let b = (t1 - t0) / (n1 - n0);
        let a = t0 - b * n0;
        let want = if b <= 0.0 {
            // The larger batch took no longer: the round trip is all fixed cost.
            self.ceiling as f64
        } else if a <= 0.0 {
            self.floor as f64
        } else {
            a / b * BUSY / (1.0 - BUSY)
        };
        (want.round() as usize).clamp(self.floor, self.ceiling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A round trip of `n` entries on a link with fixed cost `a_ms` and `b_us` per entry.
    fn rt(a_ms: u64, b_us: u64, n: usize) -> Duration {
        Duration::from_millis(a_ms) + Duration::from_micros(b_us * n as u64)
    }

    #[test]
    fn a_long_round_trip_grows_batches_to_the_ceiling_and_a_short_one_keeps_them() {
        // 1 Mbit/s, 100 ms RTT: ~50 B/event is 400 µs each; a/b · 9 = 2,250 → the ceiling.
        let mut s = Sizer::new(512, true);
        s.record(512, rt(100, 400, 512));
        assert_eq!(s.limit(), 1024, "a full batch probes twice the size");
        s.record(1024, rt(100, 400, 1024));
        assert_eq!(s.limit(), 2048);
        // Settled: more full batches keep it, whatever they took.
        s.record(2048, rt(100, 400, 2048));
        assert_eq!(s.limit(), 2048);
        s.record(2048, rt(1, 400, 2048));
        s.record(2048, rt(1, 10, 2048));
        assert_eq!(s.limit(), 2048);
        // Settled below the ceiling, a full batch at the new size does not fit again.
        let mut s = Sizer::new(512, true);
        s.record(512, rt(20, 100, 512));
        s.record(1024, rt(20, 100, 1024));
        assert_eq!(s.limit(), 1800);
        s.record(1800, rt(1, 400, 1800));
        assert_eq!(s.limit(), 1800);

        // 1 Mbit/s, no added delay: 5 ms of fixed cost against 400 µs/entry → 113 → the floor.
        let mut s = Sizer::new(512, true);
        s.record(512, rt(5, 400, 512));
        s.record(1024, rt(5, 400, 1024));
        assert_eq!(s.limit(), 512);

        // In between: 20 ms against 100 µs/entry → 1,800.
        let mut s = Sizer::new(512, true);
        s.record(512, rt(20, 100, 512));
        s.record(1024, rt(20, 100, 1024));
        assert_eq!(s.limit(), 1800);
    }

    #[test]
    fn short_batches_fixed_mode_and_noise_stay_within_bounds() {
        // A batch shorter than the limit (caught up) changes nothing.
        let mut s = Sizer::new(512, true);
        s.record(100, rt(100, 400, 100));
        assert_eq!(s.limit(), 512);
        // Not adaptive: never moves.
        let mut s = Sizer::new(512, false);
        s.record(512, rt(100, 400, 512));
        assert_eq!(s.limit(), 512);
        // The larger batch answered faster (noise): the ceiling, never past it.
        let mut s = Sizer::new(512, true);
        s.record(512, Duration::from_millis(300));
        s.record(1024, Duration::from_millis(200));
        assert_eq!(s.limit(), 2048);
        // Everything per entry, no fixed cost: the floor.
        let mut s = Sizer::new(512, true);
        s.record(512, Duration::from_millis(100));
        s.record(1024, Duration::from_millis(300));
        assert_eq!(s.limit(), 512);
        // The ceiling stays within batch_entries' own bound.
        let s = Sizer::new(9_000, true);
        assert_eq!((s.floor, s.ceiling), (9_000, CEILING));
    }
}
