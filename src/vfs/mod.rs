//! The SQLite glue: the `ltx` VFS. `ffi/` holds the C tables and every `unsafe` block;
//! `main_db` is the safe main-database file (locks, snapshot pinning, page-1 patch, the
//! write path's entry), `pragmas` its `ltx_*` pragmas, `journal` the rollback journal of
//! write mode, `options` the per-database settings. Knows nothing of LTX bytes.

pub(crate) mod ffi;
mod journal;
mod main_db;
pub(crate) mod names;
pub(crate) mod options;
mod pragmas;

use std::cell::RefCell;
use std::sync::Mutex;

thread_local! {
    /// The last failed open (of a database or its journal) on this thread, for
    /// `ltx_last_error()` on a connection that has no error of its own: SQLite only says
    /// "unable to open database file", and a failed open leaves no connection to ask. Kept
    /// per thread, never per process, so that one thread (one visitor's request) never reads
    /// another's sentence (issue #22).
    static LAST_OPEN_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The last failed open in the process, for the host's own (trusted) connections only: a
/// host whose connections hop threads (Go's goroutines, sqlx's worker threads) asks on the
/// connection it loaded the extension on.
static PROCESS_LAST_OPEN_ERROR: Mutex<Option<String>> = Mutex::new(None);

/// Records why an open failed on this thread.
pub(crate) fn set_last_error(message: String) {
    LAST_OPEN_ERROR.with(|e| *e.borrow_mut() = Some(message.clone()));
    *PROCESS_LAST_OPEN_ERROR
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(message);
}

/// Why the last open failed on this thread, if one did.
fn last_error() -> Option<String> {
    LAST_OPEN_ERROR.with(|e| e.borrow().clone())
}

/// Why the last open failed in this process, if one did: for trusted connections only.
fn process_last_error() -> Option<String> {
    PROCESS_LAST_OPEN_ERROR
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}
