//! Device certificates (schema v5): the row of each certificate issued to a device, keyed by its
//! SHA-256 fingerprint, and the CRL number in `meta`, written with the entry that changes them.

use serde::{Deserialize, Serialize};

use super::rows::{from_versioned_json, versioned_json};
use super::table::Row;
use super::{DEVICE_CERTS, META, ReadTx, StoreError, WriteTx};

/// `meta` key: the number of the newest CRL (u64 BE); absent means 0, no revocation yet.
pub(crate) const CRL_NUMBER_KEY: &str = "crl_number";

/// A client certificate the site CA issued to a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCertRow {
    /// SHA-256 of the DER certificate, lower-case hex (the key, repeated).
    pub fingerprint: String,
    pub device: String,
    /// The certificate's serial, lower-case hex.
    pub serial: String,
    pub issued_at_us: i64,
    pub not_after_us: i64,
    pub revoked_at_us: Option<i64>,
}

impl Row for DeviceCertRow {
    fn encode(&self) -> Result<Vec<u8>, StoreError> {
        versioned_json(self)
    }

    fn decode(b: &[u8]) -> Result<Self, StoreError> {
        from_versioned_json(b, "device certificate")
    }
}

fn crl_number_of(raw: Option<Vec<u8>>) -> Result<u64, StoreError> {
    match raw {
        None => Ok(0),
        Some(v) => {
            let b: [u8; 8] = v
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Malformed { what: "crl number" })?;
            Ok(u64::from_be_bytes(b))
        }
    }
}

impl ReadTx {
    pub fn device_cert(&self, fingerprint: &[u8; 32]) -> Result<Option<DeviceCertRow>, StoreError> {
        DEVICE_CERTS.get(self, fingerprint.as_slice())
    }

    /// Every certificate ever issued (devices are few; a scan is fine).
    pub fn device_certs(&self) -> Result<Vec<DeviceCertRow>, StoreError> {
        let mut out = Vec::new();
        DEVICE_CERTS.range::<&[u8]>(self, .., |_, c| {
            out.push(c);
            true
        })?;
        Ok(out)
    }

    pub fn crl_number(&self) -> Result<u64, StoreError> {
        crl_number_of(self.meta(CRL_NUMBER_KEY)?)
    }
}

impl WriteTx {
    /// Every certificate of `device`.
    pub fn certs_of_device(&self, device: &str) -> Result<Vec<DeviceCertRow>, StoreError> {
        let mut out = Vec::new();
        DEVICE_CERTS.range::<&[u8]>(self, .., |_, c| {
            if c.device == device {
                out.push(c);
            }
            true
        })?;
        Ok(out)
    }

    pub fn put_device_cert(
        &mut self,
        fingerprint: &[u8; 32],
        row: &DeviceCertRow,
    ) -> Result<(), StoreError> {
        DEVICE_CERTS.put(self, fingerprint.as_slice(), row)
    }

    /// Raises the CRL number by one and returns the new number.
    pub fn bump_crl_number(&mut self) -> Result<u64, StoreError> {
        let raw = {
            let meta = self.txn.open_table(META)?;
            redb::ReadableTable::get(&meta, CRL_NUMBER_KEY)?.map(|v| v.value().to_vec())
        };
        let next = crl_number_of(raw)? + 1;
        self.put(META, CRL_NUMBER_KEY, next.to_be_bytes().as_slice())?;
        Ok(next)
    }
}
