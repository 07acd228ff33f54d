//! What this process stored of each replica, as its commits told it: the compactor's
//! knowledge that needs no listing (whether this process wrote the newest TXID, the indexes
//! of recent level-0 files), and the wake-up of the replica's compactor.

use super::REGISTRY;
use crate::ltx::{PageIndex, Txid};
use crate::replica::{FileIndex, LtxFileId, PlanFile};
use std::collections::HashMap;
use std::sync::{Mutex, Weak};
use std::time::Instant;

/// What this process stored of each replica: the newest TXID, and the headers and indexes
/// of its recent level-0 files, so that compacting them reads only their pages (most of
/// which are in the cache).
#[derive(Default)]
struct StoredHere {
    txid: Txid,
    /// When `txid` was stored.
    at: Option<Instant>,
    recent: std::collections::VecDeque<PlanFile>,
}

/// Level-0 files whose index is kept, per replica.
const RECENT_FILES: usize = 512;

static STORED_HERE: Mutex<Option<HashMap<String, StoredHere>>> = Mutex::new(None);

/// A commit or upload of this process stored the level-0 file `id` (of `commit` pages,
/// written at `timestamp_ms`, with `index`).
pub(crate) fn note_stored(
    url: &str,
    id: LtxFileId,
    commit: u32,
    timestamp_ms: i64,
    index: &PageIndex,
) {
    let mut map = STORED_HERE.lock().unwrap_or_else(|e| e.into_inner());
    let here = map
        .get_or_insert_with(HashMap::new)
        .entry(url.to_owned())
        .or_default();
    here.txid = id.max_txid;
    here.at = Some(Instant::now());
    if here.recent.len() == RECENT_FILES {
        here.recent.pop_front();
    }
    let index = FileIndex::Encoded(index.clone());
    here.recent.push_back((id, commit, timestamp_ms, index));
}

/// The state a commit of this process stored is published: its compactor (if any) looks
/// at what is due. (Not before: a pass that saw the replica still at the state before
/// would take this process for another writer's follower, and sleep.)
pub(crate) fn wake(url: &str) {
    let registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(compactor) = (registry.as_ref())
        .and_then(|map| map.get(url))
        .and_then(Weak::upgrade)
    {
        compactor.wake.wake();
    }
}

pub(super) fn stored_here(url: &str) -> Option<Txid> {
    let map = STORED_HERE.lock().unwrap_or_else(|e| e.into_inner());
    map.as_ref()?.get(url).map(|h| h.txid)
}

/// When this process stored TXID `txid` of the replica at `url`, if it is the newest TXID
/// this process stored there.
pub(crate) fn stored_at(url: &str, txid: Txid) -> Option<Instant> {
    let map = STORED_HERE.lock().unwrap_or_else(|e| e.into_inner());
    let here = map.as_ref()?.get(url)?;
    here.at.filter(|_| here.txid == txid)
}

/// The header fields and index of `id`, if this process stored it recently.
pub(super) fn known_file(url: &str, id: &LtxFileId) -> Option<PlanFile> {
    let map = STORED_HERE.lock().unwrap_or_else(|e| e.into_inner());
    let here = map.as_ref()?.get(url)?;
    match here.recent.iter().find(|(f, ..)| f == id)? {
        (id, commit, time, FileIndex::Encoded(index)) => {
            Some((*id, *commit, *time, FileIndex::Encoded(index.clone())))
        }
        _ => None,
    }
}
