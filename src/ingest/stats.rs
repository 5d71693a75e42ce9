//! Per-device ingest statistics for admins, in memory (they start from zero at every restart):
//! when a device last published, its events over the last minute, and how often it was refused.

use std::collections::HashMap;
use std::sync::Mutex;

/// One-second slots of the last minute.
const SLOTS: usize = 60;

#[derive(Debug, Clone)]
struct Device {
    last_seen_us: Option<i64>,
    /// Events per second, `slots[s % 60]` holding second `s` when `slot_secs[s % 60] == s`.
    slots: [u32; SLOTS],
    slot_secs: [i64; SLOTS],
    refused: u64,
}

impl Default for Device {
    fn default() -> Self {
        Self {
            last_seen_us: None,
            slots: [0; SLOTS],
            slot_secs: [i64::MIN; SLOTS],
            refused: 0,
        }
    }
}

/// What an admin sees of one device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// The last accepted publish (UTC µs), a duplicate included, if any since the start.
    pub last_seen_us: Option<i64>,
    /// Events accepted in the last 60 seconds.
    pub rate_per_min: u64,
    /// Requests refused since the start (any code).
    pub refused: u64,
}

/// The statistics of every device that published since the start. Devices are admin-created,
/// so the map is as bounded as the device table.
#[derive(Debug, Default)]
pub struct Stats {
    devices: Mutex<HashMap<String, Device>>,
}

impl Stats {
    /// Records an accepted request of `device` at `now_us` that stored `events` (0 for a
    /// duplicate).
    pub fn published(&self, device: &str, events: usize, now_us: i64) {
        let Ok(mut map) = self.devices.lock() else {
            return;
        };
        // Looked up by `&str` first: a device already tracked costs no allocation per publish.
        if !map.contains_key(device) {
            map.insert(device.to_string(), Default::default());
        }
        let Some(d) = map.get_mut(device) else {
            return;
        };
        d.last_seen_us = Some(now_us);
        let sec = now_us.div_euclid(1_000_000);
        let i = sec.rem_euclid(SLOTS as i64) as usize;
        if d.slot_secs[i] != sec {
            d.slot_secs[i] = sec;
            d.slots[i] = 0;
        }
        d.slots[i] = d.slots[i].saturating_add(u32::try_from(events).unwrap_or(u32::MAX));
    }

    /// Records one refused request from `device`.
    pub fn refused(&self, device: &str) {
        if let Ok(mut map) = self.devices.lock() {
            map.entry(device.to_string()).or_default().refused += 1;
        }
    }

    /// The statistics of `device` at `now_us`.
    pub fn of(&self, device: &str, now_us: i64) -> DeviceStats {
        let Ok(map) = self.devices.lock() else {
            return DeviceStats::default();
        };
        let Some(d) = map.get(device) else {
            return DeviceStats::default();
        };
        let sec = now_us.div_euclid(1_000_000);
        let rate = (0..SLOTS)
            .filter(|&i| d.slot_secs[i] > sec - SLOTS as i64 && d.slot_secs[i] <= sec)
            .map(|i| u64::from(d.slots[i]))
            .sum();
        DeviceStats {
            last_seen_us: d.last_seen_us,
            rate_per_min: rate,
            refused: d.refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_covers_the_last_minute_only() {
        let s = Stats::default();
        s.published("a", 5, 1_000_000);
        s.published("a", 2, 30_000_000);
        s.refused("a");
        let now = s.of("a", 30_500_000);
        assert_eq!(now.rate_per_min, 7);
        assert_eq!(now.last_seen_us, Some(30_000_000));
        assert_eq!(now.refused, 1);
        assert_eq!(s.of("a", 61_000_000).rate_per_min, 2);
        assert_eq!(s.of("a", 200_000_000).rate_per_min, 0);
        assert_eq!(s.of("b", 0), DeviceStats::default());
    }
}
