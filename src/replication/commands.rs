//! The replication admin commands (`site add|list|revoke|grant|ungrant|grants`, `replication status`,
//! `audit verify --site`), run by `admin::execute` online (control socket) and offline alike.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ReplicationError;
use super::hq::Replicas;
use super::runtime::{Runtime, hq_parts, sites_root};
use super::sites::Sites;
use crate::config::{Config, ReplicationRole};
use crate::error::Rejection;
use crate::log::Log;
use crate::log::checkpoint::Signer;
use crate::metrics::Metrics;

/// `plantwire site …` (HQ).
#[derive(Debug, Clone, clap::Subcommand, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteCommand {
    /// Enrol a site: prints a one-time enrolment code (valid 1 h) on the last line.
    Add { name: String },
    /// Every enrolled site: replicated seq, head hash, lag, last witnessed checkpoint.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Cut a site off at once: its certificate is refused and its connections close.
    Revoke { name: String },
    /// Let an HQ user read one site (or change the role of their grant). A site's own users do not
    /// exist at HQ: create the HQ user first (`plantwire user add`).
    Grant {
        site: String,
        user: String,
        #[arg(long, value_enum, default_value = "viewer")]
        role: super::grants::GrantRole,
    },
    /// Take back an HQ user's grant on one site (their next request no longer sees it).
    Ungrant { site: String, user: String },
    /// The per-site grants, of one site or of all.
    Grants {
        site: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print this site's checkpoint-signing public key (the line `audit verify --public-key`
    /// reads); any role.
    Key,
    /// A site's retention at HQ, set there: its bounds (`set --site [--class C] --keep K`),
    /// legal holds, a pass now, restore; the subcommands of `plantwire retention`.
    Retention {
        name: String,
        #[command(subcommand)]
        command: crate::retention::commands::RetentionCommand,
    },
}

/// What a command needs from where it runs.
pub struct Env<'a> {
    pub config: &'a Config,
    pub state_dir: &'a Path,
    pub log: &'a Log,
    /// The running server's runtime (`None` offline).
    pub runtime: Option<&'a Arc<Runtime>>,
    /// Who runs the command.
    pub by: &'a crate::log::Author,
}

fn not_hq() -> ReplicationError {
    Rejection::invalid(
        "not_hq",
        "this server is not an HQ (set [replication] role = \"hq\")",
    )
    .into()
}

/// HQ's registry and replicas: the running server's, or opened for this command.
fn hq(env: &Env<'_>) -> Result<(Arc<Replicas>, Arc<Sites>, bool), ReplicationError> {
    if env.config.replication.role != ReplicationRole::Hq {
        return Err(not_hq());
    }
    if let Some(h) = env.runtime.and_then(|r| r.hq()) {
        return Ok((h.hq.replicas.clone(), h.hq.sites.clone(), false));
    }
    let signer = Arc::new(
        Signer::from_pkcs8(
            env.log.site(),
            &crate::bootstrap::ensure_signing_key(env.state_dir)?,
        )
        .map_err(|e| Rejection::invalid("bad_signing_key", e.to_string()))?,
    );
    let (r, s) = hq_parts(
        env.config,
        env.state_dir,
        env.log.clock().clone(),
        Arc::new(Metrics::new()),
        signer,
        None,
    )?;
    Ok((r, s, true))
}

pub async fn site(env: &Env<'_>, cmd: &SiteCommand, out: &mut String) -> anyhow::Result<()> {
    if let SiteCommand::Key = cmd {
        return crate::audit::key::print(env.log, out);
    }
    let (replicas, sites, opened) = hq(env)?;
    let result = site_inner(env, cmd, &replicas, &sites, out).await;
    if opened {
        replicas.close_all().await;
    }
    result
}

async fn site_inner(
    env: &Env<'_>,
    cmd: &SiteCommand,
    replicas: &Replicas,
    sites: &Sites,
    out: &mut String,
) -> anyhow::Result<()> {
    match cmd {
        SiteCommand::Add { name } => {
            let advertise = env
                .runtime
                .and_then(|r| r.hq())
                .and_then(|h| h.advertise.clone())
                .or_else(|| env.config.replication.advertise.clone())
                .or_else(|| env.config.replication.listen.first().map(|a| a.to_string()))
                .ok_or_else(|| {
                    Rejection::invalid("no_address", "set replication.advertise to HQ's host:port")
                })?;
            let ca = crate::tls::issue::DeviceCa::load(env.config, env.state_dir, env.log.site())?;
            let ca_sha256 = super::net::sha256_hex(ca.cert_der().as_ref());
            let code = sites.add(name, &advertise, &ca_sha256, env.log.now_us())?;
            writeln!(
                out,
                "site {name} added; on the site run `plantwire replication enroll CODE` within 1 h (HQ {advertise}, CA SHA-256 {ca_sha256}). The code works once:"
            )?;
            writeln!(out, "{}", code.encode()?)?;
        }
        SiteCommand::List { json } => {
            let list = replicas.list().await?;
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                writeln!(
                    out,
                    "{:<24} {:>10} {:>8} {:>8} {:>10} {:>6}  head hash",
                    "site", "seq", "lag", "lag s", "checkpoint", "gaps"
                )?;
                for s in list {
                    let cp = s
                        .checkpoint
                        .as_ref()
                        .map_or("-".to_string(), |c| c.size.to_string());
                    let mut flag = if s.history_rewritten {
                        "  HISTORY REWRITTEN".to_string()
                    } else {
                        String::new()
                    };
                    if let Some(g) = &s.gaps.latest {
                        flag.push_str(&format!(
                            "  DROPPED BEFORE REPLICATION: latest seq {}..={}{}",
                            g.from,
                            g.to,
                            if s.gaps.unverified > 0 {
                                format!(" ({} UNVERIFIED)", s.gaps.unverified)
                            } else {
                                String::new()
                            }
                        ));
                    }
                    writeln!(
                        out,
                        "{:<24} {:>10} {:>8} {:>8} {:>10} {:>6}  {}{flag}",
                        s.site, s.seq, s.lag_entries, s.lag_seconds, cp, s.gaps.count, s.head_hash
                    )?;
                }
            }
        }
        SiteCommand::Revoke { name } => {
            if !sites.revoke(name)? {
                return Err(Rejection::not_found("unknown_site", "no such site").into());
            }
            writeln!(out, "site {name} revoked; its connections are closed")?;
        }
        SiteCommand::Key => crate::audit::key::print(env.log, out)?,
        SiteCommand::Grant { site, user, role } => {
            let g = super::grants::grant(env.log, replicas, site, user, *role, env.by).await?;
            writeln!(
                out,
                "{} may now read site {} (role {})",
                g.user,
                g.site,
                role_name(g.role)
            )?;
        }
        SiteCommand::Ungrant { site, user } => {
            super::grants::ungrant(env.log, site, user, env.by).await?;
            writeln!(out, "{user} no longer has a grant on site {site}")?;
        }
        SiteCommand::Grants { site, json } => {
            let (list, capped) = super::grants::list(env.log, site.as_deref())?;
            if capped {
                tracing::warn!(
                    listed = list.len(),
                    "site grants: the listing stops at its cap; more grants exist"
                );
            }
            if *json {
                let rows: Vec<GrantView<'_>> = list.iter().map(GrantView::of).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else {
                writeln!(
                    out,
                    "{:<24} {:<32} {:<9} granted by",
                    "site", "user", "role"
                )?;
                for g in &list {
                    let v = GrantView::of(g);
                    writeln!(
                        out,
                        "{:<24} {:<32} {:<9} {}",
                        v.site, v.user, v.role, v.granted_by
                    )?;
                }
                if capped {
                    writeln!(
                        out,
                        "(the first {} grants only: more exist)",
                        super::grants::MAX_LISTED
                    )?;
                }
            }
        }
        SiteCommand::Retention { name, command } => {
            if !replicas.has_replica(name) {
                return Err(Rejection::not_found(
                    "unknown_site",
                    "no replica of that site here (enrolled sites have one after their first batch)",
                )
                .into());
            }
            let replica = replicas.replica(name).await?;
            let r = super::retention::for_site(env.config, replica, env.log.clone(), name);
            crate::retention::commands::run(&r, command, env.by, out).await?;
        }
    }
    Ok(())
}

/// One grant as `site grants --json` prints it.
#[derive(Serialize)]
struct GrantView<'a> {
    site: &'a str,
    user: &'a str,
    role: &'static str,
    granted_at_us: i64,
    granted_by: &'a str,
}

impl<'a> GrantView<'a> {
    fn of(g: &'a crate::store::SiteGrantRow) -> Self {
        Self {
            site: &g.site,
            user: &g.user,
            role: role_name(g.role),
            granted_at_us: g.granted_at_us,
            granted_by: &g.granted_by,
        }
    }
}

fn role_name(r: crate::store::Role) -> &'static str {
    use crate::store::Role;
    match r {
        Role::Viewer => "viewer",
        Role::Auditor => "auditor",
        Role::Operator => "operator",
        Role::Admin => "admin",
    }
}

/// `replication status` (edge).
pub fn status(env: &Env<'_>, json: bool, out: &mut String) -> anyhow::Result<()> {
    if env.config.replication.role != ReplicationRole::Edge {
        return Err(Rejection::invalid(
            "not_edge",
            "this server is not an edge (set [replication] role = \"edge\")",
        )
        .into());
    }
    let connected = env
        .runtime
        .and_then(|r| r.edge())
        .is_some_and(|e| *e.connected.borrow());
    let s = super::edge::status(env.log, connected)?;
    let enrolled = super::ship::identity_dir(env.state_dir)
        .join("hq.txt")
        .exists();
    let cert = super::renew::validity(env.state_dir)?;
    if json {
        let mut v = serde_json::to_value(&s)?;
        v["enrolled"] = serde_json::Value::Bool(enrolled);
        v["certificate_not_after_us"] = serde_json::json!(cert.map(|c| c.not_after_us));
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        writeln!(
            out,
            "enrolled: {enrolled}\nconnected: {}\ncursor (acknowledged by HQ): {}\nhead: {}\nlag: {} entries, {} s",
            s.connected, s.cursor, s.head, s.lag_entries, s.lag_seconds
        )?;
        if let Some(c) = cert {
            writeln!(
                out,
                "site certificate valid until: {} (renewed by itself from {})",
                crate::clock::rfc3339_us(c.not_after_us),
                crate::clock::rfc3339_us(c.renew_from_us())
            )?;
        }
    }
    Ok(())
}

/// `audit verify --site NAME` (HQ): the replica's chain and checkpoints under HQ's key.
pub async fn verify_site(
    env: &Env<'_>,
    name: &str,
    json: bool,
) -> Result<crate::admin::Outcome, ReplicationError> {
    if env.config.replication.role != ReplicationRole::Hq {
        return Err(not_hq());
    }
    if let Some(h) = env.runtime.and_then(|r| r.hq()) {
        let replica = h.hq.replicas.replica(name).await?;
        return Ok(tokio::task::spawn_blocking(move || {
            crate::admin::verify_live(&replica, json, true)
        })
        .await
        .unwrap_or_else(|e| crate::admin::Outcome::error(crate::admin::EXIT_FAILED, &e)));
    }
    let path = sites_root(env.state_dir).join(name).join("plantwire.redb");
    if !super::hq::valid_site(name) || !path.exists() {
        return Err(Rejection::not_found("unknown_site", "no replica of that site here").into());
    }
    let key = (super::runtime::key_source(env.config, env.state_dir))()?;
    let mut store = crate::store::Store::open(&path, 4 << 20)?;
    let site: Arc<str> = name.into();
    store.bind_identity(&site, &key)?;
    Ok(crate::admin::verify_offline(&mut store, &site, &key, json))
}
