//! A process holding many writable replicas at once, for the fleet tests (issue #23): opens
//! COUNT writers, the i-th at URL with `{}` replaced by `t<i>`, commits a table and a row in
//! each, keeps them open for SECONDS (their compaction passes run meanwhile), then prints
//! `threads <n>` (the process's threads, from /proc/self/task) and exits.
//!
//!     ltx_tenants URL COUNT SECONDS [EXTRA URI PARAMETERS]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use ltxvfs_sqlite_tests::open_writer;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, count) = (&args[1], args[2].parse::<u32>().unwrap());
    let seconds = args[3].parse::<f64>().unwrap();
    let extra = args.get(4).map_or("", String::as_str);
    let conns: Vec<_> = (0..count)
        .map(|i| {
            let conn = open_writer(&url.replace("{}", &format!("t{i}")), extra).unwrap();
            conn.execute_batch("CREATE TABLE IF NOT EXISTS t(x); INSERT INTO t VALUES (1);")
                .unwrap();
            conn
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let threads = std::fs::read_dir("/proc/self/task").unwrap().count();
    println!("threads {threads}");
    drop(conns);
}
