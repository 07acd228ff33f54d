//! Reading the files of a plan: each file's header and page index (from the disk cache when
//! it has them, else one or two ranged GETs of the file's ends, a large index then in
//! parallel parts), and the pages that come along with the header.

use super::snapshot::PlanFile;
use super::{LtxFileId, Snapshot};
use crate::cache::{DiskCache, PageKey};
use crate::error::{Error, Result};
use crate::ltx::{
    self, HEADER_SIZE, Header, INDEX_FOOTER_SIZE, PageIndex, PageSize, Pgno, TailIndex,
};
use crate::store::Store;
use futures::future::try_join_all;
use std::sync::Arc;

/// How much of a file's end to fetch first for its page index: at least Litestream's 32 KiB
/// estimate, and a 64th of the file, so that one GET holds the whole index of a large
/// snapshot too (an entry takes about 7 bytes; a page compresses to a kilobyte or more).
const INDEX_TAIL_MIN: u64 = 32 << 10;
const INDEX_TAIL_MAX: u64 = 1 << 20;

/// The rest of an index larger than the tail comes in parts of this size, at most this many
/// GETs at once.
const INDEX_PART: u64 = 1 << 20;
const INDEX_PARTS_MAX: u64 = 16;

fn index_tail_bytes(file_size: u64) -> u64 {
    (file_size / 64).clamp(INDEX_TAIL_MIN, INDEX_TAIL_MAX)
}

/// How much of a file's start to fetch with its header: the first frames (page 1, the
/// schema, the roots of tables created with it) come in the same round trip, so a cold open
/// need not ask for them again.
const HEAD_BYTES: u64 = 64 << 10;

/// The headers and page indexes of files to apply, read all at once.
pub(crate) struct PlanFiles {
    /// The page size they share; `None` if there were no files.
    pub(crate) page_size: Option<PageSize>,
    pub(crate) files: Vec<PlanFile>,
    /// The first bytes of each file, fetched with its header, and the frames wholly in them.
    pub(crate) heads: Vec<Head>,
}

/// The pages of an LTX file that came with its header (decoded once, when read).
pub(crate) struct Head {
    file: LtxFileId,
    pages: Vec<(Pgno, Arc<[u8]>)>,
}

/// The pages of `heads` that are `snapshot`'s newest copies (a file holds a page once).
pub(crate) fn head_pages(snapshot: &Snapshot, heads: &[Head]) -> Vec<(PageKey, Arc<[u8]>)> {
    heads
        .iter()
        .flat_map(|head| {
            head.pages
                .iter()
                .filter(|(pgno, _)| snapshot.page(*pgno).is_some_and(|r| r.file == head.file))
                .map(|(pgno, page)| {
                    let key = PageKey {
                        file: head.file,
                        pgno: *pgno,
                    };
                    (key, page.clone())
                })
        })
        .collect()
}

/// Reads the header and index of each `(file, size)`, in parallel, and checks that they all
/// have one page size (`expected`, when the replica already has one).
///
/// # Errors
/// As [`read_header_and_index`]; [`Error::Corrupt`] for a file of another page size.
pub(crate) async fn read_plan_files(
    store: &Store,
    disk: Option<&DiskCache>,
    files: &[(LtxFileId, u64)],
    expected: Option<PageSize>,
) -> Result<PlanFiles> {
    let read = try_join_all(
        files
            .iter()
            .map(|(id, size)| read_header_and_index(store, disk, *id, *size)),
    )
    .await?;
    let page_size = expected.or_else(|| read.first().map(|(h, _, _)| h.page_size));
    let mut out = Vec::with_capacity(read.len());
    let mut heads = Vec::with_capacity(read.len());
    for ((header, index, head), (id, _)) in read.into_iter().zip(files) {
        if Some(header.page_size) != page_size {
            return Err(Error::Corrupt {
                url: store.url().to_owned(),
                file: *id,
                source: ltx::Error::BadHeader(format!(
                    "page size {} differs from the replica's {}",
                    header.page_size,
                    page_size.map_or(0, |p| p.get())
                )),
            });
        }
        heads.push(Head {
            file: *id,
            pages: head,
        });
        out.push((*id, header.commit, header.timestamp_ms, index));
    }
    Ok(PlanFiles {
        page_size,
        files: out,
        heads,
    })
}

/// A file's header, page index and the pages wholly in its first bytes, decoded: from the
/// disk cache if it has them (no pages then: they are on disk too, or fetched when read);
/// else one ranged GET of its end (see [`index_tail_bytes`]) and one of its first
/// [`HEAD_BYTES`] (one GET of the whole file if that covers both), plus the rest of a larger
/// index when needed, kept on disk for the next open. A first-bytes frame that does not
/// decode is left for a reader to fetch (and report).
async fn read_header_and_index(
    store: &Store,
    disk: Option<&DiskCache>,
    id: LtxFileId,
    size: u64,
) -> Result<(Header, PageIndex, Vec<(Pgno, Arc<[u8]>)>)> {
    if let Some((header, index)) = disk
        .and_then(|d| d.get_index(&id))
        .and_then(|kept| from_disk(&kept, id, size))
    {
        return Ok((header, index, Vec::new()));
    }
    let corrupt = |source| Error::Corrupt {
        url: store.url().to_owned(),
        file: id,
        source,
    };
    let tail_start = size.saturating_sub(index_tail_bytes(size));
    let mut whole_file_pages = None;
    let (tail, head) = if tail_start <= HEAD_BYTES {
        let all = store.get_range(&id, 0..size).await?;
        // The whole file is here: check all of it, file checksum included, keeping its pages.
        // (A block-encoded frame has no checksum of its own, so a flipped literal in a frame
        // read alone would go unnoticed; docs/ltx-format.md.)
        let mut pages = Vec::new();
        ltx::decode_file(&all, |pgno, page| {
            pages.push((pgno, Arc::from(page)));
            Ok(())
        })
        .map_err(corrupt)?;
        whole_file_pages = Some(pages);
        (all.clone(), all)
    } else {
        futures::future::try_join(
            store.get_range(&id, tail_start..size),
            store.get_range(&id, 0..HEAD_BYTES.max(HEADER_SIZE as u64)),
        )
        .await?
    };
    let header = Header::decode(&head).map_err(corrupt)?;
    if (header.min_txid, header.max_txid) != (id.min_txid, id.max_txid) {
        return Err(corrupt(ltx::Error::BadHeader(format!(
            "header says TXIDs {}-{}, the file name says otherwise",
            header.min_txid, header.max_txid
        ))));
    }
    let index = match PageIndex::from_tail(&tail, size).map_err(corrupt)? {
        TailIndex::Complete(index) => index,
        TailIndex::NeedFrom(span) => {
            // Its size is known now: a large index comes in parallel parts of about 1 MiB.
            let parts = (size - span.start)
                .div_ceil(INDEX_PART)
                .min(INDEX_PARTS_MAX);
            let rest = store
                .get_range_parallel(&id, span.start..size, parts)
                .await?;
            match PageIndex::from_tail_owned(rest, size).map_err(corrupt)? {
                TailIndex::Complete(index) => index,
                TailIndex::NeedFrom(_) => {
                    return Err(corrupt(ltx::Error::BadIndex("index span moved".into())));
                }
            }
        }
    };
    index.check_header(&header).map_err(corrupt)?;
    if let Some(disk) = disk {
        disk.put_index(&id, &to_disk(size, &head, &index));
    }
    let pages = whole_file_pages.unwrap_or_else(|| {
        index
            .entries()
            // Frames lie in page order: the first past the head ends the walk.
            .map_while(|e| {
                let frame = head.get(e.offset as usize..(e.offset + e.size) as usize)?;
                Some((e, frame))
            })
            .filter_map(|(e, frame)| {
                let page = ltx::decode_page(frame, e.pgno, header.page_size).ok()?;
                Some((e.pgno, page.into()))
            })
            .collect()
    });
    Ok((header, index, pages))
}

/// What the disk cache keeps of a file: its size (a replica deleted and made again reuses
/// names, rarely sizes), its header, its encoded index.
fn to_disk(size: u64, head: &[u8], index: &PageIndex) -> Vec<u8> {
    let header = head.get(..HEADER_SIZE).unwrap_or_default();
    [&size.to_be_bytes()[..], header, index.encoded()].concat()
}

/// The header and index [`to_disk`] kept, if they are of this file, of this size, and
/// decode and check as when first read; `None` sends the caller to the store.
fn from_disk(kept: &[u8], id: LtxFileId, size: u64) -> Option<(Header, PageIndex)> {
    let (kept_size, rest) = kept.split_at_checked(8)?;
    let (head, encoded) = rest.split_at_checked(HEADER_SIZE)?;
    if u64::from_be_bytes(kept_size.try_into().ok()?) != size {
        return None;
    }
    let header = Header::decode(head).ok()?;
    let start = size.checked_sub(INDEX_FOOTER_SIZE + encoded.len() as u64)?;
    let index = PageIndex::decode(encoded, start).ok()?;
    let same = (header.min_txid, header.max_txid) == (id.min_txid, id.max_txid);
    (same && index.check_header(&header).is_ok()).then_some((header, index))
}
