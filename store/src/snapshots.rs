//! Snapshots: one directory per layer diff in overlay format, stacked as overlay lower dirs.
//!
//! An *active* snapshot (`SnapshotKey`) is an upper and a work directory being written, on
//! top of a committed parent. Committing names it by its chain id (`SnapshotName`, the OCI
//! chain id of its layer stack), so identical layer stacks share one snapshot whoever made
//! them. A committed snapshot is never written again.

use std::fmt;
use std::fs;
use std::path::PathBuf;

use crate::blobs::sync_dir;
use crate::error::{Error, Result};
use crate::merge::Materialized;
use crate::meta::{self, SnapshotRecord};
use crate::owner::Owner;
use crate::{Digest, Store};

/// A committed snapshot, named by the chain id of its layer stack.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SnapshotName(Digest);

impl SnapshotName {
    /// The chain id of `diff_id` on top of `parent`: `parent` for a first layer is none and
    /// the chain id is the diff id itself; otherwise `sha256("<parent> <diff_id>")`.
    pub fn chain(parent: Option<&SnapshotName>, diff_id: &Digest) -> SnapshotName {
        match parent {
            None => SnapshotName(diff_id.clone()),
            Some(parent) => {
                SnapshotName(Digest::of(format!("{} {}", parent.0, diff_id).as_bytes()))
            }
        }
    }

    pub fn digest(&self) -> &Digest {
        &self.0
    }

    /// The snapshot whose chain id is `digest`.
    pub fn from_digest(digest: Digest) -> SnapshotName {
        SnapshotName(digest)
    }
}

impl fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The number of an active snapshot's directory under `snapshots/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SnapshotKey(u64);

impl fmt::Display for SnapshotKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A commit that failed, with the snapshot it could not commit, still active: its directory
/// may still be read (as the lower of a step running over it), so its owner discards it
/// when nothing does any more.
#[derive(Debug)]
pub struct Uncommitted {
    pub error: Error,
    /// Boxed: an error stays small.
    pub active: Box<ActiveSnapshot>,
}

impl fmt::Display for Uncommitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for Uncommitted {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

impl From<Uncommitted> for Error {
    fn from(uncommitted: Uncommitted) -> Error {
        uncommitted.error
    }
}

/// A snapshot being written: mount `lowers` (top first) with `upper` and `work` as an
/// overlay, write, then [`Store::commit`] or [`Store::discard`] it.
#[derive(Debug)]
pub struct ActiveSnapshot {
    pub key: SnapshotKey,
    pub parent: Option<SnapshotName>,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// The parent chain's directories, top-most first (overlay's `lowerdir` order).
    pub lowers: Vec<PathBuf>,
}

impl Store {
    fn snapshot_dir(&self, id: u64) -> PathBuf {
        self.root().join("snapshots").join(id.to_string())
    }

    /// An always-empty directory, for overlays that have no lower layer.
    pub fn empty_dir(&self) -> Result<PathBuf> {
        let path = self.root().join("snapshots").join("empty");
        fs::create_dir_all(&path).map_err(Error::io("create", &path))?;
        Ok(path)
    }

    /// The committed snapshot `name`, if the store has it.
    pub fn snapshot(&self, name: &SnapshotName) -> Result<Option<SnapshotRecord>> {
        let Some(record) = self.snapshot_record(&name.0)? else {
            return Ok(None);
        };
        // A record whose directory is gone (removed by hand) is treated as absent, so the
        // layer is unpacked again.
        Ok(self
            .snapshot_dir(record.id)
            .join("fs")
            .is_dir()
            .then_some(record))
    }

    /// The directories of `name` and its ancestors, top-most first.
    pub fn lowers(&self, name: &SnapshotName) -> Result<Vec<PathBuf>> {
        let mut dirs = Vec::new();
        let mut next = Some(name.0.clone());
        while let Some(digest) = next {
            let record = self
                .snapshot_record(&digest)?
                .ok_or_else(|| Error::SnapshotNotFound {
                    name: digest.to_string(),
                })?;
            dirs.push(self.snapshot_dir(record.id).join("fs"));
            next = record.parent;
        }
        Ok(dirs)
    }

    /// Starts a snapshot on top of `parent`.
    pub fn prepare(&self, parent: Option<&SnapshotName>) -> Result<ActiveSnapshot> {
        let lowers = match parent {
            Some(parent) => self.lowers(parent)?,
            None => Vec::new(),
        };
        let mut active = self.prepare_on(lowers)?;
        active.parent = parent.cloned();
        Ok(active)
    }

    /// Starts a snapshot over the given lower directories (top first), before the parent's
    /// own snapshot is committed and named: a build runs its next step while the previous
    /// layer is still being measured. Set `parent` before committing.
    pub fn prepare_on(&self, lowers: Vec<PathBuf>) -> Result<ActiveSnapshot> {
        let id = self.inner.meta.begin_snapshot(Owner::current())?;
        let dir = self.snapshot_dir(id);
        let upper = dir.join("fs");
        let work = dir.join("work");
        for path in [&upper, &work] {
            fs::create_dir_all(path).map_err(Error::io("create", path.as_path()))?;
        }
        Ok(ActiveSnapshot {
            key: SnapshotKey(id),
            parent: None,
            upper,
            work,
            lowers,
        })
    }

    /// Commits `active`, whose upper dir holds the diff `diff_id` of a layer unpacked from a
    /// blob. When the store already has the same chain (another build was first), `active`
    /// is discarded and the existing snapshot is used.
    pub fn commit(&self, active: ActiveSnapshot, diff_id: &Digest) -> Result<SnapshotName> {
        match self.commit_snapshot(&active, diff_id, None) {
            Ok((name, true)) => Ok(name),
            Ok((name, false)) => {
                self.discard(active)?;
                Ok(name)
            }
            Err(err) => {
                let _ = self.discard(active);
                Err(err)
            }
        }
    }

    /// Commits `active` as the layer `layer` that [`Store::create_layer`] measured from its
    /// upper dir: the directory is the layer's only copy, its tar is written again from it
    /// whenever the layer is read.
    ///
    /// When the store already has the same chain, the existing snapshot is used and
    /// `active` comes back unused: the caller discards it once nothing reads its directory
    /// any more (a build may already be running later steps over it). A commit that fails
    /// hands `active` back in the error, for the same reason.
    pub fn commit_layer(
        &self,
        active: ActiveSnapshot,
        layer: &crate::NewLayer,
    ) -> std::result::Result<(SnapshotName, Option<ActiveSnapshot>), Uncommitted> {
        match self.commit_snapshot(&active, &layer.diff_id, Some(layer.options)) {
            Ok((name, true)) => Ok((name, None)),
            Ok((name, false)) => Ok((name, Some(active))),
            Err(error) => Err(Uncommitted {
                error,
                active: Box::new(active),
            }),
        }
    }

    /// Commits `active`'s directory as the chain on its parent; `false` when the store has
    /// the chain already and `active` was not used.
    fn commit_snapshot(
        &self,
        active: &ActiveSnapshot,
        diff_id: &Digest,
        built: Option<crate::layer::LayerOptions>,
    ) -> Result<(SnapshotName, bool)> {
        let name = SnapshotName::chain(active.parent.as_ref(), diff_id);
        if self.snapshot(&name)?.is_some() {
            let _lock = self.write_lock()?;
            self.lease_add(&[], std::slice::from_ref(&name.0), &[])?;
            return Ok((name, false));
        }
        let _ = fs::remove_dir_all(&active.work);
        // The files must be on disk before the record that names them.
        let dir = fs::File::open(&active.upper).map_err(Error::io("open", &active.upper))?;
        rustix::fs::syncfs(&dir).map_err(|e| Error::io("sync", &active.upper)(e.into()))?;
        sync_dir(&self.root().join("snapshots"))?;
        let record = SnapshotRecord {
            id: active.key.0,
            parent: active.parent.as_ref().map(|p| p.0.clone()),
            diff_id: diff_id.clone(),
            size: crate::gc::disk_usage(&active.upper),
            built,
        };
        let _lock = self.write_lock()?;
        let stored = self.inner.meta.commit_snapshot(&name.0, &record)?;
        self.lease_add(&[], std::slice::from_ref(&name.0), &[])?;
        if stored.id != record.id {
            // Lost a race with another process committing the same chain.
            return Ok((name, false));
        }
        Ok((name, true))
    }

    /// Throws an active snapshot away.
    pub fn discard(&self, active: ActiveSnapshot) -> Result<()> {
        let dir = self.snapshot_dir(active.key.0);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(Error::io("remove", dir)(err)),
        }
        self.inner
            .meta
            .remove(meta::ACTIVE, &active.key.0.to_string())?;
        Ok(())
    }

    /// The copy snapshotter (where overlayfs cannot be mounted, see `merge`): `active`'s
    /// lower stack copied into `snapshots/<n>/merged`, to be written in place of an overlay
    /// and handed to [`Store::capture`] afterwards.
    pub fn materialize(&self, active: &ActiveSnapshot) -> Result<Materialized> {
        let root = self.snapshot_dir(active.key.0).join("merged");
        fs::create_dir(&root).map_err(Error::io("create", &root))?;
        crate::merge::materialize(&active.lowers, &root, self.overlay_xattrs().opaque())
            .map_err(Error::io("copy the layers into", &root))
    }

    /// Writes what changed in `materialized` into `active`'s upper dir, as an overlay
    /// would have, and removes the copy.
    pub fn capture(&self, active: &ActiveSnapshot, materialized: Materialized) -> Result<()> {
        let root = materialized.root.clone();
        crate::merge::capture(materialized, &active.upper, self.overlay_xattrs().opaque())
            .map_err(Error::io("find the changes in", root))
    }

    /// The merged view of the snapshot directories `lowers` (top first) copied into the
    /// existing empty directory `target`: a read-only view without overlayfs.
    pub fn merge_into(&self, lowers: &[PathBuf], target: &std::path::Path) -> Result<()> {
        crate::merge::merge(lowers, target, self.overlay_xattrs().opaque())
            .map_err(Error::io("copy the layers into", target))
    }

    pub(crate) fn snapshot_record(&self, name: &Digest) -> Result<Option<SnapshotRecord>> {
        self.inner.meta.get(meta::SNAPSHOTS, &name.to_string())
    }

    pub(crate) fn snapshot_dir_of(&self, record: &SnapshotRecord) -> PathBuf {
        self.snapshot_dir(record.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let first = SnapshotName::chain(None, &a);
        assert_eq!(first.digest(), &a);
        let second = SnapshotName::chain(Some(&first), &b);
        assert_eq!(second.digest(), &Digest::of(format!("{a} {b}").as_bytes()));
    }

    #[test]
    fn commit_and_lowers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = store.prepare(None).unwrap();
        fs::write(first.upper.join("a"), "1").unwrap();
        let first = store.commit(first, &Digest::of(b"one")).unwrap();
        let second = store.prepare(Some(&first)).unwrap();
        assert_eq!(second.lowers.len(), 1);
        let second_upper = second.upper.clone();
        let second = store.commit(second, &Digest::of(b"two")).unwrap();
        let lowers = store.lowers(&second).unwrap();
        assert_eq!(lowers[0], second_upper);
        assert!(lowers[1].join("a").is_file());

        // The same chain committed twice keeps one snapshot.
        let again = store.prepare(Some(&first)).unwrap();
        let again_dir = again.upper.parent().unwrap().to_owned();
        assert_eq!(store.commit(again, &Digest::of(b"two")).unwrap(), second);
        assert!(!again_dir.exists());
    }
}
