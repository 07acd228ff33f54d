//! Following: a replica open while the primary writes, compacts, prunes and vacuums sees each
//! new transaction at its next read transaction, never a mix, and ends equal to the primary.

use ltxvfs::ltx::Txid;
use ltxvfs_sqlite_tests::{
    Primary, Target, assert_same_pages, open_replica, read_all_pages, util, wait_until,
};
use rusqlite::Connection;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const ACCOUNTS: i64 = 50;
const TOTAL: i64 = ACCOUNTS * 1000;

fn schema() -> String {
    format!(
        "CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
         CREATE TABLE counter(id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
         CREATE TABLE filler(id INTEGER PRIMARY KEY, body BLOB);
         WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < {ACCOUNTS})
         INSERT INTO accounts SELECT x, 1000 FROM i;
         INSERT INTO counter VALUES (1, 0);"
    )
}

fn counter(conn: &Connection) -> i64 {
    conn.query_row("SELECT n FROM counter", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn an_open_connection_sees_new_transactions_at_its_next_read_transaction() {
    let primary = Primary::start("0.5.17", "follow-basic", &schema(), "30s", Target::File);
    let conn = open_replica(&primary.url(), "&poll=200ms").unwrap();
    assert_eq!(counter(&conn), 0);

    conn.execute_batch("BEGIN").unwrap();
    assert_eq!(counter(&conn), 0);
    primary.commit("UPDATE counter SET n = 1");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(counter(&conn), 0, "a read transaction keeps its snapshot");
    conn.execute_batch("COMMIT").unwrap();
    wait_until("the next read transaction to see the commit", || {
        counter(&conn) == 1
    });

    let lag: String = conn
        .pragma_query_value(None, "ltx_lag", |r| r.get(0))
        .unwrap();
    assert!(
        lag.contains("\"since_poll\":0.") || lag.contains("\"since_poll\":1."),
        "{lag}"
    );
    let ls: String = conn
        .pragma_query_value(None, "litestream_lag", |r| r.get(0))
        .unwrap();
    assert!(ls == "0" || ls == "1", "{ls}");
}

/// One reader thread: read transactions until `stop`, checking the invariants.
fn reader(url: String, extra: &'static str, stop: Arc<AtomicBool>, max: Arc<AtomicU64>) -> u64 {
    let conn = open_replica(&url, extra).unwrap();
    let (mut reads, mut last) = (0u64, -1i64);
    while !stop.load(Ordering::Relaxed) {
        let tx = conn.unchecked_transaction().unwrap();
        let total: i64 = tx
            .query_row("SELECT sum(balance) FROM accounts", [], |r| r.get(0))
            .unwrap();
        let n1 = counter(&tx);
        let _: i64 = tx
            .query_row("SELECT count(*) FROM filler", [], |r| r.get(0))
            .unwrap();
        let n2 = counter(&tx);
        tx.commit().unwrap();
        assert_eq!(total, TOTAL, "a torn snapshot: the ledger does not add up");
        assert_eq!(n1, n2, "one read transaction saw two states");
        assert!(n1 >= last, "the counter went backwards: {n1} after {last}");
        last = n1;
        max.fetch_max(n1 as u64, Ordering::Relaxed);
        reads += 1;
        std::thread::sleep(Duration::from_millis(3));
    }
    reads
}

#[test]
fn readers_follow_a_busy_compacting_primary_without_torn_or_stale_mixed_snapshots() {
    // L1 every second, L2 every 3, L0 pruned a second after L1 covers it, snapshots rotated:
    // the conditions under which Litestream's own follower wedges (issue #1460).
    let global = "levels:\n  - interval: 1s\n  - interval: 3s\nl0-retention: 1s\nl0-retention-check-interval: 1s\nsnapshot:\n  interval: 8s\n  retention: 8s\n";
    let primary = Primary::start_with("0.5.17", "follow-soak", &schema(), global, Target::File);
    let url = primary.url();
    // The same directory under a second URL spelling is a second Replica, polling slowly
    // enough that L0 files are pruned between its polls: it must bridge from L1 and above.
    let slow_url = url.replace("file://", "file://localhost");

    let stop = Arc::new(AtomicBool::new(false));
    let max = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for (u, extra) in [
        (&url, ""),
        (&url, ""),
        (&url, ""),
        (&slow_url, "&poll=4s"),
        (&slow_url, "&poll=4s"),
        (&slow_url, "&poll=4s"),
    ] {
        let (u, stop, max) = (u.clone(), stop.clone(), max.clone());
        threads.push(std::thread::spawn(move || reader(u, extra, stop, max)));
    }
    // Reader processes, through the loadable extension in the system python.
    let lib = util::repo_dir().join("target/release/libltxvfs.so");
    assert!(lib.is_file(), "{} not built (make build)", lib.display());
    let stop_file = primary.dir.join("stop-readers");
    let procs: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new("/usr/bin/python3")
                .arg(util::repo_dir().join("tests/follow_reader.py"))
                .arg(lib.with_extension(""))
                .arg(&url)
                .arg(TOTAL.to_string())
                .arg(&stop_file)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();

    // The writer: transfers (the total stays), a counter per transaction, filler rows that
    // grow and shrink the database, and a VACUUM now and then.
    let db = Connection::open(&primary.db_path).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let started = Instant::now();
    let mut n = 0i64;
    while started.elapsed() < Duration::from_secs(20) {
        n += 1;
        let (a, b, amount) = (1 + n * 7 % ACCOUNTS, 1 + n * 13 % ACCOUNTS, n % 90 + 1);
        let filler = match n % 7 {
            0 => "DELETE FROM filler WHERE id % 3 = 0".to_string(),
            _ => format!(
                "INSERT INTO filler(body) SELECT randomblob({}) FROM accounts LIMIT {}",
                200 + n % 900,
                n % 6
            ),
        };
        db.execute_batch(&format!(
            "BEGIN;
             UPDATE accounts SET balance = balance - {amount} WHERE id = {a};
             UPDATE accounts SET balance = balance + {amount} WHERE id = {b};
             UPDATE counter SET n = {n};
             {filler};
             COMMIT;"
        ))
        .unwrap();
        if n % 60 == 0 {
            db.execute_batch("DELETE FROM filler WHERE id % 2 = 0; VACUUM;")
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(15));
    }
    let final_txid: Txid = primary.settle();

    // Every Replica catches up with the last transaction; the slow one had to bridge.
    for u in [&url, &slow_url] {
        let conn = open_replica(u, "").unwrap();
        wait_until("the replica to reach the last transaction", || {
            counter(&conn) == n
        });
        let stats: String = conn
            .pragma_query_value(None, "ltx_stats", |r| r.get(0))
            .unwrap();
        println!("{u}: {stats}");
        if u == &slow_url {
            assert!(!stats.contains("\"follow_bridges\":0"), "{stats}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    std::fs::write(&stop_file, b"").unwrap();
    let reads: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    for p in procs {
        let out = p.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "reader process: {text}");
        assert!(text.contains("reads="), "{text}");
    }
    assert!(reads > 100, "only {reads} reads");
    assert!(max.load(Ordering::Relaxed) as i64 == n);

    // And the replica equals litestream restore at the final TXID, page for page.
    let conn = open_replica(&url, "").unwrap();
    let seen: String = conn
        .pragma_query_value(None, "ltx_txid", |r| r.get(0))
        .unwrap();
    assert_eq!(seen, final_txid.to_string());
    let ours = read_all_pages(&conn, &primary.dir);
    let restored = primary.restore(final_txid, &primary.dir.join("restored.db"));
    assert_same_pages(&ours, &restored, 4096);
    println!("writer transactions: {n}, reader transactions (threads): {reads}");
}

#[test]
fn closing_the_last_connection_stops_the_follower() {
    // Requests counted by a proxy (no faults) in front of the S3 server: polling goes on
    // while a connection is open, and stops once the last one closes.
    let primary = Primary::start("0.5.17", "follow-stop", &schema(), "1m", Target::S3);
    let upstream = ltxvfs_sqlite_tests::s3_endpoint();
    let proxy = ltxvfs_sqlite_tests::FaultProxy::start(&upstream);
    let url = primary.url().replace(&upstream, &proxy.endpoint());
    let (a, b) = (
        open_replica(&url, "&poll=100ms").unwrap(),
        open_replica(&url, "&poll=100ms").unwrap(),
    );
    assert_eq!(counter(&a), counter(&b));
    let polls = |during: Duration| {
        let before = proxy.count("requests");
        std::thread::sleep(during);
        proxy.count("requests") - before
    };
    assert!(
        polls(Duration::from_secs(1)) >= 5,
        "two connections: polling"
    );
    drop(a);
    assert!(
        polls(Duration::from_secs(1)) >= 5,
        "one connection left: still polling"
    );
    drop(b);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        polls(Duration::from_secs(1)),
        0,
        "no connection: no requests"
    );
}
