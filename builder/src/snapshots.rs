//! What the builder needs of the store's snapshots, layers and cache: the narrow interface
//! a step's runners and the committer see, as containerd's `Snapshotter` is to its
//! clients. The store implements it; the builder's unit tests put a fake in front of a
//! store to fail one call, or to watch what a build leaves behind (`testing::Watched`).
//!
//! The life of a step's filesystem: [`Snapshots::prepare_on`] its parent's directories,
//! write into the upper dir (through an overlay, or a copy: [`Snapshots::materialize`] and
//! [`Snapshots::capture`]), then [`Snapshots::create_layer`] measures the upper dir and
//! [`Snapshots::commit_layer`] names it, or [`Snapshots::discard`] throws it away. Every
//! prepared snapshot ends in exactly one of the two, or in [`Snapshots::discard`] after a
//! commit that handed it back unused. A step found in the cache is
//! [`Snapshots::cache_get`]: its record names a committed snapshot, whose
//! [`Snapshots::lowers`] the next step stacks.
//!
//! Images, blobs, tags and the state documents stay on [`Store`]: they are written once a
//! build is done, and are not what a step's runner touches.

use std::path::{Path, PathBuf};

use rbuild_store::layer::LayerOptions;
use rbuild_store::oci::Descriptor;
use rbuild_store::{
    ActiveSnapshot, CacheRecord, Materialized, NewLayer, OverlayXattrs, Result, SnapshotName,
    SnapshotRecord, Store, Uncommitted,
};

/// A store of snapshots (directories in overlay format), the layers measured from them,
/// and cache records naming both. Every method blocks on the disk: call it from a blocking
/// thread. Every failure is a [`rbuild_store::Error`] that names the path or record it was
/// about; a failed call leaves what was committed before it as it was.
pub trait Snapshots: Send + Sync + 'static {
    /// The cache record under `key`, or `None` when there is none or the snapshot it names
    /// is gone (a record never names a missing snapshot). Marks the record used, for the
    /// cache's pruning by age.
    fn cache_get(&self, key: &str) -> Result<Option<CacheRecord>>;

    /// Records `record` under `key`, replacing any older one; once this returns, the record
    /// survives a crash. Fails (and records nothing) on a full disk.
    fn cache_put(&self, key: &str, record: &CacheRecord) -> Result<()>;

    /// The committed snapshot `name`, or `None` when the store does not have it (never
    /// committed, or its directory removed by hand).
    fn snapshot(&self, name: &SnapshotName) -> Result<Option<SnapshotRecord>>;

    /// The directories of `name` and of every snapshot below it, top first (overlay's
    /// `lowerdir` order). `SnapshotNotFound` when one of them is missing.
    fn lowers(&self, name: &SnapshotName) -> Result<Vec<PathBuf>>;

    /// A new active snapshot over `lowers` (top first): an empty upper dir and a work dir.
    /// Its parent is named only at commit, as a build prepares a step's snapshot before the
    /// step under it is committed.
    fn prepare_on(&self, lowers: Vec<PathBuf>) -> Result<ActiveSnapshot>;

    /// Throws `active` away, directories and record. A snapshot whose directory is gone
    /// already is no error.
    fn discard(&self, active: ActiveSnapshot) -> Result<()>;

    /// Measures the upper dir `upper` as a layer (its uncompressed tar's digest and size),
    /// writing nothing.
    fn create_layer(&self, upper: &Path, options: LayerOptions) -> Result<NewLayer>;

    /// Commits `active` (its `parent` set) as `layer`, which [`Snapshots::create_layer`]
    /// measured from its upper dir, and names it by chain. When the store has the same
    /// chain already, that one is the result and `active` comes back unused, for the
    /// caller to discard once nothing reads its directory. A failed commit hands `active`
    /// back in the error ([`Uncommitted`]), still active, for the same reason.
    fn commit_layer(
        &self,
        active: ActiveSnapshot,
        layer: &NewLayer,
    ) -> std::result::Result<(SnapshotName, Option<ActiveSnapshot>), Uncommitted>;

    /// The files of the layer rbuild built, `layer` (uncompressed: its digest is its diff
    /// id, its size the tar's; hard links: nothing is copied), as a new active snapshot on
    /// no parent, with the layer it is (`COPY --link` restacked on another parent); `None`
    /// when the store has no such layer.
    fn clone_layer(&self, layer: &Descriptor) -> Result<Option<(ActiveSnapshot, NewLayer)>>;

    /// Where overlayfs cannot be mounted: `active`'s lowers merged into a writable copy,
    /// to be written in place of an overlay and handed to [`Snapshots::capture`].
    fn materialize(&self, active: &ActiveSnapshot) -> Result<Materialized>;

    /// Writes what changed in `materialized` into `active`'s upper dir in overlay format
    /// (whiteouts, opaque directories), as an overlay would have, and removes the copy.
    fn capture(&self, active: &ActiveSnapshot, materialized: Materialized) -> Result<()>;

    /// The merged view of `lowers` (top first) copied into the existing empty directory
    /// `target`: a read-only view without overlayfs.
    fn merge_into(&self, lowers: &[PathBuf], target: &Path) -> Result<()>;

    /// An always-empty directory, the lower of an overlay that has no layer.
    fn empty_dir(&self) -> Result<PathBuf>;

    /// Which xattrs mark the snapshots' opaque directories (`trusted.` as root, `user.` in
    /// a user namespace): the options an overlay of them is mounted with.
    fn overlay_xattrs(&self) -> OverlayXattrs;
}

impl Snapshots for Store {
    fn cache_get(&self, key: &str) -> Result<Option<CacheRecord>> {
        Store::cache_get(self, key)
    }

    fn cache_put(&self, key: &str, record: &CacheRecord) -> Result<()> {
        Store::cache_put(self, key, record)
    }

    fn snapshot(&self, name: &SnapshotName) -> Result<Option<SnapshotRecord>> {
        Store::snapshot(self, name)
    }

    fn lowers(&self, name: &SnapshotName) -> Result<Vec<PathBuf>> {
        Store::lowers(self, name)
    }

    fn prepare_on(&self, lowers: Vec<PathBuf>) -> Result<ActiveSnapshot> {
        Store::prepare_on(self, lowers)
    }

    fn discard(&self, active: ActiveSnapshot) -> Result<()> {
        Store::discard(self, active)
    }

    fn create_layer(&self, upper: &Path, options: LayerOptions) -> Result<NewLayer> {
        Store::create_layer(self, upper, options)
    }

    fn commit_layer(
        &self,
        active: ActiveSnapshot,
        layer: &NewLayer,
    ) -> std::result::Result<(SnapshotName, Option<ActiveSnapshot>), Uncommitted> {
        Store::commit_layer(self, active, layer)
    }

    fn clone_layer(&self, layer: &Descriptor) -> Result<Option<(ActiveSnapshot, NewLayer)>> {
        Store::clone_layer(self, layer)
    }

    fn materialize(&self, active: &ActiveSnapshot) -> Result<Materialized> {
        Store::materialize(self, active)
    }

    fn capture(&self, active: &ActiveSnapshot, materialized: Materialized) -> Result<()> {
        Store::capture(self, active, materialized)
    }

    fn merge_into(&self, lowers: &[PathBuf], target: &Path) -> Result<()> {
        Store::merge_into(self, lowers, target)
    }

    fn empty_dir(&self) -> Result<PathBuf> {
        Store::empty_dir(self)
    }

    fn overlay_xattrs(&self) -> OverlayXattrs {
        Store::overlay_xattrs(self)
    }
}
