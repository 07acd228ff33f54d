//! What the ladder asks for, given what the store lists: which files of a level to merge into
//! the next, whether a snapshot is due, which files retention removes. Pure decisions, as
//! Litestream 0.5 takes them, so they are tested without a store.

use crate::ltx::Txid;
use crate::replica::{LtxFileId, SNAPSHOT_LEVEL};
use crate::store::ListedFile;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// The files of each level, as listed (level 0, the ladder's levels, and the snapshots).
pub(super) type Listing = BTreeMap<u8, Vec<ListedFile>>;

/// The newest TXID a level reaches (zero for an empty level).
pub(super) fn max_txid(files: &[ListedFile]) -> Txid {
    files
        .iter()
        .map(|f| f.id.max_txid)
        .max()
        .unwrap_or(Txid::ZERO)
}

/// The files that chain on from TXID `from` as a restore plan takes them: each time, of the
/// files that start at most one past where the chain is and reach beyond it, the one that
/// reaches furthest; a gap ends the chain.
fn chain(files: &[ListedFile], from: Txid) -> Vec<ListedFile> {
    let mut run: Vec<ListedFile> = Vec::new();
    let mut at = from;
    while let Some(next) = files
        .iter()
        .filter(|f| f.id.min_txid <= at.next() && f.id.max_txid > at)
        .max_by_key(|f| (f.id.max_txid, std::cmp::Reverse(f.id.min_txid)))
    {
        at = next.id.max_txid;
        run.push(*next);
    }
    run
}

/// The files to merge into one new file of a level whose files are `dst`, from the level
/// below (`src`), in TXID order:
/// - the top level of the ladder (`upper` is `None`) takes, as Litestream does, the files
///   of `src` past what `dst` reaches (so does a level whose upper level is still empty);
/// - a level below it widens instead: its new file starts where the level above ends
///   (`upper`), taking the level's own files since then and what `src` has past them, so
///   one file of each level covers all that the level above has not. The file it
///   supersedes goes after `l0_retention` ([`to_delete`]). So a plan needs one file per
///   level between the top level and level 0, not one per interval.
///
/// Either way the new file never starts past one beyond what the level already reaches:
/// a level's files stay contiguous from its first, as Litestream reads a level (its rule:
/// a level-N file takes the files of level N-1 that follow the last level-N file's max
/// TXID). The level above reaches past this one only in a listing that saw another
/// writer's files of the level above but not of this one; then the level's own end rules.
///
/// Empty when `src` has nothing new.
pub(super) fn to_compact(
    src: &[ListedFile],
    dst: &[ListedFile],
    upper: Option<&[ListedFile]>,
) -> Vec<ListedFile> {
    let reach = max_txid(dst);
    let (mut run, mut from) = match upper {
        None => (Vec::new(), reach),
        Some(upper) => {
            let own = chain(dst, max_txid(upper));
            let from = own.last().map_or(max_txid(upper), |f| f.id.max_txid);
            (own, from)
        }
    };
    if !dst.is_empty() && from > reach {
        (run, from) = (Vec::new(), reach);
    }
    let new = chain(src, from);
    if new.is_empty() {
        return Vec::new();
    }
    run.extend(new);
    run
}

/// The files of `listing` that a pass merges into one new file of `level` (`top` the
/// ladder's highest), as [`to_compact`] chooses them: the level below, the level, and
/// the level above unless `level` is the top or the level above is still empty.
pub(super) fn inputs(listing: &Listing, level: u8, top: u8) -> Vec<ListedFile> {
    let files = |l: u8| listing.get(&l).map_or(&[][..], Vec::as_slice);
    let upper = Some(files(level + 1)).filter(|f| level < top && !f.is_empty());
    to_compact(files(level - 1), files(level), upper)
}

/// Whether a snapshot of the state at `current` is due: the newest snapshot is older than
/// `interval` (or, with none, the writer has run that long) and behind `current`.
pub(super) fn snapshot_due(
    snapshots: &[ListedFile],
    current: Txid,
    now: SystemTime,
    started: SystemTime,
    interval: Duration,
) -> bool {
    let age = |t: SystemTime| now.duration_since(t).unwrap_or_default();
    match snapshots.iter().max_by_key(|f| f.id.max_txid) {
        Some(newest) => newest.id.max_txid < current && age(newest.last_modified) >= interval,
        None => current > Txid::ZERO && age(started) >= interval,
    }
}

/// What retention removes, given the listing of every level (`top` the ladder's highest):
/// - snapshots older than `retention`, the newest always kept;
/// - files of levels 1..=top wholly below the oldest snapshot kept (they only serve states
///   before it), and, below the top, already merged into the next level; the newest file of
///   each level stays;
/// - level-0 files a level-1 file holds whole (or a kept snapshot is past), once older
///   than `l0_retention`; the newest stays.
pub(super) fn to_delete(
    listing: &Listing,
    top: u8,
    now: SystemTime,
    l0_retention: Duration,
    retention: Duration,
) -> Vec<LtxFileId> {
    let age = |f: &ListedFile| now.duration_since(f.last_modified).unwrap_or_default();
    let level = |l: u8| listing.get(&l).map_or(&[][..], Vec::as_slice);
    let mut gone = Vec::new();
    let snapshots = level(SNAPSHOT_LEVEL);
    let newest = snapshots.iter().map(|f| f.id.max_txid).max();
    let (old, kept): (Vec<&ListedFile>, Vec<&ListedFile>) = snapshots
        .iter()
        .partition(|f| Some(f.id.max_txid) != newest && age(f) > retention);
    gone.extend(old.iter().map(|f| f.id));
    let floor = kept
        .iter()
        .map(|f| f.id.max_txid)
        .min()
        .unwrap_or(Txid::ZERO);
    for l in 1..=top {
        let files = level(l);
        let newest = max_txid(files);
        let merged_up = if l < top {
            max_txid(level(l + 1))
        } else {
            Txid(u64::MAX)
        };
        gone.extend(
            files
                .iter()
                .filter(|f| f.id.max_txid < newest)
                .filter(|f| f.id.max_txid <= floor && f.id.max_txid <= merged_up)
                .map(|f| f.id),
        );
    }
    // A file a wider one of its level covers (from the same start or before), once the
    // wider one has been there `l0_retention`: readers that planned on it have moved on.
    for l in 1..=top {
        let files = level(l);
        gone.extend(
            files
                .iter()
                .filter(|f| {
                    files.iter().any(|g| {
                        g.id.min_txid <= f.id.min_txid
                            && g.id.max_txid > f.id.max_txid
                            && age(g) > l0_retention
                    })
                })
                .filter(|f| !gone.contains(&f.id))
                .map(|f| f.id)
                .collect::<Vec<_>>(),
        );
    }
    // A level-0 file goes once a level-1 file that stays holds all of its TXIDs (not
    // merely one that ends past it, as Litestream's rule has it: a level 1 with a hole
    // must not take level 0's bridge with it), or, when level 1 ends past it, a kept
    // snapshot does (the level-1 files below a snapshot go, above).
    let covered = max_txid(level(1));
    let covers = |g: &ListedFile, f: &ListedFile| {
        g.id.min_txid <= f.id.min_txid && f.id.max_txid <= g.id.max_txid
    };
    let level1: Vec<&ListedFile> = (level(1).iter())
        .filter(|g| !gone.contains(&g.id))
        .collect();
    let files = level(0);
    let newest = max_txid(files);
    gone.extend(
        files
            .iter()
            .filter(|f| f.id.max_txid < newest)
            .filter(|f| f.id.max_txid <= covered)
            .filter(|f| f.id.max_txid <= floor || level1.iter().any(|g| covers(g, f)))
            .filter(|f| age(f) > l0_retention)
            .map(|f| f.id),
    );
    gone
}

/// Which interval a time falls in: a level is compacted at most once per interval, on
/// wall-clock boundaries as Litestream does (`now.Truncate(interval)`).
pub(super) fn boundary(now: SystemTime, interval: Duration) -> u128 {
    let ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    ms / interval.as_millis().max(1)
}

/// When interval number `boundary` (as [`boundary`] counts them) begins.
pub(super) fn boundary_time(boundary: u128, interval: Duration) -> SystemTime {
    let ms = boundary.saturating_mul(interval.as_millis().max(1));
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// The first moment after `now` at which [`to_delete`] finds something in `listing` (what
/// is left after this pass's removals), as files age past `l0_retention` and `retention`;
/// `None` if nothing there will ever be removed unless new files come.
pub(super) fn next_deletion(
    listing: &Listing,
    top: u8,
    now: SystemTime,
    l0_retention: Duration,
    retention: Duration,
) -> Option<SystemTime> {
    let mut ages: Vec<SystemTime> = listing
        .values()
        .flatten()
        .flat_map(|f| [f.last_modified + l0_retention, f.last_modified + retention])
        .map(|t| t + Duration::from_millis(1))
        .filter(|t| *t > now)
        .collect();
    ages.sort();
    ages.dedup();
    ages.into_iter()
        .find(|t| !to_delete(listing, top, *t, l0_retention, retention).is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(level: u8, min: u64, max: u64, secs_ago: u64) -> ListedFile {
        ListedFile {
            id: LtxFileId {
                level,
                min_txid: Txid(min),
                max_txid: Txid(max),
            },
            size: 100,
            last_modified: now() - Duration::from_secs(secs_ago),
        }
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
    }

    fn ids(files: &[ListedFile]) -> Vec<(u64, u64)> {
        files
            .iter()
            .map(|f| (f.id.min_txid.get(), f.id.max_txid.get()))
            .collect()
    }

    #[test]
    fn the_top_level_takes_the_run_past_itself() {
        let l0: Vec<_> = (1..=9).map(|t| file(0, t, t, 0)).collect();
        assert_eq!(ids(&to_compact(&l0, &[], None)).len(), 9);
        let l1 = [file(1, 1, 5, 0)];
        assert_eq!(
            ids(&to_compact(&l0, &l1, None)),
            [(6, 6), (7, 7), (8, 8), (9, 9)]
        );
        // A gap ends the run: the files after it wait.
        let gappy = [file(0, 6, 6, 0), file(0, 8, 8, 0)];
        assert_eq!(ids(&to_compact(&gappy, &l1, None)), [(6, 6)]);
        assert!(to_compact(&l0, &[file(1, 1, 9, 0)], None).is_empty());
    }

    #[test]
    fn a_lower_level_widens_its_file_from_where_the_level_above_ends() {
        let l0: Vec<_> = (1..=12).map(|t| file(0, t, t, 0)).collect();
        let l2 = [file(2, 1, 4, 0)];
        // Level 1 has 5-8 (and an older 5-6 it superseded): the new file is 5-12.
        let l1 = [file(1, 5, 6, 0), file(1, 5, 8, 0)];
        let run = to_compact(&l0, &l1, Some(&l2));
        assert_eq!(ids(&run), [(5, 8), (9, 9), (10, 10), (11, 11), (12, 12)]);
        // Nothing new below: nothing to do.
        assert!(to_compact(&l0, &[file(1, 5, 12, 0)], Some(&l2)).is_empty());
        // The level above is past level 1's files (a listing that saw another writer's
        // level 2 but not its level 1): level 1 goes on from its own end, no hole in it.
        let l2 = [file(2, 1, 10, 0)];
        assert_eq!(
            ids(&to_compact(&l0, &l1, Some(&l2))),
            [(9, 9), (10, 10), (11, 11), (12, 12)]
        );
        // An empty level 1 starts where the level above ends.
        assert_eq!(ids(&to_compact(&l0, &[], Some(&l2))), [(11, 11), (12, 12)]);
    }

    #[test]
    fn a_superseded_file_goes_once_its_successor_is_old_enough() {
        let mut listing = Listing::new();
        listing.insert(
            1,
            vec![file(1, 5, 6, 900), file(1, 5, 8, 400), file(1, 5, 9, 10)],
        );
        let gone = to_delete(
            &listing,
            2,
            now(),
            Duration::from_secs(300),
            Duration::from_secs(86_400),
        );
        // 5-6 is covered by 5-8, there for 400 s; 5-8 by 5-9, there for 10 s only.
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].max_txid, Txid(6));
    }

    #[test]
    fn retention_keeps_the_newest_and_what_is_not_merged_up() {
        let mut listing = Listing::new();
        listing.insert(0, (1..=10).map(|t| file(0, t, t, 400 - t)).collect());
        listing.insert(1, vec![file(1, 1, 4, 300), file(1, 5, 8, 200)]);
        listing.insert(2, vec![file(2, 1, 4, 300)]);
        listing.insert(
            SNAPSHOT_LEVEL,
            vec![file(9, 1, 3, 90_000), file(9, 1, 8, 100)],
        );
        let gone = to_delete(
            &listing,
            2,
            now(),
            Duration::from_secs(300),
            Duration::from_secs(86_400),
        );
        let gone: Vec<_> = gone
            .iter()
            .map(|f| (f.level, f.min_txid.get(), f.max_txid.get()))
            .collect();
        // The old snapshot; level 1's 1-4 (below the kept snapshot, merged into level 2);
        // level-0 files 1..=8 covered by level 1 and older than 5 min (1..=8 are 392..399
        // s old... all older), never the newest; level 2 keeps its only file.
        assert!(gone.contains(&(9, 1, 3)));
        assert!(gone.contains(&(1, 1, 4)));
        assert!(!gone.contains(&(1, 5, 8)), "newest of its level");
        assert!(!gone.iter().any(|g| g.0 == 2));
        let l0: Vec<_> = gone.iter().filter(|g| g.0 == 0).map(|g| g.1).collect();
        assert_eq!(l0, (1..=8).collect::<Vec<_>>());
    }

    #[test]
    fn level0_files_stay_until_a_level1_file_holds_them_whole() {
        let mut listing = Listing::new();
        listing.insert(0, (1..=10).map(|t| file(0, t, t, 600)).collect());
        // A level 1 with a hole (5-7), as another tool may leave it: level 0 bridges it.
        listing.insert(1, vec![file(1, 1, 4, 500), file(1, 8, 9, 500)]);
        let gone = to_delete(
            &listing,
            2,
            now(),
            Duration::from_secs(300),
            Duration::from_secs(86_400),
        );
        let l0: Vec<u64> = (gone.iter())
            .filter(|f| f.level == 0)
            .map(|f| f.max_txid.get())
            .collect();
        assert_eq!(l0, [1, 2, 3, 4, 8, 9]);
        // A kept snapshot past them lets them go.
        listing.insert(SNAPSHOT_LEVEL, vec![file(9, 1, 7, 500)]);
        let gone = to_delete(
            &listing,
            2,
            now(),
            Duration::from_secs(300),
            Duration::from_secs(86_400),
        );
        assert_eq!(gone.iter().filter(|f| f.level == 0).count(), 9);
    }

    #[test]
    fn young_level0_files_and_snapshots_stay() {
        let mut listing = Listing::new();
        listing.insert(0, (1..=4).map(|t| file(0, t, t, 10)).collect());
        listing.insert(1, vec![file(1, 1, 4, 5)]);
        listing.insert(SNAPSHOT_LEVEL, vec![file(9, 1, 2, 50), file(9, 1, 4, 5)]);
        let gone = to_delete(
            &listing,
            1,
            now(),
            Duration::from_secs(300),
            Duration::from_secs(3600),
        );
        assert!(gone.is_empty(), "{gone:?}");
    }

    #[test]
    fn a_snapshot_is_due_after_its_interval_when_behind() {
        let day = Duration::from_secs(86_400);
        let started = now() - Duration::from_secs(10);
        assert!(!snapshot_due(&[], Txid(5), now(), started, day));
        assert!(snapshot_due(&[], Txid(5), now(), now() - day, day));
        let old = [file(9, 1, 4, 90_000)];
        assert!(snapshot_due(&old, Txid(5), now(), started, day));
        assert!(!snapshot_due(&old, Txid(4), now(), started, day));
        assert!(!snapshot_due(
            &[file(9, 1, 4, 60)],
            Txid(5),
            now(),
            started,
            day
        ));
    }

    #[test]
    fn retention_sleeps_until_the_first_file_it_will_remove_is_old_enough() {
        let (l0_retention, retention) = (Duration::from_secs(300), Duration::from_secs(86_400));
        let mut listing = Listing::new();
        // Level 1 covers 1-3: its level-0 files go once `l0_retention` old, 180 s from now
        // (the newest of level 0 stays).
        listing.insert(0, (1..=3).map(|t| file(0, t, t, 120)).collect());
        listing.insert(1, vec![file(1, 1, 3, 100)]);
        let next = next_deletion(&listing, 1, now(), l0_retention, retention).unwrap();
        let wait = next.duration_since(now()).unwrap();
        assert!(
            wait > Duration::from_secs(180) && wait < Duration::from_secs(181),
            "{wait:?}"
        );
        assert!(to_delete(&listing, 1, next, l0_retention, retention).len() == 2);
        // Once they have gone, nothing will ever go without new files: no deadline.
        listing.insert(0, vec![file(0, 3, 3, 120)]);
        assert_eq!(
            next_deletion(&listing, 1, next, l0_retention, retention),
            None
        );
    }
}
