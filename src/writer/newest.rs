//! Before a COMMIT takes TXID N+1 by the conditional create of its level-0 name: that name
//! decides between writers only while the level-0 file of N+1 is there. Retention removes
//! level-0 files `l0_retention` after they were written, once level 1 holds them, so a
//! writer whose base (TXID N) was last known to be the newest longer ago than that may
//! find the name of N+1 free though another writer took N+1: the create succeeds, the
//! COMMIT is acknowledged, and no plan ever reads its file (level 0 holds a second N+1).
//!
//! So when the base was last known newest more than half of `l0_retention` ago (a long
//! transaction, a process paused), one LIST of level 0 past N decides first: retention
//! keeps the newest level-0 file (ours and Litestream's alike), so nothing there means no
//! writer has gone past N. A base known newest more recently (this process stored it, or a
//! poll found nothing past it) costs no request. The half is a margin for the clocks
//! retention compares (its own with the store's file times); the writers of a replica are
//! taken to share `l0_retention`, as they share `sync`.

use crate::error::{Error, Result};
use crate::fetch::bridged;
use crate::replica::{LtxFileId, Replica, Snapshot};

/// `Ok` if the replica's newest TXID is still `base`'s, as far as a COMMIT on it needs to
/// know.
///
/// # Errors
/// [`Error::Conflict`] if another writer went past `base`; [`Error::Io`] if the store
/// failed to list.
pub(super) fn ensure(replica: &Replica, base: &Snapshot) -> Result<()> {
    let conflict = || Error::Conflict {
        url: replica.url().to_owned(),
        txid: base.txid.next(),
    };
    if replica.current().txid > base.txid {
        return Err(conflict());
    }
    let window = replica.config().compaction.l0_retention / 2;
    let stored = super::compact::stored_at(replica.url(), base.txid);
    let polled = {
        let f = replica
            .follow_status
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // A poll that began then and found nothing past the state it left: `base`, if the
        // replica is still there.
        f.last_attempt
            .filter(|_| f.error.is_none() && replica.current().txid == base.txid)
    };
    if [stored, polled]
        .into_iter()
        .flatten()
        .any(|t| t.elapsed() < window)
    {
        return Ok(());
    }
    let after = (base.txid.get() > 0).then_some(LtxFileId {
        level: 0,
        min_txid: base.txid,
        max_txid: base.txid,
    });
    let store = replica.store().clone();
    let task_store = store.clone();
    let newer = bridged(
        &store,
        "checking that no writer went past this transaction's base",
        async move {
            let files = task_store.list_level_after(0, after.as_ref()).await?;
            Ok(files.iter().any(|f| f.id.max_txid > base_txid(after)))
        },
        replica.timeout(),
    )?;
    match newer {
        true => Err(conflict()),
        false => Ok(()),
    }
}

fn base_txid(after: Option<LtxFileId>) -> crate::ltx::Txid {
    after.map_or(crate::ltx::Txid::ZERO, |a| a.max_txid)
}
