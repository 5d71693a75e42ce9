//! Time as a service: the system clock in production, a settable one in tests.
//! Everything that stamps, expires or waits for a time asks a `Clock`, never `SystemTime` directly,
//! so a test drives token expiry, shelving timers and retention by moving its clock.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// A future a clock hands out for waiting.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Microseconds since the Unix epoch, UTC.
    fn now_us(&self) -> i64;

    /// Resolves once `now_us() >= at_us`. Timers wait through this, never through
    /// `tokio::time` directly, so tests can move time.
    fn sleep_until(&self, at_us: i64) -> Sleep<'_>;
}

#[derive(Debug, Default)]
pub struct SystemClock;

/// The longest single wait of the system clock: a wall-clock step (NTP, a boot without RTC) is
/// noticed within this.
const MAX_WAIT: Duration = Duration::from_secs(1);

impl Clock for SystemClock {
    fn now_us(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    fn sleep_until(&self, at_us: i64) -> Sleep<'_> {
        Box::pin(async move {
            loop {
                let left = at_us.saturating_sub(self.now_us());
                if left <= 0 {
                    return;
                }
                let left = Duration::from_micros(u64::try_from(left).unwrap_or(0));
                tokio::time::sleep(left.min(MAX_WAIT)).await;
            }
        })
    }
}

/// A clock that only moves when told to; sleepers wake when it passes their time.
#[derive(Debug)]
pub struct ManualClock(watch::Sender<i64>);

impl ManualClock {
    pub fn new(now_us: i64) -> Self {
        Self(watch::Sender::new(now_us))
    }

    pub fn advance_us(&self, by: i64) {
        self.0.send_modify(|t| *t = t.saturating_add(by));
    }

    /// Sets the time, forwards or backwards (a wall-clock step).
    pub fn set_us(&self, now_us: i64) {
        self.0.send_replace(now_us);
    }
}

impl Clock for ManualClock {
    fn now_us(&self) -> i64 {
        *self.0.borrow()
    }

    fn sleep_until(&self, at_us: i64) -> Sleep<'_> {
        let mut rx = self.0.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock, which outlives this borrow.
            let _ = rx.wait_for(|now| *now >= at_us).await;
        })
    }
}

/// UTC µs as RFC 3339 with microseconds; empty if out of range.
pub fn rfc3339_us(us: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000) else {
        return String::new();
    };
    let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
    let (h, mi, s, micro) = (t.hour(), t.minute(), t.second(), t.microsecond());
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{micro:06}Z")
}

#[cfg(test)]
mod tests {
    use super::{Clock, ManualClock};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_manual_sleeper_wakes_when_the_clock_passes_its_time() {
        let clock = Arc::new(ManualClock::new(1_000));
        let c = clock.clone();
        let sleeper = tokio::spawn(async move { c.sleep_until(5_000).await });
        tokio::task::yield_now().await;
        clock.advance_us(1_000);
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance_us(3_000);
        tokio::time::timeout(std::time::Duration::from_secs(5), sleeper)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(clock.now_us(), 5_000);
    }
}
