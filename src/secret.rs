//! Reading secret material from files: refused when other users could read or write the file.
//! Secret values are never logged or shown in errors; only their paths are.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "secret file {path} is accessible to other users (mode {mode:04o}); run `chmod 600 {path}`"
    )]
    WorldAccessible { path: PathBuf, mode: u32 },
}

/// Reads a secret file after checking that it is not world-readable or world-writable.
pub fn read_secret_file(path: &Path) -> Result<Vec<u8>, SecretError> {
    let meta = std::fs::metadata(path).map_err(|source| SecretError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o006 != 0 {
        return Err(SecretError::WorldAccessible {
            path: path.to_path_buf(),
            mode,
        });
    }
    std::fs::read(path).map_err(|source| SecretError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// How a bearer token (device API token, refresh token) is stored: its SHA-256. The tokens carry
/// 256 random bits, so a fast hash is enough; the token itself is never stored.
pub fn token_hash(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref(),
    );
    out
}

/// Writes a new secret file with mode 0600, durably; refuses to overwrite an existing one.
pub fn write_new_secret_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)?;
    f.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
