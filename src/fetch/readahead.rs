//! Fetching in ranges (DESIGN.md decision 7): a miss brings along the following pages whose
//! frames lie right after its own in the same LTX file, in the same ranged GET. Round trips
//! are what an object store charges for; bytes next to the ones asked for are nearly free.
//!
//! The window starts at [`BASE_WINDOW`] and doubles, up to [`MAX_WINDOW`], while misses walk
//! forward through the page numbers (a scan); a miss elsewhere brings it back to the start.

use crate::ltx::Pgno;
use crate::replica::{PageRef, Snapshot};
use std::sync::Mutex;

pub(crate) const BASE_WINDOW: u64 = 64 << 10;
pub(crate) const MAX_WINDOW: u64 = 4 << 20;
/// A miss at most this many pages after the previous one counts as a forward walk.
const FORWARD_STEP: u32 = 32;

/// The readahead window of one replica.
#[derive(Debug)]
pub(crate) struct Readahead {
    state: Mutex<(Option<Pgno>, u64)>,
}

impl Default for Readahead {
    fn default() -> Self {
        Readahead {
            state: Mutex::new((None, BASE_WINDOW)),
        }
    }
}

impl Readahead {
    /// The window for a miss of `pgno`, updating the walk.
    pub(crate) fn window(&self, pgno: Pgno) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, window) = *state;
        let forward = last.is_some_and(|l| pgno > l && pgno.get() - l.get() <= FORWARD_STEP);
        let next = if forward {
            (window * 2).min(MAX_WINDOW)
        } else {
            BASE_WINDOW
        };
        *state = (Some(pgno), next);
        next
    }
}

/// The frames one GET should bring for a miss of `pgno` at `at`: that frame, then each next
/// page's as long as the snapshot takes it from the same file, it starts where the last one
/// ended, it is not cached already, and the range stays within `window` bytes.
pub(crate) fn frames_to_fetch(
    snapshot: &Snapshot,
    pgno: Pgno,
    at: PageRef,
    window: u64,
    cached: impl Fn(Pgno, &PageRef) -> bool,
) -> Vec<(Pgno, PageRef)> {
    let mut frames = vec![(pgno, at)];
    let mut end = at.offset + at.size;
    let mut next = pgno.get();
    while end - at.offset < window && next < snapshot.commit {
        next += 1;
        let Some(q) = Pgno::new(next) else { break };
        match snapshot.page(q) {
            Some(r) if r.file == at.file && r.offset == end && !cached(q, &r) => {
                end = r.offset + r.size;
                frames.push((q, r));
            }
            _ => break,
        }
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_grows_on_a_forward_walk_and_resets_on_a_jump() {
        let r = Readahead::default();
        let p = |n| Pgno::new(n).unwrap();
        assert_eq!(r.window(p(10)), BASE_WINDOW);
        assert_eq!(r.window(p(20)), BASE_WINDOW * 2);
        assert_eq!(r.window(p(40)), BASE_WINDOW * 4);
        assert_eq!(r.window(p(5)), BASE_WINDOW);
        for n in 0..20 {
            r.window(p(100 + n * 10));
        }
        assert_eq!(r.window(p(300)), MAX_WINDOW, "the walk goes on at 290 + 10");
        assert_eq!(r.window(p(400)), BASE_WINDOW, "a jump of 100 pages");
    }
}
