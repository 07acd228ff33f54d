//! Errors of the format layer. Each says what was malformed and where (byte offset, page
//! number); the replica layer adds the file name and the replica URL.

use super::{Pgno, Txid};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("truncated {what}: needed {needed} bytes, {available} available")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("malformed varint in {what}: longer than 64 bits")]
    VarintOverflow { what: &'static str },
    #[error("not an LTX file: magic is {found:02x?}, expected \"LTX1\"")]
    BadMagic { found: [u8; 4] },
    #[error("invalid LTX header: {0}")]
    BadHeader(String),
    #[error("invalid LTX trailer: {0}")]
    BadTrailer(String),
    #[error("invalid page header at offset {offset}: pgno {pgno}, flags {flags:#06x}")]
    BadPageHeader { offset: u64, pgno: u32, flags: u16 },
    #[error("page {pgno} at offset {offset}: frame of {size} bytes is out of bounds ({reason})")]
    BadFrameSize {
        pgno: Pgno,
        offset: u64,
        size: u64,
        reason: &'static str,
    },
    #[error("page {found} at offset {offset} is out of order after page {previous}")]
    PageOrder {
        offset: u64,
        previous: Pgno,
        found: Pgno,
    },
    #[error("page {pgno} is beyond the commit size of {commit} pages")]
    PageBeyondCommit { pgno: Pgno, commit: u32 },
    #[error("page {pgno} is the lock page, which an LTX file never holds")]
    LockPage { pgno: Pgno },
    #[error("snapshot (min TXID 1) is missing page {missing}")]
    SnapshotIncomplete { missing: Pgno },
    #[error("frame holds page {found}, expected page {expected}")]
    PgnoMismatch { expected: Pgno, found: Pgno },
    #[error("page {pgno}: {reason}")]
    Decompress { pgno: Pgno, reason: String },
    #[error("page {pgno} decompresses to {found} bytes, page size is {expected}")]
    PageLength {
        pgno: Pgno,
        expected: usize,
        found: usize,
    },
    #[error("invalid page index: {0}")]
    BadIndex(String),
    #[error("page index disagrees with the page block: {0}")]
    IndexMismatch(String),
    #[error("{what} checksum mismatch: stored {stored:016x}, computed {computed:016x}")]
    ChecksumMismatch {
        what: &'static str,
        stored: u64,
        computed: u64,
    },
    #[error("{0} trailing bytes after the trailer")]
    TrailingBytes(usize),
    #[error("encoder: {0}")]
    Encode(String),
    #[error("TXID {txid} out of range: {reason}")]
    BadTxid { txid: Txid, reason: &'static str },
}
