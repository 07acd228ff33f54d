//! The writers' lease of a replica: one object in the store (`<root>/lease`, see [`doc`])
//! naming the process that writes now, until when, and the processes waiting for a turn,
//! in their order. A process takes it at its first BEGIN IMMEDIATE (RESERVED) and keeps it
//! across its consecutive transactions, so a lone writer pays nothing per commit: it reads
//! the object again about twice a second while it writes ([`CHECK`]), renews it when half
//! its TTL has passed, and releases it after [`LINGER`] without a transaction (a task on the
//! IO runtime, woken by that deadline). Its next transaction takes it back by one
//! conditional write, in place of a poll ([`Lease::take_back`]).
//!
//! Another process's BEGIN finds it held and gets SQLITE_BUSY at once, before its work; it
//! joins the queue, and a watcher task reads the lease every [`watch::POLL`] until the lease
//! is handed to it, catches up with the holder's commits, and wakes the BEGIN's busy
//! handler (`xSleep`, [`nap`]). While others wait, a holder keeps the lease for a turn of
//! [`TURN`] (several transactions), then hands it to the first waiter in the same request
//! that ends its turn: writers take turns, in the order they came.
//!
//! The lease is advice, not the arbiter: a holder paused past its TTL may still try to
//! commit, and the conditional create of each TXID (`commit.rs`) refuses it. Only objects
//! are moved here; the store's conditional writes (`store::lease`) make every change
//! of the object one compare-and-swap.

mod doc;
mod keep;
mod watch;

use crate::error::Result;
use crate::fetch::bridged;
use crate::replica::{LtxFileId, Replica};
use crate::store::{LeaseVersion, LeaseWrite, Store};
use doc::Doc;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
pub(crate) use watch::nap;

/// How often a lone holder in a stream of transactions reads the lease again (for waiters,
/// or a takeover while it was paused).
const CHECK: Duration = Duration::from_millis(500);
/// A holder's turn while others wait: it reads the lease when its turn is over and hands
/// it to the first waiter after that transaction.
const TURN: Duration = Duration::from_millis(200);
/// How long after it last saw another writer a holder reads the lease every [`TURN`]
/// rather than every [`CHECK`].
const CONTENDED: Duration = Duration::from_secs(5);
/// How long a holder keeps the lease without a transaction before it releases it; while
/// others wait, [`HAND_IDLE`].
const LINGER: Duration = Duration::from_secs(1);
const HAND_IDLE: Duration = TURN;
/// A lease handed over lasts this long (at most its TTL) until its taker renews it: a
/// waiter that died in the queue holds the others up for no longer.
const ACCEPT: Duration = Duration::from_secs(1);

/// What a BEGIN's request for the lease came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// This process holds the lease. `catch_up`: it did not before this call (another
    /// process may have committed past the state the caller knows: read the store's newest).
    Held { catch_up: bool },
    /// Another process holds it (or a waiter ahead of this one gets it next).
    Busy,
}

/// Counters for `PRAGMA ltx_lease`.
#[derive(Debug, Default)]
struct Stats {
    taken: AtomicU64,
    busy: AtomicU64,
    handed_over: AtomicU64,
    handed_to_us: AtomicU64,
    renewals: AtomicU64,
    releases: AtomicU64,
    errors: AtomicU64,
    polls: AtomicU64,
}

#[derive(Debug)]
struct Held {
    version: LeaseVersion,
    doc: Doc,
    /// When to read the object again, and when to renew it.
    check_at: Instant,
    renew_at: Instant,
    /// Another process waits and this turn is over: hand the lease over after this
    /// transaction.
    hand_over: bool,
    /// Others waited at the last read (or the lease came from one): hand it over after
    /// [`HAND_IDLE`] without a transaction.
    contended: bool,
    /// When this process's turn began.
    turn_from: Instant,
}

#[derive(Debug)]
struct State {
    held: Option<Held>,
    /// When this process last saw another writer (holding or waiting).
    contended_at: Option<Instant>,
    /// The store cannot replace an object conditionally (file://): no lease.
    unsupported: bool,
    /// A transaction of this process holds the lease now.
    in_txn: bool,
    last_activity: Instant,
    /// The keeper task of this number is the current one; an older one ends when it
    /// wakes (a new one starts at each transaction's start and end, so its deadline is
    /// always from the latest change).
    keeper: u64,
    /// Who held the lease when this process last found it held by another.
    other: Option<String>,
    /// The newest TXID a lease read named (its holder's, when it last wrote the lease).
    seen_txid: Option<u64>,
    /// A watcher task waits for this process's turn.
    watching: bool,
    /// When a BEGIN last asked for the lease while another held it (the watcher leaves
    /// the queue when none has for a while).
    wanted_at: Instant,
    /// Taken (by the watcher, or kept for a retry) and not yet by a BEGIN: `Some(catch_up)`.
    ready: Option<bool>,
    /// The lease as this process's hand-over wrote it, and when: its next BEGIN starts
    /// from it rather than read it again.
    handed: Option<(Doc, LeaseVersion, Instant)>,
    /// The level-0 files this process stored since it took the lease from another (the
    /// hand-over names them), at most [`doc::MAX_FILES`] of the newest.
    stored: Vec<(LtxFileId, u64)>,
    /// A write transaction ended since the last read that took the lease back (see
    /// [`Lease::take_back`]).
    wrote: bool,
}

/// One process's side of a replica's lease, shared by its writable connections (which the
/// in-process lock table lets write one at a time).
#[derive(Debug)]
pub(crate) struct Lease {
    store: Store,
    /// The replica the watcher catches up before it wakes a BEGIN.
    replica: Mutex<Weak<Replica>>,
    me: String,
    ttl: Duration,
    timeout: Duration,
    state: Mutex<State>,
    stats: Stats,
}

type Leases = HashMap<String, Weak<Lease>>;
static LEASES: Mutex<Option<Leases>> = Mutex::new(None);

/// A commit of this process stored `id` (`size` bytes) in `url`'s replica: its lease's
/// next hand-over names it.
pub(crate) fn note_stored(url: &str, id: LtxFileId, size: u64) {
    let lease = LEASES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|m| m.get(url))
        .and_then(Weak::upgrade);
    if let Some(lease) = lease {
        let mut st = lease.state();
        if st.stored.len() >= doc::MAX_FILES {
            st.stored.remove(0);
        }
        st.stored.push((id, size));
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Lease {
    /// The lease of `replica` in this process.
    pub(crate) fn of(replica: &Arc<Replica>, ttl: Duration) -> Arc<Lease> {
        let url = &replica.config().url;
        let mut leases = LEASES.lock().unwrap_or_else(|e| e.into_inner());
        let map = leases.get_or_insert_with(HashMap::new);
        map.retain(|_, l| l.strong_count() > 0);
        if let Some(lease) = map.get(url).and_then(Weak::upgrade) {
            *lease.replica.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(replica);
            return lease;
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let lease = Arc::new(Lease {
            store: replica.store().clone(),
            replica: Mutex::new(Arc::downgrade(replica)),
            me: format!("{}-{:08x}", std::process::id(), nanos ^ (map.len() as u32)),
            ttl: ttl.max(Duration::from_millis(100)),
            timeout: replica.timeout(),
            state: Mutex::new(State {
                held: None,
                contended_at: None,
                unsupported: false,
                in_txn: false,
                last_activity: Instant::now(),
                keeper: 0,
                other: None,
                seen_txid: None,
                watching: false,
                wanted_at: Instant::now(),
                ready: None,
                handed: None,
                stored: Vec::new(),
                wrote: false,
            }),
            stats: Stats::default(),
        });
        map.insert(url.to_owned(), Arc::downgrade(&lease));
        lease
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }

    /// How long a lease handed to a waiter lasts before it renews it.
    fn handed_ms(&self) -> u64 {
        self.ttl.min(ACCEPT).as_millis() as u64
    }

    /// At a BEGIN's RESERVED lock: takes (or keeps) the lease. Without a request while
    /// this process holds it and no check or renewal is due, and while its watcher waits
    /// for its turn.
    ///
    /// # Errors
    /// [`crate::error::Error::Io`] if the store failed; the caller may go on without the
    /// lease (the conditional create still decides).
    pub(crate) fn take(self: &Arc<Self>, known: u64) -> Result<Taken> {
        let ready = {
            let mut st = self.state();
            let now = Instant::now();
            if st.unsupported {
                return Ok(Taken::Held { catch_up: false });
            }
            let ready = watch::unready(&mut st);
            if let Some(h) = st.held.as_mut()
                && now < h.renew_at
                && (now < h.check_at || h.contended)
            {
                if now >= h.check_at {
                    // The end of a turn while others wait: which of them is next is read
                    // while this transaction goes on (see [`Lease::check`]).
                    h.check_at = now + CHECK;
                    let me = self.clone();
                    let _ = crate::io::spawn(async move { me.check().await });
                }
                st.in_txn = true;
                return Ok(Taken::Held {
                    catch_up: ready == Some(true),
                });
            }
            if st.held.is_none() && st.watching {
                st.wanted_at = now;
                self.stats.busy.fetch_add(1, Ordering::Relaxed);
                watch::refused_here(false);
                return Ok(Taken::Busy);
            }
            // The keeper does not hand on a lease this BEGIN is checking.
            st.in_txn = st.held.is_some();
            ready
        };
        let me = self.clone();
        let taken = bridged(
            &self.store,
            "taking the writers' lease",
            async move { me.take_slow(known).await },
            self.timeout * 3,
        );
        match &taken {
            Ok(Taken::Held { .. }) => {
                self.state().in_txn = true;
                self.linger();
            }
            Ok(Taken::Busy) => {
                self.state().in_txn = false;
                watch::refused_here(false);
            }
            Err(_) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                self.state().in_txn = true;
            }
        }
        match taken {
            Ok(Taken::Held { catch_up }) => Ok(Taken::Held {
                catch_up: catch_up || ready == Some(true),
            }),
            other => other,
        }
    }

    async fn take_slow(self: Arc<Self>, known: u64) -> Result<Taken> {
        let handed = self.state().handed.take();
        if let Some((doc, version, _)) = handed.as_ref().filter(|(doc, _, _)| doc.released()) {
            // Released by this process: taken back by one conditional write on the version
            // it wrote. Stored means no other process took the lease since, so none that
            // heeds it committed: no read of the lease, and none of the store's newest
            // state (a writer without the lease is refused by the conditional create).
            if let Some(taken) = self
                .claim(doc.clone(), Some(version.clone()), known, true)
                .await?
            {
                return Ok(taken);
            }
        }
        let (doc, version) = match handed.filter(|(_, _, at)| at.elapsed() < CHECK) {
            Some((doc, version, _)) if doc.owner.is_some() => (doc, Some(version)),
            _ => self.read().await?,
        };
        self.state().seen_txid = doc.txid;
        Ok(self
            .claim(doc, version, known, false)
            .await?
            .unwrap_or(Taken::Busy))
    }

    /// The lease object and its version (an empty lease without one).
    async fn read(&self) -> Result<(Doc, Option<LeaseVersion>)> {
        Ok(match self.store.get_lease().await? {
            Some((bytes, v)) => (Doc::parse(&bytes), Some(v)),
            None => (Doc::default(), None),
        })
    }

    /// Takes or keeps the lease read as `doc` (at `version`) if it is this process's turn,
    /// else joins the queue. `released`: `doc` is the lease as this process released it,
    /// not read since; `None` if it changed since (read it).
    async fn claim(
        self: &Arc<Self>,
        doc: Doc,
        version: Option<LeaseVersion>,
        known: u64,
        released: bool,
    ) -> Result<Option<Taken>> {
        let (now, now_ms, ttl_ms) = (Instant::now(), now_ms(), self.ttl_ms());
        let was_held = self.state().held.is_some();
        let mut fresh = doc.fresh_waiters(now_ms, ttl_ms);
        let others_wait = fresh.iter().any(|(id, _)| *id != self.me);
        let expires = doc.owner.as_ref().map_or(0, |o| o.1);
        let mine = match doc.valid_owner(now_ms) {
            Some(owner) if owner == self.me => true,
            Some(owner) => {
                let owner = owner.to_owned();
                return self.wait(doc, version, owner).await.map(Some);
            }
            None => {
                // Free, but the first waiter gets it next (unless it let it lie: dead).
                if let Some((first, _)) = fresh.first()
                    && *first != self.me
                    && expires + ACCEPT.as_millis() as u64 > now_ms
                {
                    let first = first.clone();
                    return self.wait(doc, version, first).await.map(Some);
                }
                false
            }
        };
        fresh.retain(|(id, _)| *id != self.me);
        let mut next = Doc {
            owner: doc.owner.clone(),
            txid: doc.txid.max(Some(known)),
            files: Vec::new(),
            waiters: fresh,
        };
        // The TXID alone changes nothing worth a write: it goes with the next one. A holder
        // about to hand over does not renew a lease it keeps for one more transaction.
        let left_ms = expires.saturating_sub(now_ms);
        let soon = left_ms < if others_wait { 500 } else { ttl_ms / 2 };
        let renew = !mine || soon || next.waiters != doc.waiters;
        let version = match (renew, version) {
            (false, Some(v)) => v,
            (_, over) => {
                // While others wait, for a turn: a holder killed in it holds them up less.
                let until = now_ms
                    + if others_wait {
                        self.handed_ms()
                    } else {
                        ttl_ms
                    };
                next.owner = Some((self.me.clone(), until));
                match self.store.put_lease(next.to_bytes(), over.as_ref()).await? {
                    LeaseWrite::Stored(v) => {
                        if mine {
                            self.stats.renewals.fetch_add(1, Ordering::Relaxed);
                        }
                        v
                    }
                    LeaseWrite::Lost if released => return Ok(None),
                    LeaseWrite::Lost => {
                        self.state().held = None;
                        self.stats.busy.fetch_add(1, Ordering::Relaxed);
                        self.watch();
                        return Ok(Some(Taken::Busy));
                    }
                    LeaseWrite::Unsupported => {
                        self.state().unsupported = true;
                        return Ok(Some(Taken::Held { catch_up: false }));
                    }
                }
            }
        };
        let left = Duration::from_millis(
            next.owner
                .as_ref()
                .map_or(0, |o| o.1.saturating_sub(now_ms)),
        );
        let mut st = self.state();
        if others_wait {
            st.contended_at = Some(now);
        }
        if !was_held && !released {
            st.stored.clear();
        }
        let turn_from = st.held.as_ref().map_or(now, |h| h.turn_from);
        let turn_over = now >= turn_from + TURN;
        st.held = Some(Held {
            version,
            doc: next,
            check_at: self.check_at(&st, now, turn_from),
            renew_at: now + renew_after(left, self.ttl),
            hand_over: others_wait && turn_over,
            contended: others_wait,
            turn_from,
        });
        drop(st);
        if !was_held {
            self.stats.taken.fetch_add(1, Ordering::Relaxed);
            if mine {
                self.stats.handed_to_us.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Taken from another process (handed over or after an expiry): read the store's
        // newest state. (Trusting the TXID the lease names instead let a taker write on a
        // schema it had not read: a test caught it.) Taken back unchanged since this
        // process released it: its own commits are the newest it names.
        let own_newest = released && doc.txid.is_none_or(|t| t <= known);
        Ok(Some(Taken::Held {
            catch_up: !was_held && !own_newest,
        }))
    }

    /// When a holder whose turn began at `turn_from` reads the lease next: at the end of
    /// its turn while others take turns with it, else in a [`CHECK`].
    fn check_at(&self, st: &State, now: Instant, turn_from: Instant) -> Instant {
        let contended = st.contended_at.is_some_and(|t| now < t + CONTENDED);
        if contended {
            (turn_from + TURN / 2).max(now + TURN / 4)
        } else {
            now + CHECK
        }
    }

    /// Whether this process holds the lease: no other writer commits, so its state is the
    /// newest (a read transaction need not wait for a poll).
    pub(crate) fn holds(&self) -> bool {
        self.state().held.is_some()
    }

    /// Whether the lease last read names a TXID newer than `known` (the process waiting
    /// for its turn reads that state before its next try).
    pub(crate) fn behind(&self, known: u64) -> bool {
        self.state().seen_txid.is_some_and(|t| t > known)
    }

    /// A BEGIN that took the lease does not go on (its snapshot was stale): the lease stays,
    /// for the retry, which the busy handler makes at once.
    pub(crate) fn pause(self: &Arc<Self>) {
        {
            let mut st = self.state();
            st.in_txn = false;
            st.last_activity = Instant::now();
            // Just read: the retry need not read it again.
            if let Some(held) = st.held.as_mut() {
                held.check_at = held.check_at.max(Instant::now() + TURN / 4);
            }
            st.ready = Some(false);
        }
        watch::refused_here(true);
        self.linger();
    }

    /// The end of this process's write transaction: hands the lease to the first waiter if
    /// one waits (read half way through the turn) and this process's turn is over (its next BEGIN then queues behind), else
    /// keeps it for [`LINGER`].
    pub(crate) fn finish(self: &Arc<Self>, txid: u64) {
        let handing = {
            let mut st = self.state();
            if !st.in_txn {
                return;
            }
            if let Some(held) = st.held.as_mut() {
                held.doc.txid = held.doc.txid.max(Some(txid));
            }
            st.in_txn = false;
            st.wrote = true;
            st.last_activity = Instant::now();
            let now = Instant::now();
            match st
                .held
                .take_if(|h| h.hand_over && now >= h.turn_from + TURN)
            {
                Some(h) => h,
                None => {
                    drop(st);
                    self.linger();
                    return;
                }
            }
        };
        let me = self.clone();
        let handed = bridged(
            &self.store,
            "handing the writers' lease over",
            async move { me.hand_over(handing).await },
            self.timeout * 3,
        );
        if handed.is_err() {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `PRAGMA ltx_lease`: this process's view of the lease, as JSON.
    pub(crate) fn report(&self) -> String {
        let st = self.state();
        let state = if st.unsupported {
            "unsupported"
        } else if st.held.is_some() {
            "held"
        } else if st.other.is_some() {
            "other"
        } else {
            "free"
        };
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let s = &self.stats;
        format!(
            concat!(
                "{{\"state\":\"{}\",\"id\":\"{}\",\"ttl_ms\":{},\"taken\":{},\"busy\":{},",
                "\"handed_over\":{},\"handed_to_us\":{},\"renewals\":{},\"releases\":{},",
                "\"waiting\":{},\"polls\":{},\"errors\":{},\"lease_requests\":{}}}"
            ),
            state,
            self.me,
            self.ttl_ms(),
            n(&s.taken),
            n(&s.busy),
            n(&s.handed_over),
            n(&s.handed_to_us),
            n(&s.renewals),
            n(&s.releases),
            st.watching,
            n(&s.polls),
            n(&s.errors),
            n(&self.store.stats().lease_requests),
        )
    }
}

/// How long after taking a lease with `left` to run its holder renews it: at half its TTL,
/// or half way through a shorter (handed-over) lease.
fn renew_after(left: Duration, ttl: Duration) -> Duration {
    left.saturating_sub(ttl / 2).max(left / 2)
}
