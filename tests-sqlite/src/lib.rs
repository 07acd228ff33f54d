//! The harness of the in-process tests: SQLite with the `ltx` VFS registered, a real
//! `litestream replicate` process, restores, and page-by-page comparison.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod big_txn;
#[allow(dead_code)]
#[path = "../../tests/it/util.rs"]
pub mod util;
mod write_target;

pub use write_target::{
    WriteTarget, create_writer_tables, kill_writer_when, litestream_vfs_lib, litestream_vfs_row,
    open_writer,
};

use ltxvfs::ltx::Txid;
use rusqlite::{Connection, OpenFlags};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Registers the `ltx` VFS with the bundled SQLite, once, after routing `sqlite3_log` to
/// [`log_lines`] (sqlite3_config must come before SQLite initialises).
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        fn sink(code: std::ffi::c_int, msg: &str) {
            LOG.lock().unwrap().push(format!("({code}) {msg}"));
        }
        // SAFETY: called once, before any connection exists and before ltxvfs registers.
        unsafe { rusqlite::trace::config_log(Some(sink)) }.unwrap();
        ltxvfs::register().unwrap();
    });
}

/// `sqlite3_log` lines so far that contain `needle`.
pub fn log_lines(needle: &str) -> Vec<String> {
    LOG.lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}

/// Asserts that opening `url` (with `extra` URI parameters) is SQLITE_CANTOPEN and that
/// `sqlite3_log` got a sentence containing `expect_in_log`.
pub fn assert_cantopen(url: &str, extra: &str, expect_in_log: &str) {
    let err = open_replica(url, extra).unwrap_err();
    assert_eq!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::CannotOpen),
        "{err}"
    );
    assert!(
        !log_lines(expect_in_log).is_empty(),
        "no log line containing {expect_in_log:?}"
    );
}

/// `PRAGMA ltx_stats` of a connection.
pub fn stats(conn: &Connection) -> String {
    conn.pragma_query_value(None, "ltx_stats", |r| r.get(0))
        .unwrap()
}

/// One counter of `PRAGMA ltx_stats`.
pub fn stat(conn: &Connection, key: &str) -> u64 {
    let s = stats(conn);
    let at = s
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("{key} in {s}"));
    s[at + key.len() + 3..]
        .split([',', '}'])
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A replica URL as a URI parameter value.
pub fn uri_escape(url: &str) -> String {
    url.replace('%', "%25")
        .replace('&', "%26")
        .replace('?', "%3F")
        .replace('#', "%23")
}

/// Opens a replica through the `ltx` VFS; `extra` is appended to the URI (`&cache_size=…`).
pub fn open_replica(url: &str, extra: &str) -> rusqlite::Result<Connection> {
    register();
    Connection::open_with_flags(
        format!("file:app.db?vfs=ltx&replica={}{extra}", uri_escape(url)),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )
}

/// Trusts `conn` with the control functions (`ltx_register`, `ltx_set_time`, ...), as a host
/// does through `ltxvfs::trust_connection`: connections opened after `register()` have only
/// the status functions (README "Security").
pub fn trust(conn: &Connection) {
    register();
    // SAFETY: an open connection of the bundled SQLite that ltxvfs links too, used by this
    // thread only for the call.
    unsafe { ltxvfs::trust_connection(conn.handle()) }.unwrap();
}

pub fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

/// The S3 server `scripts/with-stores.sh` started (moto on 127.0.0.1).
pub fn s3_endpoint() -> String {
    std::env::var("LTXVFS_TEST_S3_ENDPOINT").expect(
        "no S3 server: run these tests through scripts/with-stores.sh (as `make test` does)",
    )
}

/// Creates a bucket on the test S3 server (path-style PUT; moto needs no signature).
pub fn create_bucket(name: &str) {
    use std::io::{Read, Write};
    let endpoint = s3_endpoint();
    let host = endpoint.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(host).unwrap();
    write!(
        conn,
        "PUT /{name} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "creating bucket {name}: {answer}"
    );
}

/// The GCS emulator `scripts/with-stores.sh` started (fake-gcs-server on 127.0.0.1).
pub fn gcs_endpoint() -> String {
    std::env::var("LTXVFS_TEST_GCS_ENDPOINT").expect(
        "no GCS emulator: run these tests through scripts/with-stores.sh (as `make test` does)",
    )
}

/// A replica URL on the GCS emulator.
pub fn gcs_url(bucket: &str, path: &str) -> String {
    format!("gs://{bucket}/{path}?endpoint={}", gcs_endpoint())
}

/// Creates a bucket on the GCS emulator (JSON API `POST /storage/v1/b`; no credentials).
pub fn create_gcs_bucket(name: &str) {
    let endpoint = gcs_endpoint();
    let host = endpoint.trim_start_matches("http://");
    let body = format!("{{\"name\": \"{name}\"}}");
    let mut conn = TcpStream::connect(host).unwrap();
    write!(
        conn,
        "POST /storage/v1/b?project=ltxvfs HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "creating GCS bucket {name}: {answer}"
    );
}

/// Azurite's well-known development account and key (public, not a secret).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The Azurite blob endpoint `scripts/with-stores.sh` started, with the account path.
pub fn azurite_endpoint() -> String {
    let base = std::env::var("AZURITE_BLOB_STORAGE_URL")
        .expect("no Azurite: run these tests through scripts/with-stores.sh (as `make test` does)");
    format!("{base}/{AZURITE_ACCOUNT}")
}

/// Creates a blob container on Azurite (Litestream does not create one).
pub fn create_container(name: &str) {
    let status = Command::new("python3")
        .arg(util::repo_dir().join("tests/azure/create_container.py"))
        .arg(azurite_endpoint())
        .arg(name)
        .status()
        .unwrap();
    assert!(status.success(), "creating container {name}");
}

/// A bucket or container name from a test name: lowercase letters, digits and dashes.
/// A fresh bucket of the test S3 server for `name`: the replica URL of `app.db` in it, and
/// the litestream config lines that name the same replica.
pub(crate) fn s3_replica(name: &str) -> (String, String) {
    let bucket = bucket_name(name);
    create_bucket(&bucket);
    let endpoint = s3_endpoint();
    (
        format!("s3://{bucket}/app.db?endpoint={endpoint}&region=us-east-1&forcePathStyle=true"),
        format!(
            "type: s3\n      bucket: {bucket}\n      path: app.db\n      endpoint: {endpoint}\n      region: us-east-1\n      force-path-style: true"
        ),
    )
}

pub(crate) fn bucket_name(name: &str) -> String {
    name.to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Where a test primary replicates to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A `file://` directory.
    File,
    /// A bucket of its own on the test S3 server.
    S3,
    /// A container of its own on Azurite.
    Azure,
    /// A bucket of its own on the GCS emulator, written by litestream's own GCS client
    /// (pointed at the emulator with `STORAGE_EMULATOR_HOST`).
    Gcs,
}

/// `2026-11-21T05:07:37.123Z` for milliseconds since the epoch (RFC 3339, UTC).
pub fn format_rfc3339_ms(ms: u64) -> String {
    let days = (ms / 86_400_000) as i64;
    let rem = ms % 86_400_000;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// Polls `cond` every 20 ms for up to 60 s.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A primary database under a running `litestream replicate` to a [`Target`]. Stopped
/// (SIGKILL) on drop.
pub struct Primary {
    pub version: String,
    pub dir: PathBuf,
    pub db_path: PathBuf,
    url: String,
    config: PathBuf,
    /// Environment for every litestream command (replicate, restore).
    litestream_env: Vec<(String, String)>,
    store: ltxvfs::store::Store,
    rt: tokio::runtime::Runtime,
    child: Child,
}

impl Primary {
    /// Creates `dir/app.db` in WAL mode with `schema`, then starts litestream `version`
    /// with fast syncs and L1 compaction every `l1_interval`, and waits for its snapshot.
    pub fn start(
        version: &str,
        name: &str,
        schema: &str,
        l1_interval: &str,
        target: Target,
    ) -> Primary {
        let global = format!("levels:\n  - interval: {l1_interval}\nl0-retention: 1h\n");
        Primary::start_with(version, name, schema, &global, target)
    }

    /// As [`Primary::start`], with `global` as the top of litestream's config (levels,
    /// retention, snapshots).
    pub fn start_with(
        version: &str,
        name: &str,
        schema: &str,
        global: &str,
        target: Target,
    ) -> Primary {
        let dir = util::scratch_dir(name);
        let db_path = dir.join("app.db");
        let db = Connection::open(&db_path).unwrap();
        db.pragma_update(None, "journal_mode", "wal").unwrap();
        db.execute_batch(schema).unwrap();
        drop(db);
        let (replica_yaml, url) = match target {
            Target::File => {
                let replica = dir.join("replica");
                (
                    format!("type: file\n      path: {}", replica.display()),
                    file_url(&replica),
                )
            }
            Target::S3 => {
                let (url, yaml) = s3_replica(name);
                (yaml, url)
            }
            Target::Azure => {
                let container = bucket_name(name);
                create_container(&container);
                (
                    format!(
                        "type: abs\n      account-name: {AZURITE_ACCOUNT}\n      account-key: {AZURITE_KEY}\n      bucket: {container}\n      path: app.db\n      endpoint: {}",
                        azurite_endpoint()
                    ),
                    format!("abs://{AZURITE_ACCOUNT}@{container}/app.db"),
                )
            }
            Target::Gcs => {
                let bucket = bucket_name(name);
                create_gcs_bucket(&bucket);
                (
                    format!("type: gs\n      bucket: {bucket}\n      path: app.db"),
                    gcs_url(&bucket, "app.db"),
                )
            }
        };
        // litestream's GCS client (Go's cloud.google.com/go/storage) goes to an emulator,
        // without credentials, when this names one; it is harmless for the other targets.
        let litestream_env = match target {
            Target::Gcs => vec![(
                "STORAGE_EMULATOR_HOST".to_owned(),
                gcs_endpoint().trim_start_matches("http://").to_owned(),
            )],
            _ => Vec::new(),
        };
        let config = dir.join("litestream.yml");
        std::fs::write(
            &config,
            format!(
                "{global}dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      {replica_yaml}\n      sync-interval: 200ms\n",
                db_path.display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("litestream.log")).unwrap();
        let child = Command::new(util::litestream_bin(version))
            .env_remove("AWS_CA_BUNDLE")
            .envs(litestream_env.iter().cloned())
            .args(["replicate", "-config"])
            .arg(&config)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        if target == Target::File {
            std::fs::create_dir_all(dir.join("replica")).unwrap();
        }
        let primary = Primary {
            version: version.to_owned(),
            store: ltxvfs::store::Store::from_url(&url, Duration::from_secs(10)).unwrap(),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            url,
            config,
            litestream_env,
            dir,
            db_path,
            child,
        };
        wait_until("the first LTX file", || primary.max_txid(0) >= 1);
        primary
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The largest max TXID among the level's LTX files, 0 if none, as listed by ltxvfs's
    /// own store (so this also checks the key layout Litestream used).
    pub fn max_txid(&self, level: u8) -> u64 {
        let files = self.rt.block_on(self.store.list_level(level)).unwrap();
        files.iter().map(|f| f.id.max_txid.get()).max().unwrap_or(0)
    }

    /// Runs `sql` on the primary as one transaction and waits until its L0 file exists.
    /// Returns the replica's TXID after it.
    pub fn commit(&self, sql: &str) -> Txid {
        let before = self.max_txid(0);
        let db = Connection::open(&self.db_path).unwrap();
        db.execute_batch(&format!("BEGIN; {sql}; COMMIT;")).unwrap();
        wait_until("an L0 file for the commit", || self.max_txid(0) > before);
        Txid(self.max_txid(0))
    }

    /// Waits until litestream has shipped nothing new for a second (after a commit it may
    /// still write a file or two, e.g. after a checkpoint) and returns the replica's TXID.
    pub fn settle(&self) -> Txid {
        let mut last = self.max_txid(0);
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let now = self.max_txid(0);
            if now == last {
                return Txid(now);
            }
            last = now;
        }
    }

    /// Stops `litestream replicate` (SIGKILL); the replica stays for restores.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `litestream restore -txid` of this replica into `out` (through the config file, which
    /// knows the endpoint and keys of every target).
    pub fn restore(&self, txid: Txid, out: &Path) -> Vec<u8> {
        self.restore_with(&["-txid", &txid.to_string()], out)
    }

    /// `litestream restore -timestamp` (RFC 3339) of this replica into `out`.
    pub fn restore_at_time(&self, time: &str, out: &Path) -> Vec<u8> {
        self.restore_with(&["-timestamp", time], out)
    }

    fn restore_with(&self, target: &[&str], out: &Path) -> Vec<u8> {
        let _ = std::fs::remove_file(out);
        let output = Command::new(util::litestream_bin(&self.version))
            .env_remove("AWS_CA_BUNDLE")
            .envs(self.litestream_env.iter().cloned())
            .arg("restore")
            .args(target)
            .arg("-config")
            .arg(&self.config)
            .arg("-o")
            .arg(out)
            .arg(&self.db_path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "restore failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::read(out).unwrap()
    }
}

impl Drop for Primary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies a checked-in fixture replica (`version`) to a scratch directory of its own, so that
/// a test gets a `Replica` (and stats) no other test shares; `damage` may alter each file.
pub fn copy_fixture_replica(version: &str, name: &str, damage: impl Fn(&mut Vec<u8>)) -> PathBuf {
    let src = util::repo_dir()
        .join("tests/fixtures")
        .join(format!("litestream-{version}"))
        .join("replica");
    let dst = util::scratch_dir(name).join("replica");
    for (id, path) in util::replica_files(&src) {
        let to = dst
            .join("ltx")
            .join(id.level.to_string())
            .join(path.file_name().unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        damage(&mut bytes);
        std::fs::write(to, bytes).unwrap();
    }
    dst
}

/// Every page of `conn`'s main database, read through its VFS by SQLite's backup API.
pub fn read_all_pages(conn: &Connection, scratch: &Path) -> Vec<u8> {
    let out = scratch.join("backup.db");
    let _ = std::fs::remove_file(&out);
    let mut dst = Connection::open(&out).unwrap();
    {
        let backup = rusqlite::backup::Backup::new(conn, &mut dst).unwrap();
        backup
            .run_to_completion(1000, Duration::ZERO, None)
            .unwrap();
    }
    drop(dst);
    std::fs::read(out).unwrap()
}

/// Page-by-page equality of two database images, except the page-1 header bytes that the
/// VFS patches (18-19 journal mode, 24-31 change counter and size, 92-95 version) and that a
/// backup rewrites (those and 40-43, the schema cookie, which it increments), and 96-99, the
/// version of the SQLite that last committed the file (`litestream restore -txid` commits
/// with its own, 3.53.0 in 0.5.17; the backup with the bundled one).
pub fn assert_same_pages(ours: &[u8], restored: &[u8], page_size: usize) {
    assert_eq!(ours.len(), restored.len(), "database sizes differ");
    for (n, (a, b)) in ours
        .chunks(page_size)
        .zip(restored.chunks(page_size))
        .enumerate()
    {
        if n == 0 {
            let skip = |i: usize| matches!(i, 18 | 19 | 24..=31 | 40..=43 | 92..=99);
            let diff = (0..page_size).find(|&i| !skip(i) && a[i] != b[i]);
            assert_eq!(diff, None, "page 1 differs at byte {diff:?}");
        } else {
            assert!(a == b, "page {} differs", n + 1);
        }
    }
}

/// `tests/faults/fault_proxy.py` in front of an object store (S3, GCS): faults at a rate set
/// with [`FaultProxy::control`], and a count of the requests it saw. Killed on drop.
pub struct FaultProxy {
    child: Child,
    port: u16,
}

impl FaultProxy {
    pub fn start(upstream: &str) -> FaultProxy {
        let python = util::repo_dir().join(".tools/moto/bin/python");
        let mut child = Command::new(if python.exists() {
            python
        } else {
            "python3".into()
        })
        .arg(util::repo_dir().join("tests/faults/fault_proxy.py"))
        .args([
            "--upstream",
            upstream,
            "--seed",
            "8",
            "--latency",
            "1",
            "--jitter",
            "15",
        ])
        .args(["--stall", "3"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .unwrap()
            .parse()
            .unwrap();
        FaultProxy { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// POSTs `body` (JSON) to the control path, or GETs it; returns the answer's body.
    pub fn control(&self, body: Option<&str>) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let request = match body {
            Some(b) => format!(
                "POST /__faults HTTP/1.0\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ),
            None => "GET /__faults HTTP/1.0\r\n\r\n".to_string(),
        };
        s.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_string()
    }

    /// A counter from the proxy's JSON (`"name": N`).
    pub fn count(&self, name: &str) -> u64 {
        let json = self.control(None);
        let key = format!("\"{name}\": ");
        let at = json.rfind(&key).unwrap() + key.len();
        json[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
