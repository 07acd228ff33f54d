//! The page map of a snapshot: for each page number, the LTX file and byte range of its
//! newest frame (DESIGN.md decision 11: costs follow change, not size).
//!
//! Page numbers are dense (1..=commit), so the map is an array cut into chunks of
//! [`CHUNK`] slots, each chunk behind an `Arc`. A new snapshot clones the chunk pointers
//! (one pointer per [`CHUNK`] pages) and copies only the chunks its new pages fall in; every
//! other chunk is shared with the snapshot it came from, which its readers keep pinned
//! unchanged. A slot is 16 bytes: the file, shared by all its pages, and the frame's offset
//! and size packed in one word.
//!
//! Measured against the `HashMap<Pgno, PageRef>` it replaced (docs/performance.md): about 16
//! bytes a page instead of about 100, and following a transaction copies a few kilobytes
//! instead of the whole map.

use super::{LtxFileId, PageRef};
use crate::ltx::{self, IndexEntry, PageIndex, Pgno};
use std::sync::Arc;

/// Pages per chunk: a chunk is 8 KiB, the copy a changed page costs.
const CHUNK: usize = 512;
/// Bits of a packed slot that hold the frame size (a frame is at most a 64 KiB page
/// compressed, plus headers); the rest hold its offset, so files up to 1 TiB.
const SIZE_BITS: u32 = 24;
const MAX_SIZE: u64 = (1 << SIZE_BITS) - 1;
const MAX_OFFSET: u64 = (1 << (64 - SIZE_BITS)) - 1;

/// One page's place; `file == None` for a page no file holds (the lock page).
#[derive(Debug, Clone)]
struct Slot {
    file: Option<Arc<LtxFileId>>,
    /// `offset << SIZE_BITS | size`.
    at: u64,
}

const EMPTY: Slot = Slot { file: None, at: 0 };

type Chunk = [Slot; CHUNK];

/// Where each page of one database state lies.
///
/// Invariant: no slot past `pages` holds a file.
#[derive(Debug, Clone, Default)]
pub(crate) struct PageMap {
    /// Chunk `i` holds pages `i * CHUNK + 1 ..= (i + 1) * CHUNK`.
    chunks: Vec<Arc<Chunk>>,
    pages: u32,
}

fn slot_of(pgno: Pgno) -> (usize, usize) {
    let i = pgno.get() as usize - 1;
    (i / CHUNK, i % CHUNK)
}

impl PageMap {
    /// Where page `pgno` lies, if a file holds it.
    pub(crate) fn get(&self, pgno: Pgno) -> Option<PageRef> {
        if pgno.get() > self.pages {
            return None;
        }
        let (c, i) = slot_of(pgno);
        let slot = self.chunks.get(c)?.get(i)?;
        let file = slot.file.as_deref()?;
        Some(PageRef {
            file: *file,
            offset: slot.at >> SIZE_BITS,
            size: slot.at & MAX_SIZE,
        })
    }

    /// Applies the pages of `file`, whose index is `index`, over the map: its frames
    /// replace older copies. The map then covers at least the file's highest page.
    ///
    /// # Errors
    /// As [`PageMap::place`]; the map is then partly applied and must be dropped.
    pub(crate) fn apply(&mut self, file: LtxFileId, index: &PageIndex) -> Result<(), ltx::Error> {
        let file = Arc::new(file);
        index.entries().try_for_each(|e| self.place(&file, &e))
    }

    /// Places page `e.pgno` in a frame of `file` (shared by all its pages).
    ///
    /// # Errors
    /// [`ltx::Error::BadIndex`] for a frame past 1 TiB or larger than 16 MiB, which this map
    /// cannot place.
    pub(crate) fn place(
        &mut self,
        file: &Arc<LtxFileId>,
        e: &IndexEntry,
    ) -> Result<(), ltx::Error> {
        if e.offset > MAX_OFFSET || e.size > MAX_SIZE {
            return Err(ltx::Error::BadIndex(format!(
                "page {}: a frame at {} of {} bytes is past what ltxvfs can address",
                e.pgno, e.offset, e.size
            )));
        }
        let (c, i) = slot_of(e.pgno);
        if self.chunks.len() <= c {
            self.chunks.resize_with(c + 1, || Arc::new([EMPTY; CHUNK]));
        }
        // Copies the chunk if another snapshot shares it (once: the copy is then ours).
        if let Some(slot) = self
            .chunks
            .get_mut(c)
            .and_then(|ch| Arc::make_mut(ch).get_mut(i))
        {
            *slot = Slot {
                file: Some(file.clone()),
                at: e.offset << SIZE_BITS | e.size,
            };
        }
        self.pages = self.pages.max(e.pgno.get());
        Ok(())
    }

    /// Applies `other` (the pages of newer files) over the map: its placed pages win.
    pub(crate) fn overlay(&mut self, other: PageMap) {
        if self.chunks.is_empty() {
            *self = other;
            return;
        }
        for (c, theirs) in other.chunks.iter().enumerate() {
            if self.chunks.len() <= c {
                self.chunks.resize_with(c + 1, || Arc::new([EMPTY; CHUNK]));
            }
            let Some(ours) = self.chunks.get_mut(c) else {
                continue;
            };
            let ours = Arc::make_mut(ours);
            for (mine, new) in ours.iter_mut().zip(theirs.iter()) {
                if new.file.is_some() {
                    *mine = new.clone();
                }
            }
        }
        self.pages = self.pages.max(other.pages);
    }

    /// Makes the map cover exactly pages 1..=`pages`: a smaller count drops the pages past
    /// it (VACUUM shrank the database), a larger one leaves the new pages unplaced.
    pub(crate) fn set_pages(&mut self, pages: u32) {
        let chunks = (pages as usize).div_ceil(CHUNK);
        self.chunks.truncate(chunks);
        let used = pages as usize % CHUNK;
        if pages < self.pages
            && used != 0
            && self.chunks.len() == chunks
            && let Some(last) = self.chunks.last_mut()
            && last
                .get(used..)
                .is_some_and(|s| s.iter().any(|s| s.file.is_some()))
        {
            for slot in Arc::make_mut(last).get_mut(used..).unwrap_or_default() {
                *slot = EMPTY;
            }
        }
        self.pages = pages;
    }

    /// The pages whose place differs between `self` and `other` (up to the larger size),
    /// without looking inside the chunks the two share.
    pub(crate) fn differing(&self, other: &PageMap) -> Vec<Pgno> {
        let mut out = Vec::new();
        let pages = self.pages.max(other.pages);
        for c in 0..(pages as usize).div_ceil(CHUNK) {
            if let (Some(a), Some(b)) = (self.chunks.get(c), other.chunks.get(c))
                && Arc::ptr_eq(a, b)
            {
                continue;
            }
            let first = (c * CHUNK) as u32 + 1;
            let last = (first + CHUNK as u32 - 1).min(pages);
            out.extend(
                (first..=last)
                    .filter_map(Pgno::new)
                    .filter(|&p| self.get(p) != other.get(p)),
            );
        }
        out
    }

    /// How many files hold at least one page (a walk of the whole map: for statistics).
    pub(crate) fn file_count(&self) -> usize {
        let mut seen: std::collections::HashSet<*const LtxFileId> = Default::default();
        let mut last: *const LtxFileId = std::ptr::null();
        for slot in self.chunks.iter().flat_map(|c| c.iter()) {
            if let Some(f) = &slot.file {
                let p = Arc::as_ptr(f);
                if p != last {
                    seen.insert(p);
                    last = p;
                }
            }
        }
        seen.len()
    }

    /// Bytes of memory the map holds that no older snapshot shares with it, counting every
    /// chunk as if unshared (an upper bound, for statistics and tests).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.chunks.len() * (std::mem::size_of::<Chunk>() + 2 * std::mem::size_of::<usize>())
            + self.chunks.capacity() * std::mem::size_of::<Arc<Chunk>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::Txid;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn file(n: u64) -> LtxFileId {
        LtxFileId {
            level: 0,
            min_txid: Txid(n),
            max_txid: Txid(n),
        }
    }

    fn index(pgnos: &[u32], base: u64) -> PageIndex {
        let entries: Vec<IndexEntry> = pgnos
            .iter()
            .enumerate()
            .map(|(i, &p)| IndexEntry {
                pgno: Pgno::new(p).unwrap(),
                offset: base + 100 * i as u64,
                size: 50 + u64::from(p % 7),
            })
            .collect();
        PageIndex::from_entries(&entries)
    }

    #[test]
    fn a_slot_takes_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 16);
    }

    #[test]
    fn an_advance_copies_only_the_chunks_it_changes() -> Result<(), ltx::Error> {
        let mut base = PageMap::default();
        let all: Vec<u32> = (1..=100_000).collect();
        base.apply(file(1), &index(&all, 1000))?;
        let mut next = base.clone();
        next.apply(file(2), &index(&[5, 70_000], 9))?;
        let shared = (0..base.chunks.len())
            .filter(|&c| Arc::ptr_eq(&base.chunks[c], &next.chunks[c]))
            .count();
        assert_eq!(shared, base.chunks.len() - 2);
        let p = |n| Pgno::new(n).unwrap();
        assert_eq!(next.differing(&base), vec![p(5), p(70_000)]);
        assert_eq!(base.get(p(5)).unwrap().file, file(1));
        assert_eq!(next.get(p(5)).unwrap().file, file(2));
        assert_eq!(next.file_count(), 2);
        Ok(())
    }

    #[test]
    fn frames_past_what_a_slot_holds_are_refused() {
        let big = PageIndex::from_entries(&[IndexEntry {
            pgno: Pgno::ONE,
            offset: MAX_OFFSET + 1,
            size: 10,
        }]);
        assert!(PageMap::default().apply(file(1), &big).is_err());
    }

    /// One step of a random history: a file's pages applied, then the database size.
    #[derive(Debug, Clone)]
    struct Step {
        pgnos: Vec<u32>,
        commit: u32,
        /// Keep this state pinned (an old snapshot a reader holds).
        pin: bool,
        /// Build the file's own map and overlay it (a large index applied as it arrives).
        mapped: bool,
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            (
                prop::collection::btree_set(1u32..3000, 0..200),
                1u32..3000,
                any::<bool>(),
                any::<bool>(),
            )
                .prop_map(|(set, commit, pin, mapped)| Step {
                    pgnos: set.into_iter().filter(|&p| p <= commit).collect(),
                    commit,
                    pin,
                    mapped,
                }),
            1..30,
        )
    }

    proptest! {
        /// Against a plain map: every state of a random history of advances and shrinks,
        /// including the pinned old ones, answers every page as the plain map does.
        #[test]
        fn matches_a_plain_map_under_advances_shrinks_and_pins(history in steps()) {
            let mut map = PageMap::default();
            let mut plain: BTreeMap<u32, PageRef> = BTreeMap::new();
            // States a reader keeps pinned while later ones are built from them.
            let mut pinned: Vec<(PageMap, BTreeMap<u32, PageRef>)> = Vec::new();
            let same = |m: &PageMap, plain: &BTreeMap<u32, PageRef>| {
                (1..3100u32).all(|p| m.get(Pgno::new(p).unwrap()) == plain.get(&p).copied())
            };
            for (n, step) in history.iter().enumerate() {
                if step.pin {
                    pinned.push((map.clone(), plain.clone()));
                }
                let id = file(n as u64 + 1);
                let idx = index(&step.pgnos, 200);
                let mut next = map.clone();
                if step.mapped {
                    let mut own = PageMap::default();
                    own.apply(id, &idx).unwrap();
                    next.overlay(own);
                } else {
                    next.apply(id, &idx).unwrap();
                }
                next.set_pages(step.commit);
                for e in idx.entries() {
                    plain.insert(e.pgno.get(), PageRef { file: id, offset: e.offset, size: e.size });
                }
                plain.retain(|&p, _| p <= step.commit);
                let changed = next.differing(&map);
                for p in 1..3100u32 {
                    let p = Pgno::new(p).unwrap();
                    prop_assert_eq!(changed.contains(&p), next.get(p) != map.get(p), "page {}", p);
                }
                map = next;
                prop_assert!(same(&map, &plain));
            }
            for (old, old_plain) in &pinned {
                prop_assert!(same(old, old_plain), "a pinned state changed");
            }
        }
    }
}
