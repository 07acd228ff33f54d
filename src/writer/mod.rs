//! The write path (write mode, `write=1`): the pages a transaction changed, the in-process
//! lock table of a replica's writers, and the COMMIT that stores a transaction as one level-0
//! LTX file at the next TXID, created only if no other writer took that TXID first (the store
//! is the arbiter, DESIGN.md decision 13).
//!
//! Uses `replica` (snapshots, publishing), `ltx` (the encoder) and `store` (the conditional
//! create); knows nothing of SQLite, and `replica` knows nothing of it.

mod buffer_file;
mod buffered;
mod commit;
mod compact;
mod dirty;
mod fork;
mod lease;
mod locks;
mod newest;
pub(crate) mod private_dir;
mod spill;
mod streamed;

pub(crate) use buffered::Buffered;
pub(crate) use compact::Compactor;
pub(crate) use dirty::DirtyPages;
pub(crate) use fork::fork;
pub(crate) use lease::{Lease, Taken, nap};
pub(crate) use locks::LockTable;

use crate::error::Result;
use crate::replica::{Replica, Snapshot};
use std::sync::Arc;

/// COMMIT: stores the transaction `dirty` made over `base` as its next TXID
/// ([`commit::commit`]), once sure that no writer went past `base` unseen ([`newest`]).
///
/// # Errors
/// As [`commit::commit`].
pub(crate) fn commit(
    replica: &Arc<Replica>,
    base: &Arc<Snapshot>,
    dirty: &DirtyPages,
) -> Result<Arc<Snapshot>> {
    newest::ensure(replica, base)?;
    commit::commit(replica, base, dirty)
}
