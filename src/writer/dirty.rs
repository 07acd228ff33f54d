//! The pages a write transaction changed, over the snapshot it started from: reads see them
//! first, and COMMIT stores them. Whole pages only (SQLite writes a rollback-journal
//! database page by page).
//!
//! At most `bound` bytes of them (`compaction_buffer`) are held in memory: past that, the
//! held pages go to a spill file of the transaction's own ([`SpillFile`]) and are read back
//! from it, so a transaction of any size takes the bound in memory plus about 40 bytes a
//! page of map. Page 1 always stays in memory (COMMIT reads its header).

use super::spill::SpillFile;
use crate::ltx::{PageSize, Pgno};
use crate::replica::Snapshot;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The bound when none is given: `compaction_buffer`'s default.
const DEFAULT_BOUND: u64 = 16 << 20;

/// Where one changed page is.
#[derive(Debug)]
enum Slot {
    Held(Box<[u8]>),
    /// At this offset of the spill file.
    Spilled(u64),
}

/// Invariant: every page is `page_size` bytes and its number is at most `size`; a page is
/// spilled only if the spill file is there.
#[derive(Debug)]
pub(crate) struct DirtyPages {
    /// Set by the first write; the snapshot's unless the database is new.
    page_size: Option<PageSize>,
    pages: BTreeMap<Pgno, Slot>,
    /// The database size in pages, once a write or truncate changed it.
    size: Option<u32>,
    /// Bytes of the pages held in memory.
    held: u64,
    /// The most bytes of pages held in memory.
    bound: u64,
    spill: Option<SpillFile>,
}

impl Default for DirtyPages {
    fn default() -> Self {
        DirtyPages::with_bound(DEFAULT_BOUND)
    }
}

impl DirtyPages {
    /// Pages that hold at most `bound` bytes in memory.
    pub(crate) fn with_bound(bound: u64) -> DirtyPages {
        DirtyPages {
            page_size: None,
            pages: BTreeMap::new(),
            size: None,
            held: 0,
            bound,
            spill: None,
        }
    }

    /// Whether the transaction changed nothing (yet).
    pub(crate) fn is_empty(&self) -> bool {
        self.pages.is_empty() && self.size.is_none()
    }

    /// Drops the transaction's pages (and its spill file).
    pub(crate) fn clear(&mut self) {
        *self = DirtyPages::with_bound(self.bound);
    }

    /// Whether some pages went to the spill file: the transaction is larger than the bound.
    pub(crate) fn spilled(&self) -> bool {
        self.spill.is_some()
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

    /// Page 1 as the transaction wrote it (never spilled).
    pub(crate) fn page1(&self) -> Option<&[u8]> {
        match self.pages.get(&Pgno::ONE) {
            Some(Slot::Held(page)) => Some(page),
            _ => None,
        }
    }

    /// Page `pgno` as the transaction wrote it, if it did.
    ///
    /// # Errors
    /// A sentence if a spilled page cannot be read back.
    pub(crate) fn page(&self, pgno: Pgno) -> Result<Option<Cow<'_, [u8]>>, String> {
        match self.pages.get(&pgno) {
            None => Ok(None),
            Some(slot) => self.slot(slot).map(Some),
        }
    }

    fn slot<'a>(&'a self, slot: &'a Slot) -> Result<Cow<'a, [u8]>, String> {
        match (slot, &self.spill) {
            (Slot::Held(page), _) => Ok(Cow::Borrowed(page)),
            (Slot::Spilled(at), Some(spill)) => {
                let len = self.page_size.map_or(0, PageSize::as_usize);
                spill.read(*at, len).map(Cow::Owned)
            }
            (Slot::Spilled(_), None) => Err("a spilled page has no spill file".into()),
        }
    }

    /// The changed pages, ascending, within the database size; spilled ones read back one
    /// at a time.
    pub(crate) fn pages(&self) -> impl Iterator<Item = Result<(Pgno, Cow<'_, [u8]>), String>> {
        self.pages
            .iter()
            .map(|(p, slot)| self.slot(slot).map(|d| (*p, d)))
    }

    /// The changed pages held in memory, ascending.
    pub(crate) fn held_pages(&self) -> impl Iterator<Item = (Pgno, &[u8])> {
        self.pages.iter().filter_map(|(p, slot)| match slot {
            Slot::Held(d) => Some((*p, &d[..])),
            Slot::Spilled(_) => None,
        })
    }

    /// Whether these pages are a COMMIT's: SQLite increments the change counter in page 1
    /// (offset 24) in every rollback-journal commit, from the value the VFS showed it (the
    /// base's TXID, low 32 bits). Pages without that change are the originals SQLite writes
    /// back when it rolls back a transaction that had spilled pages to the file: the base's
    /// own content, nothing to store.
    pub(crate) fn is_commit(&self, base: &Snapshot) -> bool {
        let shown = base.counter().to_be_bytes();
        self.page1()
            .and_then(|p| p.get(24..28))
            .is_some_and(|counter| counter != shown)
    }

    /// Writes `data` at byte `offset`: one whole page.
    ///
    /// # Errors
    /// A sentence if the write is not one whole page of the database's page size, or if
    /// the spill file cannot take it.
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
        match (self.pages.get(&pgno), &self.spill) {
            (Some(Slot::Spilled(at)), Some(spill)) => spill.write_at(*at, data)?,
            (Some(Slot::Held(_)), _) => {
                self.pages.insert(pgno, Slot::Held(data.into()));
            }
            _ => {
                self.pages.insert(pgno, Slot::Held(data.into()));
                self.held += ps;
                if self.held > self.bound {
                    self.spill_held()?;
                }
            }
        }
        self.size = Some(self.size_pages(base).max(pgno.get()));
        Ok(())
    }

    /// Moves every held page but page 1 to the spill file.
    fn spill_held(&mut self) -> Result<(), String> {
        let spill = match &mut self.spill {
            Some(spill) => spill,
            empty => empty.insert(SpillFile::new()?),
        };
        let mut kept = 0;
        for (pgno, slot) in &mut self.pages {
            if let Slot::Held(page) = slot {
                if *pgno == Pgno::ONE {
                    kept += page.len() as u64;
                    continue;
                }
                *slot = Slot::Spilled(spill.append(page)?);
            }
        }
        self.held = kept;
        Ok(())
    }

    /// Truncates the database to `bytes` (a whole number of pages, rounded up).
    pub(crate) fn truncate(&mut self, base: &Snapshot, bytes: u64) {
        let ps = u64::from(self.page_size(base).get());
        let pages = u32::try_from(bytes.div_ceil(ps)).unwrap_or(u32::MAX);
        let mut dropped = 0;
        self.pages.retain(|p, slot| {
            let keep = p.get() <= pages;
            if !keep && matches!(slot, Slot::Held(_)) {
                dropped += ps;
            }
            keep
        });
        self.held -= dropped.min(self.held);
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
        assert_eq!(d.page1().map(|p| p[0]), Some(1));
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

    #[test]
    fn pages_past_the_bound_spill_and_read_back() -> Result<(), String> {
        let base =
            Snapshot::from_plan(PageSize::DEFAULT, Vec::new()).map_err(|e| e.1.to_string())?;
        let mut d = DirtyPages::with_bound(4 * 1024);
        let page = |n: u8| vec![n; 1024];
        for n in 1..=20u8 {
            d.write(&base, (u64::from(n) - 1) * 1024, &page(n))?;
        }
        assert!(d.spilled(), "20 KiB of pages over a 4 KiB bound");
        assert!(d.held <= 4 * 1024, "held {}", d.held);
        assert_eq!(d.page1().map(|p| p[0]), Some(1), "page 1 stays in memory");
        // Rewritten, spilled or held: the transaction reads its last write.
        d.write(&base, 2 * 1024, &page(99))?;
        d.write(&base, 19 * 1024, &page(98))?;
        let all: Vec<(u32, u8)> = d
            .pages()
            .map(|r| r.map(|(p, data)| (p.get(), data[0])))
            .collect::<Result<_, _>>()?;
        assert_eq!(all.len(), 20);
        assert_eq!(all[2], (3, 99));
        assert_eq!(all[19], (20, 98));
        assert_eq!(all[10], (11, 11));
        let three = Pgno::new(3).ok_or("pgno")?;
        assert_eq!(d.page(three)?.map(|p| p[1023]), Some(99));
        d.truncate(&base, 10 * 1024);
        assert_eq!(d.pages().count(), 10);
        assert!(d.held_pages().count() <= 4);
        d.clear();
        assert!(d.is_empty() && !d.spilled());
        assert_eq!(d.bound, 4 * 1024, "the bound outlives the transaction");
        Ok(())
    }
}
