//! plantwire's own alarms, raised and cleared by `system` through the same model: the state
//! directory's disk almost full here; queue, certificate, clock and flood in `system_checks.rs`.
//! A background task checks by the server clock.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use crate::config::{AlarmsConfig, SystemAlarm};
use crate::log::{Log, SubmitError};
use crate::store::Priority;

use super::Signal;

/// The source of every system alarm.
pub const SOURCE: &str = "plantwire";
/// The condition of the disk alarm.
pub const DISK_ALMOST_FULL: &str = "disk.almost_full";
/// The condition of the earlier disk warning.
pub const DISK_FILLING: &str = "disk.filling";

/// How full the file system holding `path` is, in percent, as `df` counts it (space reserved
/// for root counts as not available).
pub fn disk_used_percent(path: &Path) -> std::io::Result<f64> {
    let s = rustix::fs::statvfs(path).map_err(std::io::Error::from)?;
    let used = s.f_blocks.saturating_sub(s.f_bfree) as f64;
    let usable = used + s.f_bavail as f64;
    Ok(if usable > 0.0 {
        used * 100.0 / usable
    } else {
        0.0
    })
}

/// The disk alarm's signal for a reading: active above the threshold.
pub fn disk_signal(used_percent: f64, threshold: u8) -> Signal {
    let active = used_percent > f64::from(threshold);
    Signal {
        source: SOURCE.into(),
        condition: DISK_ALMOST_FULL.into(),
        active,
        priority: Some(Priority::High),
        message: Some(format!(
            "the state directory's disk is {used_percent:.1} % full (alarm above {threshold} %)"
        )),
        attributes: Default::default(),
        latched: None,
        suppressed: None,
    }
}

/// The earlier disk warning's signal for a reading: active above its threshold.
pub fn disk_warn_signal(used_percent: f64, threshold: u8) -> Signal {
    Signal {
        condition: DISK_FILLING.into(),
        priority: Some(Priority::Medium),
        message: Some(format!(
            "the state directory's disk is {used_percent:.1} % full (warning above {threshold} %)"
        )),
        ..disk_signal(used_percent, threshold)
    }
}

/// Checks now: raises or clears the disk warning and the disk alarm (a check that changes
/// nothing writes nothing: the usual case, every minute).
pub async fn check(log: &Log, cfg: &AlarmsConfig, state_dir: &Path) -> Result<(), SubmitError> {
    let used = match disk_used_percent(state_dir) {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the state directory's disk usage");
            return Ok(());
        }
    };
    let sync = super::system_checks::sync;
    sync(log, disk_warn_signal(used, cfg.disk_warn_percent)).await?;
    sync(log, disk_signal(used, cfg.disk_alarm_percent)).await
}

/// Runs the system checks (the disk here, the rest in `system_checks`) every
/// `cfg.system_check_secs` until `stop`.
pub async fn run(
    log: Log,
    cfg: AlarmsConfig,
    state_dir: PathBuf,
    probes: super::system_checks::Probes,
    stop: CancellationToken,
) {
    let every_us = i64::try_from(cfg.system_check_secs)
        .unwrap_or(60)
        .saturating_mul(1_000_000);
    let mut memory = super::system_checks::Memory::default();
    loop {
        let disk = if cfg.system_alarms.contains(&SystemAlarm::Disk) {
            check(&log, &cfg, &state_dir).await
        } else {
            Ok(())
        };
        let checked = match disk {
            Ok(()) => super::system_checks::check_all(&log, &cfg, &probes, &mut memory).await,
            Err(e) => Err(e),
        };
        match checked {
            Ok(()) => {}
            Err(SubmitError::ShuttingDown) => return,
            Err(e) => tracing::warn!(error = %e, "system alarm check failed"),
        }
        let clock = log.clock().clone();
        let next = log.now_us().saturating_add(every_us);
        tokio::select! {
            () = stop.cancelled() => return,
            () = clock.sleep_until(next) => {}
        }
    }
}
