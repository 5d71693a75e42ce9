//! Backups: every table copied row by row from one read transaction (a consistent snapshot that
//! never blocks the writer), and restore into a new file. Sealed bodies stay sealed; no key inside.
//!
//! Format v2, all integers big-endian:
//!   "PWBACKUP" | format u32 (=2) | manifest length u32 | manifest (JSON, `Manifest`)
//!   then file count u16, per file: name len u32 | name (UTF-8) | sealed len u32 | sealed bytes
//!     (state-dir files such as the site CA, sealed by the caller; this layer only carries bytes)
//!   then per row: 0x01 | table index u16 (into manifest.tables) | key len u32 | key | value len u32 | value
//!   then 0x00 | row count u64 | SHA-256 of every byte before it ([32]).
//! Tables are written whole, one after the other, in the order of `manifest.tables`.
//! Format v1 is v2 without the file section; it is still read.

use std::io::{Read, Write};
use std::path::Path;

use aws_lc_rs::digest::{Context, SHA256};
use redb::{
    Database, Durability, Key, MultimapTableHandle, ReadTransaction, ReadableDatabase,
    ReadableTable, TableDefinition, TableError, TableHandle, Value,
};
use serde::{Deserialize, Serialize};

use super::*;

const MAGIC: &[u8; 8] = b"PWBACKUP";
const FORMAT: u32 = 2;
/// The first format, without the file section: still restored.
const FORMAT_V1: u32 = 1;
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
        "backup format {0} is not supported by this build (it reads formats {FORMAT_V1} and {FORMAT})"
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
}

/// A state-dir file carried in a backup: its path relative to the state dir and its bytes, sealed
/// by the caller under the data key (this layer never sees a key or clear text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFile {
    pub name: String,
    pub sealed: Vec<u8>,
}

/// What a restore brought back: the manifest and the carried files, still sealed.
#[derive(Debug)]
pub struct Restored {
    pub manifest: Manifest,
    pub files: Vec<BackupFile>,
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

fn load_all(db: &Database, r: &mut RowReader<'_>) -> Result<(), BackupError> {
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
        let rtx = self.db()?.begin_read()?;
        let names = table_names();
        for t in rtx.list_tables()? {
            if !names.iter().any(|n| n == t.name()) {
                return Err(BackupError::UnknownTable(t.name().to_string()));
            }
        }
        if let Some(t) = rtx.list_multimap_tables()?.next() {
            return Err(BackupError::UnknownTable(t.name().to_string()));
        }
        let manifest = {
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
            Manifest {
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
                tables: names.clone(),
            }
        };
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
        dump_all(&rtx, &mut w)?;
        w.put(&[END])?;
        let rows = w.rows.to_be_bytes();
        w.put(&rows)?;
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

/// The file section of a format-2 backup (none in format 1).
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

/// Reads the header, manifest and carried files; refuses other formats and newer schemas.
fn read_header(r: &mut HashingReader<'_>) -> Result<(Manifest, Vec<BackupFile>), BackupError> {
    let mut magic = [0u8; 8];
    r.exact(&mut magic).map_err(|_| BackupError::NotABackup)?;
    if &magic != MAGIC {
        return Err(BackupError::NotABackup);
    }
    let format = r.u32()?;
    if format != FORMAT && format != FORMAT_V1 {
        return Err(BackupError::Format(format));
    }
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
    let files = read_files(r, format)?;
    Ok((manifest, files))
}

/// Reads only the manifest (no checksum check).
pub fn read_manifest(input: &mut dyn Read) -> Result<Manifest, BackupError> {
    read_header(&mut HashingReader {
        input,
        hash: Context::new(&SHA256),
    })
    .map(|(m, _)| m)
}

struct RowReader<'a> {
    input: HashingReader<'a>,
    tables: Vec<String>,
    /// The table index of the row whose tag and index were read but not its key and value.
    pending: Option<u16>,
    ended: bool,
    rows: u64,
}

impl RowReader<'_> {
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
/// count and checksum. What `plantwire backup` runs on the file it wrote before it says "done".
pub fn verify(input: &mut dyn Read) -> Result<Manifest, BackupError> {
    let mut hr = HashingReader {
        input,
        hash: Context::new(&SHA256),
    };
    let (manifest, _) = read_header(&mut hr)?;
    let mut rows = RowReader {
        input: hr,
        tables: manifest.tables.clone(),
        pending: None,
        ended: false,
        rows: 0,
    };
    let mut last_table = 0usize;
    while let Some(table) = rows.peek()? {
        let index = manifest.tables.iter().position(|t| t == table).unwrap_or(0);
        if index < last_table {
            return Err(BackupError::Corrupt("rows out of table order"));
        }
        last_table = index;
        rows.take()?;
    }
    finish(&mut rows)?;
    Ok(manifest)
}

/// After the end marker: the row count, the checksum, and nothing more.
fn finish(rows: &mut RowReader<'_>) -> Result<(), BackupError> {
    let mut count = [0u8; 8];
    rows.input.exact(&mut count)?;
    let expected = rows.input.hash.clone().finish();
    let mut stored = [0u8; 32];
    rows.input
        .input
        .read_exact(&mut stored)
        .map_err(|_| BackupError::Checksum)?;
    if stored.as_slice() != expected.as_ref() {
        return Err(BackupError::Checksum);
    }
    if u64::from_be_bytes(count) != rows.rows {
        return Err(BackupError::Corrupt("the row count does not match"));
    }
    let mut extra = [0u8; 1];
    if rows.input.input.read(&mut extra).map_err(BackupError::Io)? != 0 {
        return Err(BackupError::Corrupt("data after the checksum"));
    }
    Ok(())
}

fn load<K: Key + 'static, V: Value + 'static>(
    db: &Database,
    r: &mut RowReader<'_>,
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

/// Restores a backup into a new store file at `dest`, which must not exist. The checksum is
/// checked at the end; on any failure the partial file is removed and nothing else is touched.
/// The carried files come back still sealed, for the caller to open and place.
pub fn restore(input: &mut dyn Read, dest: &Path) -> Result<Restored, BackupError> {
    if dest.exists() {
        return Err(BackupError::Exists(dest.to_path_buf()));
    }
    let result = restore_into(input, dest);
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result
}

fn restore_into(input: &mut dyn Read, dest: &Path) -> Result<Restored, BackupError> {
    let mut hr = HashingReader {
        input,
        hash: Context::new(&SHA256),
    };
    let (manifest, files) = read_header(&mut hr)?;
    let db = Database::create(dest).map_err(|e| BackupError::Store(StoreError::from(e)))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600))
            .map_err(BackupError::Io)?;
    }
    let mut rows = RowReader {
        input: hr,
        tables: manifest.tables.clone(),
        pending: None,
        ended: false,
        rows: 0,
    };
    load_all(&db, &mut rows)?;
    if rows.peek()?.is_some() {
        return Err(BackupError::Corrupt(
            "rows out of table order or of an unknown table",
        ));
    }
    finish(&mut rows)?;
    // Make everything durable with one final immediate commit, which also creates the tables of
    // the backup's schema that had no rows (a table with no rows has none in the stream, and the
    // store's schema version says its migrations already ran).
    let mut wtx = db.begin_write()?;
    wtx.set_durability(Durability::Immediate)
        .map_err(|e| BackupError::Store(StoreError::Redb(Box::new(e.into()))))?;
    create_empty(&wtx, manifest.schema_version)?;
    wtx.commit()?;
    Ok(Restored { manifest, files })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256(b: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(aws_lc_rs::digest::digest(&SHA256, b).as_ref());
        out
    }

    #[test]
    fn carried_files_round_trip_and_format_1_is_still_restored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.redb"), 1 << 20).unwrap();
        let files = vec![BackupFile {
            name: "tls/ca.key".into(),
            sealed: b"sealed bytes".to_vec(),
        }];
        let mut v2 = Vec::new();
        store.write_backup(&mut v2, 7, &files).unwrap();
        let restored = restore(&mut v2.as_slice(), &dir.path().join("b.redb")).unwrap();
        assert_eq!(restored.manifest.format, FORMAT);
        assert_eq!(restored.files, files);

        // The same backup as format 1 wrote it: no file section, format 1, its own checksum.
        let mut none = Vec::new();
        store.write_backup(&mut none, 7, &[]).unwrap();
        let manifest_len = u32::from_be_bytes(none[12..16].try_into().unwrap()) as usize;
        let files_at = 16 + manifest_len;
        assert_eq!(&none[files_at..files_at + 2], &[0, 0]);
        let mut v1 = none[..files_at].to_vec();
        v1[8..12].copy_from_slice(&FORMAT_V1.to_be_bytes());
        v1.extend_from_slice(&none[files_at + 2..none.len() - 32]);
        let sum = sha256(&v1);
        v1.extend_from_slice(&sum);
        verify(&mut v1.as_slice()).unwrap();
        let old = restore(&mut v1.as_slice(), &dir.path().join("c.redb")).unwrap();
        assert!(old.files.is_empty());
        assert_eq!(old.manifest.site, restored.manifest.site);
        // An unknown format is refused.
        let mut v3 = v1.clone();
        v3[8..12].copy_from_slice(&3u32.to_be_bytes());
        assert!(matches!(
            read_manifest(&mut v3.as_slice()),
            Err(BackupError::Format(3))
        ));
    }
}
