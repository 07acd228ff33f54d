//! A process that forks a replica with `ltx_fork` and prints the TXID it answers (or
//! `error <sentence>`), for the test that kills a fork midway.
//!
//!     ltx_fork SOURCE_URL TARGET_URL [TXID_OR_TIME]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    ltxvfs_sqlite_tests::trust(&conn);
    let at = args.get(3).cloned();
    let answer: rusqlite::Result<String> = conn.query_row(
        "SELECT ltx_fork(?1, ?2, ?3)",
        rusqlite::params![args[1], args[2], at],
        |r| r.get(0),
    );
    match answer {
        Ok(txid) => println!("forked {txid}"),
        Err(e) => println!("error {e}"),
    }
}
