//! COMMIT in write mode: the transaction's pages become one level-0 LTX file at the next
//! TXID (min = max, NoChecksum as Litestream writes, block encoding, commit = the database
//! size, timestamp now), created only if that name is free. The file is then the replica's
//! current snapshot in this process at once, its pages in the cache: no poll needed.
//!
//! An answer lost on the way (a timeout, a 5xx after sending) is resolved by reading the
//! object back: the same bytes are ours (stored), other bytes a winner's (lost), nothing
//! there means nothing was stored (the create is tried again).

use super::DirtyPages;
use crate::cache::PageKey;
use crate::error::{Error, Result};
use crate::fetch::bridged;
use crate::ltx::{Encoder, Encoding, Header, PageIndex, TailIndex, Txid};
use crate::replica::{FileIndex, LtxFileId, Replica, Snapshot};
use crate::store::Store;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often a create whose outcome is unknown, and whose object is not there, is tried.
const CREATE_ATTEMPTS: u32 = 3;

/// Stores the transaction `dirty` made over `base` as TXID `base.txid + 1`, publishes the
/// new snapshot and returns it.
///
/// # Errors
/// [`Error::Conflict`] if another writer created that TXID first (nothing stored);
/// [`Error::Write`] if the pages cannot form a file (e.g. a WAL-mode header);
/// [`Error::Io`] if the store failed and whether the file exists is unknown.
pub(crate) fn commit(
    replica: &Arc<Replica>,
    base: &Arc<Snapshot>,
    dirty: &DirtyPages,
) -> Result<Arc<Snapshot>> {
    let url = replica.url().to_owned();
    let write_error = |detail: String| Error::Write {
        url: url.clone(),
        detail,
    };
    let txid = base.txid.next();
    let page_size = dirty.page_size(base);
    let commit = header_size(dirty).unwrap_or_else(|| dirty.size_pages(base));
    if let Some(page1) = dirty.page(crate::ltx::Pgno::ONE)
        && page1.get(18..20) == Some(&[2, 2])
    {
        return Err(write_error(
            "the database header asks for WAL mode; write mode keeps a rollback journal".into(),
        ));
    }
    let timestamp_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut header = Header::new(page_size, commit, txid, txid);
    header.timestamp_ms = timestamp_ms;
    let encode_error = |e: crate::ltx::Error| write_error(format!("building TXID {txid}: {e}"));
    let mut encoder = Encoder::new(header, Encoding::Block).map_err(encode_error)?;
    let lock_page = page_size.lock_page();
    for (pgno, data) in dirty.pages() {
        if pgno.get() <= commit && pgno != lock_page {
            encoder.add_page(pgno, data).map_err(encode_error)?;
        }
    }
    let bytes = bytes::Bytes::from(encoder.finish().map_err(encode_error)?);
    let index = match PageIndex::from_tail(&bytes, bytes.len() as u64).map_err(encode_error)? {
        TailIndex::Complete(index) => index,
        TailIndex::NeedFrom(_) => return Err(write_error("the page index is not whole".into())),
    };
    let id = LtxFileId {
        level: 0,
        min_txid: txid,
        max_txid: txid,
    };
    let store = replica.store().clone();
    let task_store = store.clone();
    let task_bytes = bytes.clone();
    let ours = bridged(
        &store,
        &format!("storing TXID {txid}"),
        async move { create_resolved(&task_store, &id, task_bytes).await },
        replica.timeout() * (2 * CREATE_ATTEMPTS + 1),
    )?;
    if !ours {
        return Err(Error::Conflict { url, txid });
    }
    let file = vec![(id, commit, timestamp_ms, FileIndex::Encoded(index))];
    let next = if base.txid == Txid::ZERO {
        Snapshot::from_plan(page_size, file)
    } else {
        base.advance(file)
    }
    .map_err(|(file, source)| Error::Corrupt {
        url: url.clone(),
        file,
        source,
    })?;
    let next = Arc::new(next);
    replica.cache().insert_all(
        dirty
            .pages()
            .filter(|(pgno, _)| pgno.get() <= commit && *pgno != lock_page)
            .map(|(pgno, data)| (PageKey { file: id, pgno }, Arc::<[u8]>::from(data))),
    );
    replica.publish(base, next.clone());
    Ok(next)
}

/// The database size in pages that page 1 states, when SQLite vouches for it (its
/// version-valid-for equals the change counter). A COMMIT that shrinks the database syncs
/// before it truncates the file (the truncation comes after the journal is gone), so the
/// size at the sync is the header's, not the file's.
fn header_size(dirty: &DirtyPages) -> Option<u32> {
    let page1 = dirty.page(crate::ltx::Pgno::ONE)?;
    let be = |at: usize| {
        page1
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
    };
    (be(24)? == be(92)?).then_some(be(28)?).filter(|&n| n > 0)
}

/// Creates `id` with `bytes`: `Ok(true)` if the stored object is ours, `Ok(false)` if
/// another writer's holds the name.
async fn create_resolved(store: &Store, id: &LtxFileId, bytes: bytes::Bytes) -> Result<bool> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let failure = match store.create_ltx(id, bytes.clone()).await {
            Ok(true) => return Ok(true),
            // Taken: by another writer, or by our own earlier attempt whose answer was lost
            // (object_store retries a request that timed out).
            Ok(false) => None,
            Err(e) => Some(e),
        };
        match store.get_all(id).await {
            Ok(found) => return Ok(found == bytes),
            Err(Error::Vanished { .. }) if failure.is_some() && attempt < CREATE_ATTEMPTS => {
                pause(attempt).await;
            }
            Err(Error::Vanished { .. }) if failure.is_none() => {
                // Taken, then gone (a compaction cannot remove a level-0 file this new):
                // the store misbehaves; report it rather than guess.
                return Err(Error::Io {
                    url: store.url().to_owned(),
                    what: format!("creating {id}"),
                    detail: "the store said the name was taken, then that it was not there".into(),
                });
            }
            Err(read_error) => return Err(failure.unwrap_or(read_error)),
        }
    }
}

/// A short pause between attempts, on the IO runtime's timer.
async fn pause(attempt: u32) {
    crate::io::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
}
