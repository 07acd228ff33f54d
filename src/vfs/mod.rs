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

use std::sync::Mutex;

/// The last error of any `ltx` file in this process, for `PRAGMA ltx_last_error` on a
/// connection that has none of its own (e.g. after a failed open).
static LAST_ERROR: Mutex<Option<String>> = Mutex::new(None);

fn set_last_error(message: String) {
    *LAST_ERROR.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
}

fn last_error() -> Option<String> {
    LAST_ERROR.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
