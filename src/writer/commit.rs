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
use crate::ltx::{Encoder, Encoding, Header, PageIndex, PageSize, Pgno, TailIndex, Txid};
use crate::replica::{FileIndex, LtxFileId, Replica, Snapshot};
use crate::store::Store;
use bytes::Bytes;
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
    let url = replica.url();
    if base.local.is_some() {
        // A `sync=<duration>` connection of this process has commits not yet uploaded: a
        // file over the stored state alone would drop them.
        return Err(Error::Write {
            url: url.to_owned(),
            detail: "this process has buffered commits (sync=<duration>) not yet stored; open every writer of a replica with the same sync".into(),
        });
    }
    refuse_wal(url, dirty.page1())?;
    let commit = commit_size(dirty, base);
    let page_size = dirty.page_size(base);
    let lock_page = page_size.lock_page();
    let keep = move |pgno: Pgno| pgno.get() <= commit && pgno != lock_page;
    let txid = base.txid.next();
    let (stored, meta) = if dirty.spilled() {
        // Larger than the bound: streamed in parts, never whole in memory.
        let pages = dirty
            .pages()
            .filter(|p| p.as_ref().map_or(true, |(pgno, _)| keep(*pgno)));
        super::streamed::store(replica, txid, page_size, commit, pages)?
    } else {
        let pages = dirty.held_pages().filter(|(pgno, _)| keep(*pgno));
        let built = Built::new(url, txid, page_size, commit, pages)?;
        (store(replica, &built)?, built.meta())
    };
    if !stored {
        return Err(Error::Conflict {
            url: url.to_owned(),
            txid: meta.id.max_txid,
        });
    }
    // The pages held in memory go to the cache (all of a transaction within the bound);
    // spilled ones are read from the store when asked for.
    let held = dirty.held_pages().filter(|(pgno, _)| keep(*pgno));
    let next = Arc::new(applied(replica, base, &meta, held)?);
    replica.publish(base, next.clone());
    super::lease::note_stored(replica.url(), meta.id, meta.size);
    super::compact::wake(replica.url());
    Ok(next)
}

/// Refuses page 1 of a WAL-mode database: write mode stores what the rollback journal's
/// page writes give.
pub(super) fn refuse_wal(url: &str, page1: Option<&[u8]>) -> Result<()> {
    if page1.and_then(|p| p.get(18..20)) == Some(&[2, 2]) {
        return Err(Error::Write {
            url: url.to_owned(),
            detail: "the database header asks for WAL mode; write mode keeps a rollback journal"
                .into(),
        });
    }
    Ok(())
}

/// The database size in pages after the transaction `dirty` made over `base`.
pub(super) fn commit_size(dirty: &DirtyPages, base: &Snapshot) -> u32 {
    header_size(dirty).unwrap_or_else(|| dirty.size_pages(base))
}

/// What the replica needs to know of a stored LTX file to read it: its name, page index,
/// page size, database size and time.
#[derive(Debug, Clone)]
pub(super) struct Meta {
    pub(super) id: LtxFileId,
    pub(super) index: PageIndex,
    pub(super) page_size: PageSize,
    pub(super) commit: u32,
    pub(super) timestamp_ms: i64,
    /// The file's length in bytes.
    pub(super) size: u64,
}

/// One level-0 LTX file, encoded and indexed, ready to store.
#[derive(Debug, Clone)]
pub(super) struct Built {
    pub(super) id: LtxFileId,
    pub(super) bytes: Bytes,
    pub(super) index: PageIndex,
    pub(super) page_size: PageSize,
    pub(super) commit: u32,
    pub(super) timestamp_ms: i64,
}

impl Built {
    /// TXID `txid` of a database of `commit` pages: `pages` ascending (min = max TXID,
    /// block encoding, timestamp now, as Litestream writes level 0).
    pub(super) fn new<'a>(
        url: &str,
        txid: Txid,
        page_size: PageSize,
        commit: u32,
        pages: impl Iterator<Item = (Pgno, &'a [u8])>,
    ) -> Result<Built> {
        let encode_error = |e: crate::ltx::Error| Error::Write {
            url: url.to_owned(),
            detail: format!("building TXID {txid}: {e}"),
        };
        let mut header = Header::new(page_size, commit, txid, txid);
        header.timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut encoder = Encoder::new(header, Encoding::Block).map_err(encode_error)?;
        for (pgno, data) in pages {
            encoder.add_page(pgno, data).map_err(encode_error)?;
        }
        let bytes = Bytes::from(encoder.finish().map_err(encode_error)?);
        Built::from_bytes(url, bytes)
    }

    pub(super) fn meta(&self) -> Meta {
        Meta {
            id: self.id,
            index: self.index.clone(),
            page_size: self.page_size,
            commit: self.commit,
            timestamp_ms: self.timestamp_ms,
            size: self.bytes.len() as u64,
        }
    }

    /// A file built earlier (kept in a buffer), read back from its bytes.
    pub(super) fn from_bytes(url: &str, bytes: Bytes) -> Result<Built> {
        let bad = |detail: String| Error::Write {
            url: url.to_owned(),
            detail,
        };
        let header = Header::decode(&bytes).map_err(|e| bad(format!("a built file: {e}")))?;
        let index = match PageIndex::from_tail(&bytes, bytes.len() as u64)
            .map_err(|e| bad(format!("a built file: {e}")))?
        {
            TailIndex::Complete(index) => index,
            TailIndex::NeedFrom(_) => return Err(bad("the page index is not whole".into())),
        };
        Ok(Built {
            id: LtxFileId {
                level: 0,
                min_txid: header.min_txid,
                max_txid: header.max_txid,
            },
            bytes,
            index,
            page_size: header.page_size,
            commit: header.commit,
            timestamp_ms: header.timestamp_ms,
        })
    }
}

/// Creates `built` in the store if its name is free: `true` if the stored file is ours,
/// `false` if another writer's holds the name.
///
/// # Errors
/// [`Error::Io`] if the store failed and whether the file exists is unknown.
pub(super) fn store(replica: &Replica, built: &Built) -> Result<bool> {
    let store = replica.store().clone();
    let (id, bytes) = (built.id, built.bytes.clone());
    let task_store = store.clone();
    let stored = bridged(
        &store,
        &format!("storing TXID {}", id.max_txid),
        async move { create_resolved(&task_store, &id, bytes).await },
        replica.timeout() * (2 * CREATE_ATTEMPTS + 1),
    )?;
    if stored {
        super::compact::note_stored(
            replica.url(),
            id,
            built.commit,
            built.timestamp_ms,
            &built.index,
        );
    }
    Ok(stored)
}

/// Creates a compacted or snapshot file `id` unless its name is taken (by an earlier run,
/// from the same inputs: either way the file is there).
///
/// # Errors
/// [`Error::Io`] if the store failed and whether the file exists is unknown.
pub(super) fn create_or_taken(replica: &Replica, id: LtxFileId, bytes: Bytes) -> Result<()> {
    let store = replica.store().clone();
    let task_store = store.clone();
    bridged(
        &store,
        &format!("storing {id}"),
        async move { create_resolved(&task_store, &id, bytes).await.map(drop) },
        replica.timeout() * (2 * CREATE_ATTEMPTS + 1),
    )
}

/// The stored state under `base` with the file `built` applied (the state after `base` when
/// the file is TXID 1), its `pages` put in the cache.
///
/// # Errors
/// [`Error::Corrupt`] if the page map cannot take the file.
pub(super) fn applied<'a>(
    replica: &Replica,
    base: &Snapshot,
    built: &Meta,
    pages: impl Iterator<Item = (Pgno, &'a [u8])>,
) -> Result<Snapshot> {
    let file = vec![(
        built.id,
        built.commit,
        built.timestamp_ms,
        FileIndex::Encoded(built.index.clone()),
    )];
    let next = if base.txid == Txid::ZERO {
        Snapshot::from_plan(built.page_size, file)
    } else {
        base.advance(file)
    }
    .map_err(|(file, source)| Error::Corrupt {
        url: replica.url().to_owned(),
        file,
        source,
    })?;
    let id = built.id;
    replica.cache().insert_all(
        pages.map(|(pgno, data)| (PageKey { file: id, pgno }, Arc::<[u8]>::from(data))),
    );
    Ok(next)
}

/// The database size in pages that page 1 states, when SQLite vouches for it (its
/// version-valid-for equals the change counter). A COMMIT that shrinks the database syncs
/// before it truncates the file (the truncation comes after the journal is gone), so the
/// size at the sync is the header's, not the file's.
fn header_size(dirty: &DirtyPages) -> Option<u32> {
    let page1 = dirty.page1()?;
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
async fn create_resolved(store: &Store, id: &LtxFileId, bytes: Bytes) -> Result<bool> {
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
        match read_back(store, id, &bytes).await {
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

/// The stored file `id`, read back to compare with `ours`: a body that is neither `ours`
/// nor a whole LTX file (an answer cut short, with headers to match) tells nothing about
/// whose file it is, and is read again.
///
/// # Errors
/// As [`Store::get_all`]; [`Error::Io`] if every answer was damaged.
pub(super) async fn read_back(store: &Store, id: &LtxFileId, ours: &Bytes) -> Result<Bytes> {
    for attempt in 1..=CREATE_ATTEMPTS {
        let found = store.get_all(id).await?;
        if found == *ours || crate::ltx::decode_file(&found, |_, _| Ok(())).is_ok() {
            return Ok(found);
        }
        pause(attempt).await;
    }
    Err(Error::Io {
        url: store.url().to_owned(),
        what: format!("reading back {id}"),
        detail: format!("{CREATE_ATTEMPTS} answers were not a whole LTX file"),
    })
}

/// A short pause between attempts, on the IO runtime's timer.
async fn pause(attempt: u32) {
    crate::io::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
}
