//! Signed checkpoints of the chain head: the site's Ed25519 key signs `(origin, size, root)` in the
//! C2SP signed-note shape, so a copy of the log held elsewhere (headquarters) can tell a rewritten
//! history from the one the site signed. Formatting, signing and verifying only; no I/O.
//!
//! The note, byte for byte (every line ends in `\n`):
//!
//! ```text
//! plantwire/<site>                  origin: names the log and the key
//! <size>                            the seq of the entry checkpointed (decimal, no leading zeros)
//! <root>                            base64 (standard, padded) of that entry's 32-byte hash
//!                                   an empty line ends the body
//! — plantwire/<site> <sig>          signature line: U+2014, space, key name, space, base64 of
//!                                   key id (4 bytes) ‖ Ed25519 signature (64 bytes) over the body
//! ```
//!
//! The key id is the first 4 bytes of SHA-256(key name ‖ `\n` ‖ 0x01 ‖ public key), 0x01 being
//! the signed-note algorithm byte for Ed25519. The root is the hash of the checkpointed entry in
//! our linear chain (not a Merkle root): whoever holds the entries up to `size` checks it by
//! walking them, as `audit verify` and headquarters do.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Kind and stream of the entry that carries a signed note of the head before it.
pub const KIND_CHECKPOINT: &str = "log.checkpoint";
/// Kind of the entry that names the site's signing key (its public half), logged once per key.
pub const KIND_SIGNING_KEY: &str = "log.signing_key";
pub const STREAM: &str = "system/checkpoints";

const ALG_ED25519: u8 = 0x01;
const ALG_COSIGNATURE_V1: u8 = 0x04;
const DASH: &str = "\u{2014} ";

/// What a checkpoint states: the log named `origin` had `size` entries, the last hashing to `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: [u8; 32],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("the signing key is not a valid Ed25519 PKCS#8 key")]
    BadKey,
    #[error("the note is malformed: {0}")]
    Malformed(&'static str),
    #[error("the note is for {found:?}, not {expected:?}")]
    WrongOrigin { expected: String, found: String },
    #[error("no signature by the expected key")]
    UnknownKey,
    #[error("the signature does not verify")]
    BadSignature,
}

/// The origin (and key name) of a site's log.
pub fn origin(site: &str) -> String {
    format!("plantwire/{site}")
}

/// The 4-byte key id of an Ed25519 public key under `name`.
pub fn key_id(name: &str, public_key: &[u8]) -> [u8; 4] {
    let mut input = Vec::with_capacity(name.len() + 2 + public_key.len());
    input.extend_from_slice(name.as_bytes());
    input.push(b'\n');
    input.push(ALG_ED25519);
    input.extend_from_slice(public_key);
    let d = digest(&SHA256, &input);
    let mut id = [0u8; 4];
    id.copy_from_slice(&d.as_ref()[..4]);
    id
}

/// The site's signing key, loaded once at start.
pub struct Signer {
    name: String,
    key: Ed25519KeyPair,
    id: [u8; 4],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("key_id", &hex::encode(self.id))
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for `site`'s log from a PKCS#8 document (v1 or v2).
    pub fn from_pkcs8(site: &str, pkcs8: &[u8]) -> Result<Self, CheckpointError> {
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|_| CheckpointError::BadKey)?;
        Ok(Self::with_key(site, key))
    }

    /// A signer from a raw 32-byte seed (golden-vector tests).
    pub fn from_seed(site: &str, seed: &[u8; 32]) -> Result<Self, CheckpointError> {
        let key = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| CheckpointError::BadKey)?;
        Ok(Self::with_key(site, key))
    }

    fn with_key(site: &str, key: Ed25519KeyPair) -> Self {
        let name = origin(site);
        let id = key_id(&name, key.public_key().as_ref());
        Self { name, key, id }
    }

    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.key.public_key().as_ref());
        out
    }

    /// The signed note of `size` and `root` for this site's log.
    pub fn sign(&self, size: u64, root: &[u8; 32]) -> String {
        self.sign_text(&body(&self.name, size, root))
    }

    /// Any signed-note `body` (lines ending in `\n`, the first naming this site's origin; its
    /// second must tell the note's type apart from a checkpoint's decimal size), signed by the
    /// site's key: the body, an empty line, the signature line. Gap records use it.
    pub fn sign_text(&self, body: &str) -> String {
        let sig = self.key.sign(body.as_bytes());
        let mut blob = Vec::with_capacity(4 + 64);
        blob.extend_from_slice(&self.id);
        blob.extend_from_slice(sig.as_ref());
        format!("{body}\n{DASH}{} {}\n", self.name, STANDARD.encode(blob))
    }
}

impl Signer {
    /// A witness's timestamped cosignature of `note` (C2SP tlog-cosignature/v1 shape): the line
    /// `— <our name> base64(key id ‖ time u64 ‖ signature)`, the signature over
    /// `cosignature/v1\ntime <time_s>\n` followed by the note's body. The key id uses algorithm
    /// byte 0x04. Only the note's shape is checked here; verify it first.
    pub fn cosign(&self, note: &str, time_s: u64) -> Result<String, CheckpointError> {
        let (text, _) = note
            .split_once("\n\n")
            .ok_or(CheckpointError::Malformed("no blank line after the body"))?;
        let msg = format!("cosignature/v1\ntime {time_s}\n{text}\n");
        let sig = self.key.sign(msg.as_bytes());
        let id = cosigner_id(&self.name, &self.public_key());
        let mut blob = Vec::with_capacity(4 + 8 + 64);
        blob.extend_from_slice(&id);
        blob.extend_from_slice(&time_s.to_be_bytes());
        blob.extend_from_slice(sig.as_ref());
        Ok(format!("{DASH}{} {}\n", self.name, STANDARD.encode(blob)))
    }
}

/// The key id of a witness key for cosignature/v1 lines.
fn cosigner_id(name: &str, public_key: &[u8]) -> [u8; 4] {
    let mut input = Vec::with_capacity(name.len() + 2 + public_key.len());
    input.extend_from_slice(name.as_bytes());
    input.push(b'\n');
    input.push(ALG_COSIGNATURE_V1);
    input.extend_from_slice(public_key);
    let d = digest(&SHA256, &input);
    let mut id = [0u8; 4];
    id.copy_from_slice(&d.as_ref()[..4]);
    id
}

/// Checks a witness's cosignature `line` of `note` by `name`'s key and returns its time (s).
pub fn verify_cosignature(
    note: &str,
    line: &str,
    name: &str,
    public_key: &[u8; 32],
) -> Result<u64, CheckpointError> {
    let (text, _) = note
        .split_once("\n\n")
        .ok_or(CheckpointError::Malformed("no blank line after the body"))?;
    let rest = line
        .trim_end_matches('\n')
        .strip_prefix(DASH)
        .ok_or(CheckpointError::Malformed(
            "a signature line lacks the dash",
        ))?;
    let (found, b64) = rest.split_once(' ').ok_or(CheckpointError::Malformed(
        "a signature line lacks its key name",
    ))?;
    let blob = STANDARD
        .decode(b64)
        .map_err(|_| CheckpointError::Malformed("a signature is not base64"))?;
    if found != name || blob.len() != 76 || blob[..4] != cosigner_id(name, public_key) {
        return Err(CheckpointError::UnknownKey);
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&blob[4..12]);
    let time_s = u64::from_be_bytes(t);
    let msg = format!("cosignature/v1\ntime {time_s}\n{text}\n");
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(msg.as_bytes(), &blob[12..])
        .map(|()| time_s)
        .map_err(|_| CheckpointError::BadSignature)
}

/// Generates a new Ed25519 key as a PKCS#8 v2 document (for the state directory).
pub fn generate_pkcs8() -> Result<Vec<u8>, CheckpointError> {
    let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
        .map_err(|_| CheckpointError::BadKey)?;
    Ok(doc.as_ref().to_vec())
}

fn body(origin: &str, size: u64, root: &[u8; 32]) -> String {
    format!("{origin}\n{size}\n{}\n", STANDARD.encode(root))
}

/// Checks `note` against `origin` and the Ed25519 `public_key`, and returns what it states.
/// Signature lines by other keys (a witness's cosignature) are allowed and ignored.
pub fn verify(
    note: &str,
    origin: &str,
    public_key: &[u8; 32],
) -> Result<Checkpoint, CheckpointError> {
    let text = verify_text(note, origin, public_key)?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let mut lines = text.split('\n');
    lines.next();
    let size_text = lines.next().ok_or(CheckpointError::Malformed("no size"))?;
    if size_text.is_empty()
        || (size_text.len() > 1 && size_text.starts_with('0'))
        || !size_text.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(CheckpointError::Malformed(
            "the size is not a decimal number",
        ));
    }
    let size: u64 = size_text
        .parse()
        .map_err(|_| CheckpointError::Malformed("the size is not a decimal number"))?;
    let root_bytes = STANDARD
        .decode(lines.next().ok_or(CheckpointError::Malformed("no root"))?)
        .map_err(|_| CheckpointError::Malformed("the root is not base64"))?;
    let root: [u8; 32] = root_bytes
        .try_into()
        .map_err(|_| CheckpointError::Malformed("the root is not 32 bytes"))?;
    if lines.next().is_some() {
        return Err(CheckpointError::Malformed("extension lines are not used"));
    }
    Ok(Checkpoint {
        origin: origin.to_string(),
        size,
        root,
    })
}

/// Checks any signed note's origin line and its signature by `origin`'s Ed25519 `public_key`,
/// and returns the signed body (each line ending in `\n`). Other keys' lines are ignored.
pub fn verify_text<'a>(
    note: &'a str,
    origin: &str,
    public_key: &[u8; 32],
) -> Result<&'a str, CheckpointError> {
    let (text, sigs) = note
        .split_once("\n\n")
        .ok_or(CheckpointError::Malformed("no blank line after the body"))?;
    let body_text = &note[..text.len() + 1];
    let found = text.split('\n').next().unwrap_or_default();
    if found != origin {
        return Err(CheckpointError::WrongOrigin {
            expected: origin.to_string(),
            found: found.to_string(),
        });
    }
    let want_id = key_id(origin, public_key);
    let key = UnparsedPublicKey::new(&ED25519, public_key);
    for line in sigs.lines() {
        let Some(rest) = line.strip_prefix(DASH) else {
            return Err(CheckpointError::Malformed(
                "a signature line lacks the dash",
            ));
        };
        let Some((name, b64)) = rest.split_once(' ') else {
            return Err(CheckpointError::Malformed(
                "a signature line lacks its key name",
            ));
        };
        let Ok(blob) = STANDARD.decode(b64) else {
            return Err(CheckpointError::Malformed("a signature is not base64"));
        };
        if name != origin || blob.len() != 68 || blob[..4] != want_id {
            continue;
        }
        return key
            .verify(body_text.as_bytes(), &blob[4..])
            .map(|()| body_text)
            .map_err(|_| CheckpointError::BadSignature);
    }
    Err(CheckpointError::UnknownKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: [u8; 32] = [7; 32];

    /// The byte-exact note for a fixed key, size and root: a change to the format shows here.
    #[test]
    fn the_note_is_byte_exact_and_verifies() {
        let signer = Signer::from_seed("plant-a", &SEED).unwrap();
        let note = signer.sign(42, &[0xAB; 32]);
        let golden = "plantwire/plant-a\n42\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n\n\u{2014} plantwire/plant-a hEMoEjGGsclGQnhzQ9sOK0IfmZw2oIzbgJNhI+2s6HhXOeMcwFjIgMU6SK2JBmhy2WSaMEd3LcLBJdQyNbg9omCttwk=\n";
        assert_eq!(note, golden);
        assert_eq!(note.lines().count(), 5);
        let c = verify(&note, "plantwire/plant-a", &signer.public_key()).unwrap();
        assert_eq!((c.size, c.root), (42, [0xAB; 32]));
        // Ed25519 is deterministic: the same inputs give the same note.
        assert_eq!(note, signer.sign(42, &[0xAB; 32]));
        assert_eq!(
            hex::encode(key_id("plantwire/plant-a", &signer.public_key())),
            hex::encode(
                &STANDARD
                    .decode(note.lines().last().unwrap().rsplit(' ').next().unwrap())
                    .unwrap()[..4]
            )
        );
    }

    #[test]
    fn a_changed_note_or_another_key_does_not_verify() {
        let signer = Signer::from_seed("plant-a", &SEED).unwrap();
        let other = Signer::from_seed("plant-a", &[9; 32]).unwrap();
        let note = signer.sign(42, &[0xAB; 32]);
        let pk = signer.public_key();
        let o = "plantwire/plant-a";
        assert_eq!(
            verify(&note.replacen("\n42\n", "\n43\n", 1), o, &pk),
            Err(CheckpointError::BadSignature)
        );
        assert_eq!(
            verify(&note, o, &other.public_key()),
            Err(CheckpointError::UnknownKey)
        );
        assert!(matches!(
            verify(&note, "plantwire/plant-b", &pk),
            Err(CheckpointError::WrongOrigin { .. })
        ));
        assert!(verify(&note.replacen("\n42\n", "\n042\n", 1), o, &pk).is_err());
        assert!(verify("plantwire/plant-a\n1\n", o, &pk).is_err());
        // A witness's cosignature line beside ours is fine.
        let cosigned = format!("{note}\u{2014} hq.example AAAA\n");
        assert!(verify(&cosigned, o, &pk).is_ok());
    }

    #[test]
    fn a_cosignature_verifies_and_binds_time_and_note() {
        let site = Signer::from_seed("plant-a", &SEED).unwrap();
        let hq = Signer::from_seed("hq", &[3; 32]).unwrap();
        let note = site.sign(42, &[0xAB; 32]);
        let line = hq.cosign(&note, 1_700_000_000).unwrap();
        let pk = hq.public_key();
        assert_eq!(
            verify_cosignature(&note, &line, "plantwire/hq", &pk),
            Ok(1_700_000_000)
        );
        let other = site.sign(43, &[0xAB; 32]);
        assert_eq!(
            verify_cosignature(&other, &line, "plantwire/hq", &pk),
            Err(CheckpointError::BadSignature)
        );
        // The cosigned note still verifies as the site's note.
        assert!(
            verify(
                &format!("{note}{line}"),
                "plantwire/plant-a",
                &site.public_key()
            )
            .is_ok()
        );
    }

    #[test]
    fn generated_keys_load() {
        let pkcs8 = generate_pkcs8().unwrap();
        let s = Signer::from_pkcs8("x", &pkcs8).unwrap();
        let note = s.sign(1, &[1; 32]);
        assert!(verify(&note, "plantwire/x", &s.public_key()).is_ok());
        assert_eq!(
            Signer::from_pkcs8("x", b"nope").err(),
            Some(CheckpointError::BadKey)
        );
    }
}
