//! A writer process for the bookmark tests: runs SQL through ltxvfs in write mode
//! (`write=1`, no litestream) and prints the bookmark of its last COMMIT, `ltx_txid()`.
//!
//!     ltx_commit URL SQL
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use ltxvfs_sqlite_tests::open_writer;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, sql) = (&args[1], &args[2]);
    let conn = open_writer(url, "").unwrap();
    conn.execute_batch(sql).unwrap();
    let bookmark: String = conn
        .query_row("SELECT ltx_txid()", [], |r| r.get(0))
        .unwrap();
    println!("{bookmark}");
}
