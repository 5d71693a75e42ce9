//! `plantwire audit log`: the security events (sign-ins, failures, lockouts, ended sessions) read
//! from the store offline, newest first. Opens the store without a writer and changes nothing.

use std::process::ExitCode;

use crate::auth::audit::{self, Query};
use crate::config::Config;

/// Lists the events matching `kind` after `since`, at most `limit`, as lines or JSON.
pub fn run(
    config: &Config,
    kind: &str,
    since: Option<u64>,
    limit: Option<usize>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let query = Query::new(kind, since, limit).map_err(|r| anyhow::anyhow!("{}", r.message))?;
    let (store, key, site) = crate::state::open_offline(config)?;
    let rtx = store.read()?;
    let head = rtx.chain_head()?.map_or(0, |h| h.seq);
    let events = audit::list(&rtx, head, &query, |r, seq| {
        crate::log::read::entry(r, &site, &key, seq)
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&events)?);
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "store: {} ({} events, newest first)",
        config.state_dir().display(),
        events.len()
    );
    for e in &events {
        let field = |k: &str| e.body.get(k).map(|v| v.to_string());
        let mut line = format!("{} {} {}", e.seq, e.ts_us, e.kind);
        for k in ["username", "from", "lockout_secs", "session"] {
            if let Some(v) = field(k) {
                line.push_str(&format!(" {k}={v}"));
            }
        }
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
