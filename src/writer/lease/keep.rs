//! A holder's background work: at the end of its turn it reads who waits (while its
//! transaction goes on), and the keeper task renews the lease during a long transaction
//! and hands it on (or releases it) once this process stops writing; and the take-back of
//! a released lease at the next read transaction's start.

use super::{CHECK, Doc, HAND_IDLE, Held, LINGER, Lease, TURN, Taken, now_ms, watch};
use crate::error::Result;
use crate::fetch::bridged;
use crate::store::{LeaseVersion, LeaseWrite};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl Lease {
    /// A holder's turn is over: reads the lease (in the background) and hands it to the
    /// first waiter after the current transaction, or keeps it for a [`CHECK`] if none
    /// waits. A lease no longer this process's is let go (its next BEGIN reads it).
    pub(super) async fn check(self: Arc<Self>) {
        let read = self.read().await;
        let (now, now_ms) = (Instant::now(), now_ms());
        let mut st = self.state();
        let Some(held) = st.held.as_mut() else { return };
        match read {
            Ok((doc, Some(version))) if doc.valid_owner(now_ms) == Some(self.me.as_str()) => {
                let others = doc
                    .fresh_waiters(now_ms, self.ttl_ms())
                    .iter()
                    .any(|(id, _)| *id != self.me);
                let txid = held.doc.txid.max(doc.txid);
                held.doc = Doc { txid, ..doc };
                held.version = version;
                held.hand_over = others;
                held.contended = others;
                held.check_at = now + CHECK;
                if others {
                    st.contended_at = Some(now);
                }
            }
            Ok(_) => held.check_at = now,
            Err(_) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                held.check_at = now + TURN;
            }
        }
    }

    /// At the start of a read transaction (SHARED) on a writable connection, after this
    /// process released the lease following a write: takes it back as a BEGIN would (see
    /// `take_slow`), in place of the poll a read after `idle` waits for. Stored: this
    /// process's state is the newest (true), and the write that likely follows pays no
    /// request for the lease. A read-only stretch takes it back once, not at every read.
    pub(crate) fn take_back(self: &Arc<Self>, known: u64) -> bool {
        let released = {
            let mut st = self.state();
            let free = st.held.is_none() && !st.watching && std::mem::take(&mut st.wrote);
            match st.handed.take_if(|(doc, _, _)| free && doc.released()) {
                Some(released) => released,
                None => return false,
            }
        };
        let me = self.clone();
        let taken = bridged(
            &self.store,
            "taking the writers' lease back",
            async move {
                let (doc, version, _) = released;
                me.claim(doc, Some(version), known, true).await
            },
            self.timeout * 3,
        );
        match taken {
            Ok(Some(Taken::Held { catch_up })) => {
                self.state().last_activity = Instant::now();
                self.linger();
                !catch_up
            }
            Ok(_) => false,
            Err(_) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Starts the keeper task (see [`Lease::keep`]) for the state now, ending the previous
    /// one.
    pub(super) fn linger(self: &Arc<Self>) {
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
    /// transaction, and releases it (to a waiter, if any) after [`LINGER`] without one
    /// ([`HAND_IDLE`] while others wait).
    async fn keep(self: Arc<Self>, number: u64) {
        let released = loop {
            let (wait, renew) = {
                let mut st = self.state();
                let now = Instant::now();
                let Some(held) = st.held.as_ref().filter(|_| st.keeper == number) else {
                    return;
                };
                let due = st.last_activity + if held.contended { HAND_IDLE } else { LINGER };
                if !st.in_txn && now >= due {
                    watch::unready(&mut st);
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

    /// Hands the lease to the first waiter (for [`ACCEPT`](super::ACCEPT); it renews it) or releases it,
    /// in one conditional write; read again if a waiter joined since.
    pub(super) async fn hand_over(self: Arc<Self>, held: Held) -> Result<()> {
        let (mut doc, mut version) = (held.doc, held.version);
        doc.files = self.state().stored.clone();
        for _ in 0..3 {
            let now_ms = now_ms();
            let next = doc.handed_on(&self.me, now_ms, self.ttl_ms(), now_ms + self.handed_ms());
            match self
                .store
                .put_lease(next.to_bytes(), Some(&version))
                .await?
            {
                LeaseWrite::Stored(v) => {
                    let stat = if next.owner.is_some() {
                        &self.stats.handed_over
                    } else {
                        &self.stats.releases
                    };
                    stat.fetch_add(1, Ordering::Relaxed);
                    self.state().handed = Some((next, v, Instant::now()));
                    return Ok(());
                }
                LeaseWrite::Unsupported => return Ok(()),
                // Changed since read (a waiter joined): read it again.
                LeaseWrite::Lost => match self.store.get_lease().await? {
                    Some((bytes, v))
                        if Doc::parse(&bytes).valid_owner(now_ms) == Some(self.me.as_str()) =>
                    {
                        // This process's commits since its last write of the lease stay named.
                        let (txid, files) = (doc.txid, std::mem::take(&mut doc.files));
                        (doc, version) = (Doc::parse(&bytes), v);
                        doc.txid = doc.txid.max(txid);
                        doc.files = files;
                    }
                    _ => return Ok(()),
                },
            }
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
            watch::unready(&mut st);
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
}
