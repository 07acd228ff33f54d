//! A writer process that holds one write transaction open: opens the replica through
//! ltxvfs (`write=1`), runs `BEGIN IMMEDIATE` and an INSERT of ('held', 0) into table t,
//! prints `ready`, waits for a line on stdin, then COMMITs and prints `ok` or
//! `err <extended code>`. For the lease tests (a holder paused mid-transaction).
//!
//!     ltx_held_txn URL [EXTRA URI PARAMETERS, e.g. &lease_ttl=1s]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use ltxvfs_sqlite_tests::open_writer;
use std::io::{BufRead, Write};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let extra = args.get(2).map_or("", String::as_str);
    let conn = open_writer(&args[1], &format!("&poll=0{extra}")).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES ('held', 0);")
        .unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    match conn.execute_batch("COMMIT") {
        Ok(()) => println!("ok"),
        Err(rusqlite::Error::SqliteFailure(e, _)) => println!("err {}", e.extended_code),
        Err(e) => println!("err {e}"),
    }
}
