//! A waiting process's side of the lease: it joins the queue in the lease object, and a
//! watcher task (on the IO runtime, one per lease, only while a BEGIN keeps asking) reads the
//! lease every [`POLL`] until it is this process's turn; then it reads the holder's commits
//! (so the BEGIN need not) and wakes the BEGIN's busy handler, which sleeps in the VFS's
//! `xSleep` ([`nap`]) rather than for SQLite's fixed steps of up to 100 ms.

use super::{ACCEPT, Doc, Held, LINGER, Lease, State, TURN, Taken, now_ms, renew_after};
use crate::error::Result;
use crate::ltx::Txid;
use crate::store::{LeaseVersion, LeaseWrite};
use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The pause between two reads of the lease while this process waits for its turn: next
/// in the queue, and further back.
pub(super) const POLL: Duration = Duration::from_millis(10);
const POLL_BEHIND: Duration = Duration::from_millis(60);
/// The watcher leaves the queue when no BEGIN asked for the lease for this long.
const WANT_IDLE: Duration = Duration::from_secs(1);

/// A count of wake-ups (a lease became this process's), under the lock sleepers wait with.
static WOKEN: (Mutex<u64>, Condvar) = (Mutex::new(0), Condvar::new());

thread_local! {
    /// This thread's BEGIN was just refused the lease: the wake-up count then (`u64::MAX`:
    /// it should try again at once).
    static REFUSED_AT: Cell<Option<u64>> = const { Cell::new(None) };
}

fn woken() -> std::sync::MutexGuard<'static, u64> {
    WOKEN.0.lock().unwrap_or_else(|e| e.into_inner())
}

/// The VFS's `xSleep` (SQLite's busy handler between two tries of a lock, on the thread of
/// the try): after a BEGIN of this thread was refused the lease, sleeps at most `d` and
/// wakes when a lease becomes this process's (`None`: not after such a refusal, the
/// default VFS sleeps). Returns how long it slept.
pub(crate) fn nap(d: Duration) -> Option<Duration> {
    let seen = REFUSED_AT.with(Cell::take)?;
    let started = Instant::now();
    let mut woken = woken();
    while *woken == seen {
        let Some(left) = d.checked_sub(started.elapsed()).filter(|l| !l.is_zero()) else {
            break;
        };
        woken = WOKEN
            .1
            .wait_timeout(woken, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    Some(started.elapsed())
}

/// A BEGIN on this thread is refused the lease: its busy handler's sleep ends at the next
/// wake-up (`now`: at once).
pub(super) fn refused_here(now: bool) {
    let at = if now { u64::MAX } else { *woken() };
    REFUSED_AT.with(|r| r.set(Some(at)));
}

/// This process holds the lease and a BEGIN should try now: busy handlers wake.
pub(super) fn make_ready(st: &mut State, catch_up: bool) {
    st.ready = Some(catch_up || st.ready == Some(true));
    *woken() += 1;
    WOKEN.1.notify_all();
}

/// A BEGIN uses the lease made ready (or it went): `Some(catch_up)` if it was.
pub(super) fn unready(st: &mut State) -> Option<bool> {
    st.ready.take()
}

/// What one read of the lease came to while waiting.
enum Look {
    Taken,
    /// This process is next in the queue (or the lease is free): read again soon.
    Next,
    Behind,
}

impl Lease {
    /// Another process holds the lease (or gets it next): this one joins the queue (or
    /// marks its place again when its entry is half a TTL old), its watcher waits for its
    /// turn, and the BEGIN is busy.
    pub(super) async fn wait(
        self: &Arc<Self>,
        doc: Doc,
        version: Option<LeaseVersion>,
        other: String,
    ) -> Result<Taken> {
        {
            let mut st = self.state();
            st.held = None;
            st.other = Some(other);
            st.contended_at = Some(Instant::now());
        }
        self.stats.busy.fetch_add(1, Ordering::Relaxed);
        self.watch();
        self.queue(&doc, version).await?;
        Ok(Taken::Busy)
    }

    /// Puts this process in the queue of `doc` (at `version`), unless its entry is fresh;
    /// a lost race is left to the watcher's next read.
    async fn queue(&self, doc: &Doc, version: Option<LeaseVersion>) -> Result<()> {
        let now_ms = now_ms();
        if doc
            .waiter_seen(&self.me)
            .is_some_and(|s| s + self.ttl_ms() / 2 > now_ms)
        {
            return Ok(());
        }
        let next = doc.clone().with_waiter(&self.me, now_ms);
        if let LeaseWrite::Unsupported = self
            .store
            .put_lease(next.to_bytes(), version.as_ref())
            .await?
        {
            self.state().unsupported = true;
        }
        Ok(())
    }

    /// Starts the watcher unless it runs.
    pub(super) fn watch(self: &Arc<Self>) {
        {
            let mut st = self.state();
            st.wanted_at = Instant::now();
            if st.watching {
                return;
            }
            st.watching = true;
        }
        let me = self.clone();
        if crate::io::spawn(async move { me.watcher().await }).is_err() {
            self.state().watching = false;
        }
    }

    /// Reads the lease until this process takes it, or no BEGIN wants it any more (then
    /// it leaves the queue).
    async fn watcher(self: Arc<Self>) {
        let (mut pause, mut seen) = (POLL, None);
        let taken = loop {
            let gone = {
                let st = self.state();
                st.held.is_some() || st.unsupported
            };
            if gone {
                break true;
            }
            if self.state().wanted_at.elapsed() > WANT_IDLE {
                break false;
            }
            crate::io::sleep(pause).await;
            match self.look(&mut seen).await {
                Ok(Look::Taken) => break true,
                Ok(Look::Next) => pause = POLL,
                Ok(Look::Behind) => pause = POLL_BEHIND,
                Err(_) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    crate::io::sleep(LINGER).await;
                }
            }
        };
        self.state().watching = false;
        if !taken && self.leave().await.is_err() {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One read of the lease while waiting: takes it if it was handed to this process, or
    /// is free and this process is first in the queue (or the first let it lie for
    /// [`ACCEPT`]); else keeps this process's place. `seen`: the lease as last read (the
    /// store answers "unchanged" without its bytes).
    async fn look(self: &Arc<Self>, seen: &mut Option<(Doc, LeaseVersion)>) -> Result<Look> {
        self.stats.polls.fetch_add(1, Ordering::Relaxed);
        let (doc, version) = match seen.as_ref() {
            Some((doc, version)) => match self.store.get_lease_if_changed(version).await? {
                None => (doc.clone(), Some(version.clone())),
                Some(Some((bytes, v))) => (Doc::parse(&bytes), Some(v)),
                Some(None) => (Doc::default(), None),
            },
            None => self.read().await?,
        };
        *seen = version.clone().map(|v| (doc.clone(), v));
        let now_ms = now_ms();
        let ttl_ms = self.ttl_ms();
        match (doc.valid_owner(now_ms), version) {
            (Some(owner), Some(version)) if owner == self.me => {
                self.stats.handed_to_us.fetch_add(1, Ordering::Relaxed);
                self.install(doc, version).await;
                Ok(Look::Taken)
            }
            (Some(owner), version) => {
                let owner = owner.to_owned();
                self.state().other = Some(owner);
                self.catch_up(&doc).await;
                let next = doc
                    .fresh_waiters(now_ms, ttl_ms)
                    .first()
                    .is_none_or(|(id, _)| *id == self.me);
                self.queue(&doc, version).await?;
                Ok(if next { Look::Next } else { Look::Behind })
            }
            (None, version) => {
                let fresh = doc.fresh_waiters(now_ms, ttl_ms);
                let expired = doc.owner.as_ref().map_or(0, |o| o.1);
                if fresh.first().is_some_and(|(id, _)| *id != self.me)
                    && expired + ACCEPT.as_millis() as u64 > now_ms
                {
                    self.queue(&doc, version).await?;
                    return Ok(Look::Behind);
                }
                let waiters: Vec<_> = fresh.into_iter().filter(|(id, _)| *id != self.me).collect();
                let ms = if waiters.is_empty() {
                    ttl_ms
                } else {
                    self.handed_ms()
                };
                let next = Doc {
                    owner: Some((self.me.clone(), now_ms + ms)),
                    txid: doc.txid,
                    files: doc.files.clone(),
                    waiters,
                };
                match self
                    .store
                    .put_lease(next.to_bytes(), version.as_ref())
                    .await?
                {
                    LeaseWrite::Stored(v) => {
                        self.install(next, v).await;
                        Ok(Look::Taken)
                    }
                    LeaseWrite::Lost => Ok(Look::Next),
                    LeaseWrite::Unsupported => {
                        self.state().unsupported = true;
                        Ok(Look::Taken)
                    }
                }
            }
        }
    }

    /// Reads the store's newest state if the lease `doc` names a newer TXID than the
    /// replica's (the holder's commits up to its last write of the lease): from the files
    /// it names, else by a poll. Whether the replica has it.
    async fn catch_up(&self, doc: &Doc) -> bool {
        let Some(txid) = doc.txid else { return true };
        let replica = self
            .replica
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .upgrade();
        let Some(replica) = replica else { return false };
        if replica.current().txid.0 >= txid {
            return true;
        }
        replica.advance_named(&doc.files, Txid(txid)).await;
        replica.current().txid.0 >= txid
    }

    /// This process took the lease `doc` (at `version`): reads the holder's commits, then
    /// holds it for a turn and wakes the BEGIN waiting for it.
    async fn install(self: &Arc<Self>, doc: Doc, version: LeaseVersion) {
        let caught_up = self.catch_up(&doc).await;
        let now = Instant::now();
        let left = Duration::from_millis(
            doc.owner
                .as_ref()
                .map_or(0, |o| o.1.saturating_sub(now_ms())),
        );
        {
            let mut st = self.state();
            st.contended_at = Some(now);
            st.last_activity = now;
            st.held = Some(Held {
                version,
                doc,
                check_at: now + TURN / 2,
                renew_at: now + renew_after(left, self.ttl),
                hand_over: false,
                contended: true,
                turn_from: now,
            });
            st.other = None;
            // The next hand-over names the files of this turn.
            st.stored.clear();
            make_ready(&mut st, !caught_up);
        }
        self.stats.taken.fetch_add(1, Ordering::Relaxed);
        self.linger();
    }

    /// No BEGIN waits any more: this process leaves the queue (and hands on a lease handed
    /// to it meanwhile).
    async fn leave(self: &Arc<Self>) -> Result<()> {
        for _ in 0..3 {
            if self.state().held.is_some() || self.state().watching {
                return Ok(());
            }
            let (doc, Some(version)) = self.read().await? else {
                return Ok(());
            };
            let now_ms = now_ms();
            let mine = doc.valid_owner(now_ms) == Some(self.me.as_str());
            let next = if mine {
                doc.handed_on(&self.me, now_ms, self.ttl_ms(), now_ms + self.handed_ms())
            } else if doc.waiter_seen(&self.me).is_some() {
                let mut next = doc.clone();
                next.waiters.retain(|(id, _)| *id != self.me);
                next
            } else {
                return Ok(());
            };
            match self
                .store
                .put_lease(next.to_bytes(), Some(&version))
                .await?
            {
                LeaseWrite::Lost => continue,
                _ => return Ok(()),
            }
        }
        // Raced three times: the entry goes stale after a TTL.
        Ok(())
    }
}
