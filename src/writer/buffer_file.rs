//! The buffer file of `sync=<duration>`: the transactions a writer acknowledged and has not
//! yet stored, on local disk, fsync'd before COMMIT returns.
//!
//! Layout: a header (magic `LTXVFSB1`, the TXID the records build on, a hash of the replica
//! URL), then records, each `kind u8, len u32, payload, crc64 u64` (big-endian; the CRC
//! covers kind, len and payload). A commit record holds a transaction's pages; a batch
//! record, the LTX file being uploaded for every commit record before it. A record cut short
//! by a crash fails its CRC and is dropped at the next open: its COMMIT never returned.
//!
//! Once a batch is stored, the file starts over (a new file renamed over the old one) on the
//! next TXID with the commits that came after the batch. An exclusive lock on the open file
//! keeps a second process from using the same buffer.

use super::private_dir::private_file;
use crate::error::{Error, Result};
use crate::ltx::{PageSize, Pgno, Txid, crc64};
use bytes::Bytes;
use std::fs::{File, TryLockError};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"LTXVFSB1";
pub(super) const HEADER_SIZE: u64 = 24;
const KIND_COMMIT: u8 = 1;
const KIND_BATCH: u8 = 2;

/// One transaction as committed here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CommitRecord {
    pub(super) page_size: PageSize,
    /// Database size in pages after it.
    pub(super) commit: u32,
    pub(super) timestamp_ms: i64,
    pub(super) pages: Vec<(Pgno, Box<[u8]>)>,
}

/// What a buffer file holds after its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Record {
    Commit(CommitRecord),
    /// The LTX file of an upload whose outcome was not known yet.
    Batch(Bytes),
}

#[derive(Debug)]
pub(super) struct BufferFile {
    path: PathBuf,
    file: File,
    url_hash: u64,
    base: Txid,
    len: u64,
}

impl BufferFile {
    /// Opens (or makes, on `base_if_new`) the buffer at `path` for the replica at `url`,
    /// locked against other processes, with the records it holds, each with the offset just
    /// past it.
    ///
    /// # Errors
    /// [`Error::Local`] naming `path` if it cannot be made, is locked by another process, or
    /// is not a buffer of this replica.
    pub(super) fn open(
        path: &Path,
        url: &str,
        base_if_new: Txid,
    ) -> Result<(BufferFile, Vec<(Record, u64)>)> {
        let local = |detail: String| Error::Local {
            path: path.display().to_string(),
            detail,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| local(format!("cannot make its directory: {e}")))?;
        }
        // 0600 and never through a symlink: it holds the database's pages.
        let file = private_file()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| local(format!("cannot open the write buffer: {e}")))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(local(
                    "the write buffer is in use by another process (give each writer its own buffer=)"
                        .into(),
                ));
            }
            Err(TryLockError::Error(e)) => {
                return Err(local(format!("cannot lock the write buffer: {e}")));
            }
        }
        let bytes = std::fs::read(path).map_err(|e| local(format!("cannot read it: {e}")))?;
        let url_hash = crc64(url.as_bytes());
        let mut buffer = BufferFile {
            path: path.to_owned(),
            file,
            url_hash,
            base: base_if_new,
            len: 0,
        };
        if bytes.len() < HEADER_SIZE as usize {
            // New, or cut short before its header was whole: nothing was acknowledged.
            buffer.write_header(base_if_new)?;
            return Ok((buffer, Vec::new()));
        }
        let be64 = |at: usize| {
            bytes
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes)
        };
        let (base, hash) = (be64(8), be64(16));
        if bytes.get(..8) != Some(&MAGIC[..]) {
            return Err(local("is not an ltxvfs write buffer".into()));
        }
        if hash != url_hash {
            return Err(local("is the write buffer of another replica URL".into()));
        }
        buffer.base = Txid(base);
        let (records, whole) = parse_records(bytes.get(HEADER_SIZE as usize..).unwrap_or_default());
        let records = records
            .into_iter()
            .map(|(r, end)| (r, HEADER_SIZE + end as u64))
            .collect();
        buffer.len = HEADER_SIZE + whole as u64;
        if buffer.len < bytes.len() as u64 {
            buffer
                .file
                .set_len(buffer.len)
                .and_then(|()| buffer.file.sync_data())
                .map_err(|e| local(format!("cannot drop a record cut short: {e}")))?;
        }
        Ok((buffer, records))
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The TXID the records build on.
    pub(super) fn base(&self) -> Txid {
        self.base
    }

    /// The file's length: where the next record goes.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Appends a commit record, durably.
    pub(super) fn append_commit(&mut self, record: &CommitRecord) -> Result<()> {
        let mut payload =
            Vec::with_capacity(20 + record.pages.len() * (4 + record.page_size.as_usize()));
        payload.extend_from_slice(&record.page_size.get().to_be_bytes());
        payload.extend_from_slice(&record.commit.to_be_bytes());
        payload.extend_from_slice(&record.timestamp_ms.to_be_bytes());
        payload.extend_from_slice(&(record.pages.len() as u32).to_be_bytes());
        for (pgno, data) in &record.pages {
            payload.extend_from_slice(&pgno.get().to_be_bytes());
            payload.extend_from_slice(data);
        }
        self.append(KIND_COMMIT, &payload)
    }

    /// Appends a batch record (the LTX file about to be uploaded), durably.
    pub(super) fn append_batch(&mut self, ltx: &[u8]) -> Result<()> {
        self.append(KIND_BATCH, ltx)
    }

    fn append(&mut self, kind: u8, payload: &[u8]) -> Result<()> {
        let len =
            u32::try_from(payload.len()).map_err(|_| self.error("a record over 4 GiB".into()))?;
        let mut record = Vec::with_capacity(payload.len() + 13);
        record.push(kind);
        record.extend_from_slice(&len.to_be_bytes());
        record.extend_from_slice(payload);
        let crc = crc64(&record);
        record.extend_from_slice(&crc.to_be_bytes());
        self.file
            .write_all_at(&record, self.len)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.error(format!("cannot write to the write buffer: {e}")))?;
        self.len += record.len() as u64;
        Ok(())
    }

    /// Drops what was appended from `len` on (a commit that was refused after all).
    pub(super) fn truncate(&mut self, len: u64) -> Result<()> {
        self.file
            .set_len(len)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.error(format!("cannot truncate the write buffer: {e}")))?;
        self.len = len;
        Ok(())
    }

    /// Starts over on `base` with the records from byte `keep_from` on: a new file, made
    /// whole and locked, then renamed over this one.
    pub(super) fn restart(&mut self, base: Txid, keep_from: u64) -> Result<()> {
        let keep = if keep_from < self.len {
            let mut kept = vec![0u8; (self.len - keep_from) as usize];
            self.file
                .read_exact_at(&mut kept, keep_from)
                .map_err(|e| self.error(format!("cannot read the write buffer: {e}")))?;
            kept
        } else {
            Vec::new()
        };
        let mut tmp_path = self.path.clone().into_os_string();
        tmp_path.push(".tmp");
        let tmp_path = PathBuf::from(tmp_path);
        let file = private_file()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp_path)
            .map_err(|e| self.error(format!("cannot make {}: {e}", tmp_path.display())))?;
        let _ = file.try_lock();
        let header = header(base, self.url_hash);
        file.write_all_at(&header, 0)
            .and_then(|()| file.write_all_at(&keep, HEADER_SIZE))
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&tmp_path, &self.path))
            .and_then(|()| sync_dir(&self.path))
            .map_err(|e| self.error(format!("cannot start the write buffer over: {e}")))?;
        self.file = file;
        self.base = base;
        self.len = HEADER_SIZE + keep.len() as u64;
        Ok(())
    }

    fn write_header(&mut self, base: Txid) -> Result<()> {
        let header = header(base, self.url_hash);
        self.file
            .set_len(0)
            .and_then(|()| self.file.write_all_at(&header, 0))
            .and_then(|()| self.file.sync_all())
            .and_then(|()| sync_dir(&self.path))
            .map_err(|e| self.error(format!("cannot write its header: {e}")))?;
        self.base = base;
        self.len = HEADER_SIZE;
        Ok(())
    }

    fn error(&self, detail: String) -> Error {
        Error::Local {
            path: self.path.display().to_string(),
            detail,
        }
    }
}

fn header(base: Txid, url_hash: u64) -> [u8; HEADER_SIZE as usize] {
    let mut h = [0u8; HEADER_SIZE as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&base.get().to_be_bytes());
    h[16..24].copy_from_slice(&url_hash.to_be_bytes());
    h
}

/// Makes a rename in `path`'s directory durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

/// The whole records at the start of `bytes`, each with the offset past it, and how many
/// bytes they take: parsing stops at the first record cut short or failing its CRC.
fn parse_records(bytes: &[u8]) -> (Vec<(Record, usize)>, usize) {
    let mut records = Vec::new();
    let mut at = 0usize;
    while let Some((record, size)) = bytes.get(at..).and_then(parse_record) {
        at += size;
        records.push((record, at));
    }
    (records, at)
}

fn parse_record(bytes: &[u8]) -> Option<(Record, usize)> {
    let kind = *bytes.first()?;
    let len = u32::from_be_bytes(bytes.get(1..5)?.try_into().ok()?) as usize;
    let end = 5usize.checked_add(len)?;
    let crc = u64::from_be_bytes(bytes.get(end..end + 8)?.try_into().ok()?);
    if crc64(bytes.get(..end)?) != crc {
        return None;
    }
    let payload = bytes.get(5..end)?;
    let record = match kind {
        KIND_COMMIT => Record::Commit(parse_commit(payload)?),
        KIND_BATCH => Record::Batch(Bytes::copy_from_slice(payload)),
        _ => return None,
    };
    Some((record, end + 8))
}

fn parse_commit(p: &[u8]) -> Option<CommitRecord> {
    let be32 = |at: usize| Some(u32::from_be_bytes(p.get(at..at + 4)?.try_into().ok()?));
    let page_size = PageSize::new(be32(0)?)?;
    let commit = be32(4)?;
    let timestamp_ms = i64::from_be_bytes(p.get(8..16)?.try_into().ok()?);
    let count = be32(16)? as usize;
    let ps = page_size.as_usize();
    let mut pages = Vec::with_capacity(count.min(p.len() / ps.max(1)));
    let mut at = 20;
    for _ in 0..count {
        let pgno = Pgno::new(be32(at)?)?;
        let data = p.get(at + 4..at + 4 + ps)?;
        pages.push((pgno, data.into()));
        at += 4 + ps;
    }
    (at == p.len()).then_some(CommitRecord {
        page_size,
        commit,
        timestamp_ms,
        pages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::os::unix::fs::PermissionsExt;

    /// A new directory of this test run's own.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ltxvfs-buffer-test-{}-{name}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn record(n: u8) -> CommitRecord {
        CommitRecord {
            page_size: PageSize::new(512).unwrap_or(PageSize::DEFAULT),
            commit: u32::from(n) + 1,
            timestamp_ms: 1_700_000_000_000 + i64::from(n),
            pages: vec![(Pgno::ONE, vec![n; 512].into())],
        }
    }

    #[test]
    fn a_buffer_is_0600_and_never_opened_through_a_symlink() -> Result<()> {
        let dir = scratch("private");
        let path = dir.join("app.buffer");
        let url = "file:///replica";
        let (mut b, _) = BufferFile::open(&path, url, Txid::ZERO.next())?;
        b.append_commit(&record(1))?;
        b.restart(Txid::ZERO.next().next(), b.len())?;
        let mode = |p: &Path| std::fs::symlink_metadata(p).map_or(0, |m| m.permissions().mode());
        assert_eq!(mode(&path) & 0o777, 0o600);
        drop(b);
        let target = dir.join("elsewhere");
        std::fs::write(&target, b"keep").unwrap_or_default();
        let planted = dir.join("planted.buffer");
        std::os::unix::fs::symlink(&target, &planted).unwrap_or_default();
        let err = BufferFile::open(&planted, url, Txid::ZERO.next())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("cannot open the write buffer"), "{err}");
        assert_eq!(std::fs::read(&target).unwrap_or_default(), b"keep");
        let _ = std::fs::remove_dir_all(dir);
        Ok(())
    }

    #[test]
    fn records_survive_a_reopen_and_a_torn_tail_is_dropped() -> Result<()> {
        let dir = scratch("reopen");
        let path = dir.join("app.buffer");
        let url = "file:///replica";
        {
            let (mut b, records) = BufferFile::open(&path, url, Txid::ZERO.next())?;
            assert!(records.is_empty());
            b.append_commit(&record(1))?;
            b.append_batch(b"ltx bytes")?;
            b.append_commit(&record(2))?;
        }
        // A record cut short by a crash.
        let whole = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all_at(&[KIND_COMMIT, 0, 0, 9], whole).unwrap();
        drop(f);
        let (b, records) = BufferFile::open(&path, url, Txid::ZERO)?;
        assert_eq!(b.base(), Txid::ZERO.next());
        assert_eq!(b.len(), whole, "the torn record is gone");
        assert_eq!(
            records.into_iter().map(|(r, _)| r).collect::<Vec<_>>(),
            vec![
                Record::Commit(record(1)),
                Record::Batch(Bytes::from_static(b"ltx bytes")),
                Record::Commit(record(2)),
            ]
        );
        assert!(
            BufferFile::open(&path, url, Txid::ZERO).is_err(),
            "locked while open"
        );
        drop(b);
        assert!(
            BufferFile::open(&path, "s3://other/db", Txid::ZERO).is_err(),
            "another replica's buffer"
        );
        Ok(())
    }

    #[test]
    fn restart_keeps_what_came_after_the_batch() -> Result<()> {
        let dir = scratch("restart");
        let path = dir.join("b");
        let (mut b, _) = BufferFile::open(&path, "u", Txid::ZERO.next())?;
        b.append_commit(&record(1))?;
        b.append_batch(b"x")?;
        let after_batch = b.len();
        b.append_commit(&record(2))?;
        let before = b.len();
        b.append_commit(&record(3))?;
        b.truncate(before)?;
        let two = Txid::ZERO.next().next();
        b.restart(two, after_batch)?;
        drop(b);
        let (b, records) = BufferFile::open(&path, "u", Txid::ZERO)?;
        assert_eq!(b.base(), two);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].0, Record::Commit(record(2)));
        Ok(())
    }
}
