//! When the compactor of a replica runs: a task on the process's runtime that sleeps until
//! the next deadline of its ladder (a level with work whose interval turns, a snapshot
//! due, files retention may remove) or until the replica's own commit wakes it, then runs
//! one pass on the blocking pool within the process's background budget. No thread and no
//! timer per replica while it has nothing to do: a replica with no new commits computes no
//! deadline and waits for the next commit.

use super::{Compactor, LEVEL0_MOST, State, ladder, stored_here};
use crate::io::Wake;
use crate::ltx::Txid;
use crate::replica::Replica;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Instant, SystemTime};

/// The task of one compactor: until its last writable connection has gone, a pass at
/// each deadline or commit. Holds neither the compactor nor the replica while it sleeps.
pub(super) async fn run(me: Weak<Compactor>, replica: Weak<Replica>, wake: Arc<Wake>) {
    // The first pass comes a gap after the start too, as the old thread's first tick did.
    let mut last_pass = Some(Instant::now());
    loop {
        let (deadline, gap) = {
            let (Some(compactor), Some(replica)) = (me.upgrade(), replica.upgrade()) else {
                return;
            };
            if !compactor.keeps_running() {
                return;
            }
            // Not two passes of one replica closer than its gap, whatever the deadlines say
            // (for cost: see `pass_gap`).
            let gap = compactor.pass_gap();
            let at = compactor.next_deadline(&replica);
            (at.map(|at| last_pass.map_or(at, |p| at.max(p + gap))), gap)
        };
        wake.until(deadline).await;
        // A commit wakes it at once; passes still keep the gap (the commits in between are
        // taken together).
        if let Some(next) = last_pass.map(|p| p + gap)
            && let Some(wait) = next.checked_duration_since(Instant::now())
        {
            crate::io::sleep(wait).await;
        }
        let (Some(compactor), Some(replica)) = (me.upgrade(), replica.upgrade()) else {
            return;
        };
        if !compactor.keeps_running() {
            return;
        }
        let passed = crate::store::BACKGROUND.run(move || compactor.tick(&replica));
        passed.await;
        last_pass = Some(Instant::now());
    }
}

impl Compactor {
    /// Whether its task goes on: a connection holds it. The last one gone, the task notes
    /// that it stops, unless a connection came back meanwhile and found it running.
    fn keeps_running(&self) -> bool {
        if self.holders.load(Ordering::Acquire) > 0 {
            return true;
        }
        self.running.store(false, Ordering::Release);
        self.holders.load(Ordering::Acquire) > 0 && !self.running.swap(true, Ordering::AcqRel)
    }

    /// When a pass next has something to do, as far as this process knows: `None` when
    /// nothing is due until a commit (the replica's newest TXID is not this process's, or
    /// every level, snapshot and retention is up to date).
    pub(super) fn next_deadline(&self, replica: &Replica) -> Option<Instant> {
        let current = replica.current().stored().txid;
        if stored_here(&self.url) != Some(current) {
            return None;
        }
        let now = SystemTime::now();
        let state = self.state();
        let mut at: Option<SystemTime> = None;
        let mut soonest = |t: SystemTime| at = Some(at.map_or(t, |a| a.min(t)));
        for (i, interval) in self.config.levels.iter().enumerate() {
            if state.level0_full(i, current) {
                soonest(now);
            } else if state.has_work(i, current) {
                let boundary = ladder::boundary(now, *interval);
                match state.boundaries.get(i).copied().flatten() == Some(boundary) {
                    true => soonest(ladder::boundary_time(boundary + 1, *interval)),
                    false => soonest(now),
                }
            }
        }
        if !state.listed_snapshots {
            soonest(now);
        } else {
            let newest = state.newest_snapshot;
            let behind = newest.map_or(current > Txid::ZERO, |n| n.id.max_txid < current);
            if behind {
                let from = newest.map_or(self.started, |n| n.last_modified);
                let mut due = from + self.config.snapshot_interval;
                if let Some(not_before) = state.snapshot_not_before {
                    due = due.max(now + not_before.saturating_duration_since(Instant::now()));
                }
                soonest(due);
            }
        }
        if let Some(t) = state.retention_next {
            soonest(t);
        }
        if let Some(retry) = state.retry_at {
            at = at.map(|a| a.max(now + retry.saturating_duration_since(Instant::now())));
        }
        at.map(|t| Instant::now() + t.duration_since(now).unwrap_or_default())
    }
}

impl State {
    /// Whether level `i + 1` of the ladder may have files to take: for level 1, level-0
    /// TXIDs past what it reaches (`current` the newest); above, a file the level below
    /// made since it last ran.
    pub(super) fn has_work(&self, i: usize, current: Txid) -> bool {
        match i {
            0 => self.level1_reach != Some(current),
            _ => self.pending.get(i).copied().unwrap_or(false),
        }
    }

    /// Whether level 1 runs whatever its interval: level 0 holds [`LEVEL0_MOST`] TXIDs
    /// past it.
    pub(super) fn level0_full(&self, i: usize, current: Txid) -> bool {
        i == 0
            && self
                .level1_reach
                .is_some_and(|r| current.get().saturating_sub(r.get()) >= LEVEL0_MOST)
    }
}
