//! Typed tables: `Table<K, R>` is one redb table of versioned rows `R` under keys `K`, with get,
//! put and range written once (no row is ever deleted today; index rows are removed through
//! `WriteTx::remove`). Writes go through `WriteTx::put`/`put_many`/`replace`/`remove`, which mark
//! the transaction dirty; reads work alike on a read snapshot and on the writer's transaction.

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::ops::RangeBounds;

use redb::{Key, ReadableTable, TableDefinition, Value};

use super::{ReadTx, StoreError, WriteTx};

/// A stored row: a version byte and its encoding, kept apart from API types.
pub(crate) trait Row: Sized {
    fn encode(&self) -> Result<Vec<u8>, StoreError>;
    fn decode(bytes: &[u8]) -> Result<Self, StoreError>;
}

/// A table of rows `R` under keys `K`; declared once as a `const` in the registry.
pub(crate) struct Table<K: Key + 'static, R> {
    def: TableDefinition<'static, K, &'static [u8]>,
    row: PhantomData<fn() -> R>,
}

/// What reads share: a read snapshot, or the writer's own transaction (which sees its writes).
pub(crate) trait Txn {
    fn open<K: Key + 'static, V: Value + 'static>(
        &self,
        def: TableDefinition<'static, K, V>,
    ) -> Result<impl ReadableTable<K, V> + '_, StoreError>;
}

impl Txn for ReadTx {
    fn open<K: Key + 'static, V: Value + 'static>(
        &self,
        def: TableDefinition<'static, K, V>,
    ) -> Result<impl ReadableTable<K, V> + '_, StoreError> {
        Ok(self.txn.open_table(def)?)
    }
}

impl Txn for WriteTx {
    fn open<K: Key + 'static, V: Value + 'static>(
        &self,
        def: TableDefinition<'static, K, V>,
    ) -> Result<impl ReadableTable<K, V> + '_, StoreError> {
        Ok(self.txn.open_table(def)?)
    }
}

impl<K: Key + 'static, R: Row> Table<K, R> {
    pub(crate) const fn new(name: &'static str) -> Self {
        Self {
            def: TableDefinition::new(name),
            row: PhantomData,
        }
    }

    /// The redb definition, for creation, backup and restore.
    pub(crate) const fn def(&self) -> TableDefinition<'static, K, &'static [u8]> {
        self.def
    }

    pub(crate) fn get<'k>(
        &self,
        txn: &impl Txn,
        key: impl Borrow<K::SelfType<'k>>,
    ) -> Result<Option<R>, StoreError> {
        let t = txn.open(self.def)?;
        let row = t.get(key)?.map(|v| R::decode(v.value())).transpose()?;
        Ok(row)
    }

    pub(crate) fn put<'k>(
        &self,
        w: &mut WriteTx,
        key: impl Borrow<K::SelfType<'k>>,
        row: &R,
    ) -> Result<(), StoreError> {
        w.put(self.def, key, row.encode()?.as_slice())
    }

    /// Overwrites a row that must already be stored; `Ok(false)` when there was none.
    pub(crate) fn replace<'k>(
        &self,
        w: &mut WriteTx,
        key: impl Borrow<K::SelfType<'k>>,
        row: &R,
    ) -> Result<bool, StoreError> {
        w.replace(self.def, key, row.encode()?.as_slice())
    }

    /// Visits the rows of `range` in key order until `visit` returns false.
    pub(crate) fn range<'k, Q: Borrow<K::SelfType<'k>> + 'k>(
        &self,
        txn: &impl Txn,
        range: impl RangeBounds<Q> + 'k,
        mut visit: impl FnMut(K::SelfType<'_>, R) -> bool,
    ) -> Result<(), StoreError> {
        let t = txn.open(self.def)?;
        for row in t.range(range)? {
            let (k, v) = row?;
            if !visit(k.value(), R::decode(v.value())?) {
                break;
            }
        }
        Ok(())
    }
}
