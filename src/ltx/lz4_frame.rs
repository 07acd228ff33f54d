//! The legacy page encoding (ltx v0.5.0/v0.5.1, Litestream ≤ 0.5.15): each page is one
//! complete LZ4 *frame* (https://github.com/lz4/lz4/blob/dev/doc/lz4_Frame_format.md) with no
//! length prefix, so the reader must parse the frame to know where it ends.
//!
//! pierrec/lz4 v4 writes (seen in files of Litestream 0.5.15): FLG 0x64 (version 01,
//! block-independent, content checksum), BD 0x40
//! (64 KiB blocks), one block (a page is ≤ 64 KiB), the end mark, an xxh32 content checksum.
//! This parser accepts any valid frame that decodes to exactly one page.

use super::reader::Reader;
use super::{Error, Pgno};
use xxhash_rust::xxh32::xxh32;

const MAGIC: u32 = 0x184D_2204;
const FLG_VERSION_MASK: u8 = 0b1100_0000;
const FLG_VERSION_01: u8 = 0b0100_0000;
const FLG_BLOCK_CHECKSUM: u8 = 0b0001_0000;
const FLG_CONTENT_SIZE: u8 = 0b0000_1000;
const FLG_CONTENT_CHECKSUM: u8 = 0b0000_0100;
const FLG_RESERVED: u8 = 0b0000_0010;
const FLG_DICT_ID: u8 = 0b0000_0001;
const BLOCK_UNCOMPRESSED: u32 = 0x8000_0000;

/// Decodes one legacy frame at the start of `buf` into `out` (exactly one page long).
/// Returns the number of bytes of `buf` the frame occupies.
///
/// # Errors
/// [`Error::Decompress`] for anything malformed or a failed checksum, [`Error::PageLength`]
/// if the content is not exactly `out.len()` bytes.
pub(crate) fn decode(buf: &[u8], pgno: Pgno, out: &mut [u8]) -> Result<usize, Error> {
    let bad = |reason: &str| Error::Decompress {
        pgno,
        reason: format!("legacy LZ4 frame: {reason}"),
    };
    let mut r = Reader::new(buf);
    if r.u32_le("LZ4 frame magic")? != MAGIC {
        return Err(bad("bad magic"));
    }
    let descriptor_start = r.pos();
    let flg = r.u8("LZ4 frame descriptor")?;
    let bd = r.u8("LZ4 frame descriptor")?;
    if flg & FLG_VERSION_MASK != FLG_VERSION_01 || flg & FLG_RESERVED != 0 || bd & 0x8F != 0 {
        return Err(bad("unsupported frame descriptor"));
    }
    let block_max = match (bd >> 4) & 0x7 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        _ => return Err(bad("invalid block maximum size")),
    };
    if flg & FLG_CONTENT_SIZE != 0 {
        let size = r.u64_le_frame()?;
        if size != out.len() as u64 {
            return Err(Error::PageLength {
                pgno,
                expected: out.len(),
                found: usize::try_from(size).unwrap_or(usize::MAX),
            });
        }
    }
    if flg & FLG_DICT_ID != 0 {
        return Err(bad("dictionary frames are not supported"));
    }
    let descriptor = buf
        .get(descriptor_start..r.pos())
        .ok_or_else(|| bad("descriptor"))?;
    let header_checksum = r.u8("LZ4 frame descriptor")?;
    if header_checksum != ((xxh32(descriptor, 0) >> 8) & 0xff) as u8 {
        return Err(bad("header checksum mismatch"));
    }

    let mut filled = 0usize;
    loop {
        let word = r.u32_le("LZ4 block size")?;
        if word == 0 {
            break; // end mark
        }
        let size = (word & !BLOCK_UNCOMPRESSED) as usize;
        if size > block_max {
            return Err(bad("block larger than the frame's maximum"));
        }
        let data = r.take(size, "LZ4 block")?;
        if flg & FLG_BLOCK_CHECKSUM != 0 {
            let sum = r.u32_le("LZ4 block checksum")?;
            if sum != xxh32(data, 0) {
                return Err(bad("block checksum mismatch"));
            }
        }
        let page_len = out.len();
        let rest = out.get_mut(filled..).unwrap_or_default();
        let n = if word & BLOCK_UNCOMPRESSED != 0 {
            let dst = rest.get_mut(..data.len()).ok_or(Error::PageLength {
                pgno,
                expected: page_len,
                found: filled + data.len(),
            })?;
            dst.copy_from_slice(data);
            data.len()
        } else {
            lz4_flex::block::decompress_into(data, rest).map_err(|e| Error::Decompress {
                pgno,
                reason: format!("legacy LZ4 frame: {e}"),
            })?
        };
        filled += n;
    }
    if filled != out.len() {
        return Err(Error::PageLength {
            pgno,
            expected: out.len(),
            found: filled,
        });
    }
    if flg & FLG_CONTENT_CHECKSUM != 0 {
        let sum = r.u32_le("LZ4 content checksum")?;
        if sum != xxh32(out, 0) {
            return Err(bad("content checksum mismatch"));
        }
    }
    Ok(r.pos())
}

/// Encodes `page` as pierrec/lz4 v4 does: a compressed block, or a stored one when
/// compression does not make it smaller.
pub(crate) fn encode(page: &[u8], out: &mut Vec<u8>) {
    const FLG: u8 = FLG_VERSION_01 | 0b0010_0000 /* block independence */ | FLG_CONTENT_CHECKSUM;
    const BD: u8 = 4 << 4; // 64 KiB blocks
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&[FLG, BD, ((xxh32(&[FLG, BD], 0) >> 8) & 0xff) as u8]);
    let compressed = lz4_flex::block::compress(page);
    if compressed.len() < page.len() {
        out.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
        out.extend_from_slice(&compressed);
    } else {
        out.extend_from_slice(&(page.len() as u32 | BLOCK_UNCOMPRESSED).to_le_bytes());
        out.extend_from_slice(page);
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&xxh32(page, 0).to_le_bytes());
}

impl Reader<'_> {
    fn u64_le_frame(&mut self) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.array("LZ4 content size")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_and_compressed_pages_round_trip() -> Result<(), Error> {
        let pgno = Pgno::ONE;
        let noisy: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for page in [vec![7u8; 4096], noisy] {
            let mut buf = Vec::new();
            encode(&page, &mut buf);
            buf.extend_from_slice(b"next frame");
            let mut out = vec![0u8; 4096];
            let used = decode(&buf, pgno, &mut out)?;
            assert_eq!(used, buf.len() - b"next frame".len());
            assert_eq!(out, page);
        }
        Ok(())
    }

    #[test]
    fn corrupt_content_checksum_is_rejected() {
        let page = vec![3u8; 1024];
        let mut buf = Vec::new();
        encode(&page, &mut buf);
        let last = buf.len() - 1;
        buf[last] ^= 1;
        let mut out = vec![0u8; 1024];
        assert!(matches!(
            decode(&buf, Pgno::ONE, &mut out),
            Err(Error::Decompress { .. })
        ));
    }

    #[test]
    fn wrong_page_length_is_rejected() {
        let mut buf = Vec::new();
        encode(&[1u8; 512], &mut buf);
        let mut out = vec![0u8; 1024];
        assert!(matches!(
            decode(&buf, Pgno::ONE, &mut out),
            Err(Error::PageLength { found: 512, .. })
        ));
    }
}
