//! The main database file of a connection opened through `ltx`: reads served from the
//! snapshot pinned by the connection's SHARED lock, the page-1 patch, the file size, and the
//! `ltx_*` pragmas. Safe code: `ffi` turns SQLite's calls into calls on this type.

use crate::error::Error;
use crate::error::Result;
use crate::ltx::Pgno;
use crate::replica::{Replica, ReplicaConfig, Snapshot, Target};
use crate::writer::{self, Buffered, Compactor, DirtyPages, Lease, LockTable, Taken};
use std::sync::Arc;

/// SQLite's lock levels (https://www.sqlite.org/c3ref/c_lock_exclusive.html).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum LockLevel {
    None,
    Shared,
    Reserved,
    Pending,
    Exclusive,
}

impl LockLevel {
    pub(crate) fn from_raw(level: i32) -> Option<LockLevel> {
        Some(match level {
            0 => LockLevel::None,
            1 => LockLevel::Shared,
            2 => LockLevel::Reserved,
            3 => LockLevel::Pending,
            4 => LockLevel::Exclusive,
            _ => return None,
        })
    }
}

/// Why a lock was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The database is read-only (no `write=1`, or reading the past).
    ReadOnly,
    /// Another connection here holds the write lock, or the database moved on since this
    /// read transaction began (its snapshot is too old to write from).
    Busy,
    /// The replica did not reach the connection's floor (`min_txid`) within the wait; the
    /// sentence is in the connection's last error.
    Behind,
}

/// A write-mode connection's part: its place in the replica's lock table and the pages its
/// transaction changed.
#[derive(Debug)]
pub(super) struct Writing {
    locks: Arc<LockTable>,
    me: u64,
    dirty: DirtyPages,
    /// This transaction's COMMIT failed: every later sync in it fails the same way (SQLite
    /// syncs again while rolling back, and that must not store the rolled-back pages).
    failed: Option<Failed>,
    /// `sync=<duration>`: commits go to the replica's buffer file, not to the store.
    pub(super) buffered: Option<Arc<Buffered>>,
    /// Keeps the replica short (`compaction=off`: `None`).
    pub(super) compactor: Option<Arc<Compactor>>,
    /// The writers' lease across processes (`lease_ttl=off`, or `sync=<duration>`: `None`).
    pub(super) lease: Option<Arc<Lease>>,
}

#[derive(Debug, Clone)]
enum Failed {
    Conflict(crate::ltx::Txid),
    Other(String),
}

/// What a pragma asked of this file came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pragma {
    /// Not ours: SQLite handles it.
    NotOurs,
    /// Ours; the single value it returns, if any.
    Value(Option<String>),
    /// Ours, and it failed with this sentence.
    Failed(String),
}

#[derive(Debug)]
pub(crate) struct MainDb {
    pub(super) replica: Arc<Replica>,
    lock: LockLevel,
    /// The snapshot of the current read transaction, held from SHARED to NONE.
    pinned: Option<Arc<Snapshot>>,
    /// Time travel: the past state this connection reads instead of the newest.
    pub(super) travel: Option<Arc<Snapshot>>,
    pub(super) last_error: Option<String>,
    /// The host's URI said `sql_time_travel=1`: `ltx_set_time` may move this database from
    /// any connection's SQL, not only a trusted one's.
    pub(crate) sql_time_travel: bool,
    /// Set in write mode.
    pub(super) writing: Option<Writing>,
    /// The floor of the next read transactions (`min_txid=`, `PRAGMA ltx_min_txid`): a
    /// bookmark they must see.
    pub(super) min_txid: Option<crate::ltx::Txid>,
}

impl MainDb {
    pub(crate) fn open(config: ReplicaConfig, start: Target) -> Result<MainDb> {
        let (write, sync, buffer) = (config.write, config.sync, config.buffer.clone());
        let compaction = config.compaction.clone();
        // A transaction holds at most what a compaction may in memory; the rest spills.
        let dirty_bound = compaction.buffer;
        let lease_ttl = config.lease_ttl.filter(|_| sync.is_none());
        let replica = Replica::open(config)?;
        if write && start != Target::Latest {
            return Err(Error::Config(
                "write=1 and time travel (txid=, time=) do not go together".into(),
            ));
        }
        let buffered = match (write, sync) {
            (true, Some(interval)) => Some(Buffered::of(&replica, buffer.as_deref(), interval)?),
            (true, None) if Buffered::active(replica.url()) => {
                return Err(Error::Config(
                    "sync=commit: this process already writes the replica with sync=<duration>; open every writer of a replica with the same sync".into(),
                ));
            }
            _ => None,
        };
        let writing = write.then(|| Writing {
            locks: LockTable::of(&replica.config().url),
            me: LockTable::new_holder(),
            dirty: DirtyPages::with_bound(dirty_bound),
            failed: None,
            buffered,
            compactor: Compactor::of(&replica, &compaction),
            lease: lease_ttl
                .filter(|_| replica.store().has_conditional_update())
                .map(|ttl| Lease::of(&replica, ttl)),
        });
        let mut db = MainDb {
            replica,
            lock: LockLevel::None,
            pinned: None,
            travel: None,
            last_error: None,
            sql_time_travel: false,
            writing,
            min_txid: None,
        };
        db.travel_to(start)?;
        Ok(db)
    }

    /// Reads `target` from the next read transaction on (the current one keeps its
    /// snapshot); [`Target::Latest`] goes back to following.
    pub(super) fn travel_to(&mut self, target: Target) -> Result<()> {
        self.travel = match target {
            Target::Latest => None,
            target => Some(self.replica.snapshot_at(target)?),
        };
        Ok(())
    }

    /// The pinned snapshot, or the newest one outside a read transaction (SQLite reads the
    /// header once before it takes any lock).
    pub(super) fn snapshot(&self) -> Arc<Snapshot> {
        self.pinned
            .clone()
            .or_else(|| self.travel.clone())
            .unwrap_or_else(|| self.replica.current())
    }

    pub(crate) fn record_error(&mut self, message: String) {
        self.last_error = Some(message);
    }

    /// Fills `buf` from byte `offset` of the database. Returns `false` for a short read (past
    /// the end): the rest of `buf` is zero-filled, as xRead's contract requires
    /// (https://www.sqlite.org/c3ref/io_methods.html).
    ///
    /// # Errors
    /// As [`Replica::read_page`].
    pub(crate) fn read(&mut self, buf: &mut [u8], offset: u64) -> Result<bool> {
        let mut snap = self.snapshot();
        let dirty = self.writing.as_ref().map(|w| &w.dirty);
        let page_size = u64::from(dirty.map_or(snap.page_size, |d| d.page_size(&snap)).get());
        let end = dirty.map_or(snap.size_bytes(), |d| {
            u64::from(d.size_pages(&snap)) * page_size
        });
        let mut patch = true;
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            if at >= end {
                buf.get_mut(done..).unwrap_or_default().fill(0);
                return Ok(false);
            }
            let pgno = Pgno::new(u32::try_from(at / page_size + 1).unwrap_or(u32::MAX))
                .unwrap_or(Pgno::ONE);
            let in_page = (at % page_size) as usize;
            let mine = match self.writing.as_ref() {
                Some(w) => w.dirty.page(pgno).map_err(|detail| Error::Write {
                    url: self.replica.url().to_owned(),
                    detail,
                })?,
                None => None,
            };
            let page = match mine {
                // This transaction's own page: as SQLite wrote it, unpatched.
                Some(mine) => {
                    patch &= pgno != Pgno::ONE;
                    Arc::from(mine)
                }
                None if pgno.get() > snap.size_pages() => vec![0u8; page_size as usize].into(),
                None => self.replica.read_page(&mut snap, pgno)?,
            };
            if let Some(pinned) = self.pinned.as_mut()
                && !Arc::ptr_eq(pinned, &snap)
            {
                // Re-planned at the same TXID: keep reading from the files that exist.
                *pinned = snap.clone();
            }
            let src = page.get(in_page..).unwrap_or_default();
            let n = src.len().min(buf.len() - done);
            if let (Some(dst), Some(src)) = (buf.get_mut(done..done + n), src.get(..n)) {
                dst.copy_from_slice(src);
            }
            done += n;
        }
        if patch {
            patch_page1(buf, offset, &snap);
        }
        Ok(true)
    }

    /// The database size: the snapshot's commit (or the write transaction's size), in bytes.
    pub(crate) fn file_size(&self) -> u64 {
        let snap = self.snapshot();
        match &self.writing {
            Some(w) => {
                u64::from(w.dirty.size_pages(&snap)) * u64::from(w.dirty.page_size(&snap).get())
            }
            None => snap.size_bytes(),
        }
    }

    /// Whether the database was opened writable (`write=1`).
    pub(crate) fn writable(&self) -> bool {
        self.writing.is_some()
    }

    /// Takes `level`. SHARED pins the newest snapshot for the read transaction. RESERVED
    /// (write mode only) takes the replica's write lock here, if the pinned snapshot is
    /// still the newest; PENDING and EXCLUSIVE then follow at once (readers never block a
    /// writer: they keep their snapshots).
    pub(crate) fn lock(&mut self, level: LockLevel) -> std::result::Result<(), Refused> {
        if level > LockLevel::Shared && self.lock < LockLevel::Reserved {
            let Some(w) = self.writing.as_ref().filter(|_| self.travel.is_none()) else {
                return Err(Refused::ReadOnly);
            };
            let stale = self
                .pinned
                .as_ref()
                .is_some_and(|p| !p.same_state(&self.replica.current()));
            if stale || !w.locks.try_reserve(w.me) {
                return Err(Refused::Busy);
            }
            if let Some(lease) = &w.lease {
                let known = self
                    .pinned
                    .as_ref()
                    .map_or_else(|| self.replica.current().txid, |p| p.txid)
                    .0;
                match lease.take(known) {
                    Ok(Taken::Held { catch_up: false }) => {}
                    Ok(Taken::Held { catch_up: true }) => {
                        // Another process may have committed while this one waited: read
                        // the newest state now, and retry from it if it moved.
                        self.replica.refresh();
                        let moved = self
                            .pinned
                            .as_ref()
                            .is_some_and(|p| !p.same_state(&self.replica.current()));
                        if moved {
                            lease.pause();
                            w.locks.release(w.me);
                            return Err(Refused::Busy);
                        }
                    }
                    Ok(Taken::Busy) => {
                        // The holder moved on: read its state while waiting, so the try
                        // that gets the lease starts from it.
                        if lease.behind(self.replica.current().txid.0) {
                            self.replica.refresh();
                        }
                        w.locks.release(w.me);
                        return Err(Refused::Busy);
                    }
                    // Without the lease: the conditional create of the TXID still decides.
                    Err(e) => self.last_error = Some(e.to_string()),
                }
            }
        }
        if level == LockLevel::Shared && self.lock == LockLevel::None {
            if self.travel.is_none() {
                let leased = self
                    .writing
                    .as_ref()
                    .and_then(|w| w.lease.as_ref())
                    .is_some_and(|l| l.holds() || l.take_back(self.replica.current().txid.0));
                if leased {
                    // The lease holder's state is the newest: no poll to wait for.
                    self.replica.ensure_follower();
                } else {
                    self.replica.begin_read();
                }
                if let Some(floor) = self.min_txid
                    && let Err(e) = self.replica.wait_txid(floor, self.replica.config().timeout)
                {
                    self.last_error = Some(format!("ltxvfs: min_txid: {e}"));
                    return Err(Refused::Behind);
                }
            }
            self.pinned = Some(
                self.travel
                    .clone()
                    .unwrap_or_else(|| self.replica.current()),
            );
        }
        self.lock = self.lock.max(level);
        Ok(())
    }

    /// Drops to `level`; below RESERVED the write transaction is over (its uncommitted
    /// pages dropped); at NONE the read transaction is over and its snapshot released.
    pub(crate) fn unlock(&mut self, level: LockLevel) {
        if level < LockLevel::Reserved
            && self.lock >= LockLevel::Reserved
            && let Some(w) = self.writing.as_mut()
        {
            let base = self.pinned.as_ref();
            if w.failed.is_none() && base.is_some_and(|b| w.dirty.is_commit(b)) {
                // SQLite syncs before it unlocks after a commit: a commit still here was
                // never synced (synchronous=OFF, which write mode refuses).
                self.last_error = Some(
                    "ltxvfs: a write transaction ended without a COMMIT sync; its changes were dropped".into(),
                );
            }
            w.dirty.clear();
            w.failed = None;
            if let Some(lease) = &w.lease {
                lease.finish(self.replica.current().txid.0);
            }
            w.locks.release(w.me);
        }
        if level < self.lock {
            self.lock = level;
        }
        if self.lock == LockLevel::None {
            self.pinned = None;
        }
    }

    /// Whether another connection here holds the replica's write lock.
    pub(crate) fn reserved_elsewhere(&self) -> bool {
        self.writing
            .as_ref()
            .is_some_and(|w| w.locks.reserved_by_other(w.me))
    }

    /// xWrite: one page of the write transaction.
    ///
    /// # Errors
    /// [`Error::Write`] in read-only mode, outside a write transaction, or for a write that
    /// is not one whole page.
    pub(crate) fn write(&mut self, data: &[u8], offset: u64) -> Result<()> {
        let snap = self.snapshot();
        let url = self.replica.url().to_owned();
        match self.writing.as_mut() {
            Some(w) if self.lock >= LockLevel::Reserved => w
                .dirty
                .write(&snap, offset, data)
                .map_err(|detail| Error::Write { url, detail }),
            _ => Err(Error::Write {
                url,
                detail: "not in a write transaction (open with write=1)".into(),
            }),
        }
    }

    /// xTruncate: the write transaction's database shrinks to `size` bytes.
    ///
    /// # Errors
    /// As [`MainDb::write`].
    pub(crate) fn truncate(&mut self, size: u64) -> Result<()> {
        let snap = self.snapshot();
        match self.writing.as_mut() {
            Some(w) if self.lock >= LockLevel::Reserved => {
                w.dirty.truncate(&snap, size);
                Ok(())
            }
            _ => Err(Error::Write {
                url: self.replica.url().to_owned(),
                detail: "not in a write transaction (open with write=1)".into(),
            }),
        }
    }

    /// xSync: at EXCLUSIVE with pages changed, this is COMMIT (SQLite has written every
    /// page and syncs before it drops the journal): the transaction is stored as the next
    /// TXID, or the sync fails and SQLite rolls it back.
    ///
    /// # Errors
    /// [`Error::Conflict`] if another writer took the TXID (the replica then polls, so the
    /// next transaction reads the winner's state); [`Error::Io`] if the store failed.
    pub(crate) fn sync(&mut self) -> Result<()> {
        let url = self.replica.url().to_owned();
        let Some(w) = self.writing.as_mut() else {
            return Ok(());
        };
        if self.lock < LockLevel::Exclusive || w.dirty.is_empty() {
            return Ok(());
        }
        match &w.failed {
            Some(Failed::Conflict(txid)) => return Err(Error::Conflict { url, txid: *txid }),
            Some(Failed::Other(detail)) => {
                return Err(Error::Write {
                    url,
                    detail: format!("this transaction's COMMIT failed: {detail}"),
                });
            }
            None => {}
        }
        let base = self
            .pinned
            .clone()
            .unwrap_or_else(|| self.replica.current());
        if !w.dirty.is_commit(&base) {
            // The sync of a rollback (pages spilled, then written back): nothing to store.
            return Ok(());
        }
        let committed = match &w.buffered {
            Some(buffered) => buffered.commit(&self.replica, &base, &w.dirty),
            None => writer::commit(&self.replica, &base, &w.dirty),
        };
        match committed {
            Ok(next) => {
                w.dirty.clear();
                self.pinned = Some(next);
                Ok(())
            }
            Err(e) => {
                w.failed = Some(match &e {
                    Error::Conflict { txid, .. } => Failed::Conflict(*txid),
                    other => Failed::Other(other.to_string()),
                });
                if matches!(e, Error::Conflict { .. }) {
                    self.replica.refresh();
                }
                Err(e)
            }
        }
    }
}

impl Drop for MainDb {
    /// The last writable connection of a `sync=<duration>` replica ships what is buffered;
    /// the compaction thread stops after the last one.
    fn drop(&mut self) {
        let Some(w) = self.writing.as_ref() else {
            return;
        };
        if let Some(buffered) = &w.buffered {
            buffered.release(&self.replica);
        }
        if let Some(compactor) = &w.compactor {
            compactor.release();
        }
        if let Some(lease) = &w.lease {
            lease.close();
        }
    }
}

/// The page-1 patch (bytes at absolute file offsets, applied to whatever part of them `buf`
/// covers):
/// - 18, 19 = 1: rollback-journal read/write versions, so SQLite never looks for a WAL;
/// - 24..28 change counter and 92..96 version-valid-for = the snapshot's counter (its TXID's
///   low 32 bits, or a local commit's number), so SQLite keeps its page cache while the
///   snapshot is unchanged and drops it when it moves;
/// - 28..32 in-header database size = the snapshot's commit, consistent with the file size.
fn patch_page1(buf: &mut [u8], offset: u64, snap: &Snapshot) {
    let counter = snap.counter().to_be_bytes();
    let patches: [(u64, &[u8]); 4] = [
        (18, &[1, 1]),
        (24, &counter),
        (28, &snap.size_pages().to_be_bytes()),
        (92, &counter),
    ];
    let buf_end = offset + buf.len() as u64;
    for (at, bytes) in patches {
        for (i, b) in bytes.iter().enumerate() {
            let abs = at + i as u64;
            if abs >= offset
                && abs < buf_end
                && let Some(slot) = buf.get_mut((abs - offset) as usize)
            {
                *slot = *b;
            }
        }
    }
}
