//! Page fetch (DESIGN.md decision 7): what a cache miss costs, in round trips.
//!
//! - A miss brings its neighbours in the same ranged GET, the window growing on a forward
//!   walk ([`readahead`]).
//! - A miss for a page another fetch is bringing waits for that fetch ([`inflight`]).
//! - A scan through an interior b-tree page's children (two misses on nearby children, left
//!   to right) fetches the rest of them at once in the background: ranges per LTX file that
//!   may step over frames not wanted (cheaper than another round trip), several GETs in
//!   parallel ([`btree`] finds the children).
//!
//! Knows nothing of SQLite's VFS; knows a b-tree page's header.

mod btree;
mod inflight;
mod readahead;
mod warm;

use crate::cache::{DiskCache, PageCache, PageKey};
use crate::error::{Error, Result};
use crate::io;
use crate::ltx::{self, Pgno};
use crate::replica::{LtxFileId, PageRef, ReplicaStats, Snapshot};
use crate::store::Store;
use futures::StreamExt;
use inflight::InFlight;
use readahead::Readahead;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bytes of unwanted frames a prefetch range may step over rather than start another GET.
const PREFETCH_GAP: u64 = 64 << 10;
/// The longest prefetch range, in (compressed) bytes.
const PREFETCH_RANGE: u64 = 1 << 20;
/// Prefetch GETs in flight at once, per scan.
const PREFETCH_PARALLEL: usize = 8;
/// Interior pages remembered for scan detection.
const INTERIORS: usize = 16;
/// A miss this many children after the previous one (same interior page) continues a scan.
const SCAN_STEP: usize = 3;

/// Fetching for one replica: its store, its cache, the fetches under way.
#[derive(Debug)]
pub(crate) struct Fetcher {
    store: Store,
    cache: Arc<PageCache>,
    disk: Option<Arc<DiskCache>>,
    inflight: Arc<InFlight>,
    readahead: Readahead,
    scan: Mutex<ScanState>,
    stats: Arc<ReplicaStats>,
    cache_size: u64,
    timeout: Duration,
}

/// Recent interior pages and where the last miss fell among their children.
#[derive(Debug, Default)]
struct ScanState {
    /// (interior page, its children, whether they were prefetched), newest last.
    interiors: VecDeque<(Pgno, Vec<Pgno>, bool)>,
    /// The last miss that was a remembered interior page's child: (interior, position).
    last: Option<(Pgno, usize)>,
}

/// One prefetch GET: a byte range of a file and the frames wanted in it.
#[derive(Debug)]
struct Span {
    file: LtxFileId,
    bytes: Range<u64>,
    frames: Vec<(Pgno, PageRef)>,
}

impl Fetcher {
    pub(crate) fn new(
        store: Store,
        cache: Arc<PageCache>,
        disk: Option<Arc<DiskCache>>,
        stats: Arc<ReplicaStats>,
        cache_size: u64,
        timeout: Duration,
    ) -> Fetcher {
        Fetcher {
            store,
            cache,
            disk,
            inflight: Arc::default(),
            readahead: Readahead::default(),
            scan: Mutex::default(),
            stats,
            cache_size,
            timeout,
        }
    }

    pub(crate) fn disk(&self) -> Option<&DiskCache> {
        self.disk.as_deref()
    }

    pub(crate) fn disk_arc(&self) -> Option<Arc<DiskCache>> {
        self.disk.clone()
    }

    fn corrupt(&self, file: LtxFileId, source: ltx::Error) -> Error {
        Error::Corrupt {
            url: self.store.url().to_owned(),
            file,
            source,
        }
    }

    /// Page `pgno` of `snapshot`, not in the cache: waits for a fetch under way that
    /// brings it, or fetches it with its neighbours in one ranged GET.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if its frame does not decode to it; [`Error::Io`] or
    /// [`Error::Vanished`] from the store.
    pub(crate) fn miss(&self, snapshot: &Snapshot, pgno: Pgno, at: PageRef) -> Result<Arc<[u8]>> {
        let key = PageKey {
            file: at.file,
            pgno,
        };
        if let Some(page) = self.disk.as_ref().and_then(|d| d.get(&key)) {
            self.cache.insert(key, page.clone());
            self.observe(snapshot, pgno, &page, true);
            return Ok(page);
        }
        if self.inflight.contains(&key) {
            let inflight = self.inflight.clone();
            io::run(async move { inflight.wait(&key).await }, self.timeout).ok();
            if let Some(page) = self.cache.get(&key) {
                self.observe(snapshot, pgno, &page, true);
                return Ok(page);
            }
        }
        // A window is compressed bytes; an eighth of the cache keeps what one GET brings
        // (decompressed) from evicting the pages the scan has yet to use.
        let window = self.readahead.window(pgno).min(self.cache_size / 8);
        let frames = readahead::frames_to_fetch(snapshot, pgno, at, window, |q, r| {
            let k = PageKey {
                file: r.file,
                pgno: q,
            };
            self.cache.contains(&k) || self.inflight.contains(&k)
        });
        let _claim = self.inflight.claim(frames.iter().map(|(q, r)| PageKey {
            file: r.file,
            pgno: *q,
        }));
        let end = frames
            .last()
            .map_or(at.offset + at.size, |(_, r)| r.offset + r.size);
        let store = self.store.clone();
        let bytes = bridged(
            &self.store,
            &format!("reading page {pgno} from {}", at.file),
            async move { store.get_range(&at.file, at.offset..end).await },
            self.timeout,
        )?;
        let mut wanted = None;
        for (q, r) in frames {
            match ltx::decode_page(frame_in(&bytes, at.offset, &r), q, snapshot.page_size) {
                Ok(page) => {
                    let page = keep(&self.cache, self.disk.as_deref(), q, &r, page);
                    if q == pgno {
                        wanted = Some(page);
                    } else {
                        self.stats.pages_read_ahead.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // A neighbour that does not decode is reported when it is itself read.
                Err(_) if q != pgno => break,
                Err(source) => return Err(self.corrupt(at.file, source)),
            }
        }
        let page = wanted.ok_or_else(|| {
            self.corrupt(at.file, ltx::Error::SnapshotIncomplete { missing: pgno })
        })?;
        self.observe(snapshot, pgno, &page, true);
        Ok(page)
    }

    /// Learns from a page read: an interior page's children are remembered; a miss that
    /// continues a walk through one interior page's children starts the prefetch of the
    /// rest of them.
    pub(crate) fn observe(&self, snapshot: &Snapshot, pgno: Pgno, page: &[u8], missed: bool) {
        let children = btree::interior_children(pgno, page);
        if children.is_none() && !missed {
            return;
        }
        let mut scan = self.scan.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(children) = children {
            scan.interiors.retain(|(p, _, _)| *p != pgno);
            if scan.interiors.len() == INTERIORS {
                scan.interiors.pop_front();
            }
            scan.interiors.push_back((pgno, children, false));
        }
        if !missed {
            return;
        }
        let found = scan
            .interiors
            .iter()
            .rev()
            .find_map(|(parent, children, _)| {
                children
                    .iter()
                    .position(|&c| c == pgno)
                    .map(|i| (*parent, i))
            });
        let previous = std::mem::replace(&mut scan.last, found);
        let Some((parent, i)) = found else { return };
        let continues = previous.is_some_and(|(p, j)| p == parent && j < i && i - j <= SCAN_STEP);
        if !continues {
            return;
        }
        let Some(entry) = scan.interiors.iter_mut().find(|(p, _, _)| *p == parent) else {
            return;
        };
        if entry.2 {
            return;
        }
        entry.2 = true;
        let budget = (self.cache_size / 4 / u64::from(snapshot.page_size.get())) as usize;
        let rest: Vec<Pgno> = entry.1.iter().skip(i + 1).take(budget).copied().collect();
        drop(scan);
        self.prefetch(snapshot, &rest);
    }

    /// Fetches `pages` of `snapshot` in the background: those neither cached nor under way,
    /// in ranges per file, [`PREFETCH_PARALLEL`] GETs at a time. Failures are dropped: a
    /// reader that needs a page fetches it itself and reports what goes wrong.
    fn prefetch(&self, snapshot: &Snapshot, pages: &[Pgno]) {
        let mut wanted: Vec<(Pgno, PageRef)> = pages
            .iter()
            .filter_map(|&q| Some((q, snapshot.page(q)?)))
            .filter(|(q, r)| {
                let k = PageKey {
                    file: r.file,
                    pgno: *q,
                };
                if self.cache.contains(&k) || self.inflight.contains(&k) {
                    return false;
                }
                // On disk: into memory now, no GET.
                match self.disk.as_ref().and_then(|d| d.get(&k)) {
                    Some(page) => {
                        self.cache.insert(k, page);
                        false
                    }
                    None => true,
                }
            })
            .collect();
        if wanted.is_empty() {
            return;
        }
        wanted.sort_by_key(|(_, r)| (r.file, r.offset));
        let spans = spans(wanted);
        // A claim per span: a reader waiting for one page waits for its span only.
        let claimed: Vec<_> = spans
            .into_iter()
            .map(|span| {
                let claim = self
                    .inflight
                    .claim(span.frames.iter().map(|(q, r)| PageKey {
                        file: r.file,
                        pgno: *q,
                    }));
                (span, claim)
            })
            .collect();
        let (store, cache, disk, stats) = (
            self.store.clone(),
            self.cache.clone(),
            self.disk.clone(),
            self.stats.clone(),
        );
        let page_size = snapshot.page_size;
        let timeout = self.timeout;
        let task = async move {
            let fetches = futures::stream::iter(claimed).map(|(span, claim)| {
                let store = store.clone();
                async move {
                    let bytes = store.get_range(&span.file, span.bytes.clone()).await.ok()?;
                    Some((span, claim, bytes))
                }
            });
            let mut done = fetches.buffer_unordered(PREFETCH_PARALLEL);
            let all = async {
                while let Some(fetched) = done.next().await {
                    let Some((span, claim, bytes)) = fetched else {
                        continue;
                    };
                    let kept = keep_span(&span, &bytes, page_size, &cache, disk.as_deref());
                    stats.pages_prefetched.fetch_add(kept, Ordering::Relaxed);
                    // Its pages are cached: whoever waits for them goes on.
                    drop(claim);
                }
            };
            // Spans not done by then are dropped, and their claims with them.
            let _ = tokio::time::timeout(timeout, all).await;
        };
        // Without a runtime there is no prefetch; reads go on without it.
        let _ = io::spawn(task);
    }
}

/// Frame `r` in `bytes`, a range of its file starting at byte `base` (empty if outside).
fn frame_in<'a>(bytes: &'a [u8], base: u64, r: &PageRef) -> &'a [u8] {
    let start = (r.offset - base) as usize;
    bytes
        .get(start..start + r.size as usize)
        .unwrap_or_default()
}

/// The frames of `span` in `bytes` (its range, fetched), decoded into the caches; how many.
/// A frame that does not decode is left for a reader to fetch, and report.
fn keep_span(
    span: &Span,
    bytes: &[u8],
    page_size: ltx::PageSize,
    cache: &PageCache,
    disk: Option<&DiskCache>,
) -> u64 {
    let mut kept = 0;
    for (q, r) in &span.frames {
        let frame = frame_in(bytes, span.bytes.start, r);
        if let Ok(page) = ltx::decode_page(frame, *q, page_size) {
            keep(cache, disk, *q, r, page);
            kept += 1;
        }
    }
    kept
}

/// A fetched page into the memory cache, and the disk cache if there is one.
fn keep(
    cache: &PageCache,
    disk: Option<&DiskCache>,
    pgno: Pgno,
    r: &PageRef,
    page: Vec<u8>,
) -> Arc<[u8]> {
    let key = PageKey { file: r.file, pgno };
    let page: Arc<[u8]> = page.into();
    if let Some(disk) = disk {
        disk.put(&key, &page);
    }
    cache.insert(key, page.clone());
    page
}

/// `wanted` frames (sorted by file and offset) grouped into GETs: one range per run of
/// frames in one file whose gaps are at most [`PREFETCH_GAP`], up to [`PREFETCH_RANGE`].
fn spans(wanted: Vec<(Pgno, PageRef)>) -> Vec<Span> {
    spans_of(wanted, PREFETCH_RANGE)
}

/// As [`spans`], with ranges up to `longest` bytes.
fn spans_of(wanted: Vec<(Pgno, PageRef)>, longest: u64) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    for (q, r) in wanted {
        let end = r.offset + r.size;
        match spans.last_mut() {
            Some(s)
                if s.file == r.file
                    && r.offset >= s.bytes.end
                    && r.offset - s.bytes.end <= PREFETCH_GAP
                    && end - s.bytes.start <= longest =>
            {
                s.bytes.end = end;
                s.frames.push((q, r));
            }
            _ => spans.push(Span {
                file: r.file,
                bytes: r.offset..end,
                frames: vec![(q, r)],
            }),
        }
    }
    spans
}

/// Runs a store task on the IO runtime, turning a timeout into an [`Error::Io`]. The store
/// gives up on its own within `timeout` (its retry budget); the wait here allows a margin so
/// that its error, which says more, arrives first.
pub(crate) fn bridged<T: Send + 'static>(
    store: &Store,
    what: &str,
    task: impl std::future::Future<Output = Result<T>> + Send + 'static,
    timeout: Duration,
) -> Result<T> {
    io::run(task, timeout + Duration::from_secs(2)).map_err(|e| Error::Io {
        url: store.url().to_owned(),
        what: what.to_owned(),
        detail: e.to_string(),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::Txid;

    fn at(file: u64, offset: u64, size: u64) -> PageRef {
        PageRef {
            file: LtxFileId {
                level: 0,
                min_txid: Txid(file),
                max_txid: Txid(file),
            },
            offset,
            size,
        }
    }

    #[test]
    fn spans_step_over_small_gaps_within_one_file_only() {
        let p = |n| Pgno::new(n).unwrap();
        let got = spans(vec![
            (p(2), at(1, 100, 50)),
            (p(5), at(1, 150, 50)),
            (p(9), at(1, 200 + PREFETCH_GAP, 50)),
            (p(10), at(1, 250 + 2 * PREFETCH_GAP + 1, 50)),
            (p(3), at(2, 100, 50)),
        ]);
        let ranges: Vec<_> = got
            .iter()
            .map(|s| (s.file.min_txid.0, s.bytes.clone(), s.frames.len()))
            .collect();
        assert_eq!(
            ranges,
            vec![
                (1, 100..250 + PREFETCH_GAP, 3),
                (1, 250 + 2 * PREFETCH_GAP + 1..300 + 2 * PREFETCH_GAP + 1, 1),
                (2, 100..150, 1),
            ]
        );
        let long: Vec<_> = (0..40)
            .map(|i| (p(i + 1), at(1, i as u64 * 40_000, 40_000)))
            .collect();
        assert!(
            spans(long)
                .iter()
                .all(|s| s.bytes.end - s.bytes.start <= PREFETCH_RANGE)
        );
    }
}
