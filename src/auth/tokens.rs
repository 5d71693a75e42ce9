//! Access tokens: JWTs signed with the site's Ed25519 key, algorithm pinned to EdDSA, audience and
//! issuer checked, times checked against our clock with a small leeway. Refresh tokens are opaque.

use std::path::Path;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::secret::{read_secret_file, write_new_secret_file};
use crate::store::Role;

/// The audience of access tokens; other token purposes get their own.
pub const ACCESS_AUDIENCE: &str = "plantwire-access";
pub const REFRESH_PREFIX: &str = "pwr_";
const SIGNING_KEY_FILE: &str = "jwt-signing.key";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed or its signature does not verify")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error("the system random generator failed")]
    Random,
    #[error("cannot sign a token: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
    #[error("cannot load or create the signing key {0}: {1}")]
    Key(String, String),
}

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// Lower-cased username.
    pub sub: String,
    /// Session id.
    pub sid: String,
    pub role: Role,
    /// The user's `auth_version` at issue.
    pub ver: u64,
    pub iat: i64,
    pub exp: i64,
}

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys")
    }
}

impl TokenKeys {
    /// Loads `<state_dir>/jwt-signing.key` (PKCS#8, base64, 0600) or makes it on first start.
    pub fn ensure(state_dir: &Path) -> Result<Self, TokenError> {
        let path = state_dir.join(SIGNING_KEY_FILE);
        let err =
            |e: &dyn std::fmt::Display| TokenError::Key(path.display().to_string(), e.to_string());
        let pkcs8 = if path.exists() {
            let text = read_secret_file(&path).map_err(|e| err(&e))?;
            STANDARD
                .decode(String::from_utf8_lossy(&text).trim())
                .map_err(|e| err(&e))?
        } else {
            let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
                .map_err(|e| err(&e))?;
            let bytes = doc.as_ref().to_vec();
            write_new_secret_file(&path, format!("{}\n", STANDARD.encode(&bytes)).as_bytes())
                .map_err(|e| err(&e))?;
            bytes
        };
        Self::from_pkcs8(&pkcs8).map_err(|e| err(&e))
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, String> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| e.to_string())?;
        Ok(Self {
            encoding: EncodingKey::from_ed_der(pkcs8),
            decoding: DecodingKey::from_ed_der(pair.public_key().as_ref()),
        })
    }

    pub fn issue(&self, claims: &AccessClaims) -> Result<String, TokenError> {
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &self.encoding)
            .map_err(TokenError::Sign)
    }

    /// Verifies signature (EdDSA only), audience and issuer, then times against `now_s`.
    pub fn verify(
        &self,
        token: &str,
        site: &str,
        now_s: i64,
        leeway_s: i64,
    ) -> Result<AccessClaims, TokenError> {
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&[ACCESS_AUDIENCE]);
        v.set_issuer(&[site]);
        v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        // Times are checked below against the injectable clock.
        v.validate_exp = false;
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &v)
            .map_err(|_| TokenError::Invalid)?;
        let c = data.claims;
        if c.exp + leeway_s < now_s {
            return Err(TokenError::Expired);
        }
        if c.iat - leeway_s > now_s {
            return Err(TokenError::Invalid);
        }
        Ok(c)
    }
}

/// A new opaque refresh token and its SHA-256.
pub fn new_refresh_token() -> Result<(String, [u8; 32]), TokenError> {
    let mut raw = [0u8; 32];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| TokenError::Random)?;
    let token = format!("{REFRESH_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
    let hash = crate::secret::token_hash(&token);
    Ok((token, hash))
}

/// A random session id.
pub fn new_session_id() -> Result<String, TokenError> {
    let mut raw = [0u8; 16];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| TokenError::Random)?;
    Ok(hex::encode(raw))
}
