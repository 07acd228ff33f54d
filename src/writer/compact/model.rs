//! The ladder's decisions ([`ladder::inputs`], [`ladder::to_delete`]) driven against an
//! in-memory store, pass after pass with no time between them, in random orders: commits,
//! passes of any levels (alone or together, as one pass of [`super::Compactor`] takes
//! them), snapshots, retention at any age, and listings that another writer's files
//! overtook between two levels. After every step the store keeps what a restore and
//! Litestream's readers need: each level of the ladder has no hole from its first file, a
//! new file never starts past its level's end + 1, every level-0 file retention removes is
//! held whole by a level-1 file that stays (or a kept snapshot is past it), and the newest
//! state restores.

use super::ladder::{self, Listing};
use crate::ltx::Txid;
use crate::replica::{LtxFileId, SNAPSHOT_LEVEL};
use crate::store::ListedFile;
use std::time::{Duration, SystemTime};

const L0_RETENTION: Duration = Duration::from_secs(10);
const RETENTION: Duration = Duration::from_secs(40);

/// xorshift64: a fixed sequence per seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

struct Model {
    top: u8,
    store: Listing,
    now: SystemTime,
    txid: u64,
    /// The store as it was a few steps ago: what a listing started then saw of the levels
    /// it had listed before another writer's files landed.
    old: Listing,
}

fn files(listing: &Listing, level: u8) -> &[ListedFile] {
    listing.get(&level).map_or(&[][..], Vec::as_slice)
}

impl Model {
    fn file(&self, level: u8, min: u64, max: u64) -> ListedFile {
        ListedFile {
            id: LtxFileId {
                level,
                min_txid: Txid(min),
                max_txid: Txid(max),
            },
            size: 1,
            last_modified: self.now,
        }
    }

    fn add(&mut self, f: ListedFile) {
        let level = self.store.entry(f.id.level).or_default();
        if !level.iter().any(|g| g.id == f.id) {
            level.push(f);
            level.sort_by_key(|g| (g.id.min_txid, g.id.max_txid));
        }
    }

    /// What a pass lists of `levels`, in ascending order as [`super::Compactor`] lists
    /// them: with `stale`, the first levels as they were at `old`, the rest as now.
    fn listing(&self, levels: &[u8], stale: Option<usize>) -> Listing {
        (levels.iter().enumerate())
            .map(|(i, &l)| {
                let from = match stale {
                    Some(cut) if i < cut => &self.old,
                    _ => &self.store,
                };
                (l, files(from, l).to_vec())
            })
            .collect()
    }

    /// One pass of the levels `due` (ascending), as `Compactor::pass` runs them.
    fn pass(&mut self, due: &[u8], stale: Option<usize>) {
        let mut levels: Vec<u8> = due
            .iter()
            .flat_map(|&l| [l - 1, l, (l + 1).min(self.top)])
            .collect();
        levels.sort();
        levels.dedup();
        let mut view = self.listing(&levels, stale);
        for &level in due {
            let inputs = ladder::inputs(&view, level, self.top);
            let (Some(first), Some(last)) = (inputs.first(), inputs.last()) else {
                continue;
            };
            // An input retention removed since the listing: the pass fails, and retries.
            if !(inputs.iter()).all(|f| files(&self.store, f.id.level).iter().any(|g| g.id == f.id))
            {
                return;
            }
            let made = self.file(level, first.id.min_txid.get(), last.id.max_txid.get());
            let reach = ladder::max_txid(files(&self.store, level));
            assert!(
                reach == Txid::ZERO || made.id.min_txid <= reach.next(),
                "{} made past its level's end {reach}: {:?}",
                made.id,
                self.store
            );
            self.add(made);
            view.entry(level).or_default().push(made);
        }
    }

    fn retention(&mut self, stale: Option<usize>) {
        let levels: Vec<u8> = (0..=self.top).chain([SNAPSHOT_LEVEL]).collect();
        let view = self.listing(&levels, stale);
        let gone = ladder::to_delete(&view, self.top, self.now, L0_RETENTION, RETENTION);
        let stays = |g: &ListedFile| !gone.contains(&g.id);
        for f in files(&self.store, 0)
            .iter()
            .filter(|f| gone.contains(&f.id))
        {
            let held = (files(&self.store, 1).iter())
                .filter(|g| stays(g))
                .any(|g| g.id.min_txid <= f.id.min_txid && f.id.max_txid <= g.id.max_txid);
            let snapshot = (files(&self.store, SNAPSHOT_LEVEL).iter())
                .filter(|g| stays(g))
                .any(|g| f.id.max_txid <= g.id.max_txid);
            assert!(
                held || snapshot,
                "{} removed, no level-1 file holds it",
                f.id
            );
        }
        for level in self.store.values_mut() {
            level.retain(|f| !gone.contains(&f.id));
        }
    }

    /// What must hold of the store between passes, whatever came before.
    fn check(&self) {
        for level in 1..=self.top {
            let mut reach: Option<Txid> = None;
            for f in files(&self.store, level) {
                if let Some(r) = reach {
                    assert!(
                        f.id.min_txid <= r.next(),
                        "a hole in level {level} before {}: {:?}",
                        f.id,
                        files(&self.store, level)
                    );
                }
                reach = Some(reach.map_or(f.id.max_txid, |r| r.max(f.id.max_txid)));
            }
        }
        // The newest state restores: a chain of files from TXID 1 (or a snapshot) to it,
        // as a restore plans one.
        let all: Vec<&ListedFile> = self.store.values().flatten().collect();
        let mut at = Txid::ZERO;
        while let Some(next) = (all.iter())
            .filter(|f| f.id.min_txid <= at.next() && f.id.max_txid > at)
            .map(|f| f.id.max_txid)
            .max()
        {
            at = next;
        }
        assert_eq!(at, Txid(self.txid), "the newest state does not restore");
    }
}

fn run(seed: u64, top: u8, steps: usize) {
    let mut rng = Rng(seed);
    let mut m = Model {
        top,
        store: Listing::new(),
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
        txid: 0,
        old: Listing::new(),
    };
    for step in 0..steps {
        if step % 7 == 0 {
            m.old = m.store.clone();
        }
        let stale = (rng.below(4) == 0).then(|| rng.below(4) as usize);
        match rng.below(10) {
            0..=4 => {
                for _ in 0..=rng.below(3) {
                    m.txid += 1;
                    let f = m.file(0, m.txid, m.txid);
                    m.add(f);
                }
            }
            5..=7 => {
                let due: Vec<u8> = (1..=top).filter(|_| rng.below(2) == 0).collect();
                m.pass(&due, stale);
            }
            8 => m.retention(stale),
            _ if m.txid > 0 && rng.below(4) == 0 => {
                let f = m.file(SNAPSHOT_LEVEL, 1, m.txid);
                m.add(f);
            }
            _ => {}
        }
        m.now += Duration::from_millis(rng.below(3_000));
        m.check();
    }
}

#[test]
fn passes_back_to_back_keep_every_level_whole() {
    for seed in 1..=200 {
        for top in 1..=3 {
            run(seed * 7919 + u64::from(top), top, 400);
        }
    }
}
