//! The memory page cache: decompressed pages keyed by (LTX file, pgno), least recently used
//! evicted first, bounded in bytes. LTX files never change, so an entry never goes stale; a
//! new snapshot only changes which file a page number points at. [`disk`] keeps pages across
//! processes and restarts (`cache_dir`).

mod disk;

pub use disk::{DiskCache, DiskStats};

use crate::ltx::Pgno;
use crate::replica::LtxFileId;
use lru::LruCache;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub file: LtxFileId,
    pub pgno: Pgno,
}

#[derive(Debug)]
struct Inner {
    lru: LruCache<PageKey, Arc<[u8]>>,
    bytes: u64,
}

/// A byte-bounded LRU of pages, shared by every connection to one replica.
#[derive(Debug)]
pub struct PageCache {
    inner: Mutex<Inner>,
    budget: u64,
}

impl PageCache {
    pub fn new(budget_bytes: u64) -> PageCache {
        PageCache {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
            budget: budget_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the LRU inconsistent: keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &PageKey) -> Option<Arc<[u8]>> {
        self.lock().lru.get(key).cloned()
    }

    /// Whether the page is cached, without making it more recent.
    pub fn contains(&self, key: &PageKey) -> bool {
        self.lock().lru.contains(key)
    }

    /// Inserts pages, as [`PageCache::insert`] each.
    pub fn insert_all(&self, pages: impl IntoIterator<Item = (PageKey, Arc<[u8]>)>) {
        for (key, page) in pages {
            self.insert(key, page);
        }
    }

    /// Inserts a page, evicting the least recently used until the budget holds. A budget
    /// smaller than one page caches nothing.
    pub fn insert(&self, key: PageKey, page: Arc<[u8]>) {
        let size = page.len() as u64;
        if size > self.budget {
            return;
        }
        let mut inner = self.lock();
        if let Some(old) = inner.lru.put(key, page) {
            inner.bytes -= old.len() as u64;
        }
        inner.bytes += size;
        while inner.bytes > self.budget {
            match inner.lru.pop_lru() {
                Some((_, evicted)) => inner.bytes -= evicted.len() as u64,
                None => break,
            }
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }
}

/// Page `n` of one L0 file, for tests.
#[cfg(test)]
pub(crate) fn test_key(n: u32) -> PageKey {
    PageKey {
        file: LtxFileId {
            level: 0,
            min_txid: crate::ltx::Txid(1),
            max_txid: crate::ltx::Txid(1),
        },
        pgno: Pgno::new(n).unwrap_or(Pgno::ONE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> PageKey {
        test_key(n)
    }

    #[test]
    fn evicts_least_recently_used_to_stay_within_budget() {
        let cache = PageCache::new(3 * 512);
        for n in 1..=3 {
            cache.insert(key(n), vec![n as u8; 512].into());
        }
        assert!(cache.get(&key(1)).is_some()); // 1 is now most recent
        cache.insert(key(4), vec![4; 512].into());
        assert!(cache.get(&key(2)).is_none());
        assert!(cache.get(&key(1)).is_some());
        assert_eq!(cache.bytes(), 3 * 512);
    }
}
