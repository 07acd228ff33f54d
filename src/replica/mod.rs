//! The replica engine: which LTX files make up the database at a given TXID.
//!
//! So far the pure parts: Litestream's file names and levels, and the restore plan. They know
//! nothing of SQLite and do no IO; the storage layer lists files and hands them here.

mod file_name;
mod plan;

pub use file_name::{LtxFileId, SNAPSHOT_LEVEL};
pub use plan::{PlanError, restore_plan};
