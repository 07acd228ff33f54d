//! Queries through the VFS on the checked-in fixture replicas equal the same queries on the
//! database `litestream restore` made of them; caching and sharing behave as designed.

use ltxvfs_sqlite_tests::{copy_fixture_replica, file_url, open_replica, stat, stats, util};
use rusqlite::{Connection, OpenFlags};
use std::path::PathBuf;

fn fixture(version: &str) -> PathBuf {
    util::repo_dir()
        .join("tests/fixtures")
        .join(format!("litestream-{version}"))
}

const QUERIES: &[&str] = &[
    "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY name",
    "SELECT count(*), sum(id), min(k), max(k), sum(length(v)) FROM items",
    "SELECT k FROM items WHERE k BETWEEN 'k2' AND 'k5' ORDER BY k",
    "SELECT key, typeof(value), length(value), hex(substr(value, 1, 8)) FROM kv ORDER BY key",
    "SELECT i.id, kv.key FROM items i JOIN kv ON kv.key = substr(i.k, 1, 1) ORDER BY i.id",
    "PRAGMA integrity_check",
    "PRAGMA page_count",
];

#[test]
fn fixture_queries_equal_the_restored_database() {
    for version in util::LITESTREAM_VERSIONS {
        let dir = fixture(version);
        let ours = open_replica(&file_url(&dir.join("replica")), "").unwrap();
        let restored =
            Connection::open_with_flags(dir.join("restored.db"), OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        for q in QUERIES {
            let run = |c: &Connection| {
                let mut stmt = c.prepare(q).unwrap();
                let n = stmt.column_count();
                stmt.query_map([], |row| {
                    Ok((0..n)
                        .map(|i| format!("{:?}", row.get_ref(i).unwrap()))
                        .collect::<Vec<_>>())
                })
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap()
            };
            assert_eq!(run(&ours), run(&restored), "{version}: {q}");
        }
    }
}

#[test]
fn sqlite_keeps_its_page_cache_between_read_transactions() {
    let url = file_url(&copy_fixture_replica("0.5.17", "sqlite-page-cache", |_| ()));
    let conn = open_replica(&url, "").unwrap();
    let scan = "SELECT sum(length(v)) FROM items";
    conn.query_row(scan, [], |_| Ok(())).unwrap();
    let before = stat(&conn, "pages_read");
    conn.query_row(scan, [], |_| Ok(())).unwrap();
    // The change counter is stable while the snapshot is, so SQLite reads only the 16
    // header bytes to validate its cache: at most page 1 again.
    assert!(stat(&conn, "pages_read") <= before + 1, "{}", stats(&conn));
}

#[test]
fn connections_to_one_replica_share_its_cache() {
    let url = file_url(&copy_fixture_replica("0.5.15", "shared-cache", |_| ()));
    let a = open_replica(&url, "").unwrap();
    a.query_row("SELECT count(*), sum(length(v)) FROM items", [], |_| Ok(()))
        .unwrap();
    let gets = stat(&a, "get_requests");
    let b = open_replica(&url, "").unwrap();
    b.query_row("SELECT count(*), sum(length(v)) FROM items", [], |_| Ok(()))
        .unwrap();
    assert_eq!(
        stat(&b, "get_requests"),
        gets,
        "the second connection should hit the shared cache"
    );
    assert!(stat(&b, "cache_hits") > 0);
}

#[test]
fn writes_are_refused_as_readonly() {
    let url = file_url(&fixture("0.5.17").join("replica"));
    let conn = open_replica(&url, "").unwrap();
    let err = conn
        .execute("INSERT INTO kv VALUES ('new', 1)", [])
        .unwrap_err();
    assert_eq!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::ReadOnly),
        "{err}"
    );
}

#[test]
fn works_when_the_host_thread_runs_a_tokio_runtime() {
    let url = file_url(&fixture("0.5.17").join("replica"));
    let host = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let n: i64 = host.block_on(async {
        let conn = open_replica(&url, "&cache_size=1MiB").unwrap();
        conn.query_row("SELECT count(*) FROM items", [], |r| r.get(0))
            .unwrap()
    });
    assert!(n > 0);
}

#[test]
fn pragmas_report_txid_time_and_aliases() {
    let url = file_url(&fixture("0.5.17").join("replica"));
    let conn = open_replica(&url, "").unwrap();
    let get = |p: &str| -> String { conn.pragma_query_value(None, p, |r| r.get(0)).unwrap() };
    assert_eq!(get("ltx_txid"), "000000000000000a");
    assert_eq!(get("litestream_txid"), get("ltx_txid"));
    let time = get("ltx_time");
    assert!(time.starts_with("20") && time.ends_with('Z'), "{time}");
    assert_eq!(get("litestream_time"), time);
    conn.pragma_update(None, "ltx_txid", "5").unwrap();
    assert_eq!(get("ltx_txid"), "0000000000000005");
    assert!(conn.pragma_update(None, "ltx_txid", "zz").is_err());
}

#[test]
fn replica_path_with_a_space_is_percent_encoded_in_the_url() {
    let copied = copy_fixture_replica("0.5.17", "path with space", |_| ());
    let encoded = copied.display().to_string().replace(' ', "%20");
    assert!(encoded.contains("path%20with%20space"));
    let conn = open_replica(&format!("file://{encoded}"), "").unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
        .unwrap();
    assert!(n > 0);
}

#[test]
fn a_scan_prefetches_the_rest_of_an_interior_pages_children() {
    // 20,000 rows and an index: their leaves hang from interior pages with hundreds of
    // children each. A count(*) walks them left to right; after two misses under one
    // interior page the rest come in the background, and the answers stay right.
    use ltxvfs_sqlite_tests::{Primary, Target};
    let primary = Primary::start(
        "0.5.17",
        "prefetch-scan",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v TEXT); CREATE INDEX t_k ON t(k);",
        "1m",
        Target::File,
    );
    primary.commit(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
         INSERT INTO t SELECT i, printf('%08d', i * 7919 % 20000), printf('%0200d', i) FROM n",
    );
    primary.settle();
    let reference =
        Connection::open_with_flags(&primary.db_path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let conn = open_replica(&primary.url(), "&poll=0&warm=off").unwrap();
    for q in [
        "SELECT count(*) FROM t",
        "SELECT count(*), sum(length(v)) FROM t",
        "SELECT group_concat(k) FROM (SELECT k FROM t ORDER BY k LIMIT 5 OFFSET 15000)",
    ] {
        let one = |c: &Connection| {
            c.query_row(q, [], |r| {
                r.get::<_, String>(0)
                    .or_else(|_| r.get::<_, i64>(0).map(|n| n.to_string()))
            })
            .unwrap()
        };
        assert_eq!(one(&conn), one(&reference), "{q}");
    }
    assert!(stat(&conn, "pages_prefetched") > 100, "{}", stats(&conn));
}
