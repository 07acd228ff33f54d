//! The error every layer above `ltx` returns. Each variant carries its context (replica URL
//! without credentials, LTX file, offset) and says which SQLite error it becomes, so the VFS
//! maps it in one place (`vfs::ffi`).

use crate::ltx;
use crate::replica::{LtxFileId, PlanError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A URI parameter or environment setting that cannot be used.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// No replica URL was given.
    #[error(
        "no replica: open file:NAME?vfs=ltx&replica=URL, map NAME with SELECT ltx_register(NAME, URL), or set LTXVFS_REPLICA_URL or LITESTREAM_REPLICA_URL"
    )]
    NoReplicaUrl,
    /// The replica location does not exist or holds no LTX files.
    #[error("replica {url}: {detail}")]
    ReplicaNotFound { url: String, detail: String },
    /// The replica's files do not form a database (gap, no snapshot chain).
    #[error("replica {url}: {source}")]
    Plan { url: String, source: PlanError },
    /// An LTX file is malformed, or disagrees with the others.
    #[error("replica {url}: file {file}: {source}")]
    Corrupt {
        url: String,
        file: LtxFileId,
        source: ltx::Error,
    },
    /// A local file of ours (the hydrated copy) could not be read or written.
    #[error("local file {path}: {detail}")]
    Local { path: String, detail: String },
    /// The store answered that an object is not there: a listed file compacted or pruned
    /// away since. The engine handles it by planning again; it reaches a reader only when
    /// that fails too.
    #[error("replica {url}: {what}: not found: {detail}")]
    Vanished {
        url: String,
        what: String,
        detail: String,
    },
    /// A COMMIT lost the race for its TXID: another writer created that LTX file first.
    /// Nothing of the transaction was stored; the next transaction reads the winner's state.
    #[error(
        "replica {url}: another writer committed TXID {txid} first; this transaction was not stored (roll back and retry it)"
    )]
    Conflict { url: String, txid: ltx::Txid },
    /// A write the replica cannot take (WAL mode, a page of another size, ...).
    #[error("replica {url}: cannot write: {detail}")]
    Write { url: String, detail: String },
    /// The store failed or did not answer in time.
    #[error("replica {url}: {what}: {detail}")]
    Io {
        url: String,
        what: String,
        detail: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
