//! The redb file: the table registry, opening with lock detection, and typed read/write transactions.
//! Only this module names redb types; callers speak in records and rows, never in tables.

pub mod backup;
mod chat;
mod chat_rows;
mod codec;
mod rows;
mod schema;
pub mod seal;

use std::path::{Path, PathBuf};

use redb::{
    Database, DatabaseError, Durability, ReadTransaction, ReadableDatabase, ReadableTable,
    TableDefinition, WriteTransaction,
};

pub use chat_rows::{
    AttachmentRef, AttachmentRow, ContactRow, ContactState, ConvKind, ConvRow, MAX_SPANS,
    MemberRole, MemberRow, MessageRow, Span,
};
pub use codec::{CodecError, LogRecord};
pub use rows::{ChainHead, DeviceRow, Role, SessionRow, UserRow, UserStatus};
pub use schema::SCHEMA_VERSION;
pub use seal::{DataKey, SealError, Sealed};

// The table registry. Names are `<key>_<value>`; the comment gives the key layout.
/// `&str` meta key → bytes. Keys: `schema_version` (u32 BE), `site` (UTF-8), `data_key_fp` ([32]),
/// `chain_head` (rows::ChainHead v1).
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta_name_value");
/// seq (u64, dense from 1) → codec::LogRecord v1.
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log_seq_record");
/// (stream, seq) → (): the entries of one stream in order.
pub(crate) const STREAM_INDEX: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("streamindex_streamseq_unit");
/// device name → rows::DeviceRow v1.
pub(crate) const DEVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("devices_name_row");
/// SHA-256 of an API token ([32]) → device name.
pub(crate) const DEVICE_TOKENS: TableDefinition<&[u8], &str> =
    TableDefinition::new("devicetokens_hash_name");
/// lower-cased username → rows::UserRow v1.
pub(crate) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users_username_row");
/// session id → rows::SessionRow v1.
pub(crate) const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions_id_row");
/// SHA-256 of any refresh token ever issued ([32]) → session id; finds the family of a reused token.
pub(crate) const REFRESH_TOKENS: TableDefinition<&[u8], &str> =
    TableDefinition::new("refreshtokens_hash_session");
/// conversation id → chat_rows::ConvRow v1.
pub(crate) const CONVS: TableDefinition<&str, &[u8]> = TableDefinition::new("convs_id_row");
/// (conversation id, lower-cased username) → chat_rows::MemberRow v1, past members included.
pub(crate) const MEMBERS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("members_convuser_row");
/// (lower-cased username, conversation id) → (): every conversation a user is or was in.
pub(crate) const USER_CONVS: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("userconvs_userconv_unit");
/// lower-cased channel name → conversation id.
pub(crate) const CHANNELS: TableDefinition<&str, &str> = TableDefinition::new("channels_name_conv");
/// (conversation id, seq of the message) → chat_rows::MessageRow v1, sealed with the data key
/// (`DataKey::seal_bytes`, AAD `msg/<conv>/<seq>`).
pub(crate) const MESSAGES: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("messages_convseq_sealedrow");
/// (lower-cased username, conversation id, client idempotency key) → seq of the message that key
/// created there.
pub(crate) const IDEMPOTENCY: TableDefinition<(&str, &str, &str), u64> =
    TableDefinition::new("idempotency_userconvkey_seq");
/// (lower-cased username, conversation id, seq) → (): messages that mention the user.
pub(crate) const MENTIONS: TableDefinition<(&str, &str, u64), ()> =
    TableDefinition::new("mentions_userconvseq_unit");
/// (owner, other), both lower-cased usernames → chat_rows::ContactRow v1; both sides are stored.
pub(crate) const CONTACTS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("contacts_ownerother_row");
/// attachment id → chat_rows::AttachmentRow v1.
pub(crate) const ATTACHMENTS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("attachments_id_row");
/// (attachment id, chunk number from 0) → up to 64 KiB of content, sealed (AAD `att/<id>/<n>`).
pub(crate) const ATTACHMENT_CHUNKS: TableDefinition<(&str, u32), &[u8]> =
    TableDefinition::new("attachmentchunks_idn_sealed");
/// (attachment id, conversation id) → how many unredacted messages there carry it (u32).
pub(crate) const ATTACHMENT_CONVS: TableDefinition<(&str, &str), u32> =
    TableDefinition::new("attachmentconvs_idconv_count");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store {0} is in use by another process (is `plantwire serve` running?); stop it first, or use the running server's API"
    )]
    Locked(PathBuf),
    #[error("cannot open the store {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
    #[error(
        "store schema version {found} is newer than this build supports ({supported}); refusing to downgrade"
    )]
    Downgrade { found: u32, supported: u32 },
    #[error("this store belongs to site {stored:?}, but the configuration says {configured:?}")]
    SiteMismatch { stored: String, configured: String },
    #[error(
        "the data key does not match the one this store was created with (fingerprint mismatch)"
    )]
    KeyMismatch,
    #[error("a stored row is malformed: {0}")]
    Corrupt(String),
    #[error("storage error: {0}")]
    Redb(Box<redb::Error>),
}

impl<E: Into<redb::Error>> From<E> for StoreError {
    fn from(e: E) -> Self {
        StoreError::Redb(Box::new(e.into()))
    }
}

/// The open store. One per process: redb locks the file.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) the store and brings its schema up to date.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| match e {
                DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(path.to_path_buf()),
                other => StoreError::Open {
                    path: path.to_path_buf(),
                    source: Box::new(other.into()),
                },
            })?;
        // The file holds sealed bodies but clear metadata: keep it private.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        let store = Self {
            db,
            path: path.to_path_buf(),
        };
        schema::migrate(&store.db)?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records the site and key fingerprint on first use; afterwards refuses a different one.
    pub fn bind_identity(&self, site: &str, key: &DataKey) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let stored_site = meta
                .get("site")?
                .map(|v| String::from_utf8_lossy(v.value()).into_owned());
            match stored_site {
                Some(stored) if stored != site => {
                    return Err(StoreError::SiteMismatch {
                        stored,
                        configured: site.to_string(),
                    });
                }
                Some(_) => {}
                None => {
                    meta.insert("site", site.as_bytes())?;
                }
            }
            let fp = key.fingerprint();
            let stored_fp = meta.get("data_key_fp")?.map(|v| v.value().to_vec());
            match stored_fp {
                Some(stored) if stored != fp => return Err(StoreError::KeyMismatch),
                Some(_) => {}
                None => {
                    meta.insert("data_key_fp", fp.as_slice())?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    pub fn read(&self) -> Result<ReadTx, StoreError> {
        Ok(ReadTx {
            txn: self.db.begin_read()?,
        })
    }

    /// Starts the single write transaction. Commits are durable (fsync) when `commit` returns.
    pub fn write(&self) -> Result<WriteTx, StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(WriteTx { txn, dirty: false })
    }

    /// Runs redb's page checksum verification (needs exclusive access).
    pub fn check_integrity(&mut self) -> Result<bool, StoreError> {
        Ok(self.db.check_integrity()?)
    }
}

/// A consistent read view; never waits on the writer.
pub struct ReadTx {
    txn: ReadTransaction,
}

impl ReadTx {
    pub fn chain_head(&self) -> Result<Option<ChainHead>, StoreError> {
        let meta = self.txn.open_table(META)?;
        match meta.get("chain_head")? {
            Some(v) => Ok(Some(ChainHead::decode(v.value())?)),
            None => Ok(None),
        }
    }

    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let meta = self.txn.open_table(META)?;
        Ok(meta.get(key)?.map(|v| v.value().to_vec()))
    }

    /// The raw stored bytes of one log record.
    pub fn log_raw(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let log = self.txn.open_table(LOG)?;
        Ok(log.get(seq)?.map(|v| v.value().to_vec()))
    }

    /// First and last stored seq, if any.
    pub fn log_bounds(&self) -> Result<Option<(u64, u64)>, StoreError> {
        let log = self.txn.open_table(LOG)?;
        let first = log.first()?.map(|(k, _)| k.value());
        let last = log.last()?.map(|(k, _)| k.value());
        Ok(first.zip(last))
    }

    /// Visits the raw records with seq >= `from` in order until `visit` returns false.
    pub fn scan_log(
        &self,
        from: u64,
        mut visit: impl FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let log = self.txn.open_table(LOG)?;
        for row in log.range(from..)? {
            let (k, v) = row?;
            if !visit(k.value(), v.value()) {
                break;
            }
        }
        Ok(())
    }

    pub fn device(&self, name: &str) -> Result<Option<DeviceRow>, StoreError> {
        let t = self.txn.open_table(DEVICES)?;
        t.get(name)?
            .map(|v| DeviceRow::decode(v.value()))
            .transpose()
    }

    pub fn device_by_token_hash(&self, hash: &[u8; 32]) -> Result<Option<DeviceRow>, StoreError> {
        let tokens = self.txn.open_table(DEVICE_TOKENS)?;
        let Some(name) = tokens.get(hash.as_slice())?.map(|v| v.value().to_string()) else {
            return Ok(None);
        };
        self.device(&name)
    }

    pub fn user(&self, key: &str) -> Result<Option<UserRow>, StoreError> {
        let t = self.txn.open_table(USERS)?;
        t.get(key)?.map(|v| UserRow::decode(v.value())).transpose()
    }

    /// Visits every user in key order until `visit` returns false.
    pub fn scan_users(&self, mut visit: impl FnMut(UserRow) -> bool) -> Result<(), StoreError> {
        let t = self.txn.open_table(USERS)?;
        for row in t.iter()? {
            let (_, v) = row?;
            if !visit(UserRow::decode(v.value())?) {
                break;
            }
        }
        Ok(())
    }

    pub fn session(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        let t = self.txn.open_table(SESSIONS)?;
        t.get(id)?
            .map(|v| SessionRow::decode(v.value()))
            .transpose()
    }

    pub fn devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        let t = self.txn.open_table(DEVICES)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            out.push(DeviceRow::decode(v.value())?);
        }
        Ok(out)
    }
}

/// The one write transaction. Every mutating call marks it dirty, so the sequencer knows whether
/// a rejected job left writes behind that must be rolled back.
pub struct WriteTx {
    txn: WriteTransaction,
    dirty: bool,
}

impl WriteTx {
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub fn clear_dirty(&mut self) {
        self.dirty = false;
    }

    pub fn put_log(&mut self, seq: u64, record: &[u8]) -> Result<(), StoreError> {
        self.dirty = true;
        self.txn.open_table(LOG)?.insert(seq, record)?;
        Ok(())
    }

    pub fn put_stream_index(&mut self, stream: &str, seq: u64) -> Result<(), StoreError> {
        self.dirty = true;
        self.txn
            .open_table(STREAM_INDEX)?
            .insert((stream, seq), ())?;
        Ok(())
    }

    pub fn set_chain_head(&mut self, head: &ChainHead) -> Result<(), StoreError> {
        self.dirty = true;
        self.txn
            .open_table(META)?
            .insert("chain_head", head.encode().as_slice())?;
        Ok(())
    }

    pub fn device(&self, name: &str) -> Result<Option<DeviceRow>, StoreError> {
        let t = self.txn.open_table(DEVICES)?;
        let row = t
            .get(name)?
            .map(|v| DeviceRow::decode(v.value()))
            .transpose()?;
        Ok(row)
    }

    pub fn put_device(&mut self, row: &DeviceRow) -> Result<(), StoreError> {
        self.dirty = true;
        self.txn
            .open_table(DEVICES)?
            .insert(row.name.as_str(), row.encode()?.as_slice())?;
        let mut tokens = self.txn.open_table(DEVICE_TOKENS)?;
        match row.revoked_at_us {
            None => {
                tokens.insert(row.token_hash.as_slice(), row.name.as_str())?;
            }
            Some(_) => {
                tokens.remove(row.token_hash.as_slice())?;
            }
        }
        Ok(())
    }

    pub fn user(&self, key: &str) -> Result<Option<UserRow>, StoreError> {
        let t = self.txn.open_table(USERS)?;
        let row = t
            .get(key)?
            .map(|v| UserRow::decode(v.value()))
            .transpose()?;
        Ok(row)
    }

    /// Stores a user under its lower-cased username.
    pub fn put_user(&mut self, row: &UserRow) -> Result<(), StoreError> {
        self.dirty = true;
        let key = row.username.to_ascii_lowercase();
        self.txn
            .open_table(USERS)?
            .insert(key.as_str(), row.encode()?.as_slice())?;
        Ok(())
    }

    pub fn session(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        let t = self.txn.open_table(SESSIONS)?;
        let row = t
            .get(id)?
            .map(|v| SessionRow::decode(v.value()))
            .transpose()?;
        Ok(row)
    }

    /// The session a refresh token (by hash) was ever issued for.
    pub fn session_of_refresh(&self, hash: &[u8; 32]) -> Result<Option<String>, StoreError> {
        let t = self.txn.open_table(REFRESH_TOKENS)?;
        let id = t.get(hash.as_slice())?.map(|v| v.value().to_string());
        Ok(id)
    }

    /// Stores a session and records its current refresh token.
    pub fn put_session(&mut self, row: &SessionRow) -> Result<(), StoreError> {
        self.dirty = true;
        self.txn
            .open_table(SESSIONS)?
            .insert(row.id.as_str(), row.encode()?.as_slice())?;
        self.txn
            .open_table(REFRESH_TOKENS)?
            .insert(row.current_refresh.as_slice(), row.id.as_str())?;
        Ok(())
    }

    pub fn commit(self) -> Result<(), StoreError> {
        self.txn.commit()?;
        Ok(())
    }

    pub fn abort(self) -> Result<(), StoreError> {
        self.txn.abort()?;
        Ok(())
    }
}
