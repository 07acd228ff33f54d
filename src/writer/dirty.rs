//! The pages a write transaction changed, over the snapshot it started from: reads see them
//! first, and COMMIT stores them. Whole pages only (SQLite writes a rollback-journal
//! database page by page).

use crate::ltx::{PageSize, Pgno};
use crate::replica::Snapshot;
use std::collections::BTreeMap;

/// Invariant: every page is `page_size` bytes and its number is at most `size`.
#[derive(Debug, Default)]
pub(crate) struct DirtyPages {
    /// Set by the first write; the snapshot's unless the database is new.
    page_size: Option<PageSize>,
    pages: BTreeMap<Pgno, Box<[u8]>>,
    /// The database size in pages, once a write or truncate changed it.
    size: Option<u32>,
}

impl DirtyPages {
    /// Whether the transaction changed nothing (yet).
    pub(crate) fn is_empty(&self) -> bool {
        self.pages.is_empty() && self.size.is_none()
    }

    pub(crate) fn clear(&mut self) {
        *self = DirtyPages::default();
    }

    /// The page size: the snapshot's, or for a database yet to be written, the size of the
    /// first page SQLite wrote (`PRAGMA page_size` before it).
    pub(crate) fn page_size(&self, base: &Snapshot) -> PageSize {
        match self.page_size {
            Some(size) => size,
            None => base.page_size,
        }
    }

    /// The database size in pages.
    pub(crate) fn size_pages(&self, base: &Snapshot) -> u32 {
        self.size.unwrap_or(base.size_pages())
    }

    pub(crate) fn page(&self, pgno: Pgno) -> Option<&[u8]> {
        self.pages.get(&pgno).map(|p| &p[..])
    }

    /// The changed pages, ascending, within the database size.
    pub(crate) fn pages(&self) -> impl Iterator<Item = (Pgno, &[u8])> {
        self.pages.iter().map(|(p, d)| (*p, &d[..]))
    }

    /// Whether these pages are a COMMIT's: SQLite increments the change counter in page 1
    /// (offset 24) in every rollback-journal commit, from the value the VFS showed it (the
    /// base's TXID, low 32 bits). Pages without that change are the originals SQLite writes
    /// back when it rolls back a transaction that had spilled pages to the file: the base's
    /// own content, nothing to store.
    pub(crate) fn is_commit(&self, base: &Snapshot) -> bool {
        let shown = base.counter().to_be_bytes();
        self.page(Pgno::ONE)
            .and_then(|p| p.get(24..28))
            .is_some_and(|counter| counter != shown)
    }

    /// Writes `data` at byte `offset`: one whole page.
    ///
    /// # Errors
    /// A sentence if the write is not one whole page of the database's page size.
    pub(crate) fn write(
        &mut self,
        base: &Snapshot,
        offset: u64,
        data: &[u8],
    ) -> Result<(), String> {
        let len = u32::try_from(data.len()).unwrap_or(0);
        let page_size = match self.page_size {
            Some(size) => size,
            None if base.size_pages() == 0 => PageSize::new(len)
                .ok_or_else(|| format!("a first write of {len} bytes is not a page"))?,
            None => base.page_size,
        };
        let ps = u64::from(page_size.get());
        if len != page_size.get() || !offset.is_multiple_of(ps) {
            return Err(format!(
                "a write of {len} bytes at offset {offset} is not one whole {page_size}-byte page"
            ));
        }
        let pgno = u32::try_from(offset / ps + 1)
            .ok()
            .and_then(Pgno::new)
            .ok_or_else(|| format!("offset {offset} is past the largest database"))?;
        self.page_size = Some(page_size);
        self.pages.insert(pgno, data.into());
        self.size = Some(self.size_pages(base).max(pgno.get()));
        Ok(())
    }

    /// Truncates the database to `bytes` (a whole number of pages, rounded up).
    pub(crate) fn truncate(&mut self, base: &Snapshot, bytes: u64) {
        let ps = u64::from(self.page_size(base).get());
        let pages = u32::try_from(bytes.div_ceil(ps)).unwrap_or(u32::MAX);
        self.pages.retain(|p, _| p.get() <= pages);
        self.size = Some(pages);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_grow_and_truncates_shrink_the_database() -> Result<(), String> {
        let base =
            Snapshot::from_plan(PageSize::DEFAULT, Vec::new()).map_err(|e| e.1.to_string())?;
        let mut d = DirtyPages::default();
        assert!(d.is_empty());
        assert!(
            d.write(&base, 0, &[1u8; 1024]).is_ok(),
            "a new database takes its page size"
        );
        assert_eq!(d.page_size(&base).get(), 1024);
        d.write(&base, 2048, &[3u8; 1024])?;
        assert_eq!(d.size_pages(&base), 3);
        assert!(
            d.write(&base, 100, &[0u8; 1024]).is_err(),
            "not page aligned"
        );
        assert!(d.write(&base, 0, &[0u8; 512]).is_err(), "another page size");
        d.truncate(&base, 1024);
        assert_eq!(d.size_pages(&base), 1);
        assert_eq!(d.pages().count(), 1);
        assert_eq!(d.page(Pgno::ONE).map(|p| p[0]), Some(1));
        // Page 1 with the counter the VFS showed (TXID 0): written back by a rollback.
        let mut page1 = vec![1u8; 1024];
        page1[24..28].copy_from_slice(&0u32.to_be_bytes());
        d.write(&base, 0, &page1)?;
        assert!(!d.is_commit(&base));
        page1[24..28].copy_from_slice(&1u32.to_be_bytes());
        d.write(&base, 0, &page1)?;
        assert!(d.is_commit(&base), "the counter moved: a COMMIT");
        Ok(())
    }
}
