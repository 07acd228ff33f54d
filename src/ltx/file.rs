//! Sequential decoding of a whole LTX file with full verification: header, every frame,
//! the index against the frames actually found, the trailer and the file checksum.

use super::frame::{Encoding, FrameInfo, decode_frame_into};
use super::header::{HEADER_SIZE, TRAILER_SIZE, Trailer};
use super::index::{INDEX_FOOTER_SIZE, IndexEntry, PageIndex};
use super::{CHECKSUM_FLAG, Error, FileHasher, Header, Pgno, page_checksum};

/// What a verified file holds besides its pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    pub header: Header,
    pub index: PageIndex,
    pub trailer: Trailer,
    /// The encoding of the file's frames; `None` if it has no pages.
    pub encoding: Option<Encoding>,
}

/// Decodes and verifies the whole file in `bytes`, handing each page to `visit` in file
/// order (pgno ascending) from one reused page buffer.
///
/// Checks, beyond what each part checks itself: pages strictly ascending, within the commit,
/// never the lock page; a snapshot holds every page 1..=commit; the index lists exactly the
/// frames found, at their offsets and sizes; nothing follows the trailer; the file checksum;
/// for a snapshot with checksums, the post-apply database checksum.
///
/// # Errors
/// The first [`Error`] found; `visit`'s own errors are passed through.
pub fn decode_file(
    bytes: &[u8],
    mut visit: impl FnMut(Pgno, &[u8]) -> Result<(), Error>,
) -> Result<FileSummary, Error> {
    let header = Header::decode(bytes)?;
    let page_size = header.page_size;
    let lock_page = page_size.lock_page();
    let mut hasher = FileHasher::default();
    hasher.update(bytes.get(..HEADER_SIZE).unwrap_or_default());

    let mut page = vec![0u8; page_size.as_usize()];
    let mut frames: Vec<IndexEntry> = Vec::new();
    let mut encoding = None;
    let mut db_checksum = CHECKSUM_FLAG;
    let mut pos = HEADER_SIZE;
    loop {
        let rest = bytes.get(pos..).unwrap_or_default();
        let Some(FrameInfo {
            pgno,
            encoding: frame_encoding,
            len,
        }) = decode_frame_into(rest, pos as u64, &mut page, Some(&mut hasher))?
        else {
            pos += super::frame::PAGE_HEADER_SIZE;
            break;
        };
        if let Some(prev) = frames.last().map(|e| e.pgno)
            && pgno <= prev
        {
            return Err(Error::PageOrder {
                offset: pos as u64,
                previous: prev,
                found: pgno,
            });
        }
        if pgno.get() > header.commit {
            return Err(Error::PageBeyondCommit {
                pgno,
                commit: header.commit,
            });
        }
        if pgno == lock_page {
            return Err(Error::LockPage { pgno });
        }
        if header.is_snapshot() {
            let want = next_snapshot_page(frames.last().map(|e| e.pgno), lock_page);
            if pgno != want {
                return Err(Error::SnapshotIncomplete { missing: want });
            }
            db_checksum = CHECKSUM_FLAG | (db_checksum ^ page_checksum(pgno, &page));
        }
        encoding.get_or_insert(frame_encoding);
        visit(pgno, &page)?;
        frames.push(IndexEntry {
            pgno,
            offset: pos as u64,
            size: len as u64,
        });
        pos += len;
    }
    if header.is_snapshot() {
        let want = next_snapshot_page(frames.last().map(|e| e.pgno), lock_page);
        if want.get() <= header.commit {
            return Err(Error::SnapshotIncomplete { missing: want });
        }
    }

    // The index must start right after the terminator and end 24 bytes before the end.
    let span = PageIndex::locate(bytes, bytes.len() as u64)?;
    if span.start != pos as u64 {
        return Err(Error::IndexMismatch(format!(
            "page block ends at {pos}, index size says the index starts at {}",
            span.start
        )));
    }
    let index_end = pos + span.len as usize;
    let index_bytes = bytes.get(pos..index_end).unwrap_or_default();
    let index = PageIndex::decode(index_bytes, span.start)?;
    if !index.entries().eq(frames.iter().copied()) {
        let first_diff = index
            .entries()
            .zip(&frames)
            .map(|(a, b)| (a, *b))
            .find(|(a, b)| a != b)
            .map(|(a, b)| format!("index says {a:?}, page block has {b:?}"))
            .unwrap_or_else(|| {
                format!(
                    "index lists {} pages, page block holds {}",
                    index.len(),
                    frames.len()
                )
            });
        return Err(Error::IndexMismatch(first_diff));
    }
    hasher.update(bytes.get(pos..index_end + 8).unwrap_or_default());

    let trailer_at = bytes.len() - TRAILER_SIZE;
    debug_assert_eq!(index_end as u64 + INDEX_FOOTER_SIZE, bytes.len() as u64);
    let trailer = Trailer::decode(bytes.get(trailer_at..).unwrap_or_default(), &header)?;
    hasher.update(&trailer.post_apply_checksum.to_be_bytes());
    let computed = hasher.finish();
    if computed != trailer.file_checksum {
        return Err(Error::ChecksumMismatch {
            what: "file",
            stored: trailer.file_checksum,
            computed,
        });
    }
    if header.is_snapshot() && !header.no_checksum() && db_checksum != trailer.post_apply_checksum {
        return Err(Error::ChecksumMismatch {
            what: "post-apply database",
            stored: trailer.post_apply_checksum,
            computed: db_checksum,
        });
    }
    Ok(FileSummary {
        header,
        index,
        trailer,
        encoding,
    })
}

/// The page a snapshot must hold after `prev`: the next one, skipping the lock page.
fn next_snapshot_page(prev: Option<Pgno>, lock_page: Pgno) -> Pgno {
    let next = prev.map_or(1, |p| p.get().saturating_add(1));
    let next = if next == lock_page.get() {
        next + 1
    } else {
        next
    };
    Pgno::new(next).unwrap_or(Pgno::ONE)
}
