//! Files that vanish under an open replica (compaction and retention delete them) mean:
//! plan again at the same TXID. Never wrong rows, and words when it cannot be done.

use ltxvfs::ltx::Txid;
use ltxvfs::replica::{LtxFileId, restore_plan};
use ltxvfs_sqlite_tests::{copy_fixture_replica, file_url, open_replica, util};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::Path;

const QUERY: &str = "SELECT count(*), sum(length(v)), group_concat(k) FROM items";

fn answer(conn: &Connection) -> rusqlite::Result<(i64, i64, String)> {
    conn.query_row(QUERY, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
}

fn files(replica: &Path) -> Vec<(LtxFileId, std::path::PathBuf)> {
    util::replica_files(replica)
}

#[test]
fn files_compacted_away_after_open_are_replanned_at_the_same_txid() {
    let replica = copy_fixture_replica("0.5.17", "replan-same-txid", |_| ());
    let restored = Connection::open_with_flags(
        util::repo_dir().join("tests/fixtures/litestream-0.5.17/restored.db"),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    // No cache: the open brings the small fixture's pages with the files' headers.
    let conn = open_replica(&file_url(&replica), "&cache_size=0").unwrap();

    // Delete the compacted files the plan uses, as retention would; the L0 files that
    // Litestream kept (the fixtures keep them all) still reach the same TXID.
    let listed = files(&replica);
    let ids: Vec<LtxFileId> = listed.iter().map(|(id, _)| *id).collect();
    let plan = restore_plan(&ids, None).unwrap();
    let mut deleted = 0;
    for id in plan.iter().skip(1).filter(|id| id.level > 0) {
        let (_, path) = listed.iter().find(|(f, _)| f == id).unwrap();
        std::fs::remove_file(path).unwrap();
        deleted += 1;
    }
    assert!(
        deleted > 0,
        "the fixture plan should use compacted files: {plan:?}"
    );

    assert_eq!(answer(&conn).unwrap(), answer(&restored).unwrap());
    let stats: String = conn
        .pragma_query_value(None, "ltx_stats", |r| r.get(0))
        .unwrap();
    assert!(!stats.contains("\"replans\":0"), "{stats}");
}

#[test]
fn a_txid_no_file_reaches_any_more_is_an_io_error_with_words() {
    let replica = copy_fixture_replica("0.5.17", "replan-gone", |_| ());
    let conn = open_replica(&file_url(&replica), "&cache_size=0").unwrap();
    let newest: Txid = conn
        .pragma_query_value(None, "ltx_txid", |r| r.get::<_, String>(0))
        .map(|hex| Txid(u64::from_str_radix(&hex, 16).unwrap()))
        .unwrap();
    for (id, path) in files(&replica) {
        if id.max_txid == newest {
            std::fs::remove_file(path).unwrap();
        }
    }
    let err = answer(&conn).unwrap_err();
    assert_eq!(
        err.sqlite_error_code(),
        Some(ErrorCode::SystemIoFailure),
        "{err}"
    );
    let last: String = conn
        .pragma_query_value(None, "ltx_last_error", |r| r.get(0))
        .unwrap();
    assert!(last.contains("compacted away"), "{last}");
}
