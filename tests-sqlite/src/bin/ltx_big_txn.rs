//! A writer process for the large-transaction tests and bench: one transaction of MIB MiB
//! (rows of `big_txn::ROW` incompressible bytes into table big, tagged TAG) through ltxvfs
//! in write mode, its peak memory measured from just before it (VmHWM, reset by
//! /proc/self/clear_refs). With GATE, it writes every row, prints `ready` and waits for the
//! file GATE to exist before its COMMIT (so two processes commit at once). Prints
//! `ok`, `busy <extended code>` or `error <code> <message>`, then `rss_before <bytes>`,
//! `peak_over <bytes>` (peak RSS over the RSS before the transaction) and `commit_ms <ms>`.
//!
//!     ltx_big_txn URL TAG MIB EXTRA_URI_PARAMETERS [GATE]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use ltxvfs_sqlite_tests::big_txn::{ROW, row_bytes};
use ltxvfs_sqlite_tests::open_writer;
use std::path::Path;
use std::time::{Duration, Instant};

fn status(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// The transaction's rows are all there, and a few read whole are as written.
fn check(conn: &rusqlite::Connection, tag: &str, first: i64, rows: i64) {
    let n: i64 = conn
        .query_row("SELECT count(*) FROM big WHERE tag = ?1", [tag], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(n, rows);
    for id in [first, first + rows / 2, first + rows - 1] {
        let v: Vec<u8> = conn
            .query_row("SELECT v FROM big WHERE id = ?1", [id], |r| r.get(0))
            .unwrap();
        assert!(v == row_bytes(tag, id, ROW), "row {id}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, tag, mib, extra) = (
        &args[1],
        &args[2],
        args[3].parse::<usize>().unwrap(),
        &args[4],
    );
    let gate = args.get(5).map(Path::new);
    let conn = open_writer(url, extra).unwrap();
    conn.execute_batch("CREATE TABLE IF NOT EXISTS big(id INTEGER PRIMARY KEY, tag TEXT, v BLOB)")
        .unwrap();
    let rows = (mib << 20) / ROW;
    // After the rows already there (another writer's, in a test that runs two).
    let first: i64 = conn
        .query_row("SELECT coalesce(max(id), 0) + 1 FROM big", [], |r| r.get(0))
        .unwrap();
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status("VmRSS");
    conn.execute_batch("BEGIN").unwrap();
    {
        let mut insert = conn
            .prepare("INSERT INTO big(id, tag, v) VALUES (?1, ?2, ?3)")
            .unwrap();
        for id in first..first + rows as i64 {
            insert
                .execute(rusqlite::params![id, tag, row_bytes(tag, id, ROW)])
                .unwrap();
        }
    }
    if rows > 0 {
        // The transaction reads its own pages, most of them spilled to disk by now.
        check(&conn, tag, first, rows as i64);
        println!("verified");
    }
    if let Some(gate) = gate {
        println!("ready");
        while !gate.exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let began = Instant::now();
    match conn.execute_batch("COMMIT") {
        Ok(()) => {
            println!("ok");
            if rows > 0 {
                // After the COMMIT: from the cache, or from the file in the store.
                check(&conn, tag, first, rows as i64);
                println!("read_back");
            }
        }
        Err(rusqlite::Error::SqliteFailure(e, msg)) => {
            let _ = conn.execute_batch("ROLLBACK");
            match e.code {
                rusqlite::ErrorCode::DatabaseBusy => println!("busy {}", e.extended_code),
                _ => println!("error {} {}", e.extended_code, msg.unwrap_or_default()),
            }
        }
        Err(e) => println!("error 0 {e}"),
    }
    let took = began.elapsed().as_millis();
    println!("rss_before {before}");
    println!("peak_over {}", status("VmHWM").saturating_sub(before));
    println!("commit_ms {took}");
    let stats: String = conn
        .query_row("PRAGMA ltx_stats", [], |r| r.get(0))
        .unwrap();
    println!("stats {stats}");
}
