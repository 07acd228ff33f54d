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
pub(crate) mod private_dir;
mod spill;
mod streamed;

pub(crate) use buffered::Buffered;
pub(crate) use commit::commit;
pub(crate) use compact::Compactor;
pub(crate) use dirty::DirtyPages;
pub(crate) use fork::fork;
pub(crate) use lease::{Lease, Taken};
pub(crate) use locks::LockTable;
