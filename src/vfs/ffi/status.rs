//! The status functions' crossing (`ltx_txid()`, `ltx_set_time(t)`, ... listed in
//! `crate::ext::STATUS_FUNCTIONS`): a call asks one database of the calling connection for
//! the pragma of the same meaning, so a function and its pragma can never disagree.
//!
//! How the call reaches that database's [`MainDb`](crate::vfs::main_db::MainDb): SQLite's
//! public `sqlite3_file_control(db, schema, SQLITE_FCNTL_PRAGMA, args)`, the very call its
//! `PRAGMA schema.name = value` makes (https://www.sqlite.org/c3ref/file_control.html,
//! https://www.sqlite.org/c3ref/c_fcntl_begin_atomic_write.html#sqlitefcntlpragma). It
//! finds the schema's file under the connection's own mutex (recursive, already held while
//! the function runs) and calls its `xFileControl`, ours for an `ltx` file. The answers
//! tell the cases apart: our file answers (`SQLITE_OK`) or refuses with a sentence
//! (`SQLITE_ERROR` and text); any other file, or a memory database, has no such pragma
//! (`SQLITE_NOTFOUND`); an unknown schema is `SQLITE_ERROR` with no text. A custom opcode
//! would need the same plumbing and a second way into `MainDb`; the pragma needs neither.

use super::api::SqliteApi;
use super::c_string;
use super::functions::sql_function;
use crate::ext::{Asked, StatusFunction};
use libsqlite3_sys as ffi;
use std::ffi::{CStr, c_char, c_int};
use std::ptr;

/// The callback of every status function on a trusted connection; its [`StatusFunction`] is
/// the user data it was registered with.
pub(super) unsafe extern "C" fn x_status(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: SQLite's own arguments.
    unsafe { status(ctx, argc, argv, true) }
}

/// The callback of every status function on a connection that is not trusted: the
/// database's file decides, by its URI, whether SQL may move it (`ltx_set_time`), and a
/// wait (`ltx_wait_txid`) is capped.
pub(super) unsafe extern "C" fn x_status_untrusted(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: SQLite's own arguments.
    unsafe { status(ctx, argc, argv, false) }
}

/// # Safety
/// `ctx`, `argc` and `argv` are what SQLite passed to a status function.
unsafe fn status(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
    trusted: bool,
) {
    let body = |api: &SqliteApi, args: &[Option<String>]| {
        // SAFETY: `ctx` is this call's context; its user data is the `&'static
        // StatusFunction` `functions::register` gave with this callback, or null.
        let function = unsafe { (api.user_data)(ctx).cast::<StatusFunction>().as_ref() }
            .ok_or("ltxvfs: a status function without its description")?;
        // SAFETY: `ctx` is this call's context; its connection is open while it runs.
        let db = unsafe { (api.context_db_handle)(ctx) };
        function.call(args, trusted, |schema, pragma, value| {
            ask_pragma(api, db, schema, pragma, value)
        })
    };
    // SAFETY: SQLite's own arguments.
    unsafe { sql_function(ctx, argc, argv, body) }
}

/// `PRAGMA schema.name` (or `= value`) put to the file of `schema` on connection `db`, as
/// SQLite's pragma code puts it.
pub(super) fn ask_pragma(
    api: &SqliteApi,
    db: *mut ffi::sqlite3,
    schema: &str,
    name: &str,
    value: Option<&str>,
) -> Asked {
    let (schema, name) = (c_string(schema), c_string(name));
    let value = value.map(c_string);
    // SQLITE_FCNTL_PRAGMA's argument: [0] the answer or error (set by the file, freed by
    // us with sqlite3_free), [1] the name, [2] the value or null; SQLite's own caller
    // passes a fourth, null, slot, and so do we.
    let mut args: [*mut c_char; 4] = [
        ptr::null_mut(),
        name.as_ptr().cast_mut(),
        value
            .as_ref()
            .map_or(ptr::null_mut(), |v| v.as_ptr().cast_mut()),
        ptr::null_mut(),
    ];
    // SAFETY: `db` is the calling connection, open; `schema` is NUL-terminated; `args` is
    // the char*[] the opcode takes, its strings alive until the call returns (a file only
    // reads [1] and [2], and writes [0]).
    let rc = unsafe {
        (api.file_control)(
            db,
            schema.as_ptr(),
            ffi::SQLITE_FCNTL_PRAGMA,
            args.as_mut_ptr().cast(),
        )
    };
    let text = (!args[0].is_null()).then(|| {
        // SAFETY: a file sets [0] to a NUL-terminated string from sqlite3_malloc
        // (`mprintf`), which is ours to free, once, after reading it.
        unsafe {
            let text = CStr::from_ptr(args[0]).to_string_lossy().into_owned();
            (api.free)(args[0].cast());
            text
        }
    });
    match (rc, text) {
        (ffi::SQLITE_OK, text) => Asked::Answered(text),
        (ffi::SQLITE_NOTFOUND, _) => Asked::NotLtx,
        (_, Some(sentence)) => Asked::Failed(sentence),
        (_, None) => Asked::NoSuchSchema,
    }
}
