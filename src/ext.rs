//! Registration and SQL functions. The loadable extension's entry point,
//! `sqlite3_ltxvfs_init`, is in `vfs::ffi` (it is FFI), which also turns SQLite's function
//! calls into calls of the safe bodies here.
//!
//! - `ltx_register(name, url [, settings])` maps a database name to a replica, for drivers
//!   that open plain file names; `ltx_register(name, NULL)` removes the mapping.
//! - `ltx_default_vfs(on)` makes `ltx` the default VFS (1) or gives the place back (0).
//! - `ltx_last_error()` is the sentence behind the process's last error (why an open failed:
//!   SQLite itself only says "unable to open database file").

use crate::vfs::names::{self, Mapping};

/// Registers the `ltx` VFS with the SQLite linked into this program (e.g. rusqlite's
/// `bundled`), and the SQL functions on every connection opened after. Harmless to call more
/// than once.
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

/// `ltx_register(name, url [, settings])`: `args` are the SQL arguments as text (`None` for
/// NULL); `full_path` turns a name into the full path SQLite will open it by. Returns that
/// path, or the sentence of the SQL error.
pub(crate) fn ltx_register(
    args: &[Option<String>],
    full_path: impl FnOnce(&str) -> Option<String>,
) -> Result<String, String> {
    const USAGE: &str = "usage: ltx_register(name, replica_url [, 'setting=value&...'])";
    let (Some(Some(name)), Some(url)) = (args.first(), args.get(1)) else {
        return Err(USAGE.into());
    };
    let Some(path) = full_path(name) else {
        return Err(format!("ltx_register: {name:?} is not a file name"));
    };
    let mapping = match url {
        None => None,
        Some(url) => {
            let settings = args.get(2).cloned().flatten().unwrap_or_default();
            Some(Mapping::parse(url, &settings).map_err(|e| format!("ltx_register: {e}"))?)
        }
    };
    names::set(&path, mapping);
    Ok(path)
}

/// The argument of `ltx_default_vfs`: 1/0, true/false, on/off, yes/no; a number is on when
/// not zero (drivers bind JavaScript numbers as reals: `1.0`).
pub(crate) fn switch(arg: Option<&str>) -> Option<bool> {
    let arg = arg?.trim().to_ascii_lowercase();
    match arg.as_str() {
        "true" | "on" | "yes" => Some(true),
        "false" | "off" | "no" => Some(false),
        number => number
            .parse::<f64>()
            .ok()
            .filter(|n| !n.is_nan())
            .map(|n| n != 0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_read_as_people_write_them() {
        for on in ["1", "1.0", " TRUE ", "on", "yes", "2"] {
            assert_eq!(switch(Some(on)), Some(true), "{on}");
        }
        for off in ["0", "0.0", "false", "Off", "no"] {
            assert_eq!(switch(Some(off)), Some(false), "{off}");
        }
        for neither in ["maybe", "", "NaN"] {
            assert_eq!(switch(Some(neither)), None, "{neither}");
        }
        assert_eq!(switch(None), None);
    }

    fn text(args: &[Option<&str>]) -> Vec<Option<String>> {
        args.iter().map(|a| a.map(str::to_string)).collect()
    }

    #[test]
    fn register_maps_the_full_path_and_null_unmaps() {
        let full = |n: &str| Some(format!("/work/dir/{n}"));
        let path = ltx_register(&text(&[Some("r.db"), Some("file:///r")]), full).unwrap();
        assert_eq!(path, "/work/dir/r.db");
        assert!(names::get(&path).is_some());
        ltx_register(&text(&[Some("r.db"), None]), full).unwrap();
        assert!(names::get(&path).is_none());
    }

    #[test]
    fn register_refuses_what_an_open_would() {
        let full = |n: &str| Some(format!("/work/dir/{n}"));
        let err = |args: &[Option<&str>]| ltx_register(&text(args), full).unwrap_err();
        assert!(err(&[Some("x.db")]).starts_with("usage:"));
        assert!(err(&[None, Some("file:///r")]).starts_with("usage:"));
        let bad = err(&[Some("x.db"), Some("file:///r"), Some("poll=often")]);
        assert!(bad.contains("poll"), "{bad}");
        assert!(names::get("/work/dir/x.db").is_none());
        let nameless = ltx_register(&text(&[Some(""), Some("file:///r")]), |_| None);
        assert!(nameless.unwrap_err().contains("not a file name"));
    }
}
