//! The file callbacks (https://www.sqlite.org/c3ref/io_methods.html) of a main database
//! opened through `ltx`: an [`LtxFile`] owns its [`MainDb`], and each callback turns SQLite's
//! pointers into a call on it: reads, size, locks, pragmas, and in write mode (`write=1`)
//! writes, truncation and the sync that stores a COMMIT. Without it writes are refused.
//! Files that are not a main database never reach these: the default VFS's methods serve them.

use super::api::api;
use super::{guard, report};
use crate::vfs::main_db::{LockLevel, MainDb, Pragma, Refused};
use libsqlite3_sys as ffi;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr;

/// What SQLite allocates for each file of ours (`szOsFile` bytes); for delegated files the
/// default VFS fills the same memory with its own struct instead.
#[repr(C)]
pub(super) struct LtxFile {
    base: ffi::sqlite3_file,
    db: *mut MainDb,
}

impl LtxFile {
    /// A file of ours: our methods, owning `db` until [`x_close`].
    pub(super) fn new(db: MainDb) -> LtxFile {
        LtxFile {
            base: ffi::sqlite3_file {
                pMethods: &IO_METHODS,
            },
            db: Box::into_raw(Box::new(db)),
        }
    }
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

/// The `MainDb` of a file opened by [`x_open`].
///
/// # Safety
/// `file` was opened by [`x_open`] as a main database and not yet closed; SQLite calls a
/// file's methods from one thread at a time.
unsafe fn main_db<'a>(file: *mut ffi::sqlite3_file) -> Option<&'a mut MainDb> {
    // SAFETY: per the contract, `file` points to an `LtxFile` whose `db` is ours or null.
    unsafe { file.cast::<LtxFile>().as_mut()?.db.as_mut() }
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

/// Records `e` as the file's last error (and the process's, and in `sqlite3_log`); returns
/// its code, or `io_code` for a store failure (the code says which operation failed).
fn fail(db: &mut MainDb, e: &crate::error::Error, io_code: c_int) -> c_int {
    let (code, message) = report(e, None);
    db.record_error(message);
    if matches!(e, crate::error::Error::Io { .. }) {
        io_code
    } else {
        code
    }
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    guard(ffi::SQLITE_IOERR_WRITE, || {
        // SAFETY: an open main database file of ours.
        let Some(db) = (unsafe { main_db(file) }) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        if !db.writable() {
            return ffi::SQLITE_READONLY;
        }
        let (Ok(len), Ok(offset)) = (usize::try_from(amount), u64::try_from(offset)) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        if buf.is_null() {
            return ffi::SQLITE_IOERR_WRITE;
        }
        // SAFETY: SQLite passes a readable buffer of `amount` bytes (checked non-null).
        let data = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) };
        match db.write(data, offset) {
            Ok(()) => ffi::SQLITE_OK,
            Err(e) => fail(db, &e, ffi::SQLITE_IOERR_WRITE),
        }
    })
}

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    guard(ffi::SQLITE_IOERR_TRUNCATE, || {
        // SAFETY: an open main database file of ours.
        let Some(db) = (unsafe { main_db(file) }) else {
            return ffi::SQLITE_IOERR_TRUNCATE;
        };
        if !db.writable() {
            return ffi::SQLITE_READONLY;
        }
        match db.truncate(u64::try_from(size).unwrap_or(0)) {
            Ok(()) => ffi::SQLITE_OK,
            Err(e) => fail(db, &e, ffi::SQLITE_IOERR_TRUNCATE),
        }
    })
}

/// In write mode, the sync of a COMMIT stores the transaction (`MainDb::sync`); a lost
/// race is SQLITE_BUSY_SNAPSHOT, a store that failed SQLITE_IOERR_FSYNC.
unsafe extern "C" fn x_sync(file: *mut ffi::sqlite3_file, _flags: c_int) -> c_int {
    guard(ffi::SQLITE_IOERR_FSYNC, || {
        // SAFETY: an open main database file of ours.
        let Some(db) = (unsafe { main_db(file) }) else {
            return ffi::SQLITE_IOERR_FSYNC;
        };
        match db.sync() {
            Ok(()) => ffi::SQLITE_OK,
            Err(e) => fail(db, &e, ffi::SQLITE_IOERR_FSYNC),
        }
    })
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
            Err(Refused::ReadOnly) => ffi::SQLITE_READONLY,
            Err(Refused::Busy) => ffi::SQLITE_BUSY,
            // The sentence is in ltx_last_error: the replica did not reach min_txid.
            Err(Refused::Behind) => ffi::SQLITE_IOERR_LOCK,
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

unsafe extern "C" fn x_check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    guard(ffi::SQLITE_IOERR_CHECKRESERVEDLOCK, || {
        // SAFETY: an open main database file of ours; `out` is null or writable.
        let reserved = unsafe { main_db(file) }.is_some_and(|db| db.reserved_elsewhere());
        if let Some(out) = unsafe { out.as_mut() } {
            *out = c_int::from(reserved);
        }
        ffi::SQLITE_OK
    })
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
