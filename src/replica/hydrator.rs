//! Hydration: a local copy of the whole database at `hydrate=PATH`, downloaded in the
//! background while reads keep being served remotely, then used for reads, and kept current
//! as the follower publishes new snapshots.
//!
//! Crash safety: the copy is written to `PATH.tmp`, synced and renamed to `PATH`; only then is
//! the sidecar `PATH-ltxvfs-txid` written (also through a synced rename). The sidecar exists
//! only while `PATH` is complete at the TXID it names: an update removes it first and writes
//! it back when done. An open finding `PATH` without a sidecar downloads again; with one, it
//! resumes from that TXID.
//!
//! Reads use the copy only when their snapshot's TXID is the copy's; while the copy is being
//! updated they go to the store, so nothing reads a half-written file.

use super::{Replica, Snapshot, Target};
use crate::error::{Error, Result};
use crate::io;
use crate::ltx::{self, Pgno};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

/// Where the local copy stands, for reads and `PRAGMA ltx_hydration`.
#[derive(Debug)]
pub(crate) struct Hydration {
    pub(crate) path: PathBuf,
    state: RwLock<State>,
    pub(crate) pages_done: AtomicU64,
    pub(crate) pages_total: AtomicU64,
}

#[derive(Debug)]
enum State {
    /// Downloading (or waiting to); reads go to the store.
    Downloading,
    /// Complete at this TXID: reads of that snapshot use the file.
    Ready { txid: ltx::Txid, file: File },
    /// Being brought to a newer TXID; reads go to the store.
    Updating,
    /// The last attempt failed; it is tried again.
    Failed(String),
}

impl Hydration {
    pub(crate) fn new(path: PathBuf) -> Hydration {
        Hydration {
            path,
            state: RwLock::new(State::Downloading),
            pages_done: AtomicU64::new(0),
            pages_total: AtomicU64::new(0),
        }
    }

    fn set(&self, state: State) {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// Page `pgno` of `snap` from the local copy, if the copy is at `snap`'s TXID.
    pub(crate) fn read(&self, snap: &Snapshot, pgno: Pgno) -> Option<Arc<[u8]>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let State::Ready { txid, file } = &*state else {
            return None;
        };
        if *txid != snap.txid {
            return None;
        }
        let mut page = vec![0u8; snap.page_size.as_usize()];
        file.read_exact_at(&mut page, pgno.byte_offset(snap.page_size))
            .ok()?;
        Some(page.into())
    }

    /// `PRAGMA ltx_hydration`: JSON.
    pub(crate) fn report(&self) -> String {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let (name, txid, error) = match &*state {
            State::Downloading => ("downloading", None, None),
            State::Ready { txid, .. } => ("ready", Some(*txid), None),
            State::Updating => ("updating", None, None),
            State::Failed(e) => ("failed", None, Some(e.clone())),
        };
        format!(
            "{{\"path\":{:?},\"state\":\"{name}\",\"txid\":{},\"pages_done\":{},\"pages_total\":{},\"error\":{}}}",
            self.path.display().to_string(),
            txid.map_or("null".into(), |t| format!("\"{t}\"")),
            self.pages_done.load(Ordering::Relaxed),
            self.pages_total.load(Ordering::Relaxed),
            error.map_or("null".into(), |e| format!("{e:?}")),
        )
    }
}

fn sidecar(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push("-ltxvfs-txid");
    PathBuf::from(s)
}

fn temp(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

/// Writes `contents` to `path` through a synced temporary file and rename.
fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = temp(path);
    std::fs::write(&tmp, contents)?;
    File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    sync_dir(path)
}

/// Starts the hydrating thread of `replica`.
pub(crate) fn start(replica: &Arc<Replica>, poll: Duration) {
    let weak = Arc::downgrade(replica);
    let _ = std::thread::Builder::new()
        .name("ltxvfs-hydrate".into())
        .spawn(move || run(weak, poll.max(Duration::from_millis(200))));
}

fn run(replica: Weak<Replica>, poll: Duration) {
    // The snapshot the local copy holds, once there is one.
    let mut local: Option<Arc<Snapshot>> = None;
    let mut first = true;
    loop {
        if !first {
            std::thread::sleep(poll);
        }
        let Some(replica) = replica.upgrade() else {
            return; // the last connection closed
        };
        let Some(h) = replica.hydration() else { return };
        let result = match local.take() {
            None if first => resume(&replica, h).or_else(|_| download(&replica, h)),
            None => download(&replica, h),
            Some(held) => update(&replica, h, held),
        };
        first = false;
        match result {
            Ok(snap) => local = Some(snap),
            Err(e) => {
                h.set(State::Failed(e.to_string()));
                local = None;
            }
        }
    }
}

/// A copy left by an earlier process, complete at the TXID its sidecar names: brought up to
/// date from there.
fn resume(replica: &Arc<Replica>, h: &Hydration) -> Result<Arc<Snapshot>> {
    let io_err = |e: std::io::Error| local_error(h, e);
    let txid = std::fs::read_to_string(sidecar(&h.path))
        .map_err(io_err)?
        .trim()
        .parse::<u64>()
        .map_err(|e| local_error(h, std::io::Error::other(e)))?;
    let held = replica.snapshot_at(Target::Txid(ltx::Txid(txid)))?;
    if held.txid.get() != txid {
        return Err(local_error(
            h,
            std::io::Error::other("its TXID is no longer reachable"),
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&h.path)
        .map_err(io_err)?;
    h.set(State::Ready {
        txid: held.txid,
        file,
    });
    update(replica, h, held)
}

fn local_error(h: &Hydration, e: std::io::Error) -> Error {
    Error::Local {
        path: h.path.display().to_string(),
        detail: e.to_string(),
    }
}

/// Downloads the current snapshot: each of its files whole (one GET), verified, and the
/// pages the snapshot takes from it written in place.
fn download(replica: &Arc<Replica>, h: &Hydration) -> Result<Arc<Snapshot>> {
    h.set(State::Downloading);
    let _ = std::fs::remove_file(sidecar(&h.path));
    let snap = replica.current();
    let ps = snap.page_size;
    let io_err = |e: std::io::Error| local_error(h, e);
    let tmp = temp(&h.path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&tmp)
        .map_err(io_err)?;
    file.set_len(snap.size_bytes()).map_err(io_err)?;
    h.pages_total
        .store(u64::from(snap.commit), Ordering::Relaxed);
    h.pages_done.store(0, Ordering::Relaxed);

    let mut by_file: HashMap<super::LtxFileId, Vec<Pgno>> = HashMap::new();
    for pgno in (1..=snap.commit).filter_map(Pgno::new) {
        if let Some(at) = snap.page(pgno) {
            by_file.entry(at.file).or_default().push(pgno);
        }
    }
    for (id, pgnos) in by_file {
        let store = replica.store().clone();
        let bytes = io::run(
            async move { store.get_all(&id).await },
            replica.timeout() * 2,
        )
        .map_err(|e| Error::Io {
            url: replica.url().to_owned(),
            what: format!("downloading {id}"),
            detail: e.to_string(),
        })??;
        let wanted: std::collections::HashSet<Pgno> = pgnos.into_iter().collect();
        let mut write_err = None;
        ltx::decode_file(&bytes, |pgno, page| {
            if wanted.contains(&pgno) {
                if let Err(e) = file.write_all_at(page, pgno.byte_offset(ps)) {
                    write_err.get_or_insert(e);
                }
                h.pages_done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
        .map_err(|source| Error::Corrupt {
            url: replica.url().to_owned(),
            file: id,
            source,
        })?;
        if let Some(e) = write_err {
            return Err(io_err(e));
        }
    }
    file.sync_all().map_err(io_err)?;
    std::fs::rename(&tmp, &h.path).map_err(io_err)?;
    sync_dir(&h.path).map_err(io_err)?;
    write_atomically(&sidecar(&h.path), snap.txid.get().to_string().as_bytes()).map_err(io_err)?;
    h.set(State::Ready {
        txid: snap.txid,
        file,
    });
    Ok(snap)
}

/// Brings the copy from `held` to the current snapshot: the pages whose location changed,
/// read as any reader would (cache, then ranged GETs), then the new size.
fn update(replica: &Arc<Replica>, h: &Hydration, held: Arc<Snapshot>) -> Result<Arc<Snapshot>> {
    let mut next = replica.current();
    if next.txid == held.txid {
        return Ok(held);
    }
    let io_err = |e: std::io::Error| local_error(h, e);
    let file = {
        let mut state = h.state.write().unwrap_or_else(|e| e.into_inner());
        let State::Ready { file, .. } = std::mem::replace(&mut *state, State::Updating) else {
            return Err(local_error(
                h,
                std::io::Error::other("no local copy to update"),
            ));
        };
        file
    };
    std::fs::remove_file(sidecar(&h.path)).map_err(io_err)?;
    sync_dir(&h.path).map_err(io_err)?;
    let ps = next.page_size;
    let changed: Vec<Pgno> = next
        .changed_since(&held)
        .into_iter()
        .filter(|p| p.get() <= next.commit)
        .collect();
    h.pages_total.store(changed.len() as u64, Ordering::Relaxed);
    h.pages_done.store(0, Ordering::Relaxed);
    for pgno in changed {
        let page = replica.read_page(&mut next, pgno)?;
        file.write_all_at(&page, pgno.byte_offset(ps))
            .map_err(io_err)?;
        h.pages_done.fetch_add(1, Ordering::Relaxed);
    }
    file.set_len(next.size_bytes()).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    write_atomically(&sidecar(&h.path), next.txid.get().to_string().as_bytes()).map_err(io_err)?;
    h.set(State::Ready {
        txid: next.txid,
        file,
    });
    Ok(next)
}
