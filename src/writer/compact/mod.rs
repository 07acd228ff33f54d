//! The writer keeps its replica short, on Litestream's ladder and defaults: level 0 merged
//! into level 1 every 30 s, 1 into 2 every 5 min, 2 into 3 every hour (`compaction=`), a
//! full snapshot at level 9 daily (`snapshot_interval=`), level-0 files removed 5 min after
//! a level-1 file covers them (`l0_retention=`), snapshots older than a day and what only
//! they reach removed (`retention=`). Two departures keep a plan short at high commit
//! rates (`ladder::to_compact`): levels below the top widen one file rather than add one
//! per interval, and level 1 also runs once level 0 holds [`LEVEL0_MOST`] TXIDs past it.
//! So a reader's open (or `litestream restore`) reads about a dozen files, not one per
//! commit.
//!
//! It runs as a task on the process's one runtime ([`schedule`]), off the commit path, and
//! only while this process stored the replica's newest TXID (a writer that lost the replica
//! to another stops): woken by the replica's own commits and by the next deadline of its
//! ladder, it sleeps otherwise, and an idle replica makes no requests. Its passes take the
//! process's background budget ([`crate::store::BACKGROUND`]), which commits never wait on. Every file it makes is created as a commit is, only if its name is free, in
//! one request: a crash leaves the file whole or absent, and the next run redoes it.
//! Nothing is deleted before the file that replaces it is stored; readers that planned on
//! a deleted file plan again.

mod ladder;
mod merge;
#[cfg(test)]
mod model;
mod schedule;
mod stored;

use crate::error::{Error, Result};
use crate::ltx::Txid;
use crate::replica::{
    CompactionConfig, LtxFileId, PlanFile, Replica, SNAPSHOT_LEVEL, Snapshot, Target,
};
use crate::store::ListedFile;
use ladder::Listing;
use merge::Merged;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};
use stored::{known_file, stored_here};
pub(crate) use stored::{note_stored, stored_at, wake};

/// The compaction of one replica in this process, shared by its writable connections.
#[derive(Debug)]
pub(crate) struct Compactor {
    url: String,
    config: CompactionConfig,
    started: SystemTime,
    holders: AtomicUsize,
    /// Whether its task runs (one at a time).
    running: AtomicBool,
    /// Wakes its task: a commit stored, the last connection gone.
    wake: Arc<crate::io::Wake>,
    state: Mutex<State>,
}

impl Drop for Compactor {
    fn drop(&mut self) {
        self.wake.wake();
    }
}

/// What the last runs did, for `PRAGMA ltx_compaction`.
#[derive(Debug, Default)]
struct State {
    /// Per level of the ladder (index 0 is level 1), then the snapshot level.
    last: Vec<Option<Run>>,
    /// The wall-clock interval of each level's last run.
    boundaries: Vec<Option<u128>>,
    snapshot: Option<Run>,
    /// The newest snapshot, as last listed or made.
    newest_snapshot: Option<ListedFile>,
    listed_snapshots: bool,
    /// Per level of the ladder above level 1: the level below made a file it has not
    /// taken yet (level 1 compares TXIDs instead: `level1_reach`).
    pending: Vec<bool>,
    /// When retention next has something to remove; `None`: nothing until a file is made.
    retention_next: Option<SystemTime>,
    /// After a pass failed: not before then.
    retry_at: Option<Instant>,
    /// Where level 1 reached at the last pass.
    level1_reach: Option<Txid>,
    /// After a snapshot failed: not before then.
    snapshot_not_before: Option<Instant>,
    deleted: u64,
    error: Option<String>,
}

/// One file made.
#[derive(Debug, Clone, Copy)]
struct Run {
    at: SystemTime,
    file: LtxFileId,
    inputs: usize,
    took: Duration,
}

/// Level 1 is also compacted, whatever its interval, once level 0 holds this many TXIDs
/// past it: a reader's plan then takes at most this many level-0 files (at 10 commits a
/// second, Litestream's 30 s would leave up to 300).
const LEVEL0_MOST: u64 = 16;

/// Past a deadline of retention, so that the age it compares is beyond it.
const RETENTION_MARGIN: Duration = Duration::from_millis(5);

/// Input files whose headers and indexes are read at once.
const READ_AT_ONCE: usize = 8;

type Registry = HashMap<String, Weak<Compactor>>;
static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

impl Compactor {
    /// The compaction of `replica`, started by its first writable connection; `None` with
    /// `compaction=off`.
    pub(crate) fn of(replica: &Arc<Replica>, config: &CompactionConfig) -> Option<Arc<Compactor>> {
        if config.levels.is_empty() {
            return None;
        }
        let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        let map = registry.get_or_insert_with(HashMap::new);
        map.retain(|_, c| c.strong_count() > 0);
        let url = replica.url().to_owned();
        if let Some(found) = map.get(&url).and_then(Weak::upgrade) {
            found.holders.fetch_add(1, Ordering::AcqRel);
            // Its task saw the last connection go, and stopped: start another.
            found.start(replica);
            return Some(found);
        }
        let compactor = Arc::new(Compactor {
            url: url.clone(),
            config: config.clone(),
            started: SystemTime::now(),
            holders: AtomicUsize::new(1),
            running: AtomicBool::new(false),
            wake: Arc::default(),
            state: Mutex::new(State {
                last: vec![None; config.levels.len()],
                // What the store held before this process is not known: every level may
                // have work, and retention runs at the first pass.
                pending: vec![true; config.levels.len()],
                retention_next: Some(SystemTime::UNIX_EPOCH),
                // As Litestream's tickers: the first run of a level when its interval turns.
                boundaries: (config.levels.iter())
                    .map(|i| Some(ladder::boundary(SystemTime::now(), *i)))
                    .collect(),
                ..State::default()
            }),
        });
        // Without its task the writer still works; the replica just grows.
        if !compactor.start(replica) {
            return None;
        }
        map.insert(url, Arc::downgrade(&compactor));
        Some(compactor)
    }

    /// Starts the task that runs the ladder, unless it runs; `false` if it cannot be.
    fn start(self: &Arc<Self>, replica: &Arc<Replica>) -> bool {
        if self.running.swap(true, Ordering::AcqRel) {
            return true;
        }
        let task = schedule::run(
            Arc::downgrade(self),
            Arc::downgrade(replica),
            self.wake.clone(),
        );
        let started = crate::io::spawn(task).is_ok();
        if !started {
            self.running.store(false, Ordering::Release);
        }
        started
    }

    /// A writable connection is done with it; the task stops after the last.
    pub(crate) fn release(&self) {
        self.holders.fetch_sub(1, Ordering::AcqRel);
        self.wake.wake();
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One pass: the levels whose interval has turned and that have work, a snapshot if
    /// due, retention if due. Makes no request when nothing is due, or when this process
    /// is not the writer of the replica's newest TXID; a level with nothing new only
    /// notes that its interval turned.
    fn tick(&self, replica: &Replica) {
        let now = SystemTime::now();
        let current = replica.current().stored();
        if stored_here(&self.url) != Some(current.txid) {
            return;
        }
        // (index in the ladder, the interval it is in now), for each level due.
        let due: Vec<(usize, u128)> = {
            let mut state = self.state();
            let mut due = Vec::new();
            for (i, interval) in self.config.levels.iter().enumerate() {
                let boundary = ladder::boundary(now, *interval);
                let turned = state.boundaries.get(i).copied().flatten() != Some(boundary);
                if (turned && state.has_work(i, current.txid)) || state.level0_full(i, current.txid)
                {
                    due.push((i, boundary));
                } else if turned && let Some(b) = state.boundaries.get_mut(i) {
                    *b = Some(boundary);
                }
            }
            due
        };
        let (snapshot_due, retention_due) = {
            let state = self.state();
            let backing_off = state
                .snapshot_not_before
                .is_some_and(|t| Instant::now() < t);
            let snapshot_due = !backing_off
                && (!state.listed_snapshots
                    || ladder::snapshot_due(
                        state.newest_snapshot.as_slice(),
                        current.txid,
                        now,
                        self.started,
                        self.config.snapshot_interval,
                    ));
            let retention_due = state.retention_next.is_some_and(|t| now >= t);
            (snapshot_due, retention_due)
        };
        if due.is_empty() && !snapshot_due && !retention_due {
            return;
        }
        let outcome = self.pass(replica, &current, now, &due, snapshot_due, retention_due);
        let mut state = self.state();
        state.retry_at = outcome
            .is_err()
            .then(|| Instant::now() + self.retry_after());
        state.error = outcome.err().map(|e| e.to_string());
    }

    /// How long a failed pass waits before the next: [`Self::pass_gap`], at least 100 ms.
    fn retry_after(&self) -> Duration {
        self.pass_gap().max(Duration::from_millis(100))
    }

    /// The least time between two passes of one replica: a quarter of the shortest
    /// interval, at most 1 s (the old tick's period). Not for correctness (passes back to
    /// back keep every level whole: `model.rs`, and `compaction.rs` of the SQLite tests
    /// with a gap of 2 ms), for cost: the commits that land within it are taken by one
    /// pass, where passes woken by each commit would make a level-1 file (and three LISTs)
    /// every [`LEVEL0_MOST`] commits.
    pub(super) fn pass_gap(&self) -> Duration {
        (self.config.levels.iter())
            .chain([&self.config.l0_retention])
            .min()
            .map_or(Duration::from_secs(1), |d| *d / 4)
            .min(Duration::from_secs(1))
    }

    fn pass(
        &self,
        replica: &Replica,
        current: &Snapshot,
        now: SystemTime,
        due: &[(usize, u128)],
        snapshot_due: bool,
        retention_due: bool,
    ) -> Result<()> {
        let top = self.config.levels.len() as u8;
        // Only the levels this pass needs: a level due, the one below and the one above;
        // everything for retention; the snapshots for a snapshot.
        let mut levels = std::collections::BTreeSet::new();
        for &(i, _) in due {
            levels.extend([i as u8, i as u8 + 1, (i as u8 + 2).min(top)]);
        }
        if retention_due {
            levels.extend((0..=top).chain([SNAPSHOT_LEVEL]));
        }
        if snapshot_due {
            levels.insert(SNAPSHOT_LEVEL);
        }
        let mut listing = self.list(replica, levels.into_iter().collect())?;
        for &(i, boundary) in due {
            let level = i as u8 + 1;
            // Widen below the top, once the level above has files (until then, widening
            // would rewrite everything from TXID 1 each time).
            let inputs = ladder::inputs(&listing, level, top);
            let made = match inputs.is_empty() {
                true => None,
                false => Some(self.compact(replica, level, &inputs)?),
            };
            let mut state = self.state();
            if let Some(b) = state.boundaries.get_mut(i) {
                *b = Some(boundary);
            }
            if let Some(p) = state.pending.get_mut(i) {
                *p = false;
            }
            if let Some(made) = made {
                listing.entry(level).or_default().push(made);
                if let Some(p) = state.pending.get_mut(i + 1) {
                    *p = true;
                }
                // What it covers goes once it has been there `l0_retention`.
                let at = made.last_modified + self.config.l0_retention + RETENTION_MARGIN;
                state.retention_next = Some(state.retention_next.map_or(at, |t| t.min(at)));
            }
        }
        let snapshots = listing.get(&SNAPSHOT_LEVEL).cloned().unwrap_or_default();
        {
            let mut state = self.state();
            if let Some(level1) = listing.get(&1) {
                state.level1_reach = Some(ladder::max_txid(level1));
            }
            if listing.contains_key(&SNAPSHOT_LEVEL) {
                state.listed_snapshots = true;
                state.newest_snapshot = snapshots.iter().max_by_key(|f| f.id.max_txid).copied();
            }
        }
        if snapshot_due
            && ladder::snapshot_due(
                &snapshots,
                current.txid,
                now,
                self.started,
                self.config.snapshot_interval,
            )
        {
            let made = self.snapshot(replica, current).inspect_err(|_| {
                // A snapshot reads the whole database: not again at the next tick.
                let wait = self.config.snapshot_interval.min(Duration::from_secs(300));
                self.state().snapshot_not_before = Some(Instant::now() + wait);
            })?;
            listing.entry(SNAPSHOT_LEVEL).or_default().push(made);
            let mut state = self.state();
            state.newest_snapshot = Some(made);
            // What only states before it reach may go now.
            state.retention_next = Some(now);
        }
        if retention_due {
            let gone = ladder::to_delete(
                &listing,
                top,
                now,
                self.config.l0_retention,
                self.config.retention,
            );
            self.delete(replica, &gone)?;
            for files in listing.values_mut() {
                files.retain(|f| !gone.contains(&f.id));
            }
            let next = ladder::next_deletion(
                &listing,
                top,
                now,
                self.config.l0_retention,
                self.config.retention,
            );
            let mut state = self.state();
            state.retention_next = next.map(|t| t + RETENTION_MARGIN);
            state.deleted += gone.len() as u64;
        }
        Ok(())
    }

    /// The files of `levels`.
    fn list(&self, replica: &Replica, levels: Vec<u8>) -> Result<Listing> {
        let store = replica.store().clone();
        let task_store = store.clone();
        crate::fetch::bridged(
            &store,
            "listing the levels to compact",
            async move {
                let mut listing = Listing::new();
                for level in levels {
                    listing.insert(level, task_store.list_level(level).await?);
                }
                Ok(listing)
            },
            replica.timeout(),
        )
    }

    /// Merges `inputs` (a run of the level below) into one file of `level`.
    fn compact(&self, replica: &Replica, level: u8, inputs: &[ListedFile]) -> Result<ListedFile> {
        let began = Instant::now();
        let (first, last) = match (inputs.first(), inputs.last()) {
            (Some(f), Some(l)) => (f.id, l.id),
            _ => return Err(self.error("nothing to compact".into())),
        };
        let id = LtxFileId {
            level,
            min_txid: first.min_txid,
            max_txid: last.max_txid,
        };
        let files: Vec<(LtxFileId, u64)> = inputs.iter().map(|f| (f.id, f.size)).collect();
        let page_size = replica.current().page_size;
        let (task_store, url) = (replica.store().clone(), self.url.clone());
        let size = inputs.iter().map(|f| f.size).sum::<u64>();
        let made = self.write_merged(replica, id, size, async move {
            // A few files' headers and indexes at a time: a long run of level-0 files
            // (a writer catching up) must not flood the store, nor the commits behind.
            // Files this process stored are known already.
            let mut plan: Vec<Option<PlanFile>> =
                files.iter().map(|(id, _)| known_file(&url, id)).collect();
            let unknown: Vec<(LtxFileId, u64)> = (files.iter().zip(&plan))
                .filter(|(_, known)| known.is_none())
                .map(|(file, _)| *file)
                .collect();
            let mut read = Vec::with_capacity(unknown.len());
            for some in unknown.chunks(READ_AT_ONCE) {
                let files =
                    crate::replica::read_plan_files(&task_store, None, some, Some(page_size));
                read.extend(files.await?.files);
            }
            let mut read = read.into_iter();
            for slot in plan.iter_mut().filter(|slot| slot.is_none()) {
                *slot = read.next();
            }
            let plan = plan.into_iter().flatten().collect();
            Snapshot::from_plan(page_size, plan).map_err(|(file, source)| Error::Corrupt {
                url,
                file,
                source,
            })
        })?;
        if let Some(last) = self.state().last.get_mut(usize::from(level) - 1) {
            *last = Some(Run {
                at: SystemTime::now(),
                file: id,
                inputs: inputs.len(),
                took: began.elapsed(),
            });
        }
        Ok(made)
    }

    /// A full snapshot of `current` at level 9, from the pages the cache has and large
    /// ranges of the files that hold the rest.
    fn snapshot(&self, replica: &Replica, current: &Snapshot) -> Result<ListedFile> {
        let began = Instant::now();
        let id = LtxFileId {
            level: SNAPSHOT_LEVEL,
            min_txid: Txid(1),
            max_txid: current.txid,
        };
        let state = current.clone();
        let made = match self.write_merged(replica, id, current.size_bytes(), async { Ok(state) }) {
            Err(Error::Vanished { .. }) => {
                // The writer's page map names files retention has removed since (its own
                // level-0 files): plan this TXID afresh from what the store holds.
                let fresh = replica.snapshot_at(Target::Txid(current.txid))?;
                if fresh.txid != current.txid {
                    return Err(self.error(format!(
                        "TXID {} is no longer in the replica to snapshot",
                        current.txid
                    )));
                }
                let state = fresh.as_ref().clone();
                self.write_merged(replica, id, fresh.size_bytes(), async { Ok(state) })?
            }
            other => other?,
        };
        self.state().snapshot = Some(Run {
            at: SystemTime::now(),
            file: id,
            inputs: current.file_count(),
            took: began.elapsed(),
        });
        Ok(made)
    }

    /// Writes `id` from the page map `state` resolves to: made whole in memory and stored,
    /// or, when `size` (of its inputs) exceeds the buffer, streamed to the store in parts.
    fn write_merged(
        &self,
        replica: &Replica,
        id: LtxFileId,
        size: u64,
        state: impl std::future::Future<Output = Result<Snapshot>> + Send + 'static,
    ) -> Result<ListedFile> {
        let (store, cache, buffer) = (
            replica.store().clone(),
            replica.cache_handle(),
            self.config.buffer,
        );
        let task_store = store.clone();
        let merged = crate::fetch::bridged(
            &store,
            &format!("writing {id}"),
            async move {
                let state = state.await?;
                let upload = match size > buffer {
                    true => Some(task_store.begin_large(&id).await?),
                    false => None,
                };
                let span = (id.min_txid, id.max_txid);
                merge::merge(&task_store, &cache, &state, span, buffer, upload).await
            },
            // The store's timeout per request, and at least 4 MiB/s for a large file.
            replica.timeout() * 10 + Duration::from_secs(size >> 22),
        )?;
        self.create(replica, id, merged)
    }

    /// Creates `id` if its name is free. Taken already (an earlier run of this or another
    /// writer, from the same inputs): it is there, which is all that matters.
    fn create(&self, replica: &Replica, id: LtxFileId, merged: Merged) -> Result<ListedFile> {
        let size = match merged {
            Merged::Whole(bytes) => {
                let size = bytes.len() as u64;
                super::commit::create_or_taken(replica, id, bytes.into())?;
                size
            }
            Merged::Created(size) => size,
        };
        Ok(ListedFile {
            id,
            size,
            last_modified: SystemTime::now(),
        })
    }

    fn delete(&self, replica: &Replica, gone: &[LtxFileId]) -> Result<()> {
        if gone.is_empty() {
            return Ok(());
        }
        let store = replica.store().clone();
        let task_store = store.clone();
        let gone = gone.to_vec();
        crate::fetch::bridged(
            &store,
            "deleting compacted files",
            async move { task_store.delete_ltx_all(&gone).await },
            replica.timeout() * 4,
        )
    }

    fn error(&self, detail: String) -> Error {
        Error::Write {
            url: self.url.clone(),
            detail,
        }
    }

    /// `PRAGMA ltx_compaction`: JSON, the last file made per level, the last snapshot, how
    /// many files retention removed, and the last error.
    pub(crate) fn report(&self) -> String {
        let state = self.state();
        let run = |r: &Option<Run>| match r {
            None => "null".to_string(),
            Some(r) => format!(
                "{{\"at\":\"{}\",\"file\":\"{}\",\"inputs\":{},\"took_ms\":{}}}",
                humantime::format_rfc3339_millis(r.at),
                r.file.file_name(),
                r.inputs,
                r.took.as_millis()
            ),
        };
        let levels: Vec<String> = self
            .config
            .levels
            .iter()
            .zip(&state.last)
            .enumerate()
            .map(|(i, (interval, last))| {
                format!(
                    "{{\"level\":{},\"interval\":\"{}\",\"last\":{}}}",
                    i + 1,
                    humantime::format_duration(*interval),
                    run(last)
                )
            })
            .collect();
        format!(
            "{{\"levels\":[{}],\"snapshot\":{},\"deleted\":{},\"error\":{}}}",
            levels.join(","),
            run(&state.snapshot),
            state.deleted,
            state
                .error
                .as_ref()
                .map_or("null".to_string(), |e| format!("{e:?}"))
        )
    }
}
