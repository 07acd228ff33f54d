//! Page frames: a 6-byte page header (`pgno u32`, `flags u16`), then the page in one of two
//! encodings, chosen per frame by the SIZE flag:
//! - block (ltx v0.5.2+, Litestream 0.5.16+): flag SIZE, `u32` length, raw LZ4 block;
//! - legacy (ltx v0.5.0/0.5.1, Litestream ≤ 0.5.15): flags 0, one LZ4 frame (see `lz4_frame`).
//!
//! The page block ends with an all-zero page header.

use super::reader::Reader;
use super::{Error, PageSize, Pgno, lz4_frame};

pub const PAGE_HEADER_SIZE: usize = 6;
/// Page header flag: a `u32` compressed length follows the header.
pub const PAGE_FLAG_SIZE: u16 = 0x0001;

/// How a page frame is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Size-prefixed raw LZ4 block (ltx v0.5.2+, Litestream 0.5.16+).
    Block,
    /// One LZ4 frame per page, no size prefix (Litestream ≤ 0.5.15).
    LegacyFrame,
}

/// The largest frame a page of `page_size` can take in either encoding: the LZ4 worst case
/// (n + n/255 + 16) plus headers, or a stored legacy block plus its 19 bytes of framing.
pub fn max_frame_size(page_size: PageSize) -> u64 {
    let n = u64::from(page_size.get());
    n + n / 255 + 64
}

/// What a page header says, or the terminator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageHeader {
    Page { pgno: Pgno, encoding: Encoding },
    End,
}

impl PageHeader {
    /// Reads a page header; `offset` is its position in the file, for errors.
    pub(crate) fn read(r: &mut Reader<'_>, offset: u64) -> Result<PageHeader, Error> {
        let raw_pgno = r.u32_be("page header")?;
        let flags = r.u16_be("page header")?;
        let bad = Error::BadPageHeader {
            offset,
            pgno: raw_pgno,
            flags,
        };
        let Some(pgno) = Pgno::new(raw_pgno) else {
            return if flags == 0 {
                Ok(PageHeader::End)
            } else {
                Err(bad)
            };
        };
        let encoding = match flags {
            0 => Encoding::LegacyFrame,
            PAGE_FLAG_SIZE => Encoding::Block,
            _ => return Err(bad),
        };
        Ok(PageHeader::Page { pgno, encoding })
    }
}

/// A frame decoded from the page block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameInfo {
    pub pgno: Pgno,
    pub encoding: Encoding,
    /// Bytes from the page header to the end of the compressed data.
    pub len: usize,
}

/// Decodes the frame at the start of `buf` (which may run on past it) into `out`, whose length
/// is the page size. Returns `None` at the terminator. `offset` is `buf`'s position in the
/// file, for errors. `hasher`, if given, is fed the bytes the file checksum covers.
pub(crate) fn decode_frame_into(
    buf: &[u8],
    offset: u64,
    out: &mut [u8],
    mut hasher: Option<&mut super::FileHasher>,
) -> Result<Option<FrameInfo>, Error> {
    let mut r = Reader::new(buf);
    let (pgno, encoding) = match PageHeader::read(&mut r, offset)? {
        PageHeader::End => {
            if let Some(h) = hasher {
                h.update(&[0u8; PAGE_HEADER_SIZE]);
            }
            return Ok(None);
        }
        PageHeader::Page { pgno, encoding } => (pgno, encoding),
    };
    let header_bytes = buf.get(..PAGE_HEADER_SIZE).unwrap_or_default();
    let len = match encoding {
        Encoding::Block => {
            let size_bytes: [u8; 4] = r.array("page size prefix")?;
            let size = u32::from_be_bytes(size_bytes);
            // LZ4's worst case for the page being decoded: n + n/255 + 16.
            let bound = out.len() as u64 + out.len() as u64 / 255 + 16;
            if u64::from(size) > bound {
                return Err(Error::BadFrameSize {
                    pgno,
                    offset,
                    size: u64::from(size),
                    reason: "compressed length exceeds the LZ4 bound for the page size",
                });
            }
            let data = r.take(size as usize, "compressed page")?;
            let n = lz4_flex::block::decompress_into(data, out).map_err(|e| Error::Decompress {
                pgno,
                reason: format!("LZ4 block: {e}"),
            })?;
            if n != out.len() {
                return Err(Error::PageLength {
                    pgno,
                    expected: out.len(),
                    found: n,
                });
            }
            if let Some(h) = hasher.as_deref_mut() {
                h.update(header_bytes);
                h.update(&size_bytes);
            }
            r.pos()
        }
        Encoding::LegacyFrame => {
            let rest = buf.get(PAGE_HEADER_SIZE..).unwrap_or_default();
            let used = lz4_frame::decode(rest, pgno, out)?;
            if let Some(h) = hasher.as_deref_mut() {
                h.update(header_bytes);
            }
            PAGE_HEADER_SIZE + used
        }
    };
    if let Some(h) = hasher {
        h.update(out);
    }
    Ok(Some(FrameInfo {
        pgno,
        encoding,
        len,
    }))
}

/// Decodes one page from exactly the bytes of its frame, as a ranged GET returns them, and
/// checks that the frame holds `expected` and is `frame.len()` bytes long.
///
/// # Errors
/// [`Error::PgnoMismatch`] if the frame is another page's, [`Error::PageLength`] or
/// [`Error::Decompress`] if it does not decode to exactly one page, [`Error::BadFrameSize`]
/// if the frame is shorter or longer than `frame`.
pub fn decode_page_into(frame: &[u8], expected: Pgno, out: &mut [u8]) -> Result<(), Error> {
    match decode_frame_into(frame, 0, out, None)? {
        None => Err(Error::BadPageHeader {
            offset: 0,
            pgno: 0,
            flags: 0,
        }),
        Some(info) if info.pgno != expected => Err(Error::PgnoMismatch {
            expected,
            found: info.pgno,
        }),
        Some(info) if info.len != frame.len() => Err(Error::BadFrameSize {
            pgno: info.pgno,
            offset: 0,
            size: frame.len() as u64,
            reason: "frame length differs from the page index",
        }),
        Some(_) => Ok(()),
    }
}

/// [`decode_page_into`] into a new buffer of `page_size` bytes.
///
/// # Errors
/// As [`decode_page_into`].
pub fn decode_page(frame: &[u8], expected: Pgno, page_size: PageSize) -> Result<Vec<u8>, Error> {
    let mut out = vec![0u8; page_size.as_usize()];
    decode_page_into(frame, expected, &mut out)?;
    Ok(out)
}

/// Appends the frame of page `pgno` in `encoding` to `out`.
pub(crate) fn encode_frame(pgno: Pgno, data: &[u8], encoding: Encoding, out: &mut Vec<u8>) {
    out.extend_from_slice(&pgno.get().to_be_bytes());
    match encoding {
        Encoding::Block => {
            out.extend_from_slice(&PAGE_FLAG_SIZE.to_be_bytes());
            let compressed = lz4_flex::block::compress(data);
            out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
            out.extend_from_slice(&compressed);
        }
        Encoding::LegacyFrame => {
            out.extend_from_slice(&0u16.to_be_bytes());
            lz4_frame::encode(data, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(seed: u8) -> Vec<u8> {
        (0..4096u32)
            .map(|i| ((i / 7) as u8).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn frame_of_another_page_is_rejected() {
        let ps = PageSize::new(4096).unwrap();
        for enc in [Encoding::Block, Encoding::LegacyFrame] {
            let mut buf = Vec::new();
            encode_frame(Pgno::new(5).unwrap(), &page(1), enc, &mut buf);
            assert_eq!(
                decode_page(&buf, Pgno::new(5).unwrap(), ps).unwrap(),
                page(1)
            );
            assert!(matches!(
                decode_page(&buf, Pgno::new(6).unwrap(), ps),
                Err(Error::PgnoMismatch { .. })
            ));
        }
    }

    #[test]
    fn frame_for_a_smaller_page_size_is_rejected() {
        let mut buf = Vec::new();
        encode_frame(Pgno::ONE, &[9u8; 1024], Encoding::Block, &mut buf);
        let ps = PageSize::new(4096).unwrap();
        assert!(matches!(
            decode_page(&buf, Pgno::ONE, ps),
            Err(Error::PageLength { found: 1024, .. })
        ));
    }

    #[test]
    fn frame_with_extra_bytes_is_rejected() {
        let mut buf = Vec::new();
        encode_frame(Pgno::ONE, &page(2), Encoding::Block, &mut buf);
        buf.push(0);
        let ps = PageSize::new(4096).unwrap();
        assert!(matches!(
            decode_page(&buf, Pgno::ONE, ps),
            Err(Error::BadFrameSize { .. })
        ));
    }

    #[test]
    fn unknown_page_flag_is_rejected() {
        let mut buf = Vec::new();
        encode_frame(Pgno::ONE, &page(3), Encoding::Block, &mut buf);
        buf[5] = 0x03;
        let ps = PageSize::new(4096).unwrap();
        assert!(matches!(
            decode_page(&buf, Pgno::ONE, ps),
            Err(Error::BadPageHeader { flags: 3, .. })
        ));
    }
}
