//! Login throttling with growing delays, per (user, address), per address and per user. Bounded
//! in memory; delays are capped, so an attacker cannot lock a real user out for long, and the
//! per-user limit is far above the per-(user, address) one so the user can still sign in elsewhere.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy)]
struct Slot {
    failures: u32,
    until_us: i64,
    last_us: i64,
}

/// One throttle: after `after` failures, each further failure doubles the wait, up to `max_us`.
#[derive(Debug)]
pub struct Throttle {
    slots: Mutex<HashMap<String, Slot>>,
    after: u32,
    max_us: i64,
    capacity: usize,
}

impl Throttle {
    pub fn new(after: u32, max_secs: u64, capacity: usize) -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            after,
            max_us: i64::try_from(max_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX),
            capacity: capacity.max(16),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(seconds)` while `key` must wait.
    pub fn check(&self, key: &str, now_us: i64) -> Result<(), u64> {
        match self.lock().get(key) {
            Some(s) if s.until_us > now_us => {
                Err(((s.until_us - now_us) as u64).div_ceil(1_000_000))
            }
            _ => Ok(()),
        }
    }

    /// Records a failure; returns the new wait in seconds when this failure starts or extends one.
    pub fn fail(&self, key: &str, now_us: i64) -> Option<u64> {
        let mut slots = self.lock();
        if slots.len() >= self.capacity && !slots.contains_key(key) {
            // Forget idle entries first; if all are busy, forget the longest idle one.
            let max_us = self.max_us;
            slots.retain(|_, s| s.until_us > now_us || now_us - s.last_us < max_us);
            if slots.len() >= self.capacity
                && let Some(oldest) = slots
                    .iter()
                    .min_by_key(|(_, s)| s.last_us)
                    .map(|(k, _)| k.clone())
            {
                slots.remove(&oldest);
            }
        }
        let slot = slots.entry(key.to_string()).or_insert(Slot {
            failures: 0,
            until_us: 0,
            last_us: now_us,
        });
        // A long quiet spell forgives earlier failures.
        if now_us - slot.last_us > self.max_us {
            slot.failures = 0;
        }
        slot.failures = slot.failures.saturating_add(1);
        slot.last_us = now_us;
        if slot.failures < self.after {
            return None;
        }
        let exp = (slot.failures - self.after).min(30);
        let wait = (2_000_000i64 << exp).min(self.max_us);
        slot.until_us = now_us + wait;
        Some((wait as u64).div_ceil(1_000_000))
    }

    pub fn succeed(&self, key: &str) {
        self.lock().remove(key);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_cap_release_and_memory_is_bounded() {
        let t = Throttle::new(3, 10, 16);
        let mut now = 0;
        assert_eq!(t.fail("k", now), None);
        assert_eq!(t.fail("k", now), None);
        assert_eq!(t.fail("k", now), Some(2));
        assert_eq!(t.check("k", now), Err(2));
        now += 2_000_000;
        assert_eq!(t.check("k", now), Ok(()));
        assert_eq!(t.fail("k", now), Some(4));
        for _ in 0..10 {
            t.fail("k", now);
        }
        assert_eq!(t.check("k", now), Err(10), "capped at the maximum");
        t.succeed("k");
        assert_eq!(t.check("k", now), Ok(()));
        for i in 0..1000 {
            t.fail(&format!("spray-{i}"), now + i);
        }
        assert!(t.len() <= 16);
    }
}
