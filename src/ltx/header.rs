//! The 100-byte LTX header and the 16-byte trailer.

use super::reader::Reader;
use super::{CHECKSUM_FLAG, Error, PageSize, Txid};

pub const HEADER_SIZE: usize = 100;
pub const TRAILER_SIZE: usize = 16;
pub const MAGIC: [u8; 4] = *b"LTX1";

/// Header flags. `NO_CHECKSUM` is the only defined bit (bit 0 meant "whole file LZ4" in LTX
/// version 1, which this reader does not accept).
pub const FLAG_NO_CHECKSUM: u32 = 0x0000_0002;

/// The LTX header (all integers big-endian on disk).
///
/// Invariant after [`Header::decode`]: the fields pass [`Header::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub flags: u32,
    pub page_size: PageSize,
    /// Database size in pages after this file is applied. 0 is allowed (a deletion).
    pub commit: u32,
    pub min_txid: Txid,
    pub max_txid: Txid,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub pre_apply_checksum: u64,
    pub wal_offset: i64,
    pub wal_size: i64,
    pub wal_salt1: u32,
    pub wal_salt2: u32,
    pub node_id: u64,
}

impl Header {
    /// A header for a file that Litestream would accept: NoChecksum set, no WAL fields.
    pub fn new(page_size: PageSize, commit: u32, min_txid: Txid, max_txid: Txid) -> Header {
        Header {
            flags: FLAG_NO_CHECKSUM,
            page_size,
            commit,
            min_txid,
            max_txid,
            timestamp_ms: 0,
            pre_apply_checksum: 0,
            wal_offset: 0,
            wal_size: 0,
            wal_salt1: 0,
            wal_salt2: 0,
            node_id: 0,
        }
    }

    /// A snapshot holds every page of the database (min TXID 1) and has no pre-apply state.
    pub fn is_snapshot(&self) -> bool {
        self.min_txid == Txid(1)
    }

    pub fn no_checksum(&self) -> bool {
        self.flags & FLAG_NO_CHECKSUM != 0
    }

    /// Decodes and validates the first [`HEADER_SIZE`] bytes of `buf`.
    ///
    /// # Errors
    /// [`Error::Truncated`] if `buf` is short, [`Error::BadMagic`] or [`Error::BadHeader`]
    /// if the bytes are not a valid version-3 header.
    pub fn decode(buf: &[u8]) -> Result<Header, Error> {
        let mut r = Reader::new(buf);
        let magic: [u8; 4] = r.array("header")?;
        if magic != MAGIC {
            return Err(Error::BadMagic { found: magic });
        }
        let flags = r.u32_be("header")?;
        let raw_page_size = r.u32_be("header")?;
        let page_size = PageSize::new(raw_page_size)
            .ok_or_else(|| Error::BadHeader(format!("invalid page size {raw_page_size}")))?;
        let header = Header {
            flags,
            page_size,
            commit: r.u32_be("header")?,
            min_txid: Txid(r.u64_be("header")?),
            max_txid: Txid(r.u64_be("header")?),
            timestamp_ms: r.u64_be("header")? as i64,
            pre_apply_checksum: r.u64_be("header")?,
            wal_offset: r.u64_be("header")? as i64,
            wal_size: r.u64_be("header")? as i64,
            wal_salt1: r.u32_be("header")?,
            wal_salt2: r.u32_be("header")?,
            node_id: r.u64_be("header")?,
        };
        r.take(20, "header")?; // reserved, ignored as the Go decoder does
        header.validate()?;
        Ok(header)
    }

    /// The rules of the reference decoder (superfly/ltx `Header.Validate`).
    ///
    /// # Errors
    /// [`Error::BadHeader`] naming the first rule broken.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |msg: String| Err(Error::BadHeader(msg));
        if self.flags & !FLAG_NO_CHECKSUM != 0 {
            return bad(format!("invalid flags {:#010x}", self.flags));
        }
        if self.min_txid == Txid::ZERO || self.max_txid == Txid::ZERO {
            return bad("min and max TXID must be nonzero".into());
        }
        if self.min_txid > self.max_txid {
            return bad(format!(
                "TXIDs out of order: min {} > max {}",
                self.min_txid, self.max_txid
            ));
        }
        if self.wal_offset < 0 || self.wal_size < 0 {
            return bad("negative WAL offset or size".into());
        }
        if (self.wal_salt1 != 0 || self.wal_salt2 != 0) && self.wal_offset == 0 {
            return bad("WAL salt set without a WAL offset".into());
        }
        if self.wal_offset == 0 && self.wal_size != 0 {
            return bad("WAL size set without a WAL offset".into());
        }
        if self.is_snapshot() || self.no_checksum() {
            if self.pre_apply_checksum != 0 {
                return bad("pre-apply checksum must be 0 on a snapshot or with NoChecksum".into());
            }
        } else if self.pre_apply_checksum & CHECKSUM_FLAG == 0 {
            return bad("pre-apply checksum required, with its flag bit set".into());
        }
        Ok(())
    }

    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        let fields: [(usize, &[u8]); 13] = [
            (0, &MAGIC),
            (4, &self.flags.to_be_bytes()),
            (8, &self.page_size.get().to_be_bytes()),
            (12, &self.commit.to_be_bytes()),
            (16, &self.min_txid.get().to_be_bytes()),
            (24, &self.max_txid.get().to_be_bytes()),
            (32, &self.timestamp_ms.to_be_bytes()),
            (40, &self.pre_apply_checksum.to_be_bytes()),
            (48, &self.wal_offset.to_be_bytes()),
            (56, &self.wal_size.to_be_bytes()),
            (64, &self.wal_salt1.to_be_bytes()),
            (68, &self.wal_salt2.to_be_bytes()),
            (72, &self.node_id.to_be_bytes()),
        ];
        for (at, bytes) in fields {
            if let Some(dst) = b.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        }
        b
    }
}

/// The last 16 bytes of an LTX file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// Database checksum after applying; 0 when the header has NoChecksum.
    pub post_apply_checksum: u64,
    /// CRC-64 of the file's logical content, flag bit set (see `checksum::FileHasher`).
    pub file_checksum: u64,
}

impl Trailer {
    /// Decodes the trailer from exactly its 16 bytes and validates it against `header`.
    ///
    /// # Errors
    /// [`Error::Truncated`] or [`Error::BadTrailer`].
    pub fn decode(buf: &[u8], header: &Header) -> Result<Trailer, Error> {
        let mut r = Reader::new(buf);
        let trailer = Trailer {
            post_apply_checksum: r.u64_be("trailer")?,
            file_checksum: r.u64_be("trailer")?,
        };
        if header.no_checksum() {
            if trailer.post_apply_checksum != 0 {
                return Err(Error::BadTrailer(
                    "post-apply checksum set although the header has NoChecksum".into(),
                ));
            }
        } else if trailer.post_apply_checksum & CHECKSUM_FLAG == 0 {
            return Err(Error::BadTrailer(
                "post-apply checksum required, with its flag bit set".into(),
            ));
        }
        if trailer.file_checksum & CHECKSUM_FLAG == 0 {
            return Err(Error::BadTrailer(
                "file checksum must have its flag bit set".into(),
            ));
        }
        Ok(trailer)
    }

    pub fn encode(&self) -> [u8; TRAILER_SIZE] {
        let mut b = [0u8; TRAILER_SIZE];
        let (post, file) = b.split_at_mut(8);
        post.copy_from_slice(&self.post_apply_checksum.to_be_bytes());
        file.copy_from_slice(&self.file_checksum.to_be_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        let mut h = Header::new(PageSize::new(4096).unwrap(), 7, Txid(3), Txid(5));
        h.timestamp_ms = 1_700_000_000_123;
        h
    }

    #[test]
    fn header_round_trips() -> Result<(), Error> {
        let h = sample();
        assert_eq!(Header::decode(&h.encode())?, h);
        Ok(())
    }

    #[test]
    fn header_rejects_wrong_magic_and_bad_fields() {
        let mut b = sample().encode();
        b[0] = b'X';
        assert!(matches!(Header::decode(&b), Err(Error::BadMagic { .. })));

        let mut h = sample();
        h.flags = 1; // version-1 "compressed" bit
        assert!(Header::decode(&h.encode()).is_err());

        let mut b = sample().encode();
        b[8..12].copy_from_slice(&1000u32.to_be_bytes());
        assert!(matches!(Header::decode(&b), Err(Error::BadHeader(_))));

        let mut h = sample();
        h.min_txid = Txid(9);
        assert!(Header::decode(&h.encode()).is_err());

        let mut h = sample();
        h.pre_apply_checksum = CHECKSUM_FLAG | 5;
        assert!(
            Header::decode(&h.encode()).is_err(),
            "NoChecksum forbids pre-apply"
        );
    }

    #[test]
    fn header_truncated_is_error() {
        let b = sample().encode();
        assert!(matches!(
            Header::decode(&b[..99]),
            Err(Error::Truncated { .. })
        ));
    }

    #[test]
    fn trailer_requires_flagged_file_checksum() {
        let h = sample();
        let t = Trailer {
            post_apply_checksum: 0,
            file_checksum: 42,
        };
        assert!(Trailer::decode(&t.encode(), &h).is_err());
        let t = Trailer {
            post_apply_checksum: 0,
            file_checksum: CHECKSUM_FLAG | 42,
        };
        assert_eq!(Trailer::decode(&t.encode(), &h).ok(), Some(t));
    }
}
