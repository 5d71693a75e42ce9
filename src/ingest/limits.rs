//! Per-device token buckets for ingest, in memory: each device may publish `burst` events at once
//! and `rate_per_sec` on average. The map is bounded; idle devices (full buckets) are evicted first.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::EventsConfig;

/// Devices tracked at most; past it the idle ones are dropped (they come back with a full bucket,
/// which is what they would have anyway).
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_us: i64,
}

/// The token buckets of every device that published lately.
#[derive(Debug)]
pub struct RateLimiter {
    cfg: EventsConfig,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Refused: the device is past its rate; it may retry after this many seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after_secs: u64,
}

impl RateLimiter {
    pub fn new(cfg: &EventsConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn limits_of(&self, device: &str) -> (f64, f64) {
        match self.cfg.device_rates.get(device) {
            Some(r) => (r.rate_per_sec, f64::from(r.burst)),
            None => (self.cfg.rate_per_sec, f64::from(self.cfg.burst)),
        }
    }

    /// Takes `cost` tokens (events) from `device`'s bucket at `now_us`. A request larger than the
    /// whole bucket costs the whole bucket, so a full bucket always admits one request.
    pub fn admit(&self, device: &str, cost: usize, now_us: i64) -> Result<(), Limited> {
        let (rate, burst) = self.limits_of(device);
        let cost = (cost as f64).min(burst);
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(device) {
            evict_idle(&mut buckets, now_us, rate, burst);
        }
        // Looked up by `&str` first: a device already tracked costs no allocation per publish.
        if !buckets.contains_key(device) {
            buckets.insert(
                device.to_string(),
                Bucket {
                    tokens: burst,
                    at_us: now_us,
                },
            );
        }
        let Some(b) = buckets.get_mut(device) else {
            return Ok(());
        };
        let elapsed = (now_us.saturating_sub(b.at_us)).max(0) as f64 / 1e6;
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at_us = now_us.max(b.at_us);
        if b.tokens >= cost {
            b.tokens -= cost;
            Ok(())
        } else {
            let wait = ((cost - b.tokens) / rate).ceil().max(1.0);
            Err(Limited {
                retry_after_secs: wait as u64,
            })
        }
    }
}

/// Drops every bucket that has refilled by now; if none has, the longest idle half.
fn evict_idle(buckets: &mut HashMap<String, Bucket>, now_us: i64, rate: f64, burst: f64) {
    let full_after_us = (burst / rate * 1e6) as i64;
    buckets.retain(|_, b| now_us.saturating_sub(b.at_us) < full_after_us);
    if buckets.len() >= MAX_TRACKED {
        let mut ages: Vec<i64> = buckets.values().map(|b| b.at_us).collect();
        ages.sort_unstable();
        let cut = ages[ages.len() / 2];
        buckets.retain(|_, b| b.at_us > cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(rate: f64, burst: u32) -> EventsConfig {
        EventsConfig {
            rate_per_sec: rate,
            burst,
            ..EventsConfig::default()
        }
    }

    #[test]
    fn the_burst_passes_then_retry_after_is_the_time_to_refill() {
        let l = RateLimiter::new(&cfg(2.0, 3));
        for _ in 0..3 {
            assert!(l.admit("a", 1, 0).is_ok());
        }
        assert_eq!(
            l.admit("a", 1, 0),
            Err(Limited {
                retry_after_secs: 1
            })
        );
        assert_eq!(
            l.admit("a", 3, 0),
            Err(Limited {
                retry_after_secs: 2
            })
        );
        // Another device has its own bucket.
        assert!(l.admit("b", 1, 0).is_ok());
        // Half a second later one token is back.
        assert!(l.admit("a", 1, 500_000).is_ok());
        // A request bigger than the bucket costs the whole bucket.
        assert!(l.admit("c", 10, 0).is_ok());
    }

    #[test]
    fn an_override_replaces_the_default_for_its_device() {
        let mut c = cfg(1.0, 1);
        c.device_rates.insert(
            "pump-7".into(),
            crate::config::DeviceRate {
                rate_per_sec: 1.0,
                burst: 5,
            },
        );
        let l = RateLimiter::new(&c);
        for _ in 0..5 {
            assert!(l.admit("pump-7", 1, 0).is_ok());
        }
        assert!(l.admit("pump-7", 1, 0).is_err());
        assert!(l.admit("other", 1, 0).is_ok());
        assert!(l.admit("other", 1, 0).is_err());
    }
}
