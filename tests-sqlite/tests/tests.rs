//! ltxvfs through a real SQLite in-process: rusqlite `bundled` + `ltxvfs::register()`, on
//! replicas the real `litestream` writes. One binary, a module per topic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "it/bookmarks.rs"]
mod bookmarks;
#[path = "it/compaction.rs"]
mod compaction;
#[path = "it/corrupt.rs"]
mod corrupt;
#[path = "it/disk_cache.rs"]
mod disk_cache;
#[path = "it/errors.rs"]
mod errors;
#[path = "it/faults.rs"]
mod faults;
#[path = "it/follow.rs"]
mod follow;
#[path = "it/fork.rs"]
mod fork;
#[path = "it/functions.rs"]
mod functions;
#[path = "it/gcs.rs"]
mod gcs;
#[path = "it/hydrate.rs"]
mod hydrate;
#[path = "it/idle.rs"]
mod idle;
#[path = "it/live_replica.rs"]
mod live_replica;
#[path = "it/names.rs"]
mod names;
#[path = "it/queries.rs"]
mod queries;
#[path = "it/replan.rs"]
mod replan;
#[path = "it/s3.rs"]
mod s3;
#[path = "it/security.rs"]
mod security;
#[path = "it/time_travel.rs"]
mod time_travel;
#[path = "it/warm.rs"]
mod warm;
#[path = "it/write.rs"]
mod write;
#[path = "it/write_backends.rs"]
mod write_backends;
#[path = "it/write_buffered.rs"]
mod write_buffered;
#[path = "it/write_faults.rs"]
mod write_faults;
#[path = "it/write_fleet.rs"]
mod write_fleet;
#[path = "it/write_large.rs"]
mod write_large;
#[path = "it/write_lease.rs"]
mod write_lease;
