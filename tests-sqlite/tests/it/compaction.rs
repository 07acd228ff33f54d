//! The writer keeps its replica short (issue #15): levels compacted on short intervals,
//! snapshots, retention. A cold reader's plan stays at a few files, `litestream restore`
//! reads what the writer wrote, and old files go.

use ltxvfs_sqlite_tests::{
    Target, WriteTarget, create_writer_tables, kill_writer_when, litestream_vfs_row, open_replica,
    open_writer, stat, wait_until,
};
use rusqlite::Connection;
use std::time::{Duration, Instant};

/// Intervals short enough for a test: level 1 every 1 s, 2 every 3 s, 3 every 9 s, a
/// snapshot every 4 s kept for 5 s, level-0 files kept 2 s after level 1 covers them.
const LADDER: &str =
    "&compaction=1s,3s,9s&snapshot_interval=4s&l0_retention=2s&retention=5s&compaction_buffer=1MiB";

fn rows(c: &Connection) -> (i64, i64) {
    c.query_row(
        "SELECT count(*), coalesce(sum(length(v)), 0) FROM t",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

/// How many files a cold reader's plan takes (another spelling of the URL: a replica of
/// its own in this process).
fn cold_plan_files(url: &str) -> u64 {
    let other = url.replacen("file://", "file://localhost", 1);
    let r = open_replica(&other, "&poll=0").unwrap();
    r.query_row("SELECT count(*) FROM t", [], |x| x.get::<_, i64>(0))
        .unwrap();
    stat(&r, "files")
}

#[test]
fn a_writer_keeps_its_replica_short() {
    let t = WriteTarget::new("compaction-short", Target::File);
    let w = open_writer(&t.url, LADDER).unwrap();
    w.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB); CREATE INDEX tv ON t(v);")
        .unwrap();
    let started = Instant::now();
    let mut commits = 1;
    let mut checked = 0;
    while started.elapsed() < Duration::from_secs(12) {
        if started.elapsed() > Duration::from_secs(3 + 3 * checked) {
            // While the ladder runs: `litestream restore` of the state at this TXID (its
            // level-0 file is still there) equals the writer's.
            checked += 1;
            let txid: String = w.query_row("PRAGMA ltx_txid", [], |x| x.get(0)).unwrap();
            let txid = u64::from_str_radix(&txid, 16).unwrap();
            t.restore_at(txid);
            let restored = Connection::open(t.dir.join("restored.db")).unwrap();
            assert_eq!(rows(&restored), rows(&w), "at TXID {txid}");
        }
        let len = 50 + (commits * 37) % 3000;
        w.execute("INSERT INTO t(v) VALUES (randomblob(?1))", [len as i64])
            .unwrap();
        if commits % 50 == 0 {
            w.execute("DELETE FROM t WHERE id % 7 = 0", []).unwrap();
        }
        commits += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the ladder and retention catch up with the last commits.
    std::thread::sleep(Duration::from_secs(6));
    let report: String = w
        .query_row("PRAGMA ltx_compaction", [], |x| x.get(0))
        .unwrap();
    assert!(
        report.contains("\"level\":1") && report.contains("\"error\":null"),
        "{report}"
    );
    assert!(!report.contains("\"snapshot\":null"), "{report}");

    let level0 = t.level0_txids();
    assert!(
        level0.len() < commits / 4,
        "{} level-0 files left of {commits} commits",
        level0.len()
    );
    let plan = cold_plan_files(&t.url);
    assert!(
        plan <= 8,
        "a cold reader's plan takes {plan} files: {report}"
    );

    let ours = rows(&w);
    t.restore();
    let restored = Connection::open(t.dir.join("restored.db")).unwrap();
    assert_eq!(rows(&restored), ours);
    let ok: String = restored
        .query_row("PRAGMA integrity_check", [], |x| x.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let snapshots = std::fs::read_dir(t.dir.join("replica/ltx/9"))
        .unwrap()
        .count();
    assert!((1..=3).contains(&snapshots), "{snapshots} snapshots kept");
    assert!(checked >= 3);
    // Litestream's own VFS reads the compacted replica too.
    let theirs = litestream_vfs_row(&t.url, "SELECT count(*), sum(length(v)) FROM t");
    assert_eq!(theirs, format!("{}|{}", ours.0, ours.1));
}

/// A writer process SIGKILLed again and again while its ladder runs every few hundred
/// milliseconds (so some kills land mid-compaction or mid-snapshot): each restart goes on,
/// nothing acknowledged is lost, and the replica converges to a short plan.
#[test]
fn a_writer_killed_while_compacting_leaves_a_readable_replica() {
    let t = WriteTarget::new("compaction-sigkill", Target::File);
    let fast = "&compaction=200ms,600ms&snapshot_interval=800ms&l0_retention=300ms&retention=2s";
    create_writer_tables(&t.url, fast);
    let mut acked: Vec<(String, i64)> = Vec::new();
    for round in 0..4 {
        let until = Instant::now() + Duration::from_millis(900 + 250 * round);
        let bin = env!("CARGO_BIN_EXE_ltx_writer");
        let tag = format!("k{round}");
        acked.extend(kill_writer_when(bin, &t.url, &tag, fast, |_| {
            Instant::now() >= until
        }));
        // Between kills, a cold reader reads the replica whole.
        let other = t.url.replacen("file://", "file://localhost", 1);
        let r = open_replica(&other, "&poll=0").unwrap();
        let ok: String = r
            .query_row("PRAGMA integrity_check", [], |x| x.get(0))
            .unwrap();
        assert_eq!(ok, "ok", "after kill {round}");
    }
    let w = open_writer(&t.url, fast).unwrap();
    w.execute("INSERT INTO t VALUES ('after', 0)", []).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let report: String = w
        .query_row("PRAGMA ltx_compaction", [], |x| x.get(0))
        .unwrap();
    let plan = cold_plan_files(&t.url);
    assert!(plan <= 6, "plan of {plan} files: {report}");
    drop(w);
    let rows = t.restored_rows();
    for a in &acked {
        assert_eq!(rows.get(a), Some(&1), "acknowledged {a:?}");
    }
    assert!(acked.len() > 100, "{} commits", acked.len());
}

/// A database many times the compaction buffer (on file://, 100 times): its snapshot is
/// streamed to the store in parts, the process's peak memory grows by far less than the
/// database, and `litestream restore` reads the replica from the snapshot.
fn a_large_snapshot_stays_within_bounds(name: &str, target: Target, count: u32) {
    let t = WriteTarget::new(name, target);
    let w = open_writer(&t.url, "&compaction=off").unwrap();
    w.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
        .unwrap();
    // One transaction: the snapshot is then all the ladder has to do.
    w.execute_batch(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count})
             INSERT INTO t(v) SELECT randomblob(4000) FROM n;"
    ))
    .unwrap();
    let ours = rows(&w);
    drop(w);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ltx_snapshot"))
        .args([
            &t.url,
            "&compaction=1h&snapshot_interval=1s&compaction_buffer=1MiB&cache_size=4MiB",
        ])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{line} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| -> u64 {
        let at = line.find(name).unwrap() + name.len() + 1;
        line[at..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let grew_mib = (field("hwm_kib") - field("rss_kib")) / 1024;
    assert!(
        line.contains("\"snapshot\":{") && line.contains("\"error\":null"),
        "{line}"
    );
    // The buffer, a few upload parts of 5 MiB (S3's smallest), the allocator's arenas:
    // 28–41 MiB measured on file://; half of the 103 MiB database at most.
    assert!(
        grew_mib < 52,
        "the snapshot of ~103 MiB took {grew_mib} MiB more: {line}"
    );
    t.restore();
    let restored = Connection::open(t.dir.join("restored.db")).unwrap();
    assert_eq!(rows(&restored), ours);
}

#[test]
fn a_large_snapshot_on_file_stays_within_bounds() {
    a_large_snapshot_stays_within_bounds("compaction-large-file", Target::File, 25_600);
}

#[test]
fn a_large_snapshot_on_s3_stays_within_bounds() {
    // Smaller: 12 MiB still takes three parts; moto is slow with large bodies.
    a_large_snapshot_stays_within_bounds("compaction-large-s3", Target::S3, 3_000);
}

#[test]
fn a_large_snapshot_on_azure_stays_within_bounds() {
    a_large_snapshot_stays_within_bounds("compaction-large-azure", Target::Azure, 3_000);
}

// Not on GCS: fake-gcs-server has no XML multipart uploads ("invalid uploadType"), the
// path object_store takes for a file in parts; small files are created there as commits are.

/// Level 1 every 10 ms, so passes of the writer's compactor 2.5 ms apart (a quarter of its
/// shortest interval), and one every 16 commits besides: passes back to back.
const BACK_TO_BACK: &str =
    "&compaction=10ms,50ms,250ms&snapshot_interval=500ms&l0_retention=100ms&retention=1s";

/// Panics if a level of the replica has a hole: a file that starts past the end + 1 of
/// the files before it (Litestream reads a level as a contiguous run). Files wholly under
/// the newest snapshot listed before are left out: retention removes them (as Litestream
/// does), in no particular order.
fn assert_whole(t: &WriteTarget, level: u8, when: &str) {
    let floor = t.files(9).iter().map(|f| f.1).max().unwrap_or(0);
    let files = t.files(level);
    let mut reach: Option<u64> = None;
    for &(min, max) in files.iter().filter(|f| f.1 > floor) {
        if let Some(r) = reach {
            assert!(
                min <= r + 1,
                "{when}: level {level} has a hole before {min:x}-{max:x}: {files:x?} (snapshot to {floor:x})"
            );
        }
        reach = Some(reach.map_or(max, |r| r.max(max)));
    }
}

/// Compaction passes back to back while commits land (inserts, deletes, a VACUUM now and
/// then): after every commit each level of the ladder is whole from its first file; after
/// retention has trimmed level 0, the newest state restores through `litestream restore`
/// and reads through Litestream's VFS as the writer has it.
fn passes_back_to_back_keep_every_level_whole(name: &str, target: Target, commits: i64) {
    let t = WriteTarget::new(name, target);
    let w = open_writer(&t.url, BACK_TO_BACK).unwrap();
    w.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);")
        .unwrap();
    let mut level1 = std::collections::BTreeSet::new();
    for i in 1..=commits {
        let sql = match i % 97 {
            0 => "DELETE FROM t WHERE id % 3 = 0; VACUUM;".to_owned(),
            n if n % 20 == 0 => "DELETE FROM t WHERE id % 5 = 0".to_owned(),
            _ => format!(
                "INSERT INTO t(v) VALUES (randomblob({}))",
                50 + i * 37 % 2000
            ),
        };
        w.execute_batch(&sql).unwrap();
        for level in 1..=3 {
            assert_whole(&t, level, &format!("after commit {i}"));
        }
        level1.extend(t.files(1));
    }
    // Retention trims level 0 (and what snapshots cover) behind the last passes.
    std::thread::sleep(Duration::from_millis(1500));
    for level in 1..=3 {
        assert_whole(&t, level, "at the end");
    }
    assert!(
        level1.len() as i64 >= commits / 16,
        "only {} level-1 files made over {commits} commits",
        level1.len()
    );
    let level0 = t.level0_txids();
    assert!(
        (level0.len() as i64) < commits / 2,
        "{} level-0 files left",
        level0.len()
    );
    let report: String = w
        .query_row("PRAGMA ltx_compaction", [], |x| x.get(0))
        .unwrap();
    assert!(report.contains("\"error\":null"), "{report}");
    eprintln!(
        "{name}: {} level-1 files over {commits} commits; {} level-0 files left; levels 1-3 now {:?} {:?} {:?}; {report}",
        level1.len(),
        level0.len(),
        t.files(1),
        t.files(2),
        t.files(3)
    );
    let ours = rows(&w);
    drop(w);
    t.restore();
    let restored = Connection::open(t.dir.join("restored.db")).unwrap();
    assert_eq!(rows(&restored), ours);
    let theirs = litestream_vfs_row(&t.url, "SELECT count(*), sum(length(v)) FROM t");
    assert_eq!(theirs, format!("{}|{}", ours.0, ours.1));
}

#[test]
fn passes_back_to_back_keep_every_level_whole_on_file() {
    passes_back_to_back_keep_every_level_whole("compaction-back-to-back", Target::File, 300);
}

#[test]
fn passes_back_to_back_keep_every_level_whole_on_s3() {
    passes_back_to_back_keep_every_level_whole("compaction-back-to-back-s3", Target::S3, 80);
}

/// Two writer processes take turns on one replica (file://, no lease), each with passes
/// back to back and level-0 files kept only 100 ms: their compactors list and make files
/// while the other's land, and a writer's base is often older than `l0_retention`.
/// Throughout, no level has a hole; at the end every acknowledged row restores.
#[test]
fn two_writers_passes_back_to_back_keep_every_level_whole() {
    let t = WriteTarget::new("compaction-back-to-back-two", Target::File);
    create_writer_tables(&t.url, BACK_TO_BACK);
    let bin = env!("CARGO_BIN_EXE_ltx_writer");
    let writers: Vec<std::process::Child> = ["a", "b"]
        .iter()
        .map(|tag| {
            std::process::Command::new(bin)
                .args([&t.url, *tag, "150", BACK_TO_BACK])
                .env_remove("AWS_CA_BUNDLE")
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut checks = 0;
    let mut writers = writers;
    while writers.iter_mut().any(|w| w.try_wait().unwrap().is_none()) {
        for level in 1..=3 {
            assert_whole(&t, level, &format!("check {checks}"));
        }
        checks += 1;
    }
    let mut acked = Vec::new();
    for (w, tag) in writers.into_iter().zip(["a", "b"]) {
        let out = w.wait_with_output().unwrap();
        assert!(out.status.success());
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        acked.extend(
            stdout
                .lines()
                .filter_map(|l| l.strip_prefix("ok "))
                .map(|n| (tag.to_owned(), n.parse::<i64>().unwrap())),
        );
    }
    for level in 1..=3 {
        assert_whole(&t, level, "at the end");
    }
    eprintln!("{checks} checks; level 1 {:?}", t.files(1));
    let rows = t.restored_rows();
    for a in &acked {
        assert_eq!(rows.get(a), Some(&1), "acknowledged {a:?}");
    }
    assert_eq!(acked.len(), 300);
}

/// A writer whose transaction began before another writer's commits, which compaction has
/// since merged into level 1 and retention removed from level 0: its COMMIT is refused
/// (BUSY), not stored under a TXID name retention freed, and what restores is what was
/// acknowledged. (Without the check of `writer/newest.rs` the COMMIT succeeded, its file was
/// in no plan, and level 0 held a second TXID 2 beside the one level 1 had merged.)
#[test]
fn a_stale_writer_cannot_take_a_txid_retention_freed() {
    let t = WriteTarget::new("compaction-stale-writer", Target::File);
    let fast = "&compaction=50ms,200ms&snapshot_interval=1h&l0_retention=100ms&retention=1h";
    let a = open_writer(&t.url, fast).unwrap();
    a.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT);")
        .unwrap();
    a.execute_batch("BEGIN IMMEDIATE; INSERT INTO t(who) VALUES ('a');")
        .unwrap();
    // Another spelling of the URL: another replica, as another process would have it.
    let other = t.url.replacen("file://", "file://localhost", 1);
    let b = open_writer(&other, fast).unwrap();
    for _ in 0..20 {
        b.execute_batch("INSERT INTO t(who) VALUES ('b')").unwrap();
    }
    wait_until("level 0 trimmed under level 1", || t.files(0).len() == 1);
    let committed = a.execute_batch("COMMIT");
    drop(b);
    let _ = a.execute_batch("ROLLBACK");
    drop(a);
    t.restore();
    let restored = Connection::open(t.dir.join("restored.db")).unwrap();
    let a_rows: i64 = restored
        .query_row("SELECT count(*) FROM t WHERE who = 'a'", [], |x| x.get(0))
        .unwrap();
    assert_eq!(
        (committed.is_ok(), a_rows),
        (false, 0),
        "A's COMMIT {committed:?}; level 0 {:?}, level 1 {:?}",
        t.files(0),
        t.files(1)
    );
}
