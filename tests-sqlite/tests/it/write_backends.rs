//! Write mode (`write=1`, issue #14) on every backend, and read by another reader than ours:
//! - on Azure (Azurite, `az://`) and GCS (fake-gcs-server, `gs://...?endpoint=`), one writer's
//!   mixed transactions give the pages of a shadow database that got the same statements,
//!   a writer that did not see another's commit is refused by the store, and two writer
//!   processes racing lose and duplicate nothing: the store's conditional create
//!   (`If-None-Match: *` on Azure, `ifGenerationMatch=0` on GCS) is the arbiter;
//! - Litestream's own VFS (PyPI litestream-vfs 0.5.17) reads a replica ltxvfs wrote, on S3
//!   (moto) and `file://`, as ltxvfs and the shadow do.
//!
//! On GCS the writers go through a proxy (`gcs_upload_proxy` in `src/write_target.rs`) that turns
//! object_store's XML-API upload (that fake-gcs-server 1.54 lacks) into the emulator's JSON
//! one, condition included; every other request, and every reader, goes to the emulator.

use crate::write::{Lcg, both, summary, two_writer_processes_race};
use ltxvfs_sqlite_tests::{
    Target, WriteTarget, assert_same_pages, open_replica, open_writer, read_all_pages,
};
use rusqlite::{Connection, params};
use std::collections::BTreeMap;
use std::process::Command;

const SCHEMA: &str = "CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, n INTEGER, v BLOB);
                      CREATE INDEX t_k ON t(k);";

/// Transaction `i` of a mixed workload: inserts (a third of them with an overflow BLOB of
/// 5 to 20 KiB), updates (some growing a row into overflow pages) and deletes, all through
/// the index on `k` too.
fn mixed_transaction(w: &Connection, shadow: &Connection, rng: &mut Lcg, i: i64) {
    let op = rng.next() % 10;
    let len = if rng.next().is_multiple_of(3) {
        5 * 1024 + rng.next() % (15 * 1024)
    } else {
        rng.next() % 300
    };
    let blob = rng.bytes(len as usize);
    let key = format!("k{}", rng.next() % 500);
    let id = (rng.next() % (2 * i as u64 + 1)) as i64;
    both(w, shadow, |c| {
        match op {
            0..=5 => {
                c.execute(
                    "INSERT INTO t(k, n, v) VALUES (?1, ?2, ?3)",
                    params![key, i, blob],
                )?;
                c.execute(
                    "INSERT INTO t(k, n, v) VALUES (?1, ?2, zeroblob(?3))",
                    params![format!("{key}-small"), -i, i % 40],
                )?;
            }
            6 | 7 => {
                c.execute(
                    "UPDATE t SET v = ?1, n = n + 1, k = ?2 WHERE id = ?3",
                    params![blob, key, id],
                )?;
            }
            _ => {
                c.execute(
                    "DELETE FROM t WHERE id BETWEEN ?1 AND ?1 + 2 OR k = ?2",
                    params![id, key],
                )?;
            }
        }
        Ok(())
    });
}

fn integrity(c: &Connection) -> String {
    c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

fn page_count(c: &Connection) -> i64 {
    c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap()
}

/// One writer commits `commits` mixed transactions to `target`; the replica then equals a
/// shadow database that got the same statements, page for page, as `litestream restore`
/// gives it and as a reader that knows only what it reads from the store (another spelling
/// of the URL: another `Replica` in this process) reads it. One level-0 file per COMMIT
/// that changed a page, TXIDs 1, 2, 3, ... with none missing.
fn one_writer_matches_its_shadow(name: &str, target: Target, commits: i64) {
    let t = WriteTarget::new(name, target);
    let w = open_writer(&t.url, "").unwrap();
    // A page cache of 8 pages: large transactions spill pages before their COMMIT.
    w.execute_batch("PRAGMA cache_size = 8").unwrap();
    let shadow = Connection::open(t.dir.join("shadow.db")).unwrap();
    both(&w, &shadow, |c| c.execute_batch(SCHEMA));
    let mut rng = Lcg(11);
    for i in 1..=commits {
        mixed_transaction(&w, &shadow, &mut rng, i);
    }
    assert_eq!(summary(&w), summary(&shadow));
    drop(w);
    let overflowing: i64 = shadow
        .query_row("SELECT count(*) FROM t WHERE length(v) > 5000", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(overflowing >= 5, "{overflowing} rows with overflow pages");
    let shadow_bytes = std::fs::read(t.dir.join("shadow.db")).unwrap();

    let restored = t.restore();
    assert_same_pages(&restored, &shadow_bytes, 4096);
    assert_eq!(
        integrity(&Connection::open(t.dir.join("restored.db")).unwrap()),
        "ok"
    );
    let reader = open_replica(&t.other_url, "").unwrap();
    assert_same_pages(&read_all_pages(&reader, &t.dir), &shadow_bytes, 4096);
    assert_eq!(integrity(&reader), "ok");
    assert_eq!(summary(&reader), summary(&shadow));
    // A transaction that changed nothing (an UPDATE or DELETE that matched no row) stores
    // nothing; the shadow's file change counter counts the others.
    let changed = u32::from_be_bytes(shadow_bytes[24..28].try_into().unwrap());
    assert!(
        changed as i64 > commits / 2,
        "{changed} commits changed pages"
    );
    let txids = t.level0_txids();
    assert_eq!(txids, (1..=u64::from(changed)).collect::<Vec<u64>>());
}

#[test]
fn one_writer_on_azure_matches_its_shadow() {
    one_writer_matches_its_shadow("write-one-azure", Target::Azure, 60);
}

#[test]
fn one_writer_on_gcs_matches_its_shadow() {
    one_writer_matches_its_shadow("write-one-gcs", Target::Gcs, 60);
}

#[test]
fn two_writer_processes_on_azure_lose_nothing() {
    two_writer_processes_race("write-race-azure", Target::Azure, 30);
}

#[test]
fn two_writer_processes_on_gcs_lose_nothing() {
    two_writer_processes_race("write-race-gcs", Target::Gcs, 30);
}

/// Two writers that do not see each other's commits (two spellings of the URL, so two
/// `Replica`s; no polling) both commit TXID 3. ltxvfs lists nothing before it creates, so
/// only the store's conditional create can refuse the second: SQLITE_BUSY_SNAPSHOT, nothing
/// of its transaction stored, and its next transaction reads the winner's and commits.
fn a_lost_race_is_refused_by_the_store(name: &str, target: Target) {
    let t = WriteTarget::new(name, target);
    // Without the writers' lease, which would make `b` wait its turn (write_lease.rs):
    // here the store alone refuses the loser.
    let a = open_writer(&t.url, "&poll=0&lease_ttl=off").unwrap();
    a.execute_batch(
        "BEGIN; CREATE TABLE t(who TEXT, v BLOB); INSERT INTO t VALUES ('a', zeroblob(9000)); COMMIT;",
    )
    .unwrap();
    let b_url = match target {
        // Still through the upload proxy (an endpoint without a scheme gets http://).
        Target::Gcs => t.url.replace("endpoint=http://", "endpoint="),
        _ => t.other_url.clone(),
    };
    assert_ne!(b_url, t.url);
    let b = open_writer(&b_url, "&poll=0&lease_ttl=off").unwrap();
    let count = |c: &Connection| -> i64 {
        c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(count(&b), 1);
    a.execute("INSERT INTO t VALUES ('a', randomblob(5000))", [])
        .unwrap();
    let err = b
        .execute("INSERT INTO t VALUES ('b', randomblob(5000))", [])
        .unwrap_err();
    assert_eq!(
        err.sqlite_error().map(|e| e.extended_code),
        Some(517),
        "{err}"
    );
    let why: String = b
        .query_row("PRAGMA ltx_last_error", [], |r| r.get(0))
        .unwrap();
    assert!(why.contains("another writer committed TXID"), "{why}");
    assert_eq!(t.level0_txids(), vec![1, 2]);
    assert_eq!(count(&b), 2, "b reads a's commit");
    b.execute("INSERT INTO t VALUES ('b', randomblob(5000))", [])
        .unwrap();
    assert_eq!(t.level0_txids(), vec![1, 2, 3]);
    t.restore();
    let r = Connection::open(t.dir.join("restored.db")).unwrap();
    let rows: Vec<(String, i64)> = r
        .prepare("SELECT who, length(v) FROM t ORDER BY rowid")
        .unwrap()
        .query_map([], |x| Ok((x.get(0)?, x.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let want = [("a", 9000), ("a", 5000), ("b", 5000)].map(|(w, n)| (w.to_owned(), n));
    assert_eq!(rows, want);
}

#[test]
fn a_lost_race_on_azure_is_refused_by_the_store() {
    a_lost_race_is_refused_by_the_store("write-lost-race-azure", Target::Azure);
}

#[test]
fn a_lost_race_on_gcs_is_refused_by_the_store() {
    a_lost_race_is_refused_by_the_store("write-lost-race-gcs", Target::Gcs);
}

/// Run by the system python3 (whose sqlite3 module loads extensions): reads the shadow
/// database plainly, then the replica through Litestream's VFS (`LITESTREAM_REPLICA_URL`),
/// and prints, per query, `same` or what Litestream's VFS answered instead. The shadow is
/// opened before the extension is loaded: after that, opening any database that is not
/// Litestream's fails in the process (its auto-extension refuses other connections).
const LITESTREAM_VFS_READ: &str = r#"
import sqlite3, sys
lib, shadow_path = sys.argv[1], sys.argv[2]
queries = {
    "summary": "SELECT count(*), coalesce(sum(length(v)), 0), coalesce(sum(n), 0) FROM t",
    "rows": "SELECT id, k, n, v FROM t ORDER BY id",
    "index": "SELECT k, id FROM t INDEXED BY t_k ORDER BY k, id",
    "integrity_check": "PRAGMA integrity_check",
    "page_count": "PRAGMA page_count",
}
shadow = sqlite3.connect(shadow_path)
want = {name: shadow.execute(q).fetchall() for name, q in queries.items()}
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(lib)
db = sqlite3.connect("file:app.db?vfs=litestream", uri=True)
for name, q in queries.items():
    try:
        got = db.execute(q).fetchall()
    except Exception as e:
        print(f"{name}\terror: {e}")
        continue
    if got == want[name]:
        print(f"{name}\tsame")
    elif name == "integrity_check":
        print(f"{name}\t" + ";".join(line for row in got for line in row[0].splitlines()))
    elif name == "page_count":
        print(f"{name}\t{got[0][0]}")
    elif name == "rows":
        print(f"{name}\t{len(got)} rows, {len(want[name])} wanted, first differing id "
              f"{next((a[0] for a, b in zip(got, want[name]) if a != b), None)}")
    else:
        print(f"{name}\t{got[:5]!r}")
"#;

/// What Litestream's VFS answered for each query of [`LITESTREAM_VFS_READ`].
fn read_through_litestream_vfs(
    replica_url: &str,
    shadow: &std::path::Path,
) -> BTreeMap<String, String> {
    let lib = ltxvfs_sqlite_tests::litestream_vfs_lib();
    let output = Command::new("/usr/bin/python3")
        .env_remove("AWS_CA_BUNDLE")
        .env("LITESTREAM_REPLICA_URL", replica_url)
        .args(["-c", LITESTREAM_VFS_READ])
        .arg(&lib)
        .arg(shadow)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A few hundred mixed transactions through ltxvfs, then a VACUUM that shrinks the file,
/// then a few more: Litestream's VFS reads the rows, the index and the totals as the shadow
/// database holds them, and so does an ltxvfs reader (page for page).
fn litestream_vfs_reads_what_ltxvfs_wrote(name: &str, target: Target) {
    let t = WriteTarget::new(name, target);
    let w = open_writer(&t.url, "").unwrap();
    let shadow_path = t.dir.join("shadow.db");
    let shadow = Connection::open(&shadow_path).unwrap();
    both(&w, &shadow, |c| c.execute_batch(SCHEMA));
    let mut rng = Lcg(5);
    for i in 1..=200 {
        mixed_transaction(&w, &shadow, &mut rng, i);
    }
    let before_vacuum = page_count(&w);
    for c in [&w, &shadow] {
        c.execute_batch("DELETE FROM t WHERE id % 4 != 0; VACUUM;")
            .unwrap();
    }
    let after_vacuum = page_count(&w);
    assert!(
        after_vacuum < before_vacuum / 2,
        "{before_vacuum} -> {after_vacuum}"
    );
    for i in 201..=230 {
        mixed_transaction(&w, &shadow, &mut rng, i);
    }
    assert!(
        page_count(&w) < before_vacuum,
        "still smaller than before the VACUUM"
    );
    assert_eq!(summary(&w), summary(&shadow));
    drop(w);
    assert_eq!(integrity(&shadow), "ok");
    drop(shadow);

    let reader = open_replica(&t.other_url, "").unwrap();
    assert_eq!(
        summary(&reader),
        summary(&Connection::open(&shadow_path).unwrap())
    );
    assert_same_pages(
        &read_all_pages(&reader, &t.dir),
        &std::fs::read(&shadow_path).unwrap(),
        4096,
    );

    let seen = read_through_litestream_vfs(&t.url, &shadow_path);
    eprintln!("{name}: Litestream's VFS: {seen:?}");
    for query in ["summary", "rows", "index"] {
        assert_eq!(
            seen.get(query).map(String::as_str),
            Some("same"),
            "{query}: {seen:?}"
        );
    }
    // Litestream's VFS 0.5.17 sizes the file by the highest page number it ever indexed,
    // not by the newest header's commit (its FileSize; ltx-and-litestream.md 3.10), and
    // its page 1 carries a random change counter, so SQLite takes that size: after the
    // VACUUM it reports the size from before, and integrity_check finds the pages past the
    // end "never used". Everything inside the database reads right (above); allow exactly
    // that, and "ok"/the right size should a later version size the file by its commit.
    let pages = page_count(&Connection::open(&shadow_path).unwrap());
    match seen.get("page_count").map(String::as_str) {
        Some("same") => assert_eq!(seen["integrity_check"], "same", "{seen:?}"),
        Some(n) => {
            // The highest page it indexed: from before the VACUUM, unless the files it read
            // were compacted past it meanwhile (the ladder drops pages above a commit).
            let n: i64 = n.parse().unwrap_or_else(|_| panic!("{seen:?}"));
            assert!(n > pages && n <= before_vacuum, "{n}: {seen:?}");
            let never_used: Vec<String> = (pages + 1..=n)
                .map(|p| format!("Page {p} is never used"))
                .collect();
            assert_eq!(
                seen["integrity_check"],
                format!("*** in database main ***;{}", never_used.join(";")),
                "{seen:?}"
            );
        }
        None => panic!("{seen:?}"),
    }
}

#[test]
fn litestream_vfs_reads_a_file_replica_ltxvfs_wrote() {
    litestream_vfs_reads_what_ltxvfs_wrote("write-litestream-vfs-file", Target::File);
}

#[test]
fn litestream_vfs_reads_an_s3_replica_ltxvfs_wrote() {
    litestream_vfs_reads_what_ltxvfs_wrote("write-litestream-vfs-s3", Target::S3);
}
