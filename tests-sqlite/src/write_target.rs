//! Replicas written by ltxvfs itself in write mode (no litestream process): opening them
//! writable, and reading them back with the real `litestream restore`.

use crate::{Target, file_url, register, s3_replica, uri_escape, util};
use rusqlite::{Connection, OpenFlags};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
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
    pub url: String,
    pub dir: PathBuf,
    replica_yaml: String,
}

impl WriteTarget {
    /// An empty replica: a file:// directory, or a path in a fresh bucket of the test S3.
    pub fn new(name: &str, target: Target) -> WriteTarget {
        let dir = util::scratch_dir(name);
        let (url, replica_yaml) = match target {
            Target::S3 => s3_replica(name),
            _ => {
                let replica = dir.join("replica");
                std::fs::create_dir_all(&replica).unwrap();
                (
                    file_url(&replica),
                    format!("type: file\n      path: {}", replica.display()),
                )
            }
        };
        WriteTarget {
            url,
            dir,
            replica_yaml,
        }
    }

    /// The real `litestream restore` (0.5.17) of the newest state, as a file's bytes.
    pub fn restore(&self) -> Vec<u8> {
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
            .args(["restore", "-config"])
            .arg(&config)
            .arg("-o")
            .arg(&out)
            .arg(&db_path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "restore failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::read(out).unwrap()
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
