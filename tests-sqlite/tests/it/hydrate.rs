//! Hydration: `hydrate=PATH` downloads the database in the background, then serves reads
//! from the local copy and keeps it current; a crash mid-way leaves nothing that a later
//! open takes for a complete copy.

use ltxvfs::ltx::Txid;
use ltxvfs_sqlite_tests::{
    Primary, Target, assert_same_pages, open_replica, stat, util, wait_until,
};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SCHEMA: &str = "
    CREATE TABLE docs(id INTEGER PRIMARY KEY, body BLOB);
    WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < 3000)
    INSERT INTO docs SELECT x, randomblob(1500) FROM i;";

fn pragma(conn: &Connection, name: &str) -> String {
    conn.pragma_query_value(None, name, |r| r.get(0)).unwrap()
}

fn sidecar(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}-ltxvfs-txid", path.display()))
}

fn ready_at(conn: &Connection, txid: Txid) -> bool {
    let h = pragma(conn, "ltx_hydration");
    h.contains("\"state\":\"ready\"") && h.contains(&format!("\"txid\":\"{txid}\""))
}

#[test]
fn hydration_serves_reads_locally_and_keeps_the_copy_current() {
    let primary = Primary::start("0.5.17", "hydrate", SCHEMA, "30s", Target::File);
    let path = primary.dir.join("local.db");
    let txid = primary.settle();
    let conn = open_replica(
        &primary.url(),
        &format!("&poll=200ms&hydrate={}", path.display()),
    )
    .unwrap();
    wait_until("the copy to be ready", || ready_at(&conn, txid));
    assert_eq!(
        std::fs::read_to_string(sidecar(&path)).unwrap(),
        txid.get().to_string()
    );

    let gets = stat(&conn, "get_requests");
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM docs WHERE length(body) = 1500",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 3000);
    assert!(
        stat(&conn, "local_reads") > 100,
        "{}",
        pragma(&conn, "ltx_stats")
    );
    assert_eq!(
        stat(&conn, "get_requests"),
        gets,
        "reads should not reach the store"
    );

    // The primary changes; the copy follows, and equals litestream restore at that TXID.
    primary.commit(
        "UPDATE docs SET body = zeroblob(10) WHERE id % 7 = 0; DELETE FROM docs WHERE id > 2900",
    );
    let next = primary.settle();
    wait_until("the copy to follow", || ready_at(&conn, next));
    let restored = primary.restore(next, &primary.dir.join("restored.db"));
    assert_same_pages(&std::fs::read(&path).unwrap(), &restored, 4096);

    // Closed and opened again (a restart): the complete copy is resumed, not downloaded.
    drop(conn);
    std::thread::sleep(Duration::from_millis(500)); // the old hydrator notices and exits
    let conn = open_replica(&primary.url(), &format!("&hydrate={}", path.display())).unwrap();
    wait_until("the resumed copy to be ready", || ready_at(&conn, next));
    let fetched = stat(&conn, "bytes_fetched");
    assert!(fetched < 1 << 20, "resuming fetched {fetched} bytes");
}

#[test]
fn a_crash_mid_hydration_leaves_nothing_taken_for_a_complete_copy() {
    let primary = Primary::start("0.5.17", "hydrate-crash", SCHEMA, "30s", Target::File);
    let txid = primary.settle();
    let restored = primary.restore(txid, &primary.dir.join("restored.db"));
    let path = primary.dir.join("local.db");
    let lib = util::repo_dir().join("target/release/libltxvfs");
    assert!(lib.with_extension("so").is_file(), "make build first");

    // Processes that hydrate, killed at various moments.
    for delay_ms in [5u64, 30, 80, 200, 600] {
        let script = format!(
            "import sqlite3, time\nl = sqlite3.connect(':memory:'); l.enable_load_extension(True); l.load_extension({:?})\nc = sqlite3.connect('file:app.db?vfs=ltx&replica={}&hydrate={}', uri=True)\ntime.sleep(30)\n",
            lib.display().to_string(),
            primary.url(),
            path.display()
        );
        let mut child = std::process::Command::new("/usr/bin/python3")
            .args(["-c", &script])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL: no cleanup runs
        child.wait().unwrap();
        if let Ok(marked) = std::fs::read_to_string(sidecar(&path)) {
            assert_eq!(marked, txid.get().to_string());
            assert_same_pages(&std::fs::read(&path).unwrap(), &restored, 4096);
        }
    }

    // A stale copy without its sidecar is not trusted: it is downloaded again.
    std::fs::write(&path, b"not a database").unwrap();
    let _ = std::fs::remove_file(sidecar(&path));
    let conn = open_replica(&primary.url(), &format!("&hydrate={}", path.display())).unwrap();
    wait_until("the copy to be ready", || ready_at(&conn, txid));
    assert_same_pages(&std::fs::read(&path).unwrap(), &restored, 4096);
}
