//! Decoding a page index in pieces, as its bytes arrive: a large index (tens of MB for a
//! multi-gigabyte snapshot) need never be held whole, each piece's entries going wherever
//! they are wanted before the next piece is read. Every check of [`super::PageIndex::decode`]
//! is made, entry by entry.

use super::frame::PAGE_HEADER_SIZE;
use super::header::HEADER_SIZE;
use super::index::IndexEntry;
use super::reader::Reader;
use super::{Error, Pgno};

/// The longest entry: three varints of at most 10 bytes.
const MAX_ENTRY: usize = 30;

/// The state of a walk through a file's index entries.
#[derive(Debug, Clone)]
pub struct IndexDecoder {
    /// Where the page block's terminator starts: no frame may reach past it.
    block_end: u64,
    /// Where the next frame may start (frames are in offset order and do not overlap).
    next_free: u64,
    prev: Option<Pgno>,
    len: usize,
    /// The start of an entry cut by the end of the last piece.
    pending: Vec<u8>,
    /// The terminator was read.
    done: bool,
}

/// One entry, the terminator, or bytes that stop inside an entry.
enum Step {
    Entry(usize, IndexEntry),
    End(usize),
    Short,
}

impl IndexDecoder {
    /// A decoder for the index of a file whose index starts at byte `start`.
    ///
    /// # Errors
    /// [`Error::BadIndex`] if `start` lies inside the header.
    pub fn new(start: u64) -> Result<IndexDecoder, Error> {
        let block_end = start
            .checked_sub(PAGE_HEADER_SIZE as u64)
            .filter(|&end| end >= HEADER_SIZE as u64)
            .ok_or_else(|| {
                Error::BadIndex(format!("index starts inside the header, at {start}"))
            })?;
        Ok(IndexDecoder {
            block_end,
            next_free: HEADER_SIZE as u64,
            prev: None,
            len: 0,
            pending: Vec::new(),
            done: false,
        })
    }

    /// Decodes the entries in the next `piece` of the index, handing each to `visit`.
    ///
    /// # Errors
    /// As [`super::PageIndex::decode`], and `visit`'s own.
    pub fn feed(
        &mut self,
        mut piece: &[u8],
        mut visit: impl FnMut(IndexEntry) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if !self.pending.is_empty() {
            // Complete the cut entry with the first bytes of this piece.
            let had = self.pending.len();
            let take = piece.len().min(MAX_ENTRY);
            let mut joined = std::mem::take(&mut self.pending);
            joined.extend_from_slice(piece.get(..take).unwrap_or_default());
            match self.step(&joined)? {
                Step::Short => {
                    self.pending = joined;
                    return Ok(());
                }
                Step::End(n) => piece = piece.get(n.saturating_sub(had)..).unwrap_or_default(),
                Step::Entry(n, e) => {
                    visit(e)?;
                    piece = piece.get(n.saturating_sub(had)..).unwrap_or_default();
                }
            }
        }
        let mut at = 0;
        while at < piece.len() {
            let rest = piece.get(at..).unwrap_or_default();
            match self.step(rest)? {
                Step::Entry(n, e) => {
                    visit(e)?;
                    at += n;
                }
                Step::End(n) => at += n,
                Step::Short => {
                    self.pending = rest.to_vec();
                    break;
                }
            }
        }
        Ok(())
    }

    /// Ends the walk; how many entries there were.
    ///
    /// # Errors
    /// [`Error::Truncated`] if the terminator never came.
    pub fn finish(self) -> Result<usize, Error> {
        if !self.done {
            return Err(Error::Truncated {
                what: "page index entry",
                needed: 1,
                available: 0,
            });
        }
        Ok(self.len)
    }

    /// The entry at the start of `bytes`, checked.
    fn step(&mut self, bytes: &[u8]) -> Result<Step, Error> {
        if self.done {
            return Err(Error::BadIndex(format!(
                "{} bytes after the index terminator",
                bytes.len()
            )));
        }
        let mut r = Reader::new(bytes);
        let mut next = || match r.uvarint("page index entry") {
            Err(Error::Truncated { .. }) => Ok(None),
            Err(e) => Err(e),
            Ok(v) => Ok(Some(v)),
        };
        let Some(raw) = next()? else {
            return Ok(Step::Short);
        };
        if raw == 0 {
            self.done = true;
            return Ok(Step::End(1));
        }
        let (Some(offset), Some(size)) = (next()?, next()?) else {
            return Ok(Step::Short);
        };
        let used = r.pos();
        let pgno = u32::try_from(raw)
            .ok()
            .and_then(Pgno::new)
            .ok_or_else(|| Error::BadIndex(format!("page number {raw} out of range")))?;
        if self.prev.is_some_and(|p| pgno <= p) {
            return Err(Error::BadIndex(format!("page {pgno} out of order")));
        }
        let end = offset.checked_add(size);
        if offset < self.next_free
            || size <= PAGE_HEADER_SIZE as u64
            || end.is_none_or(|end| end > self.block_end)
        {
            return Err(Error::BadIndex(format!(
                "page {pgno}: frame at {offset} of {size} bytes overlaps another or lies outside the page block [{HEADER_SIZE}, {})",
                self.block_end
            )));
        }
        self.next_free = offset + size;
        self.prev = Some(pgno);
        self.len += 1;
        Ok(Step::Entry(used, IndexEntry { pgno, offset, size }))
    }
}
