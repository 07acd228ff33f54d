//! Where the rollback journal of a database opened through `ltx` lives: in a local directory
//! of the user's own (`writer::private_dir`: `$XDG_RUNTIME_DIR/ltxvfs/journals`, else
//! `<temp dir>/ltxvfs-<euid>/journals`, 0700 and checked), not beside the database's name,
//! which is only a label here (there is no local database file). A journal holds pages of
//! the database, and its name is predictable: in a directory another user could read or
//! write, they could read it, plant a symlink where it will be made, or own the directory
//! first and make every write fail.
//!
//! A journal matters only inside the process that writes it: the replica itself is changed
//! by whole LTX files or not at all, so a journal left by a crash is never played back (the
//! VFS tells SQLite there is none), and each process names its journals apart. While a
//! journal is opened, an empty file named as its database stands beside it (the default
//! VFS copies its mode, and needs it to exist): made 0600, never through a symlink, so the
//! journal is 0600 too.

use crate::writer::private_dir;
use std::collections::HashMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The local path of the journal SQLite names `name` for a database of `replica` (the
/// same label may name databases of several replicas), as a C string that lives as long as
/// the process (the default VFS keeps the pointer it is given for the file's life). One per
/// distinct name and replica, so it does not grow with the number of transactions.
///
/// # Errors
/// A sentence if the directory cannot be made private to this user, or the path does not
/// fit in a C string.
pub(crate) fn local_journal(name: &str, replica: &str) -> Result<&'static std::ffi::CStr, String> {
    type Names = HashMap<(String, String), &'static CString>;
    static NAMES: Mutex<Option<Names>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let map = names.get_or_insert_with(HashMap::new);
    let key = (name.to_owned(), replica.to_owned());
    if let Some(found) = map.get(&key) {
        return Ok(found.as_c_str());
    }
    let dir = private_dir::local_dir("journals");
    private_dir::ensure(&dir)?;
    let path = journal_path(&dir, name, replica, std::process::id());
    let c_path = CString::new(path.to_string_lossy().into_owned())
        .map_err(|_| format!("the journal path {} holds a NUL byte", path.display()))?;
    let leaked: &'static CString = Box::leak(Box::new(c_path));
    map.insert(key, leaked);
    Ok(leaked.as_c_str())
}

/// The database name the default VFS derives from `journal` (dropping `-journal`), whose
/// mode it copies when it creates the journal.
fn stand_in(journal: &std::ffi::CStr) -> Option<PathBuf> {
    let path = journal.to_str().ok()?;
    Some(PathBuf::from(path.strip_suffix("-journal")?))
}

/// Before the default VFS opens `journal`: its directory is (again: a temp cleaner may
/// have removed it) made and checked private, and an empty file (0600) stands in for its
/// database; one a crash left is replaced.
///
/// # Errors
/// A sentence naming what could not be made.
pub(crate) fn before_open(journal: &std::ffi::CStr) -> Result<(), String> {
    let path = stand_in(journal)
        .ok_or_else(|| format!("{} is not a journal's name", journal.to_string_lossy()))?;
    if let Some(dir) = path.parent() {
        private_dir::ensure(dir)?;
    }
    private_dir::create_fresh(&path)
        .map(drop)
        .map_err(|e| format!("cannot make {}: {e}", path.display()))
}

/// After the open: the stand-in goes, so that only journals in use are left here.
pub(crate) fn after_open(journal: &std::ffi::CStr) {
    if let Some(path) = stand_in(journal) {
        let _ = std::fs::remove_file(path);
    }
}

/// `<dir>/<pid>-<hash of name and replica>-<file name>`: apart per process, database name
/// and replica.
fn journal_path(dir: &Path, name: &str, replica: &str, pid: u32) -> PathBuf {
    let hash = crate::ltx::crc64(format!("{name}\0{replica}").as_bytes());
    let base = std::path::Path::new(name)
        .file_name()
        .map_or_else(|| "db-journal".into(), |n| n.to_string_lossy());
    dir.join(format!("{pid}-{hash:016x}-{base}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn journals_are_apart_per_process_and_name() {
        let dir = std::path::Path::new("/tmp/j");
        let a = journal_path(dir, "/srv/app.db-journal", "s3://a", 1);
        assert!(a.to_string_lossy().ends_with("-app.db-journal"), "{a:?}");
        assert_ne!(a, journal_path(dir, "/srv/app.db-journal", "s3://a", 2));
        assert_ne!(a, journal_path(dir, "/other/app.db-journal", "s3://a", 1));
        assert_ne!(a, journal_path(dir, "/srv/app.db-journal", "s3://b", 1));
        assert_eq!(
            local_journal("/x/y.db-journal", "r"),
            local_journal("/x/y.db-journal", "r")
        );
    }

    #[test]
    fn a_journal_and_its_stand_in_are_private() -> Result<(), String> {
        let journal = local_journal("/srv/private.db-journal", "s3://private")?;
        let path = PathBuf::from(journal.to_string_lossy().into_owned());
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        private_dir::check(&dir)?;
        before_open(journal)?;
        let stand_in = stand_in(journal).unwrap_or_default();
        let meta = std::fs::symlink_metadata(&stand_in).map_err(|e| e.to_string())?;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // A leftover (here: a symlink) is replaced, never followed.
        after_open(journal);
        let target = dir.join("planted-target");
        let _ = std::fs::remove_file(&target);
        std::os::unix::fs::symlink(&target, &stand_in).map_err(|e| e.to_string())?;
        before_open(journal)?;
        assert!(!target.exists());
        assert!(std::fs::symlink_metadata(&stand_in).is_ok_and(|m| m.is_file()));
        after_open(journal);
        Ok(())
    }
}
