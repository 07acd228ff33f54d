//! Units of the format as distinct types, so that a page number, a TXID and a page size
//! never mix as bare integers.

use std::fmt;

/// A database page number. 1-based: page 1 holds the SQLite header. `0` is never a valid
/// page number (in the page block it is the terminator), so this type cannot hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pgno(u32);

impl Pgno {
    /// Page 1, the page that holds the SQLite database header.
    pub const ONE: Pgno = Pgno(1);

    /// A page number from untrusted input; `None` for 0.
    pub fn new(n: u32) -> Option<Pgno> {
        (n != 0).then_some(Pgno(n))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// The byte offset of this page in the database file.
    pub fn byte_offset(self, page_size: PageSize) -> u64 {
        u64::from(self.0 - 1) * u64::from(page_size.get())
    }
}

impl fmt::Display for Pgno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A Litestream transaction ID. One TXID is one Litestream sync, which may cover many SQLite
/// commits. TXID 0 means "nothing yet" and never appears in a valid header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Txid(pub u64);

impl Txid {
    pub const ZERO: Txid = Txid(0);

    pub fn get(self) -> u64 {
        self.0
    }

    /// The next TXID, saturating (a replica never gets near u64::MAX).
    pub fn next(self) -> Txid {
        Txid(self.0.saturating_add(1))
    }
}

/// Written as Litestream writes it: 16 lowercase hex digits.
impl fmt::Display for Txid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A SQLite page size: a power of two from 512 to 65536.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageSize(u32);

impl PageSize {
    pub const MIN: u32 = 512;
    pub const MAX: u32 = 65536;
    /// SQLite's default page size.
    pub const DEFAULT: PageSize = PageSize(4096);

    /// A page size from untrusted input; `None` unless a power of two in 512..=65536.
    pub fn new(n: u32) -> Option<PageSize> {
        (n.is_power_of_two() && (Self::MIN..=Self::MAX).contains(&n)).then_some(PageSize(n))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    pub fn as_usize(self) -> usize {
        self.0 as usize
    }

    /// The page that holds the byte at offset 2^30 (SQLite's lock byte). SQLite never stores
    /// data in it and LTX files never contain it.
    pub fn lock_page(self) -> Pgno {
        Pgno(0x4000_0000 / self.0 + 1)
    }
}

impl fmt::Display for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
