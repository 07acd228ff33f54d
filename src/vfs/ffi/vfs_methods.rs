//! The VFS callbacks (https://www.sqlite.org/c3ref/vfs.html): our `sqlite3_vfs` table over
//! the default VFS. `xOpen` of a main database builds a [`MainDb`] from the URI parameters,
//! the names mapped with `ltx_register` and the environment; everything else (temp files,
//! journals, sort spills, paths, randomness, time) is the default VFS's, called through.

use super::api::{SqliteApi, api};
use super::io_methods::LtxFile;
use super::{VFS_NAME, c_string, guard, report};
use crate::vfs::main_db::MainDb;
use crate::vfs::{journal, names, options};
use libsqlite3_sys as ffi;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr;

/// Our `sqlite3_vfs` table over `base`, the default VFS: files of ours need `LtxFile`'s
/// size, delegated files the default VFS's own.
pub(super) fn table(
    base: *mut ffi::sqlite3_vfs,
    base_ref: &ffi::sqlite3_vfs,
) -> Box<ffi::sqlite3_vfs> {
    Box::new(ffi::sqlite3_vfs {
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
    })
}

/// The default VFS our `ltx` VFS delegates to.
///
/// # Safety
/// `vfs` is our registered VFS, whose `pAppData` is the default VFS.
pub(super) unsafe fn base_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    // SAFETY: per the contract, `vfs` is ours and valid.
    unsafe { (*vfs).pAppData.cast() }
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

/// The URI parameter names of the database name `name` (a pointer SQLite gave to xOpen);
/// none on a SQLite older than 3.31, which cannot list them.
fn uri_keys(api: &SqliteApi, name: *const c_char) -> Vec<String> {
    let Some(uri_key) = api.uri_key else {
        return Vec::new();
    };
    if name.is_null() {
        return Vec::new();
    }
    (0..)
        .map_while(|i| {
            // SAFETY: `name` is the filename SQLite passed to xOpen, with its URI parameters
            // after it; sqlite3_uri_key returns null past the last one, else a
            // NUL-terminated string inside that buffer.
            let key = unsafe { uri_key(name, i) };
            (!key.is_null()).then(|| {
                unsafe { CStr::from_ptr(key) }
                    .to_string_lossy()
                    .into_owned()
            })
        })
        .collect()
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
            // Temp files, journals, sort spills: the default VFS owns them entirely. The
            // rollback journal goes to a local directory of ours (`journal`).
            let journal = (flags & ffi::SQLITE_OPEN_MAIN_JOURNAL != 0)
                .then(|| local_journal_of(name))
                .flatten()
                .map(|j| j.and_then(|j| journal::before_open(j).map(|()| j)));
            let journal = match journal.transpose() {
                Ok(journal) => journal,
                // A directory that cannot be made private: no journal, and a sentence.
                Err(detail) => {
                    let message = format!("ltxvfs: cannot keep the rollback journal: {detail}");
                    if let Some(api) = api() {
                        api.log(ffi::SQLITE_CANTOPEN, &message);
                    }
                    crate::vfs::set_last_error(message);
                    return ffi::SQLITE_CANTOPEN;
                }
            };
            let name = journal.map_or(name, CStr::as_ptr);
            // SAFETY: `file` has szOsFile bytes, at least the default VFS's own size.
            let rc = match unsafe { (*base).xOpen } {
                Some(open) => unsafe { open(base, name, file, flags, out_flags) },
                None => ffi::SQLITE_CANTOPEN,
            };
            if let Some(j) = journal {
                journal::after_open(j);
            }
            return rc;
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
        let open = || {
            options::check_uri_parameters(uri_keys(api, name).iter().map(String::as_str))?;
            let config = options::resolve(param, |var| std::env::var(var).ok())?;
            let floor = match param("min_txid") {
                Some(v) => options::parse_min_txid(&v).map_err(|e| {
                    crate::error::Error::Config(format!("URI parameter min_txid: {e}"))
                })?,
                None => None,
            };
            let mut db = MainDb::open(config, options::travel(param)?)?;
            db.sql_time_travel = options::sql_time_travel(param)?;
            db.min_txid = floor;
            Ok::<_, crate::error::Error>(db)
        };
        let db = match open() {
            Ok(db) => db,
            Err(e) => return report(&e, Some(&path)).0,
        };
        let writable = db.writable();
        let ours = LtxFile::new(db);
        // SAFETY: `file` points to szOsFile ≥ size_of::<LtxFile>() writable bytes.
        unsafe { file.cast::<LtxFile>().write(ours) };
        // SAFETY: out_flags is null or writable.
        if let Some(out) = unsafe { out_flags.as_mut() } {
            // Read-only unless opened with write=1: SQLite then refuses writes with
            // SQLITE_READONLY.
            *out = if writable {
                flags
            } else {
                (flags & !(ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE))
                    | ffi::SQLITE_OPEN_READONLY
            };
        }
        ffi::SQLITE_OK
    })
}

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

/// The local path of the rollback journal SQLite names `name` (`vfs::journal`), or `None`
/// for a name that is not a journal's; an error sentence if its directory cannot be made
/// private. `name` is the pointer SQLite gave xOpen or xDelete for the journal: its
/// database's URI parameters can be read from it
/// (https://www.sqlite.org/c3ref/uri_parameter.html), and name the replica.
fn local_journal_of(name: *const c_char) -> Option<Result<&'static CStr, String>> {
    if name.is_null() {
        return None;
    }
    // SAFETY: SQLite passes a NUL-terminated name (checked non-null).
    let given = unsafe { CStr::from_ptr(name) }.to_str().ok()?;
    let db = given.strip_suffix("-journal")?;
    let replica = api()
        .and_then(|api| uri_param(api, name, "replica"))
        .or_else(|| names::get(db).and_then(|m| m.get("replica")))
        .unwrap_or_default();
    Some(journal::local_journal(given, &replica))
}

unsafe extern "C" fn x_delete(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    sync: c_int,
) -> c_int {
    // SQLite deletes a journal by the name it opened it with: ours was moved. Without a
    // private directory no journal was made: there is nothing to delete.
    let name = match local_journal_of(name) {
        None => name,
        Some(Ok(journal)) => journal.as_ptr(),
        Some(Err(_)) => return ffi::SQLITE_IOERR_DELETE_NOENT,
    };
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

/// SQLite's busy handler sleeps here between two tries of a lock: while this process waits
/// for the writers' lease, the sleep ends early when the lease is its (`writer::nap`).
/// The contract (https://sqlite.org/c3ref/vfs.html) asks for a sleep of at least `micros`
/// and an answer of how long was asked of the OS: an early end happens only on the thread
/// whose BEGIN was just refused the lease, where the busy handler ignores the answer and
/// tries again; otherwise the default VFS sleeps.
unsafe extern "C" fn x_sleep(vfs: *mut ffi::sqlite3_vfs, micros: c_int) -> c_int {
    let wanted = std::time::Duration::from_micros(u64::try_from(micros).unwrap_or(0));
    let napped = super::guard(-1, || match crate::writer::nap(wanted) {
        Some(slept) => c_int::try_from(slept.as_micros()).unwrap_or(micros),
        None => -1,
    });
    if napped >= 0 {
        return napped;
    }
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
