//! `sync=<duration>`: COMMIT returns once the transaction is in the buffer file (fsync'd);
//! every interval, the transactions buffered since the last upload become one level-0 LTX
//! file at the next TXID, created conditionally as in `sync=commit` (one TXID per upload, as
//! Litestream's own sync makes one per interval).
//!
//! Until it is stored, a buffered transaction lives in the replica's current snapshot as
//! local pages over the stored files ([`LocalPages`]), so every connection of the process
//! reads it; the follower leaves such a snapshot alone. An upload in flight does not stop
//! commits: the batch is the state when it was built, and the commits after it stay local.
//!
//! Nothing acknowledged is dropped silently: an upload that another writer beat keeps every
//! transaction in the buffer, and refuses later commits with a sentence naming it; the next
//! open ships what a crash left in the buffer, or fails, naming the buffer, if the replica
//! has moved on meanwhile.

use super::DirtyPages;
use super::buffer_file::{BufferFile, CommitRecord, HEADER_SIZE, Record};
use super::commit::{Built, applied, commit_size, refuse_wal, store};
use super::private_dir;
use crate::error::{Error, Result};
use crate::io::Wake;
use crate::ltx::{Pgno, Txid};
use crate::replica::{LocalPages, Replica, Snapshot};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Numbers local commits across the process (never reused: see [`Snapshot::counter`]).
static NEXT_SEQ: AtomicU64 = AtomicU64::new(1);

/// The buffered write state of one replica in this process, shared by its writable
/// connections.
#[derive(Debug)]
pub(crate) struct Buffered {
    url: String,
    inner: Mutex<Inner>,
    /// One upload at a time: the task's, a closing connection's, recovery's. (Two at
    /// once would both find the batch in doubt theirs, and the second would start the
    /// buffer over from an offset of a file the first had replaced.)
    shipping: Mutex<()>,
    holders: AtomicUsize,
    /// Whether its upload task runs (one at a time).
    running: AtomicBool,
    /// Wakes the upload task: a commit buffered, the last connection gone.
    wake: Arc<Wake>,
    interval: Duration,
}

impl Drop for Buffered {
    fn drop(&mut self) {
        self.wake.wake();
    }
}

#[derive(Debug)]
struct Inner {
    file: BufferFile,
    /// The upload built and not known to be stored: its file, where the records after its
    /// batch record begin, and the last local commit it holds.
    in_doubt: Option<(Built, u64, u64)>,
    /// Another writer took the TXID an upload was for: every buffered transaction stays
    /// in the buffer, and commits are refused with this sentence.
    failed: Option<String>,
    /// The last upload's failure, for `ltx_last_error` (cleared by a stored upload).
    last_error: Option<String>,
}

type Registry = HashMap<String, Weak<Buffered>>;
static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

impl Buffered {
    /// The buffered write state of `replica`, opened (and what a crash left in its buffer
    /// shipped) by the first writable connection, with uploads every `interval`.
    ///
    /// # Errors
    /// [`Error::Local`] if the buffer cannot be used; [`Error::Write`] if it holds
    /// transactions the replica can no longer take; the store's errors while shipping them.
    pub(crate) fn of(
        replica: &Arc<Replica>,
        path: Option<&Path>,
        interval: Duration,
    ) -> Result<Arc<Buffered>> {
        let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        let map = registry.get_or_insert_with(HashMap::new);
        map.retain(|_, b| b.strong_count() > 0);
        let url = replica.url().to_owned();
        if let Some(found) = map.get(&url).and_then(Weak::upgrade) {
            found.holders.fetch_add(1, Ordering::AcqRel);
            found.start_uploads(replica)?;
            return Ok(found);
        }
        let path = match path {
            Some(path) => path.to_path_buf(),
            None => {
                // The default place is ours to keep private (a host-given buffer= is the
                // host's choice).
                let path = default_path(&url);
                if let Some(dir) = path.parent() {
                    private_dir::ensure(dir).map_err(|detail| Error::Local {
                        path: path.display().to_string(),
                        detail,
                    })?;
                }
                path
            }
        };
        let (file, records) = BufferFile::open(&path, &url, replica.current().txid)?;
        let buffered = Arc::new(Buffered {
            url: url.clone(),
            inner: Mutex::new(Inner {
                file,
                in_doubt: None,
                failed: None,
                last_error: None,
            }),
            shipping: Mutex::new(()),
            holders: AtomicUsize::new(1),
            running: AtomicBool::new(false),
            wake: Arc::default(),
            interval,
        });
        buffered.recover(replica, records)?;
        map.insert(url, Arc::downgrade(&buffered));
        buffered.start_uploads(replica)?;
        Ok(buffered)
    }

    /// Starts the task that uploads, an interval after a commit, what is buffered, unless
    /// it runs (it stops when the last connection has gone; a connection that comes back
    /// after that starts another). It waits on the commits, not on a timer: an idle
    /// replica makes no requests.
    fn start_uploads(self: &Arc<Self>, replica: &Arc<Replica>) -> Result<()> {
        if self.running.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let task = ship_after_commits(
            self.interval,
            Arc::downgrade(self),
            Arc::downgrade(replica),
            self.wake.clone(),
        );
        crate::io::spawn(task).map_err(|e| {
            self.running.store(false, Ordering::Release);
            Error::Write {
                url: replica.url().to_owned(),
                detail: format!("cannot start the upload task: {e}"),
            }
        })
    }

    /// Whether its task goes on: a connection holds it (see the compactor's).
    fn keeps_running(&self) -> bool {
        if self.holders.load(Ordering::Acquire) > 0 {
            return true;
        }
        self.running.store(false, Ordering::Release);
        self.holders.load(Ordering::Acquire) > 0 && !self.running.swap(true, Ordering::AcqRel)
    }

    /// Whether a writable connection of this process holds `url`'s buffered write state.
    pub(crate) fn active(url: &str) -> bool {
        let registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        registry
            .as_ref()
            .and_then(|map| map.get(url))
            .and_then(Weak::upgrade)
            .is_some_and(|b| b.holders.load(Ordering::Acquire) > 0)
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why uploads fail, if they do.
    pub(crate) fn last_error(&self) -> Option<String> {
        let inner = self.inner();
        inner.failed.clone().or_else(|| inner.last_error.clone())
    }

    /// A connection is done with it: the last one ships what is buffered before it goes
    /// (what cannot be shipped stays in the buffer for the next open).
    pub(crate) fn release(&self, replica: &Arc<Replica>) {
        let last = self.holders.fetch_sub(1, Ordering::AcqRel) == 1;
        self.wake.wake();
        if last {
            // An upload in doubt first, then what came after it; what the store does not
            // take (it fails, or another writer was first) the buffer keeps for the next
            // open.
            for _ in 0..2 {
                if replica.current().local.is_none()
                    || self.ship(replica).is_err()
                    || self.inner().failed.is_some()
                {
                    break;
                }
            }
        }
    }

    /// COMMIT: the transaction `dirty` made over `base` goes into the buffer (durably), then
    /// into the replica's current snapshot as local pages; returns that snapshot.
    ///
    /// # Errors
    /// [`Error::Conflict`] if the current state is no longer `base`; [`Error::Write`] after
    /// an upload was beaten (the buffer keeps everything), or for a WAL-mode header;
    /// [`Error::Local`] if the buffer cannot be written.
    pub(crate) fn commit(
        &self,
        replica: &Replica,
        base: &Arc<Snapshot>,
        dirty: &DirtyPages,
    ) -> Result<Arc<Snapshot>> {
        let mut inner = self.inner();
        if let Some(failed) = &inner.failed {
            return Err(Error::Write {
                url: self.url.clone(),
                detail: failed.clone(),
            });
        }
        let conflict = || Error::Conflict {
            url: self.url.clone(),
            txid: base.txid.next(),
        };
        // The state the transaction read, or the same database since uploaded: the commit
        // goes over the current one (its stored part may be newer than `base`'s).
        let current = replica.current();
        if !current.same_state(base) {
            return Err(conflict());
        }
        refuse_wal(&self.url, dirty.page1())?;
        let page_size = dirty.page_size(&current);
        let commit = commit_size(dirty, &current);
        let lock_page = page_size.lock_page();
        let record = CommitRecord {
            page_size,
            commit,
            timestamp_ms: now_ms(),
            // Whole in memory, spilled pages too: the buffer's commits are held as local
            // pages until they ship.
            pages: dirty
                .pages()
                .filter(|p| {
                    p.as_ref()
                        .map_or(true, |(pgno, _)| pgno.get() <= commit && *pgno != lock_page)
                })
                .map(|p| p.map(|(pgno, data)| (pgno, data.into_owned().into_boxed_slice())))
                .collect::<std::result::Result<_, String>>()
                .map_err(|detail| Error::Write {
                    url: self.url.clone(),
                    detail,
                })?,
        };
        if current.local.is_none() && inner.file.base() != current.txid {
            // The first commit since the buffer was empty, and the replica has moved on
            // since (the follower): the buffer's commits start from here.
            inner.file.restart(current.txid, u64::MAX)?;
        }
        let before = inner.file.len();
        inner.file.append_commit(&record)?;
        let next = Arc::new(over(&current, record));
        if !replica.publish(&current, next.clone()) {
            // A poll published another writer's transaction meanwhile.
            inner.file.truncate(before)?;
            return Err(conflict());
        }
        self.wake.wake();
        Ok(next)
    }

    /// Uploads what is buffered as the next TXID (or the upload in doubt first).
    ///
    /// # Errors
    /// The store's, or the buffer's; an upload beaten by another writer fails this and
    /// every later commit.
    pub(crate) fn ship(&self, replica: &Replica) -> Result<()> {
        let _one_at_a_time = self.shipping.lock().unwrap_or_else(|e| e.into_inner());
        let (built, keep_from, up_to) = {
            let mut inner = self.inner();
            if inner.failed.is_some() {
                return Ok(());
            }
            match inner.in_doubt.clone() {
                Some(batch) => batch,
                None => {
                    let current = replica.current();
                    let Some(local) = current.local.clone() else {
                        return Ok(());
                    };
                    let built = batch_of(&self.url, &current, &local)?;
                    inner.file.append_batch(&built.bytes)?;
                    let batch = (built, inner.file.len(), local.seq);
                    inner.in_doubt = Some(batch.clone());
                    batch
                }
            }
        };
        let outcome = store(replica, &built);
        let mut inner = self.inner();
        match outcome {
            Ok(true) => {
                self.stored(replica, &mut inner, &built, keep_from, up_to)?;
                inner.in_doubt = None;
                inner.last_error = None;
                Ok(())
            }
            Ok(false) => {
                let failed = format!(
                    "another writer stored TXID {} first: the transactions committed here since TXID {} were not stored; they are kept in the write buffer {} (the next open fails until it is moved away)",
                    built.id.max_txid,
                    inner.file.base(),
                    inner.file.path().display()
                );
                inner.failed = Some(failed.clone());
                Err(Error::Write {
                    url: self.url.clone(),
                    detail: failed,
                })
            }
            Err(e) => {
                inner.last_error = Some(format!("uploading buffered transactions: {e}"));
                Err(e)
            }
        }
    }

    /// The upload `built` is stored: it becomes the stored state under the commits made
    /// after it, and the buffer starts over with those.
    fn stored(
        &self,
        replica: &Replica,
        inner: &mut Inner,
        built: &Built,
        keep_from: u64,
        up_to: u64,
    ) -> Result<()> {
        loop {
            let current = replica.current();
            let (shipped, rest) = match current.local.as_deref() {
                Some(local) => split_local(local, up_to),
                None => (Vec::new(), None),
            };
            // The cache takes the file's pages as they were uploaded (page 1 aside: its
            // counter differs, and it is read from the file when needed).
            let lock_page = built.page_size.lock_page();
            let pages = shipped
                .iter()
                .filter(|(pgno, _)| {
                    pgno.get() > 1 && pgno.get() <= built.commit && *pgno != lock_page
                })
                .map(|(pgno, data)| (*pgno, &data[..]));
            let stored = applied(replica, &current.stored(), &built.meta(), pages)?;
            let mut next = stored.with_local(rest.map(Arc::new));
            next.last_local = current.last_local;
            let next = Arc::new(next);
            // Commits wait for `inner`; only a re-plan at the same state may publish
            // meanwhile, and it keeps the local pages: try again on it.
            if replica.publish(&current, next) {
                break;
            }
        }
        super::compact::wake(replica.url());
        inner.file.restart(built.id.max_txid, keep_from)
    }

    /// At the first open: finds out about an upload a crash left in doubt, and ships the
    /// commits buffered after it, if the replica is still where they start.
    fn recover(&self, replica: &Arc<Replica>, records: Vec<(Record, u64)>) -> Result<()> {
        let mut inner = self.inner();
        if records.is_empty() {
            return Ok(());
        }
        replica.refresh();
        let mut base = inner.file.base();
        let mut keep_from = HEADER_SIZE;
        let mut pending = Vec::new();
        for (record, end) in records {
            match record {
                Record::Commit(c) => pending.push(c),
                Record::Batch(bytes) => {
                    let built = Built::from_bytes(&self.url, bytes)?;
                    if built.id.max_txid != base.next() || !self.was_stored(replica, &built)? {
                        return Err(self.moved_on(&inner, replica.current().txid));
                    }
                    base = built.id.max_txid;
                    pending.clear();
                    keep_from = end;
                }
            }
        }
        if base != inner.file.base() {
            // Uploads stored just now (their TXIDs were still free): read them as stored.
            replica.refresh();
        }
        let current = replica.current();
        if pending.is_empty() {
            return inner.file.restart(current.txid, u64::MAX);
        }
        if current.txid != base || current.local.is_some() {
            return Err(self.moved_on(&inner, current.txid));
        }
        let state = pending
            .into_iter()
            .fold(current.clone(), |state, c| Arc::new(over(&state, c)));
        if !replica.publish(&current, state) {
            // Another writer's TXID came in meanwhile: these commits cannot go over it.
            return Err(self.moved_on(&inner, replica.current().txid));
        }
        inner.file.restart(base, keep_from)?;
        drop(inner);
        self.ship(replica)
    }

    /// Whether an upload left in doubt by a crash is in the store (stored now if its TXID
    /// is still free).
    fn was_stored(&self, replica: &Replica, built: &Built) -> Result<bool> {
        let now = replica.current().txid;
        if now.next() == built.id.max_txid {
            return store(replica, built);
        }
        if now < built.id.max_txid {
            // Behind the batch's base (the replica was made again under this URL): storing
            // it would leave a gap no reader can cross.
            return Ok(false);
        }
        // The replica is past it: the file there is ours or not (if compaction removed
        // it already, nobody can tell: say so rather than guess).
        let (store, id, ours) = (replica.store().clone(), built.id, built.bytes.clone());
        let task_store = store.clone();
        let found = crate::fetch::bridged(
            &store,
            &format!("reading TXID {}", id.max_txid),
            async move { super::commit::read_back(&task_store, &id, &ours).await },
            // A damaged answer is read again, up to three times.
            replica.timeout() * 3,
        )?;
        Ok(found == built.bytes)
    }

    /// The open-time sentence for a buffer the replica can no longer take.
    fn moved_on(&self, inner: &Inner, now: Txid) -> Error {
        Error::Write {
            url: self.url.clone(),
            detail: format!(
                "the write buffer {} holds transactions committed here on TXID {}, but the replica has moved on to TXID {now}: they were not stored and cannot be; move that file away to open the replica without them",
                inner.file.path().display(),
                inner.file.base(),
            ),
        }
    }
}

/// The state after `record` over `base`: its pages as local pages over the stored files.
fn over(base: &Snapshot, record: CommitRecord) -> Snapshot {
    let seq = NEXT_SEQ.fetch_add(1, Ordering::Relaxed);
    let mut local = base.local.as_deref().cloned().unwrap_or(LocalPages {
        seq,
        commits: 0,
        page_size: record.page_size,
        commit: record.commit,
        pages: BTreeMap::new(),
    });
    local.pages.retain(|pgno, _| pgno.get() <= record.commit);
    for (pgno, data) in record.pages {
        local.pages.insert(pgno, (seq, Arc::from(data)));
    }
    local.seq = seq;
    local.commits += 1;
    local.commit = record.commit;
    local.page_size = record.page_size;
    base.stored().with_local(Some(Arc::new(local)))
}

type Page = (Pgno, Arc<[u8]>);

/// The pages of `local` last written up to local commit `up_to` (the upload holds them),
/// and the local pages of the commits after it (none if no commit came after it).
fn split_local(local: &LocalPages, up_to: u64) -> (Vec<Page>, Option<LocalPages>) {
    let (mut later, mut shipped) = (BTreeMap::new(), Vec::new());
    for (pgno, (seq, data)) in &local.pages {
        if *seq > up_to {
            later.insert(*pgno, (*seq, data.clone()));
        } else {
            shipped.push((*pgno, data.clone()));
        }
    }
    let rest = (local.seq > up_to).then(|| LocalPages {
        pages: later,
        ..local.clone()
    });
    (shipped, rest)
}

/// The upload of the local commits of `current`: one level-0 file at the next TXID, page 1
/// carrying that TXID as its change counter (as a commit in `sync=commit` does).
fn batch_of(url: &str, current: &Snapshot, local: &LocalPages) -> Result<Built> {
    let txid = current.txid.next();
    let lock_page = local.page_size.lock_page();
    let counter = (txid.get() as u32).to_be_bytes();
    let page1 = local.pages.get(&Pgno::ONE).map(|(_, p)| {
        let mut p = p.to_vec();
        for at in [24usize, 92] {
            if let Some(slot) = p.get_mut(at..at + 4) {
                slot.copy_from_slice(&counter);
            }
        }
        p
    });
    let pages = local
        .pages
        .iter()
        .filter(|(pgno, _)| pgno.get() <= local.commit && **pgno != lock_page)
        .map(|(pgno, (_, data))| match (pgno.get(), &page1) {
            (1, Some(p1)) => (*pgno, &p1[..]),
            _ => (*pgno, &data[..]),
        });
    Built::new(url, txid, local.page_size, local.commit, pages)
}

/// An `interval` after a commit woke it, the buffered transactions go up (those of that
/// interval in one TXID); then it waits for the next commit. What an upload left buffered
/// (it failed, or commits came meanwhile) goes an interval later. Stops when the replica's
/// last writable connection has gone; holds neither while it waits.
async fn ship_after_commits(
    interval: Duration,
    me: Weak<Buffered>,
    replica: Weak<Replica>,
    wake: Arc<Wake>,
) {
    loop {
        wake.until(None).await;
        crate::io::sleep(interval).await;
        let (Some(buffered), Some(replica)) = (me.upgrade(), replica.upgrade()) else {
            return;
        };
        if !buffered.keeps_running() {
            return;
        }
        let upload = crate::store::SHIPPING.run(move || {
            let _ = buffered.ship(&replica);
            let left = replica.current().local.is_some() && buffered.inner().failed.is_none();
            if left {
                buffered.wake.wake();
            }
        });
        upload.await;
    }
}

/// `<state dir>/ltxvfs/buffers/<last part of the URL>-<hash of the URL>.buffer`: one per
/// replica, so a restarted writer finds what it left. The state directory
/// (`$XDG_STATE_HOME`, else `~/.local/state`) survives reboots, where a temporary
/// directory may be a tmpfs or cleaned; `<temp dir>/ltxvfs-<euid>/buffers` only without a
/// home. Private: `ltxvfs/buffers` is made 0700 and checked (`private_dir`).
fn default_path(url: &str) -> PathBuf {
    let name = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("replica");
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
        .or_else(|| {
            let home = PathBuf::from(std::env::var_os("HOME")?);
            home.is_absolute().then(|| home.join(".local/state"))
        })
        .map_or_else(
            || std::env::temp_dir().join(format!("ltxvfs-{}", nix::unistd::Uid::effective())),
            |state| state.join("ltxvfs"),
        );
    dir.join("buffers").join(format!(
        "{name}-{:016x}.buffer",
        crate::ltx::crc64(url.as_bytes())
    ))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
