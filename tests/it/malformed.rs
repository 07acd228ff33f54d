//! Malformed input: truncated, bit-flipped, overwritten, absurd sizes, random bytes. Each is
//! an error or (where the format cannot tell) the same pages; never a panic, never other
//! pages passed off as the file's.

use crate::util::{fixture_roots, replica_files};
use ltxvfs::ltx::{self, Error, Pgno, TailIndex};
use proptest::prelude::*;
use std::path::PathBuf;

type Pages = Vec<(Pgno, Vec<u8>)>;

fn decode(bytes: &[u8]) -> Result<(ltx::FileSummary, Pages), Error> {
    let mut pages = Vec::new();
    let summary = ltx::decode_file(bytes, |pgno, data| {
        pages.push((pgno, data.to_vec()));
        Ok(())
    })?;
    Ok((summary, pages))
}

/// The smaller fixture files of each version: small enough to mutate at every byte.
fn small_fixtures() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (_, root) in fixture_roots().into_iter().take(2) {
        let mut files: Vec<PathBuf> = replica_files(&root.join("replica"))
            .into_iter()
            .map(|(_, p)| p)
            .filter(|p| std::fs::metadata(p).unwrap().len() < 12_000)
            .collect();
        files.truncate(3);
        assert!(!files.is_empty());
        out.extend(files);
    }
    out
}

#[test]
fn every_truncation_of_a_fixture_is_an_error() {
    for path in small_fixtures() {
        let bytes = std::fs::read(&path).unwrap();
        for len in 0..bytes.len() {
            assert!(
                decode(&bytes[..len]).is_err(),
                "{} cut at {len}",
                path.display()
            );
        }
    }
}

#[test]
fn a_flipped_bit_anywhere_is_an_error_or_the_same_pages() {
    for path in small_fixtures() {
        let bytes = std::fs::read(&path).unwrap();
        let (_, pages) = decode(&bytes).unwrap();
        let mut failures = 0;
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 1 << (at % 8);
            match decode(&bad) {
                Err(_) => failures += 1,
                Ok((_, got)) => assert_eq!(got, pages, "{} flip at {at}", path.display()),
            }
        }
        // The file checksum covers nearly every byte, so nearly every flip must fail.
        assert!(
            failures * 100 >= bytes.len() * 99,
            "{}: {failures}/{}",
            path.display(),
            bytes.len()
        );
    }
}

/// A frame fetched on its own has no checksum in the block encoding, so a flipped literal
/// can decode to other bytes; that is why whole files are verified where they are read
/// whole. What a single frame must never do is panic, or pass as another page.
#[test]
fn a_flipped_bit_in_a_frame_never_panics_or_changes_the_page_number() {
    for path in small_fixtures() {
        let bytes = std::fs::read(&path).unwrap();
        let (summary, _) = decode(&bytes).unwrap();
        let ps = summary.header.page_size;
        for e in summary.index.entries() {
            let frame = &bytes[e.offset as usize..(e.offset + e.size) as usize];
            for at in 0..frame.len() {
                let mut bad = frame.to_vec();
                bad[at] ^= 0x10;
                if let Ok(page) = ltx::decode_page(&bad, e.pgno, ps) {
                    assert_eq!(page.len(), ps.as_usize());
                    assert!(at >= 4, "a changed page number must be caught");
                }
            }
        }
    }
}

#[test]
fn absurd_sizes_are_errors_without_allocating_them() {
    let path = &small_fixtures()[0];
    let bytes = std::fs::read(path).unwrap();
    let len = bytes.len();
    let (summary, _) = decode(&bytes).unwrap();

    // Index size claiming more than the file, and u64::MAX.
    for size in [len as u64, u64::MAX, 0] {
        let mut bad = bytes.clone();
        bad[len - 24..len - 16].copy_from_slice(&size.to_be_bytes());
        assert!(decode(&bad).is_err());
        assert!(ltx::PageIndex::from_tail(&bad, len as u64).is_err());
    }

    // A block frame whose size prefix says 4 GiB.
    let e = summary.index.entries().next().unwrap();
    let mut frame = bytes[e.offset as usize..(e.offset + e.size) as usize].to_vec();
    if frame[5] == 1 {
        frame[6..10].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            ltx::decode_page(&frame, e.pgno, summary.header.page_size),
            Err(Error::BadFrameSize { .. })
        ));
    }

    // An index entry pointing past the page block, built by hand.
    let mut index = Vec::new();
    for v in [1u64, 100, u64::MAX / 2, 0] {
        let mut x = v;
        while x >= 0x80 {
            index.push(x as u8 | 0x80);
            x >>= 7;
        }
        index.push(x as u8);
    }
    assert!(matches!(
        ltx::PageIndex::decode(&index, 1000),
        Err(Error::BadIndex(_))
    ));
}

#[test]
fn wrong_magic_and_page_size_are_named() {
    let bytes = std::fs::read(&small_fixtures()[0]).unwrap();
    let mut bad = bytes.clone();
    bad[..4].copy_from_slice(b"SQLi");
    assert!(matches!(decode(&bad), Err(Error::BadMagic { .. })));
    let mut bad = bytes.clone();
    bad[8..12].copy_from_slice(&3000u32.to_be_bytes());
    let err = decode(&bad).unwrap_err().to_string();
    assert!(err.contains("page size 3000"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = ltx::Header::decode(&bytes);
        let _ = decode(&bytes);
        let _ = ltx::PageIndex::from_tail(&bytes, bytes.len() as u64);
        let _ = ltx::PageIndex::decode(&bytes, 4096);
        let _ = ltx::decode_page(&bytes, Pgno::ONE, ltx::PageSize::new(4096).unwrap());
    }

    #[test]
    fn overwritten_ranges_are_errors_or_the_same_pages(
        file in 0usize..6,
        start in any::<prop::sample::Index>(),
        junk in proptest::collection::vec(any::<u8>(), 1..64),
    ) {
        let files = small_fixtures();
        let bytes = std::fs::read(&files[file % files.len()]).unwrap();
        let (_, pages) = decode(&bytes).unwrap();
        let at = start.index(bytes.len());
        let mut bad = bytes.clone();
        for (b, j) in bad[at..].iter_mut().zip(&junk) {
            *b = *j;
        }
        if let Ok((_, got)) = decode(&bad) {
            prop_assert_eq!(got, pages);
        }
        if let Ok(TailIndex::Complete(index)) = ltx::PageIndex::from_tail(&bad, bad.len() as u64) {
            prop_assert!(index.entries().all(|e| e.offset + e.size <= bad.len() as u64));
        }
    }
}
