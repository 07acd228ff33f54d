//! The encoder: round trips through our decoder, and replicas made only of our files that
//! the real `litestream restore` accepts.

use crate::util::{apply, litestream_bin, repo_dir, scratch_dir};
use ltxvfs::ltx::{self, CHECKSUM_FLAG, Encoder, Encoding, Error, Header, PageSize, Pgno, Txid};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::process::Command;

fn pgno(n: u32) -> Pgno {
    Pgno::new(n).unwrap()
}

/// A page that compresses somewhat, like real ones: a run, some noise, a run.
fn page_strategy(page_size: usize) -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..64),
        0..page_size,
    )
        .prop_map(move |(fill, noise, at)| {
            let mut p = vec![fill; page_size];
            let at = at.min(page_size - noise.len());
            p[at..at + noise.len()].copy_from_slice(&noise);
            p
        })
}

fn file_strategy() -> impl Strategy<Value = (PageSize, bool, Encoding, BTreeMap<u32, Vec<u8>>)> {
    (
        prop::sample::select(vec![512u32, 1024, 4096, 65536]),
        any::<bool>(),
        prop::sample::select(vec![Encoding::Block, Encoding::LegacyFrame]),
    )
        .prop_flat_map(|(ps, snapshot, enc)| {
            let page = page_strategy(ps as usize);
            let pages = if snapshot {
                proptest::collection::vec(page, 1..12)
                    .prop_map(|v| (1u32..).zip(v).collect::<BTreeMap<_, _>>())
                    .boxed()
            } else {
                proptest::collection::btree_map(1u32..40, page, 0..12).boxed()
            };
            (
                Just(PageSize::new(ps).unwrap()),
                Just(snapshot),
                Just(enc),
                pages,
            )
        })
}

fn encode(
    ps: PageSize,
    snapshot: bool,
    enc: Encoding,
    pages: &BTreeMap<u32, Vec<u8>>,
) -> Result<(Header, Vec<u8>), Error> {
    let commit = pages
        .keys()
        .max()
        .copied()
        .unwrap_or(0)
        .max(if snapshot { 0 } else { 3 });
    let (min, max) = if snapshot {
        (Txid(1), Txid(4))
    } else {
        (Txid(5), Txid(9))
    };
    let mut header = Header::new(ps, commit, min, max);
    header.timestamp_ms = 1_763_700_000_000;
    let mut e = Encoder::new(header.clone(), enc)?;
    for (n, data) in pages {
        e.add_page(pgno(*n), data)?;
    }
    Ok((header, e.finish()?))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn encode_then_decode_round_trips((ps, snapshot, enc, pages) in file_strategy()) {
        let (header, bytes) = encode(ps, snapshot, enc, &pages).unwrap();
        let mut got = BTreeMap::new();
        let summary = ltx::decode_file(&bytes, |n, d| {
            got.insert(n.get(), d.to_vec());
            Ok(())
        }).unwrap();
        prop_assert_eq!(&summary.header, &header);
        prop_assert_eq!(&got, &pages);
        prop_assert_eq!(summary.encoding, (!pages.is_empty()).then_some(enc));
        // Random access: index from the tail, each page from its frame alone.
        let tail = &bytes[bytes.len().saturating_sub(256)..];
        let index = match ltx::PageIndex::from_tail(tail, bytes.len() as u64).unwrap() {
            ltx::TailIndex::Complete(i) => i,
            ltx::TailIndex::NeedFrom(span) => match ltx::PageIndex::from_tail(
                &bytes[span.start as usize..], bytes.len() as u64).unwrap() {
                ltx::TailIndex::Complete(i) => i,
                ltx::TailIndex::NeedFrom(_) => unreachable!(),
            },
        };
        prop_assert_eq!(&index, &summary.index);
        // The same, decoded in pieces of every size from 1 byte up.
        let span = ltx::PageIndex::locate(&bytes, bytes.len() as u64).unwrap();
        let encoded = &bytes[span.start as usize..(span.start + span.len) as usize];
        for piece in [1usize, 2, 7, 29, 31, 4096] {
            let mut decoder = ltx::IndexDecoder::new(span.start).unwrap();
            let mut got = Vec::new();
            for chunk in encoded.chunks(piece) {
                decoder.feed(chunk, |e| { got.push(e); Ok(()) }).unwrap();
            }
            prop_assert_eq!(decoder.finish().unwrap(), summary.index.len());
            prop_assert!(got.iter().copied().eq(summary.index.entries()), "pieces of {}", piece);
        }
        for e in index.entries() {
            let frame = &bytes[e.offset as usize..(e.offset + e.size) as usize];
            prop_assert_eq!(&ltx::decode_page(frame, e.pgno, ps).unwrap(), &pages[&e.pgno.get()]);
        }
    }
}

#[test]
fn encoder_refuses_what_litestream_would_reject() {
    let ps = PageSize::new(4096).unwrap();
    let page = vec![0u8; 4096];
    let mut e = Encoder::new(Header::new(ps, 10, Txid(2), Txid(2)), Encoding::Block).unwrap();
    e.add_page(pgno(3), &page).unwrap();
    assert!(e.add_page(pgno(3), &page).is_err(), "repeat");
    assert!(e.add_page(pgno(2), &page).is_err(), "descending");
    assert!(e.add_page(pgno(11), &page).is_err(), "beyond commit");
    assert!(e.add_page(pgno(4), &page[..100]).is_err(), "short page");

    let big = Header::new(ps, 300_000, Txid(2), Txid(2));
    let mut e = Encoder::new(big, Encoding::Block).unwrap();
    assert!(e.add_page(ps.lock_page(), &page).is_err(), "lock page");

    let mut e = Encoder::new(Header::new(ps, 3, Txid(1), Txid(1)), Encoding::Block).unwrap();
    assert!(
        e.add_page(pgno(2), &page).is_err(),
        "snapshot must start at page 1"
    );
    e.add_page(pgno(1), &page).unwrap();
    assert!(e.finish().is_err(), "snapshot missing pages 2 and 3");
}

#[test]
fn snapshot_with_checksums_verifies_its_database_checksum() {
    let ps = PageSize::new(512).unwrap();
    let pages: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 512]).collect();
    let mut header = Header::new(ps, 3, Txid(1), Txid(1));
    header.flags = 0; // checksums on
    let build = |e: Encoder| {
        let mut e = e;
        for (n, p) in (1..).zip(&pages) {
            e.add_page(pgno(n), p).unwrap();
        }
        e.finish().unwrap()
    };
    let good = build(Encoder::new(header.clone(), Encoding::Block).unwrap());
    let summary = ltx::decode_file(&good, |_, _| Ok(())).unwrap();
    let expected = ltx::database_checksum(ps, pages.iter().map(Vec::as_slice));
    assert_eq!(summary.trailer.post_apply_checksum, expected);

    let lie = Encoder::new(header, Encoding::Block)
        .unwrap()
        .with_post_apply_checksum(CHECKSUM_FLAG | 1234);
    assert!(matches!(
        ltx::decode_file(&build(lie), |_, _| Ok(())),
        Err(Error::ChecksumMismatch {
            what: "post-apply database",
            ..
        })
    ));
}

/// Writes `db` (a real SQLite database) as a snapshot at TXID 1, then a second file at TXID 2
/// that changes it into `next` (every page of `next` that differs, and its smaller or larger
/// commit), in a `file://` replica of level-0 files.
fn write_replica(dir: &std::path::Path, enc: Encoding, db: &[u8], next: &[u8]) {
    let ps = PageSize::new(4096).unwrap();
    let l0 = dir.join("ltx/0");
    std::fs::create_dir_all(&l0).unwrap();
    let pages = |d: &[u8]| d.chunks(4096).map(<[u8]>::to_vec).collect::<Vec<_>>();
    let (a, b) = (pages(db), pages(next));

    let mut e = Encoder::new(Header::new(ps, a.len() as u32, Txid(1), Txid(1)), enc).unwrap();
    for (n, p) in (1..).zip(&a) {
        e.add_page(pgno(n), p).unwrap();
    }
    std::fs::write(
        l0.join("0000000000000001-0000000000000001.ltx"),
        e.finish().unwrap(),
    )
    .unwrap();

    let mut e = Encoder::new(Header::new(ps, b.len() as u32, Txid(2), Txid(2)), enc).unwrap();
    for (n, p) in (1..).zip(&b) {
        if a.get(n as usize - 1) != Some(p) {
            e.add_page(pgno(n), p).unwrap();
        }
    }
    std::fs::write(
        l0.join("0000000000000002-0000000000000002.ltx"),
        e.finish().unwrap(),
    )
    .unwrap();
}

fn litestream_restore(version: &str, replica: &std::path::Path, out: &std::path::Path) -> Vec<u8> {
    let status = Command::new(litestream_bin(version))
        .env_remove("AWS_CA_BUNDLE")
        .args(["restore", "-o"])
        .arg(out)
        .arg(format!("file://{}", replica.display()))
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "litestream {version} restore failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    std::fs::read(out).unwrap()
}

/// Litestream 0.5.17 restores our block-encoded files, 0.5.15 our legacy ones; each gives the
/// same database our own decoder gives, which is the database we encoded.
#[test]
fn litestream_restores_replicas_written_by_our_encoder() {
    let fixtures = repo_dir().join("tests/fixtures/litestream-0.5.17");
    let before = std::fs::read(fixtures.join("restored-0000000000000006.db")).unwrap();
    let after = std::fs::read(fixtures.join("restored.db")).unwrap();
    assert!(
        after.len() < before.len(),
        "the second file should shrink the database"
    );

    for (version, enc) in [
        ("0.5.17", Encoding::Block),
        ("0.5.15", Encoding::LegacyFrame),
        ("0.5.17", Encoding::LegacyFrame),
    ] {
        let dir = scratch_dir(&format!("encoder-restore-{version}-{enc:?}"));
        let replica = dir.join("replica");
        write_replica(&replica, enc, &before, &after);
        let restored = litestream_restore(version, &replica, &dir.join("restored.db"));
        assert!(
            restored == after,
            "litestream {version} restored other bytes from {enc:?} files"
        );

        let mut ours = Vec::new();
        for name in [
            "0000000000000001-0000000000000001.ltx",
            "0000000000000002-0000000000000002.ltx",
        ] {
            apply(
                &mut ours,
                &std::fs::read(replica.join("ltx/0").join(name)).unwrap(),
            );
        }
        assert!(ours == after);
    }
}
