//! Writes LTX files that Litestream's own reader accepts (checked in the tests by running
//! `litestream restore` on replicas made only of our files).

use super::frame::{Encoding, PAGE_HEADER_SIZE, encode_frame};
use super::header::{HEADER_SIZE, Trailer};
use super::reader::put_uvarint;
use super::{CHECKSUM_FLAG, Error, FileHasher, Header, Pgno, page_checksum};

/// Builds one LTX file, in memory or streamed: [`Encoder::drain`] hands out the bytes
/// written so far, so a large file never needs to be held whole (only its index, about
/// 7 bytes a page).
///
/// Pages must be added in strictly ascending order, within the header's commit, never the
/// lock page; a snapshot (min TXID 1) needs every page 1..=commit.
#[derive(Debug)]
pub struct Encoder {
    header: Header,
    encoding: Encoding,
    out: Vec<u8>,
    /// Bytes handed out by `drain` before `out`.
    drained: u64,
    hasher: FileHasher,
    /// The page index as it grows (entries, uvarint-encoded).
    index: Vec<u8>,
    last: Option<Pgno>,
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
            drained: 0,
            hasher,
            index: Vec::new(),
            last: None,
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
        let prev = self.last;
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
        put_uvarint(&mut self.index, u64::from(pgno.get()));
        put_uvarint(&mut self.index, self.drained + start as u64);
        put_uvarint(&mut self.index, (self.out.len() - start) as u64);
        self.last = Some(pgno);
        Ok(())
    }

    /// Makes room for `bytes` more bytes before the next drain (so a file handed out in
    /// parts of that size is never grown, nor held, at twice the size).
    pub fn reserve(&mut self, bytes: usize) {
        self.out.reserve(bytes);
    }

    /// The bytes written since the last drain (the file is their concatenation, then what
    /// [`Encoder::finish`] returns).
    pub fn drain(&mut self) -> Vec<u8> {
        // The next piece will be as large: allocate it once rather than grow it.
        let next = Vec::with_capacity(self.out.capacity());
        let out = std::mem::replace(&mut self.out, next);
        self.drained += out.len() as u64;
        out
    }

    /// How many bytes wait for the next [`Encoder::drain`].
    pub fn pending(&self) -> usize {
        self.out.len()
    }

    /// Writes the terminator, index and trailer and returns the file's bytes (those not
    /// drained before).
    ///
    /// # Errors
    /// [`Error::Encode`] if a snapshot is missing pages or a file with checksums has no
    /// post-apply checksum.
    pub fn finish(mut self) -> Result<Vec<u8>, Error> {
        let h = &self.header;
        if h.is_snapshot() {
            let mut want = self.last.map_or(1, |p| p.get() + 1);
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
        put_uvarint(&mut self.index, 0);
        self.out.extend_from_slice(&self.index);
        self.out
            .extend_from_slice(&(self.index.len() as u64).to_be_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::{Encoding, PageSize, Txid, decode_file};

    /// A file streamed out in pieces is the same file, byte for byte, and decodes.
    #[test]
    fn a_drained_file_is_the_file() -> Result<(), Box<dyn std::error::Error>> {
        let ps = PageSize::new(1024).ok_or("page size")?;
        let build = |drain_every: usize| -> Result<Vec<u8>, Error> {
            let mut enc = Encoder::new(Header::new(ps, 300, Txid(1), Txid(7)), Encoding::Block)?;
            let mut file = Vec::new();
            for p in (1..=300).filter_map(Pgno::new) {
                let page: Vec<u8> = (0..1024).map(|i| (i * p.get() as usize) as u8).collect();
                enc.add_page(p, &page)?;
                if drain_every > 0 && (p.get() as usize).is_multiple_of(drain_every) {
                    file.extend(enc.drain());
                }
            }
            file.extend(enc.finish()?);
            Ok(file)
        };
        let whole = build(0)?;
        assert_eq!(build(7)?, whole);
        assert_eq!(build(1)?, whole);
        let mut pages = 0;
        decode_file(&whole, |_, _| {
            pages += 1;
            Ok(())
        })?;
        assert_eq!(pages, 300);
        Ok(())
    }
}
