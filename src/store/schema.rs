//! The schema version and the ordered migrations that reach it, one transaction each.
//! A store written by a newer build is refused rather than silently downgraded.

use redb::{Database, ReadableDatabase, WriteTransaction};

use redb::ReadableTable;

use super::events::EVENT_BACKFILL_KEY;
use super::*;

/// The schema this build writes.
pub const SCHEMA_VERSION: u32 = 10;

type Migration = fn(&WriteTransaction) -> Result<(), StoreError>;

/// `MIGRATIONS[i]` takes the store from version `i` to `i + 1`: it creates the tables of the one
/// list (`for_each_table!`) that appear in version `i + 1`, then runs that version's own step.
const MIGRATIONS: [Migration; SCHEMA_VERSION as usize] = [
    |txn| create_tables(txn, 1),
    // v2: people and their sessions.
    |txn| create_tables(txn, 2),
    // v3: conversations, messages, contacts and attachments.
    |txn| create_tables(txn, 3),
    // v4: event indexes.
    |txn| {
        create_tables(txn, 4)?;
        mark_event_backfill(txn)
    },
    |txn| create_tables(txn, 5),
    |txn| create_tables(txn, 6),
    |txn| create_tables(txn, 7),
    // v8: the views' copies of purged content; attachment bookkeeping for stores older than v7.
    |txn| {
        create_tables(txn, 8)?;
        backfill_attachments(txn)
    },
    // v9: HQ's per-site grants.
    |txn| create_tables(txn, 9),
    // v10: the source and type indexes keyed by fixed-width name keys.
    |txn| {
        create_tables(txn, 10)?;
        super::events::rekey_names(txn)
    },
];

/// Creates every table of the list that first appears in `version`.
fn create_tables(txn: &WriteTransaction, version: u32) -> Result<(), StoreError> {
    fn create<K: redb::Key + 'static, V: redb::Value + 'static>(
        txn: &WriteTransaction,
        version: u32,
        def: redb::TableDefinition<'static, K, V>,
        since: u32,
    ) -> Result<(), StoreError> {
        if since == version {
            txn.open_table(def)?;
        }
        Ok(())
    }
    for_each_table!(create(txn, version));
    Ok(())
}

/// v4: entries already in the log are indexed by `events::backfill` at the next start (it needs
/// the data key, which the store does not have): `event_backfill_to` records the last seq it must
/// cover.
fn mark_event_backfill(txn: &WriteTransaction) -> Result<(), StoreError> {
    let last = txn.open_table(LOG)?.last()?.map_or(0, |(k, _)| k.value());
    if last > 0 {
        txn.open_table(META)?
            .insert(EVENT_BACKFILL_KEY, last.to_be_bytes().as_slice())?;
    }
    Ok(())
}

/// v8: attachments stored before v7 had no usage or unposted rows (the quota and the collector
/// did not count them). Each uploader's usage is recomputed as the sum of their attachments' sizes
/// (what v7 keeps, so a v7 store gets the same numbers), and an attachment in no conversation and
/// no reference count is noted as unposted at its upload time. References from messages sealed
/// before v7 cannot be read here (no data key): such attachments are kept, never collected.
fn backfill_attachments(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut usage: std::collections::BTreeMap<String, u64> = Default::default();
    let mut unposted = Vec::new();
    {
        let rows = txn.open_table(ATTACHMENTS.def())?;
        let convs = txn.open_table(ATTACHMENT_CONVS)?;
        let counts = txn.open_table(ATTACHMENT_REF_COUNTS)?;
        for r in rows.iter()? {
            let (_, v) = r?;
            let row = AttachmentRow::decode(v.value())?;
            let n = usage.entry(row.uploader.clone()).or_default();
            *n = n.saturating_add(row.size);
            let posted = convs
                .range((row.id.as_str(), "")..)?
                .next()
                .transpose()?
                .is_some_and(|(k, _)| k.value().0 == row.id);
            if !posted && counts.get(row.id.as_str())?.is_none() {
                unposted.push((row.created_at_us, row.id));
            }
        }
    }
    let mut t = txn.open_table(ATTACHMENT_USAGE)?;
    t.retain(|_, _| false)?;
    for (user, bytes) in &usage {
        t.insert(user.as_str(), *bytes)?;
    }
    let mut t = txn.open_table(ATTACHMENT_UNPOSTED)?;
    for (at, id) in &unposted {
        t.insert((*at, id.as_str()), ())?;
    }
    Ok(())
}

fn stored_version(db: &Database) -> Result<u32, StoreError> {
    let txn = db.begin_read()?;
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    match meta.get("schema_version")? {
        Some(v) => {
            let b: [u8; 4] = v.value().try_into().map_err(|_| StoreError::Malformed {
                what: "schema version",
            })?;
            Ok(u32::from_be_bytes(b))
        }
        None => Ok(0),
    }
}

pub(super) fn migrate(db: &Database) -> Result<(), StoreError> {
    migrate_to(db, SCHEMA_VERSION)
}

/// Brings the store to `target` (tests stop short of the current version to write old stores).
pub(super) fn migrate_to(db: &Database, target: u32) -> Result<(), StoreError> {
    let found = stored_version(db)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::Downgrade {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for version in found..target.min(SCHEMA_VERSION) {
        let txn = db.begin_write()?;
        MIGRATIONS[version as usize](&txn)?;
        txn.open_table(META)?
            .insert("schema_version", (version + 1).to_be_bytes().as_slice())?;
        txn.commit()?;
        tracing::info!(from = version, to = version + 1, "store schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{AttachmentRow, Store};

    /// `docs/log-format.md` lists exactly the tables of the one list (it drifted twice before).
    #[test]
    fn the_docs_name_every_table_and_no_other() {
        let doc = include_str!("../../docs/log-format.md");
        let documented: std::collections::BTreeSet<&str> = doc
            .lines()
            .filter(|l| l.starts_with("| `"))
            .filter_map(|l| l.split('`').nth(1))
            .filter(|name| name.matches('_').count() == 2)
            .collect();
        let names = super::super::table_names();
        let code: std::collections::BTreeSet<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(
            documented, code,
            "docs/log-format.md and the table list differ"
        );
    }

    fn row(id: &str, uploader: &str, size: u64, at: i64) -> AttachmentRow {
        AttachmentRow {
            id: id.into(),
            size,
            sha256: "00".repeat(32),
            mime: "image/png".into(),
            name: format!("{id}.png"),
            uploader: uploader.into(),
            created_at_us: at,
            chunks: 0,
        }
    }

    /// A v6 store's attachments (no usage or unposted rows then) are counted against their
    /// uploaders after the migration, and the one never posted becomes collectable; the posted one
    /// is not.
    #[test]
    fn attachments_of_a_store_before_v7_are_counted_and_the_unposted_collectable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plantwire.redb");
        {
            let store = Store::create_at_version(&path, 6).unwrap();
            let mut w = store.write().unwrap();
            w.put_attachment(&row("a1", "ana", 1_000, 10)).unwrap();
            w.put_attachment(&row("a2", "ana", 500, 20)).unwrap();
            w.put_attachment(&row("b1", "bo", 70, 30)).unwrap();
            w.put_attachment_conv("a1", "c-1").unwrap();
            w.commit().unwrap();
        }
        let store = Store::open(&path, 1 << 20).unwrap();
        let r = store.read().unwrap();
        assert_eq!(r.attachment_usage("ana").unwrap(), 1_500);
        assert_eq!(r.attachment_usage("bo").unwrap(), 70);
        drop(r);
        let w = store.write().unwrap();
        assert_eq!(w.unposted_before(i64::MAX, 10).unwrap(), ["a2", "b1"]);
    }

    /// A v9 store indexed event sources and types by name; after the v10 migration the same seqs
    /// are found by name key, in order, and the old tables are empty.
    #[test]
    fn event_names_indexed_before_v10_are_found_by_name_key_after() {
        use super::super::events::{EventIndex, EventRange};
        use super::super::{EVENT_SOURCES, EVENT_TYPES};
        use redb::ReadableTableMetadata;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plantwire.redb");
        {
            let store = Store::create_at_version(&path, 9).unwrap();
            let w = store.write().unwrap();
            {
                let mut sources = w.txn.open_table(EVENT_SOURCES).unwrap();
                let mut types = w.txn.open_table(EVENT_TYPES).unwrap();
                for (seq, source, kind) in [
                    (3, "pump-1", "pressure.high"),
                    (5, "pump-2", "pressure.high"),
                    (8, "pump-1", "flow.low"),
                ] {
                    sources.insert((source, seq), ()).unwrap();
                    types.insert((kind, seq), ()).unwrap();
                }
            }
            w.commit().unwrap();
        }
        let store = Store::open(&path, 1 << 20).unwrap();
        let r = store.read().unwrap();
        let every = |newest_first| EventRange {
            lo: 1,
            hi: u64::MAX,
            newest_first,
            limit: 100,
        };
        let seqs = |index: EventIndex, newest_first| r.event_seqs(&index, every(newest_first));
        assert_eq!(
            seqs(EventIndex::Source("pump-1".into()), false).unwrap(),
            [3, 8]
        );
        assert_eq!(
            seqs(EventIndex::Source("pump-1".into()), true).unwrap(),
            [8, 3]
        );
        assert_eq!(
            seqs(EventIndex::Source("pump-2".into()), false).unwrap(),
            [5]
        );
        assert_eq!(
            seqs(EventIndex::Type("pressure.high".into()), false).unwrap(),
            [3, 5]
        );
        assert_eq!(
            seqs(EventIndex::Type("flow.low".into()), false).unwrap(),
            [8]
        );
        assert!(
            seqs(EventIndex::Source("pump-3".into()), false)
                .unwrap()
                .is_empty()
        );
        assert_eq!(r.txn.open_table(EVENT_SOURCES).unwrap().len().unwrap(), 0);
        assert_eq!(r.txn.open_table(EVENT_TYPES).unwrap().len().unwrap(), 0);
    }
}
