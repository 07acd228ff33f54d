//! Writing one LTX file from a page map: every page's newest copy, in page order, as a
//! compaction (the files of a level merged) or a snapshot (the whole database) needs it.
//!
//! Pages come from the cache when it has them; the rest are fetched as runs of adjacent
//! frames of one file, each run at most a slice of the buffer, a few at a time, so the
//! frames held at once stay within the buffer whatever the database's size. A large file
//! goes to the store in parts as it is made, so it is never held whole either.

use crate::cache::{PageCache, PageKey};
use crate::error::{Error, Result};
use crate::ltx::{self, Encoder, Encoding, Header, Pgno, Txid};
use crate::replica::{LtxFileId, Snapshot};
use crate::store::{LargeCreate, Store};
use futures::{StreamExt, TryStreamExt};
use std::sync::Arc;

/// Runs fetched at once.
const IN_FLIGHT: u64 = 4;
/// The largest run: larger ranges gain little per request.
const RUN_MAX: u64 = 8 << 20;
/// An upload's part (S3's smallest but the last).
const PART: usize = 5 << 20;

/// Pages to add, in page order: known already, or a run of frames to fetch.
enum Step {
    Known(Pgno, Arc<[u8]>),
    Fetch {
        file: LtxFileId,
        start: u64,
        end: u64,
        /// Each page with its frame's offset and size in the file.
        pages: Vec<(Pgno, u64, u64)>,
    },
}

/// What [`merge`] made.
pub(super) enum Merged {
    /// The file's bytes, to store.
    Whole(Vec<u8>),
    /// Streamed to the store as it was made (created, or the name was taken by an earlier
    /// run): its size.
    Created(u64),
}

/// The LTX file for TXIDs `min..=max` holding every page `state` maps (its newest copy),
/// with `state`'s commit and time: whole in memory, or, given `upload`, streamed to the
/// store in parts as it is made.
///
/// # Errors
/// As [`Store::get_range`]; [`Error::Corrupt`] for a frame that does not decode;
/// [`Error::Write`] if the pages cannot form the file (a snapshot missing a page); the
/// upload's errors.
pub(super) async fn merge(
    store: &Store,
    cache: &PageCache,
    state: &Snapshot,
    span: (Txid, Txid),
    buffer: u64,
    mut upload: Option<LargeCreate>,
) -> Result<Merged> {
    let encoded = encode(store, cache, state, span, buffer, upload.as_mut()).await;
    match (encoded, upload) {
        (Ok(tail), None) => Ok(Merged::Whole(tail)),
        (Ok(tail), Some(mut upload)) => {
            if let Err(e) = upload.write(tail).await {
                upload.abort().await;
                return Err(e);
            }
            let size = upload.written();
            upload.finish().await?;
            Ok(Merged::Created(size))
        }
        (Err(e), Some(upload)) => {
            // Parts already sent are billed until the upload is given up.
            upload.abort().await;
            Err(e)
        }
        (Err(e), None) => Err(e),
    }
}

/// Encodes the file, handing its bytes to `upload` as they come, if given; returns the
/// bytes not handed out.
async fn encode(
    store: &Store,
    cache: &PageCache,
    state: &Snapshot,
    (min, max): (Txid, Txid),
    buffer: u64,
    mut upload: Option<&mut LargeCreate>,
) -> Result<Vec<u8>> {
    let url = store.url().to_owned();
    let encode_error = |e: ltx::Error| Error::Write {
        url: url.clone(),
        detail: format!("compacting TXIDs {min}-{max}: {e}"),
    };
    let mut header = Header::new(state.page_size, state.commit, min, max);
    header.timestamp_ms = state.timestamp_ms;
    let mut encoder = Encoder::new(header, Encoding::Block).map_err(encode_error)?;
    let run_max = (buffer / IN_FLIGHT).clamp(1 << 16, RUN_MAX);
    if upload.is_some() {
        // A part, and the run of frames that may take it past the part size.
        encoder.reserve(PART + run_max as usize);
    }
    let page_size = state.page_size;
    let mut pages = futures::stream::iter(steps(state, cache, run_max))
        .map(|step| fetch(store, page_size, step))
        .buffered(IN_FLIGHT as usize);
    while let Some(batch) = pages.try_next().await? {
        for (pgno, data) in batch {
            encoder.add_page(pgno, &data).map_err(encode_error)?;
        }
        if let Some(upload) = upload.as_deref_mut()
            && encoder.pending() >= PART
        {
            upload.write(encoder.drain()).await?;
        }
    }
    encoder.finish().map_err(encode_error)
}

/// The steps for `state`'s pages, made as they are asked for (never all at once).
fn steps<'a>(
    state: &'a Snapshot,
    cache: &'a PageCache,
    run_max: u64,
) -> impl Iterator<Item = Step> + 'a {
    let lock_page = state.page_size.lock_page();
    let mut pgnos = (1..=state.commit)
        .filter_map(Pgno::new)
        .filter(move |p| *p != lock_page)
        .filter_map(|pgno| Some((pgno, state.page(pgno)?)))
        .peekable();
    std::iter::from_fn(move || {
        let (pgno, at) = pgnos.next()?;
        if let Some(data) = cache.get(&PageKey {
            file: at.file,
            pgno,
        }) {
            return Some(Step::Known(pgno, data));
        }
        let (mut end, mut pages) = (at.offset + at.size, vec![(pgno, at.offset, at.size)]);
        while let Some((next, next_at)) = pgnos.peek().copied() {
            let adjacent = next_at.file == at.file && next_at.offset == end;
            if !adjacent || end + next_at.size - at.offset > run_max {
                break;
            }
            let key = PageKey {
                file: next_at.file,
                pgno: next,
            };
            if cache.contains(&key) {
                break;
            }
            pgnos.next();
            pages.push((next, next_at.offset, next_at.size));
            end += next_at.size;
        }
        Some(Step::Fetch {
            file: at.file,
            start: at.offset,
            end,
            pages,
        })
    })
}

/// The pages of one step.
async fn fetch(
    store: &Store,
    page_size: ltx::PageSize,
    step: Step,
) -> Result<Vec<(Pgno, Arc<[u8]>)>> {
    match step {
        Step::Known(pgno, data) => Ok(vec![(pgno, data)]),
        Step::Fetch {
            file,
            start,
            end,
            pages,
        } => {
            let bytes = store.get_range(&file, start..end).await?;
            pages
                .into_iter()
                .map(|(pgno, offset, size)| {
                    let from = (offset - start) as usize;
                    let frame = bytes.get(from..from + size as usize).unwrap_or_default();
                    let page = ltx::decode_page(frame, pgno, page_size).map_err(|source| {
                        Error::Corrupt {
                            url: store.url().to_owned(),
                            file,
                            source,
                        }
                    })?;
                    Ok((pgno, Arc::from(page)))
                })
                .collect()
        }
    }
}
