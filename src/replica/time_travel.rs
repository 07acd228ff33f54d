//! Time travel by the transaction's own time: which TXID a point in time names.
//!
//! A transaction's time is the timestamp in the header of the LTX file that ends at its TXID
//! (a compacted file carries its last input's; only a snapshot, level 9, carries the later
//! time it was taken, so the lowest level's file ending there is read), which is what
//! `ltx_time()` reports. The files' modification times in a listing are
//! not: a replica copied elsewhere, or uploaded late, has other ones. Header times never
//! decrease with the TXID (each is the commit's clock, and a writer commits in order), so the
//! newest TXID written at or before `t` is found by a binary search over the TXIDs files end
//! at, reading one 100-byte header per step: ⌈log2(n+1)⌉ ranged GETs for n such TXIDs, one
//! after another. The state is then planned at that TXID as `txid=` plans it.

use super::LtxFileId;
use crate::error::{Error, Result};
use crate::ltx::{HEADER_SIZE, Header, Txid};
use crate::store::Store;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// The newest TXID among the ends of `files` whose transaction was written at or before
/// `t` by its LTX header's timestamp, or `None` if every one was written after it.
///
/// # Errors
/// The store's errors ([`Error::Vanished`] for a file compacted away meanwhile: list and
/// search again); [`Error::Corrupt`] for a header that does not decode.
pub(crate) async fn newest_written_by(
    store: &Store,
    files: impl Iterator<Item = &LtxFileId>,
    t: SystemTime,
) -> Result<Option<Txid>> {
    let ends = ends(files);
    let t_ms = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    // ends[..lo] were written at or before t, ends[hi..] after it.
    let (mut lo, mut hi) = (0, ends.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let Some(file) = ends.get(mid) else { break };
        if header_time(store, file).await? <= t_ms {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo
        .checked_sub(1)
        .and_then(|i| ends.get(i))
        .map(|f| f.max_txid))
}

/// One file per TXID that a file ends at, in TXID order: the lowest level's, which carries
/// the transaction's own time (a snapshot's is when it was taken).
fn ends<'a>(files: impl Iterator<Item = &'a LtxFileId>) -> Vec<LtxFileId> {
    let mut ends: BTreeMap<Txid, LtxFileId> = BTreeMap::new();
    for f in files {
        ends.entry(f.max_txid)
            .and_modify(|e| {
                if f.level < e.level {
                    *e = *f;
                }
            })
            .or_insert(*f);
    }
    ends.into_values().collect()
}

/// The timestamp (ms since the epoch) in `file`'s LTX header.
async fn header_time(store: &Store, file: &LtxFileId) -> Result<i64> {
    let head = store.get_range(file, 0..HEADER_SIZE as u64).await?;
    Header::decode(&head)
        .map(|h| h.timestamp_ms)
        .map_err(|source| Error::Corrupt {
            url: store.url().to_owned(),
            file: *file,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::{Encoder, Encoding, PageSize, Pgno};
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    /// A file:// replica whose files carry the given header times, written now (so their
    /// modification times say nothing).
    fn replica(
        name: &str,
        files: &[(LtxFileId, i64)],
    ) -> std::result::Result<Store, Box<dyn std::error::Error>> {
        let dir =
            std::env::temp_dir().join(format!("ltxvfs-time-travel-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ps = PageSize::new(512).ok_or("page size")?;
        for (id, ms) in files {
            let mut header = Header::new(ps, 1, id.min_txid, id.max_txid);
            header.timestamp_ms = *ms;
            let mut enc = Encoder::new(header, Encoding::Block)?;
            enc.add_page(Pgno::ONE, &[0u8; 512])?;
            let level = dir.join(format!("ltx/{}", id.level));
            std::fs::create_dir_all(&level)?;
            std::fs::write(level.join(id.file_name()), enc.finish()?)?;
        }
        Ok(Store::from_url(
            &format!("file://{}", dir.display()),
            Duration::from_secs(10),
        )?)
    }

    fn search(
        store: &Store,
        files: &[(LtxFileId, i64)],
        ms: u64,
    ) -> std::result::Result<Option<Txid>, Box<dyn std::error::Error>> {
        let store = store.clone();
        let ids: Vec<LtxFileId> = files.iter().map(|(id, _)| *id).collect();
        Ok(crate::io::run(
            async move {
                newest_written_by(&store, ids.iter(), UNIX_EPOCH + Duration::from_millis(ms)).await
            },
            Duration::from_secs(20),
        )??)
    }

    #[test]
    fn the_newest_txid_written_by_a_time_by_header_times_in_log_n_reads() -> TestResult {
        // TXIDs 1..=20 a second apart, compacted 1-8 into level 1, and a snapshot of 1-8
        // taken later than TXID 12.
        let mut files: Vec<(LtxFileId, i64)> =
            (1..=20).map(|x| (id(0, x, x), 1000 * x as i64)).collect();
        files.push((id(1, 1, 8), 8000));
        files.push((id(9, 1, 8), 12_500));
        let store = replica("search", &files)?;
        for x in 1..=20u64 {
            assert_eq!(search(&store, &files, 1000 * x)?, Some(Txid(x)), "at {x} s");
            assert_eq!(search(&store, &files, 1000 * x + 999)?, Some(Txid(x)));
        }
        assert_eq!(search(&store, &files, 999)?, None);
        assert_eq!(search(&store, &files, 0)?, None);
        let before = store.stats().get_requests.load(Ordering::Relaxed);
        search(&store, &files, 7000)?;
        let gets = store.stats().get_requests.load(Ordering::Relaxed) - before;
        assert!(gets <= 5, "{gets} header reads for 20 TXIDs");
        Ok(())
    }

    use crate::replica::test_id as id;

    #[test]
    fn one_file_per_end_in_txid_order_the_lowest_level_first() {
        let files = [
            id(9, 1, 5),
            id(1, 1, 5),
            id(0, 5, 5),
            id(0, 6, 6),
            id(1, 6, 8),
        ];
        assert_eq!(
            ends(files.iter()),
            vec![id(0, 5, 5), id(0, 6, 6), id(1, 6, 8)]
        );
    }
}
