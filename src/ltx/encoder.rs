//! Writes LTX files that Litestream's own reader accepts (checked in the tests by running
//! `litestream restore` on replicas made only of our files).

use super::frame::{Encoding, PAGE_HEADER_SIZE, encode_frame};
use super::header::{HEADER_SIZE, Trailer};
use super::index::{IndexEntry, PageIndex};
use super::{CHECKSUM_FLAG, Error, FileHasher, Header, Pgno, page_checksum};

/// Builds one LTX file in memory.
///
/// Pages must be added in strictly ascending order, within the header's commit, never the
/// lock page; a snapshot (min TXID 1) needs every page 1..=commit.
#[derive(Debug)]
pub struct Encoder {
    header: Header,
    encoding: Encoding,
    out: Vec<u8>,
    hasher: FileHasher,
    entries: Vec<IndexEntry>,
    db_checksum: u64,
    post_apply_checksum: Option<u64>,
}

impl Encoder {
    /// # Errors
    /// [`Error::BadHeader`] if `header` does not validate.
    pub fn new(header: Header, encoding: Encoding) -> Result<Encoder, Error> {
        header.validate()?;
        let mut out = Vec::with_capacity(HEADER_SIZE + header.page_size.as_usize());
        out.extend_from_slice(&header.encode());
        let mut hasher = FileHasher::default();
        hasher.update(&out);
        Ok(Encoder {
            header,
            encoding,
            out,
            hasher,
            entries: Vec::new(),
            db_checksum: CHECKSUM_FLAG,
            post_apply_checksum: None,
        })
    }

    /// The database checksum after applying, for files written with checksums (no
    /// NoChecksum flag). A snapshot's is computed from its pages when not given.
    pub fn with_post_apply_checksum(mut self, checksum: u64) -> Encoder {
        self.post_apply_checksum = Some(checksum);
        self
    }

    /// # Errors
    /// [`Error::Encode`] if the page is out of order, of the wrong size, beyond the commit,
    /// the lock page, or leaves a gap in a snapshot.
    pub fn add_page(&mut self, pgno: Pgno, data: &[u8]) -> Result<(), Error> {
        let h = &self.header;
        let lock_page = h.page_size.lock_page();
        let prev = self.entries.last().map(|e| e.pgno);
        let fail = |msg: String| Err(Error::Encode(format!("page {pgno}: {msg}")));
        if data.len() != h.page_size.as_usize() {
            return fail(format!(
                "{} bytes, page size is {}",
                data.len(),
                h.page_size
            ));
        }
        if prev.is_some_and(|p| pgno <= p) {
            return fail("pages must be added in ascending order".into());
        }
        if pgno.get() > h.commit {
            return fail(format!("beyond the commit size of {} pages", h.commit));
        }
        if pgno == lock_page {
            return fail("the lock page is never written".into());
        }
        if h.is_snapshot() {
            let mut want = prev.map_or(1, |p| p.get() + 1);
            if want == lock_page.get() {
                want += 1;
            }
            if pgno.get() != want {
                return fail(format!("a snapshot needs page {want} next"));
            }
            self.db_checksum = CHECKSUM_FLAG | (self.db_checksum ^ page_checksum(pgno, data));
        }
        let start = self.out.len();
        encode_frame(pgno, data, self.encoding, &mut self.out);
        let prefix = match self.encoding {
            Encoding::Block => PAGE_HEADER_SIZE + 4,
            Encoding::LegacyFrame => PAGE_HEADER_SIZE,
        };
        self.hasher
            .update(self.out.get(start..start + prefix).unwrap_or_default());
        self.hasher.update(data);
        self.entries.push(IndexEntry {
            pgno,
            offset: start as u64,
            size: (self.out.len() - start) as u64,
        });
        Ok(())
    }

    /// Writes the terminator, index and trailer and returns the file's bytes.
    ///
    /// # Errors
    /// [`Error::Encode`] if a snapshot is missing pages or a file with checksums has no
    /// post-apply checksum.
    pub fn finish(mut self) -> Result<Vec<u8>, Error> {
        let h = &self.header;
        if h.is_snapshot() {
            let mut want = self.entries.last().map_or(1, |e| e.pgno.get() + 1);
            if want == h.page_size.lock_page().get() {
                want += 1;
            }
            if want <= h.commit {
                return Err(Error::Encode(format!("snapshot is missing page {want}")));
            }
        }
        let post_apply_checksum = if h.no_checksum() {
            0
        } else if let Some(c) = self.post_apply_checksum {
            c
        } else if h.is_snapshot() {
            self.db_checksum
        } else {
            return Err(Error::Encode(
                "a file with checksums needs its post-apply checksum".into(),
            ));
        };
        self.out.extend_from_slice(&[0u8; PAGE_HEADER_SIZE]);
        self.hasher.update(&[0u8; PAGE_HEADER_SIZE]);
        let index_start = self.out.len();
        PageIndex::from_entries(&std::mem::take(&mut self.entries)).encode(&mut self.out);
        self.hasher
            .update(self.out.get(index_start..).unwrap_or_default());
        self.hasher.update(&post_apply_checksum.to_be_bytes());
        let trailer = Trailer {
            post_apply_checksum,
            file_checksum: self.hasher.finish(),
        };
        self.out.extend_from_slice(&trailer.encode());
        Ok(self.out)
    }
}
