//! Issue #13: an idle replica makes no requests; the first read after an idle spell sees
//! every transaction Litestream had uploaded before it began; many replicas open at once
//! from several threads.

use ltxvfs_sqlite_tests::{
    FaultProxy, Primary, Target, copy_fixture_replica, file_url, open_replica, s3_endpoint, stat,
    stats, wait_until,
};
use rusqlite::Connection;
use std::time::{Duration, Instant};

fn counter(conn: &Connection) -> i64 {
    conn.query_row("SELECT n FROM counter", [], |r| r.get(0))
        .unwrap()
}

/// A primary with one counter row, replicated to S3, and its URL through a counting proxy.
fn counter_on_s3_behind_a_proxy(name: &str) -> (Primary, FaultProxy, String) {
    let primary = Primary::start(
        "0.5.17",
        name,
        "CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER); INSERT INTO counter VALUES (1, 0);",
        "1m",
        Target::S3,
    );
    let upstream = s3_endpoint();
    let proxy = FaultProxy::start(&upstream);
    let url = primary.url().replace(&upstream, &proxy.endpoint());
    (primary, proxy, url)
}

#[test]
fn an_idle_replica_makes_no_requests_and_its_next_read_sees_what_was_committed() {
    let (primary, proxy, url) = counter_on_s3_behind_a_proxy("idle-resume");
    let conn = open_replica(&url, "&poll=200ms&idle=1s").unwrap();
    assert_eq!(counter(&conn), 0);
    let requests = |during: Duration| {
        let before = proxy.count("requests");
        std::thread::sleep(during);
        proxy.count("requests") - before
    };
    assert!(
        requests(Duration::from_millis(800)) >= 2,
        "read recently: polling"
    );
    // Idle for longer than `idle`: the follower stops at its next poll.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(requests(Duration::from_secs(2)), 0, "idle: no requests");

    for n in 1..=3 {
        primary.commit(&format!("UPDATE counter SET n = {n}"));
        assert_eq!(requests(Duration::from_millis(500)), 0, "still idle");
        let t = Instant::now();
        assert_eq!(counter(&conn), n, "the first read after an idle spell");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        // Reading again: it follows again, then goes idle again.
        std::thread::sleep(Duration::from_millis(1800));
        assert_eq!(requests(Duration::from_millis(700)), 0, "idle again");
    }
    assert!(stat(&conn, "fresh_waits") >= 3, "{}", stats(&conn));
}

#[test]
fn a_reader_never_sees_a_state_older_than_poll_before_it_began() {
    let primary = Primary::start(
        "0.5.17",
        "idle-bound",
        "CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER); INSERT INTO counter VALUES (1, 0);",
        "1m",
        Target::File,
    );
    // A long poll: without the bound, a read right after a commit would see the old state
    // for up to 5 s; with it, one begun 5 s after the last poll waits for a new one.
    let conn = open_replica(&primary.url(), "&poll=5s&idle=0").unwrap();
    assert_eq!(counter(&conn), 0);
    for n in 1..=2 {
        primary.commit(&format!("UPDATE counter SET n = {n}"));
        let uploaded = Instant::now();
        // Read until the commit shows: never later than `poll` after it was uploaded.
        wait_until("the commit to show", || counter(&conn) == n);
        assert!(
            uploaded.elapsed() < Duration::from_millis(5600),
            "{:?}",
            uploaded.elapsed()
        );
    }
}

#[test]
fn many_replicas_open_at_once_from_several_threads() {
    let urls: Vec<String> = (0..24)
        .map(|i| {
            file_url(&copy_fixture_replica(
                "0.5.17",
                &format!("idle-many-{i}"),
                |_| {},
            ))
        })
        .collect();
    let reference = {
        let conn = open_replica(&urls[0], "&poll=0").unwrap();
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap()
    };
    let started = Instant::now();
    let conns: Vec<Connection> = std::thread::scope(|s| {
        let handles: Vec<_> = urls
            .chunks(6)
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|url| {
                            let conn = open_replica(url, "&poll=1s&idle=2s").unwrap();
                            let n: i64 = conn
                                .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
                                .unwrap();
                            assert_eq!(n, reference, "{url}");
                            let ok: String = conn
                                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                                .unwrap();
                            assert_eq!(ok, "ok", "{url}");
                            conn
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    println!(
        "24 replicas opened from 4 threads in {:?}",
        started.elapsed()
    );
    drop(conns);
}

#[test]
fn a_failing_store_makes_one_read_wait_not_every_read() {
    let (primary, proxy, url) = counter_on_s3_behind_a_proxy("idle-failing");
    let conn = open_replica(&url, "&poll=200ms&idle=0&timeout=1s").unwrap();
    assert_eq!(counter(&conn), 0);
    proxy.control(Some(r#"{"rate": 1.0, "kinds": ["503"]}"#));
    std::thread::sleep(Duration::from_millis(1500));
    // Every poll fails now: reads go on from the last state without waiting each time.
    let t = Instant::now();
    for _ in 0..10 {
        assert_eq!(counter(&conn), 0);
    }
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let lag: String = conn
        .pragma_query_value(None, "ltx_last_error", |r| r.get(0))
        .unwrap();
    assert!(lag.contains("following"), "{lag}");
    // The store is back: the next polls see the commit made meanwhile.
    primary.commit("UPDATE counter SET n = 5");
    proxy.control(Some(r#"{"rate": 0.0}"#));
    wait_until("the commit after the outage", || counter(&conn) == 5);
}
