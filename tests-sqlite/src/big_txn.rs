//! The rows of a large transaction (`ltx_big_txn`, `tests/it/write_large.rs`): incompressible
//! bytes that a reader can generate again from the row's tag and id, to check a restore row
//! by row without holding either side whole.

/// The value of row `id` of writer `tag`: `len` bytes of a xorshift stream seeded by both.
pub fn row_bytes(tag: &str, id: i64, len: usize) -> Vec<u8> {
    let mut x = tag
        .bytes()
        .fold(0x9e37_79b9_7f4a_7c15_u64 ^ id as u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
        | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Bytes a row holds.
pub const ROW: usize = 64 << 10;
