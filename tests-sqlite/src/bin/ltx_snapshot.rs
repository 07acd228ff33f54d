//! A writer process that makes one snapshot and reports its peak memory, for the test that
//! a snapshot of a database much larger than the compaction buffer stays within bounds:
//! opens the replica writable with `EXTRA` (the ladder's settings), commits one row (so it
//! is the replica's writer), waits for `PRAGMA ltx_compaction` to show a snapshot, and
//! prints `rss_kib <after the commit> hwm_kib <peak> report <the pragma's JSON>`.
//!
//!     ltx_snapshot URL EXTRA
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use ltxvfs_sqlite_tests::open_writer;
use std::time::{Duration, Instant};

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let conn = open_writer(&args[1], &args[2]).unwrap();
    conn.execute("CREATE TABLE IF NOT EXISTS marker(x)", [])
        .unwrap();
    conn.execute("INSERT INTO marker VALUES (1)", []).unwrap();
    let rss = status_kib("VmRSS:");
    let began = Instant::now();
    loop {
        let report: String = conn
            .query_row("PRAGMA ltx_compaction", [], |r| r.get(0))
            .unwrap();
        if !report.contains("\"snapshot\":null") || began.elapsed() > Duration::from_secs(120) {
            println!(
                "rss_kib {rss} hwm_kib {} report {report}",
                status_kib("VmHWM:")
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
