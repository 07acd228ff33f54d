//! The status functions (`ltx_txid()`, `ltx_set_time(t)`, ... and Litestream's names),
//! callable from SELECT: each answers what its pragma answers, for the schema given.

use ltxvfs_sqlite_tests::{
    Primary, Target, file_url, format_rfc3339_ms, open_replica, register, trust, uri_escape, util,
};
use rusqlite::Connection;
use rusqlite::types::Value;
use std::time::{Duration, SystemTime};

fn value(conn: &Connection, sql: &str) -> rusqlite::Result<Value> {
    conn.query_row(sql, [], |r| r.get(0))
}

fn text(conn: &Connection, sql: &str) -> String {
    match value(conn, sql).unwrap() {
        Value::Text(t) => t,
        other => panic!("{sql}: {other:?}"),
    }
}

fn pragma(conn: &Connection, schema: Option<&str>, name: &str) -> String {
    conn.pragma_query_value(schema, name, |r| r.get(0)).unwrap()
}

#[test]
fn functions_answer_what_the_pragmas_answer_for_each_attached_replica() {
    register();
    let url = file_url(&util::repo_dir().join("sql-tests/replica"));
    let conn = open_replica(&url, "&poll=0").unwrap();
    conn.execute(
        &format!(
            "ATTACH 'file:past.db?vfs=ltx&replica={}&poll=0&txid=1' AS past",
            uri_escape(&url)
        ),
        [],
    )
    .unwrap();
    for (function, pragma_name) in [
        ("ltx_txid", "ltx_txid"),
        ("ltx_time", "ltx_time"),
        ("litestream_txid", "ltx_txid"),
        ("litestream_time", "ltx_time"),
        ("ltx_hydration", "ltx_hydration"),
    ] {
        for schema in ["main", "past"] {
            assert_eq!(
                text(&conn, &format!("SELECT {function}('{schema}')")),
                pragma(&conn, Some(schema), pragma_name),
                "{function}('{schema}')"
            );
        }
        assert_eq!(
            text(&conn, &format!("SELECT {function}()")),
            pragma(&conn, None, pragma_name),
            "{function}() is main's"
        );
    }
    assert_eq!(text(&conn, "SELECT ltx_txid('past')"), "0000000000000001");
    assert_eq!(text(&conn, "SELECT ltx_txid()"), "0000000000000002");
    let stats = text(&conn, "SELECT ltx_stats('past')");
    assert!(
        stats.starts_with("{\"txid\":\"0000000000000001\""),
        "{stats}"
    );
    // Litestream's lag is a number, so that `litestream_lag() > 5` compares numbers.
    let lag = value(&conn, "SELECT litestream_lag()").unwrap();
    let said: String = pragma(&conn, None, "litestream_lag");
    assert_eq!(lag, Value::Integer(said.parse().unwrap()));
    let aged = value(&conn, "SELECT json_extract(ltx_lag(), '$.txn_age') > 0").unwrap();
    assert_eq!(
        aged,
        Value::Integer(1),
        "{}",
        text(&conn, "SELECT ltx_lag()")
    );
}

#[test]
fn set_time_travels_like_the_pragma_and_answers_the_txid_reached() {
    register();
    let primary = Primary::start(
        "0.5.17",
        "functions-travel",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT);",
        "30s",
        Target::File,
    );
    let first = primary.commit("INSERT INTO t(body) VALUES ('one')");
    std::thread::sleep(Duration::from_millis(600));
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let between = format_rfc3339_ms(ms);
    std::thread::sleep(Duration::from_millis(600));
    let second = primary.commit("INSERT INTO t(body) VALUES ('two')");

    let conn = open_replica(&primary.url(), "&poll=100ms").unwrap();
    trust(&conn);
    let rows = |c: &Connection| -> i64 {
        c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(rows(&conn), 2);
    let reached: String = conn
        .query_row("SELECT ltx_set_time(?1)", [&between], |r| r.get(0))
        .unwrap();
    assert_eq!(reached, first.to_string());
    assert_eq!(
        (text(&conn, "SELECT ltx_txid()"), rows(&conn)),
        (first.to_string(), 1)
    );
    let back = text(&conn, "SELECT litestream_set_time('latest', 'main')");
    assert_eq!(back, second.to_string());
    assert_eq!(rows(&conn), 2);
    let err = value(&conn, "SELECT ltx_set_time('3 days ago')").unwrap_err();
    assert!(
        err.to_string().contains("nothing that was replicated by"),
        "{err}"
    );
    assert_eq!(
        rows(&conn),
        2,
        "a failed travel leaves the connection where it was"
    );
}

#[test]
fn a_database_not_read_through_ltx_is_a_clear_error() {
    register();
    let local = Connection::open_in_memory().unwrap();
    for sql in ["SELECT ltx_txid()", "SELECT litestream_lag('main')"] {
        let err = value(&local, sql).unwrap_err().to_string();
        assert!(err.contains("not read through the ltx VFS"), "{sql}: {err}");
    }
    let err = value(&local, "SELECT ltx_time('elsewhere')")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no database \"elsewhere\""), "{err}");
}
