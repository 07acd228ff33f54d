//! ltxvfs: a SQLite VFS that serves a Litestream replica in object storage as a live,
//! read-only database. See `README.md` and `docs/` for the design.
//!
//! Layers, lowest first: [`ltx`] (the file format), [`store`] and `io` (object storage and
//! the runtime bridge), [`cache`] (pages in memory), [`replica`] (plans, snapshots, page
//! reads), `vfs` (the SQLite glue) and `ext` (registration).

#[cfg(all(feature = "loadable", feature = "static"))]
compile_error!(
    "features `loadable` and `static` exclude each other: use `default-features = false, features = [\"static\"]`"
);

pub mod cache;
pub mod error;
mod ext;
mod fetch;
mod io;
pub mod ltx;
pub mod replica;
pub mod store;
mod vfs;
mod writer;

pub use error::Error;
#[cfg(feature = "static")]
pub use ext::register;
#[cfg(feature = "static")]
pub use vfs::ffi::trust_connection;

/// Entry points for the fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    /// Parses a replica URL and a settings string (`cache_size=1MiB&time=...`) as
    /// `ltx_register` does, and redacts the URL as error messages do.
    pub fn parse_settings(url: &str, settings: &str) {
        let _ = crate::vfs::names::Mapping::parse(url, settings);
        let _ = crate::store::location::redact(url);
    }
}
