//! Time travel: a connection reads the database as of a past TXID or time, which equals
//! `litestream restore -txid` / `-timestamp` at that point, while other connections keep
//! following.

use ltxvfs::ltx::Txid;
use ltxvfs_sqlite_tests::{
    Primary, Target, assert_same_pages, open_replica, read_all_pages, wait_until,
};
use rusqlite::Connection;
use std::time::{Duration, SystemTime};

fn txid(conn: &Connection) -> String {
    conn.pragma_query_value(None, "ltx_txid", |r| r.get(0))
        .unwrap()
}

fn rows(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap()
}

fn rfc3339(t: SystemTime) -> String {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // humantime formats UTC with milliseconds, as Go's RFC 3339 parser accepts.
    ltxvfs_sqlite_tests::format_rfc3339_ms(ms)
}

#[test]
fn past_txids_and_times_equal_litestream_restore_while_others_follow() {
    let primary = Primary::start(
        "0.5.17",
        "time-travel",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT);",
        "2s",
        Target::File,
    );
    // Transactions a second apart, and the moments between them.
    let mut points: Vec<(Txid, SystemTime)> = Vec::new();
    for i in 0..4 {
        let t = primary.commit(&format!(
            "INSERT INTO t(body) SELECT printf('row %d.%d', {i}, value) FROM json_each('[1,2,3,4,5,6,7,8,9,10]')"
        ));
        std::thread::sleep(Duration::from_millis(600));
        points.push((t, SystemTime::now()));
        std::thread::sleep(Duration::from_millis(600));
    }
    let newest = primary.settle();
    wait_until("L1 compaction", || primary.max_txid(1) >= newest.get());

    let conn = open_replica(&primary.url(), "&poll=200ms").unwrap();
    let follower = open_replica(&primary.url(), "").unwrap();
    assert_eq!(rows(&conn), 40);
    for (i, (t, at)) in points.iter().enumerate().take(3) {
        // By TXID, without leading zeros as well as with them.
        conn.pragma_update(None, "ltx_txid", format!("{:x}", t.get()))
            .unwrap();
        assert_eq!(txid(&conn), t.to_string());
        assert_eq!(rows(&conn), 10 * (i as i64 + 1));
        let ours = read_all_pages(&conn, &primary.dir);
        let theirs = primary.restore(*t, &primary.dir.join("restored-txid.db"));
        assert_same_pages(&ours, &theirs, 4096);

        // By time: the moment after this transaction and before the next.
        let when = rfc3339(*at);
        conn.pragma_update(None, "ltx_time", &when).unwrap();
        assert_eq!(txid(&conn), t.to_string(), "as of {when}");
        let ours = read_all_pages(&conn, &primary.dir);
        let theirs = primary.restore_at_time(&when, &primary.dir.join("restored-time.db"));
        assert_same_pages(&ours, &theirs, 4096);
    }

    // While this connection travels, another keeps following.
    primary.commit("INSERT INTO t(body) VALUES ('after travel')");
    wait_until("the follower to see the new row", || rows(&follower) == 41);
    assert_eq!(
        rows(&conn),
        30,
        "the travelling connection stays in the past"
    );

    conn.pragma_update(None, "ltx_time", "latest").unwrap();
    wait_until("latest to include the new row", || rows(&conn) == 41);

    // Relative times, and a time before anything was replicated.
    conn.pragma_update(None, "ltx_time", "1 second ago")
        .unwrap();
    assert!(rows(&conn) <= 41);
    let err = conn
        .pragma_update(None, "ltx_time", "3 days ago")
        .unwrap_err();
    assert!(
        err.to_string().contains("nothing that was replicated by"),
        "{err}"
    );
    let err = conn.pragma_update(None, "ltx_txid", "not-hex").unwrap_err();
    assert!(err.to_string().contains("is not a TXID"), "{err}");
}

#[test]
fn uri_txid_and_time_open_in_the_past() {
    let primary = Primary::start(
        "0.5.17",
        "time-travel-uri",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT);",
        "30s",
        Target::File,
    );
    let first = primary.commit("INSERT INTO t(body) VALUES ('one')");
    std::thread::sleep(Duration::from_millis(600));
    let between = rfc3339(SystemTime::now());
    std::thread::sleep(Duration::from_millis(600));
    primary.commit("INSERT INTO t(body) VALUES ('two')");

    let by_txid = open_replica(&primary.url(), &format!("&txid={:x}", first.get())).unwrap();
    assert_eq!((txid(&by_txid), rows(&by_txid)), (first.to_string(), 1));
    let by_time = open_replica(&primary.url(), &format!("&time={between}")).unwrap();
    assert_eq!((txid(&by_time), rows(&by_time)), (first.to_string(), 1));
    assert!(open_replica(&primary.url(), "&txid=1&time=latest").is_err());
}

/// Time travel chooses by the LTX header's timestamp, the time `ltx_time()` reports, not by
/// the files' modification times: on a replica copied elsewhere (every mtime is the copy's),
/// travelling by the time a TXID reported lands on that TXID (issue 22).
#[test]
fn travel_by_the_time_ltx_time_printed_lands_on_its_txid_on_a_copied_replica() {
    for version in ["0.5.15", "0.5.17"] {
        let dir = ltxvfs_sqlite_tests::copy_fixture_replica(
            version,
            &format!("time-travel-copied-{version}"),
            |_| {},
        );
        let url = ltxvfs_sqlite_tests::file_url(&dir);
        let newest = open_replica(&url, "").unwrap();
        let last: u64 = u64::from_str_radix(&txid(&newest), 16).unwrap();
        assert!(last >= 5, "{version}: {last} TXIDs");
        // The time of each TXID, as ltx_time() prints it at txid=X.
        let times: Vec<(u64, String)> = (1..=last)
            .map(|x| {
                let conn = open_replica(&url, &format!("&txid={x:x}")).unwrap();
                assert_eq!(txid(&conn), Txid(x).to_string());
                let t: String = conn
                    .query_row("SELECT ltx_time()", [], |r| r.get(0))
                    .unwrap();
                (x, t)
            })
            .collect();
        let distinct: std::collections::BTreeSet<&String> = times.iter().map(|(_, t)| t).collect();
        assert!(distinct.len() >= 3, "{version}: {times:?}");
        let conn = open_replica(&url, "").unwrap();
        for (x, t) in &times {
            // Several transactions in one millisecond share a time: it names the newest.
            let expected = times.iter().filter(|(_, u)| u == t).map(|(y, _)| *y).max();
            let expected = Txid(expected.unwrap()).to_string();
            // The requests of a travel by TXID, then by time, to the same state.
            let requests = || {
                (
                    ltxvfs_sqlite_tests::stat(&conn, "list_requests"),
                    ltxvfs_sqlite_tests::stat(&conn, "get_requests"),
                )
            };
            let before_txid = requests();
            conn.pragma_update(None, "ltx_txid", format!("{x:x}"))
                .unwrap();
            let before_time = requests();
            conn.pragma_update(None, "ltx_time", t).unwrap();
            assert_eq!(
                txid(&conn),
                expected,
                "{version}: PRAGMA ltx_time = {t} (TXID {x})"
            );
            let after = requests();
            eprintln!(
                "{version}: TXID {x}: by txid {} LIST {} GET; by time ({t}) {} LIST {} GET",
                before_time.0 - before_txid.0,
                before_time.1 - before_txid.1,
                after.0 - before_time.0,
                after.1 - before_time.1,
            );
            let by_uri = open_replica(&url, &format!("&time={t}")).unwrap();
            assert_eq!(txid(&by_uri), expected, "{version}: time={t} (TXID {x})");
        }
        let err = conn
            .pragma_update(None, "ltx_time", "2000-01-01T00:00:00Z")
            .unwrap_err();
        assert!(
            err.to_string().contains("nothing that was replicated by"),
            "{err}"
        );
    }
}
