//! The SQLite API table: every call we make into SQLite goes through one [`SqliteApi`] of
//! function pointers, filled once per process from the `sqlite3_api_routines` the host passes
//! to the entry point (loadable build: nothing is linked, so no second SQLite can enter the
//! host) or from the linked `sqlite3_*` symbols (`static` feature). The fields read are those
//! of SQLite 3.8, plus two of 3.31 and 3.39 (`uri_key`, `db_name`) kept optional, so hosts
//! from 3.40 on are fine. Knows nothing of the VFS itself.

use super::c_string;
use libsqlite3_sys as ffi;
use std::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;

type VfsFind = unsafe extern "C" fn(*const c_char) -> *mut ffi::sqlite3_vfs;
type VfsRegister = unsafe extern "C" fn(*mut ffi::sqlite3_vfs, c_int) -> c_int;
type Mprintf = unsafe extern "C" fn(*const c_char, ...) -> *mut c_char;
type Log = unsafe extern "C" fn(c_int, *const c_char, ...);
type UriParameter = unsafe extern "C" fn(*const c_char, *const c_char) -> *const c_char;
type UriKey = unsafe extern "C" fn(*const c_char, c_int) -> *const c_char;
type DbName = unsafe extern "C" fn(*mut ffi::sqlite3, c_int) -> *const c_char;
pub(super) type SqlFunction =
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
type ResultInt64 = unsafe extern "C" fn(*mut ffi::sqlite3_context, ffi::sqlite3_int64);
type UserData = unsafe extern "C" fn(*mut ffi::sqlite3_context) -> *mut c_void;
type ContextDbHandle = unsafe extern "C" fn(*mut ffi::sqlite3_context) -> *mut ffi::sqlite3;
type FileControl =
    unsafe extern "C" fn(*mut ffi::sqlite3, *const c_char, c_int, *mut c_void) -> c_int;
type Free = unsafe extern "C" fn(*mut c_void);
/// An extension entry point: (connection, error slot, API table).
type EntryPoint = unsafe extern "C" fn(
    *mut ffi::sqlite3,
    *mut *mut c_char,
    *const ffi::sqlite3_api_routines,
) -> c_int;
type AutoExtension = unsafe extern "C" fn(Option<EntryPoint>) -> c_int;

/// The SQLite functions we call, from the host's API table or the linked library.
#[derive(Clone, Copy)]
pub(super) struct SqliteApi {
    pub(super) vfs_find: VfsFind,
    pub(super) vfs_register: VfsRegister,
    pub(super) mprintf: Mprintf,
    pub(super) log: Log,
    pub(super) uri_parameter: UriParameter,
    /// `sqlite3_uri_key` (3.31): the URI parameter names of a database (to refuse unknown
    /// ones).
    pub(super) uri_key: Option<UriKey>,
    /// `sqlite3_db_name` (3.39): the schema names of a connection.
    pub(super) db_name: Option<DbName>,
    pub(super) create_function: CreateFunction,
    pub(super) value_text: ValueText,
    pub(super) value_type: ValueType,
    pub(super) result_text: ResultText,
    pub(super) result_error: ResultError,
    pub(super) result_null: ResultNull,
    pub(super) result_int64: ResultInt64,
    pub(super) user_data: UserData,
    pub(super) context_db_handle: ContextDbHandle,
    pub(super) file_control: FileControl,
    pub(super) free: Free,
    pub(super) auto_extension: AutoExtension,
}

pub(super) static API: OnceLock<SqliteApi> = OnceLock::new();

impl SqliteApi {
    /// # Safety
    /// `api` is null or points to the `sqlite3_api_routines` SQLite passed to an extension
    /// entry point, valid for the life of the process.
    // (Only the loadable build's bindings spell out the table; the linked ones keep it opaque.)
    #[cfg(feature = "loadable")]
    pub(super) unsafe fn from_routines(api: *const ffi::sqlite3_api_routines) -> Option<SqliteApi> {
        // SAFETY: non-null per the check; SQLite's table is static and at least as long as
        // the 3.8 layout whose fields we read.
        let api = unsafe { api.as_ref()? };
        Some(SqliteApi {
            vfs_find: api.vfs_find?,
            vfs_register: api.vfs_register?,
            mprintf: api.mprintf?,
            log: api.log?,
            uri_parameter: api.uri_parameter?,
            uri_key: api.uri_key,
            db_name: api.db_name,
            create_function: api.create_function_v2?,
            value_text: api.value_text?,
            value_type: api.value_type?,
            result_text: api.result_text?,
            result_error: api.result_error?,
            result_null: api.result_null?,
            result_int64: api.result_int64?,
            user_data: api.user_data?,
            context_db_handle: api.context_db_handle?,
            file_control: api.file_control?,
            free: api.free?,
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
    pub(super) fn linked() -> SqliteApi {
        SqliteApi {
            vfs_find: ffi::sqlite3_vfs_find,
            vfs_register: ffi::sqlite3_vfs_register,
            mprintf: ffi::sqlite3_mprintf,
            log: ffi::sqlite3_log,
            uri_parameter: ffi::sqlite3_uri_parameter,
            uri_key: Some(ffi::sqlite3_uri_key),
            db_name: Some(ffi::sqlite3_db_name),
            create_function: ffi::sqlite3_create_function_v2,
            value_text: ffi::sqlite3_value_text,
            value_type: ffi::sqlite3_value_type,
            result_text: ffi::sqlite3_result_text,
            result_error: ffi::sqlite3_result_error,
            result_null: ffi::sqlite3_result_null,
            result_int64: ffi::sqlite3_result_int64,
            user_data: ffi::sqlite3_user_data,
            context_db_handle: ffi::sqlite3_context_db_handle,
            file_control: ffi::sqlite3_file_control,
            free: ffi::sqlite3_free,
            auto_extension: ffi::sqlite3_auto_extension,
        }
    }

    /// `sqlite3_mprintf("%s", text)`: a string SQLite may free. NULs become spaces.
    pub(super) fn mprintf(&self, text: &str) -> *mut c_char {
        let text = c_string(text);
        // SAFETY: both pointers are valid NUL-terminated strings for the call; "%s" consumes
        // exactly the one vararg given.
        unsafe { (self.mprintf)(c"%s".as_ptr(), text.as_ptr()) }
    }

    /// `sqlite3_log(code, "%s", message)`. SQLite cuts log lines near 230 bytes.
    pub(super) fn log(&self, code: c_int, message: &str) {
        let text = c_string(message);
        // SAFETY: as in `mprintf`.
        unsafe { (self.log)(code, c"%s".as_ptr(), text.as_ptr()) }
    }
}

/// The API table, once an entry point has filled it.
pub(super) fn api() -> Option<&'static SqliteApi> {
    API.get()
}
