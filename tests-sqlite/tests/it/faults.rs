//! A faulty network between the VFS and a real S3 server (moto), and a GCS emulator
//! (fake-gcs-server): `tests/faults/fault_proxy.py` answers 10% of requests with 500/503,
//! resets, truncated or short bodies, or stalls past the timeout. Every query must give the
//! primary's answer or fail with `SQLITE_IOERR` and a sentence, in bounded time; once the
//! faults stop, the same connection answers right again.

use ltxvfs_sqlite_tests::{FaultProxy, Primary, Target, open_replica};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::time::{Duration, Instant};

const SCHEMA: &str = "CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT);
                      CREATE INDEX t_k ON t(k);";

/// The queries, by number, on a table of `rows` rows: point lookups, index ranges, ordered
/// runs, now and then a full scan.
fn query(n: u64, rows: u64) -> String {
    let keys = rows * 5 / 6;
    match n % 8 {
        0 | 3 | 6 => format!("SELECT v FROM t WHERE id = {}", 1 + n * 7919 % rows),
        2 | 5 => format!(
            "SELECT group_concat(id) FROM (SELECT id FROM t WHERE id > {} ORDER BY id LIMIT 50)",
            n * 13 % rows
        ),
        7 => "SELECT count(*) || ':' || sum(length(v)) || ':' || sum(k) FROM t".to_string(),
        _ => format!(
            "SELECT count(*) || ':' || coalesce(sum(id), 0) FROM t WHERE k BETWEEN {} AND {}",
            n * 31 % keys,
            n * 31 % keys + 400
        ),
    }
}

fn answer(conn: &Connection, sql: &str) -> rusqlite::Result<String> {
    conn.query_row(sql, [], |r| r.get::<_, Option<String>>(0))
        .map(Option::unwrap_or_default)
}

#[test]
fn ten_percent_faults_give_right_rows_or_ioerr_and_the_connection_recovers() {
    // LTXVFS_FAULT_SECONDS=N runs longer (make test: 25 s).
    run(Target::S3, 6, 25);
}

#[test]
fn ten_percent_faults_on_gcs_give_right_rows_or_ioerr_and_the_connection_recovers() {
    // Smaller and shorter: the same client code, behind another backend's requests and
    // error answers.
    run(Target::Gcs, 2, 5);
}

/// `batches` thousand rows, then faults for `default_seconds` (or LTXVFS_FAULT_SECONDS)
/// between the VFS and `target`.
fn run(target: Target, batches: u64, default_seconds: u64) {
    let (name, upstream, scheme) = match target {
        Target::S3 => ("faults", ltxvfs_sqlite_tests::s3_endpoint(), "s3://"),
        Target::Gcs => ("faults-gcs", ltxvfs_sqlite_tests::gcs_endpoint(), "gs://"),
        other => panic!("no fault test for {other:?}"),
    };
    let (rows, keys) = (batches * 1000, batches * 1000 * 5 / 6);
    let primary = Primary::start("0.5.17", name, SCHEMA, "30s", target);
    for batch in 0..batches {
        primary.commit(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
             INSERT INTO t(id, k, v) SELECT {batch} * 1000 + i, ({batch} * 1000 + i) * 37 % {keys},
                 printf('%0180d', ({batch} * 1000 + i) * 11) FROM n"
        ));
    }
    primary.commit("UPDATE t SET v = 'changed ' || id WHERE id % 97 = 0");
    primary.settle();
    let reference =
        Connection::open_with_flags(&primary.db_path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();

    let proxy = FaultProxy::start(&upstream);
    let url = primary.url().replace(&upstream, &proxy.endpoint());
    let conn = open_replica(&url, "&timeout=2s&cache_size=128KiB&poll=300ms").unwrap();
    // SQLite's own cache small too, so that queries keep reaching the store.
    conn.execute_batch("PRAGMA cache_size = 8").unwrap();
    assert_eq!(
        answer(&conn, &query(7, rows)).unwrap(),
        answer(&reference, &query(7, rows)).unwrap()
    );

    proxy.control(Some(r#"{"rate": 0.1}"#));
    let (mut right, mut ioerr, mut slowest) = (0u64, 0u64, Duration::ZERO);
    let started = Instant::now();
    let mut n = 0u64;
    let seconds = std::env::var("LTXVFS_FAULT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_seconds);
    while started.elapsed() < Duration::from_secs(seconds) {
        let sql = query(n, rows);
        let t = Instant::now();
        let got = answer(&conn, &sql);
        slowest = slowest.max(t.elapsed());
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "query {n} took {:?}",
            t.elapsed()
        );
        match got {
            Ok(answered) => {
                assert_eq!(
                    answered,
                    answer(&reference, &sql).unwrap(),
                    "wrong answer to {sql}"
                );
                right += 1;
            }
            Err(e) => {
                assert_eq!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::SystemIoFailure),
                    "{sql}: {e}"
                );
                let why: String = conn
                    .query_row("PRAGMA ltx_last_error", [], |r| r.get(0))
                    .unwrap();
                assert!(
                    why.starts_with(&format!("ltxvfs: replica {scheme}")),
                    "{why}"
                );
                ioerr += 1;
            }
        }
        n += 1;
    }
    let (requests, faults) = (proxy.count("requests"), proxy.count("faults"));
    eprintln!(
        "fault injection ({target:?}): {faults} faults in {requests} requests; {n} queries: {right} right, \
         {ioerr} SQLITE_IOERR, 0 wrong; slowest {slowest:?}"
    );
    // 20 in the 25 s of make test's S3 run; as many per second in a shorter one.
    let enough = (20 * seconds / 25).max(4);
    assert!(
        faults >= enough,
        "too few faults to mean anything: {faults}"
    );
    assert!(right >= n / 4, "{right} of {n} right");

    // Faults off: the same connection answers every kind of query right.
    proxy.control(Some(r#"{"rate": 0}"#));
    for m in n..n + 16 {
        let sql = query(m, rows);
        assert_eq!(
            answer(&conn, &sql).unwrap(),
            answer(&reference, &sql).unwrap(),
            "{sql}"
        );
    }
    drop(conn);
    drop(primary);
}
