//! ltxvfs: a SQLite VFS that serves a Litestream replica in object storage as a live,
//! read-only database. See `README.md` and `docs/` for the design.
//!
//! Layers, lowest first: [`ltx`] (the file format), [`replica`] (which files make up the
//! database at a TXID). The SQLite glue, the fetch layer, the cache and the storage layer
//! join them as they are built (see DESIGN.md in the shared docs).

pub mod ltx;
pub mod replica;
