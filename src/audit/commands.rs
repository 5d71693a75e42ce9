//! The audit CLI commands that are not plain admin requests: `audit export` (streamed through the
//! running server's control socket, or from the stopped store) and `audit verify --file`.

use std::io::{BufReader, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use super::{CheckFailure, ExportError, ExportRequest, SiteKey, Walk, check, prepare};
use crate::admin::{EXIT_CANNOT_OPEN, EXIT_FAILED, EXIT_USAGE};
use crate::config::Config;
use crate::error::RejectKind;
use crate::log::checkpoint::Signer;

/// `audit verify --file EXPORT --public-key SITE.pub`: reads nothing but those two files.
pub fn verify_file(file: &Path, public_key: &Path, json: bool) -> ExitCode {
    let key = match std::fs::read_to_string(public_key) {
        Ok(text) => match SiteKey::parse(&text) {
            Ok(k) => k,
            Err(e) => return usage(&format!("{}: {e}", public_key.display())),
        },
        Err(e) => return usage(&format!("cannot read {}: {e}", public_key.display())),
    };
    let f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) => return usage(&format!("cannot read {}: {e}", file.display())),
    };
    let result = check(&mut BufReader::with_capacity(256 << 10, f), &key);
    print_check(&result, json);
    ExitCode::from(if result.is_ok() { 0 } else { EXIT_FAILED })
}

fn usage(text: &str) -> ExitCode {
    eprintln!("plantwire: error: {text}");
    ExitCode::from(EXIT_USAGE)
}

fn print_check(result: &Result<super::CheckReport, CheckFailure>, json: bool) {
    if json {
        let v = match result {
            Ok(r) => serde_json::json!({"ok": true, "report": r}),
            Err(f) => serde_json::json!({"ok": false, "failure": f}),
        };
        println!("{v:#}");
        return;
    }
    match result {
        Ok(r) => {
            println!(
                "export verifies: site {}, entries {}..{} (asked {}..{}{}), {} opened and re-hashed, {} withheld (links only), {} checkpoints, signed up to entry {}",
                r.site,
                r.from,
                r.end,
                r.from,
                r.to,
                r.stream
                    .as_deref()
                    .map(|s| format!(", stream {s}"))
                    .unwrap_or_default(),
                r.opened,
                r.withheld,
                r.checkpoints,
                r.signed_to
            );
            for [a, b] in &r.purged {
                println!("purged by retention (payload removed, chain kept): {a}..{b}");
            }
        }
        Err(f) => println!("export does NOT verify: {f}"),
    }
}

/// `audit export`: through the running server when it runs, else from the stopped store. Writes
/// to `out` (created 0600 as `<out>.partial`, renamed when complete) or stdout.
pub fn export(config: &Config, req: &ExportRequest, out: Option<&Path>) -> ExitCode {
    let state_dir = config.state_dir();
    let mut sink = match Sink::open(out) {
        Ok(s) => s,
        Err(e) => return usage(&e.to_string()),
    };
    let result = match crate::control::request_audit_export(&state_dir, req, &mut sink.writer) {
        Ok(true) => Ok(()),
        Ok(false) => offline(config, req, &mut sink.writer),
        Err(crate::control::ControlError::Refused(reason)) => Err((EXIT_USAGE, reason)),
        Err(e) => Err((EXIT_CANNOT_OPEN, e.to_string())),
    };
    match result.and_then(|()| sink.finish().map_err(|e| (EXIT_FAILED, e.to_string()))) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, text)) => {
            eprintln!("plantwire: error: {text}");
            ExitCode::from(code)
        }
    }
}

/// Exit code and text of a failed export.
pub fn exit_of(e: &ExportError) -> u8 {
    match e {
        ExportError::Rejected(r) if r.kind == RejectKind::Invalid => EXIT_USAGE,
        _ => EXIT_FAILED,
    }
}

fn offline(config: &Config, req: &ExportRequest, out: &mut dyn Write) -> Result<(), (u8, String)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| (EXIT_FAILED, e.to_string()))?;
    rt.block_on(async {
        let log = crate::state::open_existing_log(config, Arc::new(crate::clock::SystemClock))
            .map_err(|e| (EXIT_CANNOT_OPEN, e.to_string()))?;
        let state_dir = config.state_dir();
        let result = async {
            let pkcs8 = crate::bootstrap::ensure_signing_key(&state_dir)
                .map_err(|e| (EXIT_CANNOT_OPEN, e.to_string()))?;
            let signer = Arc::new(
                Signer::from_pkcs8(log.site(), &pkcs8)
                    .map_err(|e| (EXIT_CANNOT_OPEN, e.to_string()))?,
            );
            let plan = prepare(&log, &signer, req)
                .await
                .map_err(|e| (exit_of(&e), e.to_string()))?;
            Walk::new(log.clone(), plan)
                .write_all(out)
                .map(|_| ())
                .map_err(|e| (EXIT_FAILED, e.to_string()))
        }
        .await;
        log.close().await;
        result
    })
}

/// Where the export goes.
struct Sink {
    writer: BufWriter<Box<dyn Write>>,
    paths: Option<(PathBuf, PathBuf)>,
}

impl Sink {
    fn open(out: Option<&Path>) -> std::io::Result<Self> {
        let Some(path) = out else {
            return Ok(Self {
                writer: BufWriter::new(Box::new(std::io::stdout())),
                paths: None,
            });
        };
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", partial.display())))?;
        Ok(Self {
            writer: BufWriter::with_capacity(256 << 10, Box::new(file)),
            paths: Some((partial, path.to_path_buf())),
        })
    }

    fn finish(mut self) -> std::io::Result<()> {
        self.writer.flush()?;
        if let Some((partial, path)) = self.paths.take() {
            std::fs::rename(&partial, &path)?;
        }
        Ok(())
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some((partial, _)) = &self.paths {
            let _ = std::fs::remove_file(partial);
        }
    }
}
