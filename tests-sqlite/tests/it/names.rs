//! Names mapped with `ltx_register`, for drivers that cannot pass URI parameters. (Making
//! `ltx` the default VFS is tested in separate processes, sql-tests/names.sql and the
//! bindings: in this one, other tests open local files through the default VFS meanwhile.)

use ltxvfs_sqlite_tests::{file_url, register, trust, util};
use rusqlite::{Connection, ErrorCode, OpenFlags};

fn open_through_ltx(path: &str) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(
        format!("file:{path}?vfs=ltx"),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )
}

#[test]
fn a_registered_name_opens_its_replica_with_its_settings() {
    register();
    let replica = file_url(&util::repo_dir().join("sql-tests/replica"));
    let name = util::scratch_dir("names").join("mapped.db");
    let name = name.to_str().unwrap();
    // The host trusts this connection with the control functions (README "Security").
    let control = Connection::open_in_memory().unwrap();
    trust(&control);
    let full: String = control
        .query_row(
            "SELECT ltx_register(?1, ?2, 'txid=1&poll=0')",
            [name, &replica],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(full, name);

    let db = open_through_ltx(name).unwrap();
    let orders: i64 = db
        .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        orders, 2000,
        "txid=1 is the state before sql-tests/setup/changes.sql"
    );
    let txid: String = db.query_row("PRAGMA ltx_txid", [], |r| r.get(0)).unwrap();
    assert_eq!(txid, "0000000000000001");

    // Unmapped: the next open is an error, never an empty database; open ones stay.
    control
        .query_row("SELECT ltx_register(?1, NULL)", [name], |r| {
            r.get::<_, String>(0)
        })
        .unwrap();
    let err = open_through_ltx(name).unwrap_err();
    assert_eq!(err.sqlite_error_code(), Some(ErrorCode::CannotOpen));
    let still: i64 = db
        .query_row("SELECT count(*) FROM customers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(still, 400);
}

#[test]
fn bad_registrations_are_sql_errors() {
    register();
    let control = Connection::open_in_memory().unwrap();
    trust(&control);
    let err = control
        .query_row(
            "SELECT ltx_register('x.db', 'file:///r', 'cache_size=lots')",
            [],
            |r| r.get::<_, String>(0),
        )
        .unwrap_err();
    assert!(err.to_string().contains("cache_size"), "{err}");
    let err = control
        .query_row("SELECT ltx_register('x.db', 'nowhere', '')", [], |r| {
            r.get::<_, String>(0)
        })
        .unwrap_err();
    assert!(err.to_string().contains("has no scheme"), "{err}");
}
