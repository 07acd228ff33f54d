//! Warm-up (`warm=`): a database small next to the memory cache is fetched whole in the
//! background after the open, in large ranges, so that its reads soon never leave memory.
//!
//! It yields to SQLite's own misses: it has at most [`WARM_PARALLEL`] GETs in flight and
//! claims a range's pages only while that range is in flight, so a reader waits for a
//! warm-up GET only when the page it wants is in the one under way (no longer than its own
//! GET would take), and fetches any other page itself at once.

use super::{Fetcher, keep_span, spans_of};
use crate::cache::PageKey;
use crate::io;
use crate::ltx::Pgno;
use crate::replica::Snapshot;
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The longest warm-up range (compressed bytes): large, as warm-up wants bandwidth, but
/// short enough that a reader caught waiting on one waits little.
const WARM_RANGE: u64 = 2 << 20;
/// Warm-up GETs in flight at once.
const WARM_PARALLEL: usize = 4;

impl Fetcher {
    /// Starts fetching every page of `snapshot` that neither cache holds, in the
    /// background; `ltx_stats` counts its progress (`warm_*`). It stops early once `alive`
    /// can no longer be upgraded (the replica closed). Failures are dropped: a reader that
    /// needs a page fetches it itself, and reports what goes wrong.
    pub(crate) fn warm(&self, snapshot: Arc<Snapshot>, alive: std::sync::Weak<()>) {
        let (store, cache, disk, inflight, stats) = (
            self.store.clone(),
            self.cache.clone(),
            self.disk.clone(),
            self.inflight.clone(),
            self.stats.clone(),
        );
        let timeout = self.timeout;
        stats.warm_done.store(false, Ordering::Relaxed);
        stats.warm_started.store(true, Ordering::Relaxed);
        let task = async move {
            let mut wanted = Vec::new();
            for pgno in (1..=snapshot.commit).filter_map(Pgno::new) {
                let Some(at) = snapshot.page(pgno) else {
                    continue;
                };
                let key = PageKey {
                    file: at.file,
                    pgno,
                };
                if cache.contains(&key) {
                    continue;
                }
                match disk.as_ref().and_then(|d| d.get(&key)) {
                    Some(page) => cache.insert(key, page),
                    None => wanted.push((pgno, at)),
                }
            }
            stats
                .warm_total
                .store(wanted.len() as u64, Ordering::Relaxed);
            wanted.sort_by_key(|(_, r)| (r.file, r.offset));
            let spans = spans_of(wanted, WARM_RANGE);
            let page_size = snapshot.page_size;
            let mut fetched = futures::stream::iter(spans)
                .map(|span| {
                    let (store, inflight, alive) = (store.clone(), inflight.clone(), alive.clone());
                    let cache = cache.clone();
                    async move {
                        alive.upgrade()?;
                        // Pages a reader brought meanwhile are not asked again.
                        let keys = span.frames.iter().map(|(q, r)| PageKey {
                            file: r.file,
                            pgno: *q,
                        });
                        let keys: Vec<PageKey> = keys.filter(|k| !cache.contains(k)).collect();
                        if keys.is_empty() {
                            return None;
                        }
                        let claim = inflight.claim(keys);
                        let got = tokio::time::timeout(
                            timeout,
                            store.get_range(&span.file, span.bytes.clone()),
                        )
                        .await;
                        Some((span, claim, got.ok()?.ok()?))
                    }
                })
                .buffer_unordered(WARM_PARALLEL);
            while let Some(done) = fetched.next().await {
                let Some((span, claim, bytes)) = done else {
                    continue;
                };
                let kept = keep_span(&span, &bytes, page_size, &cache, disk.as_deref());
                stats.warm_pages.fetch_add(kept, Ordering::Relaxed);
                drop(claim);
            }
            stats.warm_done.store(true, Ordering::Relaxed);
        };
        // Without a runtime there is no warm-up; reads go on without it.
        let _ = io::spawn(task);
    }
}
