//! HQ's registry of enrolled sites: one-time enrolment codes (token stored hashed, with a TTL),
//! the site certificate each redeemed code got, revocation, and the live fingerprint → site map.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::ReplicationError;
use super::hq::valid_site;
use crate::error::Rejection;

/// How long an enrolment code is valid.
pub const CODE_TTL_US: i64 = 3_600_000_000;
const CODE_PREFIX: &str = "PWSITE1-";
pub const RECORD_FILE: &str = "site.json";

/// What `site add` prints: where HQ is, which CA to pin, and the one-time token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolCode {
    pub site: String,
    /// `host:port` of HQ's replication listener.
    pub hq: String,
    /// SHA-256 of HQ's CA certificate (DER), hex.
    pub ca_sha256: String,
    pub token: String,
}

impl EnrolCode {
    /// `PWSITE1-` and base64url (no padding) of the JSON: one word to paste.
    pub fn encode(&self) -> Result<String, ReplicationError> {
        Ok(format!(
            "{CODE_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(self)?)
        ))
    }

    pub fn decode(text: &str) -> Result<Self, ReplicationError> {
        let bad = || Rejection::invalid("bad_code", "this is not a plantwire enrolment code");
        let b64 = text.trim().strip_prefix(CODE_PREFIX).ok_or_else(bad)?;
        let json = URL_SAFE_NO_PAD.decode(b64).map_err(|_| bad())?;
        Ok(serde_json::from_slice(&json).map_err(|_| bad())?)
    }
}

/// One site's record, `<sites>/<site>/site.json` (0600).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SiteRecord {
    /// SHA-256 of the pending token, hex; cleared when redeemed.
    pub token_sha256: Option<String>,
    pub token_expires_us: i64,
    /// SHA-256 of the site certificate's DER, hex.
    pub cert_sha256: Option<String>,
    /// SHA-256 of the certificate the site renewed from: still taken until it expires, so an
    /// edge that crashed before storing its renewed certificate keeps shipping (and renews again).
    #[serde(default)]
    pub previous_cert_sha256: Option<String>,
    pub revoked: bool,
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(digest(&SHA256, b).as_ref())
}

/// The registry: records on disk, the fingerprint map in memory, a cancel token per site whose
/// cancellation closes its connections.
#[derive(Debug)]
pub struct Sites {
    root: PathBuf,
    by_cert: ArcSwap<HashMap<String, String>>,
    live: Mutex<HashMap<String, CancellationToken>>,
    /// Serializes changes to records (add, redeem, revoke).
    write: Mutex<()>,
}

impl Sites {
    /// Loads every record under `root` (`<state_dir>/sites`).
    pub fn load(root: &Path) -> Result<Self, ReplicationError> {
        let s = Self {
            root: root.to_path_buf(),
            by_cert: ArcSwap::from_pointee(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            write: Mutex::new(()),
        };
        s.reload()?;
        Ok(s)
    }

    /// Re-reads the records (after a change made by another process, e.g. an offline command).
    pub fn reload(&self) -> Result<(), ReplicationError> {
        let mut map = HashMap::new();
        if let Ok(rd) = std::fs::read_dir(&self.root) {
            for d in rd.filter_map(Result::ok) {
                let Ok(name) = d.file_name().into_string() else {
                    continue;
                };
                if !valid_site(&name) {
                    continue;
                }
                if let Some(rec) = self.record(&name)? {
                    if rec.revoked {
                        continue;
                    }
                    for fp in [rec.cert_sha256, rec.previous_cert_sha256]
                        .into_iter()
                        .flatten()
                    {
                        map.insert(fp, name.clone());
                    }
                }
            }
        }
        self.by_cert.store(Arc::new(map));
        Ok(())
    }

    fn path(&self, site: &str) -> PathBuf {
        self.root.join(site).join(RECORD_FILE)
    }

    /// The site's record, if it was ever added.
    pub fn record(&self, site: &str) -> Result<Option<SiteRecord>, ReplicationError> {
        let path = self.path(site);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ReplicationError::Io { path, source }),
        }
    }

    fn save(&self, site: &str, rec: &SiteRecord) -> Result<(), ReplicationError> {
        let dir = self.root.join(site);
        std::fs::create_dir_all(&dir).map_err(|source| ReplicationError::Io {
            path: dir.clone(),
            source,
        })?;
        let path = self.path(site);
        let io = |source| ReplicationError::Io {
            path: path.clone(),
            source,
        };
        let tmp = dir.join(format!("{RECORD_FILE}.tmp"));
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            f.write_all(&serde_json::to_vec(rec)?).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        // Durable before anyone is answered: a renewal HQ acknowledged must survive a power cut.
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| ReplicationError::Io { path: dir, source })
    }

    /// `site add`: a new site (or a new code for a site not enrolled yet). A site that has a
    /// certificate is refused (`site_enrolled`): revoke it first.
    pub fn add(
        &self,
        site: &str,
        hq: &str,
        ca_sha256: &str,
        now_us: i64,
    ) -> Result<EnrolCode, ReplicationError> {
        if !valid_site(site) {
            return Err(Rejection::invalid(
                "invalid_site",
                "a site name is 1-64 characters of a-z, 0-9, '-', '_', '.'",
            )
            .into());
        }
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let rec = self.record(site)?.unwrap_or_default();
        if rec.cert_sha256.is_some() && !rec.revoked {
            return Err(Rejection::conflict(
                "site_enrolled",
                "this site is enrolled; revoke it before enrolling it again",
            )
            .into());
        }
        let mut raw = [0u8; 24];
        aws_lc_rs::rand::fill(&mut raw)
            .map_err(|_| Rejection::invalid("random_failed", "the system random failed"))?;
        let token = URL_SAFE_NO_PAD.encode(raw);
        self.save(
            site,
            &SiteRecord {
                token_sha256: Some(sha256_hex(token.as_bytes())),
                token_expires_us: now_us.saturating_add(CODE_TTL_US),
                cert_sha256: None,
                previous_cert_sha256: None,
                revoked: false,
            },
        )?;
        Ok(EnrolCode {
            site: site.to_string(),
            hq: hq.to_string(),
            ca_sha256: ca_sha256.to_string(),
            token,
        })
    }

    /// Checks and spends the token of `site`, then stores the certificate `issue` returns
    /// (its DER, and its PEM which is handed back). The token works once; a wrong or expired one
    /// is refused alike.
    pub fn redeem(
        &self,
        site: &str,
        token: &str,
        now_us: i64,
        issue: impl FnOnce() -> Result<(Vec<u8>, String), ReplicationError>,
    ) -> Result<String, ReplicationError> {
        let refused = || Rejection::forbidden("bad_token", "the enrolment code is not valid");
        if !valid_site(site) {
            return Err(refused().into());
        }
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut rec = self.record(site)?.ok_or_else(refused)?;
        let ok = rec.token_sha256.as_deref() == Some(sha256_hex(token.as_bytes()).as_str())
            && now_us < rec.token_expires_us;
        if !ok {
            return Err(refused().into());
        }
        let (der, pem) = issue()?;
        rec.token_sha256 = None;
        rec.cert_sha256 = Some(sha256_hex(&der));
        rec.previous_cert_sha256 = None;
        rec.revoked = false;
        self.save(site, &rec)?;
        self.reload()?;
        Ok(pem)
    }

    /// Renews the certificate of `site`, which presented `presented` (a certificate DER this
    /// registry maps to `site`): stores the one `issue` returns as current and `presented` as the
    /// previous one (still taken until it expires), and hands back its PEM.
    pub fn renew(
        &self,
        site: &str,
        presented: &[u8],
        issue: impl FnOnce() -> Result<(Vec<u8>, String), ReplicationError>,
    ) -> Result<String, ReplicationError> {
        let refused = || {
            Rejection::forbidden(
                "unknown_certificate",
                "no enrolled site has this certificate",
            )
        };
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut rec = self.record(site)?.ok_or_else(refused)?;
        let fp = sha256_hex(presented);
        let known = [&rec.cert_sha256, &rec.previous_cert_sha256]
            .into_iter()
            .any(|c| c.as_deref() == Some(fp.as_str()));
        if rec.revoked || !known {
            return Err(refused().into());
        }
        let (der, pem) = issue()?;
        rec.previous_cert_sha256 = Some(fp);
        rec.cert_sha256 = Some(sha256_hex(&der));
        self.save(site, &rec)?;
        self.reload()?;
        Ok(pem)
    }

    /// `site revoke`: the certificate stops working at once and live connections are closed.
    /// Returns whether the site existed.
    pub fn revoke(&self, site: &str) -> Result<bool, ReplicationError> {
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut rec) = self.record(site)? else {
            return Ok(false);
        };
        rec.revoked = true;
        rec.token_sha256 = None;
        self.save(site, &rec)?;
        self.reload()?;
        if let Some(t) = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(site)
        {
            t.cancel();
        }
        Ok(true)
    }

    /// The site a client certificate (DER) belongs to, if enrolled and not revoked.
    pub fn site_of(&self, cert_der: &[u8]) -> Option<String> {
        self.by_cert.load().get(&sha256_hex(cert_der)).cloned()
    }

    /// A token cancelled when `site` is revoked: its connections watch it.
    pub fn watch(&self, site: &str) -> CancellationToken {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(site.to_string())
            .or_default()
            .clone()
    }
}
