//! Identity for people: password hashing, access and refresh tokens, sessions and throttling.
//! Users themselves (the rows and their rules) live in `users`; this module never talks HTTP.

pub mod audit;
pub mod password;
pub mod sessions;
pub mod strength;
pub mod throttle;
pub mod tokens;

use std::path::Path;

use crate::config::AuthConfig;

pub use password::PasswordHasherPool;
pub use sessions::{AuthError, Issued};
pub use throttle::Throttle;
pub use tokens::{AccessClaims, TokenKeys};

/// Entries tracked per throttle before the idle ones are forgotten.
const THROTTLE_CAPACITY: usize = 10_000;

/// The authentication services, built once per process.
#[derive(Debug)]
pub struct Auth {
    pub config: AuthConfig,
    pub hasher: PasswordHasherPool,
    pub keys: TokenKeys,
    /// Failures of one username from one address: the first to engage.
    pub by_user_addr: Throttle,
    /// Failures from one address across usernames (password spraying).
    pub by_addr: Throttle,
    /// Failures of one username from anywhere: high, so it slows a distributed attack without
    /// locking the real user out.
    pub by_user: Throttle,
    /// The first admin's one-time password file; removed once that password is changed.
    pub first_admin_password_file: std::path::PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error(transparent)]
    Hash(#[from] password::HashError),
    #[error(transparent)]
    Token(#[from] tokens::TokenError),
}

impl Auth {
    pub fn new(config: &AuthConfig, state_dir: &Path) -> Result<Self, AuthSetupError> {
        let after = config.throttle_after;
        let max = config.throttle_max_secs;
        Ok(Self {
            config: config.clone(),
            hasher: PasswordHasherPool::new(config)?,
            keys: TokenKeys::ensure(state_dir)?,
            by_user_addr: Throttle::new(after, max, THROTTLE_CAPACITY),
            by_addr: Throttle::new(after.saturating_mul(4), max, THROTTLE_CAPACITY),
            by_user: Throttle::new(after.saturating_mul(20), max.min(60), THROTTLE_CAPACITY),
            first_admin_password_file: state_dir.join(crate::users::ADMIN_PASSWORD_FILE),
        })
    }
}
