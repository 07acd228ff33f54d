//! A replica that cannot be read is an SQLite error with a sentence in `sqlite3_log` and
//! `PRAGMA ltx_last_error`: never a hang, a crash or an empty database.

use ltxvfs_sqlite_tests::{assert_cantopen, file_url, log_lines, util};
use rusqlite::ErrorCode;

#[test]
fn missing_replica_directory_cannot_open() {
    let dir = util::scratch_dir("missing-replica");
    assert_cantopen(&file_url(&dir.join("nope")), "", "nope is not a directory");
}

#[test]
fn empty_replica_cannot_open() {
    let dir = util::scratch_dir("empty-replica");
    assert_cantopen(&file_url(&dir), "", "no LTX files found");
}

#[test]
fn malformed_settings_cannot_open() {
    assert_cantopen("no-scheme-here", "", "has no scheme");
    assert_cantopen("ftp://host/x", "", "scheme \"ftp\" is not supported");
    assert_cantopen("file://relative/x", "", "needs an absolute path");
    let ok = file_url(&util::repo_dir().join("tests/fixtures/litestream-0.5.17/replica"));
    assert_cantopen(&ok, "&cache_size=lots", "URI parameter cache_size");
}

#[test]
fn no_replica_url_cannot_open() {
    // Neither URI parameter nor environment (the test process sets neither).
    ltxvfs_sqlite_tests::register();
    let err = rusqlite::Connection::open_with_flags(
        "file:app.db?vfs=ltx",
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
    .unwrap_err();
    assert_eq!(err.sqlite_error_code(), Some(ErrorCode::CannotOpen));
    assert!(!log_lines("no replica: open file:NAME").is_empty());
}
