//! Damaged replicas: each is `SQLITE_CORRUPT` naming the LTX file, at open when the damage is
//! in what an open reads (headers, indexes), at the query otherwise; never wrong rows.

use ltxvfs::ltx::{Encoder, Encoding, Header, PageIndex, PageSize, Pgno, Txid, decode_file};
use ltxvfs_sqlite_tests::{copy_fixture_replica, file_url, log_lines, open_replica};
use rusqlite::ErrorCode;
use std::path::Path;

/// Opening works, the query is SQLITE_CORRUPT, and the sentence names an LTX file and says
/// `why`.
fn assert_query_corrupt(replica: &Path, why: &str) {
    let conn = open_replica(&file_url(replica), "&poll=0").unwrap();
    let err = conn
        .query_row("SELECT count(*), sum(length(v)) FROM items", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap_err();
    assert_eq!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt),
        "{err}"
    );
    let last: String = conn
        .pragma_query_value(None, "ltx_last_error", |r| r.get(0))
        .unwrap();
    assert!(last.contains(".ltx") && last.contains(why), "{last}");
}

/// Opening is SQLITE_CORRUPT, and the log names the file and says `why`.
fn assert_open_corrupt(replica: &Path, file: &str, why: &str) {
    let err = open_replica(&file_url(replica), "&poll=0").unwrap_err();
    assert_eq!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt),
        "{err}"
    );
    let lines = log_lines(file);
    assert!(
        lines.iter().any(|l| l.contains(why)),
        "no log line naming {file} with {why:?}: {lines:?}"
    );
}

/// Each frame but page 1's (SQLite reads page 1 to open), at `at` bytes into the frame.
fn damage_frames(bytes: &mut [u8], at: usize, mask: u8) {
    let summary = decode_file(bytes, |_, _| Ok(())).unwrap();
    for e in summary.index.entries().filter(|e| e.pgno.get() > 1) {
        let i = e.offset as usize + at.min(e.size as usize - 1);
        bytes[i] ^= mask;
    }
}

// The fixtures' files are small: an open reads each whole (header, index and first 64 KiB
// in one GET) and checks all of it, file checksum included, so damage anywhere in them is
// found at the open.

#[test]
fn frames_holding_other_pages_are_corrupt_at_open() {
    // Each frame's page number (page header byte 3) changed.
    let replica = copy_fixture_replica("0.5.15", "damaged-frames", |bytes| {
        damage_frames(bytes, 3, 0x40)
    });
    assert_open_corrupt(&replica, ".ltx", "corrupt");
}

#[test]
fn flipped_bits_in_legacy_frames_are_corrupt_at_open() {
    let replica = copy_fixture_replica("0.5.15", "corrupt-legacy", |bytes| {
        damage_frames(bytes, 40, 0x01)
    });
    assert_open_corrupt(&replica, ".ltx", "corrupt");
}

#[test]
fn a_flipped_literal_in_a_block_frame_is_corrupt_at_open_in_a_file_read_whole() {
    // One bit of the last byte of each frame: in an LZ4 block that is a literal, which
    // decodes to another byte without complaint; only the file checksum tells.
    let replica = copy_fixture_replica("0.5.17", "corrupt-literal", |bytes| {
        damage_frames(bytes, usize::MAX, 0x01)
    });
    assert_open_corrupt(&replica, ".ltx", "checksum");
}

#[test]
fn damaged_frames_in_a_large_file_are_corrupt_when_read() {
    // A snapshot too large to read whole at open: frames past its first 64 KiB are read
    // alone, when a query needs them, and checked for page number and lengths.
    use ltxvfs_sqlite_tests::{Primary, Target, util};
    let primary = Primary::start(
        "0.5.17",
        "corrupt-large",
        "CREATE TABLE items(id INTEGER PRIMARY KEY, v TEXT)",
        "1m",
        Target::File,
    );
    primary.commit(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
         INSERT INTO items SELECT i, hex(randomblob(200)) FROM n",
    );
    primary.settle();
    let src = primary.dir.join("replica");
    let replica = util::scratch_dir("corrupt-large-copy").join("replica");
    let mut damaged = 0;
    for (id, path) in util::replica_files(&src) {
        let mut bytes = std::fs::read(&path).unwrap();
        if bytes.len() > 256 << 10 {
            let summary = decode_file(&bytes, |_, _| Ok(())).unwrap();
            for e in summary.index.entries().filter(|e| e.offset > 128 << 10) {
                // The LZ4 token of each frame's block: its literal length changes.
                bytes[e.offset as usize + 10] ^= 0xf0;
                damaged += 1;
            }
        }
        let to = replica
            .join("ltx")
            .join(id.level.to_string())
            .join(path.file_name().unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, bytes).unwrap();
    }
    assert!(damaged > 10, "no large file to damage");
    assert_query_corrupt(&replica, "page");
}

#[test]
fn an_index_pointing_at_another_frame_is_corrupt() {
    // Every entry but page 1's is given the next entry's frame. An open reads every index
    // and finds the overlap; a frame that holds another page than its entry says is
    // errors::damaged_frames_are_corrupt_not_wrong_rows.
    let replica = copy_fixture_replica("0.5.17", "corrupt-index", |bytes| {
        let span = PageIndex::locate(bytes, bytes.len() as u64).unwrap();
        let index = PageIndex::decode(
            &bytes[span.start as usize..(span.start + span.len) as usize],
            span.start,
        )
        .unwrap();
        let entries: Vec<_> = index.entries().collect();
        let mut out = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let target = match entries.get(i + 1) {
                Some(next) if e.pgno.get() > 1 => next,
                _ => e,
            };
            for v in [u64::from(e.pgno.get()), target.offset, target.size] {
                put_uvarint(&mut out, v);
            }
        }
        out.push(0);
        let trailer = bytes[bytes.len() - 16..].to_vec();
        bytes.truncate(span.start as usize);
        bytes.extend_from_slice(&out);
        bytes.extend_from_slice(&(out.len() as u64).to_be_bytes());
        bytes.extend_from_slice(&trailer);
    });
    assert_open_corrupt(&replica, ".ltx", "index");
}

#[test]
fn an_index_size_past_the_file_is_corrupt_at_open() {
    let replica = copy_fixture_replica("0.5.15", "corrupt-index-size", |bytes| {
        let n = bytes.len();
        bytes[n - 24..n - 16].copy_from_slice(&u64::MAX.to_be_bytes());
    });
    assert_open_corrupt(&replica, ".ltx", "invalid page index");
}

#[test]
fn a_truncated_file_is_corrupt_at_open() {
    // The end of a file is where its index is: an open reads it, and fails naming the file.
    let replica = copy_fixture_replica("0.5.17", "corrupt-truncated", |bytes| {
        let header = Header::decode(bytes).unwrap();
        if header.min_txid == Txid(1) && header.max_txid == Txid(5) {
            bytes.truncate(bytes.len() - 100);
        }
    });
    assert_open_corrupt(&replica, "0000000000000001-0000000000000005.ltx", "index");
}

#[test]
fn a_file_of_another_page_size_is_corrupt_at_open() {
    // Only level 0 left, so the plan is L0 1..10; file 3 replaced by one of 8 KiB pages.
    let replica = copy_fixture_replica("0.5.17", "corrupt-page-size", |_| {});
    for level in ["1", "2", "9"] {
        std::fs::remove_dir_all(replica.join("ltx").join(level)).unwrap();
    }
    let size = PageSize::new(8192).unwrap();
    let mut encoder =
        Encoder::new(Header::new(size, 1, Txid(3), Txid(3)), Encoding::Block).unwrap();
    encoder.add_page(Pgno::ONE, &vec![0u8; 8192]).unwrap();
    let name = "0000000000000003-0000000000000003.ltx";
    std::fs::write(replica.join("ltx/0").join(name), encoder.finish().unwrap()).unwrap();
    assert_open_corrupt(&replica, name, "page size");
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
