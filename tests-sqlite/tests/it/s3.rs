//! S3 replicas that cannot be read: each an SQLite error with a sentence, in bounded time.

use ltxvfs_sqlite_tests::{assert_cantopen, create_bucket, log_lines, s3_endpoint};
use std::time::{Duration, Instant};

fn s3_url(bucket: &str, path: &str) -> String {
    format!(
        "s3://{bucket}/{path}?endpoint={}&region=us-east-1&forcePathStyle=true",
        s3_endpoint()
    )
}

#[test]
fn bucket_that_does_not_exist_cannot_open() {
    assert_cantopen(&s3_url("no-such-bucket", "app.db"), "", "NoSuchBucket");
}

#[test]
fn path_with_no_ltx_files_cannot_open() {
    create_bucket("empty-bucket");
    assert_cantopen(
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
    assert_cantopen(url, "&timeout=2s", "127.0.0.1:1");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn wrong_credentials_cannot_open() {
    let endpoint = std::env::var("LTXVFS_TEST_S3_AUTH_ENDPOINT")
        .expect("run through scripts/with-stores.sh (as make test does)");
    let url = format!("s3://bucket/app.db?endpoint={endpoint}&region=us-east-1");
    assert_cantopen(&url, "", "InvalidAccessKeyId");
    // The secret itself never appears.
    assert!(log_lines("ltxvfs-test-secret").is_empty());
}
