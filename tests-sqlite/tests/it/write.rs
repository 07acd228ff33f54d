//! Write mode (`write=1`, issue #14): each COMMIT stored as a level-0 LTX file at the next
//! TXID, created only if no other writer took it; read back by the real `litestream restore`
//! and by ltxvfs readers.

use ltxvfs_sqlite_tests::{
    Target, WriteTarget, assert_same_pages, open_replica, open_writer, read_all_pages,
};
use rusqlite::{Connection, params};

/// A small deterministic generator, so the shadow database gets the very same bytes.
pub(crate) struct Lcg(pub(crate) u64);

impl Lcg {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Runs one transaction on both databases; returns how long the first one's COMMIT took.
pub(crate) fn both(
    a: &Connection,
    b: &Connection,
    f: impl Fn(&Connection) -> rusqlite::Result<()>,
) -> std::time::Duration {
    let mut took = std::time::Duration::ZERO;
    for (i, c) in [a, b].into_iter().enumerate() {
        c.execute_batch("BEGIN").unwrap();
        f(c).unwrap();
        let started = std::time::Instant::now();
        c.execute_batch("COMMIT").unwrap();
        if i == 0 {
            took = started.elapsed();
        }
    }
    took
}

/// count(*), sum(length(v)), sum(n) of t.
pub(crate) fn summary(c: &Connection) -> (i64, i64, i64) {
    c.query_row(
        "SELECT count(*), coalesce(sum(length(v)), 0), coalesce(sum(n), 0) FROM t",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap()
}

/// A few hundred mixed transactions (an index, overflow BLOBs, updates, deletes, a VACUUM
/// that shrinks the file) through ltxvfs and on a local shadow database: a reader in the
/// same process sees each commit; `litestream restore` gives the shadow's pages.
fn one_writer_matches_its_shadow(name: &str, target: Target) {
    let t = WriteTarget::new(name, target);
    let w = open_writer(&t.url, "").unwrap();
    // A page cache of 8 pages: large transactions spill pages before their COMMIT.
    w.execute_batch("PRAGMA cache_size = 8").unwrap();
    let shadow = Connection::open(t.dir.join("shadow.db")).unwrap();
    let mut commit_times = Vec::new();
    both(&w, &shadow, |c| {
        c.execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, n INTEGER, v BLOB);
             CREATE INDEX t_k ON t(k);",
        )
    });
    let reader = open_replica(&t.url, "").unwrap();
    let mut rng = Lcg(7);
    for i in 0..300i64 {
        let op = rng.next() % 10;
        let len = if rng.next().is_multiple_of(4) {
            5000 + rng.next() % 20_000
        } else {
            rng.next() % 300
        };
        let blob = rng.bytes(len as usize);
        let key = format!("k{}", rng.next() % 1000);
        let target_id = (rng.next() % (i as u64 + 1)) as i64;
        commit_times.push(both(&w, &shadow, |c| {
            match op {
                0..=5 => {
                    c.execute(
                        "INSERT INTO t(k, n, v) VALUES (?1, ?2, ?3)",
                        params![key, i, blob],
                    )?;
                    c.execute(
                        "INSERT INTO t(k, n, v) VALUES (?1, ?2, zeroblob(10))",
                        params![key, -i],
                    )?;
                }
                6 | 7 => {
                    c.execute(
                        "UPDATE t SET v = ?1, n = n + 1 WHERE id = ?2",
                        params![blob, target_id],
                    )?;
                }
                _ => {
                    c.execute(
                        "DELETE FROM t WHERE id = ?1 OR id = ?2",
                        params![target_id, target_id + 1],
                    )?;
                }
            }
            Ok(())
        }));
        if i % 25 == 0 {
            assert_eq!(summary(&reader), summary(&shadow), "after transaction {i}");
        }
    }
    commit_times.sort();
    eprintln!(
        "{name}: COMMIT median {:?}, p99 {:?}",
        commit_times[commit_times.len() / 2],
        commit_times[commit_times.len() * 99 / 100]
    );
    let before_vacuum: i64 = w.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
    for c in [&w, &shadow] {
        c.execute_batch("DELETE FROM t WHERE id % 5 != 0; VACUUM;")
            .unwrap();
    }
    let after_vacuum: i64 = w.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
    assert!(
        after_vacuum < before_vacuum / 2,
        "{before_vacuum} -> {after_vacuum}"
    );
    assert_eq!(summary(&reader), summary(&shadow));
    assert_eq!(summary(&w), summary(&shadow));

    let restored = t.restore();
    let shadow_bytes = std::fs::read(t.dir.join("shadow.db")).unwrap();
    assert_same_pages(&restored, &shadow_bytes, 4096);
    let r = Connection::open(t.dir.join("restored.db")).unwrap();
    let ok: String = r
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    // The reader's view, read through the VFS page by page, is the same database.
    assert_same_pages(&read_all_pages(&reader, &t.dir), &shadow_bytes, 4096);
    // One level-0 file per COMMIT that changed a page, TXIDs 1, 2, 3, ... with none missing.
    let txids = t.level0_txids();
    assert_eq!(txids, (1..=txids.len() as u64).collect::<Vec<u64>>());
    assert!(txids.len() > 250, "{} files", txids.len());
}

#[test]
fn one_writer_on_file_matches_its_shadow() {
    one_writer_matches_its_shadow("write-one-file", Target::File);
}

#[test]
fn one_writer_on_s3_matches_its_shadow() {
    one_writer_matches_its_shadow("write-one-s3", Target::S3);
}

/// Two writer processes race on one replica, each retrying a refused COMMIT: every
/// acknowledged commit is in the restored database exactly once, nothing else is, and the
/// TXIDs run 1, 2, 3, ... one file per stored commit.
pub(crate) fn two_writer_processes_race(name: &str, target: Target, each: u32) {
    let t = WriteTarget::new(name, target);
    {
        let w = open_writer(&t.url, "").unwrap();
        w.execute_batch(
            "CREATE TABLE t(tag TEXT, n INTEGER);
             CREATE TABLE counter(n INTEGER);
             INSERT INTO counter VALUES (0);",
        )
        .unwrap();
    }
    let spawn = |writer: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ltx_writer"))
            .env_remove("AWS_CA_BUNDLE")
            .args([&t.url, writer, &each.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children = [("a", spawn("a")), ("b", spawn("b"))];
    let mut acked = Vec::new();
    let mut busy = 0;
    for (writer, child) in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "writer {writer} failed");
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts[0] {
                "ok" => acked.push((writer.to_string(), parts[1].parse::<i64>().unwrap())),
                "busy" => {
                    // SQLITE_BUSY_SNAPSHOT at COMMIT, or SQLITE_BUSY at the first write
                    // (the other process holds the writers' lease).
                    assert!(
                        ["517", "5"].contains(&parts[2]),
                        "BUSY_SNAPSHOT or BUSY: {line}"
                    );
                    busy += 1;
                }
                other => panic!("writer {writer}: {other}: {line}"),
            }
        }
    }
    assert_eq!(acked.len(), 2 * each as usize);
    eprintln!(
        "{name}: {} acknowledged, {busy} refused and retried",
        acked.len()
    );

    t.restore();
    let r = Connection::open(t.dir.join("restored.db")).unwrap();
    let mut stored: Vec<(String, i64)> = r
        .prepare("SELECT tag, n FROM t ORDER BY tag, n")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    acked.sort();
    stored.dedup_by(|a, b| {
        assert_ne!(a, b, "stored twice");
        false
    });
    assert_eq!(
        stored, acked,
        "the stored commits are exactly the acknowledged ones"
    );
    let n: i64 = r
        .query_row("SELECT n FROM counter", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, acked.len() as i64, "no update lost");
    // The schema took three transactions (autocommit), then one file per acknowledged commit.
    let txids = t.level0_txids();
    assert_eq!(txids, (1..=3 + acked.len() as u64).collect::<Vec<u64>>());
}

#[test]
fn two_writer_processes_on_file_lose_nothing() {
    two_writer_processes_race("write-race-file", Target::File, 60);
}

#[test]
fn two_writer_processes_on_s3_lose_nothing() {
    two_writer_processes_race("write-race-s3", Target::S3, 40);
}

/// A reader with its own follower (another spelling of the URL makes another `Replica`)
/// polls while a writer commits: each of its read transactions sees a whole transaction
/// (the invariants hold), and the states it sees only move forward.
#[test]
fn a_reader_following_a_writer_sees_whole_transactions_in_order() {
    let t = WriteTarget::new("write-follow", Target::File);
    let w = open_writer(&t.url, "").unwrap();
    w.execute_batch(
        "CREATE TABLE account(id INTEGER PRIMARY KEY, balance INTEGER);
         CREATE TABLE log(seq INTEGER, note BLOB);
         CREATE TABLE state(seq INTEGER);
         INSERT INTO state VALUES (0);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)
         INSERT INTO account SELECT i, 10 FROM n;",
    )
    .unwrap();
    const COMMITS: i64 = 150;
    let other_spelling = t.url.replacen("file://", "file://localhost", 1);
    let reader = std::thread::spawn(move || {
        let r = open_replica(&other_spelling, "&poll=20ms&idle=0").unwrap();
        let mut seen = Vec::new();
        loop {
            r.execute_batch("BEGIN").unwrap();
            let seq: i64 = r
                .query_row("SELECT seq FROM state", [], |x| x.get(0))
                .unwrap();
            let sum: i64 = r
                .query_row("SELECT sum(balance) FROM account", [], |x| x.get(0))
                .unwrap();
            let logged: i64 = r
                .query_row("SELECT count(*) FROM log", [], |x| x.get(0))
                .unwrap();
            r.execute_batch("COMMIT").unwrap();
            assert_eq!(sum, 1000, "money appeared or vanished at seq {seq}");
            assert_eq!(logged, seq, "half a transaction at seq {seq}");
            assert!(seen.last().is_none_or(|&l| l <= seq), "went back to {seq}");
            seen.push(seq);
            if seq == COMMITS {
                return seen;
            }
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
    });
    let mut rng = Lcg(3);
    for seq in 1..=COMMITS {
        let (from, to) = (1 + rng.next() as i64 % 100, 1 + rng.next() as i64 % 100);
        let len = 100 + (rng.next() % 6000) as usize;
        let note = rng.bytes(len);
        w.execute_batch("BEGIN").unwrap();
        w.execute(
            "UPDATE account SET balance = balance - 1 WHERE id = ?1",
            params![from],
        )
        .unwrap();
        w.execute(
            "UPDATE account SET balance = balance + 1 WHERE id = ?1",
            params![to],
        )
        .unwrap();
        w.execute("INSERT INTO log VALUES (?1, ?2)", params![seq, note])
            .unwrap();
        w.execute("UPDATE state SET seq = ?1", params![seq])
            .unwrap();
        w.execute_batch("COMMIT").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let seen = reader.join().unwrap();
    let mut distinct = seen.clone();
    distinct.dedup();
    assert!(distinct.len() > 5, "the reader followed: {distinct:?}");
}

/// Two writers that do not see each other's commits (another spelling of the URL, no
/// polling) both start from TXID 2: the second COMMIT is SQLITE_BUSY_SNAPSHOT, SQLite rolls
/// the transaction back through its journal with nothing stored, and the next transaction
/// reads the winner's state and commits.
#[test]
fn a_lost_race_is_busy_snapshot_and_the_next_transaction_reads_the_winner() {
    let t = WriteTarget::new("write-lost-race", Target::File);
    let a = open_writer(&t.url, "&poll=0").unwrap();
    a.execute_batch(
        "BEGIN; CREATE TABLE t(who TEXT, v BLOB); INSERT INTO t VALUES ('a', zeroblob(9000)); COMMIT;",
    )
    .unwrap();
    let other_spelling = t.url.replacen("file://", "file://localhost", 1);
    let b = open_writer(&other_spelling, "&poll=0").unwrap();
    assert_eq!(
        b.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
            .unwrap(),
        1
    );

    a.execute("INSERT INTO t VALUES ('a', randomblob(5000))", [])
        .unwrap();
    b.execute_batch("BEGIN; INSERT INTO t VALUES ('b', randomblob(5000)); UPDATE t SET who = 'b';")
        .unwrap();
    let err = b.execute_batch("COMMIT").unwrap_err();
    assert_eq!(
        err.sqlite_error().map(|e| e.extended_code),
        Some(517),
        "{err}"
    );
    // SQLite rolled the transaction back (from its journal; the sync of that rollback
    // stores nothing).
    assert!(b.is_autocommit(), "the transaction is over");
    let last_error: String = b
        .query_row("PRAGMA ltx_last_error", [], |r| r.get(0))
        .unwrap();
    assert!(
        last_error.contains("another writer committed TXID"),
        "{last_error}"
    );

    // Nothing of b's is stored; b now reads a's state, and its retry commits.
    assert_eq!(t.level0_txids(), vec![1, 2]);
    let whos = |c: &Connection| -> Vec<String> {
        c.prepare("SELECT who FROM t ORDER BY rowid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(whos(&b), ["a", "a"]);
    b.execute("INSERT INTO t VALUES ('b', randomblob(5000))", [])
        .unwrap();
    assert_eq!(t.level0_txids(), vec![1, 2, 3]);
    t.restore();
    let r = Connection::open(t.dir.join("restored.db")).unwrap();
    assert_eq!(whos(&r), ["a", "a", "b"]);

    // An autocommit statement that loses: BUSY_SNAPSHOT, and no transaction left open.
    b.execute("INSERT INTO t VALUES ('b', zeroblob(10))", [])
        .unwrap();
    let lost = a
        .execute("INSERT INTO t VALUES ('a', zeroblob(10))", [])
        .unwrap_err();
    assert_eq!(
        lost.sqlite_error().map(|e| e.extended_code),
        Some(517),
        "{lost}"
    );
    assert!(a.is_autocommit());
    a.execute("INSERT INTO t VALUES ('a', zeroblob(10))", [])
        .unwrap();
    assert_eq!(t.level0_txids(), (1..=5).collect::<Vec<u64>>());
    assert_eq!(whos(&a), ["a", "a", "b", "b", "a"]);
}

/// Write mode refuses what would put commits out of its reach: WAL, and unsynced commits.
#[test]
fn write_mode_refuses_wal_and_synchronous_off() {
    let t = WriteTarget::new("write-refusals", Target::File);
    let w = open_writer(&t.url, "").unwrap();
    let wal = w
        .pragma_update(None, "journal_mode", "wal")
        .unwrap_err()
        .to_string();
    assert!(wal.contains("journal_mode=WAL is not available"), "{wal}");
    let off = w
        .pragma_update(None, "synchronous", "off")
        .unwrap_err()
        .to_string();
    assert!(off.contains("synchronous=OFF"), "{off}");
    w.execute_batch("CREATE TABLE t(x)").unwrap();
    let mode: String = w
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    // Read-only connections still refuse writes.
    let r = open_replica(&t.url, "").unwrap();
    let ro = r.execute("INSERT INTO t VALUES (1)", []).unwrap_err();
    assert_eq!(
        ro.sqlite_error_code(),
        Some(rusqlite::ErrorCode::ReadOnly),
        "{ro}"
    );
}

/// Two writable connections of one process share the replica's lock table: with a busy
/// timeout, each `BEGIN IMMEDIATE` waits for the other's COMMIT, and none is refused.
#[test]
fn writers_in_one_process_take_turns() {
    let t = WriteTarget::new("write-in-process", Target::File);
    open_writer(&t.url, "")
        .unwrap()
        .execute_batch("CREATE TABLE t(tag TEXT, n INTEGER)")
        .unwrap();
    let threads: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|tag| {
            let url = t.url.clone();
            std::thread::spawn(move || {
                let w = open_writer(&url, "").unwrap();
                w.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
                for n in 0..50 {
                    w.execute_batch("BEGIN IMMEDIATE").unwrap();
                    w.execute("INSERT INTO t VALUES (?1, ?2)", params![tag, n])
                        .unwrap();
                    w.execute_batch("COMMIT").unwrap();
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    t.restore();
    let r = Connection::open(t.dir.join("restored.db")).unwrap();
    let n: i64 = r
        .query_row("SELECT count(DISTINCT tag || n) FROM t", [], |x| x.get(0))
        .unwrap();
    assert_eq!(n, 100);
    assert_eq!(t.level0_txids(), (1..=101).collect::<Vec<u64>>());
}

/// A transaction large enough to spill pages to the file before its end, then rolled
/// back: SQLite writes the original pages back and syncs, and that stores nothing; the
/// database is as before, and the next transaction commits.
#[test]
fn a_rolled_back_transaction_that_spilled_stores_nothing() {
    let t = WriteTarget::new("write-spill-rollback", Target::File);
    let w = open_writer(&t.url, "").unwrap();
    w.execute_batch(
        "PRAGMA cache_size = 4;
         CREATE TABLE t(n INTEGER, v BLOB);
         INSERT INTO t VALUES (1, randomblob(30000));",
    )
    .unwrap();
    let before = t.level0_txids();
    let sum = |c: &Connection| -> i64 {
        c.query_row("SELECT sum(length(v)) + sum(n) FROM t", [], |r| r.get(0))
            .unwrap()
    };
    let had = sum(&w);
    w.execute_batch("BEGIN").unwrap();
    for n in 0..20 {
        w.execute("INSERT INTO t VALUES (?1, randomblob(20000))", [n])
            .unwrap();
    }
    w.execute("UPDATE t SET v = randomblob(100) WHERE n = 1", [])
        .unwrap();
    w.execute_batch("ROLLBACK").unwrap();
    assert_eq!(t.level0_txids(), before, "nothing stored");
    assert_eq!(sum(&w), had);
    let why: String = w
        .query_row("PRAGMA ltx_last_error", [], |r| r.get(0))
        .unwrap();
    assert!(!why.contains("without a COMMIT sync"), "{why}");
    w.execute("INSERT INTO t VALUES (2, zeroblob(5))", [])
        .unwrap();
    assert_eq!(t.level0_txids().len(), before.len() + 1);
    let r = open_replica(&t.url, "").unwrap();
    assert_eq!(sum(&r), had + 7);
}

/// A replica Litestream wrote (block encoding, 0.5.17; legacy frames, 0.5.15) taken over by
/// a writer once `litestream replicate` is stopped: its COMMITs follow Litestream's TXIDs,
/// and the result holds both, intact: restored by `litestream restore` 0.5.17, read by an
/// ltxvfs reader for 0.5.15 (whose restore cannot read the block encoding we write).
#[test]
fn a_writer_takes_over_a_replica_litestream_wrote() {
    for version in ["0.5.17", "0.5.15"] {
        let name = format!("write-takeover-{version}");
        let mut primary = ltxvfs_sqlite_tests::Primary::start(
            version,
            &name,
            "CREATE TABLE t(who TEXT, v BLOB);",
            "1h",
            Target::File,
        );
        primary.commit("INSERT INTO t VALUES ('litestream', randomblob(9000))");
        let last = primary.settle();
        primary.stop();
        let w = open_writer(&primary.url(), "").unwrap();
        for _ in 0..3 {
            w.execute("INSERT INTO t VALUES ('ltxvfs', randomblob(5000))", [])
                .unwrap();
        }
        let txid: String = w.query_row("PRAGMA ltx_txid", [], |r| r.get(0)).unwrap();
        assert_eq!(txid, ltxvfs::ltx::Txid(last.get() + 3).to_string());
        let r = if version == "0.5.17" {
            let out = primary.dir.join("taken-over.db");
            primary.restore(ltxvfs::ltx::Txid(last.get() + 3), &out);
            Connection::open(&out).unwrap()
        } else {
            open_replica(
                &primary.url().replacen("file://", "file://localhost", 1),
                "",
            )
            .unwrap()
        };
        let ok: String = r
            .query_row("PRAGMA integrity_check", [], |x| x.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        let whos: Vec<(String, i64)> = r
            .prepare("SELECT who, count(*) FROM t GROUP BY who ORDER BY who")
            .unwrap()
            .query_map([], |x| Ok((x.get(0)?, x.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            whos,
            [("litestream".to_string(), 1), ("ltxvfs".to_string(), 3)],
            "{version}"
        );
    }
}
