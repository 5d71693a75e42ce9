//! Machine identities: named devices that publish events with an API token. The token is shown
//! once at creation and stored only as its SHA-256; revocation takes effect on the next request
//! (the [`AuthCache`] is keyed to the store's devices generation, which every revocation moves).

mod cache;
#[cfg(test)]
mod tests;

pub use cache::{AuthCache, CAPACITY as AUTH_CACHE_CAPACITY};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use crate::error::Rejection;
use crate::log::{Author, Log, NewEntry, SubmitError};
use crate::secret::token_hash;
use crate::store::{DeviceRow, StoreError};

pub const KIND_ADDED: &str = "device.added";
pub const KIND_REVOKED: &str = "device.revoked";
/// Every device token starts with this, so a leaked one is recognisable in a scan.
pub const TOKEN_PREFIX: &str = "pwd_";
/// The stream all device administration entries belong to.
pub const STREAM: &str = "admin/devices";

#[derive(Serialize)]
struct Added<'a> {
    name: &'a str,
    token_sha256: String,
}

#[derive(Serialize)]
struct Revoked<'a> {
    name: &'a str,
    /// Serials of the device's certificates revoked with it (listed in the next CRL).
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    certificate_serials: &'a [String],
}

/// A device name: 1-64 of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), Rejection> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Rejection::invalid(
            "invalid_name",
            "a device name is 1-64 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
        ))
    }
}

fn new_token() -> Result<String, SubmitError> {
    let mut raw = [0u8; 32];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| SubmitError::Random)?;
    Ok(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw)))
}

/// Registers a device and returns the log seq of its entry and its token (shown only now).
pub async fn add(log: &Log, name: &str, by: &Author) -> Result<(u64, String), SubmitError> {
    validate_name(name).map_err(SubmitError::Rejected)?;
    let token = new_token()?;
    let token_hash = token_hash(&token);
    let entry = NewEntry::json(
        KIND_ADDED,
        STREAM,
        by,
        &Added {
            name,
            token_sha256: hex::encode(token_hash),
        },
    )?;
    let name = name.to_string();
    let by = by.to_string();
    let at = log
        .submit(move |tx| {
            if tx.views().device(&name)?.is_some() {
                return Err(
                    Rejection::conflict("device_exists", "a device with this name exists").into(),
                );
            }
            let row = DeviceRow {
                name: name.clone(),
                token_hash,
                created_at_us: tx.now_us(),
                created_by: by.clone(),
                revoked_at_us: None,
            };
            tx.views().put_device(&row)?;
            tx.append(entry.clone())
        })
        .await?;
    Ok((at, token))
}

/// Revokes a device's token and certificates at once (the CRL number grows). Its past entries
/// stay in the log.
pub async fn revoke(log: &Log, name: &str, by: &Author) -> Result<u64, SubmitError> {
    let name = name.to_string();
    let by = by.clone();
    log.submit(move |tx| {
        let Some(mut row) = tx.views().device(&name)? else {
            return Err(Rejection::not_found("no_such_device", "no device with this name").into());
        };
        if row.revoked_at_us.is_some() {
            return Err(
                Rejection::conflict("already_revoked", "this device is already revoked").into(),
            );
        }
        row.revoked_at_us = Some(tx.now_us());
        tx.views().put_device(&row)?;
        let now = tx.now_us();
        let serials = crate::device_certs::revoke_in(tx.views(), &name, now)?;
        let body = Revoked {
            name: &name,
            certificate_serials: &serials,
        };
        tx.append(NewEntry::json(KIND_REVOKED, STREAM, &by, &body)?)
    })
    .await
}

/// The active device a token belongs to, if any. Asked on every device request, so a known
/// token is answered from `cache` while no device row has changed since it was read.
pub fn authenticate(
    log: &Log,
    cache: &AuthCache,
    token: &str,
) -> Result<Option<DeviceRow>, StoreError> {
    if !token.starts_with(TOKEN_PREFIX) || token.len() > 128 {
        return Ok(None);
    }
    let hash = token_hash(token);
    // Read before the snapshot: a revocation committed after this moves the generation past the
    // one the answer is cached under, so it is never served again.
    let generation = log.devices_generation();
    if let Some(device) = cache.token(&hash, generation) {
        return Ok(Some(device));
    }
    let row = log
        .read()?
        .device_by_token_hash(&hash)?
        .filter(|d| d.revoked_at_us.is_none());
    if let Some(device) = &row {
        cache.insert_token(hash, generation, device.clone());
    }
    Ok(row)
}

pub fn list(log: &Log) -> Result<Vec<DeviceRow>, StoreError> {
    log.read()?.devices()
}
