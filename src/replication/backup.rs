//! What an HQ backup carries of each site under `<state_dir>/sites/<site>/`: its record files
//! (`site.json`, the NATS forward cursor) and its replica, offline or through the running HQ.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::hq::{Replicas, valid_site};
use crate::store::Store;
use crate::store::backup::{BackupError, BackupFile, SiteSource, SiteVisit};

/// A site's replica, in its directory.
pub const REPLICA_FILE: &str = "plantwire.redb";

/// The record files a backup carries per site (and the only ones a restore puts back).
pub const SITE_FILES: &[&str] = &[super::sites::RECORD_FILE, super::nats::cursor::FILE];

fn site_error(site: &str, e: impl std::error::Error + Send + Sync + 'static) -> BackupError {
    BackupError::Site {
        site: site.to_string(),
        source: Box::new(e),
    }
}

/// The sites under `root` (directories with a site's name), sorted; none when it is absent.
pub fn site_names(root: &Path) -> Result<Vec<String>, BackupError> {
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BackupError::Io(e)),
    };
    let mut out = Vec::new();
    for d in rd {
        let d = d.map_err(BackupError::Io)?;
        if !d.file_type().map_err(BackupError::Io)?.is_dir() {
            continue;
        }
        if let Some(name) = d.file_name().to_str().filter(|n| valid_site(n)) {
            out.push(name.to_string());
        }
    }
    out.sort();
    Ok(out)
}

/// The record files present in a site's directory, read now (before its replica's snapshot,
/// so a forward cursor never points past the replica it is restored with).
fn record_files(site: &str, dir: &Path) -> Result<Vec<BackupFile>, BackupError> {
    let mut out = Vec::new();
    for name in SITE_FILES {
        match std::fs::read(dir.join(name)) {
            Ok(bytes) => out.push(BackupFile {
                name: (*name).to_string(),
                sealed: bytes,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(site_error(site, e)),
        }
    }
    Ok(out)
}

/// The sites of a stopped HQ: each replica file opened here, one at a time.
pub struct OfflineSites {
    pub root: PathBuf,
    pub cache_bytes: usize,
}

impl SiteSource for OfflineSites {
    fn visit(&mut self, site: &str, visit: SiteVisit<'_>) -> Result<(), BackupError> {
        let dir = self.root.join(site);
        let files = record_files(site, &dir)?;
        let path = dir.join(REPLICA_FILE);
        if !path.exists() {
            return visit(&files, None);
        }
        let store = Store::open(&path, self.cache_bytes).map_err(|e| site_error(site, e))?;
        visit(&files, Some(&store))
    }
}

/// The sites of the running HQ, through its replicas (opened on demand, as a batch would),
/// from a blocking thread of `runtime`.
pub struct OnlineSites {
    pub replicas: Arc<Replicas>,
    pub runtime: tokio::runtime::Handle,
}

impl SiteSource for OnlineSites {
    fn visit(&mut self, site: &str, visit: SiteVisit<'_>) -> Result<(), BackupError> {
        let files = record_files(site, &self.replicas.site_dir(site))?;
        if !self.replicas.has_replica(site) {
            return visit(&files, None);
        }
        let replica = self
            .runtime
            .block_on(self.replicas.replica(site))
            .map_err(|e| site_error(site, e))?;
        visit(&files, Some(replica.store()))
    }
}
