//! The site section of an HQ's backup (format 3): per site its record files and its replica's
//! rows, written from the caller's [`SiteSource`] and read back (walked or restored).

use std::path::Path;

use super::*;

/// One site of the site section (see the format above).
pub(super) fn write_site(
    w: &mut RowWriter<'_>,
    site: &str,
    files: &[BackupFile],
    replica: Option<&Store>,
    now_us: i64,
) -> Result<(), BackupError> {
    let count = u16::try_from(files.len())
        .ok()
        .filter(|n| *n <= MAX_SITE_FILES)
        .ok_or(BackupError::Corrupt("too many site files to carry"))?;
    w.put(&(site.len() as u32).to_be_bytes())?;
    w.put(site.as_bytes())?;
    w.put(&count.to_be_bytes())?;
    for f in files {
        if !plain_name(&f.name) || f.sealed.len() > MAX_FILE as usize {
            return Err(BackupError::BadName(f.name.clone()));
        }
        w.put(&(f.name.len() as u32).to_be_bytes())?;
        w.put(f.name.as_bytes())?;
        w.put(&(f.sealed.len() as u32).to_be_bytes())?;
        w.put(&f.sealed)?;
    }
    let Some(store) = replica else {
        return w.put(&[NO_REPLICA]);
    };
    let rtx = store.db()?.begin_read()?;
    check_tables(&rtx, &w.names)?;
    let manifest = manifest_of(&rtx, now_us, &w.names)?;
    let json = serde_json::to_vec(&manifest).map_err(BackupError::Manifest)?;
    w.put(&[REPLICA])?;
    w.put(&(json.len() as u32).to_be_bytes())?;
    w.put(&json)?;
    write_rows(&rtx, w)
}

/// The source of a backup without sites (a site's own, or an HQ with none).
pub(super) struct NoSites;

impl SiteSource for NoSites {
    fn visit(&mut self, _site: &str, _visit: SiteVisit<'_>) -> Result<(), BackupError> {
        Err(BackupError::Corrupt("no site was asked for"))
    }
}

/// Where a restore puts the sites: `<root>/<site>/` with the replica as `replica_file`.
#[derive(Debug, Clone, Copy)]
pub struct SitesTarget<'p> {
    pub root: &'p Path,
    pub replica_file: &'p str,
}

/// The site section: walked (`target` None) or written under `target`; the sites and whether
/// every replica's row count matched.
pub(super) fn read_sites(
    hr: &mut HashingReader<'_>,
    manifest: &Manifest,
    target: Option<SitesTarget<'_>>,
) -> Result<(Vec<RestoredSite>, bool), BackupError> {
    let count = hr.u16()?;
    if usize::from(count) != manifest.sites.len() {
        return Err(BackupError::Corrupt(
            "the site count does not match the manifest",
        ));
    }
    let mut out = Vec::with_capacity(manifest.sites.len());
    let mut counts_ok = true;
    for expected in &manifest.sites {
        let name = String::from_utf8(hr.field(MAX_SITE_NAME)?)
            .map_err(|_| BackupError::Corrupt("a site name is not UTF-8"))?;
        if &name != expected || !plain_name(&name) {
            return Err(BackupError::BadName(name));
        }
        let files_count = hr.u16()?;
        if files_count > MAX_SITE_FILES {
            return Err(BackupError::Corrupt("too many site files"));
        }
        let mut files = Vec::with_capacity(usize::from(files_count));
        for _ in 0..files_count {
            let file = String::from_utf8(hr.field(MAX_SITE_NAME)?)
                .map_err(|_| BackupError::Corrupt("a site file name is not UTF-8"))?;
            if !plain_name(&file) {
                return Err(BackupError::BadName(file));
            }
            let bytes = hr.field(MAX_FILE)?;
            files.push(BackupFile {
                name: file,
                sealed: bytes,
            });
        }
        let dir = target.map(|t| t.root.join(&name));
        if let Some(dir) = &dir {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| BackupError::Write {
                    path: dir.clone(),
                    source,
                })?;
            for f in &files {
                let path = dir.join(&f.name);
                if f.name == target.map_or("", |t| t.replica_file) {
                    return Err(BackupError::BadName(f.name.clone()));
                }
                crate::secret::write_new_secret_file(&path, &f.sealed)
                    .map_err(|source| BackupError::Write { path, source })?;
            }
        }
        let replica = match hr.u8()? {
            NO_REPLICA => None,
            REPLICA => {
                let m = read_manifest_field(hr)?;
                counts_ok &= match (&dir, target) {
                    (Some(dir), Some(t)) => load_store(hr, &m, &dir.join(t.replica_file))?,
                    _ => walk_store(hr, &m)?,
                };
                Some(m)
            }
            _ => return Err(BackupError::Corrupt("a site's replica tag")),
        };
        out.push(RestoredSite {
            name,
            files,
            replica,
        });
    }
    Ok((out, counts_ok))
}
