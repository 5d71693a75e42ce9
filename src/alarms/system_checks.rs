//! The system alarms beyond the disk: write queue saturated, TLS certificate expiring, clock
//! stepped back, alarm flood, replication lag. Each is a pure reading → signal step plus a sync that writes only
//! on a change; `system::run` calls them on every check.

use std::sync::Arc;

use crate::config::{AlarmsConfig, SystemAlarm};
use crate::log::tx::{CLOCK_STREAM, KIND_CLOCK_STEPPED};
use crate::log::{Author, Log, SubmitError};
use crate::store::{AlarmRow, Priority};

use super::read::ReadError;
use super::system::SOURCE;
use super::{AlarmEntry, Signal};

pub const QUEUE_SATURATED: &str = "queue.saturated";
pub const CERT_EXPIRING: &str = "tls.cert_expiring";
pub const CLOCK_STEPPED: &str = "clock.stepped";
pub const ALARM_FLOOD: &str = "alarm.flood";
/// The replication lag alarm of a site is `replication.lag.<site>`.
pub const REPLICATION_LAG: &str = "replication.lag";

/// More than this many annunciated alarms within [`FLOOD_WINDOW_US`] is a flood (EEMUA 191).
pub const FLOOD_OVER: usize = 10;
pub const FLOOD_WINDOW_US: i64 = 10 * 60_000_000;
/// Most alarm entries one flood check reads.
const FLOOD_SCAN: usize = 4096;
/// Checks in a row the write queue must be over its threshold before the alarm is raised.
pub const QUEUE_CHECKS: u32 = 2;
const DAY_US: i64 = 86_400_000_000;

/// What the certificates expire: `(which, not after µs)`, read at each check (renewal swaps them).
pub type CertExpiries = Arc<dyn Fn() -> Vec<(&'static str, i64)> + Send + Sync>;

/// How far behind replication is, in seconds, per site (one at an edge, every enrolled site at
/// HQ); the composition root builds it from the replication runtime.
pub type LagProbe =
    Arc<dyn Fn() -> futures_util::future::BoxFuture<'static, Vec<(String, u64)>> + Send + Sync>;

/// What the system checks read besides the log and config.
#[derive(Clone, Default)]
pub struct Probes {
    pub certs: Option<CertExpiries>,
    pub queue_capacity: usize,
    pub replication_lag: Option<LagProbe>,
}

/// Memory between checks: how many checks in a row found the queue over its threshold.
#[derive(Debug, Default)]
pub struct Memory {
    pub queue_over: u32,
}

fn signal(condition: &str, active: bool, priority: Priority, message: String) -> Signal {
    Signal {
        source: SOURCE.into(),
        condition: condition.into(),
        active,
        priority: Some(priority),
        message: Some(message),
        attributes: Default::default(),
        latched: None,
        suppressed: None,
    }
}

/// Whether the write queue holding `depth` of `capacity` is over `percent` percent.
pub fn queue_over(depth: usize, capacity: usize, percent: u8) -> bool {
    depth.saturating_mul(100) >= capacity.saturating_mul(usize::from(percent))
}

/// The queue alarm after a reading: active once `over` checks in a row were over the threshold.
pub fn queue_signal(depth: usize, capacity: usize, over: u32, percent: u8) -> Signal {
    signal(
        QUEUE_SATURATED,
        over >= QUEUE_CHECKS,
        Priority::High,
        format!(
            "the write queue holds {depth} of {capacity} jobs (alarm at {percent} % for {QUEUE_CHECKS} checks)"
        ),
    )
}

/// The certificate alarm: active while any certificate ends within `days` of `now_us`.
pub fn cert_signal(certs: &[(&'static str, i64)], now_us: i64, days: u32) -> Signal {
    let limit = now_us.saturating_add(i64::from(days) * DAY_US);
    let soonest = certs.iter().min_by_key(|(_, t)| *t);
    let (active, message) = match soonest {
        Some((which, t)) if *t <= limit => (
            true,
            format!(
                "the {which} expires in {} days (alarm within {days} days)",
                (t - now_us).div_euclid(DAY_US)
            ),
        ),
        Some((which, t)) => (
            false,
            format!(
                "the {which} expires in {} days",
                (t - now_us).div_euclid(DAY_US)
            ),
        ),
        None => (false, "no certificate to watch".into()),
    };
    signal(CERT_EXPIRING, active, Priority::High, message)
}

/// The flood alarm: active while more than [`FLOOD_OVER`] alarms were annunciated in the window.
pub fn flood_signal(count: usize) -> Signal {
    signal(
        ALARM_FLOOD,
        count > FLOOD_OVER,
        Priority::High,
        format!(
            "{count}{} alarms annunciated in the last 10 minutes (flood above {FLOOD_OVER})",
            if count > FLOOD_OVER { "+" } else { "" }
        ),
    )
}

/// The lag alarm of `site` checked at site `here`: active while replication is more than
/// `limit_secs` behind. About another site (at HQ) its source is `site/<site>`, so only those
/// who may read that site see it ([`super::AlarmScope`]); about this site it is `plantwire`'s.
pub fn lag_signal(site: &str, behind_secs: u64, limit_secs: u64, here: &str) -> Signal {
    let mut s = signal(
        &format!("{REPLICATION_LAG}.{site}"),
        behind_secs > limit_secs,
        Priority::High,
        format!(
            "replication of site {site} is {behind_secs} s behind (alarm above {limit_secs} s)"
        ),
    );
    if site != here {
        s.source = super::scope::site_source(site);
    }
    s
}

/// Clears the lag alarms HQ raised about other sites before they took source `site/<name>`:
/// then HQ raised `replication.lag.<site>` on source `plantwire`, and today's checks (on
/// `site/<site>`) never clear those, so one still active would stand forever and every user
/// would see it, grant or not. Each is cleared as `system` with a message saying why (its
/// `alarm.*` entry like every transition); the lag alarm of this site itself (an edge's own,
/// on `plantwire`) is not legacy and is left alone. One read when there is nothing to clear.
/// Returns how many it cleared.
pub async fn clear_legacy_lag(log: &Log) -> Result<usize, SubmitError> {
    let prefix = format!("{REPLICATION_LAG}.");
    let own = format!("{prefix}{}", log.site());
    let rows = log
        .read()
        .map_err(storage)?
        .alarm_currents(Some(SOURCE))
        .map_err(storage)?;
    let mut cleared = 0;
    for row in rows {
        let Some(site) = row.condition.strip_prefix(&prefix) else {
            continue;
        };
        if !row.input_active || row.condition == own {
            continue;
        }
        let message = format!(
            "cleared: a lag alarm from before site-scoped alarms; site {site}'s replication lag is \
             now raised on source {}",
            super::scope::site_source(site)
        );
        let mut s = signal(&row.condition, false, row.priority, message);
        s.source = SOURCE.into();
        super::raise(log, &Author::System, s).await?;
        cleared += 1;
    }
    Ok(cleared)
}

fn storage(e: impl Into<crate::store::StoreError>) -> SubmitError {
    SubmitError::Storage(Arc::new(e.into()))
}

fn current(log: &Log, source: &str, condition: &str) -> Result<Option<AlarmRow>, SubmitError> {
    let rtx = log.read().map_err(storage)?;
    match rtx.alarm_current(source, condition).map_err(storage)? {
        Some(id) => rtx.alarm(id).map_err(storage),
        None => Ok(None),
    }
}

/// Raises or clears `signal` as `system` only when the input changes (no job otherwise).
pub async fn sync(log: &Log, signal: Signal) -> Result<(), SubmitError> {
    let now = current(log, &signal.source, &signal.condition)?;
    if now
        .as_ref()
        .map_or(!signal.active, |c| c.input_active == signal.active)
    {
        return Ok(());
    }
    super::raise(log, &Author::System, signal).await.map(|_| ())
}

/// Annunciated alarms (not plantwire's own, nor HQ's about a site) logged in the window ending now, counted up to one
/// over the flood limit.
fn flood_count(log: &Log) -> Result<usize, ReadError> {
    let rtx = log.read()?;
    let now = log.now_us();
    let seqs = rtx.alarm_seqs_by_time(now.saturating_sub(FLOOD_WINDOW_US), now, FLOOD_SCAN)?;
    let system = Author::System.to_string();
    let mut n = 0;
    for seq in seqs {
        let Some(e) = log.entry(&rtx, seq)? else {
            continue;
        };
        if e.kind != "alarm.raise" {
            continue;
        }
        let b: AlarmEntry =
            serde_json::from_slice(&e.body).map_err(|source| ReadError::Body { seq, source })?;
        let a = &b.alarm;
        if a.source != SOURCE
            && !(e.author == system && super::scope::site_of(&a.source).is_some())
            && a.active
            && a.priority != Priority::Diagnostic
            && a.shelf.is_none()
            && a.out_of_service.is_none()
            && !a.suppressed
        {
            n += 1;
            if n > FLOOD_OVER {
                break;
            }
        }
    }
    Ok(n)
}

/// The newest `clock.stepped` entry: its seq and a message.
fn newest_step(log: &Log) -> Result<Option<(u64, String)>, ReadError> {
    let rtx = log.read()?;
    let head = log.head(&rtx)?;
    let Some(&seq) = rtx.stream_seqs_newest(CLOCK_STREAM, 0, head, 1)?.first() else {
        return Ok(None);
    };
    Ok(log
        .entry(&rtx, seq)?
        .filter(|e| e.kind == KIND_CLOCK_STEPPED)
        .map(|e| {
            (
                seq,
                format!(
                    "the wall clock stepped back (entry {seq}: {})",
                    String::from_utf8_lossy(&e.body)
                ),
            )
        }))
}

/// A clock step not yet signalled: raises and clears the clock alarm (it stays `rtn_unack` until
/// someone acknowledges it), once per `clock.stepped` entry.
async fn clock_check(log: &Log) -> Result<(), SubmitError> {
    let (step, msg) = match newest_step(log) {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "reading the clock steps failed");
            return Ok(());
        }
    };
    if current(log, SOURCE, CLOCK_STEPPED)?.is_some_and(|r| r.last_seq > step) {
        return Ok(());
    }
    let raise = signal(CLOCK_STEPPED, true, Priority::Medium, msg);
    let clear = Signal {
        active: false,
        ..raise.clone()
    };
    log.submit(move |tx| {
        super::apply_in_tx(tx, &Author::System, &raise)?;
        super::apply_in_tx(tx, &Author::System, &clear)
    })
    .await
    .map(|_| ())
}

/// Runs the checks once.
pub async fn check_all(
    log: &Log,
    cfg: &AlarmsConfig,
    probes: &Probes,
    memory: &mut Memory,
) -> Result<(), SubmitError> {
    let on = |a| cfg.system_alarms.contains(&a);
    if on(SystemAlarm::Queue) {
        let depth = log.queue_depth();
        let cap = probes.queue_capacity;
        if queue_over(depth, cap, cfg.queue_alarm_percent) {
            memory.queue_over = memory.queue_over.saturating_add(1);
        } else {
            memory.queue_over = 0;
        }
        let s = queue_signal(depth, cap, memory.queue_over, cfg.queue_alarm_percent);
        sync(log, s).await?;
    }
    if on(SystemAlarm::Certificate)
        && let Some(certs) = &probes.certs
    {
        sync(
            log,
            cert_signal(&certs(), log.now_us(), cfg.cert_alarm_days),
        )
        .await?;
    }
    if on(SystemAlarm::Clock) {
        clock_check(log).await?;
    }
    if on(SystemAlarm::Flood) {
        match flood_count(log) {
            Ok(n) => sync(log, flood_signal(n)).await?,
            Err(e) => tracing::warn!(error = %e, "counting annunciated alarms failed"),
        }
    }
    if probes.replication_lag.is_some() {
        // A failure here must not cost this tick its lag checks: logged, retried next tick.
        if let Err(e) = clear_legacy_lag(log).await {
            tracing::warn!(error = %e, "clearing legacy lag alarms failed");
        }
    }
    if on(SystemAlarm::ReplicationLag)
        && let Some(lag) = &probes.replication_lag
    {
        for (site, behind) in lag().await {
            let signal = lag_signal(&site, behind, cfg.replication_lag_secs, log.site());
            sync(log, signal).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readings_map_to_signals() {
        assert!(queue_over(80, 100, 80) && !queue_over(79, 100, 80));
        assert!(!queue_signal(90, 100, 1, 80).active);
        assert!(queue_signal(90, 100, 2, 80).active);
        let now = 1_000 * DAY_US;
        assert!(cert_signal(&[("a", now + 13 * DAY_US)], now, 14).active);
        assert!(!cert_signal(&[("a", now + 15 * DAY_US)], now, 14).active);
        assert!(!cert_signal(&[], now, 14).active);
        assert!(!flood_signal(10).active && flood_signal(11).active);
        assert!(
            !lag_signal("north", 600, 600, "hq").active
                && lag_signal("north", 601, 600, "hq").active
        );
        let at_hq = lag_signal("north", 0, 600, "hq");
        assert_eq!(at_hq.condition, "replication.lag.north");
        assert_eq!(at_hq.source, "site/north");
        assert_eq!(lag_signal("north", 0, 600, "north").source, SOURCE);
    }

    /// HQ `north` with a legacy lag alarm about `east` (source `plantwire`) standing, one about
    /// `west` already cleared, its own lag alarm on `plantwire`, and today's `site/east` alarm.
    #[tokio::test]
    async fn legacy_lag_alarms_about_other_sites_are_cleared_with_a_reason_once() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(crate::clock::ManualClock::new(1_700_000_000_000_000));
        let log = crate::alarms::tests::open(dir.path(), clock);
        let legacy = |site: &str, active: bool| {
            signal(
                &format!("{REPLICATION_LAG}.{site}"),
                active,
                Priority::High,
                format!("replication of site {site} is far behind"),
            )
        };
        for s in [
            legacy("east", true),
            legacy("west", true),
            legacy("west", false),
            legacy("north", true),
            lag_signal("east", 900, 600, "north"),
        ] {
            crate::alarms::raise(&log, &Author::System, s)
                .await
                .unwrap();
        }
        let head = {
            let rtx = log.read().unwrap();
            log.head(&rtx).unwrap()
        };

        assert_eq!(clear_legacy_lag(&log).await.unwrap(), 1);

        let rtx = log.read().unwrap();
        let row = |source: &str, site: &str| {
            let id = rtx
                .alarm_current(source, &format!("{REPLICATION_LAG}.{site}"))
                .unwrap()
                .unwrap();
            rtx.alarm(id).unwrap().unwrap()
        };
        assert!(!row(SOURCE, "east").input_active);
        assert!(
            row(SOURCE, "north").input_active,
            "this site's own is not legacy"
        );
        assert!(
            row("site/east", "east").input_active,
            "today's alarm stands"
        );
        // One entry, by the system, saying why.
        let new: Vec<_> = ((head + 1)..=log.head(&rtx).unwrap())
            .map(|s| log.entry(&rtx, s).unwrap().unwrap())
            .collect();
        assert_eq!(new.len(), 1);
        assert!(new[0].kind.starts_with(crate::alarms::KIND_PREFIX));
        assert_eq!(new[0].author, Author::System.to_string());
        let body: AlarmEntry = serde_json::from_slice(&new[0].body).unwrap();
        assert_eq!(body.alarm.source, SOURCE);
        assert_eq!(body.alarm.condition, "replication.lag.east");
        assert!(
            body.alarm.message.contains("source site/east"),
            "{}",
            body.alarm.message
        );
        drop(rtx);
        // Nothing left: the next check writes nothing.
        assert_eq!(clear_legacy_lag(&log).await.unwrap(), 0);
    }
}
