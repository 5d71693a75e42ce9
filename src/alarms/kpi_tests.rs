//! The KPI rows against the full read: random alarm histories through a real `Log` (temp redb,
//! manual clock), then the fast KPIs equal the ones computed from every entry, for many ranges.

use std::sync::Arc;

use crate::clock::{Clock, ManualClock};
use crate::config::AlarmsConfig;
use crate::log::{Author, Log};
use crate::store::{Priority, ShelveMode};

use super::kpis::{kpis_fast, kpis_full};
use super::{Command, Signal};

const SECOND: i64 = 1_000_000;

/// splitmix64, so a failure replays with the same seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n.max(1)
    }
}

fn signal(rng: &mut Rng, active: bool) -> Signal {
    Signal {
        source: format!("src-{}", rng.below(3)),
        condition: format!("c{}", rng.below(4)),
        active,
        priority: (rng.below(3) == 0).then(|| Priority::ALL[rng.below(5) as usize]),
        message: None,
        attributes: Default::default(),
        latched: None,
        suppressed: (rng.below(20) == 0).then(|| rng.below(2) == 0),
    }
}

async fn history(log: &Log, clock: &ManualClock, seed: u64, steps: usize) {
    let cfg = AlarmsConfig::default();
    let by = Author::user("olga");
    let mut rng = Rng(seed);
    for _ in 0..steps {
        // Mostly seconds apart (floods, chattering), now and then hours (stale alarms).
        let gap = match rng.below(10) {
            0 => 0,
            1 => rng.below(26 * 3600) as i64 * SECOND,
            _ => rng.below(90) as i64 * SECOND,
        };
        clock.advance_us(gap + 1);
        let op = rng.below(10);
        if op < 6 {
            let s = signal(&mut rng, op < 4);
            let _ = super::raise(log, &by, s).await;
            continue;
        }
        let ids: Vec<u64> = log
            .read()
            .unwrap()
            .alarm_currents(None)
            .unwrap()
            .iter()
            .map(|a| a.id)
            .collect();
        if ids.is_empty() {
            continue;
        }
        let id = ids[rng.below(ids.len() as u64) as usize];
        let cmd = match op {
            6 | 7 => Command::Ack { comment: None },
            8 => Command::Shelve {
                mode: if rng.below(2) == 0 {
                    ShelveMode::OneShot
                } else {
                    ShelveMode::Timed
                },
                minutes: None,
                reason: "test".into(),
            },
            _ => match rng.below(3) {
                0 => Command::Unshelve,
                1 => Command::OutOfService {
                    reason: "test".into(),
                },
                _ => Command::ReturnToService,
            },
        };
        let cmd = match cmd {
            Command::Shelve {
                mode: ShelveMode::Timed,
                reason,
                ..
            } => Command::Shelve {
                mode: ShelveMode::Timed,
                minutes: Some(1 + rng.below(30) as u32),
                reason,
            },
            other => other,
        };
        // Refusals (already acked, not shelved, …) write nothing; that is part of the walk.
        let _ = super::act(log, &cfg, &by, &super::AlarmScope::All, id, cmd).await;
        if rng.below(8) == 0 {
            let _ = super::timers::expire_due(log).await;
        }
    }
}

#[tokio::test]
async fn the_kpi_rows_give_exactly_the_kpis_of_the_full_read_on_random_histories() {
    for seed in [1u64, 7, 42] {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_700_000_000_000_000;
        let clock = Arc::new(ManualClock::new(t0));
        let log = super::tests::open(dir.path(), clock.clone());
        history(&log, &clock, seed, 600).await;
        let end = clock.now_us();
        let mut rng = Rng(seed ^ 0xABCD);
        let mut ranges = vec![(t0, end), (t0 - 3600 * SECOND, end + 3600 * SECOND)];
        for _ in 0..20 {
            let a = t0 + rng.below((end - t0) as u64) as i64;
            let b = a + 1 + rng.below((end - a) as u64) as i64;
            ranges.push((a, b));
        }
        let mut annunciated = 0;
        for (a, b) in ranges {
            assert!(log.read().unwrap().alarm_kpis_cover(a, b).unwrap());
            let fast = kpis_fast(&log, a, b, &crate::alarms::AlarmScope::All).unwrap();
            let full = kpis_full(&log, a, b, &crate::alarms::AlarmScope::All).unwrap();
            assert_eq!(fast, full, "seed {seed}, range {a}..{b}");
            annunciated += full.annunciated;
        }
        assert!(annunciated > 0, "seed {seed}: the walk annunciated nothing");
    }
}
