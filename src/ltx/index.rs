//! The page index at the end of an LTX file, which gives random access to single pages:
//! `[entries][0x00][u64 BE index_size][trailer 16 B]`, each entry three uvarints (pgno,
//! absolute offset of the frame's page header, frame size), pgno ascending; `index_size`
//! counts the entries and the terminator.

use super::frame::{PAGE_HEADER_SIZE, max_frame_size};
use super::header::{HEADER_SIZE, TRAILER_SIZE};
use super::index_decoder::IndexDecoder;
use super::reader::Reader;
#[cfg(test)]
use super::reader::put_uvarint;
use super::{Error, Header, Pgno};
use bytes::Bytes;

/// Bytes after the index entries: the terminator's 8-byte size field plus the trailer.
pub const INDEX_FOOTER_SIZE: u64 = 8 + TRAILER_SIZE as u64;

/// Where one page's frame lies in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IndexEntry {
    pub pgno: Pgno,
    /// Absolute byte offset of the frame's page header.
    pub offset: u64,
    /// Whole frame length: page header, size prefix if any, compressed data.
    pub size: u64,
}

/// The byte range of a file's index entries (including the 0x00 terminator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexSpan {
    pub start: u64,
    pub len: u64,
}

/// What the last bytes of a file tell about its index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailIndex {
    /// The tail held the whole index.
    Complete(PageIndex),
    /// The index starts before the tail: fetch `[span.start, file_len)` and call
    /// [`PageIndex::from_tail`] again with it.
    NeedFrom(IndexSpan),
}

/// A file's page index, pgno ascending, kept in its encoded form: three varints an entry
/// take about 10 bytes where a decoded [`IndexEntry`] takes 24, and the index of a
/// multi-gigabyte snapshot is held only until its entries are in a page map.
///
/// Invariants after decoding: `bytes` holds exactly `len` well-formed entries and the
/// terminator; pgnos strictly ascending; frames start after the header, do not overlap, lie
/// in ascending offset order and end before the page block's terminator.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PageIndex {
    bytes: Bytes,
    len: usize,
}

impl std::fmt::Debug for PageIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageIndex")
            .field("len", &self.len)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// The entries of a [`PageIndex`], decoded one at a time.
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    r: Reader<'a>,
}

impl Iterator for Entries<'_> {
    type Item = IndexEntry;

    fn next(&mut self) -> Option<IndexEntry> {
        // Checked when the index was decoded: a failure here only ends the walk.
        let pgno = u32::try_from(self.r.uvarint("").ok()?)
            .ok()
            .and_then(Pgno::new)?;
        let offset = self.r.uvarint("").ok()?;
        let size = self.r.uvarint("").ok()?;
        Some(IndexEntry { pgno, offset, size })
    }
}

impl PageIndex {
    /// The entries, pgno ascending.
    pub fn entries(&self) -> Entries<'_> {
        Entries {
            r: Reader::new(&self.bytes),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes of the encoded entries and terminator (what [`PageIndex::decode`] takes).
    pub fn encoded(&self) -> &[u8] {
        &self.bytes
    }

    /// The entry of `pgno`, by a walk of the entries.
    pub fn get(&self, pgno: Pgno) -> Option<IndexEntry> {
        self.entries()
            .take_while(|e| e.pgno <= pgno)
            .find(|e| e.pgno == pgno)
    }

    /// Reads the index span from the 24 bytes that precede the trailer. `tail` holds the
    /// last `tail.len()` bytes of a file of `file_len` bytes.
    ///
    /// # Errors
    /// [`Error::Truncated`] if `tail` is shorter than 24 bytes, [`Error::BadIndex`] if the
    /// stored size does not fit in the file.
    pub fn locate(tail: &[u8], file_len: u64) -> Result<IndexSpan, Error> {
        let footer_at =
            tail.len()
                .checked_sub(INDEX_FOOTER_SIZE as usize)
                .ok_or(Error::Truncated {
                    what: "index size and trailer",
                    needed: INDEX_FOOTER_SIZE as usize,
                    available: tail.len(),
                })?;
        let mut r = Reader::new(tail.get(footer_at..).unwrap_or_default());
        let len = r.u64_be("index size")?;
        // Smallest file: header, terminator page header, index terminator, footer.
        let min_file = (HEADER_SIZE + PAGE_HEADER_SIZE + 1) as u64 + INDEX_FOOTER_SIZE;
        let room =
            file_len.saturating_sub(INDEX_FOOTER_SIZE + (HEADER_SIZE + PAGE_HEADER_SIZE) as u64);
        if file_len < min_file || len == 0 || len > room || (tail.len() as u64) > file_len {
            return Err(Error::BadIndex(format!(
                "index size {len} does not fit in a file of {file_len} bytes"
            )));
        }
        Ok(IndexSpan {
            start: file_len - INDEX_FOOTER_SIZE - len,
            len,
        })
    }

    /// Parses the index from the last bytes of a file, the way a reader with only a ranged
    /// GET of the file's end would.
    ///
    /// # Errors
    /// As [`PageIndex::locate`] and [`PageIndex::decode`].
    pub fn from_tail(tail: &[u8], file_len: u64) -> Result<TailIndex, Error> {
        let span = Self::locate(tail, file_len)?;
        let tail_start = file_len - tail.len() as u64;
        if span.start < tail_start {
            return Ok(TailIndex::NeedFrom(span));
        }
        let from = (span.start - tail_start) as usize;
        let bytes = tail
            .get(from..from + span.len as usize)
            .ok_or_else(|| Error::BadIndex("index span outside the tail".into()))?;
        Self::decode(bytes, span.start).map(TailIndex::Complete)
    }

    /// Decodes the index entries and terminator (`bytes`, exactly `index_size` long) of a
    /// file whose index starts at byte `start`.
    ///
    /// # Errors
    /// [`Error::BadIndex`] if an entry is malformed, out of order, overlaps another or lies
    /// outside the page block; [`Error::VarintOverflow`]/[`Error::Truncated`] for bad varints.
    pub fn decode(bytes: &[u8], start: u64) -> Result<PageIndex, Error> {
        let len = Self::check(bytes, start)?;
        Ok(PageIndex {
            bytes: Bytes::copy_from_slice(bytes),
            len,
        })
    }

    /// Checks encoded entries as [`PageIndex::decode`] does; how many there are.
    fn check(bytes: &[u8], start: u64) -> Result<usize, Error> {
        let mut decoder = IndexDecoder::new(start)?;
        decoder.feed(bytes, |_| Ok(()))?;
        decoder.finish()
    }

    /// Checks the entries against the file's header: pages within the commit, no lock page,
    /// frames no larger than a page of this size can take.
    ///
    /// # Errors
    /// [`Error::PageBeyondCommit`], [`Error::LockPage`] or [`Error::BadFrameSize`].
    pub fn check_header(&self, header: &Header) -> Result<(), Error> {
        self.entries()
            .try_for_each(|e| Self::check_entry(&e, header))
    }

    /// [`PageIndex::check_header`] for one entry.
    ///
    /// # Errors
    /// As [`PageIndex::check_header`].
    pub fn check_entry(e: &IndexEntry, header: &Header) -> Result<(), Error> {
        if e.pgno.get() > header.commit {
            return Err(Error::PageBeyondCommit {
                pgno: e.pgno,
                commit: header.commit,
            });
        }
        if e.pgno == header.page_size.lock_page() {
            return Err(Error::LockPage { pgno: e.pgno });
        }
        if e.size > max_frame_size(header.page_size) {
            return Err(Error::BadFrameSize {
                pgno: e.pgno,
                offset: e.offset,
                size: e.size,
                reason: "larger than any frame of this page size",
            });
        }
        Ok(())
    }

    /// Builds an index from entries in ascending pgno order.
    #[cfg(test)]
    pub(crate) fn from_entries(entries: &[IndexEntry]) -> PageIndex {
        let mut out = Vec::new();
        for e in entries {
            put_uvarint(&mut out, u64::from(e.pgno.get()));
            put_uvarint(&mut out, e.offset);
            put_uvarint(&mut out, e.size);
        }
        put_uvarint(&mut out, 0);
        PageIndex {
            bytes: out.into(),
            len: entries.len(),
        }
    }
}
