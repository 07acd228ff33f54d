//! Registration. The loadable extension's entry point, `sqlite3_ltxvfs_init`, is in
//! `vfs::ffi` (it is FFI); this is the Rust side for programs that link SQLite themselves.

/// Registers the `ltx` VFS with the SQLite linked into this program (e.g. rusqlite's
/// `bundled`). Harmless to call more than once.
///
/// # Errors
/// The SQLite result code if registration failed.
#[cfg(feature = "static")]
pub fn register() -> Result<(), i32> {
    match crate::vfs::ffi::register_linked() {
        0 => Ok(()),
        rc => Err(rc),
    }
}
