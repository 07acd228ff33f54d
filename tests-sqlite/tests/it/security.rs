//! Secrets stay secret, and a replica's contents cannot steer the VFS outside the replica.

use ltxvfs_sqlite_tests::{
    copy_fixture_replica, file_url, log_lines, open_replica, s3_endpoint, trust,
};
use rusqlite::ErrorCode;
use std::time::Duration;

/// Every `ltx_*` pragma's answer on `conn`.
fn all_pragmas(conn: &rusqlite::Connection) -> String {
    [
        "ltx_txid",
        "ltx_time",
        "ltx_stats",
        "ltx_last_error",
        "ltx_lag",
        "ltx_hydration",
    ]
    .iter()
    .map(|p| {
        conn.pragma_query_value(None, p, |r| r.get::<_, String>(0))
            .unwrap_or_default()
    })
    .collect::<Vec<_>>()
    .join("\n")
}

#[test]
fn credentials_never_appear_in_errors_logs_or_pragmas() {
    // The key the environment gives (scripts/with-stores.sh), refused by the server that
    // checks credentials; and a password in the URL's user info.
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap();
    let auth = std::env::var("LTXVFS_TEST_S3_AUTH_ENDPOINT")
        .expect("run through scripts/with-stores.sh (as make test does)");
    let refused = open_replica(
        &format!("s3://bucket/app.db?endpoint={auth}&region=us-east-1"),
        "",
    )
    .unwrap_err();
    let in_url = "hunter2-in-the-url";
    let with_userinfo = open_replica(
        &format!(
            "s3://someone:{in_url}@bucket/app.db?endpoint={}&region=us-east-1",
            s3_endpoint()
        ),
        "",
    )
    .unwrap_err();

    // A working connection in the same process: its pragmas fall back to the process's
    // last error, which is one of the two above.
    let ok = copy_fixture_replica("0.5.17", "security-pragmas", |_| {});
    let conn = open_replica(&file_url(&ok), "&poll=0").unwrap();
    conn.query_row("SELECT count(*) FROM items", [], |r| r.get::<_, i64>(0))
        .unwrap();
    let pragmas = all_pragmas(&conn);
    let logs = log_lines("").join("\n");
    // (SQLite's own message repeats the file name it was given, URL and all: not ours.)
    assert!(with_userinfo.to_string().contains("unable to open"));
    for text in [refused.to_string(), pragmas, logs] {
        assert!(!text.contains(&secret), "the secret key leaked: {text}");
        assert!(!text.contains(in_url), "the URL's password leaked: {text}");
    }
    // The sentences are still there, with the URL redacted.
    assert!(!log_lines("someone:REDACTED@bucket").is_empty());
}

#[test]
fn files_named_like_ltx_files_cannot_lead_outside_the_replica() {
    // A symbolic link named as the next L0 file, pointing out of the replica, and names that
    // only look like LTX files: the link's target is read as an LTX file and rejected as
    // corrupt (named), nothing else is touched, no page comes from it.
    let replica = copy_fixture_replica("0.5.17", "security-names", |_| {});
    let l0 = replica.join("ltx/0");
    std::os::unix::fs::symlink(
        "/etc/passwd",
        l0.join("000000000000000b-000000000000000b.ltx"),
    )
    .unwrap();
    for junk in [
        "..ltx",
        "0000000000000001-0000000000000001.ltx.tmp",
        "x-y.ltx",
        "notes.txt",
    ] {
        std::fs::write(l0.join(junk), b"not an LTX file").unwrap();
    }
    let err = open_replica(&file_url(&replica), "&poll=0").unwrap_err();
    assert_eq!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt),
        "{err}"
    );
    assert!(!log_lines("000000000000000b-000000000000000b.ltx").is_empty());

    // Without the link the junk is ignored and the replica reads normally.
    std::fs::remove_file(l0.join("000000000000000b-000000000000000b.ltx")).unwrap();
    let conn = open_replica(&file_url(&replica), "&poll=0").unwrap();
    let txid: String = conn
        .pragma_query_value(None, "ltx_txid", |r| r.get(0))
        .unwrap();
    assert_eq!(txid, "000000000000000a");
}

/// Issue #22: SQL on a connection the host did not trust cannot reach the functions that
/// change the process or move a connection in time, whatever its arguments.
#[test]
fn untrusted_sql_cannot_steer_the_extension() {
    let replica = copy_fixture_replica("0.5.17", "security-untrusted", |_| {});
    let url = file_url(&replica);
    let conn = open_replica(&url, "&poll=0").unwrap();
    let latest: String = conn
        .query_row("SELECT ltx_txid()", [], |r| r.get(0))
        .unwrap();
    for hostile in [
        "SELECT ltx_default_vfs(1)",
        "SELECT ltx_register('/etc/hosts', 'file:///tmp')",
        "SELECT ltx_register('app.db', 's3://b/p?endpoint=http://127.0.0.1:9', 'hydrate=/tmp/x')",
    ] {
        let err = conn
            .query_row(hostile, [], |r| r.get::<_, String>(0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such function"), "{hostile}: {err}");
    }
    for travel in [
        "SELECT ltx_set_time('2000-01-01T00:00:00Z')",
        "SELECT litestream_set_time('latest')",
    ] {
        let err = conn
            .query_row(travel, [], |r| r.get::<_, String>(0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sql_time_travel=1"), "{travel}: {err}");
    }
    let still: String = conn
        .query_row("SELECT ltx_txid()", [], |r| r.get(0))
        .unwrap();
    assert_eq!(still, latest, "the connection did not move");

    // A bookmark that is never reached holds the calling thread (a function call cannot be
    // interrupted): a stranger's wait is capped, whatever it asks for.
    let started = std::time::Instant::now();
    let err = conn
        .query_row("SELECT ltx_wait_txid('ffffffffffffffff', 600)", [], |r| {
            r.get::<_, String>(0)
        })
        .unwrap_err()
        .to_string();
    let waited = started.elapsed();
    assert!(err.contains("not reached within 2.0s"), "{err}");
    assert!(waited < Duration::from_secs(4), "waited {waited:?}");
    // The host's own (trusted) connection waits as long as it asks, up to `timeout`.
    let host = open_replica(&url, "&poll=0").unwrap();
    trust(&host);
    let err = host
        .query_row("SELECT ltx_wait_txid('ffffffffffffffff', 2.5)", [], |r| {
            r.get::<_, String>(0)
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("not reached within 2.5s"), "{err}");

    // The host allows SQL time travel for one database by its URI.
    let allowed = open_replica(&url, "&poll=0&sql_time_travel=1").unwrap();
    let reached: String = allowed
        .query_row("SELECT ltx_set_time('latest')", [], |r| r.get(0))
        .unwrap();
    assert_eq!(reached, latest);
}

/// Issue #22: `ltx_last_error()` answers the calling connection's error, or the calling
/// thread's failed open: never another thread's sentence.
#[test]
fn last_error_is_the_connections_or_the_threads_own() {
    let secret_path = "/srv/another-visitors/replica";
    let failed = std::thread::spawn(move || {
        let err = open_replica(&format!("file://{secret_path}"), "").unwrap_err();
        assert_eq!(err.sqlite_error_code(), Some(ErrorCode::CannotOpen));
        // The failing thread reads its own sentence.
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let own: Option<String> = conn
            .query_row("SELECT ltx_last_error()", [], |r| r.get(0))
            .unwrap();
        assert!(own.is_some_and(|e| e.contains(secret_path)));
    });
    failed.join().unwrap();
    let replica = copy_fixture_replica("0.5.17", "security-last-error", |_| {});
    let conn = open_replica(&file_url(&replica), "&poll=0").unwrap();
    for sql in ["SELECT ltx_last_error()", "PRAGMA ltx_last_error"] {
        let seen: Option<String> = conn.query_row(sql, [], |r| r.get(0)).unwrap();
        assert!(
            !seen.unwrap_or_default().contains(secret_path),
            "{sql} showed another thread's error"
        );
    }
}

/// Issue #22: host-given settings are checked when the database opens: a bound named, an
/// unknown parameter named with the valid ones, a bad endpoint port a sentence (it was a
/// panic in the store client's task), an endpoint's password never shown.
#[test]
fn host_input_is_checked_at_the_open() {
    let replica = copy_fixture_replica("0.5.17", "security-host-input", |_| {});
    let url = file_url(&replica);
    for (extra, expect) in [
        ("&timeout=100000h", "most it may be, 1h"),
        ("&poll=1000days", "most it may be, 1day"),
        ("&cahce_size=1MiB", "unknown URI parameter \"cahce_size\""),
        ("&txid=zz", "\"zz\" is not a TXID"),
    ] {
        let err = open_replica(&url, extra).unwrap_err();
        assert_eq!(err.sqlite_error_code(), Some(ErrorCode::CannotOpen));
        assert!(
            !log_lines(expect).is_empty(),
            "{extra}: no {expect:?} in the log"
        );
    }
    let bad_port = "s3://b/p?endpoint=http://user:hunter3@127.0.0.1:1x";
    assert!(open_replica(bad_port, "").is_err());
    assert!(
        !log_lines("endpoint \"http://REDACTED@127.0.0.1:1x\": invalid port number").is_empty()
    );
    assert!(
        log_lines("hunter3").is_empty(),
        "an endpoint's password was logged"
    );
}
