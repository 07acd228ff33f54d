//! The FFI edge, and the only `unsafe` code of the crate: the `sqlite3_vfs` and
//! `sqlite3_io_methods` tables SQLite calls, the entry point of the loadable extension, and
//! the calls we make into SQLite.
//!
//! - Every SQLite API call goes through [`api::SqliteApi`], filled from the `sqlite3_api_routines`
//!   the host passes to `sqlite3_ltxvfs_init` (loadable build: nothing is linked, so no second
//!   SQLite can enter the host), or from the linked symbols (`static` feature, `register()`).
//!   Only fields present since SQLite 3.8 are read, so hosts from 3.40 on are fine.
//! - Every callback runs inside [`guard`]: a panic becomes an error code, never an unwind
//!   into C or an abort of the host.
//! - Files that are not a main database (temp files, statement journals, sort spills) are
//!   opened by the default VFS in our slot: SQLite then calls its methods directly.
//!
//! C contracts: https://www.sqlite.org/c3ref/vfs.html and https://www.sqlite.org/c3ref/io_methods.html
//!
//! One file per idea: [`api`] (the table of SQLite functions we call), [`entry`] (entry
//! point and registration), [`functions`] (SQL functions), [`status`] (the status functions'
//! way to a connection's database), [`io_methods`] (file callbacks),
//! [`vfs_methods`] (VFS callbacks). Each `unsafe` block says why it holds in a `// SAFETY:`
//! comment.

mod api;
mod entry;
mod functions;
mod io_methods;
mod status;
mod vfs_methods;

#[cfg(feature = "static")]
pub(crate) use entry::register_linked;
#[cfg(feature = "static")]
pub use entry::trust_connection;

use crate::error::Error;
use crate::replica::PlanError;
use api::api;
use libsqlite3_sys as ffi;
use std::ffi::{CStr, CString, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// The name the VFS registers under.
const VFS_NAME: &CStr = c"ltx";

/// A C string from any text: an interior NUL becomes a space rather than a panic.
fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', " ")).unwrap_or_default()
}

/// Runs a callback body: a panic becomes `on_panic` (and a log line), never an unwind
/// across the FFI boundary.
fn guard(on_panic: c_int, body: impl FnOnce() -> c_int) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(rc) => rc,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if let Some(api) = api() {
                api.log(on_panic, &format!("ltxvfs: internal error (panic): {what}"));
            }
            on_panic
        }
    }
}

/// The SQLite result code for an error, and the sentence that goes with it.
fn error_code(e: &Error, opening: bool) -> c_int {
    match e {
        // A damaged replica is corrupt whenever it shows, at the open too; a target the
        // replica cannot reach (nothing that early, no files) only cannot be opened.
        Error::Corrupt { .. }
        | Error::Plan {
            source: PlanError::Gap { .. },
            ..
        } => ffi::SQLITE_CORRUPT,
        _ if opening => ffi::SQLITE_CANTOPEN,
        Error::Plan { .. } => ffi::SQLITE_CORRUPT,
        Error::Io { .. } | Error::Vanished { .. } | Error::Local { .. } => ffi::SQLITE_IOERR_READ,
        // SQLITE_BUSY_SNAPSHOT: as a WAL reader whose snapshot is too old to write from.
        Error::Conflict { .. } => ffi::SQLITE_BUSY_SNAPSHOT,
        Error::Write { .. } => ffi::SQLITE_IOERR_WRITE,
        Error::Config(_) | Error::NoReplicaUrl | Error::ReplicaNotFound { .. } => {
            ffi::SQLITE_IOERR_READ
        }
    }
}

/// Logs an error; returns its code and sentence. `opening`: the full path SQLite gave xOpen
/// for the database whose open failed, whose sentence becomes this thread's last failed
/// open (the caller records any other error on the connection's file).
fn report(e: &Error, opening: Option<&str>) -> (c_int, String) {
    let code = error_code(e, opening.is_some());
    let message = match opening {
        // The sentence names what the user gave: SQLite hands xOpen the name made absolute
        // against the working directory (a path the user never wrote, issue #16), and the
        // name is only a label anyway; the file name is what was written in the URI or
        // mapped with ltx_register.
        Some(path) => {
            let name = Path::new(path)
                .file_name()
                .map_or(path.into(), |n| n.to_string_lossy());
            format!("ltxvfs: cannot open {name}: {e}")
        }
        None => format!("ltxvfs: {e}"),
    };
    if let Some(api) = api() {
        api.log(code, &message);
    }
    if opening.is_some() {
        crate::vfs::set_last_error(message.clone());
    }
    (code, message)
}
