//! Litestream's LTX file names: `%016x-%016x.ltx` (min TXID, max TXID, lowercase hex), one
//! directory per level. Anything else in a level directory (e.g. `.tmp` files) is not an LTX
//! file and is skipped.

use crate::ltx::Txid;
use std::fmt;

/// Level 9 holds full snapshots; levels 0..=8 hold incremental and compacted files.
pub const SNAPSHOT_LEVEL: u8 = 9;

/// One LTX file of a replica: its level and TXID range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LtxFileId {
    pub level: u8,
    pub min_txid: Txid,
    pub max_txid: Txid,
}

impl LtxFileId {
    /// Parses a file name such as `0000000000000001-0000000000000004.ltx`; `None` for any
    /// other name, including upper-case hex, `.tmp` files and min > max.
    pub fn parse(level: u8, name: &str) -> Option<LtxFileId> {
        let stem = name.strip_suffix(".ltx")?;
        let (min, max) = stem.split_once('-')?;
        let hex = |s: &str| {
            (s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                .then(|| u64::from_str_radix(s, 16).ok())
                .flatten()
        };
        let (min_txid, max_txid) = (Txid(hex(min)?), Txid(hex(max)?));
        (level <= SNAPSHOT_LEVEL && min_txid <= max_txid && min_txid != Txid::ZERO).then_some(
            LtxFileId {
                level,
                min_txid,
                max_txid,
            },
        )
    }

    /// The file name Litestream gives it.
    pub fn file_name(&self) -> String {
        format!("{}-{}.ltx", self.min_txid, self.max_txid)
    }
}

impl fmt::Display for LtxFileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "L{}/{}-{}.ltx", self.level, self.min_txid, self.max_txid)
    }
}

/// A file id for unit tests: level, min TXID, max TXID.
#[cfg(test)]
pub(crate) fn test_id(level: u8, min: u64, max: u64) -> LtxFileId {
    LtxFileId {
        level,
        min_txid: crate::ltx::Txid(min),
        max_txid: crate::ltx::Txid(max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_litestream_names_and_skips_others() {
        let id = LtxFileId::parse(1, "0000000000000003-00000000000000ff.ltx").unwrap();
        assert_eq!((id.min_txid, id.max_txid), (Txid(3), Txid(255)));
        assert_eq!(id.file_name(), "0000000000000003-00000000000000ff.ltx");
        for bad in [
            "0000000000000003-00000000000000FF.ltx",
            "0000000000000003-00000000000000ff.ltx.tmp",
            "0000000000000004-0000000000000003.ltx",
            "0000000000000000-0000000000000003.ltx",
            "3-ff.ltx",
            "0000000000000003_00000000000000ff.ltx",
        ] {
            assert_eq!(LtxFileId::parse(0, bad), None, "{bad}");
        }
        assert_eq!(
            LtxFileId::parse(10, "0000000000000001-0000000000000001.ltx"),
            None
        );
    }
}
