//! rbuild's store: content-addressed blobs in OCI layout, overlay snapshots, image names
//! and metadata, on local disk under one root.
//!
//! The store hands out directories and mount *descriptions*; it never mounts and never runs
//! processes. Layout under the root:
//!
//! ```text
//! blobs/sha256/<hex>   committed blobs, read-only, named by their digest
//! ingest/<id>          blobs being written: hashed while written, fsynced, verified, renamed
//! snapshots/<n>/fs     unpacked layers and RUN upper dirs, in overlay format
//! snapshots/<n>/work   overlay work dir of an active snapshot
//! cache-mounts/<h>/<n> `RUN --mount=type=cache` directories (see `cache_mounts`)
//! sandboxes/<id>       the runtime's per-sandbox state
//! tmp/<name>           scratch directories of running operations
//! meta.redb            image names, snapshots, counters
//! idmap                the user namespace's id mapping the files were written under
//! ```
//!
//! Moving images and build caches to and from registries is `rbuild-registry`'s; the
//! store keeps what those transfers leave (`transfer`: compressed layers, where blobs came
//! from).

mod archive;
pub mod attestations;
mod blobs;
mod built;
mod cache;
mod cache_mounts;
mod digest;
mod error;
pub mod gc;
mod idmap;
mod images;
pub mod layer;
mod merge;
mod meta;
pub mod oci;
pub mod overlay;
mod owner;
mod ownership;
pub mod platform;
mod reference;
pub mod referrers;
mod sizes;
mod snapshots;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;
pub mod time;
mod transfer;
mod usage;
mod verify;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use archive::{ArchiveFormat, LoadedImage, host_architecture, oci_architecture};
pub use blobs::{Ingest, unique_name};
pub use built::NewLayer;
pub use cache::{CacheRecord, CachedLayer};
pub use cache_mounts::{CacheMount, CacheMountOptions, CacheMountUsage, CacheSharing};
pub use digest::{Digest, Hasher, HashingWriter, InvalidDigest, VerifyingReader};
pub use error::{Error, Result};
pub use gc::{CachePrune, GcOptions, GcReport};
pub use idmap::{IdMapping, OverlayXattrs};
pub use images::Image;
pub use merge::{Materialized, make_node_like};
pub use meta::{ImageRecord, SnapshotRecord};
pub use reference::{DOCKER_HUB, DOCKER_HUB_API, ImageName, Reference, is_loopback};
pub use snapshots::{ActiveSnapshot, SnapshotKey, SnapshotName, Uncommitted};
pub use usage::{ImageUsage, Usage};
pub use verify::VerifyReport;

/// The largest manifest or config rbuild reads (registries use the same bound).
pub const MAX_JSON_BLOB: u64 = 4 * 1024 * 1024;

/// A store rooted at one directory. Cheap to clone; safe to share between threads, and
/// between processes using the same root.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    blobs: blobs::Blobs,
    meta: meta::Meta,
    /// The key of this handle's lease (see `gc`): unique per `Store::open`.
    lease: String,
    mapping: IdMapping,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The lease ends with the last clone of the handle.
        let _ = self.meta.remove(meta::LEASES, &self.lease);
    }
}

impl Store {
    /// Opens the store at `root`, creating it if needed.
    ///
    /// The store belongs to one user: its root is theirs (mode 0700) and its files carry the
    /// ids of the user namespace it was made in (see `idmap`); opening someone else's store,
    /// or one made under another mapping, is an error. A new store is made beside `root` and
    /// renamed into place, so a failure leaves nothing half-made.
    pub fn open(root: &Path) -> Result<Store> {
        match fs::symlink_metadata(root) {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => ownership::create(root)?,
            Err(err) => return Err(Error::io("open store root", root)(err)),
        }
        Store::open_existing(root)
    }

    fn open_existing(root: &Path) -> Result<Store> {
        let mapping = ownership::claim(root)?;
        let blobs = blobs::Blobs::ensure(root)?;
        for dir in ["snapshots", "tmp", "sandboxes", cache_mounts::DIR] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(Error::io("create", &path))?;
            ownership::guard(&path, &mapping)?;
        }
        let meta = meta::Meta::open(&root.join("meta.redb"), &root.join("tmp"))?;
        let store = Store {
            inner: Arc::new(Inner {
                root: root.to_owned(),
                blobs,
                meta,
                lease: blobs::unique_name(),
                mapping,
            }),
        };
        store.cleanup()?;
        Ok(store)
    }

    /// The id mapping the store's files were written under.
    pub fn id_mapping(&self) -> &IdMapping {
        &self.inner.mapping
    }

    /// Where the store's snapshots keep overlayfs's bookkeeping; overlays of them must be
    /// mounted with [`OverlayXattrs::mount_option`].
    pub fn overlay_xattrs(&self) -> OverlayXattrs {
        self.inner.mapping.overlay_xattrs()
    }

    /// The default root: `RBUILD_ROOT`, else `/var/lib/rbuild` for root, else
    /// `$XDG_DATA_HOME/rbuild` (`~/.local/share/rbuild`).
    pub fn default_root() -> PathBuf {
        if let Some(root) = std::env::var_os("RBUILD_ROOT").filter(|r| !r.is_empty()) {
            return PathBuf::from(root);
        }
        if rustix::process::geteuid().is_root() {
            return PathBuf::from("/var/lib/rbuild");
        }
        if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
            return PathBuf::from(data).join("rbuild");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
        PathBuf::from(home).join(".local/share/rbuild")
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// A fresh scratch directory inside the store (for sandbox state and the like); the
    /// caller removes it.
    pub fn temp_dir(&self, prefix: &str) -> Result<PathBuf> {
        let path = self
            .inner
            .root
            .join("tmp")
            .join(format!("{prefix}-{}", blobs::unique_name()));
        fs::create_dir(&path).map_err(Error::io("create", &path))?;
        Ok(path)
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.inner.blobs.contains(digest)
    }

    /// Starts writing a blob; committing it records it in this process's lease.
    pub fn ingest(&self) -> Result<Ingest> {
        let mut ingest = self.inner.blobs.ingest()?;
        ingest.store = Some(self.clone());
        Ok(ingest)
    }

    /// Writes `bytes` as a blob (no rewrite when it exists) and returns its digest.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if self.keep_existing_blob(&digest)? {
            return Ok(digest);
        }
        let mut ingest = self.ingest()?;
        std::io::Write::write_all(&mut ingest, bytes)
            .map_err(Error::io("write blob", self.root()))?;
        ingest.commit(Some(&digest))?;
        Ok(digest)
    }

    /// If the blob exists, records it in this process's lease (an unreferenced blob could
    /// otherwise be collected while this process comes to reference it) and returns true.
    pub fn keep_existing_blob(&self, digest: &Digest) -> Result<bool> {
        let _lock = self.write_lock()?;
        if !self.has_blob(digest) {
            return Ok(false);
        }
        self.lease_add(std::slice::from_ref(digest), &[], &[])?;
        Ok(true)
    }

    /// Reads a small blob whole, verified against its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        self.inner.blobs.read(digest, MAX_JSON_BLOB)
    }

    /// Opens a blob as a stream that fails at its end unless the content matches `digest`.
    pub fn open_blob(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<VerifyingReader<std::io::BufReader<fs::File>>> {
        self.inner.blobs.open(digest, size)
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner.blobs.path(digest)
    }
}
