//! `[attachments]`: the per-user quota and how long an upload may wait to be posted, with their
//! bounds. The checks themselves run in `attachments` (quota) and `attachment_gc` (unposted).

use serde::{Deserialize, Serialize};

/// `[attachments]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttachmentsConfig {
    /// Bytes of attachments one user may have stored at once (uploads that still exist).
    pub quota_bytes_per_user: u64,
    /// Hours an upload may wait for a message to reference it before it is removed.
    pub unposted_ttl_hours: u32,
}

impl Default for AttachmentsConfig {
    fn default() -> Self {
        Self {
            quota_bytes_per_user: 1 << 30,
            unposted_ttl_hours: 24,
        }
    }
}

impl AttachmentsConfig {
    /// A bad value: the key and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !((1 << 10)..=(1 << 40)).contains(&self.quota_bytes_per_user) {
            return Err((
                "attachments.quota_bytes_per_user",
                "1 KiB (1024) to 1 TiB (1099511627776)".into(),
            ));
        }
        if !(1..=8760).contains(&self.unposted_ttl_hours) {
            return Err(("attachments.unposted_ttl_hours", "1 to 8760".into()));
        }
        Ok(())
    }
}
