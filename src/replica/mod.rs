//! The replica engine: which LTX files make up the database, the immutable snapshots
//! connections read, and `Replica`, shared by every connection to one URL.
//!
//! Knows nothing of SQLite. The storage layer lists and fetches; `ltx` decodes.

mod bookmark;
mod file_name;
mod follower;
mod hydrator;
mod page_map;
mod plan;
mod plan_files;
#[allow(clippy::module_inception)]
mod replica;
mod snapshot;
mod time_travel;

pub use bookmark::NotReached;
#[cfg(test)]
pub(crate) use file_name::test_id;
pub use file_name::{LtxFileId, SNAPSHOT_LEVEL};
pub use plan::{PlanError, extend_chain, restore_plan};
pub(crate) use plan_files::read_plan_files;
pub use replica::{CompactionConfig, Replica, ReplicaConfig, ReplicaStats, Target, Warm};
pub(crate) use snapshot::{FileIndex, PlanFile};
pub use snapshot::{LocalPages, PageRef, Snapshot};
pub(crate) use time_travel::newest_written_by;
