//! CRC-64/GO-ISO checksums: per page, per database, per file.
//!
//! Every stored checksum has [`CHECKSUM_FLAG`] OR'd in so that it is never 0.

use super::{PageSize, Pgno};

/// Bit 63, set in every stored checksum.
pub const CHECKSUM_FLAG: u64 = 1 << 63;

/// Go's `hash/crc64` with the ISO table: reflected poly 0x1B, init and xorout all-ones.
static CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_GO_ISO);

/// CRC-64/GO-ISO of `bytes`, without the flag bit.
pub fn crc64(bytes: &[u8]) -> u64 {
    CRC64.checksum(bytes)
}

/// `FLAG | crc64(u32be(pgno) || data)`.
pub fn page_checksum(pgno: Pgno, data: &[u8]) -> u64 {
    let mut digest = CRC64.digest();
    digest.update(&pgno.get().to_be_bytes());
    digest.update(data);
    CHECKSUM_FLAG | digest.finalize()
}

/// The checksum of a whole database: FLAG | XOR of the page checksums of pages 1..=N,
/// skipping the lock page. `pages` yields the pages in order, starting at page 1.
pub fn database_checksum<'a>(
    page_size: PageSize,
    pages: impl IntoIterator<Item = &'a [u8]>,
) -> u64 {
    let lock_page = page_size.lock_page();
    let mut acc = CHECKSUM_FLAG;
    for (pgno, data) in (1u32..).filter_map(Pgno::new).zip(pages) {
        if pgno != lock_page {
            acc = CHECKSUM_FLAG | (acc ^ page_checksum(pgno, data));
        }
    }
    acc
}

/// The running file checksum: a CRC-64 over the header, each frame's page header, size
/// prefix and *decompressed* page, the zero page header, the index and the post-apply
/// checksum field, in file order.
pub struct FileHasher {
    digest: crc::Digest<'static, u64>,
}

impl std::fmt::Debug for FileHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileHasher").finish_non_exhaustive()
    }
}

impl Default for FileHasher {
    fn default() -> Self {
        FileHasher {
            digest: CRC64.digest(),
        }
    }
}

impl FileHasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.digest.update(bytes);
    }

    /// The stored form: flag bit set.
    pub fn finish(self) -> u64 {
        CHECKSUM_FLAG | self.digest.finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_matches_go_iso_check_value() {
        assert_eq!(crc64(b"123456789"), 0xb909_56c7_75a4_1001);
    }

    #[test]
    fn database_checksum_is_flagged_xor_of_page_checksums() {
        let ps = PageSize::new(512).unwrap();
        let pages: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 512]).collect();
        let xor = pages.iter().zip(1u32..).fold(0, |acc, (p, n)| {
            acc ^ page_checksum(Pgno::new(n).unwrap(), p)
        });
        assert_eq!(
            database_checksum(ps, pages.iter().map(Vec::as_slice)),
            CHECKSUM_FLAG | xor
        );
    }
}
