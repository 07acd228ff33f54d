//! The lease object's content (its wire format): a few lines of text naming the holder
//! until when, the newest TXID its holder had stored when it last wrote the lease, the
//! level-0 files a holder stored in its turn (written when it hands the lease on, so that
//! the next one reads them without a LIST), and the processes waiting for a turn in their
//! order.
//!
//! ```text
//! ltxvfs-lease 1
//! owner <id> <expires, ms since the epoch>
//! txid <the newest TXID its writer stored, when it last wrote the lease>
//! file <min TXID> <max TXID> <size in bytes>
//! waiter <id> <last seen, ms since the epoch>
//! ```

use crate::ltx::Txid;
use crate::replica::LtxFileId;

/// At most this many `file` lines: a longer turn's taker lists instead.
pub(super) const MAX_FILES: usize = 64;

/// One reading of the lease object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Doc {
    pub(super) owner: Option<(String, u64)>,
    pub(super) txid: Option<u64>,
    /// Level-0 files its last holder stored in its turn, with their sizes.
    pub(super) files: Vec<(LtxFileId, u64)>,
    pub(super) waiters: Vec<(String, u64)>,
}

impl Doc {
    /// Reads a lease; lines it does not know are skipped (an unreadable lease is a free one,
    /// which the next conditional write replaces).
    pub(super) fn parse(bytes: &[u8]) -> Doc {
        let mut doc = Doc::default();
        for line in String::from_utf8_lossy(bytes).lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["owner", id, ms] => doc.owner = ms.parse().ok().map(|ms| (id.to_string(), ms)),
                ["txid", n] => doc.txid = n.parse().ok(),
                ["file", min, max, size] => {
                    if let (Ok(min), Ok(max), Ok(size)) = (min.parse(), max.parse(), size.parse())
                        && min <= max
                        && doc.files.len() < MAX_FILES
                    {
                        let id = LtxFileId {
                            level: 0,
                            min_txid: Txid(min),
                            max_txid: Txid(max),
                        };
                        doc.files.push((id, size));
                    }
                }
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

    pub(super) fn to_bytes(&self) -> bytes::Bytes {
        let mut s = String::from("ltxvfs-lease 1\n");
        if let Some((id, ms)) = &self.owner {
            s.push_str(&format!("owner {id} {ms}\n"));
        }
        if let Some(txid) = self.txid {
            s.push_str(&format!("txid {txid}\n"));
        }
        for (id, size) in &self.files {
            s.push_str(&format!(
                "file {} {} {size}\n",
                id.min_txid.0, id.max_txid.0
            ));
        }
        for (id, ms) in &self.waiters {
            s.push_str(&format!("waiter {id} {ms}\n"));
        }
        s.into()
    }

    /// No owner and no one waiting: the lease as a holder leaves it when it releases it.
    pub(super) fn released(&self) -> bool {
        self.owner.is_none() && self.waiters.is_empty()
    }

    /// The owner, if its lease has not expired at `now_ms`.
    pub(super) fn valid_owner(&self, now_ms: u64) -> Option<&str> {
        self.owner
            .as_ref()
            .filter(|(_, until)| *until > now_ms)
            .map(|(id, _)| id.as_str())
    }

    /// The waiters seen within `fresh_ms` of `now_ms`, in their order (a waiter that gave
    /// up, or died, drops out).
    pub(super) fn fresh_waiters(&self, now_ms: u64, fresh_ms: u64) -> Vec<(String, u64)> {
        self.waiters
            .iter()
            .filter(|(_, seen)| seen.saturating_add(fresh_ms) > now_ms)
            .cloned()
            .collect()
    }

    /// When `me`'s waiter entry was last written, if it has one.
    pub(super) fn waiter_seen(&self, me: &str) -> Option<u64> {
        self.waiters.iter().find(|(id, _)| id == me).map(|w| w.1)
    }

    /// This lease with `me` in the queue, seen at `now_ms` (its place kept if it had one).
    pub(super) fn with_waiter(mut self, me: &str, now_ms: u64) -> Doc {
        match self.waiters.iter_mut().find(|(id, _)| id == me) {
            Some(entry) => entry.1 = now_ms,
            None => self.waiters.push((me.to_owned(), now_ms)),
        }
        self
    }

    /// The lease `me` hands on at `now_ms`: to the first fresh waiter (not `me`) until
    /// `until_ms`, or to nobody.
    pub(super) fn handed_on(&self, me: &str, now_ms: u64, fresh_ms: u64, until_ms: u64) -> Doc {
        let mut waiters: Vec<_> = self
            .fresh_waiters(now_ms, fresh_ms)
            .into_iter()
            .filter(|(id, _)| id != me)
            .collect();
        Doc {
            owner: (!waiters.is_empty()).then(|| (waiters.remove(0).0, until_ms)),
            txid: self.txid,
            files: self.files.clone(),
            waiters,
        }
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
            files: vec![],
            waiters: vec![("13-cd".into(), 900), ("14-ef".into(), 950)],
        };
        assert_eq!(Doc::parse(&doc.to_bytes()), doc);
        assert_eq!(doc.valid_owner(999), Some("12-ab"));
        assert_eq!(doc.valid_owner(1_000), None, "expired at its time");
        let file = |n: u64| LtxFileId {
            level: 0,
            min_txid: Txid(n),
            max_txid: Txid(n),
        };
        let with_txid = Doc {
            txid: Some(42),
            files: vec![(file(41), 4_150), (file(42), 4_200)],
            ..doc.clone()
        };
        assert_eq!(Doc::parse(&with_txid.to_bytes()), with_txid);
        let skipped = Doc::parse(b"file 5 4 10\nfile x 1 2\nfile 1 1\n");
        assert_eq!(skipped.files, vec![], "min past max, not a number, no size");
        let odd = Doc::parse(b"something else\nowner x notanumber\nwaiter y 5\n");
        assert_eq!(odd.owner, None);
        assert_eq!(odd.waiters, vec![("y".to_string(), 5)]);
    }

    #[test]
    fn the_lease_goes_to_the_first_fresh_waiter_and_the_queue_keeps_its_order() {
        let doc = Doc {
            owner: Some(("a".into(), 5_000)),
            txid: Some(7),
            files: vec![],
            waiters: vec![("dead".into(), 100), ("b".into(), 900), ("c".into(), 950)],
        };
        let next = doc.handed_on("a", 1_000, 500, 3_000);
        assert_eq!(
            next.owner,
            Some(("b".to_string(), 3_000)),
            "the stale waiter drops out"
        );
        assert_eq!(next.waiters, vec![("c".to_string(), 950)]);
        assert_eq!(next.txid, Some(7));
        // The one handing over queues behind the others; a waiter keeps its place.
        let queued = next.clone().with_waiter("a", 1_010).with_waiter("c", 1_020);
        assert_eq!(
            queued.waiters,
            vec![("c".to_string(), 1_020), ("a".to_string(), 1_010)]
        );
        assert_eq!(queued.waiter_seen("a"), Some(1_010));
        let last = Doc {
            waiters: vec![],
            ..doc
        };
        assert_eq!(
            last.handed_on("a", 1_000, 500, 3_000).owner,
            None,
            "released"
        );
    }
}
