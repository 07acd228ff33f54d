//! An immutable view of the database at one TXID: for each page number, where its newest
//! copy lies. A read transaction pins one `Arc<Snapshot>`; a newer snapshot replaces the
//! replica's current one by swapping the `Arc`, so nothing a reader holds changes under it.

use super::LtxFileId;
use super::page_map::PageMap;
use crate::ltx::{self, PageIndex, PageSize, Pgno, Txid};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One file to apply: its name, its header's commit (pages) and time (ms), its index.
pub(crate) type PlanFile = (LtxFileId, u32, i64, FileIndex);

/// Where a plan file's pages lie: its index as read, or, for an index too large to hold
/// whole, a page map of the file's pages alone, built as the index arrived.
#[derive(Debug)]
pub(crate) enum FileIndex {
    Encoded(PageIndex),
    Mapped(PageMap),
}

/// Where one page's frame lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRef {
    pub file: LtxFileId,
    pub offset: u64,
    pub size: u64,
}

/// The database as of `txid`.
///
/// Invariant: the page map holds no page past `commit`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub page_size: PageSize,
    /// Database size in pages.
    pub commit: u32,
    pub txid: Txid,
    /// When the newest transaction was written (ms since the Unix epoch, LTX header time).
    pub timestamp_ms: i64,
    /// The newest file applied (the one that reached `txid`).
    pub last_file: LtxFileId,
    pages: PageMap,
    /// Transactions committed in this process and not yet stored (write mode with
    /// `sync=<duration>`): they stand over the files, up to the next TXID's upload.
    pub local: Option<Arc<LocalPages>>,
    /// The newest local commit this state holds, stored since or not (0: none): an upload
    /// turns local pages into a TXID and leaves the database as it was.
    pub last_local: u64,
}

/// The pages of the transactions a buffered writer committed over a snapshot's files:
/// each with the number of the local commit that last wrote it.
#[derive(Debug, Clone)]
pub struct LocalPages {
    /// The local commit that made this state: increasing in the process, never reused.
    pub seq: u64,
    /// How many local commits are in these pages.
    pub commits: u32,
    pub page_size: PageSize,
    /// Database size in pages.
    pub commit: u32,
    pub pages: BTreeMap<Pgno, (u64, Arc<[u8]>)>,
}

/// A plan file whose index the page map cannot take.
pub(crate) type MapError = (LtxFileId, ltx::Error);

impl Snapshot {
    /// Merges the indexes of a restore plan, oldest first: a later file's copy of a page
    /// wins (a plan's files have increasing max TXIDs), and pages past the last file's commit
    /// are dropped (the database shrank). Each index is dropped once applied.
    ///
    /// # Errors
    /// A file whose frames lie where the map cannot address them (past 1 TiB).
    pub(crate) fn from_plan(
        page_size: PageSize,
        files: Vec<PlanFile>,
    ) -> Result<Snapshot, MapError> {
        let empty = Snapshot {
            page_size,
            commit: 0,
            txid: Txid::ZERO,
            timestamp_ms: 0,
            last_file: LtxFileId {
                level: 0,
                min_txid: Txid::ZERO,
                max_txid: Txid::ZERO,
            },
            pages: PageMap::default(),
            local: None,
            last_local: 0,
        };
        empty.advance(files)
    }

    /// The snapshot after applying `files` (a chain from this snapshot's TXID, in order, as
    /// [`super::extend_chain`] gives it) on top of this one: their pages win, later files
    /// over earlier ones; pages past the last file's commit are dropped (VACUUM shrank the
    /// database). This snapshot stays as it is for its readers; the two share every part of
    /// the page map the files do not touch, so the cost follows the pages changed.
    ///
    /// # Errors
    /// As [`Snapshot::from_plan`].
    pub(crate) fn advance(&self, files: Vec<PlanFile>) -> Result<Snapshot, MapError> {
        let mut next = self.stored();
        // Files from the store: a state of their own (an upload sets `last_local` again).
        next.last_local = 0;
        for (id, file_commit, file_time, index) in files {
            match index {
                FileIndex::Encoded(index) => next.pages.apply(id, &index).map_err(|e| (id, e))?,
                FileIndex::Mapped(map) => next.pages.overlay(map),
            }
            (next.commit, next.txid, next.timestamp_ms) = (file_commit, id.max_txid, file_time);
            next.last_file = id;
        }
        next.pages.set_pages(next.commit);
        Ok(next)
    }

    /// Where page `pgno` lies; `None` for a page no file holds (only the lock page, in a
    /// well-formed replica).
    pub fn page(&self, pgno: Pgno) -> Option<PageRef> {
        self.pages.get(pgno)
    }

    /// The pages whose place differs from `older`'s (what a local copy at `older` must
    /// rewrite), found without walking what the two share.
    pub(crate) fn changed_since(&self, older: &Snapshot) -> Vec<Pgno> {
        self.pages.differing(&older.pages)
    }

    /// How many LTX files the pages come from (walks the page map).
    pub fn file_count(&self) -> usize {
        self.pages.file_count()
    }

    /// Bytes the page map takes (as if shared with no other snapshot).
    pub fn page_map_bytes(&self) -> usize {
        self.pages.heap_bytes()
    }

    /// Seconds since the newest transaction of this snapshot was written (its LTX header
    /// time), against the system clock; never negative.
    pub fn age_seconds(&self) -> f64 {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        (now_ms - self.timestamp_ms).max(0) as f64 / 1000.0
    }

    /// The database size in pages, local commits included.
    pub fn size_pages(&self) -> u32 {
        self.local.as_ref().map_or(self.commit, |l| l.commit)
    }

    /// The database size in bytes, local commits included.
    pub fn size_bytes(&self) -> u64 {
        u64::from(self.size_pages()) * u64::from(self.page_size.get())
    }

    /// Page `pgno` as a local commit left it, if one did.
    pub fn local_page(&self, pgno: Pgno) -> Option<Arc<[u8]>> {
        self.local
            .as_ref()?
            .pages
            .get(&pgno)
            .map(|(_, p)| p.clone())
    }

    /// What tells this state from every other one the process has seen: the TXID, and the
    /// local commit over it, if any.
    pub fn version(&self) -> (Txid, u64) {
        (self.txid, self.local.as_ref().map_or(0, |l| l.seq))
    }

    /// Whether the two hold the same database: the same version, or the same newest local
    /// commit (one of them since uploaded).
    pub fn same_state(&self, other: &Snapshot) -> bool {
        self.version() == other.version()
            || (self.last_local != 0 && self.last_local == other.last_local)
    }

    /// This state (planned again at its TXID) with the local commits `old` had over it.
    pub fn carrying_local(self, old: &Snapshot) -> Snapshot {
        let mut next = self.with_local(old.local.clone());
        next.last_local = old.last_local;
        next
    }

    /// The change counter SQLite is shown (page 1, offset 24): the TXID's low 32 bits, or
    /// for a local commit a number with the top bit set that no TXID reaches (a TXID a
    /// second takes 68 years to), so a connection's page cache never survives a change.
    pub fn counter(&self) -> u32 {
        match &self.local {
            Some(l) => 0x8000_0000 | (l.seq as u32 & 0x7fff_ffff),
            None => self.txid.get() as u32,
        }
    }

    /// This state with `local` commits over it (a buffered writer's).
    pub fn with_local(self, local: Option<Arc<LocalPages>>) -> Snapshot {
        let page_size = match &local {
            // A new database takes the page size of its first commit.
            Some(l) if self.commit == 0 => l.page_size,
            _ => self.page_size,
        };
        Snapshot {
            last_local: local.as_ref().map_or(self.last_local, |l| l.seq),
            local,
            page_size,
            ..self
        }
    }

    /// The stored state under the local commits.
    pub fn stored(&self) -> Snapshot {
        Snapshot {
            local: None,
            ..self.clone()
        }
    }
}
