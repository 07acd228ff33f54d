//! The FFI edge, and the only `unsafe` code of the crate: the `sqlite3_vfs` and
//! `sqlite3_io_methods` tables SQLite calls, the entry point of the loadable extension, and
//! the calls we make into SQLite.
//!
//! - Every SQLite API call goes through [`SqliteApi`], filled from the `sqlite3_api_routines`
//!   the host passes to `sqlite3_ltxvfs_init` (loadable build: nothing is linked, so no second
//!   SQLite can enter the host), or from the linked symbols (`static` feature, `register()`).
//!   Only fields present since SQLite 3.8 are read, so hosts from 3.40 on are fine.
//! - Every callback runs inside [`guard`]: a panic becomes an error code, never an unwind
//!   into C or an abort of the host.
//! - Files that are not a main database (temp files, statement journals, sort spills) are
//!   opened by the default VFS in our slot: SQLite then calls its methods directly.
//!
//! C contracts: https://www.sqlite.org/c3ref/vfs.html and https://www.sqlite.org/c3ref/io_methods.html

use super::main_db::{LockLevel, MainDb, Pragma};
use super::{names, options};
use crate::error::Error;
use crate::replica::PlanError;
use libsqlite3_sys as ffi;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// The name the VFS registers under.
const VFS_NAME: &CStr = c"ltx";

/// Why a load into a second SQLite library of the same process fails.
#[cfg(feature = "loadable")]
const ANOTHER_SQLITE: &str = "ltxvfs: already loaded into another SQLite library in this process \
     (e.g. Python's sqlite3 module and apsw each carry their own): use one of them per process";

type VfsFind = unsafe extern "C" fn(*const c_char) -> *mut ffi::sqlite3_vfs;
type VfsRegister = unsafe extern "C" fn(*mut ffi::sqlite3_vfs, c_int) -> c_int;
type Mprintf = unsafe extern "C" fn(*const c_char, ...) -> *mut c_char;
type Log = unsafe extern "C" fn(c_int, *const c_char, ...);
type UriParameter = unsafe extern "C" fn(*const c_char, *const c_char) -> *const c_char;
type SqlFunction =
    unsafe extern "C" fn(*mut ffi::sqlite3_context, c_int, *mut *mut ffi::sqlite3_value);
type CreateFunction = unsafe extern "C" fn(
    *mut ffi::sqlite3,
    *const c_char,
    c_int,
    c_int,
    *mut c_void,
    Option<SqlFunction>,
    Option<SqlFunction>,
    Option<unsafe extern "C" fn(*mut ffi::sqlite3_context)>,
    Option<unsafe extern "C" fn(*mut c_void)>,
) -> c_int;
type ValueText = unsafe extern "C" fn(*mut ffi::sqlite3_value) -> *const u8;
type ValueType = unsafe extern "C" fn(*mut ffi::sqlite3_value) -> c_int;
type ResultText = unsafe extern "C" fn(
    *mut ffi::sqlite3_context,
    *const c_char,
    c_int,
    ffi::sqlite3_destructor_type,
);
type ResultError = unsafe extern "C" fn(*mut ffi::sqlite3_context, *const c_char, c_int);
type ResultNull = unsafe extern "C" fn(*mut ffi::sqlite3_context);
/// An extension entry point: (connection, error slot, API table).
type EntryPoint = unsafe extern "C" fn(
    *mut ffi::sqlite3,
    *mut *mut c_char,
    *const ffi::sqlite3_api_routines,
) -> c_int;
type AutoExtension = unsafe extern "C" fn(Option<EntryPoint>) -> c_int;

/// The SQLite functions we call, from the host's API table or the linked library.
#[derive(Clone, Copy)]
struct SqliteApi {
    vfs_find: VfsFind,
    vfs_register: VfsRegister,
    mprintf: Mprintf,
    log: Log,
    uri_parameter: UriParameter,
    create_function: CreateFunction,
    value_text: ValueText,
    value_type: ValueType,
    result_text: ResultText,
    result_error: ResultError,
    result_null: ResultNull,
    auto_extension: AutoExtension,
}

static API: OnceLock<SqliteApi> = OnceLock::new();
/// Serialises registration (find-then-register must not race).
static REGISTER: Mutex<()> = Mutex::new(());

impl SqliteApi {
    /// # Safety
    /// `api` is null or points to the `sqlite3_api_routines` SQLite passed to an extension
    /// entry point, valid for the life of the process.
    // (Only the loadable build's bindings spell out the table; the linked ones keep it opaque.)
    #[cfg(feature = "loadable")]
    unsafe fn from_routines(api: *const ffi::sqlite3_api_routines) -> Option<SqliteApi> {
        // SAFETY: non-null per the check; SQLite's table is static and at least as long as
        // the 3.8 layout whose fields we read.
        let api = unsafe { api.as_ref()? };
        Some(SqliteApi {
            vfs_find: api.vfs_find?,
            vfs_register: api.vfs_register?,
            mprintf: api.mprintf?,
            log: api.log?,
            uri_parameter: api.uri_parameter?,
            create_function: api.create_function_v2?,
            value_text: api.value_text?,
            value_type: api.value_type?,
            result_text: api.result_text?,
            result_error: api.result_error?,
            result_null: api.result_null?,
            // SAFETY: the C API takes an entry point as `void(*)(void)` and calls it with the
            // entry-point arguments; both are one function pointer in the same register.
            auto_extension: unsafe {
                std::mem::transmute::<
                    unsafe extern "C" fn(Option<unsafe extern "C" fn()>) -> c_int,
                    AutoExtension,
                >(api.auto_extension?)
            },
        })
    }

    #[cfg(feature = "static")]
    fn linked() -> SqliteApi {
        SqliteApi {
            vfs_find: ffi::sqlite3_vfs_find,
            vfs_register: ffi::sqlite3_vfs_register,
            mprintf: ffi::sqlite3_mprintf,
            log: ffi::sqlite3_log,
            uri_parameter: ffi::sqlite3_uri_parameter,
            create_function: ffi::sqlite3_create_function_v2,
            value_text: ffi::sqlite3_value_text,
            value_type: ffi::sqlite3_value_type,
            result_text: ffi::sqlite3_result_text,
            result_error: ffi::sqlite3_result_error,
            result_null: ffi::sqlite3_result_null,
            auto_extension: ffi::sqlite3_auto_extension,
        }
    }

    /// `sqlite3_mprintf("%s", text)`: a string SQLite may free. NULs become spaces.
    fn mprintf(&self, text: &str) -> *mut c_char {
        let text = c_string(text);
        // SAFETY: both pointers are valid NUL-terminated strings for the call; "%s" consumes
        // exactly the one vararg given.
        unsafe { (self.mprintf)(c"%s".as_ptr(), text.as_ptr()) }
    }

    /// `sqlite3_log(code, "%s", message)`. SQLite cuts log lines near 230 bytes.
    fn log(&self, code: c_int, message: &str) {
        let text = c_string(message);
        // SAFETY: as in `mprintf`.
        unsafe { (self.log)(code, c"%s".as_ptr(), text.as_ptr()) }
    }
}

fn api() -> Option<&'static SqliteApi> {
    API.get()
}

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
        Error::Config(_) | Error::NoReplicaUrl | Error::ReplicaNotFound { .. } => {
            ffi::SQLITE_IOERR_READ
        }
    }
}

/// Logs an error and makes it the process's last error; returns its code. `opening`: the
/// name of the database whose open failed.
fn report(e: &Error, opening: Option<&str>) -> (c_int, String) {
    let code = error_code(e, opening.is_some());
    let message = match opening {
        Some(name) => format!("ltxvfs: cannot open {name}: {e}"),
        None => format!("ltxvfs: {e}"),
    };
    if let Some(api) = api() {
        api.log(code, &message);
    }
    super::set_last_error(message.clone());
    (code, message)
}

// ---------------------------------------------------------------------------------------
// Registration

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
    let vfs = Box::new(ffi::sqlite3_vfs {
        iVersion: 2,
        szOsFile: base_ref
            .szOsFile
            .max(std::mem::size_of::<LtxFile>() as c_int),
        mxPathname: base_ref.mxPathname,
        pNext: ptr::null_mut(),
        zName: VFS_NAME.as_ptr(),
        pAppData: base.cast::<c_void>(),
        xOpen: Some(x_open),
        xDelete: Some(x_delete),
        xAccess: Some(x_access),
        xFullPathname: Some(x_full_pathname),
        xDlOpen: Some(x_dl_open),
        xDlError: Some(x_dl_error),
        xDlSym: Some(x_dl_sym),
        xDlClose: Some(x_dl_close),
        xRandomness: Some(x_randomness),
        xSleep: Some(x_sleep),
        xCurrentTime: Some(x_current_time),
        xGetLastError: Some(x_get_last_error),
        xCurrentTimeInt64: Some(x_current_time_int64),
        xSetSystemCall: None,
        xGetSystemCall: None,
        xNextSystemCall: None,
    });
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

/// The VFS, and the SQL functions on `db` and on every later connection.
#[cfg(feature = "loadable")]
fn init(api: SqliteApi, db: *mut ffi::sqlite3) -> c_int {
    match register_vfs(api) {
        ffi::SQLITE_OK => {}
        rc => return rc,
    }
    match register_functions(&api, db) {
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

/// The automatic extension: the SQL functions on a new connection. Never fails the open: a
/// failure is logged.
unsafe extern "C" fn auto_init(
    db: *mut ffi::sqlite3,
    _err_msg: *mut *mut c_char,
    _api: *const ffi::sqlite3_api_routines,
) -> c_int {
    guard(ffi::SQLITE_OK, || {
        if let Some(api) = api() {
            let rc = register_functions(api, db);
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

// ---------------------------------------------------------------------------------------
// SQL functions (their bodies are in crate::ext)

/// `ltx_last_error`, `ltx_register` and `ltx_default_vfs` on `db`: direct calls only, so a
/// database's schema (a view, a trigger) cannot remap names.
fn register_functions(api: &SqliteApi, db: *mut ffi::sqlite3) -> c_int {
    let flags = ffi::SQLITE_UTF8 | ffi::SQLITE_DIRECTONLY;
    let functions: [(&CStr, c_int, SqlFunction); 4] = [
        (c"ltx_last_error", 0, x_ltx_last_error),
        (c"ltx_register", 2, x_ltx_register),
        (c"ltx_register", 3, x_ltx_register),
        (c"ltx_default_vfs", 1, x_ltx_default_vfs),
    ];
    for (name, n_args, function) in functions {
        // SAFETY: `db` is the open connection SQLite passed to the entry point; the name is
        // NUL-terminated; no user data, so no destructor.
        let rc = unsafe {
            (api.create_function)(
                db,
                name.as_ptr(),
                n_args,
                flags,
                ptr::null_mut(),
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

/// Runs a SQL function's body on its arguments (as text) and sets its result: text, NULL
/// (`Ok(None)`), or an error with its sentence.
///
/// # Safety
/// `ctx`, `argc` and `argv` are what SQLite passed to the function.
unsafe fn sql_function(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
    body: impl FnOnce(&SqliteApi, &[Option<String>]) -> Result<Option<String>, String>,
) {
    guard(0, || {
        let Some(api) = api() else { return 0 };
        // SAFETY: SQLite's own arguments, per the contract.
        let args = unsafe { text_args(api, argc, argv) };
        let result = body(api, &args);
        // SAFETY: `ctx` is the function's context; texts are NUL-terminated (length -1)
        // and SQLite copies them (SQLITE_TRANSIENT) before they are dropped.
        unsafe {
            match result {
                Ok(Some(text)) => {
                    let text = c_string(&text);
                    (api.result_text)(ctx, text.as_ptr(), -1, ffi::SQLITE_TRANSIENT());
                }
                Ok(None) => (api.result_null)(ctx),
                Err(text) => (api.result_error)(ctx, c_string(&text).as_ptr(), -1),
            }
        }
        0
    });
}

/// `ltx_last_error()`: the process's last error sentence (why an open failed), or NULL.
unsafe extern "C" fn x_ltx_last_error(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: SQLite's own arguments.
    unsafe { sql_function(ctx, argc, argv, |_, _| Ok(super::last_error())) }
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

// ---------------------------------------------------------------------------------------
// The file object

/// What SQLite allocates for each file of ours (`szOsFile` bytes); for delegated files the
/// default VFS fills the same memory with its own struct instead.
#[repr(C)]
struct LtxFile {
    base: ffi::sqlite3_file,
    db: *mut MainDb,
}

static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    // Version 1: no shared memory (no WAL) and no memory-mapped reads.
    iVersion: 1,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// The default VFS our `ltx` VFS delegates to.
///
/// # Safety
/// `vfs` is our registered VFS, whose `pAppData` is the default VFS.
unsafe fn base_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    // SAFETY: per the contract, `vfs` is ours and valid.
    unsafe { (*vfs).pAppData.cast() }
}

/// The `MainDb` of a file opened by [`x_open`].
///
/// # Safety
/// `file` was opened by [`x_open`] as a main database and not yet closed; SQLite calls a
/// file's methods from one thread at a time.
unsafe fn main_db<'a>(file: *mut ffi::sqlite3_file) -> Option<&'a mut MainDb> {
    // SAFETY: per the contract, `file` points to an `LtxFile` whose `db` is ours or null.
    unsafe { file.cast::<LtxFile>().as_mut()?.db.as_mut() }
}

/// A URI parameter of the database name `name` (a pointer SQLite gave to xOpen).
fn uri_param(api: &SqliteApi, name: *const c_char, key: &str) -> Option<String> {
    let key = c_string(key);
    // SAFETY: `name` is the filename SQLite passed to xOpen (valid for the open's duration,
    // with its URI parameters after it); `key` is NUL-terminated.
    let value = unsafe { (api.uri_parameter)(name, key.as_ptr()) };
    // SAFETY: SQLite returns null or a NUL-terminated string inside `name`'s buffer.
    (!value.is_null()).then(|| {
        unsafe { CStr::from_ptr(value) }
            .to_string_lossy()
            .into_owned()
    })
}

unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    guard(ffi::SQLITE_CANTOPEN, || {
        // SAFETY: `vfs` is ours (SQLite calls xOpen on the VFS it was registered as).
        let base = unsafe { base_vfs(vfs) };
        if flags & ffi::SQLITE_OPEN_MAIN_DB == 0 {
            // Temp files, journals, sort spills: the default VFS owns them entirely.
            // SAFETY: `file` has szOsFile bytes, at least the default VFS's own size.
            return match unsafe { (*base).xOpen } {
                Some(open) => unsafe { open(base, name, file, flags, out_flags) },
                None => ffi::SQLITE_CANTOPEN,
            };
        }
        let Some(api) = api() else {
            return ffi::SQLITE_CANTOPEN;
        };
        // SAFETY: SQLite hands us szOsFile bytes; null pMethods tells it there is nothing
        // to close if we fail.
        unsafe { (*file).pMethods = ptr::null() };
        // SAFETY: a main database always has a NUL-terminated name.
        let path = if name.is_null() {
            String::new()
        } else {
            unsafe { CStr::from_ptr(name) }
                .to_string_lossy()
                .into_owned()
        };
        // URI parameters first, then what ltx_register mapped this name to.
        let mapped = names::get(&path);
        let param = |key: &str| {
            uri_param(api, name, key).or_else(|| mapped.as_ref().and_then(|m| m.get(key)))
        };
        let config = options::resolve(param, |var| std::env::var(var).ok());
        let start = options::travel(param);
        let db = match config.and_then(|c| MainDb::open(c, start?)) {
            Ok(db) => db,
            Err(e) => return report(&e, Some(&path)).0,
        };
        let ours = LtxFile {
            base: ffi::sqlite3_file {
                pMethods: &IO_METHODS,
            },
            db: Box::into_raw(Box::new(db)),
        };
        // SAFETY: `file` points to szOsFile ≥ size_of::<LtxFile>() writable bytes.
        unsafe { file.cast::<LtxFile>().write(ours) };
        // SAFETY: out_flags is null or writable.
        if let Some(out) = unsafe { out_flags.as_mut() } {
            // Read-only whatever was asked: SQLite then refuses writes with SQLITE_READONLY.
            *out = (flags & !(ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE))
                | ffi::SQLITE_OPEN_READONLY;
        }
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    guard(ffi::SQLITE_IOERR_CLOSE, || {
        // SAFETY: SQLite closes each file it opened once; `file` is an `LtxFile` of ours.
        let ours = unsafe { &mut *file.cast::<LtxFile>() };
        if !ours.db.is_null() {
            // SAFETY: `db` came from Box::into_raw in x_open and is dropped only here.
            drop(unsafe { Box::from_raw(ours.db) });
            ours.db = ptr::null_mut();
        }
        ours.base.pMethods = ptr::null();
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    guard(ffi::SQLITE_IOERR_READ, || {
        // SAFETY: an open main database file of ours.
        let Some(db) = (unsafe { main_db(file) }) else {
            return ffi::SQLITE_IOERR_READ;
        };
        let (Ok(len), Ok(offset)) = (usize::try_from(amount), u64::try_from(offset)) else {
            return ffi::SQLITE_IOERR_READ;
        };
        // SAFETY: SQLite passes a writable buffer of `amount` bytes.
        let buf = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
        match db.read(buf, offset) {
            Ok(true) => ffi::SQLITE_OK,
            Ok(false) => ffi::SQLITE_IOERR_SHORT_READ,
            Err(e) => {
                let (code, message) = report(&e, None);
                db.record_error(message);
                code
            }
        }
    })
}

unsafe extern "C" fn x_write(
    _file: *mut ffi::sqlite3_file,
    _buf: *const c_void,
    _amount: c_int,
    _offset: ffi::sqlite3_int64,
) -> c_int {
    ffi::SQLITE_READONLY
}

unsafe extern "C" fn x_truncate(_file: *mut ffi::sqlite3_file, _size: ffi::sqlite3_int64) -> c_int {
    ffi::SQLITE_READONLY
}

unsafe extern "C" fn x_sync(_file: *mut ffi::sqlite3_file, _flags: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_size(
    file: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    guard(ffi::SQLITE_IOERR_FSTAT, || {
        // SAFETY: an open main database file of ours; `size` is writable.
        match (unsafe { main_db(file) }, unsafe { size.as_mut() }) {
            (Some(db), Some(out)) => {
                *out = i64::try_from(db.file_size()).unwrap_or(i64::MAX);
                ffi::SQLITE_OK
            }
            _ => ffi::SQLITE_IOERR_FSTAT,
        }
    })
}

unsafe extern "C" fn x_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    guard(ffi::SQLITE_IOERR_LOCK, || {
        // SAFETY: an open main database file of ours.
        let (Some(db), Some(level)) = (unsafe { main_db(file) }, LockLevel::from_raw(level)) else {
            return ffi::SQLITE_IOERR_LOCK;
        };
        match db.lock(level) {
            Ok(()) => ffi::SQLITE_OK,
            Err(()) => ffi::SQLITE_READONLY,
        }
    })
}

unsafe extern "C" fn x_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    guard(ffi::SQLITE_IOERR_UNLOCK, || {
        // SAFETY: an open main database file of ours.
        let (Some(db), Some(level)) = (unsafe { main_db(file) }, LockLevel::from_raw(level)) else {
            return ffi::SQLITE_IOERR_UNLOCK;
        };
        db.unlock(level);
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_check_reserved_lock(
    _file: *mut ffi::sqlite3_file,
    out: *mut c_int,
) -> c_int {
    // SAFETY: `out` is null or writable. Nobody writes through this VFS.
    if let Some(out) = unsafe { out.as_mut() } {
        *out = 0;
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    guard(ffi::SQLITE_ERROR, || {
        if op != ffi::SQLITE_FCNTL_PRAGMA {
            return ffi::SQLITE_NOTFOUND;
        }
        // SAFETY: an open main database file of ours.
        let (Some(db), Some(api)) = (unsafe { main_db(file) }, api()) else {
            return ffi::SQLITE_NOTFOUND;
        };
        // SQLITE_FCNTL_PRAGMA: arg is char*[3]: [0] result or error (ours to set, SQLite
        // frees it), [1] the pragma name, [2] its argument or null.
        let args = arg.cast::<*mut c_char>();
        // SAFETY: per the contract above, args[1] is a NUL-terminated name, args[2] null or
        // a NUL-terminated value.
        let (name, value) = unsafe {
            let value = *args.add(2);
            (
                CStr::from_ptr(*args.add(1)).to_string_lossy().into_owned(),
                (!value.is_null()).then(|| CStr::from_ptr(value).to_string_lossy().into_owned()),
            )
        };
        let (rc, text) = match db.pragma(&name, value.as_deref()) {
            Pragma::NotOurs => return ffi::SQLITE_NOTFOUND,
            Pragma::Value(text) => (ffi::SQLITE_OK, text),
            Pragma::Failed(text) => (ffi::SQLITE_ERROR, Some(text)),
        };
        if let Some(text) = text {
            // SAFETY: args[0] is ours to set to an sqlite3_malloc'd string.
            unsafe { *args = api.mprintf(&text) };
        }
        rc
    })
}

unsafe extern "C" fn x_sector_size(_file: *mut ffi::sqlite3_file) -> c_int {
    4096
}

unsafe extern "C" fn x_device_characteristics(_file: *mut ffi::sqlite3_file) -> c_int {
    0
}

// ---------------------------------------------------------------------------------------
// VFS methods: everything but opening a main database is the default VFS's.

/// Calls method `$m` of the default VFS with `$args`, or returns `$missing` if it has none.
macro_rules! delegate {
    ($vfs:expr, $m:ident, $missing:expr $(, $arg:expr)*) => {{
        // SAFETY: `$vfs` is ours, so its pAppData is the default VFS, valid for the
        // process's life; the arguments are SQLite's, passed through unchanged.
        unsafe {
            let base = base_vfs($vfs);
            match (*base).$m {
                Some(f) => f(base $(, $arg)*),
                None => $missing,
            }
        }
    }};
}

unsafe extern "C" fn x_delete(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    sync: c_int,
) -> c_int {
    delegate!(vfs, xDelete, ffi::SQLITE_IOERR_DELETE, name, sync)
}

unsafe extern "C" fn x_access(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    flags: c_int,
    out: *mut c_int,
) -> c_int {
    guard(ffi::SQLITE_IOERR_ACCESS, || {
        // A replica has no journal, WAL or shared memory, whatever lies on the local disk.
        // SAFETY: SQLite passes a NUL-terminated name or null.
        let name_str = (!name.is_null()).then(|| unsafe { CStr::from_ptr(name) }.to_bytes());
        if name_str.is_some_and(|n| {
            n.ends_with(b"-journal") || n.ends_with(b"-wal") || n.ends_with(b"-shm")
        }) {
            // SAFETY: `out` is null or writable.
            if let Some(out) = unsafe { out.as_mut() } {
                *out = 0;
            }
            return ffi::SQLITE_OK;
        }
        delegate!(vfs, xAccess, ffi::SQLITE_IOERR_ACCESS, name, flags, out)
    })
}

unsafe extern "C" fn x_full_pathname(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n_out: c_int,
    out: *mut c_char,
) -> c_int {
    delegate!(vfs, xFullPathname, ffi::SQLITE_CANTOPEN, name, n_out, out)
}

unsafe extern "C" fn x_dl_open(vfs: *mut ffi::sqlite3_vfs, name: *const c_char) -> *mut c_void {
    delegate!(vfs, xDlOpen, ptr::null_mut(), name)
}

unsafe extern "C" fn x_dl_error(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) {
    delegate!(vfs, xDlError, (), n, out)
}

unsafe extern "C" fn x_dl_sym(
    vfs: *mut ffi::sqlite3_vfs,
    handle: *mut c_void,
    symbol: *const c_char,
) -> Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)> {
    delegate!(vfs, xDlSym, None, handle, symbol)
}

unsafe extern "C" fn x_dl_close(vfs: *mut ffi::sqlite3_vfs, handle: *mut c_void) {
    delegate!(vfs, xDlClose, (), handle)
}

unsafe extern "C" fn x_randomness(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    delegate!(vfs, xRandomness, 0, n, out)
}

unsafe extern "C" fn x_sleep(vfs: *mut ffi::sqlite3_vfs, micros: c_int) -> c_int {
    delegate!(vfs, xSleep, 0, micros)
}

unsafe extern "C" fn x_current_time(vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    delegate!(vfs, xCurrentTime, ffi::SQLITE_ERROR, out)
}

unsafe extern "C" fn x_get_last_error(
    vfs: *mut ffi::sqlite3_vfs,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    delegate!(vfs, xGetLastError, 0, n, out)
}

unsafe extern "C" fn x_current_time_int64(
    vfs: *mut ffi::sqlite3_vfs,
    out: *mut ffi::sqlite3_int64,
) -> c_int {
    delegate!(vfs, xCurrentTimeInt64, ffi::SQLITE_ERROR, out)
}
