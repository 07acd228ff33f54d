//! The follower: one task per [`Replica`] on the IO runtime that polls the store every
//! `poll` while the replica is read, and publishes newer snapshots (DESIGN.md decision 12).
//! It holds the replica weakly, so it stops once the last connection has closed; it also
//! stops when no read transaction has begun for `idle`, and then makes no requests at all.
//!
//! Bounded staleness: a read transaction sees a state no older than `poll` before it began.
//! When the last poll started longer ago than that (the replica was idle, or the next poll
//! is under way), [`Replica::begin_read`] waits for one poll, joining one under way; if the
//! store does not answer, the read goes on from the last state (`ltx_lag` shows its age),
//! and so do the reads after it for `timeout`, while the follower keeps trying.
//!
//! In phase: Litestream uploads on a fixed cadence (its sync interval), so the follower
//! learns the phase of that cadence from the new files' header times and places its polls
//! just after the expected uploads ([`Cadence`]): the same number of polls, less lag.
//!
//! Each poll lists level 0 only, starting after the last key seen (on S3 a listing that
//! returns only what is new). New files join a pool; the pool is chained from the current
//! TXID with [`extend_chain`] (straddling files accepted, the furthest reach first, so an
//! older compacted file never replaces newer pages). When the pool cannot reach its newest
//! files (L0 pruned before we saw it), levels 1..=8 are listed after their last keys too,
//! and their files bridge the gap. Any failure (a file gone before its index was read, a
//! store error) makes the next poll list every level afresh. A new snapshot (level 9) is
//! never needed.

use super::plan_files::{head_pages, read_plan_files};
use super::{LtxFileId, Replica, SNAPSHOT_LEVEL, Snapshot, extend_chain};
use crate::error::Result;
use crate::io;
use crate::ltx::Txid;
use crate::store::ListedFile;
use futures::future::try_join_all;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// Who follows a replica in this process, when a read transaction last began, and the
/// cadence the follower polls on.
#[derive(Debug)]
pub(crate) struct Following {
    /// The process whose runtime runs the follower (a forked child starts its own); `None`
    /// while nobody follows (idle, or never started).
    pid: Option<u32>,
    last_read: Instant,
    cadence: Cadence,
}

impl Default for Following {
    fn default() -> Self {
        Following {
            pid: None,
            last_read: Instant::now(),
            cadence: Cadence::default(),
        }
    }
}

/// When to poll: just after Litestream's expected uploads. `phase` is the offset, in the
/// poll period, of the newest file's header time; `delay` how long after it to poll.
/// Litestream writes a file on one ticker and uploads it on another, so the upload comes at a
/// fixed but unknown offset after the header time, anywhere in the period: `delay` is
/// learned, modulo the period. A file first seen a poll later than it could have been
/// (written before the previous poll began) means we polled before its upload: poll an
/// eighth of a period later. A file seen at the first chance: try a little earlier. So most
/// polls fall just after the upload, and a few (about one in twelve) miss it by a period.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cadence {
    phase_ms: Option<u64>,
    delay_ms: u64,
    /// When the last two polls began (ms since the Unix epoch).
    last_start_ms: Option<i64>,
    previous_start_ms: Option<i64>,
}

const DELAY_START_MS: u64 = 150;
const DELAY_EARLIER_MS: u64 = 10;

impl Cadence {
    fn poll_began(&mut self, now_ms: i64) {
        self.previous_start_ms = self.last_start_ms;
        self.last_start_ms = Some(now_ms);
    }

    /// Learns from a poll that found files up to header time `newest_ms`.
    fn found(&mut self, newest_ms: i64, period_ms: u64) {
        let period = period_ms.max(1);
        if self.phase_ms.is_none() {
            self.delay_ms = DELAY_START_MS % period;
        }
        self.phase_ms = Some(newest_ms.rem_euclid(period as i64) as u64);
        let step = if self.previous_start_ms.is_some_and(|p| newest_ms < p) {
            period / 8
        } else {
            period - DELAY_EARLIER_MS.min(period)
        };
        self.delay_ms = (self.delay_ms + step) % period;
    }

    /// How long from `now_ms` to the next poll: the next instant in phase at least half a
    /// period after the last poll began (so one poll a period), or a period after it while
    /// the phase is unknown.
    fn wait(&self, now_ms: i64, period: Duration) -> Duration {
        let period_ms = period.as_millis().max(1) as i64;
        let Some(last) = self.last_start_ms else {
            return period;
        };
        let at = match self.phase_ms {
            None => last + period_ms,
            Some(phase) => {
                let target = (phase + self.delay_ms) as i64 % period_ms;
                let earliest = last + period_ms / 2;
                earliest + (target - earliest).rem_euclid(period_ms)
            }
        };
        Duration::from_millis(u64::try_from(at - now_ms).unwrap_or(0))
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn run(replica: Weak<Replica>) {
    loop {
        let wait = match replica.upgrade() {
            Some(r) => r.next_poll_wait(),
            None => return, // the last connection closed
        };
        io::sleep(wait).await;
        let Some(replica) = replica.upgrade() else {
            return;
        };
        if !replica.keeps_following() {
            return; // idle, or a forked child's copy (the child starts its own)
        }
        replica
            .poll_unless_fresh(Instant::now(), replica.config().poll / 2)
            .await;
    }
}

impl Replica {
    /// A read transaction begins: the follower runs (started again after an idle spell),
    /// and the state it will read is no older than `poll` (waits for one poll if it is).
    pub fn begin_read(self: &Arc<Self>) {
        let poll = self.config().poll;
        if poll.is_zero() {
            return;
        }
        let begun = Instant::now();
        self.ensure_follower_at(begun);
        if self.polled_since(begun, poll) || self.failed_since(begun, self.timeout()) {
            // Fresh; or the store failed a poll just now: a read goes on from the last
            // state rather than wait `timeout` again (the follower keeps trying).
            return;
        }
        self.stats().fresh_waits.fetch_add(1, Ordering::Relaxed);
        let me = self.clone();
        // The store gives up within `timeout`; then the read goes on from the last state.
        let _ = io::run(
            async move { me.poll_unless_fresh(begun, poll).await },
            self.timeout() + Duration::from_secs(2),
        );
    }

    /// Polls now, whenever the last poll was (a commit lost its race for a TXID: the next
    /// transaction must read the winner's state). A store that does not answer leaves the
    /// state as it was; the error is in `ltx_last_error`.
    pub fn refresh(self: &Arc<Self>) {
        let me = self.clone();
        let _ = io::run(
            async move { me.poll_unless_fresh(Instant::now(), Duration::ZERO).await },
            self.timeout() + Duration::from_secs(2),
        );
    }

    /// Starts the follower if this process has none running for this replica (first open,
    /// after an idle spell, or the first read in a forked child). Cheap when it runs.
    pub fn ensure_follower(self: &Arc<Self>) {
        self.ensure_follower_at(Instant::now());
    }

    fn ensure_follower_at(self: &Arc<Self>, t: Instant) {
        let mut f = self.following();
        f.last_read = f.last_read.max(t);
        let me = std::process::id();
        if f.pid == Some(me) || self.config().poll.is_zero() {
            return;
        }
        if io::spawn(run(Arc::downgrade(self))).is_ok() {
            f.pid = Some(me);
        }
    }

    pub(crate) fn follows_in_this_process(&self) -> bool {
        self.following().pid == Some(std::process::id())
    }

    /// Whether the follower goes on: it is this process's, and a read began within `idle`
    /// (else it stops, under the same lock a reader restarts it with).
    fn keeps_following(&self) -> bool {
        let mut f = self.following();
        if f.pid != Some(std::process::id()) {
            return false;
        }
        let idle = self.config().idle;
        if !idle.is_zero() && f.last_read.elapsed() >= idle {
            f.pid = None;
            return false;
        }
        true
    }

    fn next_poll_wait(&self) -> Duration {
        self.following().cadence.wait(now_ms(), self.config().poll)
    }

    /// Whether a finished poll began at most `within` before `t`.
    fn polled_since(&self, t: Instant, within: Duration) -> bool {
        let status = self.follow_status.lock().unwrap_or_else(|e| e.into_inner());
        status
            .last_attempt
            .is_some_and(|s| t.saturating_duration_since(s) <= within)
    }

    /// Whether the last finished poll failed, and began at most `within` before `t`.
    fn failed_since(&self, t: Instant, within: Duration) -> bool {
        let status = self.follow_status.lock().unwrap_or_else(|e| e.into_inner());
        status.error.is_some()
            && status
                .last_attempt
                .is_some_and(|s| t.saturating_duration_since(s) <= within)
    }

    /// Polls, unless a poll began at most `within` before `t` (joining one under way).
    pub(crate) async fn poll_unless_fresh(&self, t: Instant, within: Duration) {
        let _gate = self.poll_gate.lock().await;
        if !self.polled_since(t, within) {
            self.poll_gated().await;
        }
    }

    /// One poll: list, chain, read the new files' indexes, publish. Failures are recorded
    /// (`PRAGMA ltx_last_error`, `ltx_lag`) and make the next poll start over.
    async fn poll_gated(&self) {
        let started = Instant::now();
        self.following().cadence.poll_began(now_ms());
        let before = self.current().txid;
        let mut state = self.follow_state();
        match self.advance(&mut state).await {
            Ok(()) => {
                self.set_follow_result(None);
                let now = self.current();
                if now.txid > before {
                    let period = self.config().poll.as_millis() as u64;
                    self.following().cadence.found(now.timestamp_ms, period);
                }
            }
            Err(e) => {
                state.reset();
                self.set_follow_result(Some(format!("following: {e}")));
            }
        }
        self.put_follow_state(state);
        // Only now: a reader that finds this poll under way waits for it.
        self.follow_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_attempt = Some(started);
    }

    async fn advance(&self, state: &mut FollowState) -> Result<()> {
        let base = self.current();
        if base.local.is_some() {
            // A buffered writer's commits stand over the files: what the store holds past
            // them is another writer's, which its upload will find.
            return Ok(());
        }
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
        let now = self.current();
        if !now.same_state(&base) {
            // A commit of this process (write mode) moved the state while the listing was
            // under way: its file is known already; what else is new waits for the next
            // poll, rather than fetch a file only to find the state moved.
            state.pool.retain(|f| f.id.max_txid > now.txid);
            return Ok(());
        }
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
        if let Some(txid) = self.apply(&base, &sized).await? {
            state.pool.retain(|f| f.id.max_txid > txid);
        }
        Ok(())
    }

    /// Reads the files of `sized` (a chain from `base`) and publishes the state they reach:
    /// its TXID, unless the state moved meanwhile.
    async fn apply(
        &self,
        base: &Arc<Snapshot>,
        sized: &[(LtxFileId, u64)],
    ) -> Result<Option<Txid>> {
        let files =
            read_plan_files(self.store(), self.disk_cache(), sized, Some(base.page_size)).await?;
        let next = Arc::new(base.advance(files.files).map_err(|(file, source)| {
            crate::error::Error::Corrupt {
                url: self.url().to_owned(),
                file,
                source,
            }
        })?);
        // The new files' pages came with their headers (level 0 files are small, read whole).
        self.cache().insert_all(head_pages(&next, &files.heads));
        let txid = next.txid;
        if !self.publish(base, next) {
            return Ok(None);
        }
        self.stats().follow_advances.fetch_add(1, Ordering::Relaxed);
        Ok(Some(txid))
    }

    /// Reads the state up to `txid` from the level-0 files `named` (with their sizes: the
    /// writers' lease names its holder's commits), without listing; polls if they do not
    /// chain from the current state to `txid`, or cannot be read.
    pub(crate) async fn advance_named(&self, named: &[(LtxFileId, u64)], txid: Txid) {
        let _gate = self.poll_gate.lock().await;
        let base = self.current();
        if base.txid >= txid {
            return;
        }
        let ids: Vec<LtxFileId> = named.iter().map(|f| f.0).collect();
        let chain = extend_chain(&ids, base.txid, Some(txid));
        if base.local.is_none() && chain.last().is_some_and(|f| f.max_txid == txid) {
            let sized: Vec<(LtxFileId, u64)> = chain
                .iter()
                .filter_map(|id| named.iter().find(|f| f.0 == *id).copied())
                .collect();
            if let Ok(Some(_)) = self.apply(&base, &sized).await {
                self.stats().named_advances.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.poll_gated().await;
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
    /// When the last finished poll began, whatever came of it.
    pub(crate) last_attempt: Option<Instant>,
    pub(crate) error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_fall_just_after_the_uploads_once_a_period() {
        let period = Duration::from_secs(1);
        let mut c = Cadence::default();
        assert_eq!(c.wait(10_000, period), period, "no poll yet");
        c.poll_began(10_000);
        assert_eq!(c.wait(10_000, period), period, "phase unknown: a period");
        // A file written at ...400 ms, seen at the first chance by the poll at 10_600.
        c.poll_began(10_600);
        c.found(10_400, 1000);
        assert_eq!(c.phase_ms, Some(400));
        assert_eq!(c.delay_ms, DELAY_START_MS - DELAY_EARLIER_MS);
        // The next poll: in phase, at least half a period after the last.
        let wait = c.wait(10_600, period).as_millis() as i64;
        let at = 10_600 + wait;
        assert_eq!((at - 400 - c.delay_ms as i64).rem_euclid(1000), 0, "{at}");
        assert!((10_600 + 500..10_600 + 1500).contains(&at), "{at}");
    }

    #[test]
    fn missed_uploads_move_the_polls_later_around_the_period() {
        let mut c = Cadence::default();
        c.poll_began(1_000);
        c.found(900, 1000);
        let before = c.delay_ms;
        c.poll_began(2_000);
        // Written at 1_950, before the poll at 2_000 began, but only seen by the next one.
        c.poll_began(3_000);
        c.found(1_950, 1000);
        assert_eq!(c.delay_ms, before + 125);
    }

    /// Litestream writes a file every second at ...050 ms and uploads it 700 ms later. Polls
    /// at a fixed period see a file on average 700 + 500 ms after it was written; in phase,
    /// once learned, little more than the 700.
    #[test]
    fn in_phase_polls_see_uploads_sooner_with_one_poll_a_period() {
        let (period, written_at, upload) = (1000i64, 50i64, 700i64);
        let mut c = Cadence::default();
        let (mut now, mut polls, mut seen) = (0i64, 0, -1i64);
        let mut lags = Vec::new();
        c.poll_began(now);
        while now < 120_000 {
            now += c
                .wait(now, Duration::from_millis(period as u64))
                .as_millis() as i64;
            polls += 1;
            c.poll_began(now);
            let newest = (now - written_at - upload).div_euclid(period);
            if newest > seen {
                lags.extend((seen + 1..=newest).map(|k| (k, now - (k * period + written_at))));
                c.found(newest * period + written_at, period as u64);
                seen = newest;
            }
        }
        let late: Vec<i64> = lags
            .iter()
            .filter(|(k, _)| *k >= 60)
            .map(|(_, l)| *l)
            .collect();
        let mean = late.iter().sum::<i64>() / late.len() as i64;
        assert!(mean < 900, "mean lag {mean} ms: {late:?}");
        assert!(polls <= 122, "{polls} polls in 120 s");
    }
}
