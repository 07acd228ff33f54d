//! Write mode when things go wrong: a store whose answers get lost or fail (the fault proxy
//! between ltxvfs and moto), and a writer process killed in the middle of its work. No
//! acknowledged COMMIT is ever missing, and nothing refused is ever stored.

use ltxvfs_sqlite_tests::{
    FaultProxy, Target, WriteTarget, create_writer_tables, kill_writer_when, open_writer,
    s3_endpoint,
};
use std::time::{Duration, Instant};

/// Every PUT reaches the store but its answer is lost (the connection reset): each COMMIT
/// finds out by reading its file back, and is acknowledged.
#[test]
fn a_commit_whose_answer_was_lost_is_read_back_and_acknowledged() {
    let t = WriteTarget::new("write-lost-answer", Target::S3);
    let proxy = FaultProxy::start(&s3_endpoint());
    let w = open_writer(&t.url.replace(&s3_endpoint(), &proxy.endpoint()), "").unwrap();
    w.execute_batch("CREATE TABLE t(tag TEXT, n INTEGER)")
        .unwrap();
    proxy.control(Some(r#"{"rate": 1.0, "kinds": ["lost_put"]}"#));
    for n in 0..5 {
        w.execute("INSERT INTO t VALUES ('lost', ?1)", [n]).unwrap();
    }
    assert!(proxy.count("lost_put") >= 5, "{}", proxy.control(None));
    proxy.control(Some(r#"{"rate": 0.0}"#));
    assert_eq!(t.level0_txids(), (1..=6).collect::<Vec<u64>>());
    let rows = t.restored_rows();
    assert_eq!(rows.len(), 5);
    assert!(rows.values().all(|&k| k == 1));
}

/// A quarter of requests fail (5xx, resets, stalls past the timeout, bodies cut short, PUTs
/// stored but unanswered): each COMMIT is OK, BUSY or IOERR within its timeout; every
/// acknowledged one is stored once, no refused (BUSY) one is, and once the faults stop the
/// connection commits again.
#[test]
fn faulty_store_commits_are_ok_busy_or_ioerr_and_nothing_acknowledged_is_lost() {
    let t = WriteTarget::new("write-faults", Target::S3);
    let proxy = FaultProxy::start(&s3_endpoint());
    let url = t.url.replace(&s3_endpoint(), &proxy.endpoint());
    let w = open_writer(&url, "&timeout=2s").unwrap();
    w.execute_batch("CREATE TABLE t(tag TEXT, n INTEGER)")
        .unwrap();
    proxy.control(Some(
        r#"{"rate": 0.25, "kinds": ["500", "503", "reset", "truncate", "short", "stall", "lost_put"]}"#,
    ));
    let (mut acked, mut busy, mut ioerr) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..50i64 {
        let started = Instant::now();
        match w.execute("INSERT INTO t VALUES ('f', ?1)", [n]) {
            Ok(_) => acked.push(n),
            Err(e) => match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DatabaseBusy) => busy.push(n),
                Some(rusqlite::ErrorCode::SystemIoFailure) => ioerr.push(n),
                _ => panic!("commit {n}: {e}"),
            },
        }
        let took = started.elapsed();
        assert!(took < Duration::from_secs(20), "commit {n} took {took:?}");
    }
    proxy.control(Some(r#"{"rate": 0.0}"#));
    eprintln!(
        "faults: {} acknowledged, {} busy, {} ioerr; proxy {}",
        acked.len(),
        busy.len(),
        ioerr.len(),
        proxy.control(None)
    );
    // Recovered: a commit goes through (after at most one BUSY, if an IOERR'd commit was in
    // fact stored and this connection has not read it yet).
    let again = w
        .execute("INSERT INTO t VALUES ('after', 0)", [])
        .or_else(|_| w.execute("INSERT INTO t VALUES ('after', 0)", []));
    assert!(again.is_ok(), "{again:?}");
    let rows = t.restored_rows();
    for n in &acked {
        assert_eq!(rows.get(&("f".into(), *n)), Some(&1), "acknowledged {n}");
    }
    for ((tag, n), k) in &rows {
        assert_eq!(*k, 1, "{tag} {n} stored {k} times");
        assert!(
            tag == "after" || acked.contains(n) || ioerr.contains(n),
            "{n} stored but refused with BUSY"
        );
    }
    assert!(acked.len() > 15, "{} acknowledged", acked.len());
    let txids = t.level0_txids();
    assert_eq!(txids, (1..=txids.len() as u64).collect::<Vec<u64>>());
}

/// A writer process SIGKILLed three times while committing, restarted each time: every
/// commit it acknowledged is stored, once; of the rest, at most the one in flight.
#[test]
fn a_writer_killed_mid_stream_loses_no_acknowledged_commit() {
    killed_writers_lose_nothing("write-sigkill", "");
}

/// The same with `sync=<duration>`: an acknowledged commit may be only in the buffer file
/// when the writer dies; the next writer's open ships it.
#[test]
fn a_buffered_writer_killed_mid_stream_loses_no_acknowledged_commit() {
    let dir = ltxvfs_sqlite_tests::util::scratch_dir("write-sigkill-buffer");
    let extra = format!("&sync=150ms&buffer={}", dir.join("w.buffer").display());
    killed_writers_lose_nothing("write-sigkill-buffered", &extra);
}

fn killed_writers_lose_nothing(name: &str, extra: &str) {
    let t = WriteTarget::new(name, Target::File);
    create_writer_tables(&t.url, extra);
    let mut acked: Vec<(String, i64)> = Vec::new();
    for round in 0..3 {
        let bin = env!("CARGO_BIN_EXE_ltx_writer");
        let (url, tag) = (&t.url, format!("k{round}"));
        acked.extend(kill_writer_when(bin, url, &tag, extra, |n| {
            n >= 20 + 7 * round
        }));
    }
    // The replica opens (shipping what a buffer holds) and takes commits again.
    let w = open_writer(&t.url, extra).unwrap();
    w.execute("INSERT INTO t VALUES ('after', 0)", []).unwrap();
    drop(w);
    let rows = t.restored_rows();
    for a in &acked {
        assert_eq!(rows.get(a), Some(&1), "acknowledged {a:?}");
    }
    assert_eq!(rows.get(&("after".to_string(), 0)), Some(&1));
    let extra_rows: Vec<_> = rows
        .keys()
        .filter(|r| !acked.contains(r) && r.0 != "after")
        .collect();
    assert!(
        extra_rows.len() <= 3,
        "only commits in flight at a kill: {extra_rows:?}"
    );
    for (tag, n) in &extra_rows {
        let last = acked
            .iter()
            .filter(|(t, _)| t == tag)
            .map(|(_, n)| *n)
            .max();
        assert_eq!(Some(*n - 1), last, "{tag} {n} was not in flight");
    }
    let txids = t.level0_txids();
    assert_eq!(txids, (1..=txids.len() as u64).collect::<Vec<u64>>());
}

/// A store that answers every request with an error: COMMIT fails with SQLITE_IOERR within
/// the timeout and stores nothing; once the store is back, the same connection commits the
/// same TXID.
#[test]
fn an_unreachable_store_fails_commit_with_ioerr_and_stores_nothing() {
    let t = WriteTarget::new("write-unreachable", Target::S3);
    let proxy = FaultProxy::start(&s3_endpoint());
    let url = t.url.replace(&s3_endpoint(), &proxy.endpoint());
    let w = open_writer(&url, "&timeout=2s&poll=0").unwrap();
    w.execute_batch("CREATE TABLE t(tag TEXT, n INTEGER)")
        .unwrap();
    proxy.control(Some(r#"{"rate": 1.0, "kinds": ["500", "reset"]}"#));
    let started = Instant::now();
    let err = w
        .execute("INSERT INTO t VALUES ('down', 1)", [])
        .unwrap_err();
    assert_eq!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::SystemIoFailure),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(w.is_autocommit());
    let why: String = w
        .query_row("PRAGMA ltx_last_error", [], |x| x.get(0))
        .unwrap();
    assert!(
        why.contains("storing TXID") || why.contains("creating"),
        "{why}"
    );
    proxy.control(Some(r#"{"rate": 0.0}"#));
    assert_eq!(t.level0_txids(), vec![1]);
    w.execute("INSERT INTO t VALUES ('up', 2)", []).unwrap();
    assert_eq!(t.level0_txids(), vec![1, 2]);
    let rows = t.restored_rows();
    assert_eq!(rows.keys().collect::<Vec<_>>(), [&("up".to_string(), 2)]);
}

/// Half of PUTs reach the store but lose their answer, and half of GETs come back cut
/// short with headers to match: a COMMIT that reads its file back through a damaged answer
/// reads it again rather than take it for another writer's. Every COMMIT is acknowledged or
/// IOERR, and every acknowledged one is stored. BUSY only after an IOERR: that commit's file
/// may be stored though its read-back failed, and the next COMMIT, made before this process
/// could read the store again (its GETs damaged too), finds that TXID taken. There is no
/// other writer.
#[test]
fn a_read_back_cut_short_is_read_again_not_taken_for_a_lost_race() {
    let t = WriteTarget::new("write-short-read-back", Target::S3);
    let proxy = FaultProxy::start(&s3_endpoint());
    let url = t.url.replace(&s3_endpoint(), &proxy.endpoint());
    let w = open_writer(&url, "&lease_ttl=off").unwrap();
    w.execute_batch("CREATE TABLE t(tag TEXT, n INTEGER)")
        .unwrap();
    proxy.control(Some(r#"{"rate": 1.0, "kinds": ["lost_put", "short"]}"#));
    let (mut acked, mut ioerr, mut busy) = (Vec::new(), Vec::new(), Vec::new());
    let mut uncertain = false;
    for n in 0..12i64 {
        match w.execute("INSERT INTO t VALUES ('s', ?1)", [n]) {
            Ok(_) => {
                acked.push(n);
                uncertain = false;
            }
            Err(e) => match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::SystemIoFailure) => {
                    ioerr.push(n);
                    uncertain = true;
                }
                Some(rusqlite::ErrorCode::DatabaseBusy) if uncertain => busy.push(n),
                _ => panic!("commit {n} (ioerr {ioerr:?}, busy {busy:?}): {e}"),
            },
        }
    }
    proxy.control(Some(r#"{"rate": 0.0}"#));
    eprintln!(
        "short read-back: acknowledged {acked:?}, ioerr {ioerr:?}, busy {busy:?}; proxy {}",
        proxy.control(None)
    );
    assert!(proxy.count("short") >= 3, "{}", proxy.control(None));
    let rows = t.restored_rows();
    for n in &acked {
        assert_eq!(rows.get(&("s".into(), *n)), Some(&1), "acknowledged {n}");
    }
    assert!(acked.len() >= 6, "{} acknowledged", acked.len());
}
