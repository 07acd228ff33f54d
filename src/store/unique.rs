//! Large creates that may race: a COMMIT too large for one request is uploaded in parts
//! under a temporary name of its own attempt (two writers racing for one TXID never write
//! into each other's parts), then takes the file's name by a copy made only if that name is
//! free. Whether a copy whose answer was lost took the name is told by reading the object
//! back: ours if its size and its last bytes are those uploaded.

use super::{LargeCreate, Store};
use crate::error::{Error, Result};
use crate::replica::LtxFileId;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often a copy whose outcome is unknown, and whose target is not there, is tried.
const COPY_ATTEMPTS: u32 = 3;

impl Store {
    /// Starts creating `id` from parts under a temporary name no other attempt has
    /// (`<name>.<random>.part`, which listings skip); [`LargeCreate::finish_unique`] gives
    /// it the name.
    ///
    /// # Errors
    /// [`Error::Io`] if the upload cannot begin.
    pub async fn begin_unique(&self, id: &LtxFileId) -> Result<LargeCreate> {
        let target = self.file_path(id);
        let temporary = Path::from(format!("{target}.{:016x}.part", token()));
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
}

impl LargeCreate {
    /// The file being created.
    pub fn id(&self) -> LtxFileId {
        self.id
    }

    /// Completes an upload begun by [`Store::begin_unique`] and copies it to its name if
    /// that is free: `Ok(true)` if the object there is ours (the copy's, or an earlier try's
    /// whose answer was lost: `tail`, the last bytes written, tell), `Ok(false)` if another
    /// writer's. The temporary object is removed in every case.
    ///
    /// # Errors
    /// [`Error::Io`] if the upload failed (nothing was created) or the copy's outcome
    /// cannot be told (the store fails to answer).
    pub async fn finish_unique(self, tail: &[u8]) -> Result<bool> {
        let LargeCreate {
            store,
            id,
            upload,
            temporary,
            target,
            written,
        } = self;
        let client = store.client()?;
        let outcome = match upload.finish().await {
            Ok(_) => copy_resolved(&store, &client, &temporary, &target, written, tail).await,
            Err(e) => Err(store.io_error(format!("uploading {id}"), e)),
        };
        let _ = client.delete(&temporary).await;
        outcome
    }
}

/// Copies `temporary` to `target` if `target` is free, and tells whose object is there.
async fn copy_resolved(
    store: &Store,
    client: &std::sync::Arc<dyn ObjectStore>,
    temporary: &Path,
    target: &Path,
    len: u64,
    tail: &[u8],
) -> Result<bool> {
    let what = || format!("creating {target}");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let failure = match client.copy_if_not_exists(temporary, target).await {
            Ok(()) => return Ok(true),
            // Another writer's, or ours from a try whose answer was lost.
            Err(object_store::Error::AlreadyExists { .. }) => None,
            Err(e) => Some(store.io_error(what(), e)),
        };
        match is_ours(store, client, target, len, tail).await {
            Ok(Some(ours)) => return Ok(ours),
            Ok(None) if failure.is_some() && attempt < COPY_ATTEMPTS => {
                crate::io::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            }
            Ok(None) => {
                return Err(failure.unwrap_or_else(|| Error::Io {
                    url: store.url().to_owned(),
                    what: what(),
                    detail: "the store said the name was taken, then that it was not there".into(),
                }));
            }
            Err(read_error) => return Err(failure.unwrap_or(read_error)),
        }
    }
}

/// Whether the object at `path` is the one uploaded (`len` bytes ending in `tail`); `None`
/// if there is none.
async fn is_ours(
    store: &Store,
    client: &std::sync::Arc<dyn ObjectStore>,
    path: &Path,
    len: u64,
    tail: &[u8],
) -> Result<Option<bool>> {
    let what = || format!("reading back {path}");
    let meta = match client.head(path).await {
        Ok(meta) => meta,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(store.io_error(what(), e)),
    };
    if meta.size != len || (tail.len() as u64) > len {
        return Ok(Some(false));
    }
    // A body cut short (with headers to match) is asked for again: it tells nothing.
    for _ in 0..COPY_ATTEMPTS {
        let end = client
            .get_range(path, len - tail.len() as u64..len)
            .await
            .map_err(|e| store.io_error(what(), e))?;
        if end.len() == tail.len() {
            return Ok(Some(end == tail));
        }
    }
    Err(Error::Io {
        url: store.url().to_owned(),
        what: what(),
        detail: format!(
            "the store sent short answers for its last {} bytes",
            tail.len()
        ),
    })
}

/// A token no other attempt (of this process or another) is likely to have: the process's
/// random hash keys over its id, the time and a counter.
fn token() -> u64 {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNT.fetch_add(1, Ordering::Relaxed));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::Txid;

    /// Two attempts at one TXID with different bytes, on file://: one name, one winner, no
    /// temporary left; the loser can tell the object is not its own.
    #[test]
    fn of_two_racing_large_creates_one_wins_and_no_part_stays() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("unique-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| Error::Config(e.to_string()))?;
        let store = Store::from_url(&format!("file://{}", dir.display()), Duration::from_secs(5))?;
        let id = LtxFileId {
            level: 0,
            min_txid: Txid(2),
            max_txid: Txid(2),
        };
        let outcome = crate::io::run(
            async move {
                let mut a = store.begin_unique(&id).await?;
                let mut b = store.begin_unique(&id).await?;
                a.write(vec![1u8; 3000]).await?;
                b.write(vec![2u8; 3000]).await?;
                let won = a.finish_unique(&[1u8; 16]).await?;
                let lost = b.finish_unique(&[2u8; 16]).await?;
                let stored = store.get_all(&id).await?;
                Ok::<_, Error>((won, lost, stored))
            },
            Duration::from_secs(20),
        )
        .map_err(|e| Error::Config(e.to_string()))??;
        assert_eq!((outcome.0, outcome.1), (true, false));
        assert_eq!(&outcome.2[..], &[1u8; 3000][..]);
        let mut left = Vec::new();
        for entry in walk(&dir) {
            left.push(entry);
        }
        assert_eq!(left.len(), 1, "{left:?}");
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }
}
