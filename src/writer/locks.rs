//! The lock table of one replica's writable connections in this process: at most one holds
//! RESERVED or more (one write transaction at a time, as on a local file). Readers take no
//! part: each reads the snapshot its SHARED lock pinned, whatever the writer does. Across
//! processes the store arbitrates (a conditional create per TXID).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

#[derive(Debug, Default)]
pub(crate) struct LockTable {
    /// The connection holding RESERVED, PENDING or EXCLUSIVE.
    writer: Mutex<Option<u64>>,
}

type Tables = HashMap<String, Weak<LockTable>>;
static TABLES: Mutex<Option<Tables>> = Mutex::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl LockTable {
    /// The table of the replica at `url`, shared by every writable connection to it here.
    pub(crate) fn of(url: &str) -> Arc<LockTable> {
        let mut tables = TABLES.lock().unwrap_or_else(|e| e.into_inner());
        let map = tables.get_or_insert_with(HashMap::new);
        map.retain(|_, t| t.strong_count() > 0);
        if let Some(table) = map.get(url).and_then(Weak::upgrade) {
            return table;
        }
        let table = Arc::new(LockTable::default());
        map.insert(url.to_owned(), Arc::downgrade(&table));
        table
    }

    /// A number for a connection, unique in the process.
    pub(crate) fn new_holder() -> u64 {
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes the write lock for `who`; `false` if another connection holds it.
    pub(crate) fn try_reserve(&self, who: u64) -> bool {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        match *w {
            Some(other) if other != who => false,
            _ => {
                *w = Some(who);
                true
            }
        }
    }

    pub(crate) fn release(&self, who: u64) {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if *w == Some(who) {
            *w = None;
        }
    }

    /// Whether a connection other than `who` holds the write lock (xCheckReservedLock).
    pub(crate) fn reserved_by_other(&self, who: u64) -> bool {
        let w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        w.is_some_and(|h| h != who)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_writer_at_a_time_per_replica() {
        let (a, b) = (LockTable::new_holder(), LockTable::new_holder());
        let t = LockTable::of("file:///locks-test");
        assert!(Arc::ptr_eq(&t, &LockTable::of("file:///locks-test")));
        assert!(t.try_reserve(a));
        assert!(t.try_reserve(a), "again by the holder");
        assert!(!t.try_reserve(b));
        assert!(t.reserved_by_other(b) && !t.reserved_by_other(a));
        t.release(b);
        assert!(!t.try_reserve(b), "only the holder releases");
        t.release(a);
        assert!(t.try_reserve(b));
        let other = LockTable::of("file:///another");
        assert!(other.try_reserve(a), "replicas are independent");
    }
}
