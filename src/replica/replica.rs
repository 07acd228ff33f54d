//! `Replica`: one per replica URL per process, shared by every connection that opens it:
//! one store, one page cache, one current snapshot.

use super::follower::{FollowState, FollowStatus, Following};
use super::hydrator::{self, Hydration};
use super::plan_files::{head_pages, read_plan_files};
use super::time_travel::newest_written_by;
use super::{LtxFileId, PlanError, SNAPSHOT_LEVEL, Snapshot, restore_plan};
use crate::cache::{DiskCache, PageCache, PageKey};
use crate::error::{Error, Result};
use crate::fetch::{Fetcher, bridged};
use crate::ltx::{self, Pgno, Txid};
use crate::store::{ListedFile, Store};
use futures::future::try_join_all;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

/// How often a file vanishing under a plan makes us plan again before giving up.
const REPLAN_ATTEMPTS: u32 = 3;

/// Which state of the database to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The newest state (and follow it).
    Latest,
    /// The newest state at or before this TXID.
    Txid(Txid),
    /// The newest state written at or before this time.
    Time(SystemTime),
}

/// A plan target inside this module: a [`Target`], or exactly one TXID (a re-plan, which
/// must reproduce the state a reader already sees).
#[derive(Debug, Clone, Copy)]
enum PlanTo {
    Target(Target),
    Exactly(Txid),
}

/// What opening a replica needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    pub url: String,
    /// Memory cache budget in bytes.
    pub cache_size: u64,
    /// The longest wait for one answer from the store.
    pub timeout: Duration,
    /// How often the follower polls for new transactions; zero: never.
    pub poll: Duration,
    /// How long after the last read transaction began the follower stops polling (until
    /// the next one); zero: it polls while any connection is open.
    pub idle: Duration,
    /// Whether to fetch the whole database into the memory cache after the open.
    pub warm: Warm,
    /// Where to keep a local copy of the whole database (hydration), if anywhere.
    pub hydrate: Option<std::path::PathBuf>,
    /// Where to keep pages across processes and restarts (the disk cache), if anywhere.
    pub cache_dir: Option<std::path::PathBuf>,
    /// The disk cache's budget in bytes.
    pub cache_dir_size: u64,
    /// Write mode: a URL with no LTX files yet opens as an empty database (the first
    /// commit creates it) instead of failing.
    pub write: bool,
    /// Write mode's durability: `None` (`sync=commit`) stores each COMMIT before it returns;
    /// `Some(interval)` keeps commits in a local buffer file and ships them every interval.
    pub sync: Option<Duration>,
    /// The buffer file of `sync=<duration>`; `None`: one in the state directory
    /// (`$XDG_STATE_HOME`, else `~/.local/state`), named after the replica URL.
    pub buffer: Option<std::path::PathBuf>,
    /// Write mode: how the writer keeps the replica short (`compaction=`, ...).
    pub compaction: CompactionConfig,
    /// Write mode: the writers' lease's TTL (`lease_ttl=`); `None`: no lease, racing
    /// writers meet only at COMMIT.
    pub lease_ttl: Option<Duration>,
}

/// The writer's compaction ladder and retention, with Litestream 0.5's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionConfig {
    /// Level `i + 1` is compacted from level `i` every `levels[i]`; empty: no compaction
    /// (nor snapshots or retention).
    pub levels: Vec<Duration>,
    /// A full snapshot (level 9) this often.
    pub snapshot_interval: Duration,
    /// Level-0 files go this long after a level-1 file covers them.
    pub l0_retention: Duration,
    /// Snapshots older than this go (the newest stays), and what only they reach.
    pub retention: Duration,
    /// The most bytes of input frames a compaction holds at once.
    pub buffer: u64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            levels: vec![
                Duration::from_secs(30),
                Duration::from_secs(300),
                Duration::from_secs(3600),
            ],
            snapshot_interval: Duration::from_secs(24 * 3600),
            l0_retention: Duration::from_secs(300),
            retention: Duration::from_secs(24 * 3600),
            buffer: 16 << 20,
        }
    }
}

/// Fetching every page into the memory cache after the open (`warm=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warm {
    /// When the database takes at most half the memory cache.
    Auto,
    On,
    Off,
}

impl Warm {
    pub fn parse(s: &str) -> Option<Warm> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(Warm::Auto),
            "on" | "1" | "true" => Some(Warm::On),
            "off" | "0" | "false" => Some(Warm::Off),
            _ => None,
        }
    }
}

/// Counters for `PRAGMA ltx_stats`.
#[derive(Debug, Default)]
pub struct ReplicaStats {
    pub pages_read: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    /// Plans redone because a listed file had vanished.
    pub replans: AtomicU64,
    /// Snapshots the follower published.
    pub follow_advances: AtomicU64,
    /// Pages read from the hydrated local copy.
    pub local_reads: AtomicU64,
    /// Pages brought along by a miss's ranged GET (readahead).
    pub pages_read_ahead: AtomicU64,
    /// Pages a scan's prefetch brought (the rest of an interior page's children).
    pub pages_prefetched: AtomicU64,
    /// Polls that listed the compacted levels to bridge a gap in level 0.
    pub follow_bridges: AtomicU64,
    /// Of `follow_advances`, those from the files the writers' lease named (no LIST).
    pub named_advances: AtomicU64,
    /// Read transactions that waited for a poll (the state was older than `poll`).
    pub fresh_waits: AtomicU64,
    /// Warm-up: pages it is to bring, pages brought, and whether it is over.
    pub warm_total: AtomicU64,
    pub warm_pages: AtomicU64,
    pub warm_started: std::sync::atomic::AtomicBool,
    pub warm_done: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
pub struct Replica {
    config: ReplicaConfig,
    store: Store,
    cache: Arc<PageCache>,
    current: RwLock<Arc<Snapshot>>,
    stats: Arc<ReplicaStats>,
    follow: Mutex<FollowState>,
    pub(crate) follow_status: Mutex<FollowStatus>,
    /// Who follows, and when a read last began.
    following: Mutex<Following>,
    /// Held for the length of a poll: a reader that must wait for one joins the one under
    /// way instead of starting another.
    pub(crate) poll_gate: futures::lock::Mutex<()>,
    hydration: Option<Hydration>,
    fetcher: Fetcher,
    /// Background work (warm-up) holds this weakly, and stops when the replica is gone.
    alive: Arc<()>,
}

/// The open replicas, one slot per URL. A slot's lock is held across its replica's open, so
/// that two connections opening one URL build it once, while opens of other URLs (other
/// threads, other tenants) go on at the same time.
type Slot = Arc<Mutex<Weak<Replica>>>;
static REGISTRY: Mutex<Option<HashMap<String, Slot>>> = Mutex::new(None);

/// The slot of `url`, made if missing; slots of closed replicas nobody is opening go.
fn registry_slot(url: &str) -> Slot {
    let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let map = registry.get_or_insert_with(HashMap::new);
    map.retain(|_, slot| {
        Arc::strong_count(slot) > 1
            || slot
                .try_lock()
                .map_or(true, |replica| replica.strong_count() > 0)
    });
    map.entry(url.to_owned()).or_default().clone()
}

impl Replica {
    /// The process's replica for `config.url`, opened (listed, planned, indexed) if no
    /// connection holds it yet. A later open with other settings shares the first one's.
    ///
    /// # Errors
    /// [`Error::Config`], [`Error::ReplicaNotFound`], [`Error::Plan`], [`Error::Corrupt`] or
    /// [`Error::Io`]: the replica cannot be read.
    pub fn open(config: ReplicaConfig) -> Result<Arc<Replica>> {
        let slot = registry_slot(&config.url);
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(replica) = slot.upgrade() {
            return Ok(replica);
        }
        let listed_at = std::time::Instant::now();
        let store = Store::from_url(&config.url, config.timeout)?;
        let disk = match &config.cache_dir {
            Some(root) => Some(Arc::new(
                DiskCache::open(root, &config.url, config.cache_dir_size).map_err(|e| {
                    Error::Local {
                        path: root.display().to_string(),
                        detail: format!("cannot make the cache directory: {e}"),
                    }
                })?,
            )),
            None => None,
        };
        let (snapshot, listed, warm) = Self::load_snapshot(
            &store,
            disk.clone(),
            PlanTo::Target(Target::Latest),
            config.timeout,
            config.write,
        )?;
        let hydration = config.hydrate.clone().map(Hydration::new);
        let cache = Arc::new(PageCache::new(config.cache_size));
        cache.insert_all(warm);
        let stats = Arc::new(ReplicaStats::default());
        let fetcher = Fetcher::new(
            store.clone(),
            cache.clone(),
            disk,
            stats.clone(),
            config.cache_size,
            config.timeout,
        );
        let replica = Arc::new(Replica {
            cache,
            config,
            store,
            current: RwLock::new(Arc::new(snapshot)),
            stats,
            follow: Mutex::new(FollowState::after_listing(&listed)),
            follow_status: Mutex::new(FollowStatus::default()),
            following: Mutex::new(Following::default()),
            poll_gate: futures::lock::Mutex::new(()),
            hydration,
            fetcher,
            alive: Arc::new(()),
        });
        replica.set_follow_result(None);
        // The open listed every level: for the first reads it stands for a poll.
        replica
            .follow_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_attempt = Some(listed_at);
        replica.ensure_follower();
        if replica.hydration.is_some() {
            hydrator::start(&replica, replica.config.poll);
        } else if replica.should_warm() {
            replica
                .fetcher
                .warm(replica.current(), Arc::downgrade(&replica.alive));
        }
        *slot = Arc::downgrade(&replica);
        Ok(replica)
    }

    pub fn url(&self) -> &str {
        self.store.url()
    }

    /// The warm-up's state for `ltx_stats`: `off`, `running` or `done`.
    pub fn warm_state(&self) -> &'static str {
        match (
            self.stats.warm_started.load(Ordering::Relaxed),
            self.stats.warm_done.load(Ordering::Relaxed),
        ) {
            (false, _) => "off",
            (true, false) => "running",
            (true, true) => "done",
        }
    }

    /// Whether to fetch the whole database after the open: asked, or (`auto`) when it takes
    /// at most half the memory cache, so that it stays whole there with room to spare.
    fn should_warm(&self) -> bool {
        match self.config.warm {
            Warm::On => true,
            Warm::Off => false,
            Warm::Auto => self.current().size_bytes() <= self.config.cache_size / 2,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn stats(&self) -> &ReplicaStats {
        &self.stats
    }

    pub fn cache(&self) -> &PageCache {
        &self.cache
    }

    /// The memory cache, to hold beyond a borrow of the replica (compaction's tasks).
    pub(crate) fn cache_handle(&self) -> Arc<PageCache> {
        self.cache.clone()
    }

    /// The disk cache, when `cache_dir` is set.
    pub fn disk_cache(&self) -> Option<&DiskCache> {
        self.fetcher.disk()
    }

    /// The local copy, when `hydrate=` was given.
    pub(crate) fn hydration(&self) -> Option<&Hydration> {
        self.hydration.as_ref()
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.config.timeout
    }

    pub(crate) fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    pub(crate) fn following(&self) -> std::sync::MutexGuard<'_, Following> {
        self.following.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn follow_state(&self) -> FollowState {
        self.follow
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn put_follow_state(&self, state: FollowState) {
        *self.follow.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// Publishes `next` as the current snapshot if `base` still is, at the very same
    /// version (a re-plan may have replaced it meanwhile; the next poll then starts from
    /// that one); `false` if not. Not merely the same database: a re-plan of a state from
    /// before an upload must not take the place of the uploaded one.
    pub(crate) fn publish(&self, base: &Arc<Snapshot>, next: Arc<Snapshot>) -> bool {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let still = current.version() == base.version();
        if still {
            *current = next;
        }
        still
    }

    /// Seconds since the last successful poll, and the follower's last error.
    pub fn follow_status(&self) -> (Option<f64>, Option<String>) {
        let f = self.follow_status.lock().unwrap_or_else(|e| e.into_inner());
        (
            f.last_ok.map(|t| t.elapsed().as_secs_f64()),
            f.error.clone(),
        )
    }

    /// The database at `target` (time travel): planned, indexed and returned, not
    /// published; the newest state is [`Replica::current`].
    ///
    /// # Errors
    /// As opening: [`Error::Plan`] when nothing in the replica reaches back to `target`.
    pub fn snapshot_at(&self, target: Target) -> Result<Arc<Snapshot>> {
        if target == Target::Latest {
            return Ok(self.current());
        }
        let (snap, _, warm) = Self::load_snapshot(
            &self.store,
            self.fetcher.disk_arc(),
            PlanTo::Target(target),
            self.config.timeout,
            false,
        )?;
        self.cache.insert_all(warm);
        Ok(Arc::new(snap))
    }

    /// The newest snapshot; a read transaction pins it.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Lists every level, plans the state at `target` (the newest if `None`) and reads the
    /// plan's page indexes, all levels and all files at once. A file that vanishes between
    /// the listing and the read (compaction, retention) means: list and plan again.
    fn load_snapshot(
        store: &Store,
        disk: Option<Arc<DiskCache>>,
        target: PlanTo,
        timeout: Duration,
        allow_empty: bool,
    ) -> Result<Loaded> {
        let mut attempt = 0;
        loop {
            match Self::load_snapshot_once(store, disk.clone(), target, timeout, allow_empty) {
                Err(Error::Vanished { .. }) if attempt < REPLAN_ATTEMPTS => attempt += 1,
                other => return other,
            }
        }
    }

    fn load_snapshot_once(
        store: &Store,
        disk: Option<Arc<DiskCache>>,
        target: PlanTo,
        timeout: Duration,
        allow_empty: bool,
    ) -> Result<Loaded> {
        let task_store = store.clone();
        let task = async move {
            let levels =
                try_join_all((0..=SNAPSHOT_LEVEL).map(|l| task_store.list_level(l))).await?;
            let listed: HashMap<LtxFileId, ListedFile> =
                levels.into_iter().flatten().map(|f| (f.id, f)).collect();
            if listed.is_empty() && allow_empty {
                // A database yet to be written: 4096-byte pages until the first commit says.
                let empty = Snapshot::from_plan(crate::ltx::PageSize::DEFAULT, Vec::new())
                    .map_err(|(file, source)| Error::Corrupt {
                        url: task_store.url().to_owned(),
                        file,
                        source,
                    })?;
                return Ok((empty, Vec::new(), Vec::new()));
            }
            if listed.is_empty() {
                return Err(Error::ReplicaNotFound {
                    url: task_store.url().to_owned(),
                    detail: "no LTX files found (is litestream replicating to this URL?)".into(),
                });
            }
            let ids: Vec<LtxFileId> = listed.keys().copied().collect();
            let plan_error = |source| Error::Plan {
                url: task_store.url().to_owned(),
                source,
            };
            let plan = match target {
                PlanTo::Target(Target::Latest) => restore_plan(&ids, None).map_err(plan_error)?,
                PlanTo::Target(Target::Txid(t)) => {
                    restore_plan(&ids, Some(t)).map_err(plan_error)?
                }
                PlanTo::Target(Target::Time(t)) => {
                    match newest_written_by(&task_store, listed.keys(), t).await? {
                        Some(txid) => restore_plan(&ids, Some(txid)).map_err(plan_error)?,
                        None => {
                            return Err(plan_error(PlanError::NothingBefore {
                                time: humantime::format_rfc3339_millis(t).to_string(),
                            }));
                        }
                    }
                }
                PlanTo::Exactly(t) => {
                    let plan = restore_plan(&ids, Some(t)).map_err(plan_error)?;
                    if plan.last().map(|f| f.max_txid) != Some(t) {
                        return Err(Error::Io {
                            url: task_store.url().to_owned(),
                            what: format!("reading the database as of TXID {t}"),
                            detail: "its files were compacted away while it was being read; retry the transaction".into(),
                        });
                    }
                    plan
                }
            };
            let plan: Vec<(LtxFileId, u64)> = plan
                .into_iter()
                .map(|id| (id, listed.get(&id).map_or(0, |f| f.size)))
                .collect();
            let files = read_plan_files(&task_store, disk.as_deref(), &plan, None).await?;
            let page_size = files.page_size.ok_or_else(|| Error::ReplicaNotFound {
                url: task_store.url().to_owned(),
                detail: "the restore plan is empty".into(),
            })?;
            let snapshot =
                Snapshot::from_plan(page_size, files.files).map_err(|(file, source)| {
                    Error::Corrupt {
                        url: task_store.url().to_owned(),
                        file,
                        source,
                    }
                })?;
            let warm = head_pages(&snapshot, &files.heads);
            Ok((snapshot, ids, warm))
        };
        // Listing, then headers and indexes, then the rest of a large index: three steps,
        // each bounded by `timeout` in the store.
        bridged(store, "opening the replica", task, timeout * 3)
    }

    /// Page `pgno` of `snapshot`: from the cache, or one ranged GET of its frame.
    ///
    /// If the file holding it has vanished (compacted or pruned since the snapshot was
    /// planned), the database at the same TXID is planned again from the files there now,
    /// `snapshot` is replaced by that plan (same TXID, so the same content: safe even inside
    /// a read transaction) and the read is tried once more.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if no file holds the page or its frame does not decode to it;
    /// [`Error::Io`] if the store fails, or no files reach the snapshot's TXID any more.
    pub fn read_page(&self, snapshot: &mut Arc<Snapshot>, pgno: Pgno) -> Result<Arc<[u8]>> {
        self.stats.pages_read.fetch_add(1, Ordering::Relaxed);
        match self.read_page_once(snapshot, pgno) {
            Err(Error::Vanished { .. }) => {
                self.stats.replans.fetch_add(1, Ordering::Relaxed);
                let (fresh, _, warm) = Self::load_snapshot(
                    &self.store,
                    self.fetcher.disk_arc(),
                    PlanTo::Exactly(snapshot.txid),
                    self.config.timeout,
                    false,
                )?;
                self.cache.insert_all(warm);
                let fresh = Arc::new(fresh.carrying_local(snapshot));
                // Same TXID: it may stand in for the current snapshot too.
                self.publish(snapshot, fresh.clone());
                *snapshot = fresh;
                self.read_page_once(snapshot, pgno)
            }
            other => other,
        }
    }

    fn read_page_once(&self, snapshot: &Snapshot, pgno: Pgno) -> Result<Arc<[u8]>> {
        if let Some(page) = snapshot.local_page(pgno) {
            return Ok(page);
        }
        if snapshot.local.is_some() && pgno.get() > snapshot.commit {
            // Grown by a local commit that did not write it (never, from SQLite): zeros.
            return Ok(vec![0u8; snapshot.page_size.as_usize()].into());
        }
        if let Some(page) = self.hydration.as_ref().and_then(|h| h.read(snapshot, pgno)) {
            self.stats.local_reads.fetch_add(1, Ordering::Relaxed);
            return Ok(page);
        }
        let Some(at) = snapshot.page(pgno) else {
            if pgno == snapshot.page_size.lock_page() {
                return Ok(vec![0u8; snapshot.page_size.as_usize()].into());
            }
            return Err(Error::Corrupt {
                url: self.url().to_owned(),
                file: snapshot.last_file,
                source: ltx::Error::SnapshotIncomplete { missing: pgno },
            });
        };
        let key = PageKey {
            file: at.file,
            pgno,
        };
        if let Some(page) = self.cache.get(&key) {
            self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            self.fetcher.observe(snapshot, pgno, &page, false);
            return Ok(page);
        }
        self.stats.cache_misses.fetch_add(1, Ordering::Relaxed);
        self.fetcher.miss(snapshot, pgno, at)
    }
}

/// What a plan's load brings: the snapshot, the files listed, and the pages of the
/// snapshot that came with the files' headers (decoded, for the cache).
type Loaded = (Snapshot, Vec<LtxFileId>, Vec<(PageKey, Arc<[u8]>)>);
