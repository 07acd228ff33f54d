//! The codec on files written by the real Litestream 0.5.15 (legacy frames) and 0.5.17
//! (size-prefixed blocks).

use crate::util::{fixture_roots, replica_files, restore_in_memory};
use ltxvfs::ltx::{self, Encoding, Pgno, TailIndex, Txid};

#[test]
fn every_fixture_file_decodes_and_its_checksum_verifies() {
    for (version, root) in fixture_roots() {
        let files = replica_files(&root.join("replica"));
        assert!(
            files.len() >= 10,
            "{}: only {} files",
            root.display(),
            files.len()
        );
        let mut snapshots = 0;
        for (id, path) in files {
            let bytes = std::fs::read(&path).unwrap();
            let mut pages = 0u32;
            let summary = ltx::decode_file(&bytes, |_, data| {
                assert_eq!(data.len(), 4096);
                pages += 1;
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let h = &summary.header;
            assert_eq!(
                (h.min_txid, h.max_txid),
                (id.min_txid, id.max_txid),
                "{}",
                path.display()
            );
            assert!(h.no_checksum(), "Litestream sets NoChecksum on every file");
            assert_eq!(summary.index.len() as u32, pages);
            snapshots += usize::from(h.is_snapshot());
            let expected = if version == "0.5.15" {
                Encoding::LegacyFrame
            } else {
                Encoding::Block
            };
            assert_eq!(summary.encoding, Some(expected), "{}", path.display());
        }
        assert!(
            snapshots >= 2,
            "{}: expected L0 and L9 snapshots",
            root.display()
        );
    }
}

/// A reader with only ranged GETs: the index from the file's last bytes, then each page from
/// exactly its frame's bytes, equal to what the sequential decoder saw.
#[test]
fn random_access_from_tail_and_frame_bytes_matches_sequential_decode() {
    for (_, root) in fixture_roots() {
        for (_, path) in replica_files(&root.join("replica")) {
            let bytes = std::fs::read(&path).unwrap();
            let mut pages: Vec<(Pgno, Vec<u8>)> = Vec::new();
            let summary = ltx::decode_file(&bytes, |pgno, data| {
                pages.push((pgno, data.to_vec()));
                Ok(())
            })
            .unwrap();
            let len = bytes.len() as u64;
            let header = ltx::Header::decode(&bytes[..ltx::HEADER_SIZE]).unwrap();

            // Litestream's first guess is the last 32 KiB; try a tail too short as well.
            for tail_len in [32 << 10, 64] {
                let tail = &bytes[bytes.len().saturating_sub(tail_len)..];
                let index = match ltx::PageIndex::from_tail(tail, len).unwrap() {
                    TailIndex::Complete(index) => index,
                    TailIndex::NeedFrom(span) => {
                        assert!(tail.len() < bytes.len());
                        match ltx::PageIndex::from_tail(&bytes[span.start as usize..], len).unwrap()
                        {
                            TailIndex::Complete(index) => index,
                            TailIndex::NeedFrom(_) => panic!("index still incomplete"),
                        }
                    }
                };
                index.check_header(&header).unwrap();
                assert_eq!(index, summary.index, "{}", path.display());
            }
            for (pgno, page) in &pages {
                let e = summary.index.get(*pgno).unwrap();
                let frame = &bytes[e.offset as usize..(e.offset + e.size) as usize];
                let got = ltx::decode_page(frame, *pgno, header.page_size).unwrap();
                assert_eq!(&got, page, "{} page {pgno}", path.display());
            }
        }
    }
}

/// Our plan and decoder give, byte for byte, the database `litestream restore` wrote from
/// the same replica: for the newest state and for each `-txid` restore point.
#[test]
fn applied_restore_plan_equals_litestream_restore() {
    for (_, root) in fixture_roots() {
        let replica = root.join("replica");
        let restored = std::fs::read(root.join("restored.db")).unwrap();
        let ours = restore_in_memory(&replica, None);
        assert_eq!(ours.len(), restored.len(), "{}", root.display());
        assert!(ours == restored, "{}: restore differs", root.display());

        let mut points = 0;
        for f in std::fs::read_dir(&root).unwrap() {
            let path = f.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let Some(hex) = name
                .strip_prefix("restored-")
                .and_then(|n| n.strip_suffix(".db"))
            else {
                continue;
            };
            let txid = Txid(u64::from_str_radix(hex, 16).unwrap());
            let ours = restore_in_memory(&replica, Some(txid));
            assert!(
                ours == std::fs::read(&path).unwrap(),
                "{name}: restore differs"
            );
            points += 1;
        }
        assert!(points >= 3, "{}: expected restore points", root.display());
    }
}

/// The database shrank (VACUUM) in the fixtures: the newest state is smaller than an earlier
/// restore point, so truncation to the commit is exercised.
#[test]
fn fixtures_include_a_shrinking_commit() {
    for (_, root) in fixture_roots() {
        let newest = std::fs::metadata(root.join("restored.db")).unwrap().len();
        let largest = std::fs::read_dir(&root)
            .unwrap()
            .map(|f| f.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "db"))
            .map(|p| std::fs::metadata(p).unwrap().len())
            .max()
            .unwrap();
        assert!(
            newest < largest,
            "{}: no shrink in the fixtures",
            root.display()
        );
    }
}
