//! Issue #12: a database small next to the memory cache is fetched whole after the open
//! (`warm=auto`), reads stay right while that goes on, and then never leave memory; the
//! budget holds, and `warm=off` turns it off.

use ltxvfs_sqlite_tests::{
    FaultProxy, Primary, Target, file_url, open_replica, s3_endpoint, stat, stats, util, wait_until,
};
use rusqlite::{Connection, OpenFlags};

const QUERIES: [&str; 4] = [
    "SELECT count(*), sum(length(v)) FROM t",
    "SELECT group_concat(k) FROM (SELECT k FROM t ORDER BY k LIMIT 5 OFFSET 3000)",
    "SELECT sum(id) FROM t WHERE k BETWEEN '00001000' AND '00002000'",
    "SELECT v FROM t WHERE id = 3777",
];

fn primary(name: &str, target: Target) -> Primary {
    let primary = Primary::start(
        "0.5.17",
        name,
        "CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v TEXT); CREATE INDEX t_k ON t(k);",
        "1m",
        target,
    );
    primary.commit(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 6000)
         INSERT INTO t SELECT i, printf('%08d', i * 7919 % 6000), printf('%0300d', i) FROM n",
    );
    primary.settle();
    primary
}

fn answers(conn: &Connection) -> Vec<String> {
    QUERIES
        .iter()
        .map(|q| {
            conn.query_row(q, [], |r| {
                r.get::<_, String>(0)
                    .or_else(|_| r.get::<_, i64>(0).map(|n| n.to_string()))
            })
            .unwrap()
        })
        .collect()
}

fn warm_state(conn: &Connection) -> String {
    let s = stats(conn);
    let at = s.find("\"warm\":\"").unwrap() + 8;
    s[at..].split('"').next().unwrap().to_owned()
}

fn reference(primary: &Primary) -> Vec<String> {
    answers(
        &Connection::open_with_flags(&primary.db_path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap(),
    )
}

#[test]
fn a_small_database_is_fetched_whole_then_read_from_memory_only() {
    let primary = primary("warm-auto", Target::File);
    let conn = open_replica(&primary.url(), "&poll=0").unwrap();
    wait_until("the warm-up to finish", || warm_state(&conn) == "done");
    assert!(stat(&conn, "warm_pages") > 100, "{}", stats(&conn));
    let (gets, misses) = (stat(&conn, "get_requests"), stat(&conn, "cache_misses"));
    assert_eq!(answers(&conn), reference(&primary));
    assert_eq!(stat(&conn, "get_requests"), gets, "{}", stats(&conn));
    assert_eq!(stat(&conn, "cache_misses"), misses, "{}", stats(&conn));
}

#[test]
fn reads_during_the_warm_up_are_right() {
    let primary = primary("warm-during", Target::S3);
    let upstream = s3_endpoint();
    let proxy = FaultProxy::start(&upstream);
    // Slow answers: the warm-up is still under way while the queries run.
    proxy.control(Some(r#"{"latency_ms": 60, "jitter_ms": 0}"#));
    let url = primary.url().replace(&upstream, &proxy.endpoint());
    let conn = open_replica(&url, "&poll=0&warm=on").unwrap();
    assert_eq!(warm_state(&conn), "running");
    let want = reference(&primary);
    for _ in 0..3 {
        assert_eq!(answers(&conn), want);
    }
    wait_until("the warm-up to finish", || warm_state(&conn) == "done");
    assert_eq!(answers(&conn), want);
}

#[test]
fn the_warm_up_keeps_to_the_cache_budget_and_is_off_when_asked() {
    let primary = primary("warm-budget", Target::File);
    // Each open below needs a replica of its own: copies of the same files.
    let copy = |name: &str| {
        let dst = util::scratch_dir(name).join("replica");
        let status = std::process::Command::new("cp")
            .arg("-r")
            .arg(primary.dir.join("replica"))
            .arg(&dst)
            .status()
            .unwrap();
        assert!(status.success());
        file_url(&dst)
    };
    let want = reference(&primary);
    // ~2.6 MB of pages: more than half of 4 MiB, so `auto` leaves it.
    let auto = open_replica(&copy("warm-budget-auto"), "&poll=0&cache_size=4MiB").unwrap();
    assert_eq!(warm_state(&auto), "off", "{}", stats(&auto));
    let off = open_replica(&copy("warm-budget-off"), "&poll=0&warm=off").unwrap();
    assert_eq!(warm_state(&off), "off");
    assert_eq!(answers(&off), want);
    // Forced on with a cache smaller than the database: done, and the cache within budget.
    let on = open_replica(&copy("warm-budget-on"), "&poll=0&cache_size=1MiB&warm=on").unwrap();
    wait_until("the warm-up to finish", || warm_state(&on) == "done");
    assert!(stat(&on, "cache_bytes") <= 1 << 20, "{}", stats(&on));
    assert_eq!(answers(&on), want);
}
