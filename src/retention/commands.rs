//! `plantwire retention …`: status, a pass now (`--now`: no grace), restore, overrides and legal
//! holds; run by `admin::execute` online (control socket) and offline alike.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::policy::{Class, Keep, SITE_SCOPE, ScopeRow, stream_scope};
use super::purge::{Retention, ranges};
use crate::error::Rejection;
use crate::log::Author;

/// Which scope an override or hold applies to.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct ScopeArgs {
    /// The whole site.
    #[arg(long, conflicts_with_all = ["stream", "conversation"], required_unless_present_any = ["stream", "conversation"])]
    #[serde(default)]
    pub site: bool,
    /// One stream (`events/pump-7`, `incidents/12`).
    #[arg(long, conflicts_with = "conversation")]
    #[serde(default)]
    pub stream: Option<String>,
    /// One conversation, by id (its stream `conv/<id>`).
    #[arg(long)]
    #[serde(default)]
    pub conversation: Option<String>,
}

impl ScopeArgs {
    fn key(&self) -> Result<String, Rejection> {
        match (&self.stream, &self.conversation, self.site) {
            (Some(s), None, false) if !s.is_empty() => Ok(stream_scope(s)),
            (None, Some(c), false) if !c.is_empty() => Ok(stream_scope(&format!("conv/{c}"))),
            (None, None, true) => Ok(SITE_SCOPE.to_string()),
            _ => Err(Rejection::invalid(
                "invalid_scope",
                "name one of --site, --stream S, --conversation ID",
            )),
        }
    }
}

#[derive(Debug, Clone, clap::Subcommand, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionCommand {
    /// The policy, every override and hold, and what waits in its grace period.
    Status,
    /// Run a purge pass now (the background task runs one every `retention.interval_secs`).
    Purge {
        /// Remove the payloads for good at once, without the grace period.
        #[arg(long)]
        #[serde(default)]
        now: bool,
    },
    /// Put back purged payloads still in their grace period.
    Restore {
        #[arg(long, default_value_t = 1)]
        #[serde(default)]
        from: u64,
        #[arg(long, default_value_t = u64::MAX)]
        #[serde(default)]
        to: u64,
    },
    /// Override how long a scope keeps payloads: `inherit`, `forever` or `N days`; with
    /// `--site --class C`, how long the site keeps one class (events, alarms, incidents, chat,
    /// admin).
    Set {
        #[command(flatten)]
        scope: ScopeArgs,
        #[arg(long)]
        keep: String,
        #[arg(long, requires = "site")]
        #[serde(default)]
        class: Option<String>,
    },
    /// Place a legal hold: nothing of the scope is purged until it is released.
    Hold {
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Release a legal hold.
    Release {
        #[command(flatten)]
        scope: ScopeArgs,
    },
}

pub async fn run(
    r: &Retention,
    cmd: &RetentionCommand,
    by: &Author,
    out: &mut String,
) -> anyhow::Result<()> {
    match cmd {
        RetentionCommand::Status => {
            let c = r.config();
            writeln!(
                out,
                "default {}; events {}, alarms {}, incidents {}, chat {}, admin {}; grace {} days; site legal hold (config) {}",
                String::from(c.default),
                String::from(c.events),
                String::from(c.alarms),
                String::from(c.incidents),
                String::from(c.chat),
                String::from(c.admin),
                c.grace_days,
                c.legal_hold
            )?;
            for (scope, row) in r.scopes()? {
                let keep = row.keep.map_or("-".to_string(), String::from);
                write!(out, "{scope}: keep {keep}, hold {}", row.hold)?;
                for c in Class::ALL {
                    if let Some(k) = row.classes.get(c) {
                        write!(out, ", {} {}", c.name(), String::from(k))?;
                    }
                }
                writeln!(out)?;
            }
            let waiting = r.restorable()?;
            writeln!(out, "restorable (in grace): {} entries", waiting.len())?;
        }
        RetentionCommand::Purge { now } => {
            let report = r.pass(*now, by).await?;
            writeln!(
                out,
                "purged {} entries in {} batches ({} records scanned, up to seq {}); {} kept payloads removed after their grace period",
                report.purged.len(),
                report.batches,
                report.scanned,
                report.floor,
                report.forgotten
            )?;
            for [a, b] in ranges(&report.purged) {
                writeln!(out, "purged: {a}..={b}")?;
            }
        }
        RetentionCommand::Restore { from, to } => {
            let done = r.restore(*from, *to, by).await?;
            writeln!(out, "restored {} entries", done.len())?;
            for [a, b] in ranges(&done) {
                writeln!(out, "restored: {a}..={b}")?;
            }
        }
        RetentionCommand::Set { scope, keep, class } => {
            let key = scope.key()?;
            let keep =
                Keep::parse(keep).map_err(|e| Rejection::invalid("invalid_keep", e.to_string()))?;
            match class.as_deref() {
                Some(_) if key != SITE_SCOPE => {
                    return Err(Rejection::invalid(
                        "invalid_scope",
                        "--class applies to the site scope only (--site)",
                    )
                    .into());
                }
                Some(name) => {
                    let c = Class::parse_or_reject(name)?;
                    r.set_class_keep(c, keep, by).await?;
                    writeln!(out, "{key}: {} keep {}", c.name(), String::from(keep))?;
                }
                None => {
                    let mut row = r.scope_row(&key)?.unwrap_or_default();
                    row.keep = Some(keep);
                    let stored = (row != ScopeRow::default()).then_some(row);
                    r.set_scope(&key, stored, by).await?;
                    writeln!(out, "{key}: keep {}", String::from(keep))?;
                }
            }
        }
        RetentionCommand::Hold { scope } | RetentionCommand::Release { scope } => {
            let key = scope.key()?;
            let hold = matches!(cmd, RetentionCommand::Hold { .. });
            let mut row: ScopeRow = r.scope_row(&key)?.unwrap_or_default();
            row.hold = hold;
            let row = (row != ScopeRow::default()).then_some(row);
            r.set_scope(&key, row, by).await?;
            writeln!(
                out,
                "{key}: legal hold {}",
                if hold { "placed" } else { "released" }
            )?;
        }
    }
    Ok(())
}
