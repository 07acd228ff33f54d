//! `Replica`: one per replica URL per process, shared by every connection that opens it:
//! one store, one page cache, one current snapshot.

use super::follower::{self, FollowState, FollowStatus};
use super::hydrator::{self, Hydration};
use super::snapshot::PlanFile;
use super::{LtxFileId, PlanError, SNAPSHOT_LEVEL, Snapshot, restore_plan, restore_plan_as_of};
use crate::cache::{DiskCache, PageCache, PageKey};
use crate::error::{Error, Result};
use crate::fetch::{Fetcher, bridged};
use crate::ltx::{self, HEADER_SIZE, Header, PageIndex, PageSize, Pgno, TailIndex, Txid};
use crate::store::{ListedFile, Store};
use futures::future::try_join_all;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

/// How much of a file's end to fetch first for its page index: at least Litestream's 32 KiB
/// estimate, and a 64th of the file, so that one GET holds the whole index of a large
/// snapshot too (an entry takes about 7 bytes; a page compresses to a kilobyte or more).
const INDEX_TAIL_MIN: u64 = 32 << 10;
const INDEX_TAIL_MAX: u64 = 1 << 20;

fn index_tail_bytes(file_size: u64) -> u64 {
    (file_size / 64).clamp(INDEX_TAIL_MIN, INDEX_TAIL_MAX)
}

/// How much of a file's start to fetch with its header: the first frames (page 1, the
/// schema, the roots of tables created with it) come in the same round trip, so a cold open
/// need not ask for them again.
const HEAD_BYTES: u64 = 64 << 10;

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

/// How much later than its LTX header time a file may be listed as modified (the upload
/// after a sync, retries), and how much earlier (S3 listings keep whole seconds).
const LISTED_AFTER_WRITTEN: Duration = Duration::from_secs(300);
const LISTED_BEFORE_WRITTEN: Duration = Duration::from_secs(1);

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
    /// Where to keep a local copy of the whole database (hydration), if anywhere.
    pub hydrate: Option<std::path::PathBuf>,
    /// Where to keep pages across processes and restarts (the disk cache), if anywhere.
    pub cache_dir: Option<std::path::PathBuf>,
    /// The disk cache's budget in bytes.
    pub cache_dir_size: u64,
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
    /// The process whose runtime runs the follower (a forked child starts its own).
    follower_pid: Mutex<Option<u32>>,
    hydration: Option<Hydration>,
    fetcher: Fetcher,
}

static REGISTRY: Mutex<Option<HashMap<String, Weak<Replica>>>> = Mutex::new(None);

impl Replica {
    /// The process's replica for `config.url`, opened (listed, planned, indexed) if no
    /// connection holds it yet. A later open with other settings shares the first one's.
    ///
    /// # Errors
    /// [`Error::Config`], [`Error::ReplicaNotFound`], [`Error::Plan`], [`Error::Corrupt`] or
    /// [`Error::Io`]: the replica cannot be read.
    pub fn open(config: ReplicaConfig) -> Result<Arc<Replica>> {
        // Held across the open so that two connections opening one URL build it once.
        let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        let map = registry.get_or_insert_with(HashMap::new);
        map.retain(|_, weak| weak.strong_count() > 0);
        if let Some(replica) = map.get(&config.url).and_then(Weak::upgrade) {
            return Ok(replica);
        }
        let store = Store::from_url(&config.url, config.timeout)?;
        let (snapshot, listed, warm) =
            Self::load_snapshot(&store, PlanTo::Target(Target::Latest), config.timeout)?;
        let hydration = config.hydrate.clone().map(Hydration::new);
        let cache = Arc::new(PageCache::new(config.cache_size));
        cache.insert_all(warm);
        let stats = Arc::new(ReplicaStats::default());
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
            follower_pid: Mutex::new(None),
            hydration,
            fetcher,
        });
        replica.set_follow_result(None);
        replica.ensure_follower();
        if replica.hydration.is_some() {
            hydrator::start(&replica, replica.config.poll);
        }
        map.insert(replica.config.url.clone(), Arc::downgrade(&replica));
        Ok(replica)
    }

    pub fn url(&self) -> &str {
        self.store.url()
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

    /// The disk cache, when `cache_dir` is set.
    pub fn disk_cache(&self) -> Option<&DiskCache> {
        self.fetcher.disk()
    }

    /// Starts the follower if this process has none running for this replica (first open,
    /// or the first read in a forked child). Cheap when it runs already.
    pub fn ensure_follower(self: &Arc<Self>) {
        let mut pid = self.follower_pid.lock().unwrap_or_else(|e| e.into_inner());
        let me = std::process::id();
        if *pid == Some(me) || self.config.poll.is_zero() {
            return;
        }
        if follower::start(self, self.config.poll).is_ok() {
            *pid = Some(me);
        }
    }

    /// The local copy, when `hydrate=` was given.
    pub(crate) fn hydration(&self) -> Option<&Hydration> {
        self.hydration.as_ref()
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.config.timeout
    }

    pub(crate) fn follows_in_this_process(&self) -> bool {
        *self.follower_pid.lock().unwrap_or_else(|e| e.into_inner()) == Some(std::process::id())
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

    /// Publishes `next` as the current snapshot if `base` still is (a re-plan may have
    /// replaced it meanwhile; the next poll then starts from that one).
    pub(crate) fn publish(&self, base: &Arc<Snapshot>, next: Arc<Snapshot>) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if current.txid == base.txid {
            *current = next;
        }
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
        let (snap, _, warm) =
            Self::load_snapshot(&self.store, PlanTo::Target(target), self.config.timeout)?;
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
    fn load_snapshot(store: &Store, target: PlanTo, timeout: Duration) -> Result<Loaded> {
        let mut attempt = 0;
        loop {
            match Self::load_snapshot_once(store, target, timeout) {
                Err(Error::Vanished { .. }) if attempt < REPLAN_ATTEMPTS => attempt += 1,
                other => return other,
            }
        }
    }

    fn load_snapshot_once(store: &Store, target: PlanTo, timeout: Duration) -> Result<Loaded> {
        let task_store = store.clone();
        let task = async move {
            let levels =
                try_join_all((0..=SNAPSHOT_LEVEL).map(|l| task_store.list_level(l))).await?;
            let listed: HashMap<LtxFileId, ListedFile> =
                levels.into_iter().flatten().map(|f| (f.id, f)).collect();
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
                    let before = written_by(&task_store, listed.values(), t).await?;
                    restore_plan_as_of(&before).map_err(|_| {
                        plan_error(PlanError::NothingBefore {
                            time: humantime::format_rfc3339_millis(t).to_string(),
                        })
                    })?
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
            let files = read_plan_files(&task_store, &plan, None).await?;
            let page_size = files.page_size.ok_or_else(|| Error::ReplicaNotFound {
                url: task_store.url().to_owned(),
                detail: "the restore plan is empty".into(),
            })?;
            let snapshot = Snapshot::from_plan(page_size, files.files);
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
                    PlanTo::Exactly(snapshot.txid),
                    self.config.timeout,
                )?;
                self.cache.insert_all(warm);
                let fresh = Arc::new(fresh);
                // Same TXID: it may stand in for the current snapshot too.
                self.publish(snapshot, fresh.clone());
                *snapshot = fresh;
                self.read_page_once(snapshot, pgno)
            }
            other => other,
        }
    }

    fn read_page_once(&self, snapshot: &Snapshot, pgno: Pgno) -> Result<Arc<[u8]>> {
        if let Some(page) = self.hydration.as_ref().and_then(|h| h.read(snapshot, pgno)) {
            self.stats.local_reads.fetch_add(1, Ordering::Relaxed);
            return Ok(page);
        }
        let Some(at) = snapshot.page(pgno) else {
            if pgno == snapshot.page_size.lock_page() {
                return Ok(vec![0u8; snapshot.page_size.as_usize()].into());
            }
            let file = snapshot.files.last().copied().unwrap_or(LtxFileId {
                level: 0,
                min_txid: snapshot.txid,
                max_txid: snapshot.txid,
            });
            return Err(Error::Corrupt {
                url: self.url().to_owned(),
                file,
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

/// The files written at or before `t`, by their LTX header time. A file listed as
/// modified well before `t` was written before it; one listed in the window around `t` has
/// its header read to know.
async fn written_by<'a>(
    store: &Store,
    listed: impl Iterator<Item = &'a ListedFile>,
    t: SystemTime,
) -> Result<Vec<LtxFileId>> {
    let mut sure = Vec::new();
    let mut unsure = Vec::new();
    for f in listed {
        if f.last_modified + LISTED_BEFORE_WRITTEN <= t {
            sure.push(f.id);
        } else if f.last_modified <= t + LISTED_AFTER_WRITTEN {
            unsure.push(f.id);
        }
    }
    let t_ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let headers = try_join_all(unsure.iter().map(|id| async move {
        let head = store.get_range(id, 0..HEADER_SIZE as u64).await?;
        Header::decode(&head)
            .map(|h| (*id, h.timestamp_ms))
            .map_err(|source| Error::Corrupt {
                url: store.url().to_owned(),
                file: *id,
                source,
            })
    }))
    .await?;
    sure.extend(
        headers
            .into_iter()
            .filter(|(_, ms)| *ms <= t_ms)
            .map(|(id, _)| id),
    );
    Ok(sure)
}

/// The headers and page indexes of files to apply, read all at once.
pub(crate) struct PlanFiles {
    /// The page size they share; `None` if there were no files.
    pub(crate) page_size: Option<PageSize>,
    pub(crate) files: Vec<PlanFile>,
    /// The first bytes of each file, fetched with its header, and the frames wholly in them.
    pub(crate) heads: Vec<Head>,
}

/// The pages of an LTX file that came with its header (decoded once, when read).
pub(crate) struct Head {
    file: LtxFileId,
    pages: Vec<(Pgno, Arc<[u8]>)>,
}

/// What a plan's load brings: the snapshot, the files listed, and the pages of the
/// snapshot that came with the files' headers (decoded, for the cache).
type Loaded = (Snapshot, Vec<LtxFileId>, Vec<(PageKey, Arc<[u8]>)>);

/// The pages of `heads` that are `snapshot`'s newest copies (a file holds a page once).
pub(crate) fn head_pages(snapshot: &Snapshot, heads: &[Head]) -> Vec<(PageKey, Arc<[u8]>)> {
    heads
        .iter()
        .flat_map(|head| {
            head.pages
                .iter()
                .filter(|(pgno, _)| snapshot.page(*pgno).is_some_and(|r| r.file == head.file))
                .map(|(pgno, page)| {
                    let key = PageKey {
                        file: head.file,
                        pgno: *pgno,
                    };
                    (key, page.clone())
                })
        })
        .collect()
}

/// Reads the header and index of each `(file, size)`, in parallel, and checks that they all
/// have one page size (`expected`, when the replica already has one).
///
/// # Errors
/// As [`read_header_and_index`]; [`Error::Corrupt`] for a file of another page size.
pub(crate) async fn read_plan_files(
    store: &Store,
    files: &[(LtxFileId, u64)],
    expected: Option<PageSize>,
) -> Result<PlanFiles> {
    let read = try_join_all(
        files
            .iter()
            .map(|(id, size)| read_header_and_index(store, *id, *size)),
    )
    .await?;
    let page_size = expected.or_else(|| read.first().map(|(h, _, _)| h.page_size));
    let mut out = Vec::with_capacity(read.len());
    let mut heads = Vec::with_capacity(read.len());
    for ((header, index, head), (id, _)) in read.into_iter().zip(files) {
        if Some(header.page_size) != page_size {
            return Err(Error::Corrupt {
                url: store.url().to_owned(),
                file: *id,
                source: ltx::Error::BadHeader(format!(
                    "page size {} differs from the replica's {}",
                    header.page_size,
                    page_size.map_or(0, |p| p.get())
                )),
            });
        }
        heads.push(Head {
            file: *id,
            pages: head,
        });
        out.push((*id, header.commit, header.timestamp_ms, index));
    }
    Ok(PlanFiles {
        page_size,
        files: out,
        heads,
    })
}

/// A file's header, page index and the pages wholly in its first bytes, decoded: one
/// ranged GET of its end (see [`index_tail_bytes`]) and one of its first [`HEAD_BYTES`] (one
/// GET of the whole file if that covers both), plus the rest of a larger index when needed.
/// A first-bytes frame that does not decode is left for a reader to fetch (and report).
async fn read_header_and_index(
    store: &Store,
    id: LtxFileId,
    size: u64,
) -> Result<(Header, PageIndex, Vec<(Pgno, Arc<[u8]>)>)> {
    let corrupt = |source| Error::Corrupt {
        url: store.url().to_owned(),
        file: id,
        source,
    };
    let tail_start = size.saturating_sub(index_tail_bytes(size));
    let mut whole_file_pages = None;
    let (tail, head) = if tail_start <= HEAD_BYTES {
        let all = store.get_range(&id, 0..size).await?;
        // The whole file is here: check all of it, file checksum included, keeping its pages.
        // (A block-encoded frame has no checksum of its own, so a flipped literal in a frame
        // read alone would go unnoticed; docs/ltx-format.md.)
        let mut pages = Vec::new();
        ltx::decode_file(&all, |pgno, page| {
            pages.push((pgno, Arc::from(page)));
            Ok(())
        })
        .map_err(corrupt)?;
        whole_file_pages = Some(pages);
        (all.clone(), all)
    } else {
        futures::future::try_join(
            store.get_range(&id, tail_start..size),
            store.get_range(&id, 0..HEAD_BYTES.max(HEADER_SIZE as u64)),
        )
        .await?
    };
    let header = Header::decode(&head).map_err(corrupt)?;
    if (header.min_txid, header.max_txid) != (id.min_txid, id.max_txid) {
        return Err(corrupt(ltx::Error::BadHeader(format!(
            "header says TXIDs {}-{}, the file name says otherwise",
            header.min_txid, header.max_txid
        ))));
    }
    let index = match PageIndex::from_tail(&tail, size).map_err(corrupt)? {
        TailIndex::Complete(index) => index,
        TailIndex::NeedFrom(span) => {
            let rest = store.get_range(&id, span.start..size).await?;
            match PageIndex::from_tail(&rest, size).map_err(corrupt)? {
                TailIndex::Complete(index) => index,
                TailIndex::NeedFrom(_) => {
                    return Err(corrupt(ltx::Error::BadIndex("index span moved".into())));
                }
            }
        }
    };
    index.check_header(&header).map_err(corrupt)?;
    let pages = whole_file_pages.unwrap_or_else(|| {
        index
            .entries()
            .iter()
            // Frames lie in page order: the first past the head ends the walk.
            .map_while(|e| {
                let frame = head.get(e.offset as usize..(e.offset + e.size) as usize)?;
                Some((e, frame))
            })
            .filter_map(|(e, frame)| {
                let page = ltx::decode_page(frame, e.pgno, header.page_size).ok()?;
                Some((e.pgno, page.into()))
            })
            .collect()
    });
    Ok((header, index, pages))
}
