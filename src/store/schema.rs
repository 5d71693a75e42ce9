//! The schema version and the ordered migrations that reach it, one transaction each.
//! A store written by a newer build is refused rather than silently downgraded.

use redb::{Database, ReadableDatabase, WriteTransaction};

use super::{
    ATTACHMENT_CHUNKS, ATTACHMENT_CONVS, ATTACHMENTS, CHANNELS, CONTACTS, CONVS, DEVICE_TOKENS,
    DEVICES, IDEMPOTENCY, LOG, MEMBERS, MENTIONS, MESSAGES, META, REFRESH_TOKENS, SESSIONS,
    STREAM_INDEX, StoreError, USER_CONVS, USERS,
};

/// The schema this build writes.
pub const SCHEMA_VERSION: u32 = 3;

type Migration = fn(&WriteTransaction) -> Result<(), StoreError>;

/// `MIGRATIONS[i]` takes the store from version `i` to `i + 1`.
const MIGRATIONS: [Migration; SCHEMA_VERSION as usize] = [create_v1, add_accounts_v2, add_chat_v3];

fn create_v1(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(META)?;
    txn.open_table(LOG)?;
    txn.open_table(STREAM_INDEX)?;
    txn.open_table(DEVICES)?;
    txn.open_table(DEVICE_TOKENS)?;
    Ok(())
}

/// v2: people and their sessions.
fn add_accounts_v2(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(USERS)?;
    txn.open_table(SESSIONS)?;
    txn.open_table(REFRESH_TOKENS)?;
    Ok(())
}

/// v3: conversations, messages, contacts and attachments.
fn add_chat_v3(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(CONVS)?;
    txn.open_table(MEMBERS)?;
    txn.open_table(USER_CONVS)?;
    txn.open_table(CHANNELS)?;
    txn.open_table(MESSAGES)?;
    txn.open_table(IDEMPOTENCY)?;
    txn.open_table(MENTIONS)?;
    txn.open_table(CONTACTS)?;
    txn.open_table(ATTACHMENTS)?;
    txn.open_table(ATTACHMENT_CHUNKS)?;
    txn.open_table(ATTACHMENT_CONVS)?;
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
            let b: [u8; 4] = v
                .value()
                .try_into()
                .map_err(|_| StoreError::Corrupt("schema_version".into()))?;
            Ok(u32::from_be_bytes(b))
        }
        None => Ok(0),
    }
}

pub(super) fn migrate(db: &Database) -> Result<(), StoreError> {
    let found = stored_version(db)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::Downgrade {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for version in found..SCHEMA_VERSION {
        let txn = db.begin_write()?;
        MIGRATIONS[version as usize](&txn)?;
        txn.open_table(META)?
            .insert("schema_version", (version + 1).to_be_bytes().as_slice())?;
        txn.commit()?;
        tracing::info!(from = version, to = version + 1, "store schema migrated");
    }
    Ok(())
}
