//! The restore plan: the chain of files whose pages, applied in order, give the database at
//! a target TXID. The same choice Litestream's `CalcRestorePlan` makes, so that the replica
//! reads what `litestream restore` would produce:
//!
//! 1. the newest snapshot (level 9) at or before the target;
//! 2. then, repeatedly, among files of levels 0..=8 that continue the chain
//!    (`min ≤ cur + 1 < max + 1`), the one reaching furthest (largest max TXID; ties: smaller
//!    min, then higher level);
//! 3. with no target, any file left that starts past the chain's end is a gap: the replica's
//!    newest state cannot be reached.

use super::{LtxFileId, SNAPSHOT_LEVEL};
use crate::ltx::Txid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the replica holds no LTX files")]
    Empty,
    /// Files exist, but none starts a database: no snapshot, no file from TXID 1.
    #[error(
        "the replica has no state to start from: its earliest file, {first}, begins at TXID {}, and no snapshot or file begins at TXID 1",
        first.min_txid
    )]
    NoStart { first: LtxFileId },
    #[error("no LTX file reaches TXID {target}: the earliest state available is later")]
    TargetUnavailable { target: Txid },
    #[error("nothing that was replicated by {time} is still in the replica")]
    NothingBefore { time: String },
    #[error(
        "the replica has a gap: its files reach TXID {reached}, but the next one ({next}) starts later"
    )]
    Gap { reached: Txid, next: LtxFileId },
}

/// Plans a restore to `target` (`None`: the newest state) from the files of a replica, in
/// any order. Returns the files to apply, oldest first.
///
/// # Errors
/// [`PlanError`] when no file exists, the target predates every chain, or (with no target)
/// the newest files cannot be reached.
pub fn restore_plan(
    files: &[LtxFileId],
    target: Option<Txid>,
) -> Result<Vec<LtxFileId>, PlanError> {
    plan(files, target, target.is_none())
}

fn plan(
    files: &[LtxFileId],
    target: Option<Txid>,
    check_gaps: bool,
) -> Result<Vec<LtxFileId>, PlanError> {
    if files.is_empty() {
        return Err(PlanError::Empty);
    }
    let within = |f: &LtxFileId| target.is_none_or(|t| f.max_txid <= t);
    let mut plan: Vec<LtxFileId> = files
        .iter()
        .filter(|f| f.level == SNAPSHOT_LEVEL && within(f))
        .max_by_key(|f| f.max_txid)
        .into_iter()
        .copied()
        .collect();
    let cur = plan.last().map_or(Txid::ZERO, |s| s.max_txid);

    plan.extend(extend_chain(files, cur, target));
    let cur = plan.last().map_or(Txid::ZERO, |f| f.max_txid);

    if plan.is_empty() {
        let first = files.iter().min_by_key(|f| (f.min_txid, f.max_txid));
        return Err(match (target, first) {
            (Some(target), _) => PlanError::TargetUnavailable { target },
            (None, Some(first)) => PlanError::NoStart { first: *first },
            (None, None) => PlanError::Empty,
        });
    }
    if check_gaps
        && let Some(next) = files
            .iter()
            .filter(|f| f.level < SNAPSHOT_LEVEL && f.min_txid > cur.next())
            .min_by_key(|f| f.min_txid)
    {
        return Err(PlanError::Gap {
            reached: cur,
            next: *next,
        });
    }
    Ok(plan)
}

/// The files of levels 0..=8 that carry the database on from TXID `from`, in order: each
/// starts at or before the end of the one before (`min ≤ cur + 1`) and reaches past it
/// (`max > cur`), the furthest-reaching first (ties: smaller min, then higher level), none
/// past `target`. Files that straddle `from` are accepted. The follower uses this with the
/// files it has just listed.
pub fn extend_chain(files: &[LtxFileId], from: Txid, target: Option<Txid>) -> Vec<LtxFileId> {
    let within = |f: &LtxFileId| target.is_none_or(|t| f.max_txid <= t);
    let better = |a: &LtxFileId, b: &LtxFileId| {
        (b.max_txid, std::cmp::Reverse(b.min_txid), b.level)
            > (a.max_txid, std::cmp::Reverse(a.min_txid), a.level)
    };
    let mut chain = Vec::new();
    let mut cur = from;
    while target.is_none_or(|t| cur < t) {
        let next = files
            .iter()
            .filter(|f| f.level < SNAPSHOT_LEVEL && within(f))
            .filter(|f| f.min_txid <= cur.next() && f.max_txid > cur)
            .fold(None::<&LtxFileId>, |best, f| match best {
                Some(b) if !better(b, f) => Some(b),
                _ => Some(f),
            });
        let Some(next) = next else { break };
        chain.push(*next);
        cur = next.max_txid;
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::replica::test_id as f;

    #[test]
    fn snapshot_then_longest_reach_across_levels() {
        let files = [
            f(9, 1, 1),
            f(0, 1, 1),
            f(0, 2, 2),
            f(0, 3, 3),
            f(0, 4, 4),
            f(1, 2, 3),
            f(2, 1, 3),
            f(0, 5, 5),
        ];
        assert_eq!(
            restore_plan(&files, None).unwrap(),
            vec![f(9, 1, 1), f(2, 1, 3), f(0, 4, 4), f(0, 5, 5)]
        );
    }

    #[test]
    fn straddling_file_is_accepted() {
        // L0 up to 4 pruned; an L1 file 3..6 straddles the chain's end at 4.
        let files = [f(9, 1, 4), f(1, 3, 6), f(0, 7, 7)];
        assert_eq!(
            restore_plan(&files, None).unwrap(),
            vec![f(9, 1, 4), f(1, 3, 6), f(0, 7, 7)]
        );
    }

    #[test]
    fn target_stops_at_or_before_it() {
        let files = [f(9, 1, 1), f(0, 2, 2), f(0, 3, 3), f(1, 2, 3), f(0, 4, 4)];
        assert_eq!(
            restore_plan(&files, Some(Txid(2))).unwrap(),
            vec![f(9, 1, 1), f(0, 2, 2)]
        );
        assert_eq!(
            restore_plan(&files, Some(Txid(3))).unwrap(),
            vec![f(9, 1, 1), f(1, 2, 3)]
        );
        assert_eq!(
            restore_plan(&[f(9, 1, 5)], Some(Txid(3))),
            Err(PlanError::TargetUnavailable { target: Txid(3) })
        );
    }

    #[test]
    fn gap_is_reported_without_target() {
        let files = [f(9, 1, 1), f(0, 2, 2), f(0, 5, 5)];
        assert_eq!(
            restore_plan(&files, None),
            Err(PlanError::Gap {
                reached: Txid(2),
                next: f(0, 5, 5)
            })
        );
        assert_eq!(restore_plan(&[], None), Err(PlanError::Empty));
    }

    #[test]
    fn chain_bridges_a_pruned_l0_gap_with_a_straddling_l1_file() {
        // At TXID 4; L0 5 and 6 were pruned; L1 3..7 straddles 4; L0 8 continues.
        let files = [f(0, 8, 8), f(1, 3, 7), f(1, 1, 2)];
        assert_eq!(
            extend_chain(&files, Txid(4), None),
            vec![f(1, 3, 7), f(0, 8, 8)]
        );
        // An older L1 file that arrives late never replaces newer pages.
        assert_eq!(extend_chain(&[f(1, 2, 3)], Txid(4), None), vec![]);
        assert_eq!(extend_chain(&[f(0, 9, 9)], Txid(4), None), vec![], "gap");
    }

    #[test]
    fn no_snapshot_starts_from_txid_one() {
        let files = [f(1, 1, 3), f(0, 4, 4)];
        assert_eq!(restore_plan(&files, None).unwrap(), files.to_vec());
    }
}
