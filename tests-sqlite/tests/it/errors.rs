//! A replica that cannot be read is an SQLite error with a sentence in `sqlite3_log` and
//! `PRAGMA ltx_last_error`: never a hang, a crash or an empty database.

use ltxvfs_sqlite_tests::{
    assert_cantopen, copy_fixture_replica, file_url, log_lines, open_replica, util,
};
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

#[test]
fn damaged_frames_are_corrupt_not_wrong_rows() {
    // Every frame's page number but page 1's is changed (SQLite reads page 1 to open): the
    // index still points at each frame, but what it holds is not the page asked for.
    let replica = copy_fixture_replica("0.5.15", "damaged-frames", |bytes| {
        let summary = ltxvfs::ltx::decode_file(bytes, |_, _| Ok(())).unwrap();
        for e in summary.index.entries().iter().filter(|e| e.pgno.get() > 1) {
            let at = e.offset as usize + 3;
            bytes[at] ^= 0x40;
        }
    });
    let conn = open_replica(&file_url(&replica), "").unwrap();
    let err = conn
        .query_row("SELECT count(*) FROM items", [], |r| r.get::<_, i64>(0))
        .unwrap_err();
    assert_eq!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt),
        "{err}"
    );
    let last: String = conn
        .pragma_query_value(None, "ltx_last_error", |r| r.get(0))
        .unwrap();
    assert!(
        last.contains(".ltx") && last.contains("expected page"),
        "{last}"
    );
}
