//! The CLI side of device certificates: reads a CSR as the calling user before the command is
//! sent, and writes `NAME.crt`, `NAME.key`, `NAME.p12` (key and p12 0600) from its outcome.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::admin::OutFile;
use crate::cli::DeviceCommand;
use crate::device_certs::{Bundle, Enrol};

/// Reads `--csr FILE` into the command (the server never opens the caller's files).
pub fn read_csr(cmd: &mut DeviceCommand) -> anyhow::Result<()> {
    let (DeviceCommand::Add { csr, csr_pem, .. } | DeviceCommand::Renew { csr, csr_pem, .. }) = cmd
    else {
        return Ok(());
    };
    if let Some(path) = csr.as_deref() {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.len() > crate::tls::issue::MAX_CSR_BYTES as u64 {
            anyhow::bail!("{} is not a CSR (larger than 16 KiB)", path.display());
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        *csr_pem = Some(text);
    }
    Ok(())
}

pub fn enrol(csr_pem: &Option<String>) -> Enrol {
    match csr_pem {
        Some(pem) => Enrol::Csr(pem.clone()),
        None => Enrol::ServerKey,
    }
}

/// What the command prints about a new certificate, and the files for the CLI to write.
pub fn describe(
    name: &str,
    what: &str,
    bundle: &Bundle,
    s: &mut String,
    files: &mut Vec<OutFile>,
) -> anyhow::Result<()> {
    let i = &bundle.issued;
    writeln!(
        s,
        "certificate {what} for device {name}: serial {}, SHA-256 {}, valid until {}",
        i.serial_hex,
        hex::encode(i.fingerprint),
        time::OffsetDateTime::from_unix_timestamp(i.not_after_us / 1_000_000)
            .map(|t| t.date().to_string())
            .unwrap_or_default()
    )?;
    let file = |ext: &str, bytes: &[u8], private: bool| OutFile {
        name: format!("{name}.{ext}"),
        base64: STANDARD.encode(bytes),
        private,
    };
    files.push(file("crt", i.cert_pem.as_bytes(), false));
    if let Some(key) = &bundle.key {
        files.push(file("key", key.key_pem.as_bytes(), true));
        files.push(file("p12", &key.p12, true));
        writeln!(s, "PKCS#12 password (shown only now): {}", key.p12_password)?;
    }
    Ok(())
}

/// Writes the outcome's files into `--out` (default: the current directory) as the calling
/// user; a secret file is created 0600 and replaces an older one only by rename.
pub fn write(cmd: &DeviceCommand, files: &[OutFile]) -> anyhow::Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let out = match cmd {
        DeviceCommand::Add { out, .. } | DeviceCommand::Renew { out, .. } => out.clone(),
        _ => None,
    }
    .unwrap_or_else(|| PathBuf::from("."));
    for f in files {
        // Names come from the server: never let one leave the directory.
        if f.name.contains('/') || f.name.starts_with('.') {
            anyhow::bail!("refusing the file name {:?}", f.name);
        }
        let bytes = STANDARD
            .decode(&f.base64)
            .context("the server sent a file that is not base64")?;
        let path = out.join(&f.name);
        write_one(&path, &bytes, f.private)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("plantwire: wrote {}", path.display());
    }
    Ok(())
}

fn write_one(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp-write");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
