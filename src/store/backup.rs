//! Backups: every table copied row by row from one read transaction (a consistent snapshot that
//! never blocks the writer), and restore into a new file. Sealed bodies stay sealed; no key inside.
//!
//! Format v3, all integers big-endian:
//!   "PWBACKUP" | format u32 (=3) | manifest length u32 | manifest (JSON, `Manifest`)
//!   then file count u16, per file: name len u32 | name (UTF-8) | sealed len u32 | sealed bytes
//!     (state-dir files such as the site CA, sealed by the caller; this layer only carries bytes)
//!   then the rows: per row 0x01 | table index u16 (into manifest.tables) | key len u32 | key |
//!     value len u32 | value; then 0x00 | row count u64
//!   then site count u16 (an HQ's enrolled sites, `manifest.sites`, in that order), per site:
//!     name len u32 | name | file count u16 | per file: name len u32 | name | len u32 | bytes
//!     (the site's record files, in clear: they hold hashes, no secret) | replica u8 (0: none
//!     yet, 1: follows) | if 1: the replica's manifest (len u32 | JSON) and its rows, framed as
//!     the store's above (its own table list, 0x00, row count)
//!   then SHA-256 of every byte before it ([32]).
//! Tables are written whole, one after the other, in the order of `manifest.tables`. Each store
//! (HQ's own, then each replica) is read in one read transaction of its own.
//! Format v2 is v3 without the site section, v1 is v2 without the file section; both are read.

use std::io::{Read, Write};
use std::path::Path;

use aws_lc_rs::digest::{Context, SHA256};
use redb::{
    Database, Durability, Key, MultimapTableHandle, ReadTransaction, ReadableDatabase,
    ReadableTable, TableDefinition, TableError, TableHandle, Value,
};
use serde::{Deserialize, Serialize};

use super::*;

mod sites;
pub use sites::SitesTarget;
use sites::{NoSites, read_sites, write_site};

const MAGIC: &[u8; 8] = b"PWBACKUP";
const FORMAT: u32 = 3;
/// The first format, without the file section: still restored.
const FORMAT_V1: u32 = 1;
/// The second, without the site section: still restored.
const FORMAT_V2: u32 = 2;
/// At most this many sites (`replication.max_open_sites` is at most 10,000), each with at most
/// `MAX_SITE_FILES` record files.
const MAX_SITES: u16 = 10_000;
const MAX_SITE_FILES: u16 = 16;
const MAX_SITE_NAME: u32 = 64;
const NO_REPLICA: u8 = 0;
const REPLICA: u8 = 1;
/// At most this many files, each name and sealed body bounded.
const MAX_FILES: u16 = 64;
const MAX_FILE_NAME: u32 = 256;
const MAX_FILE: u32 = 1 << 20;
const ROW: u8 = 1;
const END: u8 = 0;
/// No stored key or value comes near this; a larger length means a damaged file.
const MAX_FIELD: u32 = 64 << 20;
const MAX_MANIFEST: u32 = 1 << 20;
/// Rows per write transaction while restoring, so memory stays bounded on a big log.
const RESTORE_CHUNK: usize = 50_000;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("not a plantwire backup (bad magic)")]
    NotABackup,
    #[error(
        "backup format {0} is not supported by this build (it reads formats {FORMAT_V1} to {FORMAT})"
    )]
    Format(u32),
    #[error(
        "the backup has schema version {found}, newer than this build supports ({supported}); use a newer plantwire"
    )]
    NewerSchema { found: u32, supported: u32 },
    /// A structural fault; the text names which (a fixed description, no data of the file).
    #[error("the backup is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("the backup's manifest does not decode: {0}")]
    Manifest(#[source] serde_json::Error),
    #[error("the backup is corrupt: a row of {0} is too large")]
    RowTooLarge(String),
    #[error("the backup is corrupt: a field of {0} bytes")]
    FieldTooLarge(u32),
    #[error("the backup is corrupt: row tag {0}")]
    RowTag(u8),
    #[error("the backup is corrupt: table index {0}")]
    TableIndex(u16),
    #[error("the backup checksum does not match: the file is damaged or truncated")]
    Checksum,
    #[error(
        "the store has table {0:?} that backups do not know; refusing to write an incomplete backup"
    )]
    UnknownTable(String),
    #[error("{0} already exists")]
    Exists(std::path::PathBuf),
    #[error("the backup is corrupt: {0:?} is not a site or site-file name")]
    BadName(String),
    /// The caller could not give a site's files or replica.
    #[error("site {site}: {source}")]
    Site {
        site: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("backup I/O: {0}")]
    Io(std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<E: Into<redb::Error>> From<E> for BackupError {
    fn from(e: E) -> Self {
        BackupError::Store(StoreError::from(e))
    }
}

/// What a backup holds, written before the rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub schema_version: u32,
    pub site: String,
    /// The last entry in the backup; every entry up to it is included.
    pub chain_head: Option<HeadInfo>,
    /// When the snapshot was taken (UTC µs).
    pub created_at_us: i64,
    pub plantwire_version: String,
    /// Hex of the data key's fingerprint (never the key): which key the backup needs.
    pub data_key_fingerprint: Option<String>,
    pub tables: Vec<String>,
    /// An HQ's enrolled sites whose records and replicas follow the store (format 3; none in a
    /// site's own backup, or in a replica's manifest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<String>,
}

/// What an HQ backup carries per site, and from where: the caller knows the sites directory and
/// how replicas are opened (offline, or through the running HQ); this layer only dumps a store.
pub trait SiteSource {
    /// Calls `visit` with `site`'s record files (read before its replica's snapshot starts) and
    /// its replica's store, if it has one yet.
    fn visit(&mut self, site: &str, visit: SiteVisit<'_>) -> Result<(), BackupError>;
}

/// See [`SiteSource::visit`].
pub type SiteVisit<'a> =
    &'a mut dyn FnMut(&[BackupFile], Option<&Store>) -> Result<(), BackupError>;

/// One site a restore brought back: its record files (in clear) and whether its replica was
/// written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredSite {
    pub name: String,
    pub files: Vec<BackupFile>,
    pub replica: Option<Manifest>,
}

/// A state-dir file carried in a backup: its path relative to the state dir and its bytes, sealed
/// by the caller under the data key (this layer never sees a key or clear text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFile {
    pub name: String,
    pub sealed: Vec<u8>,
}

/// What a restore brought back: the manifest and the carried files, still sealed, and the sites
/// (their replicas written where the caller said).
#[derive(Debug)]
pub struct Restored {
    pub manifest: Manifest,
    pub files: Vec<BackupFile>,
    pub sites: Vec<RestoredSite>,
}

/// A site name or a site file name is one plain path component: 1-64 of a-z, 0-9, '-', '_', '.'
/// (site files: also A-Z), not starting with '.'.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SITE_NAME as usize
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadInfo {
    pub seq: u64,
    /// Hex SHA-256 of the entry.
    pub hash: String,
    pub ts_us: i64,
}

fn table_names() -> Vec<String> {
    super::table_names()
}

fn dump_all(rtx: &ReadTransaction, w: &mut RowWriter<'_>) -> Result<(), BackupError> {
    for_each_table!(dump(rtx, w));
    Ok(())
}

fn load_all(db: &Database, r: &mut RowReader<'_, '_>) -> Result<(), BackupError> {
    for_each_table!(load(db, r));
    Ok(())
}

/// Writes while hashing.
struct HashingWriter<'a> {
    out: &'a mut dyn Write,
    hash: Context,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

struct RowWriter<'a> {
    out: HashingWriter<'a>,
    names: Vec<String>,
    rows: u64,
}

impl RowWriter<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), BackupError> {
        self.out.write_all(bytes).map_err(BackupError::Io)
    }

    fn row(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), BackupError> {
        let index = self
            .names
            .iter()
            .position(|n| n == table)
            .ok_or_else(|| BackupError::UnknownTable(table.to_string()))?;
        let index = u16::try_from(index).map_err(|_| BackupError::UnknownTable(table.into()))?;
        let len = |b: &[u8]| {
            u32::try_from(b.len())
                .ok()
                .filter(|l| *l <= MAX_FIELD)
                .ok_or_else(|| BackupError::RowTooLarge(table.to_string()))
        };
        let (klen, vlen) = (len(key)?, len(value)?);
        self.put(&[ROW])?;
        self.put(&index.to_be_bytes())?;
        self.put(&klen.to_be_bytes())?;
        self.put(key)?;
        self.put(&vlen.to_be_bytes())?;
        self.put(value)?;
        self.rows += 1;
        Ok(())
    }
}

fn dump<K: Key + 'static, V: Value + 'static>(
    rtx: &ReadTransaction,
    w: &mut RowWriter<'_>,
    def: TableDefinition<K, V>,
    _since: u32,
) -> Result<(), BackupError> {
    let table = match rtx.open_table(def) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for row in table.iter()? {
        let (k, v) = row?;
        let (k, v) = (k.value(), v.value());
        w.row(
            def.name(),
            K::as_bytes(&k).as_ref(),
            V::as_bytes(&v).as_ref(),
        )?;
    }
    Ok(())
}

/// Refuses a store holding a table backups do not know.
fn check_tables(rtx: &ReadTransaction, names: &[String]) -> Result<(), BackupError> {
    for t in rtx.list_tables()? {
        if !names.iter().any(|n| n == t.name()) {
            return Err(BackupError::UnknownTable(t.name().to_string()));
        }
    }
    if let Some(t) = rtx.list_multimap_tables()?.next() {
        return Err(BackupError::UnknownTable(t.name().to_string()));
    }
    Ok(())
}

/// The manifest of the store `rtx` reads (no sites).
fn manifest_of(
    rtx: &ReadTransaction,
    now_us: i64,
    names: &[String],
) -> Result<Manifest, BackupError> {
    let meta = rtx.open_table(META)?;
    let get = |k: &str| -> Result<Option<Vec<u8>>, BackupError> {
        Ok(meta.get(k)?.map(|v| v.value().to_vec()))
    };
    let schema_version = get("schema_version")?
        .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| BackupError::Corrupt("the store has no schema version"))?;
    let head = get("chain_head")?
        .map(|b| ChainHead::decode(&b))
        .transpose()?;
    Ok(Manifest {
        format: FORMAT,
        schema_version,
        site: get("site")?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default(),
        chain_head: head.map(|h| HeadInfo {
            seq: h.seq,
            hash: hex::encode(h.hash),
            ts_us: h.ts,
        }),
        created_at_us: now_us,
        plantwire_version: env!("CARGO_PKG_VERSION").to_string(),
        data_key_fingerprint: get("data_key_fp")?.map(hex::encode),
        tables: names.to_vec(),
        sites: Vec::new(),
    })
}

/// Every row of the store `rtx` reads, the end marker and the row count.
fn write_rows(rtx: &ReadTransaction, w: &mut RowWriter<'_>) -> Result<(), BackupError> {
    w.rows = 0;
    dump_all(rtx, w)?;
    w.put(&[END])?;
    let rows = w.rows.to_be_bytes();
    w.put(&rows)
}

impl Store {
    /// Writes a backup of everything committed when it starts, from one read transaction: the
    /// writer goes on committing meanwhile, and none of that enters the backup. `files` (already
    /// sealed) are written after the manifest.
    pub fn write_backup(
        &self,
        out: &mut dyn Write,
        now_us: i64,
        files: &[BackupFile],
    ) -> Result<Manifest, BackupError> {
        self.write_backup_with_sites(out, now_us, files, &[], &mut NoSites)
    }

    /// [`Store::write_backup`] for an HQ: after its own store, each of `sites` (record files and
    /// replica, from `source`), one at a time, each replica from its own read transaction.
    pub fn write_backup_with_sites(
        &self,
        out: &mut dyn Write,
        now_us: i64,
        files: &[BackupFile],
        sites: &[String],
        source: &mut dyn SiteSource,
    ) -> Result<Manifest, BackupError> {
        let site_count = u16::try_from(sites.len())
            .ok()
            .filter(|n| *n <= MAX_SITES)
            .ok_or(BackupError::Corrupt("too many sites to carry"))?;
        if let Some(bad) = sites.iter().find(|s| !plain_name(s)) {
            return Err(BackupError::BadName(bad.clone()));
        }
        let rtx = self.db()?.begin_read()?;
        let names = table_names();
        check_tables(&rtx, &names)?;
        let mut manifest = manifest_of(&rtx, now_us, &names)?;
        manifest.sites = sites.to_vec();
        let json = serde_json::to_vec(&manifest).map_err(BackupError::Manifest)?;
        let mut w = RowWriter {
            out: HashingWriter {
                out,
                hash: Context::new(&SHA256),
            },
            names,
            rows: 0,
        };
        w.put(MAGIC)?;
        w.put(&FORMAT.to_be_bytes())?;
        w.put(&(json.len() as u32).to_be_bytes())?;
        w.put(&json)?;
        write_files(&mut w, files)?;
        write_rows(&rtx, &mut w)?;
        drop(rtx);
        w.put(&site_count.to_be_bytes())?;
        for site in sites {
            let mut visited = false;
            source.visit(
                site,
                &mut |files: &[BackupFile], replica: Option<&Store>| {
                    visited = true;
                    write_site(&mut w, site, files, replica, now_us)
                },
            )?;
            if !visited {
                return Err(BackupError::Corrupt("the site source skipped a site"));
            }
        }
        let digest = w.out.hash.clone().finish();
        w.out
            .out
            .write_all(digest.as_ref())
            .map_err(BackupError::Io)?;
        w.out.flush().map_err(BackupError::Io)?;
        Ok(manifest)
    }
}

fn write_files(w: &mut RowWriter<'_>, files: &[BackupFile]) -> Result<(), BackupError> {
    let count = u16::try_from(files.len())
        .ok()
        .filter(|n| *n <= MAX_FILES)
        .ok_or(BackupError::Corrupt("too many files to carry"))?;
    w.put(&count.to_be_bytes())?;
    for f in files {
        let name = f.name.as_bytes();
        if name.len() > MAX_FILE_NAME as usize || f.sealed.len() > MAX_FILE as usize {
            return Err(BackupError::RowTooLarge(f.name.clone()));
        }
        w.put(&(name.len() as u32).to_be_bytes())?;
        w.put(name)?;
        w.put(&(f.sealed.len() as u32).to_be_bytes())?;
        w.put(&f.sealed)?;
    }
    Ok(())
}

/// The file section of a format-2 or 3 backup (none in format 1).
fn read_files(r: &mut HashingReader<'_>, format: u32) -> Result<Vec<BackupFile>, BackupError> {
    if format == FORMAT_V1 {
        return Ok(Vec::new());
    }
    let count = r.u16()?;
    if count > MAX_FILES {
        return Err(BackupError::Corrupt("too many carried files"));
    }
    let mut files = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let name = String::from_utf8(r.field(MAX_FILE_NAME)?)
            .map_err(|_| BackupError::Corrupt("a carried file name is not UTF-8"))?;
        let sealed = r.field(MAX_FILE)?;
        files.push(BackupFile { name, sealed });
    }
    Ok(files)
}

/// Reads while hashing.
struct HashingReader<'a> {
    input: &'a mut dyn Read,
    hash: Context,
}

impl HashingReader<'_> {
    fn exact(&mut self, buf: &mut [u8]) -> Result<(), BackupError> {
        self.input.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                BackupError::Checksum
            } else {
                BackupError::Io(e)
            }
        })?;
        self.hash.update(buf);
        Ok(())
    }

    fn u8(&mut self) -> Result<u8, BackupError> {
        let mut b = [0u8; 1];
        self.exact(&mut b)?;
        Ok(b[0])
    }

    fn u16(&mut self) -> Result<u16, BackupError> {
        let mut b = [0u8; 2];
        self.exact(&mut b)?;
        Ok(u16::from_be_bytes(b))
    }

    fn u32(&mut self) -> Result<u32, BackupError> {
        let mut b = [0u8; 4];
        self.exact(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn field(&mut self, limit: u32) -> Result<Vec<u8>, BackupError> {
        let len = self.u32()?;
        if len > limit {
            return Err(BackupError::FieldTooLarge(len));
        }
        let mut buf = vec![0u8; len as usize];
        self.exact(&mut buf)?;
        Ok(buf)
    }
}

/// Reads the header, manifest and carried files; refuses other formats and newer schemas. The
/// manifest's `format` is the header's (a format-1 file may carry another number inside).
fn read_header(r: &mut HashingReader<'_>) -> Result<(Manifest, Vec<BackupFile>), BackupError> {
    let mut magic = [0u8; 8];
    r.exact(&mut magic).map_err(|_| BackupError::NotABackup)?;
    if &magic != MAGIC {
        return Err(BackupError::NotABackup);
    }
    let format = r.u32()?;
    if !(FORMAT_V1..=FORMAT).contains(&format) {
        return Err(BackupError::Format(format));
    }
    let mut manifest = read_manifest_field(r)?;
    manifest.format = format;
    if format <= FORMAT_V2 && !manifest.sites.is_empty() {
        return Err(BackupError::Corrupt(
            "sites in a backup format without them",
        ));
    }
    if manifest.sites.len() > usize::from(MAX_SITES) {
        return Err(BackupError::Corrupt("too many sites"));
    }
    let files = read_files(r, format)?;
    Ok((manifest, files))
}

/// A manifest (length and JSON) whose schema and tables this build knows.
fn read_manifest_field(r: &mut HashingReader<'_>) -> Result<Manifest, BackupError> {
    let json = r.field(MAX_MANIFEST)?;
    let manifest: Manifest = serde_json::from_slice(&json).map_err(BackupError::Manifest)?;
    if manifest.schema_version > SCHEMA_VERSION {
        return Err(BackupError::NewerSchema {
            found: manifest.schema_version,
            supported: SCHEMA_VERSION,
        });
    }
    let known = table_names();
    if let Some(t) = manifest.tables.iter().find(|t| !known.contains(t)) {
        return Err(BackupError::UnknownTable(t.clone()));
    }
    Ok(manifest)
}

/// Reads only the manifest (no checksum check).
pub fn read_manifest(input: &mut dyn Read) -> Result<Manifest, BackupError> {
    read_header(&mut HashingReader {
        input,
        hash: Context::new(&SHA256),
    })
    .map(|(m, _)| m)
}

struct RowReader<'r, 'a> {
    input: &'r mut HashingReader<'a>,
    tables: Vec<String>,
    /// The table index of the row whose tag and index were read but not its key and value.
    pending: Option<u16>,
    ended: bool,
    rows: u64,
}

impl<'r, 'a> RowReader<'r, 'a> {
    fn new(input: &'r mut HashingReader<'a>, manifest: &Manifest) -> Self {
        Self {
            input,
            tables: manifest.tables.clone(),
            pending: None,
            ended: false,
            rows: 0,
        }
    }

    /// The table of the next row, or None at the end marker.
    fn peek(&mut self) -> Result<Option<&str>, BackupError> {
        if self.pending.is_none() && !self.ended {
            match self.input.u8()? {
                ROW => self.pending = Some(self.input.u16()?),
                END => self.ended = true,
                other => return Err(BackupError::RowTag(other)),
            }
        }
        match self.pending {
            Some(i) => self
                .tables
                .get(usize::from(i))
                .map(|s| Some(s.as_str()))
                .ok_or_else(|| BackupError::TableIndex(i)),
            None => Ok(None),
        }
    }

    fn take(&mut self) -> Result<(Vec<u8>, Vec<u8>), BackupError> {
        self.pending = None;
        self.rows += 1;
        Ok((self.input.field(MAX_FIELD)?, self.input.field(MAX_FIELD)?))
    }
}

/// Reads a whole backup without restoring it: format, manifest, row framing, table order, row
/// counts, every site's record files and replica rows, and the checksum. What `plantwire backup`
/// runs on the file it wrote before it says "done".
pub fn verify(input: &mut dyn Read) -> Result<Manifest, BackupError> {
    let mut hr = HashingReader {
        input,
        hash: Context::new(&SHA256),
    };
    let (manifest, _) = read_header(&mut hr)?;
    let mut counts_ok = walk_store(&mut hr, &manifest)?;
    if manifest.format >= FORMAT {
        counts_ok &= read_sites(&mut hr, &manifest, None)?.1;
    }
    checksum_end(&mut hr, counts_ok)?;
    Ok(manifest)
}

/// One store's rows walked (table order checked) through the end marker; whether the row count
/// matched (told after the checksum, which names a damaged file better).
fn walk_store(hr: &mut HashingReader<'_>, manifest: &Manifest) -> Result<bool, BackupError> {
    let mut rows = RowReader::new(hr, manifest);
    let mut last_table = 0usize;
    while let Some(table) = rows.peek()? {
        let index = manifest.tables.iter().position(|t| t == table).unwrap_or(0);
        if index < last_table {
            return Err(BackupError::Corrupt("rows out of table order"));
        }
        last_table = index;
        rows.take()?;
    }
    end_count(&mut rows)
}

/// After a store's end marker: its row count; whether it matches.
fn end_count(rows: &mut RowReader<'_, '_>) -> Result<bool, BackupError> {
    let mut count = [0u8; 8];
    rows.input.exact(&mut count)?;
    Ok(u64::from_be_bytes(count) == rows.rows)
}

/// The checksum, and nothing after it; then the row counts.
fn checksum_end(hr: &mut HashingReader<'_>, counts_ok: bool) -> Result<(), BackupError> {
    let expected = hr.hash.clone().finish();
    let mut stored = [0u8; 32];
    hr.input
        .read_exact(&mut stored)
        .map_err(|_| BackupError::Checksum)?;
    if stored.as_slice() != expected.as_ref() {
        return Err(BackupError::Checksum);
    }
    if !counts_ok {
        return Err(BackupError::Corrupt("the row count does not match"));
    }
    let mut extra = [0u8; 1];
    if hr.input.read(&mut extra).map_err(BackupError::Io)? != 0 {
        return Err(BackupError::Corrupt("data after the checksum"));
    }
    Ok(())
}

fn load<K: Key + 'static, V: Value + 'static>(
    db: &Database,
    r: &mut RowReader<'_, '_>,
    def: TableDefinition<K, V>,
    _since: u32,
) -> Result<(), BackupError> {
    while r.peek()? == Some(def.name()) {
        let mut wtx = db.begin_write()?;
        wtx.set_durability(Durability::None)
            .map_err(|e| BackupError::Store(StoreError::Redb(Box::new(e.into()))))?;
        {
            let mut table = wtx.open_table(def)?;
            let mut n = 0;
            while n < RESTORE_CHUNK && r.peek()? == Some(def.name()) {
                let (k, v) = r.take()?;
                table.insert(K::from_bytes(&k), V::from_bytes(&v))?;
                n += 1;
            }
        }
        wtx.commit()?;
    }
    Ok(())
}

/// Opens (so creates) every table of the list that schema `version` has.
fn create_empty(wtx: &redb::WriteTransaction, version: u32) -> Result<(), BackupError> {
    fn create<K: Key + 'static, V: Value + 'static>(
        wtx: &redb::WriteTransaction,
        version: u32,
        def: TableDefinition<K, V>,
        since: u32,
    ) -> Result<(), BackupError> {
        if since <= version {
            wtx.open_table(def)?;
        }
        Ok(())
    }
    for_each_table!(create(wtx, version));
    Ok(())
}

/// Restores a backup into a new store file at `dest`, which must not exist, and an HQ's sites
/// (record files 0600, replicas) under `sites.root`, which must not exist either when the backup
/// carries sites. The checksum is checked at the end; on any failure the partial files are
/// removed and nothing else is touched. The carried files come back still sealed, for the caller
/// to open and place.
pub fn restore(
    input: &mut dyn Read,
    dest: &Path,
    sites: SitesTarget<'_>,
) -> Result<Restored, BackupError> {
    if dest.exists() {
        return Err(BackupError::Exists(dest.to_path_buf()));
    }
    if sites.root.exists() {
        return Err(BackupError::Exists(sites.root.to_path_buf()));
    }
    let result = restore_into(input, dest, sites);
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
        let _ = std::fs::remove_dir_all(sites.root);
    }
    result
}

fn restore_into(
    input: &mut dyn Read,
    dest: &Path,
    target: SitesTarget<'_>,
) -> Result<Restored, BackupError> {
    let mut hr = HashingReader {
        input,
        hash: Context::new(&SHA256),
    };
    let (manifest, files) = read_header(&mut hr)?;
    let mut counts_ok = load_store(&mut hr, &manifest, dest)?;
    let sites = if manifest.format >= FORMAT {
        let (sites, ok) = read_sites(&mut hr, &manifest, Some(target))?;
        counts_ok &= ok;
        sites
    } else {
        Vec::new()
    };
    checksum_end(&mut hr, counts_ok)?;
    if !sites.is_empty() {
        std::fs::File::open(target.root)
            .and_then(|d| d.sync_all())
            .map_err(|source| BackupError::Write {
                path: target.root.to_path_buf(),
                source,
            })?;
    }
    Ok(Restored {
        manifest,
        files,
        sites,
    })
}

/// One store's rows (through its end marker and row count) into a new file at `dest`, 0600;
/// whether the row count matched.
fn load_store(
    hr: &mut HashingReader<'_>,
    manifest: &Manifest,
    dest: &Path,
) -> Result<bool, BackupError> {
    let db = Database::create(dest).map_err(|e| BackupError::Store(StoreError::from(e)))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600))
            .map_err(BackupError::Io)?;
    }
    let mut rows = RowReader::new(hr, manifest);
    load_all(&db, &mut rows)?;
    if rows.peek()?.is_some() {
        return Err(BackupError::Corrupt(
            "rows out of table order or of an unknown table",
        ));
    }
    let counts_ok = end_count(&mut rows)?;
    // Make everything durable with one final immediate commit, which also creates the tables of
    // the backup's schema that had no rows (a table with no rows has none in the stream, and the
    // store's schema version says its migrations already ran).
    let mut wtx = db.begin_write()?;
    wtx.set_durability(Durability::Immediate)
        .map_err(|e| BackupError::Store(StoreError::Redb(Box::new(e.into()))))?;
    create_empty(&wtx, manifest.schema_version)?;
    wtx.commit()?;
    Ok(counts_ok)
}

#[cfg(test)]
mod tests;
