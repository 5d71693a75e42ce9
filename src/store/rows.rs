//! Stored row types for the view tables, each with a leading version byte, separate from API types.
//! Views are updated in the same transaction as the log entry that changes them.

use serde::{Deserialize, Serialize};

use super::StoreError;

const ROW_V1: u8 = 1;

/// The chain head kept in `meta`: v1 = version u8 | seq u64 BE | hash [32] | ts i64 BE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: [u8; 32],
    pub ts: i64,
}

impl ChainHead {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(49);
        out.push(ROW_V1);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.ts.to_be_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, StoreError> {
        if b.len() != 49 || b[0] != ROW_V1 {
            return Err(StoreError::Malformed { what: "chain head" });
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[1..9]);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&b[9..41]);
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[41..49]);
        Ok(Self {
            seq: u64::from_be_bytes(seq),
            hash,
            ts: i64::from_be_bytes(ts),
        })
    }
}

/// A machine identity allowed to publish events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRow {
    pub name: String,
    /// SHA-256 of the API token; the token itself is never stored.
    #[serde(with = "hex_32")]
    pub token_hash: [u8; 32],
    pub created_at_us: i64,
    pub created_by: String,
    pub revoked_at_us: Option<i64>,
}

impl DeviceRow {
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        versioned_json(self)
    }

    pub fn decode(b: &[u8]) -> Result<Self, StoreError> {
        from_versioned_json(b, "device")
    }
}

pub(super) fn versioned_json<T: Serialize>(row: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![ROW_V1];
    serde_json::to_writer(&mut out, row).map_err(|source| StoreError::Encode {
        what: "row",
        source,
    })?;
    Ok(out)
}

pub(super) fn from_versioned_json<T: for<'de> Deserialize<'de>>(
    b: &[u8],
    what: &'static str,
) -> Result<T, StoreError> {
    match b.split_first() {
        Some((&ROW_V1, rest)) => {
            serde_json::from_slice(rest).map_err(|source| StoreError::Row { what, source })
        }
        _ => Err(StoreError::Malformed { what }),
    }
}

mod hex_32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// A person's role; the order is the order of privilege. An auditor ranks above a viewer and
/// below an operator: it passes every read a viewer may do and no operator or admin check, and
/// `http::extract::CurrentUser` refuses it every write but its own account's. At HQ it also
/// reads every site (`replication::grants`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Auditor,
    Operator,
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    /// Asked to register; waits for an admin.
    Pending,
    Active,
    Disabled,
}

/// A person who signs in. Keyed by the lower-cased username.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRow {
    /// As the user chose it (case kept); unique case-insensitively.
    pub username: String,
    pub display_name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub role: Role,
    pub status: UserStatus,
    /// Set for one-time passwords: nothing but a password change is allowed.
    pub must_change_password: bool,
    /// Bumped by password, role and status changes: older tokens and sessions stop working.
    pub auth_version: u64,
    pub created_at_us: i64,
    pub last_seen_us: Option<i64>,
}

impl UserRow {
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        versioned_json(self)
    }

    pub fn decode(b: &[u8]) -> Result<Self, StoreError> {
        from_versioned_json(b, "user")
    }
}

/// A session: one chain of rotating refresh tokens from one login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRow {
    pub id: String,
    /// Lower-cased username.
    pub user: String,
    /// The user's `auth_version` when the session began.
    pub auth_version: u64,
    /// SHA-256 of the only refresh token that may be used next.
    #[serde(with = "hex_32")]
    pub current_refresh: [u8; 32],
    pub created_at_us: i64,
    pub expires_at_us: i64,
    pub revoked_at_us: Option<i64>,
    /// What the client said it is, summarised ("Firefox on Linux"); empty in rows written
    /// before it was recorded.
    #[serde(default)]
    pub device: String,
    /// The address of the last sign-in or refresh.
    #[serde(default)]
    pub address: Option<String>,
    /// The last sign-in or refresh: an active client refreshes at least once per access TTL.
    #[serde(default)]
    pub last_used_us: Option<i64>,
}

impl SessionRow {
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        versioned_json(self)
    }

    pub fn decode(b: &[u8]) -> Result<Self, StoreError> {
        from_versioned_json(b, "session")
    }
}

/// The account and device rows as typed-table rows (their encodings are above).
macro_rules! row {
    ($($t:ty),*) => {$(
        impl super::table::Row for $t {
            fn encode(&self) -> Result<Vec<u8>, StoreError> {
                <$t>::encode(self)
            }

            fn decode(b: &[u8]) -> Result<Self, StoreError> {
                <$t>::decode(b)
            }
        }
    )*};
}
row!(DeviceRow, UserRow, SessionRow);
