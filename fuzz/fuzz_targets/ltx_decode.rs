//! Every decoder of LTX bytes, on one input: the whole-file decoder, the header, the index
//! read from a file's tail (as a reader with one ranged GET of the end does), and single
//! frames (the first byte picks the page size). None may panic, loop, or allocate in
//! proportion to a number it read (`make fuzz` runs with -malloc_limit_mb).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ltxvfs::ltx::{Header, PageIndex, PageSize, Pgno, decode_file, decode_page};

fuzz_target!(|data: &[u8]| {
    let _ = decode_file(data, |_, _| Ok(()));
    if let Ok(header) = Header::decode(data) {
        let _ = header.validate();
    }
    let len = data.len() as u64;
    for tail in [data.len(), data.len().min(64), data.len().min(4096)] {
        let _ = PageIndex::from_tail(&data[data.len() - tail..], len);
    }
    if let Ok(span) = PageIndex::locate(data, len) {
        let start = usize::try_from(span.start).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(span.len).unwrap_or(usize::MAX));
        if let Some(bytes) = data.get(start..end) {
            let _ = PageIndex::decode(bytes, span.start);
        }
    }
    if let Some((&pick, frame)) = data.split_first() {
        if let (Some(size), Some(pgno)) = (
            PageSize::new(512 << (pick % 8)),
            Pgno::new(1 + u32::from(pick >> 3)),
        ) {
            let _ = decode_page(frame, pgno, size);
        }
    }
});
