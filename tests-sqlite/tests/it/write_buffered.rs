//! Write mode with `sync=<duration>` (issue #14): COMMIT returns once the transaction is in
//! the buffer file; what is buffered ships as one LTX file per interval; nothing acknowledged
//! is dropped silently, even when another writer gets there first.

use ltxvfs_sqlite_tests::{
    Target, WriteTarget, create_writer_tables, log_lines, open_replica, open_writer,
};
use rusqlite::{Connection, ErrorCode};
use std::path::Path;
use std::time::{Duration, Instant};

fn buffered(buffer: &Path, interval: &str) -> String {
    format!("&sync={interval}&buffer={}", buffer.display())
}

fn count(c: &Connection) -> i64 {
    c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap()
}

fn commit_rows(w: &Connection, tag: &str, rows: std::ops::Range<i64>) {
    for n in rows {
        w.execute_batch(&format!(
            "BEGIN; INSERT INTO t VALUES ('{tag}', {n}); UPDATE counter SET n = n + 1; COMMIT;"
        ))
        .unwrap();
    }
}

/// Commits return without a round trip, a reader in the same process sees each at once,
/// and the interval turns many commits into few files, which `litestream restore` reads.
fn commits_batch_per_interval(name: &str, target: Target) {
    let t = WriteTarget::new(name, target);
    create_writer_tables(&t.url, "");
    let buffer = t.dir.join("w.buffer");
    let w = open_writer(&t.url, &buffered(&buffer, "400ms")).unwrap();
    let r = open_replica(&t.url, "").unwrap();
    let started = Instant::now();
    for n in 0..40 {
        commit_rows(&w, "b", n..n + 1);
        assert_eq!(count(&r), n + 1, "the reader sees commit {n} at once");
    }
    let took = started.elapsed();
    let stats: String = w.query_row("PRAGMA ltx_stats", [], |x| x.get(0)).unwrap();
    assert!(stats.contains("\"pending_commits\":"), "{stats}");
    std::thread::sleep(Duration::from_millis(1200));
    let files = t.level0_txids().len();
    assert!(
        (2..=1 + 2 + took.as_millis() as usize / 400).contains(&files),
        "{files} files for 40 commits in {took:?}"
    );
    let stats: String = w.query_row("PRAGMA ltx_stats", [], |x| x.get(0)).unwrap();
    assert!(stats.contains("\"pending_commits\":0"), "{stats}");
    // A commit after the last upload ships when the writer closes.
    commit_rows(&w, "last", 0..1);
    drop((w, r));
    let rows = t.restored_rows();
    assert_eq!(rows.len(), 41);
    assert!(rows.values().all(|&n| n == 1));
    let txids = t.level0_txids();
    assert_eq!(txids, (1..=txids.len() as u64).collect::<Vec<u64>>());
}

#[test]
fn buffered_commits_on_file_ship_per_interval() {
    commits_batch_per_interval("write-buffered-file", Target::File);
}

#[test]
fn buffered_commits_on_s3_ship_per_interval() {
    commits_batch_per_interval("write-buffered-s3", Target::S3);
}

/// Another process stores the next TXID while commits wait in the buffer: the upload loses,
/// later commits fail naming the buffer, `ltx_last_error` says what happened, the next open
/// refuses to drop them silently, and with the buffer moved away the replica opens with
/// the winner's commits.
#[test]
fn a_buffer_beaten_by_another_writer_is_kept_and_named() {
    let t = WriteTarget::new("write-buffer-beaten", Target::File);
    create_writer_tables(&t.url, "");
    let buffer = t.dir.join("w.buffer");
    let w = open_writer(&t.url, &buffered(&buffer, "5s")).unwrap();
    let opened = Instant::now();
    commit_rows(&w, "mine", 0..3);
    let other = std::process::Command::new(env!("CARGO_BIN_EXE_ltx_writer"))
        .args([&t.url, "theirs", "2"])
        .output()
        .unwrap();
    assert!(other.status.success(), "{other:?}");
    assert!(
        opened.elapsed() < Duration::from_millis(4500),
        "the other writer finished before the upload"
    );
    std::thread::sleep(Duration::from_secs(5) + Duration::from_millis(800) - opened.elapsed());
    let err = w
        .execute_batch("BEGIN; INSERT INTO t VALUES ('mine', 9); COMMIT;")
        .unwrap_err();
    assert_eq!(
        err.sqlite_error_code(),
        Some(ErrorCode::SystemIoFailure),
        "{err}"
    );
    let _ = w.execute_batch("ROLLBACK");
    let named = buffer.display().to_string();
    let last: String = w
        .query_row("PRAGMA ltx_last_error", [], |x| x.get(0))
        .unwrap();
    assert!(
        last.contains(&named) && last.contains("another writer"),
        "{last}"
    );
    drop(w);

    let err = open_writer(&t.url, &buffered(&buffer, "3s")).unwrap_err();
    assert_eq!(
        err.sqlite_error_code(),
        Some(ErrorCode::CannotOpen),
        "{err}"
    );
    assert!(
        log_lines(&named)
            .iter()
            .any(|l| l.contains("move that file away")),
        "{:?}",
        log_lines("")
    );
    std::fs::rename(&buffer, t.dir.join("w.buffer.kept")).unwrap();
    let w = open_writer(&t.url, &buffered(&buffer, "3s")).unwrap();
    let theirs: i64 = w
        .query_row("SELECT count(*) FROM t WHERE tag = 'theirs'", [], |x| {
            x.get(0)
        })
        .unwrap();
    assert_eq!((theirs, count(&w)), (2, 2));
}

/// Two processes cannot share one buffer: the second one's open says so, naming it.
#[test]
fn a_buffer_in_use_by_another_process_is_refused() {
    let t = WriteTarget::new("write-buffer-locked", Target::File);
    create_writer_tables(&t.url, "");
    let buffer = t.dir.join("w.buffer");
    let extra = buffered(&buffer, "1s");
    let w = open_writer(&t.url, &extra).unwrap();
    commit_rows(&w, "mine", 0..1);
    let other = std::process::Command::new(env!("CARGO_BIN_EXE_ltx_writer"))
        .args([&t.url, "theirs", "1", &extra])
        .output()
        .unwrap();
    assert!(!other.status.success());
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(
        stderr.contains(&buffer.display().to_string()) && stderr.contains("in use"),
        "{stderr}"
    );
    drop(w);
    assert_eq!(t.restored_rows().len(), 1);
}

/// Uploads go up while transactions are open: they leave the database as it was, so no
/// transaction of the only writer is ever refused for them.
#[test]
fn an_upload_under_an_open_transaction_refuses_nothing() {
    let t = WriteTarget::new("write-buffer-upload-under", Target::File);
    create_writer_tables(&t.url, "");
    let w = open_writer(&t.url, &buffered(&t.dir.join("w.buffer"), "20ms")).unwrap();
    for n in 0..100 {
        w.execute_batch(&format!("BEGIN; INSERT INTO t VALUES ('open', {n});"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(4));
        w.execute_batch("UPDATE counter SET n = n + 1; COMMIT;")
            .unwrap();
    }
    drop(w);
    assert!(t.level0_txids().len() > 5, "uploads went up meanwhile");
    assert_eq!(t.restored_rows().len(), 100);
}

/// A reader whose transaction began before an upload, and whose pages' files retention has
/// removed since, plans its state again: that must not take the place of the uploaded one
/// (the writer would go back a TXID, and its next upload would collide with its own).
#[test]
fn a_replan_from_before_an_upload_does_not_rewind_the_writer() {
    let t = WriteTarget::new("write-buffer-replan", Target::File);
    let extra = format!(
        "{}&compaction=300ms&l0_retention=300ms&cache_size=256KiB",
        buffered(&t.dir.join("w.buffer"), "500ms")
    );
    let w = open_writer(&t.url, &extra).unwrap();
    w.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
         INSERT INTO t(v) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n
           WHERE i < 1500) SELECT randomblob(3000) FROM n;",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    w.execute("INSERT INTO t(v) VALUES (randomblob(10))", [])
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    w.execute("INSERT INTO t(v) VALUES ('local-1')", [])
        .unwrap();
    let r = open_writer(&t.url, &extra).unwrap();
    r.execute_batch("BEGIN").unwrap();
    let last: String = r
        .query_row(
            "SELECT v FROM t WHERE id = (SELECT max(id) FROM t)",
            [],
            |x| x.get(0),
        )
        .unwrap();
    assert_eq!(last, "local-1");
    std::thread::sleep(Duration::from_millis(1500));
    let before: String = w.query_row("PRAGMA ltx_txid", [], |x| x.get(0)).unwrap();
    let (n, _): (i64, i64) = r
        .query_row("SELECT count(*), sum(length(v)) FROM t", [], |x| {
            Ok((x.get(0)?, x.get(1)?))
        })
        .unwrap();
    assert_eq!(n, 1502);
    r.execute_batch("COMMIT").unwrap();
    let after: String = w.query_row("PRAGMA ltx_txid", [], |x| x.get(0)).unwrap();
    assert!(
        after >= before,
        "the writer went from TXID {before} back to {after}"
    );
    w.execute("INSERT INTO t(v) VALUES ('local-2')", [])
        .unwrap();
    drop((w, r));
    let restored = t.restore();
    assert!(!restored.is_empty());
    let c = Connection::open(t.dir.join("restored.db")).unwrap();
    let mine: i64 = c
        .query_row(
            "SELECT count(*) FROM t WHERE v IN ('local-1', 'local-2')",
            [],
            |x| x.get(0),
        )
        .unwrap();
    assert_eq!(mine, 2);
}
