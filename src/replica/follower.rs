//! The follower: one task per [`Replica`] on the IO runtime that polls the store every
//! `poll` and publishes newer snapshots. It holds the replica weakly, so it stops once the
//! last connection has closed.
//!
//! Each poll lists level 0 only, starting after the last key seen (on S3 a listing that
//! returns only what is new). New files join a pool; the pool is chained from the current
//! TXID with [`extend_chain`] (straddling files accepted, the furthest reach first, so an
//! older compacted file never replaces newer pages). When the pool cannot reach its newest
//! files (L0 pruned before we saw it), levels 1..=8 are listed after their last keys too,
//! and their files bridge the gap. Any failure (a file gone before its index was read, a
//! store error) makes the next poll list every level afresh. A new snapshot (level 9) is
//! never needed.

use super::replica::{head_pages, read_plan_files};
use super::{LtxFileId, Replica, SNAPSHOT_LEVEL, extend_chain};
use crate::error::Result;
use crate::io;
use crate::ltx::Txid;
use crate::store::ListedFile;
use futures::future::try_join_all;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// What the follower has seen of the store.
#[derive(Debug, Clone)]
pub(crate) struct FollowState {
    /// Per level 0..=8, the last file listed: the next listing starts after it.
    last_seen: [Option<LtxFileId>; SNAPSHOT_LEVEL as usize],
    /// Listed files past the current TXID, not yet applied.
    pool: Vec<ListedFile>,
    /// List every level from the start at the next poll (after a failure).
    relist: bool,
}

impl FollowState {
    /// The state after the listing a replica was opened with.
    pub(crate) fn after_listing(listed: &[LtxFileId]) -> FollowState {
        let mut last_seen = [None; SNAPSHOT_LEVEL as usize];
        for id in listed {
            if let Some(slot) = last_seen.get_mut(usize::from(id.level)) {
                *slot = (*slot).max(Some(*id));
            }
        }
        FollowState {
            last_seen,
            pool: Vec::new(),
            relist: false,
        }
    }

    fn reset(&mut self) {
        *self = FollowState {
            last_seen: [None; SNAPSHOT_LEVEL as usize],
            pool: Vec::new(),
            relist: true,
        };
    }
}

/// Starts the follower of `replica` in this process, unless `poll` is zero.
pub(crate) fn start(replica: &Arc<Replica>, poll: Duration) -> Result<(), io::BridgeError> {
    if poll.is_zero() {
        return Ok(());
    }
    let weak = Arc::downgrade(replica);
    io::spawn(run(weak, poll))
}

async fn run(replica: Weak<Replica>, poll: Duration) {
    loop {
        io::sleep(poll).await;
        let Some(replica) = replica.upgrade() else {
            return; // the last connection closed
        };
        if !replica.follows_in_this_process() {
            return; // a forked child's copy: the child starts its own
        }
        replica.poll_once().await;
    }
}

impl Replica {
    /// One poll: list, chain, read the new files' indexes, publish. Failures are recorded
    /// (`PRAGMA ltx_last_error`, `ltx_lag`) and make the next poll start over.
    pub(crate) async fn poll_once(&self) {
        let mut state = self.follow_state();
        match self.advance(&mut state).await {
            Ok(()) => {
                self.set_follow_result(None);
            }
            Err(e) => {
                state.reset();
                self.set_follow_result(Some(format!("following: {e}")));
            }
        }
        self.put_follow_state(state);
    }

    async fn advance(&self, state: &mut FollowState) -> Result<()> {
        let base = self.current();
        let levels: Vec<u8> = if state.relist {
            (0..SNAPSHOT_LEVEL).collect()
        } else {
            vec![0]
        };
        self.list_new(state, &levels, base.txid).await?;
        let mut chain = chain_of(state, base.txid);
        let reached = chain.last().map_or(base.txid, |f| f.max_txid);
        let stranded = state.pool.iter().any(|f| f.id.min_txid > reached.next());
        if stranded && !state.relist {
            // Level 0 moved on past a gap: bridge it from the compacted levels.
            self.stats().follow_bridges.fetch_add(1, Ordering::Relaxed);
            self.list_new(state, &(1..SNAPSHOT_LEVEL).collect::<Vec<_>>(), base.txid)
                .await?;
            chain = chain_of(state, base.txid);
        }
        state.relist = false;
        if chain.is_empty() {
            return Ok(());
        }
        let sized: Vec<(LtxFileId, u64)> = chain
            .iter()
            .map(|id| {
                let size = state
                    .pool
                    .iter()
                    .find(|f| f.id == *id)
                    .map_or(0, |f| f.size);
                (*id, size)
            })
            .collect();
        let files = read_plan_files(self.store(), &sized, Some(base.page_size)).await?;
        let next = Arc::new(base.advance(files.files));
        // The new files' pages came with their headers (level 0 files are small, read whole).
        self.cache().insert_all(head_pages(&next, &files.heads));
        let txid = next.txid;
        self.publish(&base, next);
        self.stats().follow_advances.fetch_add(1, Ordering::Relaxed);
        state.pool.retain(|f| f.id.max_txid > txid);
        Ok(())
    }

    /// Lists `levels` after their last seen keys; files past `cur` join the pool.
    async fn list_new(&self, state: &mut FollowState, levels: &[u8], cur: Txid) -> Result<()> {
        let store = self.store();
        let listings = try_join_all(levels.iter().map(|&level| {
            let after = state.last_seen.get(usize::from(level)).copied().flatten();
            async move { store.list_level_after(level, after.as_ref()).await }
        }))
        .await?;
        for (level, files) in levels.iter().zip(listings) {
            if let (Some(slot), Some(last)) = (
                state.last_seen.get_mut(usize::from(*level)),
                files.last().map(|f| f.id),
            ) {
                *slot = (*slot).max(Some(last));
            }
            state
                .pool
                .extend(files.into_iter().filter(|f| f.id.max_txid > cur));
        }
        Ok(())
    }

    /// Whether the latest poll succeeded, and when the last good one was.
    pub(crate) fn set_follow_result(&self, error: Option<String>) {
        let mut f = self.follow_status.lock().unwrap_or_else(|e| e.into_inner());
        if error.is_none() {
            f.last_ok = Some(Instant::now());
        }
        f.error = error;
    }
}

fn chain_of(state: &FollowState, from: Txid) -> Vec<LtxFileId> {
    let ids: Vec<LtxFileId> = state.pool.iter().map(|f| f.id).collect();
    extend_chain(&ids, from, None)
}

/// What `PRAGMA ltx_lag` and `ltx_last_error` report of the follower.
#[derive(Debug, Default)]
pub(crate) struct FollowStatus {
    pub(crate) last_ok: Option<Instant>,
    pub(crate) error: Option<String>,
}
