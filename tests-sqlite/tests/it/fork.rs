//! Forks (issue 25): `ltx_fork(source, target [, txid_or_time])` makes a new replica whose
//! state is the source's at a TXID, from copies of the files of the source's restore plan.
//! Judged by `litestream restore` (0.5.17): the fork restores to the same pages as
//! `litestream restore -txid X` of the source. Sources are written by ltxvfs's own writer,
//! with a compaction ladder so that their plans mix levels.
//!
//! `ltx_fork` is a control function: these tests call it on connections they trust with
//! `ltxvfs::trust_connection` (README "Security").

use ltxvfs_sqlite_tests::{
    FaultProxy, Target, WriteTarget, assert_same_pages, format_rfc3339_ms, open_replica,
    open_writer, read_all_pages, s3_endpoint, trust, wait_until,
};
use rusqlite::Connection;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

/// A ladder that makes level-1 files every 300 ms and removes nothing while a test runs.
const LADDER: &str = "&compaction=300ms&snapshot_interval=1h&l0_retention=1h&retention=1h";

fn fork(source: &str, target: &str, at: Option<&str>) -> Result<String, String> {
    let conn = Connection::open_in_memory().unwrap();
    trust(&conn);
    conn.query_row(
        "SELECT ltx_fork(?1, ?2, ?3)",
        rusqlite::params![source, target, at],
        |r| r.get::<_, String>(0),
    )
    .map_err(|e| e.to_string())
}

/// A source replica of `commits` transactions after its schema, with level-1 files over
/// them: (the writer, the TXID of each commit).
fn source(t: &WriteTarget, commits: i64) -> (Connection, Vec<u64>) {
    let w = open_writer(&t.url, LADDER).unwrap();
    w.execute_batch("CREATE TABLE t(n INTEGER, v BLOB)")
        .unwrap();
    let mut txids = vec![txid(&w)];
    for i in 0..commits {
        w.execute(
            "INSERT INTO t VALUES (?1, randomblob(3000 + ?1 * 100))",
            [i],
        )
        .unwrap();
        txids.push(txid(&w));
        if i % 4 == 3 {
            // Let level 1 cover what is there, so that files of both levels remain.
            let last = *txids.last().unwrap();
            wait_until("level 1 to catch up", || {
                t.files(1).last().is_some_and(|f| f.1 == last)
            });
        }
    }
    (w, txids)
}

fn txid(c: &Connection) -> u64 {
    let hex: String = c.query_row("PRAGMA ltx_txid", [], |r| r.get(0)).unwrap();
    u64::from_str_radix(&hex, 16).unwrap()
}

/// The fork at `target` restores to the source's state at `txid`, page for page.
fn assert_fork_is(source: &WriteTarget, target: &WriteTarget, txid: u64) {
    let forked = target.restore();
    assert_same_pages(&forked, &source.restore_at(txid), 4096);
}

/// A TXID inside a level-1 file of more than one TXID, whose level-0 files are there.
fn inside_a_compacted_file(t: &WriteTarget) -> u64 {
    let (min, max) = (t.files(1).into_iter())
        .find(|(min, max)| max > min)
        .expect("a level-1 file of more than one TXID");
    assert!(t.files(0).iter().any(|f| f.1 == max - 1));
    let _ = min;
    max - 1
}

#[test]
fn fork_on_file_at_latest_past_inside_and_time_then_write() {
    let src = WriteTarget::new("fork-file", Target::File);
    let (w, txids) = source(&src, 8);
    let latest = *txids.last().unwrap();
    let before_time = SystemTime::now();
    std::thread::sleep(Duration::from_millis(30));
    let at_time = format_rfc3339_ms(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    );
    std::thread::sleep(Duration::from_millis(30));
    w.execute("INSERT INTO t VALUES (-1, x'00')", []).unwrap();
    let after_time = txid(&w);
    let _ = before_time;

    // Latest: every file a hard link of the source's.
    let a = src.sibling("fork-latest");
    let answered = fork(&src.url, &a.url, None).unwrap();
    assert_eq!(answered, format!("{after_time:016x}"));
    assert_fork_is(&src, &a, after_time);
    let linked = std::fs::read_dir(a.dir.join("replica/ltx/0")).unwrap();
    for entry in linked {
        assert!(entry.unwrap().metadata().unwrap().nlink() > 1, "hard link");
    }

    // A past TXID on a file boundary, one inside a level-1 file, and a time.
    let past = txids[2];
    let b = src.sibling("fork-past");
    assert_eq!(
        fork(&src.url, &b.url, Some(&format!("{past:x}"))).unwrap(),
        format!("{past:016x}")
    );
    assert_fork_is(&src, &b, past);

    let inside = inside_a_compacted_file(&src);
    let c = src.sibling("fork-inside");
    fork(&src.url, &c.url, Some(&format!("{inside:016x}"))).unwrap();
    assert_fork_is(&src, &c, inside);

    let d = src.sibling("fork-time");
    let answered = fork(&src.url, &d.url, Some(&at_time)).unwrap();
    assert_eq!(
        answered,
        format!("{latest:016x}"),
        "the state written by {at_time}"
    );
    assert_fork_is(&src, &d, latest);

    // A writer on the fork commits the next TXID; the source is unchanged.
    let source_before = src.restore();
    let fw = open_writer(&b.url, "&compaction=off").unwrap();
    fw.execute("INSERT INTO t VALUES (1000, x'01')", [])
        .unwrap();
    assert_eq!(txid(&fw), past + 1);
    drop(fw);
    let restored = b.restore();
    let scratch = b.dir.join("check.db");
    std::fs::write(&scratch, restored).unwrap();
    let n: i64 = Connection::open(&scratch)
        .unwrap()
        .query_row("SELECT count(*) FROM t WHERE n = 1000", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(src.restore(), source_before, "the source is never written");

    // Our reader reads the fork as litestream restores it.
    let reader = open_replica(&a.url, "").unwrap();
    assert_same_pages(
        &read_all_pages(&reader, &a.dir),
        &src.restore_at(after_time),
        4096,
    );
    drop(w);
}

#[test]
fn a_fork_is_refused_a_target_with_files_and_a_state_not_in_the_source() {
    let src = WriteTarget::new("fork-refused", Target::File);
    let (_w, txids) = source(&src, 4);
    let a = src.sibling("fork-a");
    fork(&src.url, &a.url, None).unwrap();
    let err = fork(&src.url, &a.url, None).unwrap_err();
    assert!(
        err.contains(&a.url) && err.contains("no LTX files"),
        "{err}"
    );
    let err = fork(&src.url, &src.url, None).unwrap_err();
    assert!(err.contains("is the source"), "{err}");
    let past_newest = txids.last().unwrap() + 5;
    let err = fork(
        &src.url,
        &src.sibling("fork-b").url,
        Some(&format!("{past_newest:x}")),
    )
    .unwrap_err();
    assert!(err.contains("past its newest"), "{err}");
    assert!(fork(&src.url, &src.sibling("fork-c").url, Some("not a time")).is_err());
}

#[test]
fn two_forks_racing_to_one_target_one_wins() {
    let src = WriteTarget::new("fork-race", Target::File);
    let (_w, txids) = source(&src, 4);
    for round in 0..4 {
        let target = src.sibling(&format!("fork-{round}"));
        // At two TXIDs: they would create different files, so the claim is the arbiter.
        let ats = [txids[1], *txids.last().unwrap()];
        let outcomes: Vec<Result<String, String>> = std::thread::scope(|s| {
            let runs: Vec<_> = (ats.iter())
                .map(|at| {
                    let (src, target) = (&src.url, &target.url);
                    s.spawn(move || fork(src, target, Some(&format!("{at:x}"))))
                })
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let won: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "{outcomes:?}");
        let lost = outcomes.iter().find_map(|o| o.as_ref().err()).unwrap();
        assert!(lost.contains(&target.url), "{lost}");
        let txid = u64::from_str_radix(won[0], 16).unwrap();
        assert_fork_is(&src, &target, txid);
    }
}

#[test]
fn fork_within_s3_is_store_side_and_to_file_streams() {
    let src = WriteTarget::new("fork-s3", Target::S3);
    let (_w, txids) = source(&src, 8);
    let inside = inside_a_compacted_file(&src);
    let a = src.sibling("fork-latest.db");
    fork(&src.url, &a.url, None).unwrap();
    assert_fork_is(&src, &a, *txids.last().unwrap());
    let b = src.sibling("fork-inside.db");
    fork(&src.url, &b.url, Some(&format!("{inside:x}"))).unwrap();
    assert_fork_is(&src, &b, inside);
    // A writer on the fork, and Litestream's VFS reading it.
    let fw = open_writer(&b.url, "&compaction=off").unwrap();
    fw.execute("INSERT INTO t VALUES (1000, x'01')", [])
        .unwrap();
    drop(fw);
    let row =
        ltxvfs_sqlite_tests::litestream_vfs_row(&b.url, "SELECT count(*) FROM t WHERE n = 1000");
    assert_eq!(row, "1");

    // S3 to a directory: the bytes come through this process.
    let dir = WriteTarget::new("fork-s3-to-file", Target::File);
    fork(&src.url, &dir.url, Some(&format!("{:x}", txids[3]))).unwrap();
    assert_fork_is(&src, &dir, txids[3]);
}

#[test]
fn fork_within_azure() {
    let src = WriteTarget::new("fork-azure", Target::Azure);
    let (_w, txids) = source(&src, 4);
    let a = src.sibling("fork.db");
    fork(&src.url, &a.url, Some(&format!("{:x}", txids[2]))).unwrap();
    assert_fork_is(&src, &a, txids[2]);
}

#[test]
fn a_fork_killed_midway_leaves_nothing_a_reader_takes_for_a_database() {
    let src = WriteTarget::new("fork-killed", Target::S3);
    let (_w, txids) = source(&src, 12);
    // Every request of the fork to the source waits: the copies take a while.
    let proxy = FaultProxy::start(&s3_endpoint());
    proxy.control(Some(r#"{"rate": 0, "latency_ms": 400, "jitter_ms": 0}"#));
    let slow = src.url.replacen(&s3_endpoint(), &proxy.endpoint(), 1);
    let target = WriteTarget::new("fork-killed-target", Target::File);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ltx_fork"))
        .args([&slow, &target.url])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ltx_files = |dir: &std::path::Path| -> usize {
        (0..=9)
            .filter_map(|l| std::fs::read_dir(dir.join(format!("replica/ltx/{l}"))).ok())
            .flatten()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".ltx"))
            })
            .count()
    };
    wait_until("the fork's first file", || ltx_files(&target.dir) > 0);
    child.kill().unwrap();
    child.wait().unwrap();
    let left = ltx_files(&target.dir);
    let plan_files = src.files(0).len(); // more than the plan: it was cut short
    assert!(left > 0 && left < plan_files, "{left} files left");
    assert!(
        !target
            .files(0)
            .iter()
            .chain(&target.files(1))
            .chain(&target.files(9))
            .any(|f| f.0 == 1),
        "nothing that starts the database"
    );

    // No reader takes it for a database; litestream restores nothing; a writer refuses it,
    // and so does another fork.
    assert!(
        open_replica(&target.url, "")
            .and_then(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)))
            .is_err()
    );
    assert!(target.try_restore(&[]).is_err());
    assert!(
        open_writer(&target.url, "&compaction=off")
            .and_then(|c| c.execute("INSERT INTO t VALUES (1, x'00')", []))
            .is_err()
    );
    let err = fork(&src.url, &target.url, None).unwrap_err();
    assert!(err.contains(&target.url), "{err}");
    let _ = txids;
}

#[test]
fn a_large_file_streams_between_stores_in_parts() {
    // One commit of ~12 MiB of random pages: more than a copy takes in one request.
    let src = WriteTarget::new("fork-large", Target::S3);
    let w = open_writer(&src.url, "&compaction=off").unwrap();
    w.execute_batch(
        "CREATE TABLE t(n INTEGER, v BLOB);
         WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 4000)
         INSERT INTO t SELECT i, randomblob(3000) FROM k;",
    )
    .unwrap();
    w.execute("UPDATE t SET v = x'00' WHERE n = 7", []).unwrap();
    let last = txid(&w);
    let dir = WriteTarget::new("fork-large-to-file", Target::File);
    fork(&src.url, &dir.url, None).unwrap();
    let big = std::fs::metadata(
        dir.dir
            .join("replica/ltx/0/0000000000000002-0000000000000002.ltx"),
    )
    .unwrap()
    .len();
    assert!(big > 8 << 20, "{big} bytes");
    assert_fork_is(&src, &dir, last);
}

#[test]
fn a_schema_cannot_fork() {
    // ltx_fork is SQLITE_DIRECTONLY: even on a trusted connection, a view or trigger of a
    // database one opens cannot call it.
    let src = WriteTarget::new("fork-schema", Target::File);
    let target = src.sibling("fork-by-view");
    let c = Connection::open_in_memory().unwrap();
    trust(&c);
    c.execute_batch(&format!(
        "CREATE VIEW v AS SELECT ltx_fork('{}', '{}') AS x",
        src.url, target.url
    ))
    .unwrap();
    let err = c
        .query_row("SELECT x FROM v", [], |r| r.get::<_, String>(0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unsafe use of ltx_fork"), "{err}");
    assert!(!target.dir.join("replica").exists());
}
