//! Reading the files of a plan: each file's header and page index (from the disk cache when
//! it has them, else one or two ranged GETs of the file's ends, a large index then in
//! parallel parts), and the pages that come along with the header.

use super::page_map::PageMap;
use super::snapshot::{FileIndex, PlanFile};
use super::{LtxFileId, Snapshot};
use crate::cache::{DiskCache, PageKey};
use crate::error::{Error, Result};
use crate::ltx::{
    self, HEADER_SIZE, Header, INDEX_FOOTER_SIZE, IndexDecoder, IndexEntry, IndexSpan, PageIndex,
    PageSize, Pgno, TailIndex,
};
use crate::store::Store;
use futures::StreamExt;
use futures::future::try_join_all;
use std::sync::Arc;

/// How much of a file's end to fetch first for its page index: at least Litestream's 32 KiB
/// estimate, and a 64th of the file, so that one GET holds the whole index of a large
/// snapshot too (an entry takes about 7 bytes; a page compresses to a kilobyte or more).
const INDEX_TAIL_MIN: u64 = 32 << 10;
const INDEX_TAIL_MAX: u64 = 1 << 20;

/// The rest of an index larger than the tail comes in parts of about this size, at most this
/// many GETs at once.
const INDEX_PART: u64 = 256 << 10;
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
/// index when needed (see [`read_large_index`]), kept on disk for the next open. A
/// first-bytes frame that does not decode is left for a reader to fetch (and report).
async fn read_header_and_index(
    store: &Store,
    disk: Option<&DiskCache>,
    id: LtxFileId,
    size: u64,
) -> Result<(Header, FileIndex, Vec<(Pgno, Arc<[u8]>)>)> {
    if let Some((header, index)) = disk
        .and_then(|d| d.get_index(&id))
        .and_then(|kept| from_disk(&kept, id, size))
    {
        return Ok((header, FileIndex::Encoded(index), Vec::new()));
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
    let (index, in_head) = match PageIndex::from_tail(&tail, size).map_err(corrupt)? {
        TailIndex::Complete(index) => {
            index.check_header(&header).map_err(corrupt)?;
            if let Some(disk) = disk {
                disk.put_index(&id, &to_disk(size, &head, index.encoded()));
            }
            let in_head = index
                .entries()
                // Frames lie in page order: the first past the head ends the walk.
                .take_while(|e| e.offset + e.size <= head.len() as u64)
                .collect();
            (FileIndex::Encoded(index), in_head)
        }
        TailIndex::NeedFrom(span) => {
            let large =
                read_large_index(store, disk.is_some(), id, &header, span, head.len()).await?;
            if let (Some(disk), Some(encoded)) = (disk, &large.encoded) {
                disk.put_index(&id, &to_disk(size, &head, encoded));
            }
            (FileIndex::Mapped(large.map), large.in_head)
        }
    };
    let pages = whole_file_pages.unwrap_or_else(|| {
        in_head
            .into_iter()
            .filter_map(|e: IndexEntry| {
                let frame = head.get(e.offset as usize..(e.offset + e.size) as usize)?;
                let page = ltx::decode_page(frame, e.pgno, header.page_size).ok()?;
                Some((e.pgno, page.into()))
            })
            .collect()
    });
    Ok((header, index, pages))
}

/// A large index, read and applied.
struct LargeIndex {
    /// The file's pages alone.
    map: PageMap,
    /// The entries of frames wholly in the first `head` bytes.
    in_head: Vec<IndexEntry>,
    /// The encoded index, when asked for (to keep it on disk).
    encoded: Option<Vec<u8>>,
}

/// The index of a file too large for the tail read: its size is known now, so it comes in up
/// to [`INDEX_PARTS_MAX`] ranged GETs at once, each part's entries checked and placed in a
/// page map of the file's own as soon as the parts before it are, then dropped. So the
/// encoded index is never held whole (unless `keep_encoded`, for the disk cache): the
/// memory an open needs stays near the size of the page map itself.
///
/// # Errors
/// As [`Store::get_range`]; [`Error::Corrupt`] for an index that does not decode or does
/// not fit the header.
async fn read_large_index(
    store: &Store,
    keep_encoded: bool,
    id: LtxFileId,
    header: &Header,
    span: IndexSpan,
    head_len: usize,
) -> Result<LargeIndex> {
    let corrupt = |source| Error::Corrupt {
        url: store.url().to_owned(),
        file: id,
        source,
    };
    let parts = span.len.div_ceil(INDEX_PART).clamp(1, INDEX_PARTS_MAX);
    let part = span.len.div_ceil(parts);
    let end = span.start + span.len;
    let mut fetched = futures::stream::iter((0..parts).map(|i| {
        let from = span.start + i * part;
        store.get_range(&id, from..(from + part).min(end))
    }))
    .buffered(parts as usize);
    let file = Arc::new(id);
    let mut decoder = IndexDecoder::new(span.start).map_err(corrupt)?;
    let mut large = LargeIndex {
        map: PageMap::default(),
        in_head: Vec::new(),
        encoded: keep_encoded.then(Vec::new),
    };
    while let Some(bytes) = fetched.next().await {
        let bytes = bytes?;
        decoder
            .feed(&bytes, |e| {
                PageIndex::check_entry(&e, header)?;
                if e.offset + e.size <= head_len as u64 {
                    large.in_head.push(e);
                }
                large.map.place(&file, &e)
            })
            .map_err(corrupt)?;
        if let Some(encoded) = large.encoded.as_mut() {
            encoded.extend_from_slice(&bytes);
        }
    }
    decoder.finish().map_err(corrupt)?;
    Ok(large)
}

/// What the disk cache keeps of a file: its size (a replica deleted and made again reuses
/// names, rarely sizes), its header, its encoded index.
fn to_disk(size: u64, head: &[u8], encoded_index: &[u8]) -> Vec<u8> {
    let header = head.get(..HEADER_SIZE).unwrap_or_default();
    [&size.to_be_bytes()[..], header, encoded_index].concat()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::{Encoder, Encoding, PageSize, Txid};

    /// A snapshot of many small pages: its index (~8 bytes a page) is larger than the tail
    /// read at open and than one part, so it comes in parts and goes into a map as it does.
    #[test]
    fn a_large_index_read_in_parts_places_every_page_as_the_whole_index_does()
    -> std::result::Result<(), Box<dyn std::error::Error>> {
        let ps = PageSize::new(512).ok_or("page size")?;
        let pages = 60_000u32;
        let mut enc = Encoder::new(Header::new(ps, pages, Txid(1), Txid(1)), Encoding::Block)?;
        for p in (1..=pages).filter_map(Pgno::new) {
            let mut page = vec![0u8; 512];
            page[..4].copy_from_slice(&p.get().to_be_bytes());
            enc.add_page(p, &page)?;
        }
        let bytes = enc.finish()?;
        let id = LtxFileId {
            level: 9,
            min_txid: Txid(1),
            max_txid: Txid(1),
        };
        let dir = std::env::temp_dir().join(format!("ltxvfs-large-index-{}", std::process::id()));
        let level = dir.join("ltx/9");
        std::fs::create_dir_all(&level)?;
        std::fs::write(level.join(id.file_name()), &bytes)?;
        let span = PageIndex::locate(&bytes, bytes.len() as u64)?;
        assert!(
            span.len > INDEX_PART,
            "{} bytes of index: more than one part",
            span.len
        );
        assert!(span.len > index_tail_bytes(bytes.len() as u64));

        let url = format!("file://{}", dir.display());
        let store = Store::from_url(&url, std::time::Duration::from_secs(10))?;
        let files = [(id, bytes.len() as u64)];
        let read = crate::io::run(
            async move { read_plan_files(&store, None, &files, None).await },
            std::time::Duration::from_secs(20),
        )??;
        assert!(matches!(
            read.files.first(),
            Some((_, _, _, FileIndex::Mapped(_)))
        ));
        assert!(read.heads.first().is_some_and(|h| h.pages.len() > 100));
        let snapshot = Snapshot::from_plan(ps, read.files).map_err(|(_, e)| e)?;
        let whole = match PageIndex::from_tail(&bytes, bytes.len() as u64)? {
            TailIndex::Complete(index) => index,
            TailIndex::NeedFrom(_) => return Err("the whole file holds the index".into()),
        };
        assert_eq!(snapshot.commit, pages);
        for e in whole.entries() {
            let at = snapshot.page(e.pgno).ok_or("page not placed")?;
            assert_eq!((at.file, at.offset, at.size), (id, e.offset, e.size));
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
