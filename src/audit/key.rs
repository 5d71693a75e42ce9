//! The site's checkpoint-signing public key as an auditor holds it: the C2SP signed-note verifier
//! key line `<name>+<key id, 8 hex>+<base64(0x01 ‖ Ed25519 public key)>`, printed and parsed here.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::log::Log;
use crate::log::checkpoint::{self, key_id};
use crate::log::checkpointer::{self, CheckpointStartError};

/// The signed-note algorithm byte of an Ed25519 key.
const ALG_ED25519: u8 = 0x01;

/// A site's public key and the name it signs under (`plantwire/<site>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteKey {
    pub name: String,
    pub public_key: [u8; 32],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error(
        "the key is not a verifier key line `plantwire/<site>+<key id>+<base64 key>` (as `plantwire site key` prints)"
    )]
    Malformed,
    #[error("the key line names {0:?}, not a plantwire site (plantwire/<site>)")]
    NotASite(String),
    #[error("the key id in the key line does not match its key")]
    WrongKeyId,
}

impl SiteKey {
    pub fn new(site: &str, public_key: [u8; 32]) -> Self {
        Self {
            name: checkpoint::origin(site),
            public_key,
        }
    }

    /// The site the key signs for.
    pub fn site(&self) -> &str {
        self.name.strip_prefix("plantwire/").unwrap_or(&self.name)
    }

    /// The verifier key line (no newline).
    pub fn vkey(&self) -> String {
        let mut blob = Vec::with_capacity(33);
        blob.push(ALG_ED25519);
        blob.extend_from_slice(&self.public_key);
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(key_id(&self.name, &self.public_key)),
            STANDARD.encode(blob)
        )
    }

    /// Reads a verifier key line (surrounding whitespace and a final newline are fine).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        // The base64 may hold `+` itself; the name and the hex id never do.
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(KeyError::Malformed);
        };
        let blob = STANDARD.decode(b64).map_err(|_| KeyError::Malformed)?;
        let [ALG_ED25519, rest @ ..] = blob.as_slice() else {
            return Err(KeyError::Malformed);
        };
        let public_key: [u8; 32] = rest.try_into().map_err(|_| KeyError::Malformed)?;
        let site = name
            .strip_prefix("plantwire/")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| KeyError::NotASite(name.to_string()))?;
        let key = Self::new(site, public_key);
        if id != hex::encode(key_id(&key.name, &public_key)) {
            return Err(KeyError::WrongKeyId);
        }
        Ok(key)
    }
}

/// The site's key as its log names it (the newest `log.signing_key` entry).
pub fn of_log(log: &Log) -> Result<Option<SiteKey>, CheckpointStartError> {
    let Some(body) = checkpointer::logged_key(log)? else {
        return Ok(None);
    };
    let key = STANDARD
        .decode(&body.public_key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok());
    Ok(key.map(|k| SiteKey::new(log.site(), k)))
}

/// `plantwire site key`: the verifier key line, or an error when no key is logged yet.
pub fn print(log: &Log, out: &mut String) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let key = of_log(log)?.ok_or_else(|| {
        anyhow::anyhow!("this log names no signing key yet (the server logs it on its first start)")
    })?;
    writeln!(out, "{}", key.vkey())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::checkpoint::Signer;

    #[test]
    fn a_key_whose_base64_holds_a_plus_reads_back() {
        for seed in 0..64u8 {
            let signer = Signer::from_seed("plant-a", &[seed; 32]).unwrap();
            let key = SiteKey::new("plant-a", signer.public_key());
            assert_eq!(SiteKey::parse(&key.vkey()), Ok(key));
        }
    }

    #[test]
    fn the_key_line_round_trips_and_is_checked() {
        let signer = Signer::from_seed("plant-a", &[7; 32]).unwrap();
        let key = SiteKey::new("plant-a", signer.public_key());
        let line = key.vkey();
        assert!(line.starts_with("plantwire/plant-a+"));
        assert_eq!(SiteKey::parse(&format!("{line}\n")), Ok(key.clone()));
        assert_eq!(key.site(), "plant-a");
        let other = line.replacen("plantwire/plant-a", "plantwire/plant-b", 1);
        assert_eq!(SiteKey::parse(&other), Err(KeyError::WrongKeyId));
        assert_eq!(SiteKey::parse("nonsense"), Err(KeyError::Malformed));
        let no_site = line.replacen("plantwire/plant-a", "other", 1);
        assert!(matches!(
            SiteKey::parse(&no_site),
            Err(KeyError::NotASite(_))
        ));
    }
}
