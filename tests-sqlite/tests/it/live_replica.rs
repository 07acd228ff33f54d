//! A live primary under the real `litestream replicate`, a writer committing while it runs,
//! then the replica read through the VFS: every page equals `litestream restore` at the same
//! TXID, and queries equal the primary's. The same for a `file://` replica, for one in a
//! bucket of a real S3-compatible server, for one in a container of the Azure blob emulator
//! and for one in a bucket of a GCS emulator, all on 127.0.0.1.

use ltxvfs_sqlite_tests::{
    Primary, Target, assert_same_pages, open_replica, read_all_pages, wait_until,
};
use rusqlite::Connection;

const SCHEMA: &str = "
    CREATE TABLE accounts(id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL);
    CREATE INDEX accounts_owner ON accounts(owner);
    CREATE TABLE events(seq INTEGER PRIMARY KEY, account INTEGER, note TEXT, payload BLOB);
";

const QUERIES: &[&str] = &[
    "SELECT count(*), sum(balance), min(owner), max(owner) FROM accounts",
    "SELECT owner, count(*), sum(balance) FROM accounts GROUP BY owner ORDER BY owner",
    "SELECT count(*), sum(length(payload)), max(seq) FROM events",
    "SELECT a.owner, count(e.seq) FROM accounts a LEFT JOIN events e ON e.account = a.id
     GROUP BY a.owner ORDER BY a.owner",
    "SELECT id, balance FROM accounts WHERE owner BETWEEN 'owner-03' AND 'owner-05' ORDER BY id",
    "PRAGMA integrity_check",
];

fn rows(conn: &Connection, sql: &str) -> Vec<String> {
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |row| {
        Ok((0..n)
            .map(|i| format!("{:?}", row.get_ref(i).unwrap()))
            .collect::<Vec<_>>()
            .join("|"))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn run(version: &str, target: Target) {
    let name = format!("live-{target:?}-{version}");
    let primary = Primary::start(version, &name, SCHEMA, "2s", target);
    let db_path = primary.db_path.clone();
    // A writer commits while litestream replicates: inserts, transfers, deletes, a VACUUM.
    let writer = std::thread::spawn(move || {
        let db = Connection::open(db_path).unwrap();
        db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
        for i in 0..400u32 {
            let sql = match i % 5 {
                0 | 1 => format!(
                    "INSERT INTO accounts(owner, balance) VALUES ('owner-{:02}', 100);
                     INSERT INTO events(account, note, payload) VALUES (last_insert_rowid(), 'open', zeroblob({}));",
                    i % 17,
                    (i * 97) % 3000
                ),
                2 => "UPDATE accounts SET balance = balance - 7 WHERE id = (SELECT min(id) FROM accounts);
                      UPDATE accounts SET balance = balance + 7 WHERE id = (SELECT max(id) FROM accounts);"
                    .to_string(),
                3 => format!("DELETE FROM events WHERE seq % 11 = {}", i % 11),
                _ => "INSERT INTO events(account, note, payload) SELECT id, 'bulk', randomblob(200) FROM accounts LIMIT 20".to_string(),
            };
            db.execute_batch(&format!("BEGIN; {sql}; COMMIT;")).unwrap();
            if i == 250 {
                db.execute_batch("DELETE FROM events WHERE note = 'bulk'; VACUUM;")
                    .unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    });
    writer.join().unwrap();
    primary.commit("UPDATE accounts SET owner = owner WHERE id = 1");
    let txid = primary.settle();
    // Litestream's GCS client lists a level from `seek` as a name prefix, not an offset
    // (gs/replica_client.go LTXFiles, 0.5.0 to 0.5.17), so each L1 compaction there takes
    // one L0 file: L1 lags, and the replica is read from both levels. Its Azure client does
    // the same (its log on Azurite: one TXID per L1 compaction, every 2 s), so waiting for
    // L1 there took longer than a minute whenever the writer's commits made many L0 files
    // (a loaded machine).
    if !matches!(target, Target::Gcs | Target::Azure) {
        wait_until("L1 compaction to catch up", || {
            primary.max_txid(1) >= txid.get()
        });
    }

    let conn = open_replica(&primary.url(), "")
        .unwrap_or_else(|e| panic!("{e}: {:?}", ltxvfs_sqlite_tests::log_lines("ltxvfs")));
    let seen: String = conn
        .pragma_query_value(None, "ltx_txid", |r| r.get(0))
        .unwrap();
    assert_eq!(
        seen,
        txid.to_string(),
        "the replica should open at the newest TXID"
    );

    let ours = read_all_pages(&conn, &primary.dir);
    let restored = primary.restore(txid, &primary.dir.join("restored.db"));
    assert_same_pages(&ours, &restored, 4096);

    let source = Connection::open(&primary.db_path).unwrap();
    for q in QUERIES {
        assert_eq!(rows(&conn, q), rows(&source, q), "{q}");
    }
}

#[test]
fn live_file_replica_of_litestream_0_5_17_matches_restore_and_source() {
    run("0.5.17", Target::File);
}

#[test]
fn live_file_replica_of_litestream_0_5_15_matches_restore_and_source() {
    run("0.5.15", Target::File);
}

#[test]
fn live_s3_replica_of_litestream_0_5_17_matches_restore_and_source() {
    run("0.5.17", Target::S3);
}

#[test]
fn live_s3_replica_of_litestream_0_5_15_matches_restore_and_source() {
    run("0.5.15", Target::S3);
}

#[test]
fn live_azure_replica_of_litestream_0_5_17_matches_restore_and_source() {
    run("0.5.17", Target::Azure);
}

#[test]
fn live_azure_replica_of_litestream_0_5_15_matches_restore_and_source() {
    run("0.5.15", Target::Azure);
}

#[test]
fn live_gcs_replica_of_litestream_0_5_17_matches_restore_and_source() {
    run("0.5.17", Target::Gcs);
}
