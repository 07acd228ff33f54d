//! The storage layer: an `object_store` built from a replica URL, the key layout Litestream
//! uses on that backend, and request statistics. Knows nothing of SQLite or of LTX bytes.
//!
//! Layouts (checked against what `litestream` writes, in the tests):
//! - `file://`, `gs://`, `abs://`: `<root>/ltx/<level as decimal>/<min>-<max>.ltx`
//! - `s3://`: `<path>/<level as %04x>/<min>-<max>.ltx` (no `ltx/`, 4 hex digits)

mod backend;
mod copy;
mod http;
pub use copy::Taken;
mod lease;
pub(crate) mod location;
mod unique;

pub use lease::{LeaseVersion, LeaseWrite};

use crate::error::{Error, Result};
use crate::replica::LtxFileId;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The process's budget for the writer's background passes (compaction, snapshots,
/// retention) of every replica: this many at once, the rest wait their turn. A COMMIT's
/// request, a read's or a poll's never takes it, so none waits behind a thousand tenants'
/// background work; two passes at once keep the bridge's workers and the store's
/// connections mostly theirs.
pub(crate) static BACKGROUND: crate::io::Budget = crate::io::Budget::new(2);

/// The process's budget for `sync=<duration>` uploads of every replica at once: they carry
/// acknowledged commits, so they do not wait behind [`BACKGROUND`], but a thousand
/// replicas shipping at one moment take turns on a few threads.
pub(crate) static SHIPPING: crate::io::Budget = crate::io::Budget::new(4);

/// Where a backend keeps the files of each level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `<root>/ltx/<level>/`
    LtxDecimal,
    /// `<root>/<level as %04x>/`
    Hex4,
}

/// One LTX file as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedFile {
    pub id: LtxFileId,
    pub size: u64,
    pub last_modified: SystemTime,
}

/// Requests made and bytes received, for `PRAGMA ltx_stats`.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub list_requests: AtomicU64,
    pub get_requests: AtomicU64,
    pub bytes_fetched: AtomicU64,
    /// Reads and writes of the writers' lease object.
    pub lease_requests: AtomicU64,
}

/// A replica's location in an object store.
#[derive(Debug, Clone)]
pub struct Store {
    /// The object store and the process that built it; see [`Store::client`].
    inner: Arc<Mutex<(u32, Arc<dyn ObjectStore>)>>,
    location: location::Location,
    timeout: std::time::Duration,
    root: Path,
    layout: Layout,
    /// A missing level directory is an empty level (file://); on object stores a "not found"
    /// answer to a listing means the bucket or container is missing.
    missing_is_empty: bool,
    /// The URL as it may be printed: no credentials.
    url: String,
    stats: Arc<StoreStats>,
}

impl Store {
    /// Builds the store for a replica URL (see `location` for the forms accepted).
    ///
    /// # Errors
    /// [`Error::Config`] for a malformed URL or settings the store rejects;
    /// [`Error::ReplicaNotFound`] for a `file://` directory that does not exist.
    pub fn from_url(url: &str, timeout: std::time::Duration) -> Result<Store> {
        let (loc, shown) = location::parse(url)?;
        let inner = backend::build(&loc, &shown, timeout)?;
        let (root, layout) = match &loc {
            location::Location::File { .. } => (Path::default(), Layout::LtxDecimal),
            location::Location::S3 { prefix, .. } => (Path::from(prefix.as_str()), Layout::Hex4),
            location::Location::Gcs { prefix, .. } | location::Location::Azure { prefix, .. } => {
                (Path::from(prefix.as_str()), Layout::LtxDecimal)
            }
        };
        Ok(Store {
            inner: Arc::new(Mutex::new((std::process::id(), inner))),
            location: loc.clone(),
            timeout,
            root,
            layout,
            missing_is_empty: matches!(loc, location::Location::File { .. }),
            url: shown,
            stats: Arc::default(),
        })
    }

    /// The object store to use in this process. A client built before a `fork()` holds
    /// connections registered with the parent's runtime, which the child does not have: the
    /// child builds its own (DESIGN.md decision 6).
    fn client(&self) -> Result<Arc<dyn ObjectStore>> {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let pid = std::process::id();
        if guard.0 != pid {
            *guard = (
                pid,
                backend::build(&self.location, &self.url, self.timeout)?,
            );
        }
        Ok(guard.1.clone())
    }

    /// The URL, safe to print.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    fn level_dir(&self, level: u8) -> Path {
        match self.layout {
            Layout::LtxDecimal => self.root.clone().join("ltx").join(level.to_string()),
            Layout::Hex4 => self.root.clone().join(format!("{level:04x}")),
        }
    }

    fn file_path(&self, id: &LtxFileId) -> Path {
        self.level_dir(id.level).join(id.file_name())
    }

    /// The store's error as ours: not-found is [`Error::Vanished`] (plan again), the rest
    /// [`Error::Io`].
    fn io_error(&self, what: String, e: object_store::Error) -> Error {
        let (url, detail) = (self.url.clone(), summarize(&e));
        match e {
            object_store::Error::NotFound { .. } => Error::Vanished { url, what, detail },
            _ => Error::Io { url, what, detail },
        }
    }

    /// The LTX files of one level, in name order; other keys are skipped.
    ///
    /// # Errors
    /// [`Error::Io`] if the listing fails. A level with no files is empty.
    pub async fn list_level(&self, level: u8) -> Result<Vec<ListedFile>> {
        self.list_level_after(level, None).await
    }

    /// The LTX files of one level whose names sort after `after`'s (all if `None`), in name
    /// order: a listing that starts after that key (on S3 and GCS), so a poll pays only for
    /// what is new.
    ///
    /// # Errors
    /// As [`Store::list_level`].
    pub async fn list_level_after(
        &self,
        level: u8,
        after: Option<&LtxFileId>,
    ) -> Result<Vec<ListedFile>> {
        self.stats.list_requests.fetch_add(1, Ordering::Relaxed);
        let prefix = self.level_dir(level);
        let client = self.client()?;
        let listing = match after {
            Some(after) => client.list_with_offset(Some(&prefix), &self.file_path(after)),
            None => client.list(Some(&prefix)),
        };
        let metas: Vec<_> = match listing.try_collect().await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) if self.missing_is_empty => Vec::new(),
            Err(e) => return Err(self.io_error("listing LTX files".into(), e)),
        };
        let mut files = self.ltx_files(level, &prefix, metas);
        // Some servers list from the start whatever the offset (fake-gcs-server ignores
        // `start-after`), and object_store passes on what they send: keep the promise here.
        if let Some(after) = after {
            files.retain(|f| (f.id.min_txid, f.id.max_txid) > (after.min_txid, after.max_txid));
        }
        Ok(files)
    }

    /// The LTX files among listed objects: direct children of the level directory with
    /// Litestream's file names, in name order.
    fn ltx_files(
        &self,
        level: u8,
        prefix: &Path,
        metas: Vec<object_store::ObjectMeta>,
    ) -> Vec<ListedFile> {
        let mut files: Vec<ListedFile> = metas
            .into_iter()
            .filter_map(|m| {
                let name = m.location.prefix_match(prefix)?.collect::<Vec<_>>();
                let [name] = name.as_slice() else { return None };
                Some(ListedFile {
                    id: LtxFileId::parse(level, name.as_ref())?,
                    size: m.size,
                    last_modified: m.last_modified.into(),
                })
            })
            .collect();
        files.sort_by_key(|f| f.id);
        files
    }

    /// A whole LTX file, in one GET.
    ///
    /// # Errors
    /// As [`Store::get_range`].
    pub async fn get_all(&self, id: &LtxFileId) -> Result<bytes::Bytes> {
        self.stats.get_requests.fetch_add(1, Ordering::Relaxed);
        let client = self.client()?;
        let bytes = async { client.get(&self.file_path(id)).await?.bytes().await }
            .await
            .map_err(|e| self.io_error(format!("reading {id}"), e))?;
        self.stats
            .bytes_fetched
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }

    /// Creates a new LTX file, only if no object has its name (object_store's
    /// `PutMode::Create`: If-None-Match on S3 and Azure, a generation match on GCS, a
    /// no-clobber link on file://). `Ok(true)`: created; `Ok(false)`: the name was taken,
    /// possibly by an earlier attempt of this very call (a retry after a lost answer), which
    /// only reading the object back can tell.
    ///
    /// # Errors
    /// [`Error::Io`] for any other failure, after object_store's retries: the object may or
    /// may not exist.
    pub async fn create_ltx(&self, id: &LtxFileId, bytes: bytes::Bytes) -> Result<bool> {
        let client = self.client()?;
        let opts = object_store::PutOptions::from(object_store::PutMode::Create);
        match client
            .put_opts(&self.file_path(id), bytes.into(), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(Error::Io {
                url: self.url.clone(),
                what: format!("creating {id}"),
                detail: summarize(&e),
            }),
        }
    }

    /// Starts creating `id` from parts, for a file too large to hold whole (a snapshot):
    /// they go to a temporary name beside it (which listings skip), and
    /// [`LargeCreate::finish`] copies that to `id` only if the name is free.
    ///
    /// # Errors
    /// [`Error::Io`] if the upload cannot begin.
    pub async fn begin_large(&self, id: &LtxFileId) -> Result<LargeCreate> {
        let target = self.file_path(id);
        let temporary = Path::from(format!("{target}.part"));
        let upload = self
            .client()?
            .put_multipart(&temporary)
            .await
            .map_err(|e| self.io_error(format!("starting to upload {id}"), e))?;
        Ok(LargeCreate {
            store: self.clone(),
            id: *id,
            upload: object_store::WriteMultipart::new(upload),
            temporary,
            target,
            written: 0,
        })
    }

    /// Deletes LTX files (retention, by the writer): in batches where the store has them
    /// (S3's DeleteObjects, a thousand keys a request), else many at once. Files already
    /// gone are not an error.
    ///
    /// # Errors
    /// [`Error::Io`] for the first file the store refused or failed to delete.
    pub async fn delete_ltx_all(&self, ids: &[LtxFileId]) -> Result<()> {
        let paths: Vec<object_store::Result<Path>> =
            ids.iter().map(|id| Ok(self.file_path(id))).collect();
        let mut deleted = self
            .client()?
            .delete_stream(futures::stream::iter(paths).boxed());
        while let Some(outcome) = deleted.next().await {
            match outcome {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.io_error("deleting compacted files".into(), e)),
            }
        }
        Ok(())
    }

    /// Bytes `range` of an LTX file. A body shorter than asked (cut short with headers to
    /// match, by a proxy or a broken connection behind one) is asked for again, a few times:
    /// object_store retries failed requests, not short answers.
    ///
    /// # Errors
    /// [`Error::Vanished`] for a file that is gone, [`Error::Io`] for other failures.
    pub async fn get_range(&self, id: &LtxFileId, range: Range<u64>) -> Result<bytes::Bytes> {
        const ATTEMPTS: usize = 3;
        let what = || format!("reading {id} bytes {}..{}", range.start, range.end);
        let asked = range.end.saturating_sub(range.start);
        let mut got = 0;
        for _ in 0..ATTEMPTS {
            self.stats.get_requests.fetch_add(1, Ordering::Relaxed);
            let bytes = self
                .client()?
                .get_range(&self.file_path(id), range.clone())
                .await
                .map_err(|e| self.io_error(what(), e))?;
            self.stats
                .bytes_fetched
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            if bytes.len() as u64 == asked {
                return Ok(bytes);
            }
            got = bytes.len();
        }
        Err(Error::Io {
            url: self.url.clone(),
            what: what(),
            detail: format!("the store sent {got} of {asked} bytes, {ATTEMPTS} times"),
        })
    }
}

/// An LTX file being created from parts (see [`Store::begin_large`]).
pub struct LargeCreate {
    store: Store,
    id: LtxFileId,
    upload: object_store::WriteMultipart,
    temporary: Path,
    target: Path,
    written: u64,
}

impl std::fmt::Debug for LargeCreate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LargeCreate")
            .field("id", &self.id)
            .field("temporary", &self.temporary)
            .finish_non_exhaustive()
    }
}

impl LargeCreate {
    /// The parts in flight at once: an upload holds about this many parts of 5 MiB, and
    /// the one being filled.
    const IN_FLIGHT: usize = 1;

    /// Adds the next bytes of the file, waiting while too many parts are in flight.
    ///
    /// # Errors
    /// [`Error::Io`] if a part failed to upload.
    pub async fn write(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.written += bytes.len() as u64;
        self.upload.put(bytes.into());
        let id = self.id;
        self.upload
            .wait_for_capacity(Self::IN_FLIGHT)
            .await
            .map_err(|e| self.store.io_error(format!("uploading {id}"), e))
    }

    /// The bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Gives the upload up: the parts sent are dropped (best effort).
    pub async fn abort(self) {
        let _ = self.upload.abort().await;
        if let Ok(client) = self.store.client() {
            let _ = client.delete(&self.temporary).await;
        }
    }

    /// Completes the upload and gives the file its name if the name is free: `Ok(true)`
    /// created, `Ok(false)` taken. The temporary object is removed either way.
    ///
    /// # Errors
    /// [`Error::Io`] if the upload or the copy failed (the file may or may not exist).
    pub async fn finish(self) -> Result<bool> {
        let LargeCreate {
            store,
            id,
            upload,
            temporary,
            target,
            ..
        } = self;
        upload
            .finish()
            .await
            .map_err(|e| store.io_error(format!("uploading {id}"), e))?;
        let client = store.client()?;
        let copied = client.copy_if_not_exists(&temporary, &target).await;
        let _ = client.delete(&temporary).await;
        match copied {
            Ok(()) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(store.io_error(format!("creating {id}"), e)),
        }
    }
}

/// One line from an object store error: for an answer in S3's XML form, the HTTP status, its
/// `Code` and `Message` (not the request IDs, nor the whole body); how many retries were made,
/// when any; otherwise the error's own text on one line.
fn summarize(e: &object_store::Error) -> String {
    let text = location::scrub_user_info(&e.to_string());
    let between = |open: &str, close: &str| {
        let start = text.find(open)? + open.len();
        let len = text.get(start..)?.find(close)?;
        text.get(start..start + len)
    };
    let retries = between("after ", " retries").map(|n| format!(" after {n} retries"));
    match (
        between("<Code>", "</Code>"),
        between("<Message>", "</Message>"),
    ) {
        (Some(code), message) => {
            let status = between("status code: ", ": <").unwrap_or("error answer");
            format!(
                "the store answered {status}{}: {code}{}",
                retries.unwrap_or_default(),
                message.map(|m| format!(" ({m})")).unwrap_or_default()
            )
        }
        // One line, and not a whole answer body: an endpoint's answer is no one's to read
        // through an error.
        _ => {
            let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
            match line.char_indices().nth(SUMMARY_MOST) {
                Some((cut, _)) => format!("{}…", line.get(..cut).unwrap_or_default()),
                None => line,
            }
        }
    }
}

/// The most characters of a store error's own text that a sentence quotes.
const SUMMARY_MOST: usize = 400;
