//! The LTX file format (version 3, magic `LTX1`), as Litestream v0.5 writes it: header,
//! page frames in both encodings, the EOF page index, the trailer and CRC-64 checksums.
//!
//! Decoders and an encoder over byte slices. This module does no IO of any kind and knows
//! nothing of object stores or SQLite. Every decoder takes untrusted bytes: malformed input is
//! an [`Error`], never a panic, and nothing is allocated in proportion to a number read from
//! the input (only to the input's own length or to a validated page size).
//!
//! Layouts: `docs/ltx-format.md` (checked against files written by Litestream 0.5.15 and
//! 0.5.17, kept as fixtures in `tests/fixtures/`).

mod checksum;
mod encoder;
mod error;
mod file;
mod frame;
mod header;
mod index;
mod index_decoder;
mod lz4_frame;
mod reader;
mod units;

pub use checksum::{CHECKSUM_FLAG, FileHasher, crc64, database_checksum, page_checksum};
pub use encoder::Encoder;
pub use error::Error;
pub use file::{FileSummary, decode_file};
pub use frame::{
    Encoding, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE, decode_page, decode_page_into, max_frame_size,
};
pub use header::{FLAG_NO_CHECKSUM, HEADER_SIZE, Header, MAGIC, TRAILER_SIZE, Trailer};
pub use index::{INDEX_FOOTER_SIZE, IndexEntry, IndexSpan, PageIndex, TailIndex};
pub use index_decoder::IndexDecoder;
pub use units::{PageSize, Pgno, Txid};
