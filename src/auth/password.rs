//! Password hashing (argon2id, pinned parameters from config) off the async threads with bounded
//! concurrency, and the password policy. Passwords are never logged or stored in clear.

use std::sync::Arc;
use std::time::Duration;

use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, Block, Params, PasswordHash, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use tokio::sync::{mpsc, oneshot};

use crate::config::AuthConfig;
use crate::error::Rejection;

pub const MIN_LEN: usize = 10;
pub const MAX_BYTES: usize = 1024;

/// The 1,000 most common passwords (zxcvbn's list; licence beside the file).
const COMMON: &str = include_str!("common-passwords.txt");

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("argon2: {0}")]
    Argon2(#[from] argon2::Error),
    #[error("the system random generator failed")]
    Random,
    #[error("the hashing task failed")]
    Join,
}

/// A hashing thread idle this long frees its memory area. Jobs go round the threads in turn, so a
/// thread keeps its area while sign-ins come faster than one per this time ÷ threads (a burst);
/// an idle server (after the first admin's hash at first start) holds none.
const RELEASE_AFTER: Duration = Duration::from_secs(1);
/// Requests waiting for a hashing thread; beyond this, callers wait to enqueue.
const QUEUE: usize = 1024;
const SALT_LEN: usize = 16;
const OUTPUT_LEN: usize = 32;

/// Work for a hashing thread, given that thread's argon2 memory.
type Work = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// Hashes and verifies on a fixed set of threads (`max_concurrent_hashes`), each owning one
/// argon2 memory area that it reuses while there is work and frees when idle: memory for hashing
/// is bounded by threads × `memory_kib` whatever the load, and is given back when there is none.
#[derive(Clone)]
pub struct PasswordHasherPool {
    params: Params,
    work: mpsc::Sender<Work>,
    /// A hash of a random password, verified against when a user does not exist, so that a
    /// missing user costs the same time as a wrong password. Made on first need.
    decoy: Arc<tokio::sync::OnceCell<String>>,
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
            Some(OUTPUT_LEN),
        )?;
        let (work, queue) = mpsc::channel::<Work>(QUEUE);
        let queue = Arc::new(tokio::sync::Mutex::new(queue));
        for i in 0..cfg.max_concurrent_hashes.max(1) {
            let queue = queue.clone();
            // The thread builds its own timer runtime and says whether it could.
            let (ready, started) = std::sync::mpsc::sync_channel::<bool>(1);
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    let clock = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build();
                    let _ = ready.send(clock.is_ok());
                    if let Ok(clock) = clock {
                        serve(&clock, &queue);
                    }
                })
                .map_err(|_| HashError::Join)?;
            if started.recv() != Ok(true) {
                return Err(HashError::Join);
            }
        }
        Ok(Self {
            params,
            work,
            decoy: Arc::new(tokio::sync::OnceCell::new()),
        })
    }

    /// Runs `f` on a hashing thread and waits for its result.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (done, wait) = oneshot::channel();
        let job: Work = Box::new(move |memory| {
            let _ = done.send(f(memory));
        });
        self.work.send(job).await.map_err(|_| HashError::Join)?;
        wait.await.map_err(|_| HashError::Join)
    }

    /// The PHC string of `password`.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let params = self.params.clone();
        let password = password.to_string();
        self.run(move |memory| hash_with(&params, &password, memory))
            .await?
    }

    /// Whether `password` matches `phc`; with `None` it checks against a decoy and says no.
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> bool {
        let known = phc.is_some();
        let phc = match phc {
            Some(p) => p.to_string(),
            None => match self
                .decoy
                .get_or_try_init(|| async { self.hash(&random_password()?).await })
                .await
            {
                Ok(d) => d.clone(),
                Err(_) => return false,
            },
        };
        let password = password.to_string();
        let ok = self
            .run(move |memory| verify_with(&password, &phc, memory))
            .await
            .unwrap_or(false);
        ok && known
    }
}

/// A hashing thread's loop: runs jobs with its memory area, and gives the area back after
/// [`RELEASE_AFTER`] without work. Ends when the last pool handle is dropped.
fn serve(clock: &tokio::runtime::Runtime, queue: &tokio::sync::Mutex<mpsc::Receiver<Work>>) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let next = clock.block_on(async {
            let wait = async { queue.lock().await.recv().await };
            if memory.is_empty() {
                Ok(wait.await)
            } else {
                tokio::time::timeout(RELEASE_AFTER, wait).await
            }
        });
        match next {
            Ok(Some(job)) => job(&mut memory),
            Ok(None) => break,
            Err(_idle) => memory = Vec::new(),
        }
    }
}

/// argon2id into `out`, growing the thread's memory once if it is too small.
fn compute(
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: &mut Vec<Block>,
) -> Result<(), HashError> {
    let need = params.block_count();
    if memory.len() < need {
        memory.resize(need, Block::default());
    }
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password, salt, out, &mut memory[..need])
        .map_err(HashError::Argon2)
}

fn hash_with(
    params: &Params,
    password: &str,
    memory: &mut Vec<Block>,
) -> Result<String, HashError> {
    let mut salt = [0u8; SALT_LEN];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| HashError::Random)?;
    let mut out = [0u8; OUTPUT_LEN];
    compute(params, password.as_bytes(), &salt, &mut out, memory)?;
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(out)
    ))
}

/// Recomputes with the parameters and salt stored in `phc` and compares in constant time.
fn verify_with(password: &str, phc: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    if parsed.algorithm != ARGON2ID_IDENT || parsed.version != Some(0x13) {
        return false;
    }
    let (Ok(params), Some(expected), Some(salt)) =
        (Params::try_from(&parsed), parsed.hash, parsed.salt)
    else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    if compute(&params, password.as_bytes(), salt, &mut out, memory).is_err() {
        return false;
    }
    aws_lc_rs::constant_time::verify_slices_are_equal(&out, expected.as_bytes()).is_ok()
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

/// At least 10 characters, at most 1 KiB, not one of the 1,000 most common, not the username,
/// and at least `strength::MIN_BITS` of estimated entropy.
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
    // A strength estimate catches what a list cannot: `password1234`, keyboard walks, years.
    if super::strength::guessable(password, COMMON, &[username, "plantwire"]) {
        return Err(Rejection::invalid(
            "weak_password",
            "this password is too easy to guess; use a few unrelated words or more characters",
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

    #[test]
    fn policy_uses_a_strength_estimate() {
        let weak = check_policy("password1234", "bob").unwrap_err();
        assert_eq!(weak.code, "weak_password");
        assert!(check_policy("bobbobbob2024", "bob").is_err());
        assert!(check_policy("qwerty123456", "bob").is_err());
        assert!(check_policy("pump room 4 smells of oil", "bob").is_ok());
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

    /// Our PHC strings are standard: the reference implementation verifies ours and we verify its.
    #[tokio::test]
    async fn phc_strings_interoperate_with_the_reference_implementation() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
        let cfg = AuthConfig {
            argon2_memory_kib: 256,
            argon2_iterations: 2,
            ..AuthConfig::default()
        };
        let pool = PasswordHasherPool::new(&cfg).unwrap();
        let ours = pool.hash("pump room seven").await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"pump room seven", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"pump room eight", &parsed)
                .is_err()
        );
        let salt = SaltString::encode_b64(&[9u8; 16]).unwrap();
        let theirs = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(128, 1, 1, None).unwrap(),
        )
        .hash_password(b"valve", &salt)
        .unwrap()
        .to_string();
        assert!(pool.verify("valve", Some(&theirs)).await);
        assert!(!pool.verify("valves", Some(&theirs)).await);
        // Another algorithm is not accepted.
        let argon2i = theirs.replace("$argon2id$", "$argon2i$");
        assert!(!pool.verify("valve", Some(&argon2i)).await);
    }
}
