//! How HQ authenticates to NATS: the `[replication.nats]` secrets read once at start (a file
//! other users may read is refused) and put on the connect options. Never logs or shows a secret.

use std::path::{Path, PathBuf};

use async_nats::ConnectOptions;

use crate::config::NatsConfig;
use crate::secret::{SecretError, read_secret_file};

/// The credentials of the forwarder. `Debug` names the way, never the secret.
#[derive(Clone, Default)]
pub enum NatsAuth {
    #[default]
    None,
    UserPassword {
        user: String,
        password: String,
    },
    Token(String),
    /// The contents of a `.creds` file (user JWT and nkey seed), checked to parse at start.
    Credentials(String),
    NkeySeed(String),
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.way())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NatsAuthError {
    #[error("replication.nats: {0}")]
    Secret(#[from] SecretError),
    #[error("replication.nats: the secret file {0} is empty or not UTF-8")]
    Empty(PathBuf),
    /// The parser's message names what is missing, not the file's contents.
    #[error("replication.nats.credentials_file {path} is not a NATS credentials file: {source}")]
    Credentials {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "replication.nats.nkey_seed_file {0} does not hold an nkey seed (one line starting with 'S')"
    )]
    NkeySeed(PathBuf),
}

/// One secret from its file: trimmed, not empty.
fn read_trimmed(path: &Path) -> Result<String, NatsAuthError> {
    let raw = read_secret_file(path)?;
    let text = String::from_utf8(raw).map_err(|_| NatsAuthError::Empty(path.to_path_buf()))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(NatsAuthError::Empty(path.to_path_buf()));
    }
    Ok(text.to_string())
}

impl NatsAuth {
    /// Reads the secrets `cfg` names (validated before: at most one way is set).
    pub fn load(cfg: &NatsConfig) -> Result<Self, NatsAuthError> {
        if let Some(user) = &cfg.user {
            let password = match (&cfg.password, &cfg.password_file) {
                (Some(p), _) => p.clone(),
                (None, Some(path)) => read_trimmed(path)?,
                (None, None) => String::new(),
            };
            return Ok(Self::UserPassword {
                user: user.clone(),
                password,
            });
        }
        if let Some(token) = &cfg.token {
            return Ok(Self::Token(token.clone()));
        }
        if let Some(path) = &cfg.token_file {
            return Ok(Self::Token(read_trimmed(path)?));
        }
        if let Some(path) = &cfg.credentials_file {
            let creds = read_trimmed(path)?;
            ConnectOptions::new()
                .credentials(&creds)
                .map_err(|source| NatsAuthError::Credentials {
                    path: path.clone(),
                    source,
                })?;
            return Ok(Self::Credentials(creds));
        }
        if let Some(path) = &cfg.nkey_seed_file {
            let seed = read_trimmed(path)?;
            let shaped = seed.starts_with('S')
                && seed.len() <= 128
                && seed.chars().all(|c| c.is_ascii_alphanumeric());
            if !shaped {
                return Err(NatsAuthError::NkeySeed(path.clone()));
            }
            return Ok(Self::NkeySeed(seed));
        }
        Ok(Self::None)
    }

    /// The way, for logs: `none`, `user`, `token`, `credentials` or `nkey`.
    pub fn way(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::UserPassword { .. } => "user",
            Self::Token(_) => "token",
            Self::Credentials(_) => "credentials",
            Self::NkeySeed(_) => "nkey",
        }
    }

    /// `opts` with these credentials (a `.creds` file was parsed at `load`, so it fails only if
    /// the library changed its mind).
    pub fn apply(&self, opts: ConnectOptions) -> std::io::Result<ConnectOptions> {
        Ok(match self {
            Self::None => opts,
            Self::UserPassword { user, password } => {
                opts.user_and_password(user.clone(), password.clone())
            }
            Self::Token(t) => opts.token(t.clone()),
            Self::Credentials(c) => opts.credentials(c)?,
            Self::NkeySeed(seed) => opts.nkey(seed.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn file(dir: &Path, name: &str, contents: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn secrets_come_from_private_files_and_never_show() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = NatsConfig {
            user: Some("hq".into()),
            password_file: Some(file(dir.path(), "pw", "s3cret-pw\n", 0o600)),
            ..NatsConfig::default()
        };
        let auth = NatsAuth::load(&cfg).unwrap();
        assert!(matches!(
            &auth,
            NatsAuth::UserPassword { user, password } if user == "hq" && password == "s3cret-pw"
        ));
        assert_eq!(format!("{auth:?}"), "user");
        cfg.password = Some("inline-pw".into());
        assert!(!format!("{cfg:?}").contains("inline-pw"));

        let open = NatsConfig {
            token_file: Some(file(dir.path(), "tok", "t0ken", 0o644)),
            ..NatsConfig::default()
        };
        let err = NatsAuth::load(&open).unwrap_err();
        assert!(matches!(
            err,
            NatsAuthError::Secret(SecretError::WorldAccessible { .. })
        ));
        assert!(!err.to_string().contains("t0ken"), "{err}");

        let empty = NatsConfig {
            token_file: Some(file(dir.path(), "empty", " \n", 0o600)),
            ..NatsConfig::default()
        };
        assert!(matches!(
            NatsAuth::load(&empty),
            Err(NatsAuthError::Empty(_))
        ));

        let creds = NatsConfig {
            credentials_file: Some(file(dir.path(), "c.creds", "not-a-creds-file", 0o600)),
            ..NatsConfig::default()
        };
        let err = NatsAuth::load(&creds).unwrap_err();
        assert!(matches!(err, NatsAuthError::Credentials { .. }), "{err}");
        assert!(!err.to_string().contains("not-a-creds-file"), "{err}");

        let seed = NatsConfig {
            nkey_seed_file: Some(file(dir.path(), "seed", "hello world", 0o600)),
            ..NatsConfig::default()
        };
        assert!(matches!(
            NatsAuth::load(&seed),
            Err(NatsAuthError::NkeySeed(_))
        ));
        let none = NatsAuth::load(&NatsConfig::default()).unwrap();
        assert_eq!(none.way(), "none");
    }
}
