//! An immutable view of the database at one TXID: for each page number, where its newest
//! copy lies. A read transaction pins one `Arc<Snapshot>`; a newer snapshot replaces the
//! replica's current one by swapping the `Arc`, so nothing a reader holds changes under it.

use super::LtxFileId;
use crate::ltx::{PageIndex, PageSize, Pgno, Txid};
use std::collections::HashMap;

/// One file to apply: its name, its header's commit (pages) and time (ms), its index.
pub(crate) type PlanFile = (LtxFileId, u32, i64, PageIndex);

/// Where one page's frame lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRef {
    pub file: LtxFileId,
    pub offset: u64,
    pub size: u64,
}

/// The database as of `txid`.
///
/// Invariant: every page number in `pages` is in 1..=commit.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub page_size: PageSize,
    /// Database size in pages.
    pub commit: u32,
    pub txid: Txid,
    /// When the newest transaction was written (ms since the Unix epoch, LTX header time).
    pub timestamp_ms: i64,
    /// The files the pages come from, oldest first (the restore plan).
    pub files: Vec<LtxFileId>,
    pages: HashMap<Pgno, PageRef>,
}

impl Snapshot {
    /// Merges the indexes of a restore plan, oldest first: a later file's copy of a page
    /// wins (a plan's files have increasing max TXIDs), and pages past the last file's commit
    /// are dropped (the database shrank).
    pub(crate) fn from_plan(page_size: PageSize, files: Vec<PlanFile>) -> Snapshot {
        let mut pages = HashMap::new();
        let (mut commit, mut txid, mut timestamp_ms) = (0, Txid::ZERO, 0);
        let mut ids = Vec::with_capacity(files.len());
        for (id, file_commit, file_time, index) in files {
            for e in index.entries() {
                pages.insert(
                    e.pgno,
                    PageRef {
                        file: id,
                        offset: e.offset,
                        size: e.size,
                    },
                );
            }
            (commit, txid, timestamp_ms) = (file_commit, id.max_txid, file_time);
            ids.push(id);
        }
        pages.retain(|pgno, _| pgno.get() <= commit);
        Snapshot {
            page_size,
            commit,
            txid,
            timestamp_ms,
            files: ids,
            pages,
        }
    }

    /// The snapshot after applying `files` (a chain from this snapshot's TXID, in order, as
    /// [`super::extend_chain`] gives it) on top of this one: their pages win, later files
    /// over earlier ones; pages past the last file's commit are dropped (VACUUM shrank the
    /// database). The page map is copied: this snapshot stays as it is for its readers.
    pub(crate) fn advance(&self, files: Vec<PlanFile>) -> Snapshot {
        let mut next = self.clone();
        for (id, file_commit, file_time, index) in files {
            for e in index.entries() {
                next.pages.insert(
                    e.pgno,
                    PageRef {
                        file: id,
                        offset: e.offset,
                        size: e.size,
                    },
                );
            }
            (next.commit, next.txid, next.timestamp_ms) = (file_commit, id.max_txid, file_time);
            next.files.push(id);
        }
        let commit = next.commit;
        next.pages.retain(|pgno, _| pgno.get() <= commit);
        // Keep only the files that still hold a page, so that a long-followed replica does
        // not accumulate the name of every file it ever applied.
        let used: std::collections::HashSet<LtxFileId> =
            next.pages.values().map(|r| r.file).collect();
        let last = next.files.last().copied();
        next.files.retain(|f| used.contains(f) || Some(*f) == last);
        next
    }

    /// Where page `pgno` lies; `None` for a page no file holds (only the lock page, in a
    /// well-formed replica).
    pub fn page(&self, pgno: Pgno) -> Option<PageRef> {
        self.pages.get(&pgno).copied()
    }

    /// Seconds since the newest transaction of this snapshot was written (its LTX header
    /// time), against the system clock; never negative.
    pub fn age_seconds(&self) -> f64 {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        (now_ms - self.timestamp_ms).max(0) as f64 / 1000.0
    }

    /// The database size in bytes.
    pub fn size_bytes(&self) -> u64 {
        u64::from(self.commit) * u64::from(self.page_size.get())
    }
}
