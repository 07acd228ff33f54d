//! The SQLite glue: the `ltx` VFS. `ffi/` holds the C tables and every `unsafe` block;
//! `main_db` is the safe main-database file (locks, snapshot pinning, page-1 patch, the
//! write path's entry), `pragmas` its `ltx_*` pragmas, `journal` the rollback journal of
//! write mode, `options` the per-database settings. Knows nothing of LTX bytes.

pub(crate) mod ffi;
mod journal;
mod main_db;
pub(crate) mod names;
mod options;
mod pragmas;

use std::cell::RefCell;

thread_local! {
    /// The last failed open (of a database or its journal) on this thread, for
    /// `ltx_last_error()` on a connection that has no error of its own: SQLite only says
    /// "unable to open database file", and a failed open leaves no connection to ask. Kept
    /// per thread, never per process, so that one thread (one visitor's request) never reads
    /// another's sentence (issue #22).
    static LAST_OPEN_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records why an open failed on this thread.
pub(crate) fn set_last_error(message: String) {
    LAST_OPEN_ERROR.with(|e| *e.borrow_mut() = Some(message));
}

/// Why the last open failed on this thread, if one did.
fn last_error() -> Option<String> {
    LAST_OPEN_ERROR.with(|e| e.borrow().clone())
}
