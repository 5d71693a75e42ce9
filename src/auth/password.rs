//! Password hashing (argon2id, pinned parameters from config) off the async threads with bounded
//! concurrency, and the password policy. Passwords are never logged or stored in clear.

use std::sync::Arc;

use argon2::password_hash::SaltString;
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use tokio::sync::Semaphore;

use crate::config::AuthConfig;
use crate::error::Rejection;

pub const MIN_LEN: usize = 10;
pub const MAX_BYTES: usize = 1024;

/// The 1,000 most common passwords (zxcvbn's list; licence beside the file).
const COMMON: &str = include_str!("common-passwords.txt");

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("argon2: {0}")]
    Argon2(String),
    #[error("the system random generator failed")]
    Random,
    #[error("the hashing task failed")]
    Join,
}

/// Hashes and verifies with a cap on simultaneous hashes: each one takes `memory_kib` of RAM,
/// and a gateway has little of it.
#[derive(Clone)]
pub struct PasswordHasherPool {
    params: Params,
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when a user does not exist, so that a
    /// missing user costs the same time as a wrong password.
    decoy: Arc<String>,
}

impl std::fmt::Debug for PasswordHasherPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasherPool").finish_non_exhaustive()
    }
}

impl PasswordHasherPool {
    pub fn new(cfg: &AuthConfig) -> Result<Self, HashError> {
        let params = Params::new(
            cfg.argon2_memory_kib,
            cfg.argon2_iterations,
            cfg.argon2_parallelism,
            None,
        )
        .map_err(|e| HashError::Argon2(e.to_string()))?;
        let decoy = hash_blocking(&params, &random_password()?)?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(cfg.max_concurrent_hashes.max(1))),
            decoy: Arc::new(decoy),
        })
    }

    /// The PHC string of `password`.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let _permit = self.permits.acquire().await.map_err(|_| HashError::Join)?;
        let params = self.params.clone();
        let password = password.to_string();
        tokio::task::spawn_blocking(move || hash_blocking(&params, &password))
            .await
            .map_err(|_| HashError::Join)?
    }

    /// Whether `password` matches `phc`; with `None` it checks against a decoy and says no.
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let known = phc.is_some();
        let phc = phc.map_or_else(|| self.decoy.as_str().to_string(), str::to_string);
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&phc)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        ok && known
    }
}

fn hash_blocking(params: &Params, password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| HashError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError::Argon2(e.to_string()))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Argon2(e.to_string()))
}

/// A random one-time password: 20 characters from an alphabet without look-alikes.
pub fn random_password() -> Result<String, HashError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut raw = [0u8; 20];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| HashError::Random)?;
    Ok(raw
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}

/// At least 10 characters, at most 1 KiB, not one of the 1,000 most common, not the username.
pub fn check_policy(password: &str, username: &str) -> Result<(), Rejection> {
    if password.chars().count() < MIN_LEN {
        return Err(Rejection::invalid(
            "weak_password",
            format!("a password needs at least {MIN_LEN} characters"),
        ));
    }
    if password.len() > MAX_BYTES {
        return Err(Rejection::invalid(
            "invalid_password",
            "a password is at most 1024 bytes",
        ));
    }
    let lower = password.to_lowercase();
    if lower == username.to_lowercase() || COMMON.lines().any(|c| c == lower) {
        return Err(Rejection::invalid(
            "weak_password",
            "this password is too common or too easy to guess",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_refuses_short_common_and_own_name() {
        assert_eq!(COMMON.lines().count(), 1000);
        assert!(check_policy("short", "bob").is_err());
        assert!(check_policy("1234567890", "bob").is_err());
        assert!(check_policy("qwertyuiop", "bob").is_err());
        assert!(check_policy("operator-of-the-year", "operator-of-the-year").is_err());
        assert!(check_policy("valve 7 is sticky again", "bob").is_ok());
    }

    #[tokio::test]
    async fn hashes_verify_and_decoy_never_matches() {
        let cfg = AuthConfig {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            ..AuthConfig::default()
        };
        let pool = PasswordHasherPool::new(&cfg).unwrap();
        let h = pool.hash("correct horse battery").await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(pool.verify("correct horse battery", Some(&h)).await);
        assert!(!pool.verify("wrong horse battery", Some(&h)).await);
        assert!(!pool.verify("correct horse battery", None).await);
    }
}
