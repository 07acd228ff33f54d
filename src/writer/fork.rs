//! A fork: a new replica whose state is a source replica's at one TXID, made of copies of
//! the LTX files of the source's restore plan for that TXID. The files are immutable, so
//! the copies are made by the store (on S3 a multipart upload of one part copied from the
//! source, completed only if the name is free; Azure's and GCS's conditional copy; a hard
//! link between `file://` directories) when source and target share a bucket, container or
//! filesystem, and streamed through this process in parts otherwise. A writer (`write=1`)
//! on the target then commits the next TXID onward; the source is only read.
//!
//! The target must hold no LTX files. A fork first claims the target by creating a marker
//! object ([`MARKER`]) at its root, only if none is there, and only then checks that the
//! target is empty: of two forks racing to one target, one claims it and the other is
//! refused, naming the target. Every file is then created only if its name is free.
//!
//! The files that start the database (those whose first TXID is 1: the snapshot, or a
//! compacted file from the start) are created after every other file of the plan, the one
//! reaching furthest first and alone ([`creation_order`]). A reader, `litestream restore` or
//! a writer plans from such a file; before it exists the target holds no file a plan starts
//! from, so a fork interrupted midway leaves a target that no reader takes for a database
//! (and that a later fork refuses: it holds LTX files, and the marker). Once it exists,
//! every later file of the plan exists too, so the target plans whole at the fork's TXID.

use crate::error::{Error, Result};
use crate::ltx::Txid;
use crate::replica::{LtxFileId, PlanError, SNAPSHOT_LEVEL, Target, restore_plan};
use crate::store::{ListedFile, Store, Taken};
use futures::{StreamExt, TryStreamExt};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// The object at a target's root that a fork in progress holds.
pub(crate) const MARKER: &str = "ltxvfs-fork-in-progress";

/// Copies in flight at once: a plan's dozen files or so in one wave.
const AT_ONCE: usize = 32;

/// How often a file vanishing from the source (compacted away under the fork) makes the
/// fork plan the same TXID again before giving up.
const REPLANS: u32 = 3;

/// Makes at `target_url` a replica whose state is `source_url`'s at `at`, and answers the
/// TXID of that state. `at` as a reader takes it: the newest state, the state at exactly a TXID (which
/// must be one the source's files reach on their boundaries), or the newest state written
/// by a time.
///
/// # Errors
/// [`Error::Config`] for a URL that cannot be used, or the same replica twice;
/// [`Error::Write`] naming the target if it holds LTX files or another fork holds it, or a
/// name to create is taken; [`Error::Plan`] naming the source if it has no state at `at`;
/// the stores' errors.
pub(crate) fn fork(
    source_url: &str,
    target_url: &str,
    at: Target,
    timeout: Duration,
) -> Result<Txid> {
    let source = Store::from_url(source_url, timeout)?;
    let target = Store::for_new_replica(target_url, timeout)?;
    if source.url() == target.url() {
        return Err(Error::Config(format!(
            "a fork needs a new replica: {} is the source",
            target.url()
        )));
    }
    let task_target = target.clone();
    // A request may take the store's timeout; a large file streamed, about 4 MiB/s.
    let budget = timeout * 40;
    crate::fetch::bridged(
        &target,
        "forking",
        async move { run(&source, &task_target, at).await },
        budget,
    )
}

async fn run(source: &Store, target: &Store, at: Target) -> Result<Txid> {
    let refused = |detail: String| Error::Write {
        url: target.url().to_owned(),
        detail,
    };
    let claim = format!("a fork of {} at {at:?}", source.url());
    if !target.create_marker(MARKER, &claim).await? {
        return Err(refused(format!(
            "another fork to this replica is under way, or one was interrupted (its marker \
             {MARKER} is there: remove the replica's files and it to fork here again)"
        )));
    }
    let forked = fork_claimed(source, target, at).await;
    // A target that holds files keeps no marker either: they refuse the next fork.
    let released = target.delete_marker(MARKER).await;
    let txid = forked?;
    released?;
    Ok(txid)
}

async fn fork_claimed(source: &Store, target: &Store, at: Target) -> Result<Txid> {
    let (held, planned) = futures::future::join(list_all(target), plan_at(source, at)).await;
    if let Some(held) = held?.into_iter().next() {
        return Err(Error::Write {
            url: target.url().to_owned(),
            detail: format!(
                "a fork needs a replica with no LTX files, and this one holds {} already",
                held.id
            ),
        });
    }
    let (txid, mut plan) = planned?;
    let mut created = HashSet::new();
    let mut replans = 0;
    loop {
        match copy_plan(source, target, &plan, &mut created).await {
            Err(Error::Vanished { .. }) if replans < REPLANS => {
                // Compacted away since it was listed: the same state, from the files now.
                replans += 1;
                plan = plan_at(source, Target::Txid(txid)).await?.1;
            }
            other => return other.map(|()| txid),
        }
    }
}

/// Every LTX file of a replica, all levels listed at once.
async fn list_all(store: &Store) -> Result<Vec<ListedFile>> {
    let levels = futures::future::try_join_all((0..=SNAPSHOT_LEVEL).map(|l| store.list_level(l)));
    Ok(levels.await?.into_iter().flatten().collect())
}

/// The source's restore plan for `at`, with each file's size, and the TXID it reaches.
async fn plan_at(source: &Store, at: Target) -> Result<(Txid, Vec<ListedFile>)> {
    let listed = list_all(source).await?;
    if listed.is_empty() {
        return Err(Error::ReplicaNotFound {
            url: source.url().to_owned(),
            detail: "no LTX files found (is litestream replicating to this URL?)".into(),
        });
    }
    let ids: Vec<LtxFileId> = listed.iter().map(|f| f.id).collect();
    let plan_error = |source_error| Error::Plan {
        url: source.url().to_owned(),
        source: source_error,
    };
    let plan = match at {
        Target::Latest => restore_plan(&ids, None).map_err(plan_error)?,
        Target::Txid(t) => {
            let plan = restore_plan(&ids, Some(t)).map_err(plan_error)?;
            let reached = plan.last().map_or(Txid::ZERO, |f| f.max_txid);
            if reached != t {
                return Err(not_on_a_boundary(source, &ids, t, reached));
            }
            plan
        }
        // By the transactions' own times (their LTX headers), as time travel does.
        Target::Time(t) => match crate::replica::newest_written_by(source, ids.iter(), t).await? {
            Some(txid) => restore_plan(&ids, Some(txid)).map_err(plan_error)?,
            None => {
                return Err(plan_error(PlanError::NothingBefore {
                    time: humantime::format_rfc3339_millis(t).to_string(),
                }));
            }
        },
    };
    let sizes: HashMap<LtxFileId, ListedFile> = listed.into_iter().map(|f| (f.id, f)).collect();
    let txid = plan.last().map_or(Txid::ZERO, |f| f.max_txid);
    let plan = plan
        .iter()
        .filter_map(|id| sizes.get(id).copied())
        .collect();
    Ok((txid, plan))
}

/// Why TXID `t` cannot be forked when the plan for it reaches only `reached`.
fn not_on_a_boundary(source: &Store, ids: &[LtxFileId], t: Txid, reached: Txid) -> Error {
    let newest = ids.iter().map(|f| f.max_txid).max().unwrap_or(Txid::ZERO);
    let detail = match ids
        .iter()
        .filter(|f| f.min_txid <= t && t < f.max_txid)
        .min_by_key(|f| f.max_txid)
    {
        _ if t > newest => format!("TXID {t} is past its newest, {newest}"),
        Some(inside) => format!(
            "the state at TXID {t} is no longer in it: that TXID is inside the compacted \
             file {inside}, whose earlier files are gone; the nearest states are TXIDs \
             {reached} and {}",
            inside.max_txid
        ),
        None => format!("its files do not reach TXID {t}; the nearest state before is {reached}"),
    };
    Error::Write {
        url: source.url().to_owned(),
        detail: format!("cannot fork: {detail}"),
    }
}

async fn copy_one(
    source: &Store,
    target: &Store,
    f: ListedFile,
) -> Result<(LtxFileId, std::result::Result<(), Taken>)> {
    let copied = target.copy_ltx_from(source, &f.id, f.size).await?;
    Ok((f.id, copied))
}

/// The order a fork creates `plan`'s files in, as batches, each created after the one
/// before: first the files that do not start the database (many at once), then the one
/// that starts it and reaches furthest, alone, then the other starting files. Whatever
/// part of these a fork leaves, a restore plan of the target has no first file until the
/// second batch is there, and from then on reaches the plan's end: the furthest-reaching
/// start is followed in the plan only by files of the first batch. (A snapshot that ends
/// before it, created first, would make the target plan to an older state.)
fn creation_order(plan: &[ListedFile]) -> [Vec<ListedFile>; 3] {
    let (mut starts, rest): (Vec<ListedFile>, Vec<ListedFile>) =
        plan.iter().partition(|f| f.id.min_txid <= Txid(1));
    starts.sort_by_key(|f| std::cmp::Reverse(f.id.max_txid));
    let others = starts.split_off(starts.len().min(1));
    [rest, starts, others]
}

/// Creates in `target` the files of `plan` not `created` already, in [`creation_order`].
async fn copy_plan(
    source: &Store,
    target: &Store,
    plan: &[ListedFile],
    created: &mut HashSet<LtxFileId>,
) -> Result<()> {
    let left: Vec<ListedFile> = (plan.iter())
        .filter(|f| !created.contains(&f.id))
        .copied()
        .collect();
    for batch in creation_order(&left) {
        let mut copies = futures::stream::iter(batch)
            .map(|f: ListedFile| copy_one(source, target, f))
            .buffer_unordered(AT_ONCE);
        while let Some((id, copied)) = copies.try_next().await? {
            match copied {
                Ok(()) => {
                    created.insert(id);
                }
                Err(Taken) => {
                    return Err(Error::Write {
                        url: target.url().to_owned(),
                        detail: format!(
                            "cannot fork: {id} was created here by someone else meanwhile"
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::replica::test_id as f;

    /// Every target a fork can leave, whatever order its copies finish in: with no file that
    /// starts the database, no plan; with one, the whole plan, at the fork's TXID.
    #[test]
    fn a_partial_fork_plans_whole_or_not_at_all() {
        let source = [
            f(9, 1, 5),
            f(2, 1, 10),
            f(1, 6, 12),
            f(1, 11, 20),
            f(0, 13, 13),
            f(0, 14, 14),
            f(0, 21, 21),
            f(0, 22, 22),
        ];
        for t in [5, 10, 12, 14, 20, 22] {
            let plan: Vec<ListedFile> = (restore_plan(&source, Some(Txid(t))).unwrap())
                .into_iter()
                .map(|id| ListedFile {
                    id,
                    size: 0,
                    last_modified: std::time::SystemTime::UNIX_EPOCH,
                })
                .collect();
            let [rest, first, others] = creation_order(&plan);
            assert_eq!(first.len(), 1);
            // Any part of the first batch: no plan.
            for mask in 0..(1u32 << rest.len()) {
                let some: Vec<LtxFileId> = (rest.iter().enumerate())
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, f)| f.id)
                    .collect();
                assert!(restore_plan(&some, None).is_err(), "{t}: {some:?}");
            }
            // The first batch, the furthest-reaching start, and any of the other starts.
            let made: Vec<LtxFileId> = rest.iter().chain(&first).map(|f| f.id).collect();
            for mask in 0..(1u32 << others.len()) {
                let mut whole = made.clone();
                whole.extend(
                    (others.iter().enumerate())
                        .filter(|(i, _)| mask & (1 << i) != 0)
                        .map(|(_, f)| f.id),
                );
                let got = restore_plan(&whole, None).unwrap();
                assert_eq!(got.last().map(|f| f.max_txid), Some(Txid(t)), "{whole:?}");
            }
        }
    }
}
