//! Large transactions stream (issue #23): a transaction larger than its bound
//! (`compaction_buffer`) spills its pages to a private file, and its COMMIT is encoded and
//! uploaded in parts under a temporary name of its own, then copied to its TXID's name only
//! if that is free. On S3 (moto), in writer processes (`ltx_big_txn`) whose peak RSS is
//! measured:
//! - a 48 MiB transaction with a 4 MiB bound: peak RSS within the bound plus a few parts,
//!   its own reads see its spilled pages, and `litestream restore` gives every row back;
//! - two 24 MiB transactions racing for one TXID (on file://, and on S3 one after the
//!   other, see below): one acknowledged, the other BUSY_SNAPSHOT, the store holds the
//!   winner's file only, and no temporary object nor upload is left;
//! - large COMMITs through the fault proxy, and writers SIGKILLed inside one: nothing
//!   acknowledged lost, each transaction stored whole or not at all.

use ltxvfs_sqlite_tests::big_txn::{ROW, row_bytes};
use ltxvfs_sqlite_tests::{FaultProxy, Target, WriteTarget, open_writer, s3_endpoint};
use rusqlite::Connection;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

const BOUND: &str = "&compaction_buffer=4MiB";
/// The peak RSS a large transaction may add: the bound, a few 5 MiB parts (one being
/// encoded, two in flight), and room for the allocator and HTTP buffers.
const PEAK_MOST: u64 = 36 << 20;

fn big_txn(url: &str, tag: &str, mib: usize, extra: &str, gate: Option<&std::path::Path>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ltx_big_txn"));
    cmd.env_remove("AWS_CA_BUNDLE")
        .args([url, tag, &mib.to_string(), extra])
        .stdout(Stdio::piped());
    if let Some(gate) = gate {
        cmd.arg(gate);
    }
    cmd.spawn().unwrap()
}

/// What a finished `ltx_big_txn` printed: its first word per line, to the rest.
fn outcome(child: Child) -> BTreeMap<String, String> {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "ltx_big_txn failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// The restored table `big`: integrity ok, and every row the bytes its writer gave it.
fn assert_restored(t: &WriteTarget, tag: &str, rows: i64) {
    t.restore();
    let r = Connection::open(t.dir.join("restored.db")).unwrap();
    let ok: String = r
        .query_row("PRAGMA integrity_check", [], |x| x.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let mut stmt = r.prepare("SELECT id, tag, v FROM big ORDER BY id").unwrap();
    let mut seen = 0;
    let mut query = stmt.query([]).unwrap();
    while let Some(row) = query.next().unwrap() {
        let (id, got_tag, v): (i64, String, Vec<u8>) = (
            row.get(0).unwrap(),
            row.get(1).unwrap(),
            row.get(2).unwrap(),
        );
        seen += 1;
        assert_eq!((id, got_tag.as_str()), (seen, tag));
        assert!(v == row_bytes(tag, id, ROW), "row {id} differs");
    }
    assert_eq!(seen, rows);
}

/// The answer of moto to an unsigned GET of `path_and_query`.
fn s3_get(path_and_query: &str) -> String {
    let endpoint = s3_endpoint();
    let host = endpoint.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(host).unwrap();
    write!(
        conn,
        "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    text.split(open)
        .skip(1)
        .filter_map(|s| s.split(close).next())
        .collect()
}

#[test]
fn a_large_transaction_streams_within_its_bound_and_restores_equal() {
    let t = WriteTarget::new("write-large-one", Target::S3);
    let mib = 48;
    let got = outcome(big_txn(&t.url, "a", mib, BOUND, None));
    eprintln!("write-large-one: {got:?}");
    assert!(got.contains_key("ok"), "{got:?}");
    assert!(
        got.contains_key("verified"),
        "its reads saw its pages: {got:?}"
    );
    assert!(got.contains_key("read_back"), "{got:?}");
    let peak: u64 = got["peak_over"].parse().unwrap();
    assert!(
        peak <= PEAK_MOST,
        "a {mib} MiB transaction raised peak RSS by {} MiB",
        peak >> 20
    );
    let rows = ((mib << 20) / ROW) as i64;
    assert_restored(&t, "a", rows);
    // The schema, then the large transaction: one file each.
    assert_eq!(t.level0_txids(), vec![1, 2]);
}

/// Two processes each write a 24 MiB transaction over TXID 1, then COMMIT: at once
/// (`together`), or the second once the first is acknowledged. One is acknowledged, the
/// other BUSY_SNAPSHOT; the store holds the winner's file only, and no temporary object.
fn two_large_commits_race(name: &str, target: Target, together: bool) -> WriteTarget {
    let t = WriteTarget::new(name, target);
    // No compaction: what is left in the store is the COMMITs' doing alone.
    let extra = format!("{BOUND}&lease_ttl=off&compaction=off");
    assert!(outcome(big_txn(&t.url, "schema", 0, &extra, None)).contains_key("ok"));
    let gates = [t.dir.join("gate-a"), t.dir.join("gate-b")];
    let mut children: Vec<Child> = ["a", "b"]
        .iter()
        .zip(&gates)
        .map(|(tag, gate)| big_txn(&t.url, tag, 24, &extra, Some(gate)))
        .collect();
    // Both have every page written (and read back) before either COMMITs.
    let mut readers = Vec::new();
    for child in &mut children {
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert!(lines.any(|l| l.unwrap() == "ready"));
        readers.push(lines);
    }
    let mut results = Vec::new();
    if together {
        std::fs::write(&gates[0], b"").unwrap();
        std::fs::write(&gates[1], b"").unwrap();
    } else {
        std::fs::write(&gates[0], b"").unwrap();
        let first = readers[0].next().unwrap().unwrap();
        assert_eq!(first, "ok", "the first COMMIT, alone");
        results.push(("a".to_string(), first));
        std::fs::write(&gates[1], b"").unwrap();
    }
    for ((tag, child), lines) in ["a", "b"].iter().zip(children).zip(readers) {
        let rest: Vec<String> = lines.map(Result::unwrap).collect();
        assert!(child.wait_with_output().unwrap().status.success());
        eprintln!("{name} {tag}: {rest:?}");
        let result = rest
            .iter()
            .find(|l| l.starts_with("ok") || l.starts_with("busy") || l.starts_with("error"));
        if let Some(result) = result {
            results.push((tag.to_string(), result.clone()));
        }
    }
    let winners: Vec<&String> = results
        .iter()
        .filter(|(_, r)| r.starts_with("ok"))
        .map(|(tag, _)| tag)
        .collect();
    assert_eq!((winners.len(), results.len()), (1, 2), "{results:?}");
    assert!(
        results.iter().any(|(_, r)| r == "busy 517"),
        "the other is BUSY_SNAPSHOT: {results:?}"
    );
    assert_eq!(t.level0_txids(), vec![1, 2]);
    assert_restored(&t, winners[0], ((24 << 20) / ROW) as i64);
    t
}

/// On file:// the copy is a hard link, atomic: the two COMMITs race for real.
#[test]
fn two_large_commits_racing_on_file_one_wins_and_nothing_stays() {
    let t = two_large_commits_race("write-large-race-file", Target::File, true);
    let mut left = Vec::new();
    let mut dirs = vec![t.dir.join("replica")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if !path.to_string_lossy().ends_with(".ltx") {
                left.push(path);
            }
        }
    }
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// On S3 the loser's copy meets the winner's file (`If-None-Match: *` on the copy's
/// CompleteMultipartUpload): BUSY, and its temporary object and uploads are gone. (The
/// COMMITs are not sent at the same instant here: moto 5.2.5 checks If-None-Match before it
/// assembles the parts and stores the object, so two completes at once can both pass its
/// check, which S3 itself does not allow; on file:// they are, above.)
#[test]
fn a_large_commit_that_loses_on_s3_is_busy_and_leaves_nothing() {
    let t = two_large_commits_race("write-large-race-s3", Target::S3, false);
    let bucket = t.url.trim_start_matches("s3://").split('/').next().unwrap();
    let keys = s3_get(&format!("/{bucket}?list-type=2"));
    let keys = between(&keys, "<Key>", "</Key>");
    assert!(keys.iter().all(|k| !k.ends_with(".part")), "{keys:?}");
    let uploads = s3_get(&format!("/{bucket}?uploads"));
    assert!(
        between(&uploads, "<UploadId>", "</UploadId>").is_empty(),
        "uploads left: {uploads}"
    );
}

/// Large COMMITs through a faulty network (a tenth of requests: 5xx, resets, bodies cut
/// short, PUTs stored but unanswered): each is OK, BUSY or IOERR; every acknowledged one is
/// restored whole and once, no BUSY one is, an IOERR one whole or not at all.
#[test]
fn large_commits_through_faults_lose_nothing_acknowledged() {
    let t = WriteTarget::new("write-large-faults", Target::S3);
    let proxy = FaultProxy::start(&s3_endpoint());
    let url = t.url.replace(&s3_endpoint(), &proxy.endpoint());
    // A 1 MiB bound: each 2 MiB transaction spills and is streamed.
    let w = open_writer(&url, "&timeout=2s&compaction_buffer=1MiB&lease_ttl=off").unwrap();
    w.execute_batch("CREATE TABLE big(id INTEGER PRIMARY KEY, tag TEXT, v BLOB)")
        .unwrap();
    proxy.control(Some(
        r#"{"rate": 0.1, "kinds": ["500", "503", "reset", "truncate", "short", "lost_put"]}"#,
    ));
    let per = 32;
    let commit = |n: i64| -> rusqlite::Result<()> {
        w.execute_batch("BEGIN")?;
        for i in 0..per {
            let id = n * 1000 + i;
            let tag = format!("c{n}");
            w.execute(
                "INSERT INTO big(id, tag, v) VALUES (?1, ?2, ?3)",
                rusqlite::params![id, tag, row_bytes(&tag, id, ROW)],
            )?;
        }
        w.execute_batch("COMMIT").inspect_err(|_| {
            let _ = w.execute_batch("ROLLBACK");
        })
    };
    let (mut acked, mut busy, mut ioerr) = (Vec::new(), Vec::new(), Vec::new());
    for n in 1..=10 {
        match commit(n) {
            Ok(()) => acked.push(n),
            Err(e) => match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DatabaseBusy) => busy.push(n),
                Some(rusqlite::ErrorCode::SystemIoFailure) => {
                    eprintln!(
                        "large faults: commit {n}: {e}: {:?}",
                        ltxvfs_sqlite_tests::log_lines("ltx")
                    );
                    ioerr.push(n)
                }
                _ => panic!("commit {n}: {e}"),
            },
        }
    }
    proxy.control(Some(r#"{"rate": 0.0}"#));
    eprintln!(
        "large faults: acknowledged {acked:?}, busy {busy:?}, ioerr {ioerr:?}; proxy {}",
        proxy.control(None)
    );
    // Recovered (after at most one BUSY, if an IOERR'd commit was in fact stored).
    assert!(commit(11).or_else(|_| commit(12)).is_ok());
    drop(w);
    t.restore();
    let r = Connection::open(t.dir.join("restored.db")).unwrap();
    let ok: String = r
        .query_row("PRAGMA integrity_check", [], |x| x.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let mut per_commit: BTreeMap<i64, i64> = BTreeMap::new();
    let mut stmt = r.prepare("SELECT id, tag, v FROM big").unwrap();
    let mut rows = stmt.query([]).unwrap();
    while let Some(row) = rows.next().unwrap() {
        let (id, tag, v): (i64, String, Vec<u8>) = (
            row.get(0).unwrap(),
            row.get(1).unwrap(),
            row.get(2).unwrap(),
        );
        assert!(v == row_bytes(&tag, id, ROW), "row {id} differs");
        *per_commit.entry(id / 1000).or_default() += 1;
    }
    for n in &acked {
        assert_eq!(per_commit.get(n), Some(&per), "acknowledged {n}");
    }
    for (n, k) in &per_commit {
        assert_eq!(*k, per, "commit {n} stored in part");
        assert!(
            *n > 10 || acked.contains(n) || ioerr.contains(n),
            "{n} stored but refused with BUSY"
        );
    }
    assert!(acked.len() >= 3, "{} acknowledged", acked.len());
    let txids = t.level0_txids();
    assert_eq!(txids, (1..=txids.len() as u64).collect::<Vec<u64>>());
}

/// Writers SIGKILLed during a large COMMIT, at three moments of it (parts uploading, around
/// the copy): the replica holds each whole transaction or none of it, one acknowledged is
/// stored, and the next writer commits over what is there.
#[test]
fn a_writer_killed_mid_large_commit_leaves_all_or_nothing() {
    let t = WriteTarget::new("write-large-kill", Target::S3);
    let extra = format!("{BOUND}&lease_ttl=off&compaction=off");
    assert!(outcome(big_txn(&t.url, "schema", 0, &extra, None)).contains_key("ok"));
    let mut acknowledged = BTreeMap::new();
    // A 24 MiB COMMIT takes about a second on moto: killed inside it.
    for (round, after_ms) in [300u64, 1200, 3000].into_iter().enumerate() {
        let (tag, gate) = (format!("a{round}"), t.dir.join(format!("gate-{round}")));
        let mut a = big_txn(&t.url, &tag, 24, &extra, Some(&gate));
        let mut lines = BufReader::new(a.stdout.take().unwrap()).lines();
        assert!(lines.any(|l| l.unwrap() == "ready"));
        std::fs::write(&gate, b"").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(after_ms));
        a.kill().unwrap();
        a.wait().unwrap();
        acknowledged.insert(tag, lines.any(|l| l.unwrap() == "ok"));
        let b = outcome(big_txn(&t.url, &format!("b{round}"), 4, &extra, None));
        assert!(b.contains_key("ok"), "{b:?}");
    }
    t.restore();
    let r = Connection::open(t.dir.join("restored.db")).unwrap();
    let ok: String = r
        .query_row("PRAGMA integrity_check", [], |x| x.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let mut per_tag: BTreeMap<String, i64> = BTreeMap::new();
    let mut stmt = r.prepare("SELECT id, tag, v FROM big").unwrap();
    let mut rows = stmt.query([]).unwrap();
    while let Some(row) = rows.next().unwrap() {
        let (id, tag, v): (i64, String, Vec<u8>) = (
            row.get(0).unwrap(),
            row.get(1).unwrap(),
            row.get(2).unwrap(),
        );
        assert!(v == row_bytes(&tag, id, ROW), "row {id} differs");
        *per_tag.entry(tag).or_default() += 1;
    }
    let bucket = t.url.trim_start_matches("s3://").split('/').next().unwrap();
    let keys = s3_get(&format!("/{bucket}?list-type=2"));
    let parts = between(&keys, "<Key>", "</Key>")
        .into_iter()
        .filter(|k| k.ends_with(".part"))
        .count();
    eprintln!(
        "write-large-kill: acknowledged {acknowledged:?}, restored {per_tag:?}, {parts} temporary objects left"
    );
    for (tag, acked) in &acknowledged {
        let n = per_tag.get(tag).copied().unwrap_or(0);
        assert!(n == 0 || n == 384, "{tag} stored in part: {n} rows");
        assert!(!acked || n == 384, "{tag} acknowledged, not stored");
    }
    for round in 0..3 {
        assert_eq!(per_tag.get(&format!("b{round}")), Some(&64));
    }
    let txids = t.level0_txids();
    assert_eq!(txids, (1..=txids.len() as u64).collect::<Vec<u64>>());
}
