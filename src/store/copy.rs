//! Copying LTX files from one replica into another, as a fork does: by the store itself when
//! both replicas live in one bucket or container (a server-side copy, no bytes through this
//! process), by a hard link between two `file://` replicas on one filesystem, else streamed
//! through the client in parts of bounded size. Every copy creates its name only if it is
//! free, as a commit does.

use super::location::Location;
use super::{LargeCreate, Store, summarize};
use crate::error::{Error, Result};
use crate::replica::LtxFileId;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt};

/// Files up to this size are streamed as one request each way; larger ones in parts.
const WHOLE_MAX: u64 = 8 << 20;
/// The size of a part of a streamed copy (S3's smallest but the last).
const PART: usize = 5 << 20;

/// How a file was copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied {
    /// By the store (or a hard link): no bytes through this process.
    InStore,
    /// Through this process: the file's size.
    Streamed(u64),
}

/// The name was taken in the target.
#[derive(Debug)]
pub struct Taken;

impl Store {
    /// Builds the store for a replica URL that is to be created: a `file://` directory is
    /// made first if missing.
    ///
    /// # Errors
    /// As [`Store::from_url`]; [`Error::Local`] if the directory cannot be made.
    pub fn for_new_replica(url: &str, timeout: std::time::Duration) -> Result<Store> {
        if let Ok((Location::File { dir }, shown)) = super::location::parse(url) {
            std::fs::create_dir_all(&dir).map_err(|e| Error::Local {
                path: shown,
                detail: format!("cannot create the directory: {e}"),
            })?;
        }
        Store::from_url(url, timeout)
    }

    /// Whether `other` lives in this store's bucket or container (its path may differ), so
    /// that the store can copy between them.
    fn shares_bucket_with(&self, other: &Store) -> bool {
        bucket_of(&self.location).is_some_and(|b| Some(b) == bucket_of(&other.location))
    }

    /// The local path of `id` in a `file://` replica.
    fn local_path(&self, id: &LtxFileId) -> Option<std::path::PathBuf> {
        match &self.location {
            Location::File { dir } => Some(dir.join(self.file_path(id).as_ref())),
            _ => None,
        }
    }

    /// Creates `id` in this replica as a copy of `source`'s file of that name (`size`
    /// bytes, as listed), only if the name is free here: store-side when it can be, else
    /// through this process with bounded memory.
    ///
    /// # Errors
    /// [`Error::Vanished`] if the source file is gone; [`Error::Io`] for other failures (the
    /// copy may or may not exist then). `Ok(Err(Taken))`: the name was taken.
    pub async fn copy_ltx_from(
        &self,
        source: &Store,
        id: &LtxFileId,
        size: u64,
    ) -> Result<std::result::Result<Copied, Taken>> {
        let what = || format!("copying {id} from {}", source.url());
        if let (Some(from), Some(to)) = (source.local_path(id), self.local_path(id)) {
            if let Some(parent) = to.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            // A link fails if the name exists: as conditional as a create.
            match std::fs::hard_link(&from, &to) {
                Ok(()) => return Ok(Ok(Copied::InStore)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(Err(Taken)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !from.exists() => {
                    return Err(Error::Vanished {
                        url: source.url().to_owned(),
                        what: what(),
                        detail: e.to_string(),
                    });
                }
                // Another filesystem, or links not allowed: copy the bytes.
                Err(_) => {}
            }
        }
        if self.shares_bucket_with(source) {
            let client = self.client()?;
            return match client
                .copy_if_not_exists(&source.file_path(id), &self.file_path(id))
                .await
            {
                Ok(()) => Ok(Ok(Copied::InStore)),
                Err(object_store::Error::AlreadyExists { .. }) => Ok(Err(Taken)),
                Err(e) => Err(source.io_error(what(), e)),
            };
        }
        if size <= WHOLE_MAX {
            let bytes = source.get_all(id).await?;
            let len = bytes.len() as u64;
            return Ok(match self.create_ltx(id, bytes).await? {
                true => Ok(Copied::Streamed(len)),
                false => Err(Taken),
            });
        }
        let upload = self.begin_large(id).await?;
        match stream_into(source, id, size, upload).await? {
            (true, len) => Ok(Ok(Copied::Streamed(len))),
            (false, _) => Ok(Err(Taken)),
        }
    }

    /// Creates a small object `name` at the replica's root (beside its levels, where
    /// listings of LTX files do not look) only if the name is free: `Ok(true)` created.
    ///
    /// # Errors
    /// [`Error::Io`] if the store fails.
    pub async fn create_marker(&self, name: &str, body: &str) -> Result<bool> {
        let opts = object_store::PutOptions::from(object_store::PutMode::Create);
        let path = self.root.clone().join(name);
        match self
            .client()?
            .put_opts(&path, bytes::Bytes::from(body.to_owned()).into(), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(Error::Io {
                url: self.url.clone(),
                what: format!("creating {name}"),
                detail: summarize(&e),
            }),
        }
    }

    /// Removes the object `name` at the replica's root; gone already is no error.
    ///
    /// # Errors
    /// [`Error::Io`] if the store fails.
    pub async fn delete_marker(&self, name: &str) -> Result<()> {
        match self.client()?.delete(&self.root.clone().join(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.io_error(format!("removing {name}"), e)),
        }
    }
}

/// What names a bucket or container and the way to it: all of a location but its path;
/// `None` for a directory.
fn bucket_of(l: &Location) -> Option<String> {
    match l {
        Location::File { .. } => None,
        Location::S3 {
            bucket,
            endpoint,
            region,
            force_path_style,
            skip_verify,
            prefix: _,
        } => Some(format!(
            "s3 {bucket} {endpoint:?} {region:?} {force_path_style} {skip_verify}"
        )),
        Location::Gcs {
            bucket, endpoint, ..
        } => Some(format!("gs {bucket} {endpoint:?}")),
        Location::Azure {
            account, container, ..
        } => Some(format!("abs {account:?} {container}")),
    }
}

/// Streams `source`'s file `id` (`size` bytes) into `upload`, a ranged GET of one part at a
/// time, the next fetched while one is written (one body stream of the whole file held far more than a part at once, measured:
/// most of the file, on S3): `(created, bytes)`.
async fn stream_into(
    source: &Store,
    id: &LtxFileId,
    size: u64,
    mut upload: LargeCreate,
) -> Result<(bool, u64)> {
    let streamed = async {
        // The next part is fetched while one is written: two parts held, at most.
        let ranges = (0..size)
            .step_by(PART)
            .map(|at| at..(at + PART as u64).min(size));
        let mut parts = futures::stream::iter(ranges)
            .map(|range| source.get_range(id, range))
            .buffered(2);
        while let Some(part) = parts.try_next().await? {
            upload.write(part.to_vec()).await?;
        }
        Ok::<(), Error>(())
    }
    .await;
    if let Err(e) = streamed {
        upload.abort().await;
        return Err(e);
    }
    let len = upload.written();
    Ok((upload.finish().await?, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_stay_in_one_bucket_or_container() {
        let store = |url: &str| Store::from_url(url, std::time::Duration::from_secs(5)).unwrap();
        let s3 = "s3://b/x.db?endpoint=http://127.0.0.1:9&region=r";
        assert!(
            store(s3)
                .shares_bucket_with(&store("s3://b/y.db?endpoint=http://127.0.0.1:9&region=r"))
        );
        assert!(
            !store(s3)
                .shares_bucket_with(&store("s3://c/y.db?endpoint=http://127.0.0.1:9&region=r"))
        );
        assert!(
            !store(s3)
                .shares_bucket_with(&store("s3://b/y.db?endpoint=http://127.0.0.1:8&region=r"))
        );
        assert!(store("az://acct@c/x.db").shares_bucket_with(&store("az://acct@c/y/z.db")));
        assert!(!store("az://acct@c/x.db").shares_bucket_with(&store("az://acct@d/x.db")));
        let dir = std::env::temp_dir();
        let file = format!("file://{}", dir.display());
        assert!(
            !store(&file).shares_bucket_with(&store(&file)),
            "links, not the store"
        );
    }
}
