//! Admin commands (device, user, audit verify, config check) run against one open log. The offline
//! CLI and the control socket both call `execute`, so a command prints the same either way.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::auth::Auth;
use crate::cli::{DeviceCommand, UserCommand};
use crate::config::Config;
use crate::log::{Author, Log, Problem, VerifyReport};
use crate::store::{DataKey, Store, UserStatus};

/// Exit code: the command did what was asked (for `audit verify`: the chain verifies).
pub const EXIT_OK: u8 = 0;
/// Exit code: the command failed; for `audit verify`: the chain or the store is damaged.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad arguments or configuration (clap uses 2 for usage errors too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the store could not be opened (none there, no key, no permission, in use).
pub const EXIT_CANNOT_OPEN: u8 = 3;

/// One admin command, as the CLI parsed it; sent as JSON over the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    Device {
        device: DeviceCommand,
    },
    User {
        user: UserCommand,
    },
    AuditVerify {
        json: bool,
    },
    /// `audit log`: the security events, newest first.
    AuditLog {
        kind: String,
        since: Option<u64>,
        limit: Option<usize>,
        json: bool,
    },
    ConfigCheck,
    /// `site add|list|revoke` (HQ).
    Site {
        site: crate::replication::commands::SiteCommand,
    },
    /// `replication status` (edge).
    ReplicationStatus {
        json: bool,
    },
    /// `audit verify --site NAME` (HQ): one site's replica.
    SiteVerify {
        site: String,
        json: bool,
    },
    /// `retention …`.
    Retention {
        retention: crate::retention::commands::RetentionCommand,
    },
    /// `search reindex`: rebuild the search index from the log.
    SearchReindex,
}

/// What a command printed and its exit code, and files for the CLI to write as the calling user
/// (a device's certificate bundle: the server never writes keys itself).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub code: u8,
    pub stdout: String,
    pub stderr: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<OutFile>,
}

/// One file of an outcome: its name (no directory), base64 contents, and whether it is secret
/// (written 0600).
#[derive(Clone, Serialize, Deserialize)]
pub struct OutFile {
    pub name: String,
    pub base64: String,
    pub private: bool,
}

impl std::fmt::Debug for OutFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutFile")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Outcome {
    /// A command that could not run: one `plantwire: error:` line and `code`.
    pub fn error(code: u8, e: &dyn std::fmt::Display) -> Self {
        Self {
            code,
            stdout: String::new(),
            stderr: format!("plantwire: error: {e}\n"),
            files: Vec::new(),
        }
    }
}

/// What a command runs against: the site's open log and the process's view of its state.
pub struct Ctx<'a> {
    pub log: &'a Log,
    pub auth: &'a Auth,
    pub config: &'a Config,
    pub state_dir: &'a Path,
    pub by: Author,
    /// True inside the running server: the store is shared, so the page-checksum pass is skipped.
    pub online: bool,
    /// The running server's in-memory ingest statistics (`None` offline: shown as `-`).
    pub ingest: Option<&'a crate::ingest::Ingest>,
    /// The running server's replication runtime (`None` offline or when replication is off).
    pub replication: Option<&'a Arc<crate::replication::runtime::Runtime>>,
}

/// Runs `req`. Errors become the outcome's stderr and exit code; nothing panics.
pub async fn execute(ctx: &Ctx<'_>, req: &Request) -> Outcome {
    let mut out = Outcome::default();
    let result = match req {
        Request::Device { device } => {
            device_command(ctx, device, &mut out.stdout, &mut out.files).await
        }
        Request::User { user } => user_command(ctx, user, &mut out.stdout).await,
        Request::ConfigCheck => {
            out.stdout = render_config(ctx.config);
            Ok(())
        }
        Request::AuditVerify { json } => return verify_live(ctx.log, *json, ctx.online),
        Request::Site { site } => {
            crate::replication::commands::site(&replication_env(ctx), site, &mut out.stdout).await
        }
        Request::ReplicationStatus { json } => {
            crate::replication::commands::status(&replication_env(ctx), *json, &mut out.stdout)
        }
        Request::SiteVerify { site, json } => {
            match crate::replication::commands::verify_site(&replication_env(ctx), site, *json)
                .await
            {
                Ok(outcome) => return outcome,
                Err(e) => Err(e.into()),
            }
        }
        Request::SearchReindex => match crate::search::reindex(ctx.log).await {
            Ok(to) => {
                let _ = writeln!(
                    out.stdout,
                    "search index rebuilt from the log up to seq {to}"
                );
                Ok(())
            }
            Err(e) => Err(e.into()),
        },
        Request::AuditLog {
            kind,
            since,
            limit,
            json,
        } => return audit_log_outcome(ctx.log, kind, *since, *limit, *json),
        Request::Retention { retention } => {
            // Without the key (unreadable) nothing unacknowledged is dropped: no gap record.
            let signer = crate::state::site_signer(ctx.state_dir, ctx.log.site())
                .map_err(|e| tracing::warn!(error = %e, "cannot load the site signing key"))
                .ok()
                .map(Arc::new);
            let r = crate::state::retention(ctx.config, ctx.log, signer);
            crate::retention::commands::run(&r, retention, &ctx.by, &mut out.stdout).await
        }
    };
    if let Err(e) = result {
        let _ = writeln!(
            out.stderr,
            "plantwire: error: {}",
            crate::telemetry::error_text(&e)
        );
        out.code = EXIT_FAILED;
    }
    out
}

fn replication_env<'a>(ctx: &'a Ctx<'a>) -> crate::replication::commands::Env<'a> {
    crate::replication::commands::Env {
        config: ctx.config,
        state_dir: ctx.state_dir,
        log: ctx.log,
        runtime: ctx.replication,
        by: &ctx.by,
    }
}

/// `audit log` as an outcome (run on a blocking thread inside the server).
pub fn audit_log_outcome(
    log: &Log,
    kind: &str,
    since: Option<u64>,
    limit: Option<usize>,
    json: bool,
) -> Outcome {
    let mut out = Outcome::default();
    if let Err(e) = audit_log(log, kind, since, limit, json, &mut out.stdout) {
        let _ = writeln!(
            out.stderr,
            "plantwire: error: {}",
            crate::telemetry::error_text(&e)
        );
        out.code = EXIT_FAILED;
    }
    out
}

/// `audit log`: security events (sign-ins, failures, lockouts, ended sessions) from one read
/// snapshot, newest first, as lines or JSON; the same online and offline.
fn audit_log(
    log: &Log,
    kind: &str,
    since: Option<u64>,
    limit: Option<usize>,
    json: bool,
    s: &mut String,
) -> anyhow::Result<()> {
    use crate::auth::audit::{self, Query};
    let query = Query::new(kind, since, limit).map_err(|r| anyhow::anyhow!("{}", r.message))?;
    let rtx = log.read()?;
    let head = log.head(&rtx)?;
    let events = audit::list(&rtx, head, &query, |r, seq| log.entry(r, seq))?;
    if json {
        writeln!(s, "{}", serde_json::to_string_pretty(&events)?)?;
        return Ok(());
    }
    for e in &events {
        let field = |k: &str| e.body.get(k).map(|v| v.to_string());
        write!(s, "{} {} {}", e.seq, e.ts_us, e.kind)?;
        for k in ["username", "from", "lockout_secs", "session"] {
            if let Some(v) = field(k) {
                write!(s, " {k}={v}")?;
            }
        }
        writeln!(s)?;
    }
    Ok(())
}

/// `config check`'s report: the effective configuration with its secrets redacted.
pub fn render_config(config: &Config) -> String {
    let shown = config.redacted();
    match toml::to_string_pretty(&shown) {
        Ok(text) => format!("# configuration is valid\n{text}"),
        Err(e) => format!("# configuration is valid (cannot print it: {e})\n"),
    }
}

/// Prints a verify report the same way online and offline; the exit code says what it found.
pub fn render_verify(report: &VerifyReport, json: bool) -> Outcome {
    let mut out = Outcome {
        code: if report.ok() { EXIT_OK } else { EXIT_FAILED },
        ..Outcome::default()
    };
    let s = &mut out.stdout;
    if json {
        match serde_json::to_string_pretty(report) {
            Ok(text) => {
                let _ = writeln!(s, "{text}");
            }
            Err(e) => return Outcome::error(EXIT_FAILED, &e),
        }
        return out;
    }
    let _ = writeln!(s, "site:    {}", report.site);
    let _ = writeln!(s, "entries: {}", report.entries);
    if let (Some(first), Some(last)) = (report.first_seq, report.last_seq) {
        let _ = writeln!(s, "range:   {first}..={last}");
    }
    if let Some(head) = &report.head {
        let _ = writeln!(s, "head:    {head}");
    }
    let _ = writeln!(s, "signed:  {} checkpoints verified", report.checkpoints);
    for [a, b] in &report.purged {
        let _ = writeln!(
            s,
            "purged:  {a}..={b} (payload removed by retention; links checked)"
        );
    }
    for [a, b] in &report.stubs_verified {
        let _ = writeln!(
            s,
            "stubs:   {a}..={b} (class not shipped by the site: content digest only; hashes \
             recomputed, links checked)"
        );
    }
    for [a, b] in &report.stubbed {
        let _ = writeln!(
            s,
            "stubbed: {a}..={b} (class not shipped by the site, logged before chain v2: hash \
             only; links checked)"
        );
    }
    let _ = match &report.problem {
        None => writeln!(s, "result:  OK, the chain verifies"),
        Some(p) => writeln!(s, "result:  FAILED: {p}"),
    };
    out
}

/// `audit verify` on an open log: one read snapshot. Blocking (it walks the whole log): the
/// control socket runs it off the async workers.
pub fn verify_live(log: &Log, json: bool, online: bool) -> Outcome {
    let report = match log.verify() {
        Ok(r) => r,
        Err(e) => return Outcome::error(EXIT_CANNOT_OPEN, &e),
    };
    let mut out = render_verify(&report, json);
    if online {
        out.stderr.push_str(
            "plantwire: verified a snapshot of the running store; the page-checksum check needs the store to itself and was skipped (stop the server for the full check)\n",
        );
    }
    out
}

/// `audit verify` with the store to ourselves: the page checksums first, then the chain.
pub fn verify_offline(store: &mut Store, site: &Arc<str>, key: &DataKey, json: bool) -> Outcome {
    let integrity = store.check_integrity();
    let mut report = match crate::log::verify(store, site, key) {
        Ok(r) => r,
        Err(e) => return Outcome::error(EXIT_CANNOT_OPEN, &e),
    };
    if report.problem.is_none() {
        let damaged = match integrity {
            Ok(true) => None,
            Ok(false) => Some("page checksums did not verify".to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(detail) = damaged {
            report.problem = Some(Problem::StoreDamaged { detail });
        }
    }
    render_verify(&report, json)
}

async fn device_command(
    ctx: &Ctx<'_>,
    cmd: &DeviceCommand,
    s: &mut String,
    files: &mut Vec<OutFile>,
) -> anyhow::Result<()> {
    let log = ctx.log;
    match cmd {
        DeviceCommand::Add {
            name,
            cert: true,
            csr_pem,
            ..
        } => {
            let ca = crate::tls::issue::DeviceCa::load(ctx.config, ctx.state_dir, log.site())?;
            let enrol = crate::device_files::enrol(csr_pem);
            let days = ctx.config.devices.cert_days;
            let bundle = crate::device_certs::add(log, &ca, name, &ctx.by, enrol, days).await?;
            crate::device_files::describe(name, "issued", &bundle, s, files)?;
        }
        DeviceCommand::Renew { name, csr_pem, .. } => {
            let ca = crate::tls::issue::DeviceCa::load(ctx.config, ctx.state_dir, log.site())?;
            let enrol = crate::device_files::enrol(csr_pem);
            let days = ctx.config.devices.cert_days;
            let bundle = crate::device_certs::renew(log, &ca, name, &ctx.by, enrol, days).await?;
            crate::device_files::describe(name, "renewed", &bundle, s, files)?;
        }
        DeviceCommand::Add { name, .. } => {
            let (_, token) = crate::devices::add(log, name, &ctx.by).await?;
            writeln!(
                s,
                "device {name} added; its API token (shown only now):\n{token}"
            )?;
        }
        DeviceCommand::Revoke { name } => {
            crate::devices::revoke(log, name, &ctx.by).await?;
            writeln!(s, "device {name} revoked")?;
        }
        DeviceCommand::List => {
            let certs = log.read()?.device_certs()?;
            let time = |t: Option<i64>| t.map_or("-".to_string(), crate::clock::rfc3339_us);
            writeln!(
                s,
                "NAME\tSTATUS\tCREDENTIAL\tCREATED BY\tCREATED AT\tLAST SEEN\tRATE/MIN\tREFUSED"
            )?;
            for d in crate::devices::list(log)? {
                let status = if d.revoked_at_us.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                let n = certs.iter().filter(|c| c.device == d.name).count();
                let cred = match (d.token_hash != crate::device_certs::NO_TOKEN, n) {
                    (true, 0) => "token".to_string(),
                    (false, n) => format!("certificates: {n}"),
                    (true, n) => format!("token, certificates: {n}"),
                };
                // The statistics live in the running server's memory: "-" offline.
                let (seen, rate, refused) = match ctx.ingest.map(|i| i.stats(&d.name)) {
                    Some(st) => (
                        time(st.last_seen_us),
                        st.rate_per_min.to_string(),
                        st.refused.to_string(),
                    ),
                    None => ("-".into(), "-".into(), "-".into()),
                };
                writeln!(
                    s,
                    "{}\t{status}\t{cred}\t{}\t{}\t{seen}\t{rate}\t{refused}",
                    d.name,
                    d.created_by,
                    time(Some(d.created_at_us)),
                )?;
            }
        }
    }
    Ok(())
}

async fn user_command(ctx: &Ctx<'_>, cmd: &UserCommand, s: &mut String) -> anyhow::Result<()> {
    use crate::users;
    let (log, by) = (ctx.log, &ctx.by);
    match cmd {
        UserCommand::Add {
            username,
            role,
            display_name,
        } => {
            let (otp, hash) = users::one_time_password(ctx.auth).await?;
            users::create(
                log,
                users::NewUser {
                    username: username.clone(),
                    display_name: display_name.clone().unwrap_or_else(|| username.clone()),
                    password_hash: hash,
                    role: (*role).into(),
                    status: UserStatus::Active,
                    must_change_password: true,
                },
                by,
            )
            .await?;
            writeln!(
                s,
                "user {username} added; one-time password (change it at first sign-in):\n{otp}"
            )?;
        }
        UserCommand::List => {
            for u in users::list(log, None)? {
                writeln!(
                    s,
                    "{}\t{:?}\t{:?}\t{}",
                    u.username, u.role, u.status, u.display_name
                )?;
            }
        }
        UserCommand::Passwd { username } => {
            let otp = users::reset_password(log, ctx.auth, username, by).await?;
            writeln!(s, "new one-time password for {username}:\n{otp}")?;
        }
        UserCommand::Role { username, role } => {
            users::set_role(log, username, (*role).into(), by).await?;
            writeln!(s, "{username} is now {role:?}")?;
        }
        UserCommand::Disable { username } => {
            users::set_status(log, username, UserStatus::Disabled, by).await?;
            writeln!(s, "{username} disabled")?;
        }
        UserCommand::Enable { username } => {
            users::set_status(log, username, UserStatus::Active, by).await?;
            writeln!(s, "{username} enabled")?;
        }
        UserCommand::Approve { username } => {
            users::approve(log, username, by).await?;
            writeln!(s, "{username} approved")?;
        }
        UserCommand::ResetAdmin => {
            let otp = users::reset_admin(log, ctx.auth, ctx.state_dir, by).await?;
            writeln!(
                s,
                "admin recovered; one-time password (also in {}):\n{otp}",
                ctx.state_dir.join(users::ADMIN_PASSWORD_FILE).display()
            )?;
        }
    }
    Ok(())
}
