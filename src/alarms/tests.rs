//! Property test of the alarm domain through `Log` (temp redb, manual clock): seeded random walks
//! against a reference model written here; states match, and every transition is one entry.

use std::path::Path;
use std::sync::Arc;

use crate::clock::{Clock, ManualClock};
use crate::config::AlarmsConfig;
use crate::log::tests::options;
use crate::log::{Author, Log, SubmitError};
use crate::metrics::Metrics;
use crate::store::{DataKey, ShelveMode};

use super::{Applied, Command, Signal};

const MINUTE: i64 = 60_000_000;

pub(super) fn open(dir: &Path, clock: Arc<ManualClock>) -> Log {
    let key = DataKey::from_bytes(&[7u8; 32]).unwrap();
    Log::open(
        &dir.join("plantwire.redb"),
        "north",
        key,
        clock,
        &options(),
        Arc::new(Metrics::new()),
    )
    .unwrap()
}

/// splitmix64: a tiny seeded generator, so a failure replays with the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Raise,
    Clear,
    Ack,
    ShelveTimed(u32),
    ShelveOneShot,
    Unshelve,
    Oos,
    Rts,
    Reset,
    Latch(bool),
    Advance(i64),
}

/// The reference: one condition as the standard describes it, written without the machine.
#[derive(Debug, Clone, Default)]
struct Model {
    id: Option<u64>,
    occurrence: u64,
    input: bool,
    active: bool,
    acked: bool,
    latched: bool,
    /// (one-shot, until µs)
    shelf: Option<(bool, i64)>,
    oos: bool,
}

/// What the reference expects an op to do.
#[derive(Debug, PartialEq)]
enum Want {
    Written,
    Nothing,
    Refused(&'static str),
}

impl Model {
    fn normal(&self) -> bool {
        !self.active && self.acked
    }

    fn settle(&mut self) {
        if self.normal() && self.shelf.is_some_and(|(one_shot, _)| one_shot) {
            self.shelf = None;
        }
    }

    fn apply(&mut self, op: Op, now: i64, next_seq: u64, max_us: i64) -> Want {
        use Want::*;
        if self.id.is_none() && !matches!(op, Op::Raise | Op::Clear | Op::Latch(_)) {
            return Refused("no_such_alarm");
        }
        let want = match op {
            Op::Raise if self.id.is_none() || self.normal() => {
                self.id = Some(next_seq);
                self.occurrence += 1;
                self.input = true;
                self.active = true;
                self.acked = false;
                if self.shelf.is_some_and(|(one_shot, _)| one_shot) {
                    self.shelf = None;
                }
                Written
            }
            Op::Raise if self.input => Nothing,
            Op::Raise => {
                self.input = true;
                self.active = true;
                Written
            }
            Op::Clear if self.id.is_none() || !self.input => Nothing,
            Op::Clear => {
                self.input = false;
                if !self.latched {
                    self.active = false;
                }
                Written
            }
            Op::Latch(_) if self.id.is_none() => Nothing,
            Op::Latch(b) if b == self.latched => Nothing,
            Op::Latch(b) => {
                self.latched = b;
                if !b && !self.input {
                    self.active = false;
                }
                Written
            }
            Op::Ack if self.acked => Refused("already_acked"),
            Op::Ack => {
                self.acked = true;
                Written
            }
            Op::ShelveTimed(_) | Op::ShelveOneShot if self.shelf.is_some() => {
                Refused("already_shelved")
            }
            Op::ShelveOneShot if self.normal() => Refused("alarm_normal"),
            Op::ShelveOneShot => {
                self.shelf = Some((true, now + max_us));
                Written
            }
            Op::ShelveTimed(m) => {
                self.shelf = Some((false, now + i64::from(m) * MINUTE));
                Written
            }
            Op::Unshelve if self.shelf.is_none() => Refused("not_shelved"),
            Op::Unshelve => {
                self.shelf = None;
                self.acked = true;
                Written
            }
            Op::Oos if self.oos => Refused("already_out_of_service"),
            Op::Oos => {
                self.oos = true;
                Written
            }
            Op::Rts if !self.oos => Refused("not_out_of_service"),
            Op::Rts => {
                self.oos = false;
                Written
            }
            Op::Reset if !(self.latched && self.active && !self.input) => {
                Refused("nothing_to_reset")
            }
            Op::Reset => {
                self.active = false;
                Written
            }
            Op::Advance(_) => Nothing,
        };
        if want == Written {
            self.settle();
        }
        want
    }

    /// The timer: true when this condition's shelve ends at `now`.
    fn expire(&mut self, now: i64) -> bool {
        match self.shelf {
            Some((_, until)) if until <= now => {
                self.shelf = None;
                if self.active {
                    self.acked = false;
                }
                true
            }
            _ => false,
        }
    }
}

fn random_op(rng: &mut Rng) -> Op {
    match rng.below(14) {
        0..=2 => Op::Raise,
        3..=4 => Op::Clear,
        5..=6 => Op::Ack,
        7 => Op::ShelveTimed(1 + rng.below(30) as u32),
        8 => Op::ShelveOneShot,
        9 => Op::Unshelve,
        10 => {
            if rng.below(2) == 0 {
                Op::Oos
            } else {
                Op::Rts
            }
        }
        11 => Op::Reset,
        12 => Op::Latch(rng.below(2) == 0),
        _ => Op::Advance(rng.below(40) as i64),
    }
}

const CONDITIONS: [&str; 3] = ["pressure.high", "level.low", "temp.high"];

async fn run_seed(seed: u64, steps: usize) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000_000));
    let log = open(dir.path(), clock.clone());
    let cfg = AlarmsConfig {
        max_shelve_minutes: 60,
        ..AlarmsConfig::default()
    };
    let max_us = i64::from(cfg.max_shelve_minutes) * MINUTE;
    let by = Author::user("olga");
    let mut rng = Rng(seed);
    let mut models = vec![Model::default(); CONDITIONS.len()];
    let head = |log: &Log| log.head(&log.read().unwrap()).unwrap();
    for step in 0..steps {
        let c = rng.below(CONDITIONS.len() as u64) as usize;
        let op = random_op(&mut rng);
        let before = head(&log);
        let now = clock.now_us();
        let ctx = format!("seed {seed} step {step}: {op:?} on {}", CONDITIONS[c]);
        if let Op::Advance(m) = op {
            clock.advance_us(m * MINUTE + 1);
            let now = clock.now_us();
            let expected: u64 = models.iter_mut().map(|m| u64::from(m.expire(now))).sum();
            let n = super::timers::expire_due(&log).await.unwrap();
            assert_eq!(n as u64, expected, "{ctx}: expiries");
            assert_eq!(head(&log), before + expected, "{ctx}: one entry per expiry");
        } else {
            let want = models[c].apply(op, now, before + 1, max_us);
            let got = match op {
                Op::Raise | Op::Clear | Op::Latch(_) => {
                    let active = match op {
                        Op::Raise => true,
                        Op::Clear => false,
                        _ => models[c].input,
                    };
                    let signal = Signal {
                        source: "tank-1".into(),
                        condition: CONDITIONS[c].into(),
                        active,
                        priority: None,
                        message: None,
                        attributes: Default::default(),
                        latched: match op {
                            Op::Latch(b) => Some(b),
                            _ => None,
                        },
                        suppressed: None,
                    };
                    match super::raise(&log, &by, signal).await.unwrap() {
                        Applied::Changed(_) => Want::Written,
                        Applied::Unchanged(_) => Want::Nothing,
                    }
                }
                _ => {
                    let cmd = match op {
                        Op::Ack => Command::Ack { comment: None },
                        Op::ShelveTimed(m) => Command::Shelve {
                            mode: ShelveMode::Timed,
                            minutes: Some(m),
                            reason: "test".into(),
                        },
                        Op::ShelveOneShot => Command::Shelve {
                            mode: ShelveMode::OneShot,
                            minutes: None,
                            reason: "test".into(),
                        },
                        Op::Unshelve => Command::Unshelve,
                        Op::Oos => Command::OutOfService {
                            reason: "test".into(),
                        },
                        Op::Rts => Command::ReturnToService,
                        _ => Command::Reset,
                    };
                    let id = models[c].id.unwrap_or(u64::MAX);
                    match super::act(&log, &cfg, &by, &super::AlarmScope::All, id, cmd).await {
                        Ok(_) => Want::Written,
                        Err(SubmitError::Rejected(r)) => Want::Refused(r.code),
                        Err(e) => panic!("{ctx}: {e}"),
                    }
                }
            };
            assert_eq!(got, want, "{ctx}");
            let written = u64::from(want == Want::Written);
            assert_eq!(
                head(&log),
                before + written,
                "{ctx}: one entry per transition"
            );
            if written == 1 {
                let rtx = log.read().unwrap();
                let e = log.entry(&rtx, before + 1).unwrap().unwrap();
                assert!(e.kind.starts_with("alarm."), "{ctx}");
                assert_eq!(e.stream, super::stream_of(models[c].id.unwrap()), "{ctx}");
            }
        }
        // The views agree with the reference for every condition.
        let rtx = log.read().unwrap();
        for (i, m) in models.iter().enumerate() {
            let current = rtx.alarm_current("tank-1", CONDITIONS[i]).unwrap();
            assert_eq!(
                current, m.id,
                "seed {seed} step {step}: id of {}",
                CONDITIONS[i]
            );
            let Some(id) = current else { continue };
            let row = rtx.alarm(id).unwrap().unwrap();
            let got = (
                row.occurrence,
                row.input_active,
                row.active,
                row.acked,
                row.latched,
                row.shelf
                    .as_ref()
                    .map(|s| (s.mode == ShelveMode::OneShot, s.until_us)),
                row.out_of_service.is_some(),
            );
            let want = (
                m.occurrence,
                m.input,
                m.active,
                m.acked,
                m.latched,
                m.shelf,
                m.oos,
            );
            assert_eq!(got, want, "seed {seed} step {step}: {}", CONDITIONS[i]);
        }
    }
    // Every entry still verifies.
    let report = log.verify().unwrap();
    assert!(report.problem.is_none(), "{:?}", report.problem);
    log.close().await;
}

#[tokio::test]
async fn random_walks_match_the_reference_model_with_one_entry_per_transition() {
    for seed in [1, 2, 3, 0xA1A2] {
        run_seed(seed, 300).await;
    }
}
