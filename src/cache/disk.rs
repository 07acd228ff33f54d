//! The disk cache (`cache_dir`): decompressed pages that outlive the process, shared by the
//! processes that read one replica.
//!
//! One file per page, at `DIR/<replica>/<level>/<min>-<max>/<pgno>`, and one for the LTX
//! file's header and page index beside them (`.../<min>-<max>/00000000`, page 0): every part a number
//! we formatted (the replica's part is a hash of its URL), never a name the store gave, so
//! nothing a replica holds can lead outside `DIR`. LTX files never change, so an entry
//! never goes stale.
//!
//! A page is written to a temporary file and renamed into place: a reader sees the whole
//! file or none. The file carries the page number, length and CRC-64 of the page, checked on
//! every read, so a file cut short by a crash (renamed before its data reached the disk) or
//! damaged later is dropped, never served. Past `budget` bytes, the least recently written
//! files go.

use super::PageKey;
use crate::ltx::crc64;
use crate::replica::LtxFileId;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

const MAGIC: &[u8; 8] = b"ltxvfsp1";
/// Magic, tag (u32: the page number; 0 for a file's index), payload length (u32), CRC-64 of
/// the payload (u64); all big-endian.
const HEADER: usize = 8 + 4 + 4 + 8;
/// A file's header and index, beside its pages: named as page 0, which no page is.
const INDEX_NAME: &str = "00000000";
const INDEX_TAG: u32 = 0;

/// What the disk cache did, for `PRAGMA ltx_stats`.
#[derive(Debug, Default)]
pub struct DiskStats {
    pub hits: AtomicU64,
    pub writes: AtomicU64,
    /// Entries found damaged or cut short, dropped.
    pub rejects: AtomicU64,
}

#[derive(Debug)]
pub struct DiskCache {
    dir: PathBuf,
    budget: u64,
    /// Bytes written since the last sweep.
    written: AtomicU64,
    tmp_serial: AtomicU64,
    pub stats: DiskStats,
}

impl DiskCache {
    /// The disk cache of replica `url` under `root` (created if missing), bounded by
    /// `budget` bytes.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn open(root: &Path, url: &str, budget: u64) -> std::io::Result<DiskCache> {
        let dir = root.join(format!("{:016x}", crc64(url.as_bytes())));
        fs::create_dir_all(&dir)?;
        Ok(DiskCache {
            dir,
            budget,
            written: AtomicU64::new(0),
            tmp_serial: AtomicU64::new(0),
            stats: DiskStats::default(),
        })
    }

    /// This replica's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file_dir(&self, file: &LtxFileId) -> PathBuf {
        self.dir.join(file.level.to_string()).join(format!(
            "{:016x}-{:016x}",
            file.min_txid.get(),
            file.max_txid.get()
        ))
    }

    fn path(&self, key: &PageKey) -> PathBuf {
        self.file_dir(&key.file)
            .join(format!("{:08x}", key.pgno.get()))
    }

    /// The page, if a whole and undamaged copy is on disk.
    pub fn get(&self, key: &PageKey) -> Option<Arc<[u8]>> {
        self.read(&self.path(key), key.pgno.get())
            .map(|page| page.into())
    }

    /// Stores a page unless it is there already. Failures (a full disk, a read-only
    /// directory) only mean the page is not cached.
    pub fn put(&self, key: &PageKey, page: &[u8]) {
        self.write(&self.path(key), key.pgno.get(), page);
    }

    /// The header and page index of `file` (its first [`crate::ltx::HEADER_SIZE`] bytes,
    /// then its encoded index entries), if a whole and undamaged copy is on disk: a restart
    /// reads no index it has seen from the store.
    pub fn get_index(&self, file: &LtxFileId) -> Option<Vec<u8>> {
        self.read(&self.file_dir(file).join(INDEX_NAME), INDEX_TAG)
    }

    /// Stores `file`'s header and index, as [`DiskCache::get_index`] gives them back.
    pub fn put_index(&self, file: &LtxFileId, header_and_index: &[u8]) {
        self.write(
            &self.file_dir(file).join(INDEX_NAME),
            INDEX_TAG,
            header_and_index,
        );
    }

    /// The entry at `path` tagged `tag`, checked; a damaged one is removed.
    fn read(&self, path: &Path, tag: u32) -> Option<Vec<u8>> {
        let bytes = fs::read(path).ok()?;
        match decode(tag, &bytes) {
            Some(payload) => {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                Some(payload)
            }
            None => {
                self.stats.rejects.fetch_add(1, Ordering::Relaxed);
                let _ = fs::remove_file(path);
                None
            }
        }
    }

    fn write(&self, path: &Path, tag: u32, payload: &[u8]) {
        let page = payload;
        if path.exists() {
            return;
        }
        let Some(parent) = path.parent() else { return };
        if fs::create_dir_all(parent).is_err() {
            return;
        }
        let tmp = parent.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            self.tmp_serial.fetch_add(1, Ordering::Relaxed)
        ));
        let written = fs::File::create(&tmp).and_then(|mut f| f.write_all(&encode(tag, page)));
        if written.is_err() || fs::rename(&tmp, path).is_err() {
            let _ = fs::remove_file(&tmp);
            return;
        }
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        let size = (HEADER + page.len()) as u64;
        if self.written.fetch_add(size, Ordering::Relaxed) + size > self.budget / 10 {
            self.written.store(0, Ordering::Relaxed);
            self.sweep();
        }
    }

    /// Deletes the least recently written files until the cache is within 80% of its
    /// budget, and temporary files a crashed writer left (older than a minute).
    pub fn sweep(&self) {
        let mut files = Vec::new();
        walk(&self.dir, &mut files);
        let now = SystemTime::now();
        let mut total: u64 = 0;
        let mut entries = Vec::with_capacity(files.len());
        for (path, size, modified) in files {
            let is_tmp = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"));
            if is_tmp {
                if now.duration_since(modified).is_ok_and(|d| d.as_secs() > 60) {
                    let _ = fs::remove_file(&path);
                }
                continue;
            }
            total += size;
            entries.push((modified, size, path));
        }
        if total <= self.budget {
            return;
        }
        entries.sort();
        let target = self.budget / 10 * 8;
        for (_, size, path) in entries {
            if total <= target {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total -= size;
            }
        }
    }
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64, SystemTime)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            walk(&entry.path(), out);
        } else if meta.is_file() {
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            out.push((entry.path(), meta.len(), modified));
        }
    }
}

fn encode(tag: u32, page: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + page.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&tag.to_be_bytes());
    out.extend_from_slice(&u32::try_from(page.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&crc64(page).to_be_bytes());
    out.extend_from_slice(page);
    out
}

fn decode(tag: u32, bytes: &[u8]) -> Option<Vec<u8>> {
    let (header, page) = bytes.split_at_checked(HEADER)?;
    let u32_at = |at: usize| Some(u32::from_be_bytes(header.get(at..at + 4)?.try_into().ok()?));
    let crc = u64::from_be_bytes(header.get(16..24)?.try_into().ok()?);
    let whole = header.get(..8)? == MAGIC
        && u32_at(8)? == tag
        && usize::try_from(u32_at(12)?).ok()? == page.len()
        && crc64(page) == crc;
    whole.then(|| page.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_key as key;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ltxvfs-disk-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn pages_round_trip_and_damaged_ones_are_dropped() {
        let root = scratch("roundtrip");
        let disk = DiskCache::open(&root, "s3://b/app.db", 1 << 20).unwrap();
        let page = vec![7u8; 4096];
        disk.put(&key(3), &page);
        assert_eq!(disk.get(&key(3)).as_deref(), Some(&page[..]));
        assert!(disk.get(&key(4)).is_none());
        assert!(disk.path(&key(3)).starts_with(&root));

        // Cut short (a crash after the rename, before the data reached the disk).
        let path = disk.path(&key(3));
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(disk.get(&key(3)).is_none());
        assert!(!path.exists(), "a damaged entry is removed");
        // One flipped bit.
        disk.put(&key(3), &page);
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER + 100] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(disk.get(&key(3)).is_none());
        // Another page's file in its place.
        disk.put(&key(5), &page);
        fs::copy(disk.path(&key(5)), disk.path(&key(6))).unwrap();
        assert!(disk.get(&key(6)).is_none());
        assert_eq!(disk.stats.rejects.load(Ordering::Relaxed), 3);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn the_budget_holds_and_stale_temporary_files_go() {
        let root = scratch("budget");
        let disk = DiskCache::open(&root, "file:///r", 40 * 1024).unwrap();
        let old_tmp = disk.dir().join(".tmp-1-1");
        fs::write(&old_tmp, b"half a page").unwrap();
        let long_ago = SystemTime::now() - std::time::Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(&old_tmp)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        for n in 1..=30 {
            disk.put(&key(n), &[n as u8; 1024]);
        }
        disk.sweep();
        let mut files = Vec::new();
        walk(disk.dir(), &mut files);
        let total: u64 = files.iter().map(|(_, s, _)| s).sum();
        assert!(total <= 40 * 1024, "{total}");
        assert!(!old_tmp.exists());
        assert!(disk.get(&key(30)).is_some(), "the newest stay");
        let _ = fs::remove_dir_all(&root);
    }
}
