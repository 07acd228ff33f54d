//! The lease object of a replica (`<root>/lease`): read with its version, created only if
//! absent, replaced only if unchanged since it was read (If-Match on S3 and Azure, a
//! generation match on GCS). The writer's lease logic lives in `writer::lease`; this file
//! only moves bytes.

use super::Store;
use crate::error::{Error, Result};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, UpdateVersion};
use std::sync::atomic::Ordering;

/// The version of the lease object a write is conditional on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseVersion {
    e_tag: Option<String>,
    version: Option<String>,
}

/// What a conditional write of the lease came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseWrite {
    /// Stored: the object's new version.
    Stored(LeaseVersion),
    /// Another process changed (or created) the object first: nothing stored.
    Lost,
    /// The store cannot replace an object conditionally (file://): no lease.
    Unsupported,
}

impl Store {
    /// Whether the store can replace an object only if unchanged (not file://, whose
    /// object_store backend cannot): without that, no lease.
    pub fn has_conditional_update(&self) -> bool {
        !matches!(self.location, super::location::Location::File { .. })
    }

    fn lease_path(&self) -> Path {
        self.root.clone().join("lease")
    }

    /// The lease object's bytes and version, `None` if there is none.
    ///
    /// # Errors
    /// [`Error::Io`] if the store failed.
    pub async fn get_lease(&self) -> Result<Option<(bytes::Bytes, LeaseVersion)>> {
        self.stats.lease_requests.fetch_add(1, Ordering::Relaxed);
        let client = self.client()?;
        let got = match client.get(&self.lease_path()).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.io_error("reading the lease".into(), e)),
        };
        let version = LeaseVersion {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        };
        let bytes = got
            .bytes()
            .await
            .map_err(|e| self.io_error("reading the lease".into(), e))?;
        Ok(Some((bytes, version)))
    }

    /// The lease object's bytes and version if its version is no longer `seen` (`Ok(None)`:
    /// unchanged, answered without its bytes); `Some(None)` if there is none.
    ///
    /// # Errors
    /// [`Error::Io`] if the store failed.
    pub async fn get_lease_if_changed(
        &self,
        seen: &LeaseVersion,
    ) -> Result<Option<Option<(bytes::Bytes, LeaseVersion)>>> {
        let Some(e_tag) = seen.e_tag.clone() else {
            return self.get_lease().await.map(Some);
        };
        self.stats.lease_requests.fetch_add(1, Ordering::Relaxed);
        let client = self.client()?;
        let options = object_store::GetOptions::new().with_if_none_match(Some(e_tag));
        let got = match client.get_opts(&self.lease_path(), options).await {
            Ok(got) => got,
            Err(object_store::Error::NotModified { .. }) => return Ok(None),
            Err(object_store::Error::NotFound { .. }) => return Ok(Some(None)),
            Err(e) => return Err(self.io_error("reading the lease".into(), e)),
        };
        let version = LeaseVersion {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        };
        let bytes = got
            .bytes()
            .await
            .map_err(|e| self.io_error("reading the lease".into(), e))?;
        Ok(Some(Some((bytes, version))))
    }

    /// Writes the lease object: created if `over` is `None`, else replaced only if its
    /// version is still `over`.
    ///
    /// # Errors
    /// [`Error::Io`] if the store failed (the write may or may not have happened).
    pub async fn put_lease(
        &self,
        bytes: bytes::Bytes,
        over: Option<&LeaseVersion>,
    ) -> Result<LeaseWrite> {
        self.stats.lease_requests.fetch_add(1, Ordering::Relaxed);
        let mode = match over {
            None => PutMode::Create,
            Some(v) => PutMode::Update(UpdateVersion {
                e_tag: v.e_tag.clone(),
                version: v.version.clone(),
            }),
        };
        let client = self.client()?;
        match client
            .put_opts(&self.lease_path(), bytes.into(), PutOptions::from(mode))
            .await
        {
            Ok(put) => Ok(LeaseWrite::Stored(LeaseVersion {
                e_tag: put.e_tag,
                version: put.version,
            })),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }
                | object_store::Error::NotFound { .. },
            ) => Ok(LeaseWrite::Lost),
            Err(object_store::Error::NotImplemented { .. }) => Ok(LeaseWrite::Unsupported),
            Err(e) => Err(Error::Io {
                url: self.url.clone(),
                what: "writing the lease".into(),
                detail: super::summarize(&e),
            }),
        }
    }
}
