//! Logging: tracing to the journal under systemd (`JOURNAL_STREAM` set), else to stderr, filtered
//! by `RUST_LOG` or the configured level; and the panic hook that logs a backtrace and aborts.

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
