//! The state-dir secrets a backup carries besides the store (site CA, server certificate, JWT
//! and checkpoint signing keys): sealed under the data key on the way out, opened and put back 0600 on restore.

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
    "site-signing.key",
    // An edge's replication identity (`plantwire replication enroll`).
    "replication/hq.txt",
    "replication/hq-ca.pem",
    "replication/site.crt",
    "replication/site.key",
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
    #[error(
        "{0} exists and differs from the backup's; pass --force to replace it (it is kept beside)"
    )]
    Exists(PathBuf),
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

/// Opens every file first, then writes each 0600 to a temporary beside its place (a failure in
/// either step leaves the state directory as it was), then renames them into place and syncs
/// their directories. A different existing file is replaced only with `force`, and kept beside
/// with `aside` appended to its name. Returns the names restored.
pub fn restore(
    state_dir: &Path,
    key: &DataKey,
    files: &[BackupFile],
    aside: &str,
    force: bool,
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
    // Phase 1: every file to a temporary beside its place (fsynced). A failure here removes the
    // temporaries and leaves the state directory exactly as it was.
    let mut staged: Vec<(&str, PathBuf, PathBuf, bool)> = Vec::with_capacity(opened.len());
    let cleanup = |staged: &[(&str, PathBuf, PathBuf, bool)]| {
        for (_, _, tmp, _) in staged {
            let _ = std::fs::remove_file(tmp);
        }
    };
    for (name, clear) in &opened {
        let path = state_dir.join(name);
        let werr = |source| SiteFilesError::Write {
            path: path.clone(),
            source,
        };
        let same = std::fs::read(&path).is_ok_and(|old| old == *clear);
        if !same && path.exists() && !force {
            cleanup(&staged);
            return Err(SiteFilesError::Exists(path));
        }
        let tmp = PathBuf::from(format!("{}.restoring", path.display()));
        let staging = (|| {
            if let Some(dir) = path.parent() {
                crate::bootstrap::ensure_state_dir(dir).map_err(std::io::Error::other)?;
            }
            let _ = std::fs::remove_file(&tmp);
            if !same {
                crate::secret::write_new_secret_file(&tmp, clear)?;
            }
            Ok(())
        })();
        if let Err(e) = staging {
            cleanup(&staged);
            return Err(werr(e));
        }
        staged.push((name, path, tmp, same));
    }
    // Phase 2: renames only (the old file kept beside), then the directories are synced.
    let mut written = Vec::new();
    for (name, path, tmp, same) in &staged {
        if !same {
            let werr = |source| SiteFilesError::Write {
                path: path.clone(),
                source,
            };
            if path.exists() {
                let kept = PathBuf::from(format!("{}.{aside}", path.display()));
                std::fs::rename(path, &kept).map_err(werr)?;
            }
            std::fs::rename(tmp, path).map_err(werr)?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(werr)?;
            }
        }
        written.push(name.to_string());
    }
    Ok(written)
}
