//! A writer process for the write-mode race tests: commits `count` transactions to a
//! replica through ltxvfs (`write=1`), each inserting (`writer`, seq) as (tag, n) into table t and bumping a shared
//! counter row, retrying a transaction whose COMMIT was refused. Prints one line per
//! attempt: `ok <seq>` (acknowledged), `busy <seq> <extended code>` or `ioerr <seq> <code>`.
//!
//!     ltx_writer URL WRITER COUNT [EXTRA URI PARAMETERS, e.g. &sync=200ms&buffer=PATH]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use ltxvfs_sqlite_tests::open_writer;
use std::io::Write;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, writer, count) = (&args[1], &args[2], args[3].parse::<u32>().unwrap());
    let extra = args.get(4).map_or("", String::as_str);
    let conn = match open_writer(url, &format!("&poll=100ms{extra}")) {
        Ok(conn) => conn,
        Err(e) => {
            // Why, as ltxvfs told sqlite3_log.
            eprintln!("{e}: {:?}", ltxvfs_sqlite_tests::log_lines(""));
            std::process::exit(2);
        }
    };
    let mut out = std::io::stdout().lock();
    let mut seq = 0;
    let mut attempts = 0u64;
    while seq < count {
        attempts += 1;
        let result = conn.execute_batch(&format!(
            "BEGIN;
             INSERT INTO t(tag, n) VALUES ('{writer}', {seq});
             UPDATE counter SET n = n + 1;
             COMMIT;"
        ));
        match result {
            Ok(()) => {
                writeln!(out, "ok {seq}").unwrap();
                seq += 1;
            }
            Err(rusqlite::Error::SqliteFailure(e, _)) => {
                let kind = match e.code {
                    rusqlite::ErrorCode::DatabaseBusy => "busy",
                    _ => "ioerr",
                };
                writeln!(out, "{kind} {seq} {}", e.extended_code).unwrap();
                // The transaction may still be open (a refused COMMIT leaves it so).
                let _ = conn.execute_batch("ROLLBACK");
                std::thread::sleep(Duration::from_millis(attempts % 7));
            }
            Err(e) => panic!("{e}"),
        }
        out.flush().unwrap();
    }
}
