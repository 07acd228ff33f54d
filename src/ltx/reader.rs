//! A cursor over untrusted bytes: every read is bounds-checked and fails with
//! [`Error::Truncated`] naming what was being read, so no decoder indexes a slice directly.

use super::Error;

#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.buf.len());
        match end.and_then(|end| self.buf.get(self.pos..end)) {
            Some(bytes) => {
                self.pos += n;
                Ok(bytes)
            }
            None => Err(Error::Truncated {
                what,
                needed: n,
                available: self.remaining(),
            }),
        }
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Error> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, Error> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16_be(&mut self, what: &'static str) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u32_be(&mut self, what: &'static str) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u32_le(&mut self, what: &'static str) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u64_be(&mut self, what: &'static str) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// An unsigned LEB128 varint as Go's `binary.Uvarint` reads it: at most 10 bytes, and
    /// a 10th byte above 1 overflows 64 bits.
    pub(crate) fn uvarint(&mut self, what: &'static str) -> Result<u64, Error> {
        let mut value: u64 = 0;
        for i in 0..10u32 {
            let byte = self.u8(what)?;
            if i == 9 && byte > 1 {
                return Err(Error::VarintOverflow { what });
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Error::VarintOverflow { what })
    }
}

/// Appends `value` as an unsigned LEB128 varint (Go's `binary.AppendUvarint`).
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uvarint_round_trips_edges() -> Result<(), Error> {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut buf = Vec::new();
            put_uvarint(&mut buf, v);
            assert_eq!(Reader::new(&buf).uvarint("test")?, v);
        }
        Ok(())
    }

    #[test]
    fn uvarint_rejects_eleven_bytes_and_overflow() {
        let long = [0x80u8; 11];
        assert!(Reader::new(&long).uvarint("t").is_err());
        let mut over = [0xffu8; 10];
        over[9] = 0x02;
        assert!(matches!(
            Reader::new(&over).uvarint("t"),
            Err(Error::VarintOverflow { .. })
        ));
    }

    #[test]
    fn take_past_end_is_truncated_not_panic() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert!(r.take(usize::MAX, "huge").is_err());
        assert!(matches!(
            r.u32_be("x"),
            Err(Error::Truncated {
                needed: 4,
                available: 3,
                ..
            })
        ));
    }
}
