//! First start as idempotent "ensure" steps: the state directory (0700) and the data key (0600,
//! or from config or a systemd credential). TLS material is ensured by `tls`; nothing is overwritten.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::config::Config;
use crate::secret::{SecretError, read_secret_file, write_new_secret_file};
use crate::store::{DataKey, SealError};

/// Name of the systemd credential (`LoadCredential=data-key:…`) that carries the data key.
pub const DATA_KEY_CREDENTIAL: &str = "data-key";
/// File name of the generated data key in the state directory.
pub const DATA_KEY_FILE: &str = "data.key";
/// File name of the store in the state directory.
pub const STORE_FILE: &str = "plantwire.redb";
/// File name of the site's Ed25519 checkpoint-signing key (PKCS#8 PEM, 0600).
pub const SIGNING_KEY_FILE: &str = "site-signing.key";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("cannot prepare state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("the data key from {source_name} is not 32 bytes (raw) or base64 of 32 bytes")]
    BadKey { source_name: String },
    #[error("cannot create the data key {path}: {source}")]
    WriteKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("no data key for the store in {0} (config, credential or data.key)")]
    NoKey(PathBuf),
    #[error("{path} is not an Ed25519 private key (PKCS#8 PEM)")]
    BadSigningKey { path: PathBuf },
}

/// Whether `ensure_data_key` may make a new key when none is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingKey {
    Create,
    Refuse,
}

/// Creates the state directory if missing and makes it private to this user.
pub fn ensure_state_dir(path: &Path) -> Result<(), BootstrapError> {
    let err = |source| BootstrapError::StateDir {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    Ok(())
}

/// Finds the data key: config value, config file, systemd credential, or the state directory,
/// where it is created on first start (unless `missing` says to refuse).
pub fn ensure_data_key(
    config: &Config,
    state_dir: &Path,
    missing: MissingKey,
) -> Result<DataKey, BootstrapError> {
    if let Some(b64) = &config.storage.data_key {
        return parse_key(b64.as_bytes(), "storage.data_key");
    }
    if let Some(path) = &config.storage.data_key_file {
        return parse_key(&read_secret_file(path)?, &path.display().to_string());
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let path = Path::new(&dir).join(DATA_KEY_CREDENTIAL);
        if path.exists() {
            let raw = std::fs::read(&path).map_err(|source| SecretError::Read {
                path: path.clone(),
                source,
            })?;
            return parse_key(&raw, "systemd credential data-key");
        }
    }
    let path = state_dir.join(DATA_KEY_FILE);
    if path.exists() {
        return parse_key(&read_secret_file(&path)?, &path.display().to_string());
    }
    if missing == MissingKey::Refuse {
        return Err(BootstrapError::NoKey(state_dir.to_path_buf()));
    }
    let raw = DataKey::generate_bytes()?;
    let text = format!("{}\n", STANDARD.encode(raw));
    write_new_secret_file(&path, text.as_bytes()).map_err(|source| BootstrapError::WriteKey {
        path: path.clone(),
        source,
    })?;
    tracing::info!(path = %path.display(), "created a new data key; back it up separately from the store");
    Ok(DataKey::from_bytes(&raw)?)
}

fn parse_key(raw: &[u8], source_name: &str) -> Result<DataKey, BootstrapError> {
    let bad = || BootstrapError::BadKey {
        source_name: source_name.to_string(),
    };
    if raw.len() == 32 {
        return Ok(DataKey::from_bytes(raw)?);
    }
    let text = std::str::from_utf8(raw).map_err(|_| bad())?.trim();
    let bytes = STANDARD.decode(text).map_err(|_| bad())?;
    if bytes.len() != 32 {
        return Err(bad());
    }
    Ok(DataKey::from_bytes(&bytes)?)
}

/// The site's checkpoint-signing key from the state directory, made on first start (PKCS#8 PEM,
/// 0600, readable by `openssl pkey`). The backup carries it sealed, like the site CA.
pub fn ensure_signing_key(state_dir: &Path) -> Result<Vec<u8>, BootstrapError> {
    use rustls_pki_types::PrivatePkcs8KeyDer;
    use rustls_pki_types::pem::PemObject;
    let path = state_dir.join(SIGNING_KEY_FILE);
    let bad = || BootstrapError::BadSigningKey { path: path.clone() };
    if path.exists() {
        let pem = read_secret_file(&path)?;
        let der = PrivatePkcs8KeyDer::from_pem_slice(&pem).map_err(|_| bad())?;
        return Ok(der.secret_pkcs8_der().to_vec());
    }
    let der = crate::log::checkpoint::generate_pkcs8().map_err(|_| bad())?;
    let b64 = STANDARD.encode(&der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    write_new_secret_file(&path, pem.as_bytes()).map_err(|source| BootstrapError::WriteKey {
        path: path.clone(),
        source,
    })?;
    tracing::info!(path = %path.display(), "created the site signing key (signs checkpoints of the log)");
    Ok(der)
}
