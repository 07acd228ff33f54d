//! The spill file of a large write transaction: the pages it changed beyond what it may hold
//! in memory (`compaction_buffer`), at fixed slots of one page each. A private file (0600, in
//! a private directory of write mode's, see `private_dir`) that is unlinked as soon as it is
//! made: only its descriptor names it, so a crash leaves nothing on disk and no other process
//! can open it.

use super::private_dir;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// Tells apart the spill files one process makes at once.
static NEXT: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
pub(super) struct SpillFile {
    file: File,
    /// The directory it was made in, for sentences.
    dir: PathBuf,
    /// Bytes written: the next free slot.
    len: u64,
}

impl SpillFile {
    /// Makes a new spill file in write mode's private directory `spill`.
    ///
    /// # Errors
    /// A sentence naming the directory if the file cannot be made there.
    pub(super) fn new() -> Result<SpillFile, String> {
        let dir = private_dir::local_dir("spill");
        private_dir::ensure(&dir)?;
        let name = format!(
            "{}-{}.pages",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        // A crashed process of the same pid may have left this name: not ours to keep.
        let _ = std::fs::remove_file(&path);
        let file = private_dir::private_file()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("cannot make a spill file in {}: {e}", dir.display()))?;
        std::fs::remove_file(&path)
            .map_err(|e| format!("cannot unlink a spill file in {}: {e}", dir.display()))?;
        Ok(SpillFile { file, dir, len: 0 })
    }

    /// Writes `page` in a new slot and returns where.
    ///
    /// # Errors
    /// A sentence if the write fails (a full disk).
    pub(super) fn append(&mut self, page: &[u8]) -> Result<u64, String> {
        let at = self.len;
        self.write_at(at, page)?;
        self.len += page.len() as u64;
        Ok(at)
    }

    /// Writes `page` over the slot at `at`.
    ///
    /// # Errors
    /// As [`SpillFile::append`].
    pub(super) fn write_at(&self, at: u64, page: &[u8]) -> Result<(), String> {
        self.file.write_all_at(page, at).map_err(|e| {
            format!(
                "cannot spill the transaction's pages to a file in {}: {e}",
                self.dir.display()
            )
        })
    }

    /// The `len` bytes of the slot at `at`.
    ///
    /// # Errors
    /// A sentence if the read fails.
    pub(super) fn read(&self, at: u64, len: usize) -> Result<Vec<u8>, String> {
        let mut page = vec![0u8; len];
        self.file.read_exact_at(&mut page, at).map_err(|e| {
            format!(
                "cannot read the transaction's pages back from a file in {}: {e}",
                self.dir.display()
            )
        })?;
        Ok(page)
    }
}
