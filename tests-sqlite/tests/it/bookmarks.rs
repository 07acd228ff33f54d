//! Read-your-writes across processes (issue #24): a writer process commits and hands its
//! bookmark (`ltx_txid()`) to this process, a reader polling only every 10 s; after
//! `ltx_wait_txid(bookmark)` (or with `PRAGMA ltx_min_txid` / URI `min_txid=`) the reader's
//! next read sees the row at once. A bookmark never reached fails within the wait with a
//! sentence naming both TXIDs; a malformed one is an error.

use ltxvfs_sqlite_tests::{Target, WriteTarget, open_replica, trust};
use rusqlite::Connection;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `sql` in a writer process of its own (no litestream): its bookmark.
fn commit_elsewhere(url: &str, sql: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ltx_commit"))
        .args([url, sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bookmark = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(bookmark.len(), 16, "{bookmark:?}");
    bookmark
}

fn rows(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap()
}

fn wait(conn: &Connection, bookmark: &str, seconds: Option<f64>) -> rusqlite::Result<String> {
    match seconds {
        None => conn.query_row("SELECT ltx_wait_txid(?1)", [bookmark], |r| r.get(0)),
        Some(s) => conn.query_row(
            "SELECT ltx_wait_txid(?1, ?2)",
            rusqlite::params![bookmark, s],
            |r| r.get(0),
        ),
    }
}

fn reader_sees_the_writers_row_after_its_bookmark(target: Target) {
    let w = WriteTarget::new(&format!("bookmarks-{target:?}"), target);
    commit_elsewhere(&w.url, "CREATE TABLE t(x)");
    let reader = open_replica(&w.url, "&poll=10s&timeout=3s").unwrap();
    assert_eq!(rows(&reader), 0);

    // ltx_wait_txid: the next read sees the row, well before the next 10 s poll.
    let bookmark = commit_elsewhere(&w.url, "INSERT INTO t VALUES (1)");
    let began = Instant::now();
    let reached = wait(&reader, &bookmark, None).unwrap();
    assert!(reached >= bookmark, "{reached} < {bookmark}");
    assert_eq!(rows(&reader), 1);
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
    // A bookmark passed answers at once with where the replica is.
    assert_eq!(wait(&reader, "1", None).unwrap(), reached);

    // PRAGMA ltx_min_txid: the floor of the next read transactions.
    let bookmark = commit_elsewhere(&w.url, "INSERT INTO t VALUES (2)");
    let floor: String = reader
        .query_row(&format!("PRAGMA ltx_min_txid = '{bookmark}'"), [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(floor, bookmark);
    assert_eq!(rows(&reader), 2);

    // URI min_txid= on a new connection (the process's replica is still behind).
    let bookmark = commit_elsewhere(&w.url, "INSERT INTO t VALUES (3)");
    let other = open_replica(&w.url, &format!("&poll=10s&timeout=3s&min_txid={bookmark}")).unwrap();
    assert_eq!(rows(&other), 3);

    // A bookmark never reached: an error within the wait, naming both TXIDs.
    let future = format!("{:016x}", u64::from_str_radix(&bookmark, 16).unwrap() + 100);
    let began = Instant::now();
    let err = wait(&reader, &future, Some(0.5)).unwrap_err().to_string();
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(err.contains(&future) && err.contains(&bookmark), "{err}");
    assert!(err.contains("not reached within 0.5s"), "{err}");
    // On a connection the host did not trust, a wait is at most 2 s (README "Security").
    let began = Instant::now();
    assert!(wait(&reader, &future, Some(60.0)).is_err());
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_millis(2900),
        "{took:?}"
    );
    // On the host's own, the default wait is the replica's timeout (3 s here), never longer.
    trust(&reader);
    let began = Instant::now();
    assert!(wait(&reader, &future, Some(60.0)).is_err());
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // A floor never reached: the read fails, and says why.
    reader
        .query_row(&format!("PRAGMA ltx_min_txid = '{future}'"), [], |r| {
            r.get::<_, String>(0)
        })
        .unwrap();
    assert!(
        reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
            .is_err()
    );
    let why: String = reader
        .query_row("SELECT ltx_last_error()", [], |r| r.get(0))
        .unwrap_or_default();
    let pragma: String = reader
        .query_row("PRAGMA ltx_last_error", [], |r| r.get(0))
        .unwrap();
    assert!(
        pragma.contains("min_txid") && pragma.contains(&future),
        "{pragma} / {why}"
    );
    reader.execute_batch("PRAGMA ltx_min_txid = 0").unwrap();
    assert_eq!(rows(&reader), 3);
}

#[test]
fn bookmark_makes_the_next_read_see_another_process_commit_on_file() {
    reader_sees_the_writers_row_after_its_bookmark(Target::File);
}

#[test]
fn bookmark_makes_the_next_read_see_another_process_commit_on_s3() {
    reader_sees_the_writers_row_after_its_bookmark(Target::S3);
}

#[test]
fn malformed_bookmarks_are_errors() {
    let w = WriteTarget::new("bookmarks-malformed", Target::File);
    commit_elsewhere(&w.url, "CREATE TABLE t(x)");
    let reader = open_replica(&w.url, "&poll=10s").unwrap();
    for bad in ["xyz", "", "0", "12345678901234567", "0000000000000001 soon"] {
        let err = reader
            .query_row("SELECT ltx_wait_txid(?1)", [bad], |r| r.get::<_, String>(0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ltx_wait_txid"), "{bad:?}: {err}");
    }
    let err = wait(&reader, "1", Some(-1.0)).unwrap_err().to_string();
    assert!(err.contains("not a number of seconds"), "{err}");
    let err = reader
        .execute_batch("PRAGMA ltx_min_txid = 'nope'")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a TXID"), "{err}");
    let opened = open_replica(&w.url, "&min_txid=zz");
    assert!(opened.is_err());
}
