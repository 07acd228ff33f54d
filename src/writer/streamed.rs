//! COMMIT of a transaction larger than its bound (`compaction_buffer`, past which its pages
//! spilled to disk): the level-0 file is encoded a part at a time while the part before
//! uploads, under a temporary name of this attempt's own, then takes its TXID's name by a
//! copy made only if that name is free (`store::unique`). Held in memory at once: the part
//! being encoded, the parts in flight (one or two) and the page index (about 10 bytes a
//! page), never the file.
//!
//! Two writers racing for one TXID each upload their own temporary object; the copy lets
//! one win, and the other's COMMIT fails with [`Error::Conflict`] (BUSY_SNAPSHOT), its
//! temporary object removed. A copy whose answer was lost is resolved by reading the object
//! back: its size and trailer (whose CRC-64 covers the whole file, timestamp included) tell
//! ours from another's.

use super::commit::Meta;
use crate::error::{Error, Result};
use crate::fetch::bridged;
use crate::ltx::{
    Encoder, Encoding, Header, PageIndex, PageSize, Pgno, TRAILER_SIZE, TailIndex, Txid,
    max_frame_size,
};
use crate::replica::{LtxFileId, Replica};
use crate::store::{LargeCreate, Store};
use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The size of a part (S3's smallest but the last).
const PART: usize = 5 << 20;

/// How often an upload that failed to begin is begun again.
const BEGIN_ATTEMPTS: u32 = 3;

/// Stores TXID `txid` of a database of `commit` pages, `pages` ascending (read back from
/// the spill file as they come): `Ok((true, file))` if the stored file is ours,
/// `Ok((false, _))` if another writer's holds the name.
///
/// # Errors
/// [`Error::Write`] if the pages cannot form a file or cannot be read back;
/// [`Error::Io`] if the store failed (nothing stored, or the copy's outcome unknown).
pub(super) fn store<'a>(
    replica: &Replica,
    txid: Txid,
    page_size: PageSize,
    commit: u32,
    mut pages: impl Iterator<Item = std::result::Result<(Pgno, Cow<'a, [u8]>), String>>,
) -> Result<(bool, Meta)> {
    let url = replica.url();
    let write_error = |detail: String| Error::Write {
        url: url.to_owned(),
        detail: format!("building TXID {txid}: {detail}"),
    };
    let mut header = Header::new(page_size, commit, txid, txid);
    header.timestamp_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let timestamp_ms = header.timestamp_ms;
    let mut encoder =
        Encoder::new(header, Encoding::Block).map_err(|e| write_error(e.to_string()))?;
    encoder.reserve(PART + usize::try_from(max_frame_size(page_size)).unwrap_or(0));
    let id = LtxFileId {
        level: 0,
        min_txid: txid,
        max_txid: txid,
    };
    let (store, timeout) = (replica.store().clone(), replica.timeout());
    let task_store = store.clone();
    let mut upload = bridged(
        &store,
        &format!("storing TXID {txid}"),
        async move {
            // Nothing is stored yet: an answer lost here is worth another try (under a new
            // temporary name).
            let mut attempt = 0;
            loop {
                attempt += 1;
                match task_store.begin_unique(&id).await {
                    Err(Error::Io { .. }) if attempt < BEGIN_ATTEMPTS => {
                        crate::io::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                    }
                    other => return other,
                }
            }
        },
        timeout * (2 * BEGIN_ATTEMPTS),
    )?;
    let mut written = 0u64;
    let tail = loop {
        let Some(page) = pages.next() else {
            break encoder.finish().map_err(|e| write_error(e.to_string()));
        };
        let added = page.map_err(write_error).and_then(|(pgno, data)| {
            encoder
                .add_page(pgno, &data)
                .map_err(|e| write_error(e.to_string()))
        });
        if let Err(e) = added {
            abort(&store, upload, timeout);
            return Err(e);
        }
        if encoder.pending() >= PART {
            let part = encoder.drain();
            written += part.len() as u64;
            upload = send(&store, upload, part, timeout)?;
        }
    };
    let tail = match tail {
        Ok(tail) => tail,
        Err(e) => {
            abort(&store, upload, timeout);
            return Err(e);
        }
    };
    let len = written + tail.len() as u64;
    let index = match PageIndex::from_tail(&tail, len) {
        Ok(TailIndex::Complete(index)) => index,
        _ => {
            abort(&store, upload, timeout);
            return Err(write_error("the page index is not whole".into()));
        }
    };
    let trailer = tail
        .get(tail.len().saturating_sub(TRAILER_SIZE)..)
        .unwrap_or_default()
        .to_vec();
    let stored = bridged(
        &store,
        &format!("storing TXID {txid}"),
        async move {
            if let Err(e) = upload.write(tail).await {
                upload.abort().await;
                return Err(e);
            }
            upload.finish_unique(&trailer).await
        },
        // The upload's last parts, the copy (at least 4 MiB/s) and reading it back.
        timeout * 8 + Duration::from_secs(len >> 22),
    )?;
    if stored {
        super::compact::note_stored(url, id, commit, timestamp_ms, &index);
    }
    let meta = Meta {
        id,
        index,
        page_size,
        commit,
        timestamp_ms,
        size: len,
    };
    Ok((stored, meta))
}

/// Sends the next part; a part that failed gives the upload up.
fn send(
    store: &Store,
    mut upload: LargeCreate,
    part: Vec<u8>,
    timeout: Duration,
) -> Result<LargeCreate> {
    let what = format!("uploading a part of {}", upload.id());
    bridged(
        store,
        &what,
        async move {
            match upload.write(part).await {
                Ok(()) => Ok(upload),
                Err(e) => {
                    upload.abort().await;
                    Err(e)
                }
            }
        },
        timeout * 4,
    )
}

/// Gives the upload up (best effort: its parts are dropped, its temporary object removed).
fn abort(store: &Store, upload: LargeCreate, timeout: Duration) {
    let _ = bridged(
        store,
        "giving an upload up",
        async move {
            upload.abort().await;
            Ok(())
        },
        timeout,
    );
}
