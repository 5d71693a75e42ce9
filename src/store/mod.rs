//! The redb file: the table registry, opening with lock detection, and typed read/write transactions.
//! Only this module names redb types; callers speak in records and rows, never in tables.

mod alarm_escalations;
mod alarm_rows;
mod alarms;
pub use alarms::{KPI_ACK, KPI_ACTIVATION, KPI_ANNUNCIATED, KpiFact};
mod attachments;
pub mod backup;
mod chat;
mod chat_rows;
mod codec;
mod device_certs;
mod events;
mod incidents;
mod ingest;
mod pending;
mod purged_views;
mod replication;
mod retention;
mod rows;
mod schema;
pub mod seal;
mod search;
mod site_grants;
mod table;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use redb::{
    Database, DatabaseError, Durability, ReadTransaction, ReadableDatabase, ReadableTable,
    TableDefinition, WriteTransaction,
};

pub use alarm_rows::{AlarmRow, OutOfService, Priority, Shelf, ShelveMode};
pub use chat_rows::{
    AttachmentRef, AttachmentRow, ContactRow, ContactState, ConvKind, ConvRow, MAX_SPANS,
    MemberRole, MemberRow, MessageRow, Span,
};
pub use codec::{CodecError, LogRecord, RecordMeta};
pub use device_certs::DeviceCertRow;
pub use events::{EventIndex, EventRange, MAX_SEVERITY_RANK};
pub use incidents::{IncidentRow, TemplateRow};
pub use ingest::IngestKeyRow;
pub use retention::PurgeOutcome;
pub use rows::{ChainHead, DeviceRow, Role, SessionRow, UserRow, UserStatus};
pub use schema::SCHEMA_VERSION;
pub use seal::{DataKey, SealError, Sealed};
pub use site_grants::SiteGrantRow;
use table::Table;

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
pub(crate) const DEVICES: Table<&str, DeviceRow> = Table::new("devices_name_row");
/// SHA-256 of an API token ([32]) → device name.
pub(crate) const DEVICE_TOKENS: TableDefinition<&[u8], &str> =
    TableDefinition::new("devicetokens_hash_name");
/// lower-cased username → rows::UserRow v1.
pub(crate) const USERS: Table<&str, UserRow> = Table::new("users_username_row");
/// session id → rows::SessionRow v1.
pub(crate) const SESSIONS: Table<&str, SessionRow> = Table::new("sessions_id_row");
/// SHA-256 of any refresh token ever issued ([32]) → session id; finds the family of a reused token.
pub(crate) const REFRESH_TOKENS: TableDefinition<&[u8], &str> =
    TableDefinition::new("refreshtokens_hash_session");
/// conversation id → chat_rows::ConvRow v1.
pub(crate) const CONVS: Table<&str, ConvRow> = Table::new("convs_id_row");
/// (conversation id, lower-cased username) → chat_rows::MemberRow v1, past members included.
pub(crate) const MEMBERS: Table<(&str, &str), MemberRow> = Table::new("members_convuser_row");
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
pub(crate) const CONTACTS: Table<(&str, &str), ContactRow> = Table::new("contacts_ownerother_row");
/// attachment id → chat_rows::AttachmentRow v1.
pub(crate) const ATTACHMENTS: Table<&str, AttachmentRow> = Table::new("attachments_id_row");
/// (attachment id, chunk number from 0) → up to 64 KiB of content, sealed (AAD `att/<id>/<n>`).
pub(crate) const ATTACHMENT_CHUNKS: TableDefinition<(&str, u32), &[u8]> =
    TableDefinition::new("attachmentchunks_idn_sealed");
/// (attachment id, conversation id) → how many unredacted messages there carry it (u32).
pub(crate) const ATTACHMENT_CONVS: TableDefinition<(&str, &str), u32> =
    TableDefinition::new("attachmentconvs_idconv_count");

/// seq → (): the seq of every `event` entry, so listings never scan other entries.
pub(crate) const EVENT_SEQS: TableDefinition<u64, ()> = TableDefinition::new("eventseqs_seq_unit");
/// (ts µs, seq) → (): events by the log's time.
pub(crate) const EVENT_TIMES: TableDefinition<(i64, u64), ()> =
    TableDefinition::new("eventtimes_tsseq_unit");
/// (source, seq) → (): events by what raised them, up to v9; emptied by the v10 migration into
/// `EVENT_SOURCE_KEYS` (kept, empty, so a v9 backup still restores and then migrates).
pub(crate) const EVENT_SOURCES: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("eventsources_sourceseq_unit");
/// (type, seq) → (): events by their dotted type, up to v9; emptied by v10 into `EVENT_TYPE_KEYS`.
pub(crate) const EVENT_TYPES: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("eventtypes_typeseq_unit");
/// (name key of the source, seq) → (): events by what raised them. The name key is
/// `events::name_key` (the first 8 bytes of the source's SHA-256, big-endian): a fixed-width key,
/// which redb inserts without rewriting a leaf's offset table (a variable-width key costs every
/// insert an update of every later key's offset). Two names may share a key; readers check the
/// entry's own source.
pub(crate) const EVENT_SOURCE_KEYS: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("eventsourcekeys_keyseq_unit");
/// (name key of the type, seq) → (): events by their dotted type; as `EVENT_SOURCE_KEYS`.
pub(crate) const EVENT_TYPE_KEYS: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("eventtypekeys_keyseq_unit");
/// (device name, SHA-256 of adapter scope and idempotency key) → ingest::IngestKeyRow v1.
pub(crate) const INGEST_KEYS: Table<(&str, &[u8]), IngestKeyRow> =
    Table::new("ingestkeys_devicekey_row");
/// (expires_at µs, device name, key hash) → (): the keys in the order they expire.
pub(crate) const INGEST_KEY_EXPIRY: TableDefinition<(i64, &str, &[u8]), ()> =
    TableDefinition::new("ingestexpiry_tsdevicekey_unit");

/// seq → purged at (i64 µs BE) ‖ the entry's v1 record: a payload retention purged, restorable
/// until the grace period ends.
pub(crate) const PURGED: TableDefinition<u64, &[u8]> = TableDefinition::new("purged_seq_record");
/// seq of a purged chat message → (conversation id, its sealed `messages_convseq_sealedrow` row):
/// the message's view row goes with its payload and comes back with it within the grace period.
pub(crate) const PURGED_MESSAGES: TableDefinition<u64, (&str, &[u8])> =
    TableDefinition::new("purgedmessages_seq_convrow");
/// seq of a purged entry → (`alarm:<id>` | `incident:<id>`, the text that view row copied from
/// it: an occurrence's message, an incident's title), kept through the grace period.
pub(crate) const PURGED_VIEWS: TableDefinition<u64, (&str, &[u8])> =
    TableDefinition::new("purgedviews_seq_copy");
/// retention scope (`site`, `stream:<name>`) → version u8 ‖ JSON (keep override, legal hold).
pub(crate) const RETENTION_SCOPES: TableDefinition<&str, &[u8]> =
    TableDefinition::new("retention_scope_row");

/// alarm id (the seq of the entry that raised the occurrence) → alarm_rows::AlarmRow v1.
pub(crate) const ALARMS: Table<u64, AlarmRow> = Table::new("alarms_id_row");
/// (source, condition) → id of the condition's newest occurrence.
pub(crate) const ALARM_CONDITIONS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("alarmconditions_sourcecond_id");
/// (shelve expiry µs, alarm id) → (): shelved alarms by when their timer unshelves them.
pub(crate) const ALARM_SHELVES: TableDefinition<(i64, u64), ()> =
    TableDefinition::new("alarmshelves_untilid_unit");
/// seq of every `alarm.*` entry → alarm id (live replay, history).
pub(crate) const ALARM_SEQS: TableDefinition<u64, u64> = TableDefinition::new("alarmseqs_seq_id");
/// (log ts µs, seq) → alarm id: alarm entries by the log's time (history, KPIs).
pub(crate) const ALARM_TIMES: TableDefinition<(i64, u64), u64> =
    TableDefinition::new("alarmtimes_tsseq_id");

/// SHA-256 of a device certificate's DER ([32]) → device_certs::DeviceCertRow v1.
pub(crate) const DEVICE_CERTS: Table<&[u8], DeviceCertRow> = Table::new("devicecerts_fp_row");
/// (severity rank 0 = debug .. 5 = critical, seq) → (): events by severity, for minimum-severity
/// queries.
pub(crate) const EVENT_SEVERITIES: TableDefinition<(u8, u64), ()> =
    TableDefinition::new("eventseverities_rankseq_unit");
/// (log ts µs, seq) → (flags, priority rank, occurrence raised_at µs, source, condition): what the
/// alarm KPIs need of each activation and ack, so a KPI read decodes no entry.
pub(crate) const ALARM_KPIS: TableDefinition<(i64, u64), AlarmKpiValue> =
    TableDefinition::new("alarmkpis_tsseq_facts");
/// The value of an `ALARM_KPIS` row: flags, priority rank, raised_at µs, source, condition.
pub(crate) type AlarmKpiValue = (u8, u8, i64, &'static str, &'static str);

/// alarm id → (escalations sent, log µs of the last one): the on-call escalation of each
/// unacknowledged alarm (`alarms::escalation`).
pub(crate) const ALARM_ESCALATIONS: TableDefinition<u64, (u32, i64)> =
    TableDefinition::new("alarmescalations_id_countlast");

/// template id → incidents::TemplateRow v1 (name, seq of each version's `template.saved`, archived).
pub(crate) const TEMPLATES: Table<&str, TemplateRow> = Table::new("templates_id_row");
/// incident id (= its conversation id) → incidents::IncidentRow v1.
pub(crate) const INCIDENTS: Table<&str, IncidentRow> = Table::new("incidents_id_row");
/// alarm id (occurrence) → id of the incident it opened or is linked to: one per occurrence.
pub(crate) const INCIDENT_ALARMS: TableDefinition<u64, &str> =
    TableDefinition::new("incidentalarms_alarm_incident");
/// (token MAC [8], seq of the block's first posting) → a sealed posting block (`search::postings`,
/// AAD `search/<mac hex>/<first>`): the blind inverted index.
pub(crate) const SEARCH_POSTINGS: TableDefinition<(&[u8], u64), &[u8]> =
    TableDefinition::new("searchpostings_macfirst_sealedblock");
/// seq → (): entries `search::forget` dropped (a retention purge); hits on them are never shown.
pub(crate) const SEARCH_FORGOTTEN: TableDefinition<u64, ()> =
    TableDefinition::new("searchforgotten_seq_unit");
/// uploader → bytes of their attachments that still exist (u64): the per-user quota's count,
/// written in the same commit as each upload and removal.
pub(crate) const ATTACHMENT_USAGE: TableDefinition<&str, u64> =
    TableDefinition::new("attachmentusage_user_bytes");
/// (uploaded at µs, attachment id) → (): uploads no message has referenced yet; the first
/// reference removes the row, garbage collection removes the old ones with their attachment.
pub(crate) const ATTACHMENT_UNPOSTED: TableDefinition<(i64, &str), ()> =
    TableDefinition::new("attachmentunposted_tsid_unit");
/// (seq of a message or incident answer, attachment id) → (): the entries that reference an
/// attachment; when retention removes such an entry for good, its rows go and the count drops.
pub(crate) const ATTACHMENT_REFS: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("attachmentrefs_seqid_unit");
/// attachment id → how many entries reference it (u32); at zero after a purge for good, the
/// attachment and its chunks are removed.
pub(crate) const ATTACHMENT_REF_COUNTS: TableDefinition<&str, u32> =
    TableDefinition::new("attachmentrefcounts_id_count");
/// (lower-cased username, site) → site_grants::SiteGrantRow v1: HQ's per-site grants.
pub(crate) const SITE_GRANTS: Table<(&str, &str), SiteGrantRow> =
    Table::new("sitegrants_usersite_row");

/// The one table list: every table with the schema version it first appears in. Creation and
/// migrations (`schema.rs`), backup (`backup.rs`) and the docs check read it; a new table is one
/// const above and one line here (plus the migration step of its version).
/// Calls `$f($($arg,)* TABLE, since_version)?` for each, in backup order.
macro_rules! for_each_table {
    ($f:ident($($arg:expr),*)) => {{
        $f($($arg,)* META, 1)?;
        $f($($arg,)* LOG, 1)?;
        $f($($arg,)* STREAM_INDEX, 1)?;
        $f($($arg,)* DEVICES.def(), 1)?;
        $f($($arg,)* DEVICE_TOKENS, 1)?;
        $f($($arg,)* USERS.def(), 2)?;
        $f($($arg,)* SESSIONS.def(), 2)?;
        $f($($arg,)* REFRESH_TOKENS, 2)?;
        $f($($arg,)* CONVS.def(), 3)?;
        $f($($arg,)* MEMBERS.def(), 3)?;
        $f($($arg,)* USER_CONVS, 3)?;
        $f($($arg,)* CHANNELS, 3)?;
        $f($($arg,)* MESSAGES, 3)?;
        $f($($arg,)* IDEMPOTENCY, 3)?;
        $f($($arg,)* MENTIONS, 3)?;
        $f($($arg,)* CONTACTS.def(), 3)?;
        $f($($arg,)* ATTACHMENTS.def(), 3)?;
        $f($($arg,)* ATTACHMENT_CHUNKS, 3)?;
        $f($($arg,)* ATTACHMENT_CONVS, 3)?;
        $f($($arg,)* EVENT_SEQS, 4)?;
        $f($($arg,)* EVENT_TIMES, 4)?;
        $f($($arg,)* EVENT_SOURCES, 4)?;
        $f($($arg,)* EVENT_TYPES, 4)?;
        $f($($arg,)* ALARMS.def(), 5)?;
        $f($($arg,)* ALARM_CONDITIONS, 5)?;
        $f($($arg,)* ALARM_SHELVES, 5)?;
        $f($($arg,)* ALARM_SEQS, 5)?;
        $f($($arg,)* ALARM_TIMES, 5)?;
        $f($($arg,)* INGEST_KEYS.def(), 5)?;
        $f($($arg,)* INGEST_KEY_EXPIRY, 5)?;
        $f($($arg,)* DEVICE_CERTS.def(), 5)?;
        $f($($arg,)* EVENT_SEVERITIES, 5)?;
        $f($($arg,)* ALARM_ESCALATIONS, 6)?;
        $f($($arg,)* ALARM_KPIS, 6)?;
        $f($($arg,)* TEMPLATES.def(), 7)?;
        $f($($arg,)* INCIDENTS.def(), 7)?;
        $f($($arg,)* INCIDENT_ALARMS, 7)?;
        $f($($arg,)* PURGED, 7)?;
        $f($($arg,)* PURGED_MESSAGES, 7)?;
        $f($($arg,)* RETENTION_SCOPES, 7)?;
        $f($($arg,)* SEARCH_POSTINGS, 7)?;
        $f($($arg,)* SEARCH_FORGOTTEN, 7)?;
        $f($($arg,)* ATTACHMENT_USAGE, 7)?;
        $f($($arg,)* ATTACHMENT_UNPOSTED, 7)?;
        $f($($arg,)* ATTACHMENT_REFS, 7)?;
        $f($($arg,)* ATTACHMENT_REF_COUNTS, 7)?;
        $f($($arg,)* PURGED_VIEWS, 8)?;
        $f($($arg,)* SITE_GRANTS.def(), 9)?;
        $f($($arg,)* EVENT_SOURCE_KEYS, 10)?;
        $f($($arg,)* EVENT_TYPE_KEYS, 10)?;
    }};
}
pub(crate) use for_each_table;

/// Every table's name, in backup order (from the one list).
pub fn table_names() -> Vec<String> {
    use redb::TableHandle;
    fn push<K: redb::Key + 'static, V: redb::Value + 'static>(
        out: &mut Vec<String>,
        def: TableDefinition<'static, K, V>,
        _since: u32,
    ) -> Result<(), std::convert::Infallible> {
        out.push(def.name().to_string());
        Ok(())
    }
    let mut out = Vec::new();
    let _ = (|| -> Result<(), std::convert::Infallible> {
        for_each_table!(push(&mut out));
        Ok(())
    })();
    out
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store {0} is in use by another process (is `plantwire serve` running?) and no control socket answered; stop it first"
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
    /// A stored value has the wrong shape or version; `what` names it.
    #[error("a stored {what} is malformed")]
    Malformed { what: &'static str },
    /// A stored row's JSON does not decode.
    #[error("a stored {what} does not decode: {source}")]
    Row {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A row or body could not be encoded (a bug: they are plain structs).
    #[error("cannot encode a {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("a log record: {0}")]
    Codec(#[from] CodecError),
    /// An update of a row that is not stored (a bug: updates follow a read of the row).
    #[error("no stored {what} to update")]
    NotStored { what: &'static str },
    /// A sealed attachment lacks one of its chunks.
    #[error("attachment {id} lacks chunk {n}")]
    MissingChunk { id: String, n: u32 },
    /// The system random generator failed.
    #[error("the system random generator failed")]
    Random,
    /// A commit failed and the store is being reopened; writes are refused until then.
    /// `disk_full` says whether the failure was a full disk.
    #[error("the store is degraded after a failed commit and is being recovered")]
    Degraded { disk_full: bool },
    /// The sequencer's writer thread could not be started.
    #[error("cannot start the writer thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("storage error: {0}")]
    Redb(Box<redb::Error>),
}

/// What kind of failure a `StoreError` is, for the answer a client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The disk (or quota) is full: retry once space is freed.
    DiskFull,
    /// Another I/O failure, or the store is being reopened: retry later.
    Unavailable,
    /// A malformed row, a wrong key, a failed encoding: a bug or damage, not a retry.
    Bug,
}

impl StoreError {
    pub fn fault(&self) -> Fault {
        let io = match self {
            StoreError::Redb(e) => match e.as_ref() {
                redb::Error::Io(io) => Some(io),
                redb::Error::PreviousIo => return Fault::Unavailable,
                _ => None,
            },
            StoreError::Open { source, .. } => match source.as_ref() {
                redb::Error::Io(io) => Some(io),
                _ => None,
            },
            StoreError::Degraded { disk_full: true } => return Fault::DiskFull,
            StoreError::Degraded { .. } | StoreError::Locked(_) => return Fault::Unavailable,
            _ => None,
        };
        match io {
            Some(io) if is_disk_full(io) => Fault::DiskFull,
            Some(_) => Fault::Unavailable,
            None => Fault::Bug,
        }
    }
}

fn is_disk_full(e: &std::io::Error) -> bool {
    // ENOSPC (28) and EDQUOT (122) on Linux.
    e.kind() == std::io::ErrorKind::StorageFull || matches!(e.raw_os_error(), Some(28 | 122))
}

impl<E: Into<redb::Error>> From<E> for StoreError {
    fn from(e: E) -> Self {
        StoreError::Redb(Box::new(e.into()))
    }
}

/// The open store. One per file: redb locks it. After a failed commit redb refuses every later
/// operation (`PreviousIo`) until the file is opened again; [`Store::reopen`] does that in place,
/// so the process recovers without a restart once the fault (a full disk) is gone.
pub struct Store {
    /// `None` while the store is being reopened: calls answer `StoreError::Degraded`.
    db: RwLock<Option<Arc<Database>>>,
    path: PathBuf,
    cache_bytes: usize,
    /// Whether commits record redb's allocator state (`storage.quick_repair`).
    quick_repair: AtomicBool,
    /// See [`Store::devices_generation`]; shared with every `WriteTx`, which bumps it.
    devices_generation: Arc<AtomicU64>,
}

/// Opens the file. A file a crash left open is repaired first: redb walks every tree to verify
/// the checksums and rebuild its allocator state, unless the last commit recorded that state
/// (quick repair). How long the walk took is logged, since it is the start-up time after a
/// power cut.
fn open_db(path: &Path, cache_bytes: usize) -> Result<Database, StoreError> {
    let repair_started: Arc<Mutex<Option<Instant>>> = Arc::default();
    let seen = repair_started.clone();
    let db = Database::builder()
        .set_cache_size(cache_bytes)
        .set_repair_callback(move |_| {
            if let Ok(mut first) = seen.lock() {
                first.get_or_insert_with(Instant::now);
            }
        })
        .create(path)
        .map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(path.to_path_buf()),
            other => StoreError::Open {
                path: path.to_path_buf(),
                source: Box::new(other.into()),
            },
        })?;
    if let Some(started) = repair_started.lock().ok().and_then(|s| *s) {
        tracing::warn!(
            path = %path.display(),
            repair_ms = started.elapsed().as_millis() as u64,
            "the store was not closed cleanly: redb verified and repaired it on open"
        );
    }
    Ok(db)
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) the store and brings its schema up to date.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        let db = open_db(path, cache_bytes)?;
        // The file holds sealed bodies but clear metadata: keep it private.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        schema::migrate(&db)?;
        Ok(Self {
            db: RwLock::new(Some(Arc::new(db))),
            path: path.to_path_buf(),
            cache_bytes,
            quick_repair: AtomicBool::new(false),
            devices_generation: Arc::default(),
        })
    }

    /// Makes every later commit record redb's allocator state, so that opening the file after a
    /// crash skips the repair walk. It costs a second fsync and the state's pages per commit
    /// (docs/benchmarks.md, "Recovery after SIGKILL").
    pub fn set_quick_repair(&self, on: bool) {
        self.quick_repair.store(on, Ordering::Relaxed);
    }

    /// Creates a store at an older schema `version`, as an earlier build wrote it (tests of the
    /// migrations).
    #[cfg(test)]
    pub(crate) fn create_at_version(path: &Path, version: u32) -> Result<Self, StoreError> {
        let db = open_db(path, 1 << 20)?;
        schema::migrate_to(&db, version)?;
        Ok(Self {
            db: RwLock::new(Some(Arc::new(db))),
            path: path.to_path_buf(),
            cache_bytes: 1 << 20,
            quick_repair: AtomicBool::new(false),
            devices_generation: Arc::default(),
        })
    }

    /// The open database, or `Degraded` while it is being reopened.
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.db
            .read()
            .map_err(|_| StoreError::Degraded { disk_full: false })?
            .clone()
            .ok_or(StoreError::Degraded { disk_full: false })
    }

    /// Closes and opens the file again, which runs redb's repair after a failed commit. Read
    /// transactions still open keep the old file locked: this waits up to `wait` for them, then
    /// gives up (`Locked`) and leaves the store degraded for the next attempt.
    pub fn reopen(&self, wait: std::time::Duration) -> Result<(), StoreError> {
        let degraded = || StoreError::Degraded { disk_full: false };
        // Take the old handle out first: from here readers get `Degraded` at once rather than
        // wait on the lock while the file is opened and repaired (which scans the whole file).
        let old = self.db.write().map_err(|_| degraded())?.take();
        drop(old);
        // The failed commit may be durable after all (redb's repair keeps a commit whose header
        // reached the disk), and it may have revoked a device: no cached answer survives this.
        self.bump_devices_generation();
        let started = std::time::Instant::now();
        loop {
            match open_db(&self.path, self.cache_bytes) {
                Ok(db) => {
                    *self.db.write().map_err(|_| degraded())? = Some(Arc::new(db));
                    return Ok(());
                }
                Err(StoreError::Locked(_)) if started.elapsed() < wait => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Commits one small durable write (`meta` key `write_probe_us`): after a failed commit, the
    /// proof that commits work again before the writer takes jobs.
    pub fn probe_write(&self, now_us: i64) -> Result<(), StoreError> {
        let mut w = self.write()?;
        w.put(META, "write_probe_us", now_us.to_be_bytes().as_slice())?;
        w.commit()
    }

    /// A number that moves whenever a device row may have changed: after every commit that put or
    /// removed a row of `DEVICES`, `DEVICE_TOKENS` or `DEVICE_CERTS` (bumped in
    /// [`WriteTx::commit`], before the sequencer answers the caller), and on [`Store::reopen`].
    /// A cached device authentication is good only while this is unchanged. Read it *before* the
    /// read snapshot whose answer is cached: a commit that lands in between then bumps it past
    /// the cached value.
    pub fn devices_generation(&self) -> u64 {
        self.devices_generation.load(Ordering::SeqCst)
    }

    fn bump_devices_generation(&self) {
        self.devices_generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether the store is open (not waiting to be reopened).
    pub fn is_open(&self) -> bool {
        self.db.read().is_ok_and(|s| s.is_some())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records the site and key fingerprint on first use; afterwards refuses a different one.
    ///
    /// It writes only `meta` (never a device table), so it leaves the devices generation alone.
    ///
    /// It commits only on first use: every commit without `storage.quick_repair` drops redb's
    /// recorded allocator state, so a commit here at each start would make the first crash after
    /// it walk the whole store even with quick repair on.
    pub fn bind_identity(&self, site: &str, key: &DataKey) -> Result<(), StoreError> {
        let mut txn = self.db()?.begin_write()?;
        txn.set_quick_repair(self.quick_repair.load(Ordering::Relaxed));
        let mut changed = false;
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
                    changed = true;
                }
            }
            let fp = key.fingerprint();
            let stored_fp = meta.get("data_key_fp")?.map(|v| v.value().to_vec());
            match stored_fp {
                Some(stored) if stored != fp => return Err(StoreError::KeyMismatch),
                Some(_) => {}
                None => {
                    meta.insert("data_key_fp", fp.as_slice())?;
                    changed = true;
                }
            }
        }
        if changed {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(())
    }

    pub fn read(&self) -> Result<ReadTx, StoreError> {
        Ok(ReadTx {
            txn: self.db()?.begin_read()?,
        })
    }

    /// Starts the single write transaction. Commits are durable (fsync) when `commit` returns.
    pub fn write(&self) -> Result<WriteTx, StoreError> {
        let mut txn = self.db()?.begin_write()?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| StoreError::Redb(Box::new(e.into())))?;
        txn.set_quick_repair(self.quick_repair.load(Ordering::Relaxed));
        Ok(WriteTx {
            txn,
            dirty: false,
            devices_written: false,
            devices_generation: self.devices_generation.clone(),
            pending: pending::Pending::default(),
        })
    }

    /// Runs redb's page checksum verification (needs exclusive access).
    pub fn check_integrity(&mut self) -> Result<bool, StoreError> {
        let slot = self
            .db
            .get_mut()
            .map_err(|_| StoreError::Degraded { disk_full: false })?;
        let db = slot
            .as_mut()
            .and_then(Arc::get_mut)
            .ok_or(StoreError::Degraded { disk_full: false })?;
        Ok(db.check_integrity()?)
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
        DEVICES.get(self, name)
    }

    pub fn device_by_token_hash(&self, hash: &[u8; 32]) -> Result<Option<DeviceRow>, StoreError> {
        let tokens = self.txn.open_table(DEVICE_TOKENS)?;
        let Some(name) = tokens.get(hash.as_slice())?.map(|v| v.value().to_string()) else {
            return Ok(None);
        };
        self.device(&name)
    }

    pub fn user(&self, key: &str) -> Result<Option<UserRow>, StoreError> {
        USERS.get(self, key)
    }

    /// Visits users in key order, after the key `after` if given, until `visit` returns false.
    pub fn scan_users(
        &self,
        after: Option<&str>,
        mut visit: impl FnMut(UserRow) -> bool,
    ) -> Result<(), StoreError> {
        let from = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        USERS.range::<&str>(self, (from, std::ops::Bound::Unbounded), |_, u| visit(u))
    }

    pub fn session(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        SESSIONS.get(self, id)
    }

    /// Seqs of `stream` with `after < seq <= to`, newest first, at most `limit`.
    pub fn stream_seqs_newest(
        &self,
        stream: &str,
        after: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        if after >= to {
            return Ok(out);
        }
        let t = self.txn.open_table(STREAM_INDEX)?;
        for row in t.range((stream, after + 1)..=(stream, to))?.rev() {
            let (k, _) = row?;
            out.push(k.value().1);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Visits every session (all users, ended ones included) until `visit` returns false.
    pub fn scan_sessions(
        &self,
        mut visit: impl FnMut(SessionRow) -> bool,
    ) -> Result<(), StoreError> {
        SESSIONS.range::<&str>(self, .., |_, s| visit(s))
    }

    pub fn devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        let mut out = Vec::new();
        DEVICES.range::<&str>(self, .., |_, d| {
            out.push(d);
            true
        })?;
        Ok(out)
    }
}

/// The one write transaction. Every mutating call marks it dirty, so the sequencer knows whether
/// a rejected job left writes behind that must be rolled back. Rows of the log, the stream index
/// and the event indexes wait in `pending` and are inserted at commit, each table opened once per
/// batch: a method that reads one of those tables inside the write calls `flush` first.
pub struct WriteTx {
    txn: WriteTransaction,
    dirty: bool,
    /// Whether a row of a device table was put or removed: the commit then bumps the generation.
    /// Unlike `dirty`, never cleared between jobs: it belongs to the whole transaction.
    devices_written: bool,
    devices_generation: Arc<AtomicU64>,
    pending: pending::Pending,
}

/// Whether `table` is one a device authentication reads (see [`Store::devices_generation`]).
fn is_device_table(table: &str) -> bool {
    use redb::TableHandle;
    table == DEVICES.def().name()
        || table == DEVICE_TOKENS.name()
        || table == DEVICE_CERTS.def().name()
}

impl WriteTx {
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub fn clear_dirty(&mut self) {
        self.dirty = false;
    }

    /// Writes one row of `table`. With [`WriteTx::put_many`], [`WriteTx::replace`] and
    /// [`WriteTx::remove`], the only places that mark a view write dirty: every typed writer
    /// below goes through them, so the sequencer always knows whether a refused job left writes
    /// behind (and rolls the batch back).
    pub(crate) fn put<'k, 'v, K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        table: TableDefinition<'static, K, V>,
        key: impl std::borrow::Borrow<K::SelfType<'k>>,
        value: impl std::borrow::Borrow<V::SelfType<'v>>,
    ) -> Result<(), StoreError> {
        self.replace(table, key, value).map(|_| ())
    }

    /// Writes many rows of `table` with the table opened once (see [`WriteTx::put`]); given no
    /// rows, it writes and marks nothing.
    pub(crate) fn put_many<'k, 'v, K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        table: TableDefinition<'static, K, V>,
        rows: impl IntoIterator<
            Item = (
                impl std::borrow::Borrow<K::SelfType<'k>>,
                impl std::borrow::Borrow<V::SelfType<'v>>,
            ),
        >,
    ) -> Result<(), StoreError> {
        let mut rows = rows.into_iter().peekable();
        if rows.peek().is_none() {
            return Ok(());
        }
        self.mark_written(&table);
        let mut t = self.txn.open_table(table)?;
        for (key, value) in rows {
            t.insert(key, value)?;
        }
        Ok(())
    }

    /// Overwrites one row of `table` (see [`WriteTx::put`]) and tells whether a row was there
    /// before: a writer that only updates rows refuses the job when it was not (the write is
    /// then rolled back with the job).
    pub(crate) fn replace<'k, 'v, K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        table: TableDefinition<'static, K, V>,
        key: impl std::borrow::Borrow<K::SelfType<'k>>,
        value: impl std::borrow::Borrow<V::SelfType<'v>>,
    ) -> Result<bool, StoreError> {
        self.mark_written(&table);
        let existed = self.txn.open_table(table)?.insert(key, value)?.is_some();
        Ok(existed)
    }

    /// Removes one row of `table` (see [`WriteTx::put`]).
    pub(crate) fn remove<'k, K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        table: TableDefinition<'static, K, V>,
        key: impl std::borrow::Borrow<K::SelfType<'k>>,
    ) -> Result<(), StoreError> {
        self.mark_written(&table);
        self.txn.open_table(table)?.remove(key)?;
        Ok(())
    }

    /// The one place a view write is noted: dirty for the sequencer, and whether a device table
    /// changed, for the devices generation.
    fn mark_written(&mut self, table: &impl redb::TableHandle) {
        self.dirty = true;
        if !self.devices_written && is_device_table(table.name()) {
            self.devices_written = true;
        }
    }

    /// Takes the log row of `seq` (inserted at the latest at commit; see [`WriteTx`]).
    pub fn put_log(&mut self, seq: u64, record: Vec<u8>) -> Result<(), StoreError> {
        self.dirty = true;
        self.pending.log(seq, record);
        Ok(())
    }

    /// Takes the stream index row of `seq` (inserted at the latest at commit).
    pub fn put_stream_index(&mut self, stream: &str, seq: u64) -> Result<(), StoreError> {
        self.dirty = true;
        self.pending.stream(stream, seq);
        Ok(())
    }

    /// Inserts the rows still pending (see [`WriteTx`]).
    fn flush(&mut self) -> Result<(), StoreError> {
        self.pending.write(&self.txn)
    }

    /// Whether entry `seq` belongs to `stream` (as written so far in this transaction).
    pub fn in_stream(&mut self, stream: &str, seq: u64) -> Result<bool, StoreError> {
        self.flush()?;
        Ok(self
            .txn
            .open_table(STREAM_INDEX)?
            .get((stream, seq))?
            .is_some())
    }

    pub fn set_chain_head(&mut self, head: &ChainHead) -> Result<(), StoreError> {
        self.put(META, "chain_head", head.encode().as_slice())
    }

    pub fn device(&self, name: &str) -> Result<Option<DeviceRow>, StoreError> {
        DEVICES.get(self, name)
    }

    pub fn put_device(&mut self, row: &DeviceRow) -> Result<(), StoreError> {
        DEVICES.put(self, row.name.as_str(), row)?;
        // An all-zero hash marks a device without a token (certificate only): no index row.
        match row.revoked_at_us {
            None if row.token_hash == [0u8; 32] => Ok(()),
            None => self.put(DEVICE_TOKENS, row.token_hash.as_slice(), row.name.as_str()),
            Some(_) => self.remove(DEVICE_TOKENS, row.token_hash.as_slice()),
        }
    }

    pub fn user(&self, key: &str) -> Result<Option<UserRow>, StoreError> {
        USERS.get(self, key)
    }

    /// Visits every user in key order until `visit` returns false (inside the write).
    pub fn scan_users(&self, mut visit: impl FnMut(UserRow) -> bool) -> Result<(), StoreError> {
        USERS.range::<&str>(self, .., |_, u| visit(u))
    }

    /// Stores a user under its lower-cased username.
    pub fn put_user(&mut self, row: &UserRow) -> Result<(), StoreError> {
        let key = row.username.to_ascii_lowercase();
        USERS.put(self, key.as_str(), row)
    }

    /// Deletes a user row (a rejected registration); `key` is the lower-cased username.
    pub fn remove_user(&mut self, key: &str) -> Result<(), StoreError> {
        self.remove(USERS.def(), key)
    }

    pub fn session(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        SESSIONS.get(self, id)
    }

    /// The session a refresh token (by hash) was ever issued for.
    pub fn session_of_refresh(&self, hash: &[u8; 32]) -> Result<Option<String>, StoreError> {
        let t = self.txn.open_table(REFRESH_TOKENS)?;
        let id = t.get(hash.as_slice())?.map(|v| v.value().to_string());
        Ok(id)
    }

    /// Stores a session and records its current refresh token.
    pub fn put_session(&mut self, row: &SessionRow) -> Result<(), StoreError> {
        SESSIONS.put(self, row.id.as_str(), row)?;
        self.put(
            REFRESH_TOKENS,
            row.current_refresh.as_slice(),
            row.id.as_str(),
        )
    }

    /// Commits durably. When a device table was written, the devices generation moves after the
    /// commit returns (so no reader can cache the old row under the new number) and before the
    /// caller hears of it (the sequencer answers after this). A failed commit moves it too: redb
    /// may keep such a commit after all, and a needless move costs one store read per device.
    pub fn commit(mut self) -> Result<(), StoreError> {
        self.flush()?;
        let committed = self.txn.commit();
        if self.devices_written {
            self.devices_generation.fetch_add(1, Ordering::SeqCst);
        }
        committed?;
        Ok(())
    }

    pub fn abort(self) -> Result<(), StoreError> {
        self.txn.abort()?;
        Ok(())
    }
}
