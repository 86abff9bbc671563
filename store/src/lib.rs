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
//! meta.redb            image names, snapshots, counters
//! ```

mod archive;
mod blobs;
mod digest;
mod error;
mod images;
pub mod layer;
mod meta;
pub mod oci;
mod reference;
mod snapshots;
pub mod time;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use archive::{LoadedImage, host_architecture};
pub use blobs::Ingest;
pub use digest::{Digest, Hasher, HashingWriter, InvalidDigest, VerifyingReader};
pub use error::{Error, Result};
pub use images::{Image, NewLayer};
pub use meta::{ImageRecord, SnapshotRecord};
pub use reference::ImageName;
pub use snapshots::{ActiveSnapshot, SnapshotKey, SnapshotName};

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
}

impl Store {
    /// Opens the store at `root`, creating it if needed.
    pub fn open(root: &Path) -> Result<Store> {
        fs::create_dir_all(root).map_err(Error::io("create store root", root))?;
        let blobs = blobs::Blobs::ensure(root)?;
        for dir in ["snapshots", "tmp"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(Error::io("create", &path))?;
        }
        let meta = meta::Meta::open(&root.join("meta.redb"))?;
        Ok(Store {
            inner: Arc::new(Inner {
                root: root.to_owned(),
                blobs,
                meta,
            }),
        })
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

    /// Starts writing a blob.
    pub fn ingest(&self) -> Result<Ingest> {
        self.inner.blobs.ingest()
    }

    /// Writes `bytes` as a blob (no-op when it exists) and returns its digest.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<Digest> {
        self.inner.blobs.write(bytes)
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
