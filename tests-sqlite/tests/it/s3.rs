//! S3 replicas that cannot be read: each an SQLite error with a sentence, in bounded time.

use ltxvfs_sqlite_tests::{create_bucket, log_lines, open_replica, s3_endpoint};
use rusqlite::ErrorCode;
use std::time::{Duration, Instant};

fn s3_url(bucket: &str, path: &str) -> String {
    format!(
        "s3://{bucket}/{path}?endpoint={}&region=us-east-1&forcePathStyle=true",
        s3_endpoint()
    )
}

fn cantopen(url: &str, extra: &str, expect_in_log: &str) {
    let err = open_replica(url, extra).unwrap_err();
    assert_eq!(
        err.sqlite_error_code(),
        Some(ErrorCode::CannotOpen),
        "{err}"
    );
    assert!(
        !log_lines(expect_in_log).is_empty(),
        "no log line containing {expect_in_log:?}"
    );
}

#[test]
fn bucket_that_does_not_exist_cannot_open() {
    cantopen(&s3_url("no-such-bucket", "app.db"), "", "NoSuchBucket");
}

#[test]
fn path_with_no_ltx_files_cannot_open() {
    create_bucket("empty-bucket");
    cantopen(
        &s3_url("empty-bucket", "nothing/here"),
        "",
        "no LTX files found",
    );
}

#[test]
fn refused_connections_fail_within_the_timeout() {
    // Port 1 on loopback: nothing listens, every connection is refused at once.
    let url = "s3://bucket/app.db?endpoint=http://127.0.0.1:1&region=us-east-1";
    let started = Instant::now();
    cantopen(url, "&timeout=2s", "127.0.0.1:1");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn wrong_credentials_cannot_open() {
    let endpoint = std::env::var("LTXVFS_TEST_S3_AUTH_ENDPOINT")
        .expect("run through scripts/with-stores.sh (as make test does)");
    let url = format!("s3://bucket/app.db?endpoint={endpoint}&region=us-east-1");
    cantopen(&url, "", "InvalidAccessKeyId");
    // The secret itself never appears.
    assert!(log_lines("ltxvfs-test-secret").is_empty());
}
