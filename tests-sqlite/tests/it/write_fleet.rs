//! Write mode at fleet scale (issue #23): writable replicas cost no thread each and make no
//! requests while idle.

use ltxvfs_sqlite_tests::{FaultProxy, Target, WriteTarget, open_writer, s3_endpoint, wait_until};
use rusqlite::Connection;
use std::time::{Duration, Instant};

/// A short ladder, so that every deadline of it passes within seconds.
const SHORT: &str =
    "&compaction=1s,2s&snapshot_interval=1s&l0_retention=1s&retention=2s&poll=200ms&idle=1s";

fn compaction(conn: &Connection) -> String {
    conn.query_row("PRAGMA ltx_compaction", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn an_idle_writable_replica_makes_no_requests() {
    let t = WriteTarget::new("fleet-idle", Target::S3);
    let upstream = s3_endpoint();
    let proxy = FaultProxy::start(&upstream);
    let url = t.url.replace(&upstream, &proxy.endpoint());
    let conn = open_writer(&url, SHORT).unwrap();
    conn.execute_batch("CREATE TABLE t(x)").unwrap();
    for i in 0..20 {
        conn.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
    }
    let requests = |during: Duration| {
        let before = proxy.count("requests");
        std::thread::sleep(during);
        proxy.count("requests") - before
    };
    // The ladder settles: level 1 and 2 take the commits, a snapshot is made, retention
    // removes what they cover; then nothing is due until the next commit.
    let began = Instant::now();
    wait_until("the writer to settle", || {
        requests(Duration::from_secs(3)) == 0
    });
    let settled = compaction(&conn);
    assert!(
        settled.contains("\"level\":2,\"interval\":\"2s\",\"last\":{"),
        "{settled}"
    );
    assert!(settled.contains("\"snapshot\":{"), "{settled}");
    assert!(!settled.contains("\"deleted\":0"), "{settled}");
    eprintln!("settled in {:?}: {settled}", began.elapsed());
    // 30 s: every interval, deadline and retention age above has passed many times over.
    assert_eq!(requests(Duration::from_secs(30)), 0, "idle: no requests");
    // It wakes on the next commit, and the ladder takes it.
    conn.execute("INSERT INTO t VALUES (20)", []).unwrap();
    wait_until("level 1 to take the new commit", || {
        compaction(&conn) != settled
    });
    let n: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 21);
}

fn threads_with(url: &str, count: u32) -> usize {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ltx_tenants"))
        .args([url, &count.to_string(), "4", SHORT])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8_lossy(&out.stdout);
    out.trim()
        .strip_prefix("threads ")
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn threads_do_not_grow_with_the_writable_replicas_open() {
    // On S3: a file:// store does its IO on the runtime's blocking pool, which would
    // blur what is counted here.
    let t = WriteTarget::new("fleet-threads", Target::S3);
    let url = t.url.replacen("/app.db?", "/{}?", 1);
    let one = threads_with(&url, 1);
    let hundred = threads_with(&url, 100);
    eprintln!("threads: 1 writable replica {one}, 100: {hundred}");
    // The runtime's workers and a blocking pool bounded by the background budgets, not a
    // thread per replica (it was one compaction thread each).
    assert!(
        hundred <= one + 6 && hundred <= 32,
        "1: {one}, 100: {hundred}"
    );
}

/// Commits `n` small transactions on `conn`; their latencies, sorted.
fn commit_latencies(conn: &Connection, n: usize) -> Vec<Duration> {
    let mut took: Vec<Duration> = (0..n)
        .map(|i| {
            let began = Instant::now();
            conn.execute("INSERT INTO t(v) VALUES (?1)", [format!("row {i}")])
                .unwrap();
            let took = began.elapsed();
            std::thread::sleep(Duration::from_millis(50));
            took
        })
        .collect();
    took.sort();
    took
}

#[test]
fn a_commit_does_not_wait_behind_other_tenants_compacting() {
    let t = WriteTarget::new("fleet-busy", Target::S3);
    let upstream = s3_endpoint();
    let proxy = FaultProxy::start(&upstream);
    let url = t.url.replace(&upstream, &proxy.endpoint());
    let tenant = |i: usize| url.replacen("/app.db?", &format!("/t{i}?"), 1);
    // Ladders that always have work: every 200 ms a level-1 pass, snapshots of ~2 MiB.
    let busy = "&compaction=200ms,400ms&snapshot_interval=300ms&l0_retention=300ms&retention=1s";
    let others: Vec<Connection> = (1..=12)
        .map(|i| {
            let c = open_writer(&tenant(i), busy).unwrap();
            c.execute_batch(
                "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
                 INSERT INTO t(v) SELECT randomblob(4000) FROM n;",
            )
            .unwrap();
            c
        })
        .collect();
    let me = open_writer(&tenant(0), "&compaction=off").unwrap();
    me.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    let alone = commit_latencies(&me, 20);
    // The others commit and compact meanwhile, as fast as they can.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, urls) = (stop.clone(), (1..=12).map(tenant).collect::<Vec<_>>());
        std::thread::spawn(move || {
            let conns: Vec<Connection> =
                urls.iter().map(|u| open_writer(u, busy).unwrap()).collect();
            let mut made = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for c in &conns {
                    c.execute(
                        "UPDATE t SET v = randomblob(4000) WHERE id % 50 = ?1",
                        [made % 50],
                    )
                    .unwrap();
                    made += 1;
                }
            }
            made
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let before = proxy.count("requests");
    let busy_latencies = commit_latencies(&me, 40);
    let background = proxy.count("requests") - before;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let made = load.join().unwrap();
    let worst = |l: &[Duration]| l.last().copied().unwrap_or_default();
    let median = |l: &[Duration]| l.get(l.len() / 2).copied().unwrap_or_default();
    eprintln!(
        "commit alone: median {:?} worst {:?}; beside 12 tenants compacting ({made} commits, \
         {background} requests meanwhile): median {:?} worst {:?}",
        median(&alone),
        worst(&alone),
        median(&busy_latencies),
        worst(&busy_latencies)
    );
    // The others did compact meanwhile.
    let report: String = others[0]
        .query_row("PRAGMA ltx_compaction", [], |r| r.get(0))
        .unwrap();
    assert!(report.contains("\"snapshot\":{"), "{report}");
    // A commit is one conditional create (and a check): it never waits behind a pass.
    assert!(
        worst(&busy_latencies) < Duration::from_secs(1),
        "alone {alone:?}, beside compaction {busy_latencies:?}"
    );
}
