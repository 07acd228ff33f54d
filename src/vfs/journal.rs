//! Where the rollback journal of a database opened through `ltx` lives: in a local directory
//! of the default VFS (the system's temp directory, `ltxvfs-journals/`), not beside the
//! database's name, which is only a label here (there is no local database file).
//!
//! A journal matters only inside the process that writes it: the replica itself is changed
//! by whole LTX files or not at all, so a journal left by a crash is never played back (the
//! VFS tells SQLite there is none), and each process names its journals apart. While a
//! journal is opened, an empty file named as its database stands beside it (the default
//! VFS copies its mode).

use std::collections::HashMap;
use std::ffi::CString;
use std::path::PathBuf;
use std::sync::Mutex;

/// The local path of the journal SQLite names `name` for a database of `replica` (the
/// same label may name databases of several replicas), as a C string that lives as long as
/// the process (the default VFS keeps the pointer it is given for the file's life). One per
/// distinct name and replica, so it does not grow with the number of transactions.
pub(crate) fn local_journal(name: &str, replica: &str) -> Option<&'static std::ffi::CStr> {
    type Names = HashMap<(String, String), &'static CString>;
    static NAMES: Mutex<Option<Names>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let map = names.get_or_insert_with(HashMap::new);
    let key = (name.to_owned(), replica.to_owned());
    if let Some(found) = map.get(&key) {
        return Some(found.as_c_str());
    }
    let dir = std::env::temp_dir().join("ltxvfs-journals");
    std::fs::create_dir_all(&dir).ok()?;
    let path = journal_path(&dir, name, replica, std::process::id());
    let leaked: &'static CString = Box::leak(Box::new(
        CString::new(path.to_string_lossy().into_owned()).ok()?,
    ));
    map.insert(key, leaked);
    Some(leaked.as_c_str())
}

/// The database name the default VFS derives from `journal` (dropping `-journal`), whose
/// mode it copies when it creates the journal.
fn stand_in(journal: &std::ffi::CStr) -> Option<PathBuf> {
    let path = journal.to_str().ok()?;
    Some(PathBuf::from(path.strip_suffix("-journal")?))
}

/// Before the default VFS opens `journal`: an empty file stands in for its database.
pub(crate) fn before_open(journal: &std::ffi::CStr) {
    if let Some(path) = stand_in(journal) {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
    }
}

/// After the open: the stand-in goes, so that only journals in use are left here.
pub(crate) fn after_open(journal: &std::ffi::CStr) {
    if let Some(path) = stand_in(journal) {
        let _ = std::fs::remove_file(path);
    }
}

/// `<dir>/<pid>-<hash of name and replica>-<file name>`: apart per process, database name
/// and replica.
fn journal_path(dir: &std::path::Path, name: &str, replica: &str, pid: u32) -> PathBuf {
    let hash = crate::ltx::crc64(format!("{name}\0{replica}").as_bytes());
    let base = std::path::Path::new(name)
        .file_name()
        .map_or_else(|| "db-journal".into(), |n| n.to_string_lossy());
    dir.join(format!("{pid}-{hash:016x}-{base}"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
