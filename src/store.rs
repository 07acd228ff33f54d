//! The storage layer: an `object_store` built from a replica URL, the key layout Litestream
//! uses on that backend, and request statistics. Knows nothing of SQLite or of LTX bytes.
//!
//! Layouts (checked against what `litestream` writes):
//! - `file://` (and gs, abs, sftp, ...): `<root>/ltx/<level as decimal>/<min>-<max>.ltx`
//! - `s3://`: `<path>/<level as %04x>/<min>-<max>.ltx`

use crate::error::{Error, Result};
use crate::replica::LtxFileId;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// How a not-found answer starts, so that callers can tell "re-plan" from failure.
pub(crate) const NOT_FOUND: &str = "not found";

/// Where a backend keeps the files of each level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `<root>/ltx/<level>/`
    LtxDecimal,
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
}

/// A replica's location in an object store.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    root: Path,
    layout: Layout,
    /// The URL as it may be printed: no credentials.
    url: String,
    stats: Arc<StoreStats>,
}

impl Store {
    /// Builds the store for a replica URL: `file:///absolute/dir` (percent-encoding allowed).
    ///
    /// # Errors
    /// [`Error::Config`] for a malformed URL or a scheme this build cannot reach.
    pub fn from_url(url: &str) -> Result<Store> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            Error::Config(format!(
                "replica URL {url:?} has no scheme (expected file:///dir)"
            ))
        })?;
        match scheme {
            "file" => {
                let path = rest.split(['?', '#']).next().unwrap_or_default();
                if !path.starts_with('/') {
                    return Err(Error::Config(format!(
                        "replica URL {url:?}: a file URL needs an absolute path (file:///dir)"
                    )));
                }
                let path = percent_encoding::percent_decode_str(path)
                    .decode_utf8()
                    .map_err(|_| Error::Config(format!("replica URL {url:?} is not UTF-8")))?;
                let dir = std::path::Path::new(path.as_ref());
                if !dir.is_dir() {
                    return Err(Error::ReplicaNotFound {
                        url: url.to_owned(),
                        detail: format!("{} is not a directory", dir.display()),
                    });
                }
                let fs =
                    object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(|e| {
                        Error::ReplicaNotFound {
                            url: url.to_owned(),
                            detail: e.to_string(),
                        }
                    })?;
                Ok(Store {
                    inner: Arc::new(fs),
                    root: Path::default(),
                    layout: Layout::LtxDecimal,
                    url: url.to_owned(),
                    stats: Arc::default(),
                })
            }
            other => Err(Error::Config(format!(
                "replica URL scheme {other:?} is not supported (supported: file)"
            ))),
        }
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
        }
    }

    fn file_path(&self, id: &LtxFileId) -> Path {
        self.level_dir(id.level).join(id.file_name())
    }

    fn io_error(&self, what: String, e: object_store::Error) -> Error {
        let detail = match e {
            object_store::Error::NotFound { .. } => format!("{NOT_FOUND}: {e}"),
            e => e.to_string(),
        };
        Error::Io {
            url: self.url.clone(),
            what,
            detail,
        }
    }

    /// The LTX files of one level, in name order; other keys are skipped.
    ///
    /// # Errors
    /// [`Error::Io`] if the listing fails. A level that does not exist is empty.
    pub async fn list_level(&self, level: u8) -> Result<Vec<ListedFile>> {
        self.stats.list_requests.fetch_add(1, Ordering::Relaxed);
        let prefix = self.level_dir(level);
        let metas: Vec<_> = match self.inner.list(Some(&prefix)).try_collect().await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(self.io_error(format!("listing level {level}"), e)),
        };
        let mut files: Vec<ListedFile> = metas
            .into_iter()
            .filter_map(|m| {
                // Only direct children of the level directory.
                let name = m.location.prefix_match(&prefix)?.collect::<Vec<_>>();
                let [name] = name.as_slice() else { return None };
                Some(ListedFile {
                    id: LtxFileId::parse(level, name.as_ref())?,
                    size: m.size,
                    last_modified: m.last_modified.into(),
                })
            })
            .collect();
        files.sort_by_key(|f| f.id);
        Ok(files)
    }

    /// Bytes `range` of an LTX file.
    ///
    /// # Errors
    /// [`Error::Io`]; [`Error::is_not_found`] tells a file that vanished.
    pub async fn get_range(&self, id: &LtxFileId, range: Range<u64>) -> Result<bytes::Bytes> {
        self.stats.get_requests.fetch_add(1, Ordering::Relaxed);
        let bytes = self
            .inner
            .get_range(&self.file_path(id), range.clone())
            .await
            .map_err(|e| {
                self.io_error(
                    format!("reading {id} bytes {}..{}", range.start, range.end),
                    e,
                )
            })?;
        self.stats
            .bytes_fetched
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }
}
