//! The state-dir secrets a backup carries besides the store (site CA, server certificate, JWT
//! signing key): sealed under the data key on the way out, opened and put back 0600 on restore.

use std::path::{Path, PathBuf};

use crate::store::backup::BackupFile;
use crate::store::{DataKey, SealError};

/// What a backup carries, relative to the state dir. Restore writes only these names.
pub const CARRIED: &[&str] = &[
    "tls/ca.crt",
    "tls/ca.key",
    "tls/server.crt",
    "tls/server.key",
    "jwt-signing.key",
];

#[derive(Debug, thiserror::Error)]
pub enum SiteFilesError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot seal or open {name} with the data key: {source}")]
    Seal {
        name: String,
        #[source]
        source: SealError,
    },
    #[error("the backup carries an unexpected file {0:?}")]
    Unexpected(String),
}

/// Each file sealed under its own AAD, so one cannot be swapped for another.
fn aad(name: &str) -> Vec<u8> {
    format!("backup-file/{name}").into_bytes()
}

/// Seals every carried file present in `state_dir` (configured TLS files live elsewhere and are
/// not carried; a missing one is skipped). `seal(aad, clear)` is the data key's `seal_bytes`
/// (offline) or `Log::seal_view` (in the running server).
pub fn collect(
    state_dir: &Path,
    seal: impl Fn(&[u8], &[u8]) -> Result<Vec<u8>, SealError>,
) -> Result<Vec<BackupFile>, SiteFilesError> {
    let mut out = Vec::new();
    for name in CARRIED {
        let path = state_dir.join(name);
        let clear = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(SiteFilesError::Read { path, source }),
        };
        let sealed = seal(&aad(name), &clear).map_err(|source| SiteFilesError::Seal {
            name: name.to_string(),
            source,
        })?;
        out.push(BackupFile {
            name: name.to_string(),
            sealed,
        });
    }
    Ok(out)
}

/// Opens every file first (nothing is written if one fails), then writes each 0600 into
/// `state_dir`, replacing what is there; a different existing file is kept beside with `aside`
/// appended to its name. Returns the names written.
pub fn restore(
    state_dir: &Path,
    key: &DataKey,
    files: &[BackupFile],
    aside: &str,
) -> Result<Vec<String>, SiteFilesError> {
    let mut opened = Vec::with_capacity(files.len());
    for f in files {
        if !CARRIED.contains(&f.name.as_str()) {
            return Err(SiteFilesError::Unexpected(f.name.clone()));
        }
        let clear =
            key.open_bytes(&aad(&f.name), &f.sealed)
                .map_err(|source| SiteFilesError::Seal {
                    name: f.name.clone(),
                    source,
                })?;
        opened.push((f.name.as_str(), clear));
    }
    let mut written = Vec::new();
    for (name, clear) in opened {
        let path = state_dir.join(name);
        let werr = |source| SiteFilesError::Write {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            crate::bootstrap::ensure_state_dir(dir).map_err(|e| werr(std::io::Error::other(e)))?;
        }
        match std::fs::read(&path) {
            Ok(old) if old == clear => {
                written.push(name.to_string());
                continue;
            }
            Ok(_) => {
                let kept = PathBuf::from(format!("{}.{aside}", path.display()));
                std::fs::rename(&path, &kept).map_err(werr)?;
            }
            Err(_) => {}
        }
        let tmp = PathBuf::from(format!("{}.restoring", path.display()));
        let _ = std::fs::remove_file(&tmp);
        crate::secret::write_new_secret_file(&tmp, &clear).map_err(werr)?;
        std::fs::rename(&tmp, &path).map_err(werr)?;
        written.push(name.to_string());
    }
    Ok(written)
}
