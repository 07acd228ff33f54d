//! The SQL functions: which connection gets which (by kind, see `crate::ext::Kind`), their C
//! callbacks, arguments read as text and results set through the API table. Their bodies
//! are safe code in `crate::ext`; this file only crosses the boundary.

use super::api::{SqlFunction, SqliteApi, api};
use super::entry::REGISTER;
use super::status::{ask_pragma, x_status, x_status_untrusted};
use super::vfs_methods::base_vfs;
use super::{VFS_NAME, c_string, guard};
use crate::ext::{Asked, OWN_ERROR_PRAGMA, STATUS_FUNCTIONS, SqlValue};
use libsqlite3_sys as ffi;
use std::ffi::{CStr, CString, c_int, c_void};
use std::ptr;

/// The SQL functions on `db`, by kind (`crate::ext::Kind`, README "Security"): the status
/// functions on every connection; the control functions (`ltx_register`, `ltx_default_vfs`,
/// and the status functions that travel) only when `trusted`, that is on the connection the
/// extension was loaded on, or on every connection when the host opted in. On a connection
/// that is not trusted, `ltx_set_time` exists but moves only a database whose URI allowed it
/// (`sql_time_travel=1`), and says how to opt in otherwise.
///
/// Every function that changes anything is direct-only, so a database's schema (a view, a
/// trigger) cannot remap names or move a connection in time even where SQL may; the status
/// functions that only answer may be called from anywhere.
pub(super) fn register(api: &SqliteApi, db: *mut ffi::sqlite3, trusted: bool) -> c_int {
    let direct = ffi::SQLITE_UTF8 | ffi::SQLITE_DIRECTONLY;
    // kind: status (answers only the calling connection's, or thread's, last error; on a
    // trusted connection, the host's own, the process's last failed open too).
    let last_error: SqlFunction = match trusted {
        true => x_ltx_last_error_trusted,
        false => x_ltx_last_error,
    };
    let status: [(&CStr, c_int, c_int, SqlFunction); 1] =
        [(c"ltx_last_error", 0, direct, last_error)];
    // kind: control (the process's VFS and name mappings; settings that name paths and
    // endpoints).
    // ltx_fork writes a new replica at a URL the caller names.
    let control: [(&CStr, c_int, c_int, SqlFunction); 5] = [
        (c"ltx_register", 2, direct, x_ltx_register),
        (c"ltx_register", 3, direct, x_ltx_register),
        (c"ltx_default_vfs", 1, direct, x_ltx_default_vfs),
        (c"ltx_fork", 2, direct, x_ltx_fork),
        (c"ltx_fork", 3, direct, x_ltx_fork),
    ];
    let ours = status
        .into_iter()
        .chain(control.into_iter().filter(|_| trusted))
        .map(|(name, n_args, flags, f)| (name, n_args, flags, f, ptr::null_mut()));
    // Each status function with and without its schema argument; its description is the
    // user data its callback reads. The ones that set (kind: control) are direct-only, and
    // on a connection that is not trusted they ask the database whether its URI allowed it;
    // there, too, `ltx_wait_txid`'s wait is capped (`ext::UNTRUSTED_WAIT`).
    let status = STATUS_FUNCTIONS.iter().flat_map(|f| {
        // A function that takes a value first (ltx_set_time, ltx_wait_txid) is direct-only.
        let (first, flags) = match f.sets {
            true => (1, direct),
            false => (0, ffi::SQLITE_UTF8),
        };
        let callback = match trusted {
            false => x_status_untrusted as SqlFunction,
            true => x_status as SqlFunction,
        };
        let data = std::ptr::from_ref(f).cast_mut().cast::<c_void>();
        // ltx_wait_txid (kind: status, SQLITE_DIRECTONLY): also (txid, seconds, schema).
        let most = first + 1 + c_int::from(f.second);
        (first..=most).map(move |n_args| (f.name, n_args, flags, callback, data))
    });
    for (name, n_args, flags, function, data) in ours.chain(status) {
        // SAFETY: `db` is an open connection SQLite passed us; the name is NUL-terminated;
        // the user data is null or a `&'static StatusFunction`, so it needs no destructor.
        let rc = unsafe {
            (api.create_function)(
                db,
                name.as_ptr(),
                n_args,
                flags,
                data,
                Some(function),
                None,
                None,
                None,
            )
        };
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    ffi::SQLITE_OK
}

/// The arguments of a SQL function call as text, `None` for NULL.
///
/// # Safety
/// `argv` points to `argc` values SQLite passed to the function.
unsafe fn text_args(
    api: &SqliteApi,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) -> Vec<Option<String>> {
    (0..usize::try_from(argc).unwrap_or(0))
        .map(|i| {
            // SAFETY: i < argc, per the contract.
            let value = unsafe { *argv.add(i) };
            // SAFETY: a value SQLite passed; value_text returns null (NULL, out of memory)
            // or a NUL-terminated UTF-8 string valid until the next call on the value.
            unsafe {
                if (api.value_type)(value) == ffi::SQLITE_NULL {
                    return None;
                }
                let text = (api.value_text)(value);
                (!text.is_null())
                    .then(|| CStr::from_ptr(text.cast()).to_string_lossy().into_owned())
            }
        })
        .collect()
}

/// Runs a SQL function's body on its arguments (as text) and sets its result: text (or
/// NULL, for `None`), an integer, or an error with its sentence.
///
/// # Safety
/// `ctx`, `argc` and `argv` are what SQLite passed to the function.
pub(super) unsafe fn sql_function<T: Into<SqlValue>>(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
    body: impl FnOnce(&SqliteApi, &[Option<String>]) -> Result<T, String>,
) {
    guard(0, || {
        let Some(api) = api() else { return 0 };
        // SAFETY: SQLite's own arguments, per the contract.
        let args = unsafe { text_args(api, argc, argv) };
        let result = body(api, &args).map(Into::into);
        // SAFETY: `ctx` is the function's context; texts are NUL-terminated (length -1)
        // and SQLite copies them (SQLITE_TRANSIENT) before they are dropped.
        unsafe {
            match result {
                Ok(SqlValue::Text(text)) => {
                    let text = c_string(&text);
                    (api.result_text)(ctx, text.as_ptr(), -1, ffi::SQLITE_TRANSIENT());
                }
                Ok(SqlValue::Integer(n)) => (api.result_int64)(ctx, n),
                Ok(SqlValue::Null) => (api.result_null)(ctx),
                Err(text) => (api.result_error)(ctx, c_string(&text).as_ptr(), -1),
            }
        }
        0
    });
}

/// `ltx_last_error()`: the calling connection's last error (the first of its databases
/// read through `ltx` that has one), else the last failed open of the calling thread, else
/// NULL. Never another connection's or thread's sentence.
unsafe extern "C" fn x_ltx_last_error(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: SQLite's own arguments.
    unsafe { last_error(ctx, argc, argv, false) }
}

/// `ltx_last_error()` on a trusted connection: as on any other, then the process's last
/// failed open (a host whose connections hop threads asks on the one it loaded the
/// extension on: Go's goroutines, sqlx's worker threads).
unsafe extern "C" fn x_ltx_last_error_trusted(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: SQLite's own arguments.
    unsafe { last_error(ctx, argc, argv, true) }
}

/// # Safety
/// `ctx`, `argc` and `argv` are what SQLite passed to `ltx_last_error()`.
unsafe fn last_error(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
    trusted: bool,
) {
    let body = |api: &SqliteApi, _: &[Option<String>]| {
        // SAFETY: `ctx` is this call's context; its connection is open while it runs.
        let db = unsafe { (api.context_db_handle)(ctx) };
        let own = schema_names(api, db).into_iter().find_map(|schema| {
            match ask_pragma(api, db, &schema, OWN_ERROR_PRAGMA, None) {
                Asked::Answered(Some(text)) if !text.is_empty() => Some(text),
                _ => None,
            }
        });
        Ok(own
            .or_else(crate::vfs::last_error)
            .or_else(|| trusted.then(crate::vfs::process_last_error).flatten()))
    };
    // SAFETY: SQLite's own arguments.
    unsafe { sql_function(ctx, argc, argv, body) }
}

/// The schema names of connection `db` (`main`, `temp`, attached ones), in SQLite's order;
/// just `main` on a SQLite older than 3.39, which cannot list them.
fn schema_names(api: &SqliteApi, db: *mut ffi::sqlite3) -> Vec<String> {
    let Some(db_name) = api.db_name else {
        return vec!["main".into()];
    };
    (0..)
        .map_while(|i| {
            // SAFETY: `db` is open (the calling function's connection); sqlite3_db_name
            // returns null past the last schema, else a NUL-terminated name valid until the
            // schema list changes, which cannot happen while we read it here.
            let name = unsafe { db_name(db, i) };
            (!name.is_null()).then(|| {
                unsafe { CStr::from_ptr(name) }
                    .to_string_lossy()
                    .into_owned()
            })
        })
        .collect()
}

unsafe extern "C" fn x_ltx_register(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    let body = |api: &SqliteApi, args: &[Option<String>]| {
        crate::ext::ltx_register(args, |name| {
            // SAFETY: vfs_find takes a NUL-terminated name; a registered VFS is never freed.
            let ours = unsafe { (api.vfs_find)(VFS_NAME.as_ptr()) };
            (!ours.is_null()).then_some(())?;
            // The name as SQLite will hand it to xOpen: the default VFS's full path.
            // SAFETY: `ours` is our registered VFS, whose pAppData is the default VFS.
            full_pathname(unsafe { base_vfs(ours) }, name)
        })
        .map(Some)
    };
    // SAFETY: SQLite's own arguments.
    unsafe { sql_function(ctx, argc, argv, body) }
}

unsafe extern "C" fn x_ltx_default_vfs(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    let body = |api: &SqliteApi, args: &[Option<String>]| {
        let on = crate::ext::switch(args.first().cloned().flatten().as_deref())
            .ok_or("usage: ltx_default_vfs(1) or ltx_default_vfs(0)")?;
        let _serial = REGISTER.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: vfs_find takes a NUL-terminated name; a registered VFS is never freed.
        let ours = unsafe { (api.vfs_find)(VFS_NAME.as_ptr()) };
        if ours.is_null() {
            return Err("ltx_default_vfs: the ltx VFS is not registered".into());
        }
        // Registering a registered VFS again only moves it: the first is the default.
        // SAFETY: `ours` is registered, and its pAppData (the VFS that was the default
        // when ours was registered) too; both live for the process.
        let rc = unsafe { (api.vfs_register)(if on { ours } else { base_vfs(ours) }, 1) };
        // SAFETY: null asks for the default VFS; its zName is a NUL-terminated string.
        let now = unsafe { (api.vfs_find)(ptr::null()).as_ref() }.map(|v| {
            unsafe { CStr::from_ptr(v.zName) }
                .to_string_lossy()
                .into_owned()
        });
        match (rc, now) {
            (ffi::SQLITE_OK, Some(name)) => Ok(Some(name)),
            _ => Err(format!("ltx_default_vfs: SQLite refused (error {rc})")),
        }
    };
    // SAFETY: SQLite's own arguments.
    unsafe { sql_function(ctx, argc, argv, body) }
}

/// `ltx_fork(source_url, target_url [, txid_or_time])`: see `crate::ext::ltx_fork`.
unsafe extern "C" fn x_ltx_fork(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: SQLite's own arguments.
    unsafe {
        sql_function(ctx, argc, argv, |_, args| {
            crate::ext::ltx_fork(args).map(Some)
        })
    }
}

/// `name` made absolute by the VFS `vfs`, as SQLite does before it opens a file.
fn full_pathname(vfs: *mut ffi::sqlite3_vfs, name: &str) -> Option<String> {
    let name = CString::new(name)
        .ok()
        .filter(|n| !n.as_bytes().is_empty())?;
    // SAFETY: `vfs` is a registered VFS (never freed).
    let vfs_ref = unsafe { vfs.as_ref() }?;
    let size = usize::try_from(vfs_ref.mxPathname).ok()?.max(1) + 1;
    let mut out = vec![0u8; size];
    let full = vfs_ref.xFullPathname?;
    // SAFETY: `out` has room for mxPathname + 1 bytes, as the xFullPathname contract asks.
    let rc = unsafe {
        full(
            vfs,
            name.as_ptr(),
            c_int::try_from(size).ok()?,
            out.as_mut_ptr().cast(),
        )
    };
    // SQLITE_OK_SYMLINK (a symbolic link was followed) is a success too.
    if rc & 0xff != ffi::SQLITE_OK {
        return None;
    }
    CStr::from_bytes_until_nul(&out)
        .ok()
        .map(|s| s.to_string_lossy().into_owned())
}
