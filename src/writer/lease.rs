//! The writers' lease of a replica: one object in the store (`<root>/lease`) naming the
//! process that writes now, until when, and the processes waiting for a turn. A process
//! takes it at its first BEGIN IMMEDIATE (RESERVED) and keeps it across its consecutive
//! transactions, so a lone writer pays nothing per commit: it reads the object again about
//! once a second while it writes ([`CHECK`]), renews it when half its TTL has passed, and
//! releases it after [`LINGER`] without a transaction (a task on the IO runtime, woken by
//! that deadline). Another process's BEGIN finds it held and gets SQLITE_BUSY at once,
//! before its work; it registers as a waiter, and the holder hands the lease to the first
//! waiter after its current transaction: writers take turns.
//!
//! The lease is advice, not the arbiter: a holder paused past its TTL may still try to
//! commit, and the conditional create of each TXID (`commit.rs`) refuses it. Only objects
//! are moved here; the store's conditional writes (`store::lease`) make every change
//! of the object one compare-and-swap.

use crate::error::Result;
use crate::fetch::bridged;
use crate::store::{LeaseVersion, LeaseWrite, Store};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often a holder in a stream of transactions reads the lease again (for waiters, or a
/// takeover while it was paused).
const CHECK: Duration = Duration::from_secs(1);
/// How long after it last saw another writer a holder reads the lease at every BEGIN (so it
/// hands over after each transaction while others take turns with it).
const CONTENDED: Duration = Duration::from_secs(5);
/// How long a holder keeps the lease without a transaction before it releases it.
const LINGER: Duration = Duration::from_secs(1);

/// What a BEGIN's request for the lease came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// This process holds the lease. `catch_up`: it did not before this call (another
    /// process may have committed past the state the caller knows: read the store's newest).
    Held { catch_up: bool },
    /// Another process holds it (or a waiter ahead of this one gets it next).
    Busy,
}

/// The lease object's content: a few lines of text.
///
/// ```text
/// ltxvfs-lease 1
/// owner <id> <expires, ms since the epoch>
/// txid <the newest TXID its writer stored, when it last wrote the lease>
/// waiter <id> <last seen, ms since the epoch>
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Doc {
    owner: Option<(String, u64)>,
    txid: Option<u64>,
    waiters: Vec<(String, u64)>,
}

impl Doc {
    /// Reads a lease; lines it does not know are skipped (an unreadable lease is a free one,
    /// which the next conditional write replaces).
    fn parse(bytes: &[u8]) -> Doc {
        let mut doc = Doc::default();
        for line in String::from_utf8_lossy(bytes).lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["owner", id, ms] => doc.owner = ms.parse().ok().map(|ms| (id.to_string(), ms)),
                ["txid", n] => doc.txid = n.parse().ok(),
                ["waiter", id, ms] => {
                    if let Ok(ms) = ms.parse() {
                        doc.waiters.push((id.to_string(), ms));
                    }
                }
                _ => {}
            }
        }
        doc
    }

    fn to_bytes(&self) -> bytes::Bytes {
        let mut s = String::from("ltxvfs-lease 1\n");
        if let Some((id, ms)) = &self.owner {
            s.push_str(&format!("owner {id} {ms}\n"));
        }
        if let Some(txid) = self.txid {
            s.push_str(&format!("txid {txid}\n"));
        }
        for (id, ms) in &self.waiters {
            s.push_str(&format!("waiter {id} {ms}\n"));
        }
        s.into()
    }

    /// The owner, if its lease has not expired at `now_ms`.
    fn valid_owner(&self, now_ms: u64) -> Option<&str> {
        self.owner
            .as_ref()
            .filter(|(_, until)| *until > now_ms)
            .map(|(id, _)| id.as_str())
    }
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
}

#[derive(Debug)]
struct Held {
    version: LeaseVersion,
    doc: Doc,
    /// When to read the object again, and when to renew it.
    check_at: Instant,
    renew_at: Instant,
    /// Another process waits: hand the lease over after this transaction.
    hand_over: bool,
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
}

/// One process's side of a replica's lease, shared by its writable connections (which the
/// in-process lock table lets write one at a time).
#[derive(Debug)]
pub(crate) struct Lease {
    store: Store,
    me: String,
    ttl: Duration,
    timeout: Duration,
    state: Mutex<State>,
    stats: Stats,
}

type Leases = HashMap<String, Weak<Lease>>;
static LEASES: Mutex<Option<Leases>> = Mutex::new(None);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Lease {
    /// The lease of the replica at `url` in this process.
    pub(crate) fn of(url: &str, store: &Store, ttl: Duration, timeout: Duration) -> Arc<Lease> {
        let mut leases = LEASES.lock().unwrap_or_else(|e| e.into_inner());
        let map = leases.get_or_insert_with(HashMap::new);
        map.retain(|_, l| l.strong_count() > 0);
        if let Some(lease) = map.get(url).and_then(Weak::upgrade) {
            return lease;
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let lease = Arc::new(Lease {
            store: store.clone(),
            me: format!("{}-{:08x}", std::process::id(), nanos ^ (map.len() as u32)),
            ttl: ttl.max(Duration::from_millis(100)),
            timeout,
            state: Mutex::new(State {
                held: None,
                contended_at: None,
                unsupported: false,
                in_txn: false,
                last_activity: Instant::now(),
                keeper: 0,
                other: None,
                seen_txid: None,
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

    /// At a BEGIN's RESERVED lock: takes (or keeps) the lease. Without a request while
    /// this process holds it and no check or renewal is due.
    ///
    /// # Errors
    /// [`crate::error::Error::Io`] if the store failed; the caller may go on without the
    /// lease (the conditional create still decides).
    pub(crate) fn take(self: &Arc<Self>, known: u64) -> Result<Taken> {
        {
            let mut st = self.state();
            let now = Instant::now();
            if st.unsupported {
                return Ok(Taken::Held { catch_up: false });
            }
            if let Some(h) = &st.held
                && now < h.check_at
                && now < h.renew_at
            {
                st.in_txn = true;
                return Ok(Taken::Held { catch_up: false });
            }
        }
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
            Ok(Taken::Busy) => {}
            Err(_) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                self.state().in_txn = true;
            }
        }
        taken
    }

    async fn take_slow(self: Arc<Self>, known: u64) -> Result<Taken> {
        let (doc, version) = match self.store.get_lease().await? {
            Some((bytes, v)) => (Doc::parse(&bytes), Some(v)),
            None => (Doc::default(), None),
        };
        self.state().seen_txid = doc.txid;
        let (now, now_ms, ttl_ms) = (Instant::now(), now_ms(), self.ttl_ms());
        let was_held = self.state().held.is_some();
        // Waiters seen within a TTL, in their order; a waiter that gave up drops out.
        let mut fresh: Vec<(String, u64)> = doc
            .waiters
            .iter()
            .filter(|(_, seen)| seen.saturating_add(ttl_ms) > now_ms)
            .cloned()
            .collect();
        let others_wait = fresh.iter().any(|(id, _)| *id != self.me);
        let mine = match doc.valid_owner(now_ms) {
            Some(owner) if owner == self.me => true,
            Some(owner) => {
                let owner = owner.to_owned();
                return self.wait(doc, version, owner).await;
            }
            None => {
                if let Some((first, _)) = fresh.first()
                    && *first != self.me
                {
                    // Free, but a waiter before this process gets it next.
                    let first = first.clone();
                    return self.wait(doc, version, first).await;
                }
                false
            }
        };
        fresh.retain(|(id, _)| *id != self.me);
        let mut next = Doc {
            owner: doc.owner.clone(),
            txid: doc.txid.max(Some(known)),
            waiters: fresh,
        };
        let expires = doc.owner.as_ref().map_or(0, |o| o.1);
        // The TXID alone changes nothing worth a write: it goes with the next one.
        let renew =
            !mine || expires.saturating_sub(now_ms) < ttl_ms / 2 || next.waiters != doc.waiters;
        let version = match (renew, version) {
            (false, Some(v)) => v,
            (_, over) => {
                next.owner = Some((self.me.clone(), now_ms + ttl_ms));
                match self.store.put_lease(next.to_bytes(), over.as_ref()).await? {
                    LeaseWrite::Stored(v) => {
                        if mine {
                            self.stats.renewals.fetch_add(1, Ordering::Relaxed);
                        }
                        v
                    }
                    LeaseWrite::Lost => {
                        self.state().held = None;
                        self.stats.busy.fetch_add(1, Ordering::Relaxed);
                        return Ok(Taken::Busy);
                    }
                    LeaseWrite::Unsupported => {
                        self.state().unsupported = true;
                        return Ok(Taken::Held { catch_up: false });
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
        let contended = st.contended_at.is_some_and(|t| now < t + CONTENDED);
        st.held = Some(Held {
            version,
            doc: next,
            check_at: if contended { now } else { now + CHECK },
            renew_at: now + left.saturating_sub(self.ttl / 2),
            hand_over: others_wait,
        });
        if !was_held {
            self.stats.taken.fetch_add(1, Ordering::Relaxed);
            if mine {
                self.stats.handed_to_us.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Taken from another process (handed over or after an expiry): read the store's
        // newest state. (Trusting the TXID the lease names instead let a taker write on a
        // schema it had not read: a test caught it.)
        Ok(Taken::Held {
            catch_up: !was_held,
        })
    }

    /// Whether the lease last read names a TXID newer than `known` (the process waiting
    /// for its turn reads that state before its next try).
    pub(crate) fn behind(&self, known: u64) -> bool {
        self.state().seen_txid.is_some_and(|t| t > known)
    }

    /// Another process holds the lease (or gets it next): this one registers as a waiter
    /// (again when its entry is half a TTL old) and is busy.
    async fn wait(&self, doc: Doc, version: Option<LeaseVersion>, other: String) -> Result<Taken> {
        {
            let mut st = self.state();
            st.held = None;
            st.other = Some(other);
            st.contended_at = Some(Instant::now());
        }
        self.stats.busy.fetch_add(1, Ordering::Relaxed);
        let now_ms = now_ms();
        let seen = doc
            .waiters
            .iter()
            .find(|(id, _)| *id == self.me)
            .map(|w| w.1);
        if seen.is_some_and(|s| s + self.ttl_ms() / 2 > now_ms) {
            return Ok(Taken::Busy);
        }
        let mut next = doc;
        match next.waiters.iter_mut().find(|(id, _)| *id == self.me) {
            Some(entry) => entry.1 = now_ms,
            None => next.waiters.push((self.me.clone(), now_ms)),
        }
        if let LeaseWrite::Unsupported = self
            .store
            .put_lease(next.to_bytes(), version.as_ref())
            .await?
        {
            self.state().unsupported = true;
        }
        Ok(Taken::Busy)
    }

    /// A BEGIN that took the lease does not go on (its snapshot was stale): the lease stays,
    /// for the retry.
    pub(crate) fn pause(self: &Arc<Self>) {
        {
            let mut st = self.state();
            st.in_txn = false;
            st.last_activity = Instant::now();
            // Just read: the retry need not read it again.
            if let Some(held) = st.held.as_mut() {
                held.check_at = Instant::now() + CHECK;
            }
        }
        self.linger();
    }

    /// The end of this process's write transaction: hands the lease to the first waiter if
    /// one waits (this process's next BEGIN then queues behind it), else keeps it for
    /// [`LINGER`].
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
            st.last_activity = Instant::now();
            match st.held.take_if(|h| h.hand_over) {
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

    async fn hand_over(self: Arc<Self>, held: Held) -> Result<()> {
        let (mut doc, mut version) = (held.doc, held.version);
        for _ in 0..3 {
            let now_ms = now_ms();
            let mut waiters: Vec<_> = doc
                .waiters
                .iter()
                .filter(|(id, seen)| *id != self.me && seen + self.ttl_ms() > now_ms)
                .cloned()
                .collect();
            let next = Doc {
                owner: (!waiters.is_empty()).then(|| (waiters.remove(0).0, now_ms + self.ttl_ms())),
                txid: doc.txid,
                waiters,
            };
            match self
                .store
                .put_lease(next.to_bytes(), Some(&version))
                .await?
            {
                LeaseWrite::Stored(_) => {
                    let stat = if next.owner.is_some() {
                        &self.stats.handed_over
                    } else {
                        &self.stats.releases
                    };
                    stat.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                LeaseWrite::Unsupported => return Ok(()),
                // Changed since read (a waiter registered): read it again.
                LeaseWrite::Lost => match self.store.get_lease().await? {
                    Some((bytes, v))
                        if Doc::parse(&bytes).valid_owner(now_ms) == Some(self.me.as_str()) =>
                    {
                        (doc, version) = (Doc::parse(&bytes), v);
                    }
                    _ => return Ok(()),
                },
            }
        }
        Ok(())
    }

    /// Starts the keeper task (see [`Lease::keep`]) for the state now, ending the previous
    /// one.
    fn linger(self: &Arc<Self>) {
        let number = {
            let mut st = self.state();
            st.keeper += 1;
            if st.held.is_none() {
                return;
            }
            st.keeper
        };
        let me = self.clone();
        let _ = crate::io::spawn(async move { me.keep(number).await });
    }

    /// The keeper: while this process holds the lease, renews it when due during a
    /// transaction, and releases it (to a waiter, if any) after [`LINGER`] without one.
    async fn keep(self: Arc<Self>, number: u64) {
        let released = loop {
            let (wait, renew) = {
                let mut st = self.state();
                let now = Instant::now();
                let due = st.last_activity + LINGER;
                let Some(held) = st.held.as_ref().filter(|_| st.keeper == number) else {
                    return;
                };
                if !st.in_txn && now >= due {
                    break st.held.take();
                }
                let renew_at = held.renew_at;
                match (st.in_txn, now >= renew_at) {
                    (true, true) => (
                        Duration::ZERO,
                        Some((held.doc.clone(), held.version.clone())),
                    ),
                    (true, false) => (renew_at - now, None),
                    (false, _) => (due - now, None),
                }
            };
            if let Some((doc, version)) = renew
                && self.renew(doc, version).await.is_err()
            {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                crate::io::sleep(LINGER).await;
            }
            crate::io::sleep(wait).await;
        };
        if let Some(held) = released
            && self.clone().hand_over(held).await.is_err()
        {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Extends the lease by a TTL from now (a transaction longer than half a TTL); if the
    /// object changed, this process no longer holds it (or a waiter came: it learns at the
    /// next BEGIN).
    async fn renew(&self, doc: Doc, version: LeaseVersion) -> Result<()> {
        let mut next = doc;
        next.owner = Some((self.me.clone(), now_ms() + self.ttl_ms()));
        let now = Instant::now();
        let written = self
            .store
            .put_lease(next.to_bytes(), Some(&version))
            .await?;
        let mut st = self.state();
        match (written, st.held.as_mut()) {
            (LeaseWrite::Stored(v), Some(held)) if held.version == version => {
                self.stats.renewals.fetch_add(1, Ordering::Relaxed);
                held.version = v;
                // The doc read before the await may name an older TXID than `finish` set.
                held.doc.owner = next.owner;
                held.renew_at = now + self.ttl / 2;
            }
            // Changed: the next BEGIN reads it (check now).
            (_, Some(held)) => {
                held.check_at = now;
                held.renew_at = now + self.ttl;
            }
            _ => {}
        }
        Ok(())
    }

    /// The last writable connection closes: the lease goes (to a waiter, if any) now.
    pub(crate) fn close(self: &Arc<Self>) {
        let held = {
            let mut st = self.state();
            if st.in_txn {
                return;
            }
            st.held.take()
        };
        if let Some(held) = held {
            let me = self.clone();
            let _ = bridged(
                &self.store,
                "releasing the writers' lease",
                async move { me.hand_over(held).await },
                self.timeout,
            );
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
                "\"errors\":{},\"lease_requests\":{}}}"
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
            n(&s.errors),
            n(&self.store.stats().lease_requests),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_reads_back_what_it_wrote_and_skips_what_it_does_not_know() {
        let doc = Doc {
            owner: Some(("12-ab".into(), 1_000)),
            txid: None,
            waiters: vec![("13-cd".into(), 900), ("14-ef".into(), 950)],
        };
        assert_eq!(Doc::parse(&doc.to_bytes()), doc);
        assert_eq!(doc.valid_owner(999), Some("12-ab"));
        assert_eq!(doc.valid_owner(1_000), None, "expired at its time");
        let with_txid = Doc {
            txid: Some(42),
            ..doc.clone()
        };
        assert_eq!(Doc::parse(&with_txid.to_bytes()), with_txid);
        let odd = Doc::parse(b"something else\nowner x notanumber\nwaiter y 5\n");
        assert_eq!(odd.owner, None);
        assert_eq!(odd.waiters, vec![("y".to_string(), 5)]);
    }
}
