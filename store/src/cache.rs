//! Build cache records: what a build step produced, under the builder's cache key, so a
//! later build with the same key reuses the step's layer instead of running it.
//!
//! The store does not know how keys are made (that is the builder's business); it keeps the
//! records, keeps their snapshots from GC, and drops records whose snapshots are gone.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::meta;
use crate::oci::Descriptor;
use crate::{Digest, SnapshotName, Store};

/// What one cached step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// The layer the step added, if it added one.
    pub layer: Option<CachedLayer>,
    /// The snapshot of the filesystem after the step (the top of its layer chain), if the
    /// filesystem has any layer at all.
    pub snapshot: Option<Digest>,
    /// What the step was, for `rbuild prune` listings and cache explanations.
    pub description: String,
    pub created: i64,
    pub last_used: i64,
    /// Disk usage of the step's own snapshot, in bytes.
    #[serde(default)]
    pub size: u64,
    /// For a record imported from a registry cache whose layer was not needed yet: the
    /// cache (a pinned reference) to fetch the layer from when a build needs its files.
    /// Such a record is a hit even while its snapshot does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// For a record that dates a whole image rather than a step (an image with no layer of
    /// its own): that image's manifest. `rbuild prune` keeps the record while a name
    /// still points at the image, as it keeps the records of the steps a named image uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedLayer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

impl Store {
    /// The record under `key`, if it exists and its snapshot is still in the store (a
    /// record whose snapshot is gone is removed and reported as a miss). A hit marks the
    /// record used now and keeps its snapshot in this process's lease.
    pub fn cache_get(&self, key: &str) -> Result<Option<CacheRecord>> {
        let Some(mut record) = self.inner.meta.get::<CacheRecord>(meta::CACHE, key)? else {
            return Ok(None);
        };
        let _lock = self.write_lock()?;
        if let Some(snapshot) = &record.snapshot {
            let name = SnapshotName::from_digest(snapshot.clone());
            if self.snapshot(&name)?.is_some() {
                self.lease_add(&[], std::slice::from_ref(snapshot), &[])?;
            } else if record.remote.is_none() || record.layer.is_none() {
                self.inner.meta.remove(meta::CACHE, key)?;
                return Ok(None);
            }
        }
        record.last_used = crate::time::now_unix();
        self.inner.meta.put(meta::CACHE, key, &record)?;
        Ok(Some(record))
    }

    pub fn cache_put(&self, key: &str, record: &CacheRecord) -> Result<()> {
        self.inner.meta.put(meta::CACHE, key, record)
    }

    /// Every cache record, by key.
    pub fn cache_records(&self) -> Result<Vec<(String, CacheRecord)>> {
        self.inner.meta.list(meta::CACHE)
    }

    pub(crate) fn cache_remove(&self, key: &str) -> Result<bool> {
        self.inner.meta.remove(meta::CACHE, key)
    }

    /// A document kept under `name` (see [`Store::put_state`]).
    pub fn get_state(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.inner.meta.get_raw(meta::STATE, name)
    }

    /// Keeps a document (bytes, typically JSON) under `name`, e.g. the builder's context
    /// file hashes.
    pub fn put_state(&self, name: &str, value: &[u8]) -> Result<()> {
        self.inner.meta.put_raw(meta::STATE, name, value)
    }
}
