//! The disk cache (`cache_dir`): a process killed while it fills it, entries cut short or
//! damaged afterwards, and the next reader still gets every page right (damaged entries are
//! dropped and fetched again), from files only inside the cache directory.

use ltxvfs_sqlite_tests::{
    Primary, Target, assert_same_pages, open_replica, read_all_pages, stat, stats, util,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_crash_and_damaged_entries_never_give_a_wrong_page() {
    let primary = Primary::start(
        "0.5.17",
        "disk-cache",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX t_v ON t(v);",
        "1m",
        Target::File,
    );
    primary.commit(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000)
         INSERT INTO t SELECT i, printf('%0300d', i * 7) FROM n",
    );
    let txid = primary.settle();
    let cache_dir = primary.dir.join("cache");
    // cache_size=0: no memory cache, so every read is the disk cache's or the store's.
    let settings = format!("&poll=0&cache_size=0&cache_dir={}", cache_dir.display());

    // A reader process filling the cache, killed (SIGKILL) in the middle of it.
    let lib = util::repo_dir().join("target/release/libltxvfs");
    let script = "import sqlite3, sys\n\
                  c = sqlite3.connect(':memory:'); c.enable_load_extension(True)\n\
                  c.load_extension(sys.argv[1])\n\
                  db = sqlite3.connect('file:app.db?vfs=ltx&replica=' + sys.argv[2] + sys.argv[3], uri=True)\n\
                  while True: db.execute('SELECT count(*), sum(length(v)) FROM t').fetchone()\n";
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(&lib)
        .arg(primary.url())
        .arg(&settings)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ltxvfs_sqlite_tests::wait_until("the reader to fill part of the cache", || {
        cache_dir.exists() && cache_files(&cache_dir).len() > 50
    });
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();

    // Entries cut short (as a crash can leave a renamed file whose data never reached the
    // disk), flipped bits, and a writer's temporary file left behind.
    let files: Vec<PathBuf> = cache_files(&cache_dir)
        .into_iter()
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .collect();
    assert!(files.len() > 20, "{} cache files", files.len());
    for path in files.iter().take(5) {
        let bytes = std::fs::read(path).unwrap();
        std::fs::write(path, &bytes[..bytes.len() / 3]).unwrap();
    }
    for path in files.iter().skip(5).take(5) {
        let mut bytes = std::fs::read(path).unwrap();
        let at = bytes.len() - 7;
        bytes[at] ^= 0x20;
        std::fs::write(path, &bytes).unwrap();
    }
    std::fs::write(files[0].with_file_name(".tmp-1-1"), b"half a page").unwrap();

    let conn = open_replica(&primary.url(), &settings).unwrap();
    let ours = read_all_pages(&conn, &primary.dir);
    let restored = primary.restore(txid, &primary.dir.join("restored.db"));
    assert_same_pages(&ours, &restored, 4096);
    assert!(stat(&conn, "disk_hits") > 0, "{}", stats(&conn));
    assert!(stat(&conn, "disk_rejects") >= 10, "{}", stats(&conn));

    // Every file the cache holds is below its directory, named by numbers we formatted.
    for path in cache_files(&cache_dir) {
        let rel = path.strip_prefix(&cache_dir).unwrap();
        for part in rel.components() {
            let part = part.as_os_str().to_string_lossy();
            assert!(
                part.starts_with(".tmp-")
                    || part.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
                "{}",
                path.display()
            );
        }
    }
}

/// Issue #12: with `cache_dir`, the headers and page indexes of the files seen are kept on
/// disk too, so a restart asks the store for the listing only.
#[test]
fn a_restart_fetches_no_index_or_page_it_has_kept() {
    let primary = Primary::start(
        "0.5.17",
        "disk-cache-index",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
        "1m",
        Target::File,
    );
    for round in 0..3 {
        primary.commit(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
             INSERT INTO t SELECT {round} * 2000 + i, printf('%0200d', i) FROM n"
        ));
    }
    let txid = primary.settle();
    let cache_dir = primary.dir.join("cache");
    let settings = format!("&poll=0&cache_size=0&cache_dir={}", cache_dir.display());
    let first = open_replica(&primary.url(), &settings).unwrap();
    assert!(stat(&first, "get_requests") > 0, "{}", stats(&first));
    read_all_pages(&first, &primary.dir);
    drop(first);

    // The last connection closed: the replica is opened anew, as by a new process.
    let again = open_replica(&primary.url(), &settings).unwrap();
    let ours = read_all_pages(&again, &primary.dir);
    assert_eq!(stat(&again, "get_requests"), 0, "{}", stats(&again));
    assert!(stat(&again, "list_requests") > 0, "{}", stats(&again));
    let restored = primary.restore(txid, &primary.dir.join("restored.db"));
    assert_same_pages(&ours, &restored, 4096);
}
