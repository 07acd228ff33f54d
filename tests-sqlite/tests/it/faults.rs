//! A faulty network between the VFS and a real S3 server (moto): `tests/faults/fault_proxy.py`
//! answers 10% of requests with 500/503, resets, truncated or short bodies, or stalls past the
//! timeout. Every query must give the primary's answer or fail with `SQLITE_IOERR` and a
//! sentence, in bounded time; once the faults stop, the same connection answers right again.

use ltxvfs_sqlite_tests::{FaultProxy, Primary, Target, open_replica};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::time::{Duration, Instant};

const SCHEMA: &str = "CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT);
                      CREATE INDEX t_k ON t(k);";

/// The queries, by number: point lookups, index ranges, ordered runs, now and then a full
/// scan.
fn query(n: u64) -> String {
    match n % 8 {
        0 | 3 | 6 => format!("SELECT v FROM t WHERE id = {}", 1 + n * 7919 % 6000),
        2 | 5 => format!(
            "SELECT group_concat(id) FROM (SELECT id FROM t WHERE id > {} ORDER BY id LIMIT 50)",
            n * 13 % 6000
        ),
        7 => "SELECT count(*) || ':' || sum(length(v)) || ':' || sum(k) FROM t".to_string(),
        _ => format!(
            "SELECT count(*) || ':' || coalesce(sum(id), 0) FROM t WHERE k BETWEEN {} AND {}",
            n * 31 % 5000,
            n * 31 % 5000 + 400
        ),
    }
}

fn answer(conn: &Connection, sql: &str) -> rusqlite::Result<String> {
    conn.query_row(sql, [], |r| r.get::<_, Option<String>>(0))
        .map(Option::unwrap_or_default)
}

#[test]
fn ten_percent_faults_give_right_rows_or_ioerr_and_the_connection_recovers() {
    let primary = Primary::start("0.5.17", "faults", SCHEMA, "30s", Target::S3);
    for batch in 0..6 {
        primary.commit(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
             INSERT INTO t(id, k, v) SELECT {batch} * 1000 + i, ({batch} * 1000 + i) * 37 % 5000,
                 printf('%0180d', ({batch} * 1000 + i) * 11) FROM n"
        ));
    }
    primary.commit("UPDATE t SET v = 'changed ' || id WHERE id % 97 = 0");
    primary.settle();
    let reference =
        Connection::open_with_flags(&primary.db_path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();

    let upstream = ltxvfs_sqlite_tests::s3_endpoint();
    let proxy = FaultProxy::start(&upstream);
    let url = primary.url().replace(&upstream, &proxy.endpoint());
    let conn = open_replica(&url, "&timeout=2s&cache_size=128KiB&poll=300ms").unwrap();
    // SQLite's own cache small too, so that queries keep reaching the store.
    conn.execute_batch("PRAGMA cache_size = 8").unwrap();
    assert_eq!(
        answer(&conn, &query(7)).unwrap(),
        answer(&reference, &query(7)).unwrap()
    );

    proxy.control(Some(r#"{"rate": 0.1}"#));
    let (mut right, mut ioerr, mut slowest) = (0u64, 0u64, Duration::ZERO);
    let started = Instant::now();
    let mut n = 0u64;
    // LTXVFS_FAULT_SECONDS=N runs longer (make test: 25 s).
    let seconds = std::env::var("LTXVFS_FAULT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25);
    while started.elapsed() < Duration::from_secs(seconds) {
        let sql = query(n);
        let t = Instant::now();
        let got = answer(&conn, &sql);
        slowest = slowest.max(t.elapsed());
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "query {n} took {:?}",
            t.elapsed()
        );
        match got {
            Ok(rows) => {
                assert_eq!(
                    rows,
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
                assert!(why.starts_with("ltxvfs: replica s3://"), "{why}");
                ioerr += 1;
            }
        }
        n += 1;
    }
    let (requests, faults) = (proxy.count("requests"), proxy.count("faults"));
    eprintln!(
        "fault injection: {faults} faults in {requests} requests; {n} queries: {right} right, \
         {ioerr} SQLITE_IOERR, 0 wrong; slowest {slowest:?}"
    );
    assert!(faults >= 20, "too few faults to mean anything: {faults}");
    assert!(right >= n / 4, "{right} of {n} right");

    // Faults off: the same connection answers every kind of query right.
    proxy.control(Some(r#"{"rate": 0}"#));
    for m in n..n + 16 {
        let sql = query(m);
        assert_eq!(
            answer(&conn, &sql).unwrap(),
            answer(&reference, &sql).unwrap(),
            "{sql}"
        );
    }
    drop(conn);
    drop(primary);
}
