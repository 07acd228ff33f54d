//! Entry and registration: the loadable extension's entry point `sqlite3_ltxvfs_init`, the
//! `register()` path of programs that link SQLite, the `ltx` VFS registered once per process
//! (over the default VFS of the moment), and the automatic extension that adds the SQL
//! functions to every later connection: which connections are trusted with the control
//! functions is decided here. Knows nothing of what a file or a function does.

use super::api::{API, SqliteApi, api};
use super::{VFS_NAME, functions, guard, vfs_methods};
use libsqlite3_sys as ffi;
use std::ffi::{c_char, c_int};
use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Why a load into a second SQLite library of the same process fails.
#[cfg(feature = "loadable")]
const ANOTHER_SQLITE: &str = "ltxvfs: already loaded into another SQLite library in this process \
     (e.g. Python's sqlite3 module and apsw each carry their own): use one of them per process";

/// Serialises registration (find-then-register must not race), and moves of the default VFS.
pub(super) static REGISTER: Mutex<()> = Mutex::new(());

/// Registers the `ltx` VFS unless it already is; as the default VFS if the environment
/// says so (`LTXVFS_DEFAULT_VFS=1`), for drivers that can load an extension but never name a
/// VFS.
fn register_vfs(api: SqliteApi) -> c_int {
    let _serial = REGISTER.lock().unwrap_or_else(|e| e.into_inner());
    let first = *API.get_or_init(|| api);
    if !std::ptr::fn_addr_eq(first.vfs_find, api.vfs_find) {
        // A second SQLite library in the process (Python's sqlite3 and apsw each carry
        // their own): our files and functions call the first one's API, so refuse.
        return ffi::SQLITE_MISUSE;
    }
    // SAFETY: vfs_find takes a NUL-terminated name or null.
    if !unsafe { (api.vfs_find)(VFS_NAME.as_ptr()) }.is_null() {
        return ffi::SQLITE_OK;
    }
    // SAFETY: null asks for the default VFS, which SQLite keeps for the process's life.
    let base = unsafe { (api.vfs_find)(ptr::null()) };
    // SAFETY: non-null pointers from vfs_find point to registered, never-freed VFSes.
    let Some(base_ref) = (unsafe { base.as_ref() }) else {
        return ffi::SQLITE_ERROR;
    };
    let vfs = vfs_methods::table(base, base_ref);
    let raw = Box::into_raw(vfs);
    let make_default = std::env::var("LTXVFS_DEFAULT_VFS")
        .ok()
        .and_then(|v| crate::ext::switch(Some(&v)))
        .unwrap_or(false);
    // SAFETY: `raw` is a valid, fully initialised sqlite3_vfs that stays allocated (leaked)
    // once SQLite holds it.
    let rc = unsafe { (api.vfs_register)(raw, c_int::from(make_default)) };
    if rc != ffi::SQLITE_OK {
        // SAFETY: SQLite refused it, so nothing else holds `raw`.
        drop(unsafe { Box::from_raw(raw) });
    }
    rc
}

/// The loadable extension's entry point; SQLite derives its name from `libltxvfs.so`.
/// Registers the VFS, the SQL functions on this connection, and an automatic extension that
/// adds the SQL functions to every connection opened after. Returns
/// `SQLITE_OK_LOAD_PERMANENTLY`: the VFS must outlive the loading connection.
///
/// # Safety
/// Called by SQLite with the arguments of an extension entry point
/// (https://www.sqlite.org/loadext.html).
#[cfg(feature = "loadable")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sqlite3_ltxvfs_init(
    db: *mut ffi::sqlite3,
    err_msg: *mut *mut c_char,
    api: *const ffi::sqlite3_api_routines,
) -> c_int {
    guard(ffi::SQLITE_ERROR, || {
        // SAFETY: SQLite passes its API table, valid for the process's life.
        let Some(api) = (unsafe { SqliteApi::from_routines(api) }) else {
            return ffi::SQLITE_ERROR;
        };
        match init(api, db) {
            ffi::SQLITE_OK => ffi::SQLITE_OK_LOAD_PERMANENTLY,
            rc => {
                // SAFETY: err_msg is null or a slot SQLite frees with sqlite3_free.
                if let Some(slot) = unsafe { err_msg.as_mut() } {
                    *slot = api.mprintf(&if rc == ffi::SQLITE_MISUSE {
                        ANOTHER_SQLITE.to_string()
                    } else {
                        format!("ltxvfs: loading failed (SQLite error {rc})")
                    });
                }
                rc
            }
        }
    })
}

/// Registers the VFS with the SQLite linked into this program.
#[cfg(feature = "static")]
pub(crate) fn register_linked() -> c_int {
    guard(ffi::SQLITE_ERROR, || {
        let api = SqliteApi::linked();
        match register_vfs(api) {
            ffi::SQLITE_OK => register_auto_extension(api),
            rc => rc,
        }
    })
}

/// The VFS, and the SQL functions on `db` and on every later connection. `db` loaded the
/// extension, a trusted act: it gets the control functions too (`crate::ext::Kind`).
#[cfg(feature = "loadable")]
fn init(api: SqliteApi, db: *mut ffi::sqlite3) -> c_int {
    match register_vfs(api) {
        ffi::SQLITE_OK => {}
        rc => return rc,
    }
    match functions::register(&api, db, true) {
        ffi::SQLITE_OK => register_auto_extension(api),
        rc => rc,
    }
}

/// Once per process: SQLite calls [`auto_init`] for each connection it opens from now on.
fn register_auto_extension(api: SqliteApi) -> c_int {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::SeqCst) {
        return ffi::SQLITE_OK;
    }
    // SAFETY: `auto_init` stays valid: the library is never unloaded (loaded permanently,
    // or linked).
    unsafe { (api.auto_extension)(Some(auto_init)) }
}

/// `LTXVFS_TRUSTED_SQL=1`: the host trusts the SQL of every connection, which then gets
/// the control functions too. Read at each open, so a host may set it before it opens the
/// connections it trusts (the environment is the host's).
fn every_connection_trusted() -> bool {
    std::env::var("LTXVFS_TRUSTED_SQL")
        .ok()
        .and_then(|v| crate::ext::switch(Some(&v)))
        .unwrap_or(false)
}

/// Adds the control SQL functions (`ltx_register`, `ltx_default_vfs`, `ltx_set_time`, ...)
/// to one connection of the SQLite this program links, which the host thereby trusts with
/// them (README "Security"); the other connections keep only the status functions.
///
/// # Errors
/// The SQLite result code if the extension is not registered (call `register()` first) or
/// a function could not be added.
///
/// # Safety
/// `db` is an open connection (`sqlite3*`) of the SQLite linked into this program, used by
/// no other thread during the call (rusqlite: `Connection::handle()`).
#[cfg(feature = "static")]
pub unsafe fn trust_connection(db: *mut ffi::sqlite3) -> Result<(), c_int> {
    let rc = guard(ffi::SQLITE_ERROR, || match (api(), db.is_null()) {
        (Some(api), false) => functions::register(api, db, true),
        _ => ffi::SQLITE_MISUSE,
    });
    match rc {
        ffi::SQLITE_OK => Ok(()),
        rc => Err(rc),
    }
}

/// The automatic extension: the SQL functions on a new connection (the control ones only
/// where the host trusts every connection's SQL). Never fails the open: a failure is logged.
unsafe extern "C" fn auto_init(
    db: *mut ffi::sqlite3,
    _err_msg: *mut *mut c_char,
    _api: *const ffi::sqlite3_api_routines,
) -> c_int {
    guard(ffi::SQLITE_OK, || {
        if let Some(api) = api() {
            let rc = functions::register(api, db, every_connection_trusted());
            if rc != ffi::SQLITE_OK {
                api.log(
                    rc,
                    "ltxvfs: could not add the ltx_* SQL functions to a connection",
                );
            }
        }
        ffi::SQLITE_OK
    })
}
