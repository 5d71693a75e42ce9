//! Logging: tracing to the journal under systemd (`JOURNAL_STREAM` set), else to stderr, filtered
//! by `RUST_LOG` or the configured level; how an error chain is printed; the panic hook.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber once; later calls (tests) are ignored.
pub fn init(level: &str) {
    // `target=level` directives only (no span or field filters): no regex engine in the binary.
    let from_env = std::env::var("RUST_LOG").ok().and_then(|v| {
        crate::config::log_filter(&v)
            .inspect_err(|e| eprintln!("plantwire: RUST_LOG ignored: {e}"))
            .ok()
    });
    let filter = from_env
        .or_else(|| crate::config::log_filter(level).ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let registry = tracing_subscriber::registry().with(filter);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        match tracing_journald::layer() {
            Ok(journal) => {
                let _ = registry
                    .with(journal.with_syslog_identifier("plantwire".into()))
                    .try_init();
                return;
            }
            Err(e) => eprintln!("plantwire: journald unavailable ({e}); logging to stderr"),
        }
    }
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    let _ = registry.with(stderr).try_init();
}

/// An error and its causes on one line, each cause once: a cause whose text the message above it
/// already carries (many errors quote their source) is not repeated. A refusal by the operating
/// system (EACCES, EPERM) ends with what to do about it, since the message alone names only the
/// operation that was refused.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    let mut denied = false;
    for cause in e.chain() {
        denied |= cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied);
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    if denied {
        text.push_str(PERMISSION_HINT);
    }
    text
}

/// What to do when the system refuses: the state directory belongs to the service's user.
pub const PERMISSION_HINT: &str = " (the state directory and its files belong to the service's user: run this as root or as that user, e.g. `sudo plantwire …` or `sudo -u plantwire plantwire …`)";

/// A duration as a log field: milliseconds, to a tenth (`ms=3.2`, not `ms=3.2138430000000002`).
pub fn millis(d: std::time::Duration) -> f64 {
    let tenths = u32::try_from(d.as_micros() / 100).unwrap_or(u32::MAX);
    f64::from(tenths) / 10.0
}

/// A panic is a bug: log it with its backtrace, then abort so systemd restarts a clean process.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let backtrace = std::backtrace::Backtrace::force_capture();
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        tracing::error!(%location, %payload, %backtrace, "panic; aborting");
        eprintln!("plantwire: panic at {location}: {payload}\n{backtrace}");
        std::process::abort();
    }));
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn an_os_error_is_printed_once() {
        let io = std::io::Error::from_raw_os_error(98);
        let os = io.to_string();
        let e = anyhow::Error::new(io).context(format!("cannot write /x: {os}"));
        let text = super::error_text(&e);
        assert_eq!(text.matches(&os).count(), 1, "{text}");
        let e = anyhow::Error::new(std::io::Error::from_raw_os_error(98)).context("binding");
        assert_eq!(super::error_text(&e), format!("binding: {os}"));
    }

    #[test]
    fn durations_are_logged_to_a_tenth_of_a_millisecond() {
        assert_eq!(
            super::millis(Duration::from_nanos(3_213_843)).to_string(),
            "3.2"
        );
        assert_eq!(super::millis(Duration::from_micros(25)).to_string(), "0");
        assert_eq!(
            super::millis(Duration::from_millis(1500)).to_string(),
            "1500"
        );
    }
}
