//! The CLI's maintenance commands: `discover` (mDNS browse), `backup` (through the running server's
//! control socket, or from the stopped store) and `restore`. The server side of both is elsewhere.

use std::io::{BufReader, BufWriter};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::bootstrap::{self, STORE_FILE};
use crate::config::Config;
use crate::store::backup::{self, Manifest};
use crate::store::{SCHEMA_VERSION, Store};

/// `plantwire discover`: listens for `timeout` and prints what it heard.
pub fn discover(config: &Config, timeout: Duration, json: bool) -> anyhow::Result<ExitCode> {
    let found = crate::discovery::browse(&config.discovery, timeout)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(ExitCode::SUCCESS);
    }
    if found.is_empty() {
        println!("no plantwire server answered within {}s", timeout.as_secs());
    }
    for i in &found {
        let addrs: Vec<String> = i.addresses.iter().map(|a| a.to_string()).collect();
        println!("{}", i.name);
        println!("  site:        {}", i.site.as_deref().unwrap_or("?"));
        println!("  version:     {}", i.version.as_deref().unwrap_or("?"));
        println!("  host:        {}", i.host);
        println!("  addresses:   {}", addrs.join(", "));
        println!("  port:        {}", i.port);
        println!(
            "  CA fingerprint (compare this one): {}",
            i.ca_fingerprint.as_deref().unwrap_or("?")
        );
        println!(
            "  served certificate (changes when renewed): {}",
            i.fingerprint.as_deref().unwrap_or("?")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(m: &Manifest) -> String {
    let head = match &m.chain_head {
        Some(h) => format!("entries up to seq {} (hash {})", h.seq, h.hash),
        None => "an empty log".to_string(),
    };
    let sites = match m.sites.len() {
        0 => String::new(),
        n => format!(", with {n} enrolled site(s) and their replicas"),
    };
    format!(
        "site {}, schema {}, {head}{sites}, taken at {} by plantwire {}",
        m.site,
        m.schema_version,
        utc(m.created_at_us),
        m.plantwire_version
    )
}

/// `plantwire backup FILE`: through the running server's control socket, else (server stopped)
/// from the store directly. Written to `FILE.partial`, verified, then renamed; mode 0600.
pub fn backup(config: &Config, file: &Path, force: bool) -> anyhow::Result<ExitCode> {
    if !force && file.exists() {
        bail!(
            "{} already exists; pass --force to replace it",
            file.display()
        );
    }
    let state_dir = config.state_dir();
    let partial = PathBuf::from(format!("{}.partial", file.display()));
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    // The backup holds sealed bodies but clear metadata (names, hashes): keep it private.
    out.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private (chmod 600)", partial.display()))?;
    let mut out = BufWriter::with_capacity(256 << 10, out);
    let via = match crate::control::request_backup(&state_dir, &mut out) {
        Ok(true) => "the running server",
        Ok(false) => match offline_backup(config, &state_dir, &mut out) {
            Ok(()) => "the store (server stopped)",
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        },
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
    };
    let file_handle = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("cannot write {}", partial.display()))?;
    file_handle
        .sync_all()
        .with_context(|| format!("cannot flush {} to disk", partial.display()))?;
    drop(file_handle);
    let manifest = match backup::verify(&mut BufReader::new(std::fs::File::open(&partial)?)) {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            bail!("the backup did not verify, nothing written: {e}");
        }
    };
    std::fs::rename(&partial, file)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), file.display()))?;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot flush the directory {}", dir.display()))?;
    }
    println!("backup written to {} from {via}", file.display());
    println!("{}", describe(&manifest));
    println!(
        "the site CA and keys are in the backup sealed under the data key; the data key is not: keep it offline (see docs/operations.md, \"Backup and restore\")"
    );
    Ok(ExitCode::SUCCESS)
}

/// The stopped store's backup. The site CA and keys are sealed only with the store's own data
/// key (checked against the fingerprint the store recorded); with no key here (it may be a
/// systemd credential this shell does not see) the backup is made without them, and says so.
fn offline_backup(
    config: &Config,
    state_dir: &Path,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let path = state_dir.join(STORE_FILE);
    if !path.exists() {
        bail!("no store at {} and no server running", path.display());
    }
    let store = Store::open(&path, config.storage.cache_mib << 20)?;
    let files = match bootstrap::ensure_data_key(config, state_dir, bootstrap::MissingKey::Refuse) {
        Ok(key) => {
            let recorded = store.read()?.meta("data_key_fp")?;
            if recorded.is_some_and(|fp| fp != key.fingerprint()) {
                bail!(
                    "the data key found here is not this store's key; use the store's key (data.key, data_key_file or the data-key credential)"
                );
            }
            crate::site_files::collect(state_dir, |aad, b| key.seal_bytes(aad, b))?
        }
        Err(bootstrap::BootstrapError::NoKey(_)) => {
            eprintln!(
                "plantwire: no data key here: the backup holds the store but not the site CA and keys (they can only travel sealed under the key)"
            );
            Vec::new()
        }
        Err(e) => return Err(e.into()),
    };
    // An HQ's sites: each record and replica, the replicas opened here one at a time.
    let root = crate::replication::runtime::sites_root(state_dir);
    let sites = crate::replication::backup::site_names(&root)?;
    let mut source = crate::replication::backup::OfflineSites {
        root,
        cache_bytes: 4 << 20,
    };
    store.write_backup_with_sites(
        out,
        crate::clock::Clock::now_us(&crate::clock::SystemClock),
        &files,
        &sites,
        &mut source,
    )?;
    Ok(())
}

/// `plantwire restore FILE`: into the configured state directory, with the server stopped.
pub fn restore(config: &Config, file: &Path, force: bool) -> anyhow::Result<ExitCode> {
    let manifest = backup::read_manifest(&mut BufReader::new(
        std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?,
    ))?;
    println!("backup: {}", describe(&manifest));
    if manifest.site != config.site() {
        bail!(
            "the backup is of site {:?} but this configuration says {:?}; set `site = \"{}\"` first",
            manifest.site,
            config.site(),
            manifest.site
        );
    }
    let state_dir = config.state_dir();
    bootstrap::ensure_state_dir(&state_dir)?;
    // The key is never in a backup: if one is configured here it must be the backup's.
    let key = match bootstrap::ensure_data_key(config, &state_dir, bootstrap::MissingKey::Refuse) {
        Ok(k) => Some(k),
        Err(bootstrap::BootstrapError::NoKey(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if key.is_none() && manifest.format >= 2 {
        bail!(
            "no data key in {}: the backup carries the site CA and keys sealed under the data key; put the backup's key in place (data.key, data_key_file or the data-key credential) first",
            state_dir.display()
        );
    }
    if let (Some(k), Some(fp)) = (&key, &manifest.data_key_fingerprint) {
        if &hex::encode(k.fingerprint()) != fp {
            bail!(
                "the data key configured here is not the key of this backup (fingerprint {fp}); put the backup's key in place"
            );
        }
    }
    let dest = state_dir.join(STORE_FILE);
    let sites_dir = crate::replication::runtime::sites_root(&state_dir);
    let has_sites = std::fs::read_dir(&sites_dir).is_ok_and(|mut d| d.next().is_some());
    if !manifest.sites.is_empty() && has_sites && !force {
        bail!(
            "{} holds sites; stop the server and pass --force to replace them (they are kept beside)",
            sites_dir.display()
        );
    }
    if dest.exists() {
        if !force {
            bail!(
                "{} exists; stop the server and pass --force to replace it (it is kept beside)",
                dest.display()
            );
        }
        // Opening it proves no server holds it.
        drop(Store::open(&dest, 1 << 20)?);
    }
    let staging = state_dir.join(format!("{STORE_FILE}.restoring"));
    let _ = std::fs::remove_file(&staging);
    let sites_staging = state_dir.join("sites.restoring");
    let _ = std::fs::remove_dir_all(&sites_staging);
    let backup::Restored {
        manifest: restored,
        files,
        sites,
    } = backup::restore(
        &mut BufReader::new(std::fs::File::open(file)?),
        &staging,
        backup::SitesTarget {
            root: &sites_staging,
            replica_file: crate::replication::backup::REPLICA_FILE,
        },
    )?;
    let discard = || {
        let _ = std::fs::remove_file(&staging);
        let _ = std::fs::remove_dir_all(&sites_staging);
    };
    if let Some(odd) = sites
        .iter()
        .flat_map(|s| &s.files)
        .find(|f| !crate::replication::backup::SITE_FILES.contains(&f.name.as_str()))
    {
        discard();
        bail!(
            "the backup carries an unexpected site file {:?}; nothing restored",
            odd.name
        );
    }
    // Bring an older schema up to date now, so a failure shows here and not at the next start.
    let migrated = Store::open(&staging, 1 << 20).map(drop).and_then(|()| {
        sites
            .iter()
            .filter(|s| s.replica.is_some())
            .try_for_each(|s| {
                let path = sites_staging
                    .join(&s.name)
                    .join(crate::replication::backup::REPLICA_FILE);
                Store::open(&path, 1 << 20).map(drop)
            })
    });
    if let Err(e) = migrated {
        discard();
        return Err(e.into());
    }
    let suffix = format!(
        "before-restore-{}",
        crate::clock::Clock::now_us(&crate::clock::SystemClock)
    );
    if let Some(k) = &key {
        match crate::site_files::restore(&state_dir, k, &files, &suffix, force) {
            Ok(names) if !names.is_empty() => {
                println!(
                    "restored {} (0600) into {}",
                    names.join(", "),
                    state_dir.display()
                )
            }
            Ok(_) => {}
            Err(e) => {
                discard();
                return Err(e.into());
            }
        }
    }
    if dest.exists() {
        let aside = state_dir.join(format!("{STORE_FILE}.{suffix}"));
        std::fs::rename(&dest, &aside)?;
        println!("the previous store is kept as {}", aside.display());
    }
    std::fs::rename(&staging, &dest)?;
    if !sites.is_empty() {
        if sites_dir.exists() {
            let aside = state_dir.join(format!("sites.{suffix}"));
            std::fs::rename(&sites_dir, &aside)?;
            println!("the previous sites are kept as {}", aside.display());
        }
        std::fs::rename(&sites_staging, &sites_dir)?;
        println!(
            "restored {} site(s) with their records and replicas into {}",
            sites.len(),
            sites_dir.display()
        );
    }
    std::fs::File::open(&state_dir)?.sync_all()?;
    println!(
        "restored into {} (schema {} -> {SCHEMA_VERSION})",
        dest.display(),
        restored.schema_version
    );
    match key {
        Some(_) => {
            println!("run `plantwire audit verify` to check the chain, then start the server")
        }
        None => println!(
            "no data key here yet: put the backup's key in place (data.key, data_key_file or the data-key credential) before starting"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a UTC µs timestamp (days to civil date after H. Hinnant).
fn utc(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(951_782_400_000_000), "2000-02-29T00:00:00Z");
        assert_eq!(super::utc(1_795_000_000_123_456), "2026-11-18T11:06:40Z");
    }
}
