//! Garbage collection, process leases, leftover cleanup and disk usage.
//!
//! **Leases.** Everything a process creates (blobs, committed snapshots) and every image it
//! builds on is recorded in the lease of its store handle (`leases` table; each
//! `Store::open` has its own, owned by the process) until the handle is dropped or the
//! process ends. GC keeps whatever a live lease names; a lease whose owner died
//! is dropped. Objects are committed and added to the lease under a shared lock on
//! `gc.lock`; GC takes it exclusively for mark and sweep, so nothing is collected between
//! being written and being recorded.
//!
//! **Roots.** Named images (their manifests, configs, layers and the snapshots of their
//! layer chains), live leases, and build cache records once there are any. Everything
//! else under `blobs/` and `snapshots/` is garbage.
//!
//! **Leftovers** of killed processes (ingest files, scratch dirs, active snapshots, leases)
//! are recognised by their dead owner and removed by [`Store::cleanup`], which every
//! [`Store::open`] runs.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::FlockOperation;

use crate::CacheRecord;
use crate::blobs::owner_of_name;
use crate::error::{Error, Result};
use crate::meta::{self, ActiveRecord, LeaseRecord, SnapshotRecord};
use crate::oci::{ImageConfiguration, Manifest};
use crate::owner::Owner;
use crate::{Digest, SnapshotName, Store};

/// What [`Store::gc`] may remove. Blobs and snapshots nothing roots always go; build
/// cache records are roots unless these options pick them.
#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    /// Report what would be removed without removing it.
    pub dry_run: bool,
    pub cache: CachePrune,
    /// Only cache records unused for at least this many seconds may go.
    pub unused_for: Option<i64>,
    /// Drop further cache records, least recently used first, until the store takes at
    /// most this many bytes (or no record is left to drop).
    pub keep_storage: Option<u64>,
}

/// Which build cache records a GC drops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CachePrune {
    /// None (as for `rbuild rmi`).
    #[default]
    Keep,
    /// Those whose snapshot no named image uses (intermediate steps, other stages), and
    /// the dates of images no longer named.
    Dangling,
    /// All of them, and the `RUN --mount=type=cache` directories no step is using.
    All,
}

/// What a GC removed (or would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub blobs: usize,
    pub snapshots: usize,
    pub cache_records: usize,
    /// `RUN --mount=type=cache` directories (only [`CachePrune::All`] removes them).
    pub cache_mounts: usize,
    /// Disk space given back, in bytes.
    pub bytes: u64,
}

struct Roots {
    blobs: HashSet<Digest>,
    snapshots: HashSet<Digest>,
    /// The layers of the images kept, whose recorded sizes stay (see `sizes`).
    diff_ids: HashSet<Digest>,
}

/// A held lock on `gc.lock`; released on drop.
pub(crate) struct GcLock {
    _file: fs::File,
}

impl Store {
    fn lock(&self, operation: FlockOperation) -> Result<GcLock> {
        let path = self.root().join("gc.lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io("open", &path))?;
        rustix::fs::flock(&file, operation).map_err(|e| Error::io("lock", &path)(e.into()))?;
        Ok(GcLock { _file: file })
    }

    /// Held while an object is committed and recorded in this process's lease.
    pub(crate) fn write_lock(&self) -> Result<GcLock> {
        self.lock(FlockOperation::LockShared)
    }

    /// Records objects in this process's lease, so GC keeps them while it runs.
    pub(crate) fn lease_add(
        &self,
        blobs: &[Digest],
        snapshots: &[Digest],
        manifests: &[Digest],
    ) -> Result<()> {
        let owner = Owner::current();
        let key = self.inner.lease.as_str();
        self.inner.meta.write(|tx| {
            let mut lease: LeaseRecord = match tx.get_raw(meta::LEASES, key)? {
                Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
                None => LeaseRecord {
                    owner: Some(owner),
                    created: crate::time::now_unix(),
                    ..Default::default()
                },
            };
            let mut changed = false;
            for (list, items) in [
                (&mut lease.blobs, blobs),
                (&mut lease.snapshots, snapshots),
                (&mut lease.manifests, manifests),
            ] {
                for item in items {
                    if !list.contains(item) {
                        list.push(item.clone());
                        changed = true;
                    }
                }
            }
            if changed {
                tx.put(meta::LEASES, key, &lease)?;
            }
            Ok(())
        })
    }

    /// Keeps the image `manifest` (and all it references) from GC while this process runs,
    /// e.g. a base image a build is using, even if its name is removed meanwhile.
    pub fn protect_image(&self, manifest: &Digest) -> Result<()> {
        self.lease_add(&[], &[], std::slice::from_ref(manifest))
    }

    /// Removes what killed processes left behind: ingest files, scratch dirs, active
    /// snapshots, snapshot dirs without any record, and their leases.
    pub fn cleanup(&self) -> Result<()> {
        let root = self.root().to_owned();
        for dir in ["ingest", "tmp"] {
            for entry in read_dir_names(&root.join(dir))? {
                if owner_of_name(&entry).is_some_and(|owner| !owner.is_alive()) {
                    let path = root.join(dir).join(&entry);
                    let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
                }
            }
        }
        // List directories before reading the tables: a snapshot's record is written before
        // its directory is made, so any directory listed here has its record visible below.
        let dirs: Vec<u64> = read_dir_names(&root.join("snapshots"))?
            .iter()
            .filter_map(|name| name.parse().ok())
            .collect();
        let committed: HashSet<u64> = self
            .inner
            .meta
            .list::<SnapshotRecord>(meta::SNAPSHOTS)?
            .into_iter()
            .map(|(_, record)| record.id)
            .collect();
        let active = self.inner.meta.list::<ActiveRecord>(meta::ACTIVE)?;
        let mut live = HashSet::new();
        for (key, record) in &active {
            if record.owner.is_alive() {
                if let Ok(id) = key.parse::<u64>() {
                    live.insert(id);
                }
            } else {
                self.inner.meta.remove(meta::ACTIVE, key)?;
            }
        }
        for id in dirs {
            if !committed.contains(&id) && !live.contains(&id) {
                let _ = fs::remove_dir_all(root.join("snapshots").join(id.to_string()));
            }
        }
        for (key, lease) in self.inner.meta.list::<LeaseRecord>(meta::LEASES)? {
            if lease.owner.is_some_and(|owner| !owner.is_alive()) {
                self.inner.meta.remove(meta::LEASES, &key)?;
            }
        }
        self.cleanup_cache_mounts()
    }

    /// Mark and sweep: removes every blob and snapshot no root reaches, after dropping the
    /// cache records `opts` selects.
    pub fn gc(&self, opts: &GcOptions) -> Result<GcReport> {
        let _lock = self.lock(FlockOperation::LockExclusive)?;
        self.cleanup()?;
        let now = crate::time::now_unix();
        let mut roots = Roots {
            blobs: HashSet::new(),
            snapshots: HashSet::new(),
            diff_ids: HashSet::new(),
        };
        let mut manifests: Vec<Digest> = self
            .images()?
            .into_iter()
            .map(|image| image.manifest)
            .collect();
        for (_, lease) in self.inner.meta.list::<LeaseRecord>(meta::LEASES)? {
            roots.blobs.extend(lease.blobs);
            manifests.extend(lease.manifests);
            for snapshot in lease.snapshots {
                self.mark_snapshot_chain(&snapshot, &mut roots.snapshots)?;
            }
        }
        for manifest in &manifests {
            self.mark_image(manifest, &mut roots)?;
        }
        // Named images, and each platform's image of a named index (an image's time is
        // recorded for its platform's manifest).
        let mut kept_images: HashSet<Digest> = HashSet::new();
        for manifest in manifests {
            kept_images.extend(self.index_children(&manifest).unwrap_or_default());
            kept_images.insert(manifest);
        }

        // Which cache records go: those the policy picks among the ones unused long enough;
        // then, with a storage bound, the least recently used of the rest until it is met.
        let mut records = self.cache_records()?;
        records.sort_by_key(|(_, record)| record.last_used);
        let selectable = |record: &CacheRecord| {
            opts.unused_for
                .is_none_or(|age| now - record.last_used >= age)
        };
        let mut dropped: HashSet<String> = HashSet::new();
        for (key, record) in &records {
            let picked = match opts.cache {
                CachePrune::Keep => false,
                CachePrune::All => true,
                CachePrune::Dangling => match (&record.snapshot, &record.image) {
                    (Some(snapshot), _) => !roots.snapshots.contains(snapshot),
                    // The record of an image's time: as long as the image is named.
                    (None, Some(image)) => !kept_images.contains(image),
                    (None, None) => true,
                },
            };
            if picked && selectable(record) {
                dropped.insert(key.clone());
            }
        }
        let mut marked = self.mark_cache(&records, &dropped, &roots)?;
        if let Some(bound) = opts.keep_storage {
            let total = disk_usage(self.root());
            for (key, record) in &records {
                if total.saturating_sub(self.sweep(&marked, true)?.bytes) <= bound {
                    break;
                }
                if dropped.contains(key) || !selectable(record) {
                    continue;
                }
                dropped.insert(key.clone());
                marked = self.mark_cache(&records, &dropped, &roots)?;
            }
        }
        let mut report = self.sweep(&marked, opts.dry_run)?;
        report.cache_records = dropped.len();
        if opts.cache == CachePrune::All {
            let (count, bytes) = self.prune_cache_mounts(opts.unused_for, opts.dry_run)?;
            report.cache_mounts = count;
            report.bytes += bytes;
        }
        if !opts.dry_run {
            for key in &dropped {
                self.cache_remove(key)?;
            }
        }
        Ok(report)
    }

    /// The roots plus the snapshot chains of the cache records that stay.
    fn mark_cache(
        &self,
        records: &[(String, CacheRecord)],
        dropped: &HashSet<String>,
        roots: &Roots,
    ) -> Result<Roots> {
        let mut marked = Roots {
            blobs: roots.blobs.clone(),
            snapshots: roots.snapshots.clone(),
            diff_ids: roots.diff_ids.clone(),
        };
        for (key, record) in records {
            if dropped.contains(key) {
                continue;
            }
            if let Some(snapshot) = &record.snapshot {
                self.mark_snapshot_chain(snapshot, &mut marked.snapshots)?;
            }
            // A layer that came from elsewhere (a registry cache) exists only as its blob:
            // an image that reuses the step names that blob. (A layer rbuild built has no
            // blob file; marking its digest is harmless.)
            if let Some(layer) = &record.layer {
                marked.blobs.insert(layer.descriptor.digest.clone());
            }
        }
        Ok(marked)
    }

    fn sweep(&self, marked: &Roots, dry_run: bool) -> Result<GcReport> {
        let mut report = GcReport::default();
        let blob_dir = self.root().join("blobs/sha256");
        for name in read_dir_names(&blob_dir)? {
            let Ok(digest) = Digest::from_hex(&name) else {
                continue;
            };
            if marked.blobs.contains(&digest) {
                continue;
            }
            let path = blob_dir.join(&name);
            report.blobs += 1;
            report.bytes += fs::symlink_metadata(&path).map_or(0, |m| m.blocks() * 512);
            if !dry_run {
                fs::remove_file(&path).map_err(Error::io("remove", &path))?;
            }
        }
        for (key, record) in self.inner.meta.list::<SnapshotRecord>(meta::SNAPSHOTS)? {
            let Ok(digest) = key.parse::<Digest>() else {
                continue;
            };
            if marked.snapshots.contains(&digest) {
                continue;
            }
            report.snapshots += 1;
            report.bytes += record.size;
            if !dry_run {
                // Record first: a crash before the directory goes leaves an orphan directory,
                // which cleanup removes; never a record without its directory.
                self.inner.meta.remove(meta::SNAPSHOTS, &key)?;
                let dir = self.snapshot_dir_of(&record);
                fs::remove_dir_all(&dir)
                    .or_else(ignore_not_found)
                    .map_err(Error::io("remove", &dir))?;
            }
        }
        if !dry_run {
            // A few bytes each: not counted in the report. A layer seen again is
            // measured again.
            for (key, _) in self
                .inner
                .meta
                .list::<crate::sizes::LayerSizeRecord>(meta::LAYER_SIZES)?
            {
                if !key
                    .parse::<Digest>()
                    .is_ok_and(|diff_id| marked.diff_ids.contains(&diff_id))
                {
                    self.inner.meta.remove(meta::LAYER_SIZES, &key)?;
                }
            }
        }
        Ok(report)
    }

    fn mark_image(&self, manifest: &Digest, roots: &mut Roots) -> Result<()> {
        roots.blobs.insert(manifest.clone());
        // Its referrers (attestations attached as OCI 1.1 artifacts) live as long as it.
        for referrer in self.referrers(manifest).unwrap_or_default() {
            if !roots.blobs.contains(&referrer.digest) {
                self.mark_image(&referrer.digest, roots)?;
            }
        }
        // A multi-platform image: its index, and every platform's image.
        if let Some(children) = self.index_children(manifest) {
            for child in children {
                self.mark_image(&child, roots)?;
            }
            return Ok(());
        }
        let Ok(manifest) = self.read_json::<Manifest>("manifest", manifest) else {
            // A missing or corrupt manifest roots nothing more; `store verify` reports it.
            return Ok(());
        };
        roots.blobs.insert(manifest.config.digest.clone());
        roots
            .blobs
            .extend(manifest.layers.iter().map(|layer| layer.digest.clone()));
        if let Ok(config) =
            self.read_json::<ImageConfiguration>("image config", &manifest.config.digest)
        {
            let mut parent: Option<SnapshotName> = None;
            for diff_id in &config.rootfs.diff_ids {
                let name = SnapshotName::chain(parent.as_ref(), diff_id);
                roots.snapshots.insert(name.digest().clone());
                roots.diff_ids.insert(diff_id.clone());
                parent = Some(name);
            }
        }
        Ok(())
    }

    fn mark_snapshot_chain(&self, name: &Digest, snapshots: &mut HashSet<Digest>) -> Result<()> {
        let mut next = Some(name.clone());
        while let Some(digest) = next {
            if !snapshots.insert(digest.clone()) {
                break;
            }
            next = self
                .snapshot_record(&digest)?
                .and_then(|record| record.parent);
        }
        Ok(())
    }
}

fn ignore_not_found(err: io::Error) -> io::Result<()> {
    if err.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(err)
    }
}

fn read_dir_names(dir: &Path) -> Result<Vec<String>> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(Error::io("list", dir)(err)),
    }
}

/// Disk usage of a tree as `du` counts it: allocated blocks, each inode once.
pub fn disk_usage(path: &Path) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_owned()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if seen.insert((meta.dev(), meta.ino())) {
            total += meta.blocks() * 512;
        }
        if meta.is_dir()
            && let Ok(entries) = fs::read_dir(&path)
        {
            stack.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::layer::LayerOptions;
    use crate::oci::{ImageConfiguration, RootFs};

    fn image_config(diff_ids: Vec<Digest>) -> ImageConfiguration {
        ImageConfiguration {
            created: None,
            author: None,
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
            config: serde_json::Value::Null,
            rootfs: RootFs::layers(diff_ids),
            history: vec![],
        }
    }

    /// A multi-platform image: its name resolves to this machine's platform, another
    /// platform by asking, and GC keeps every platform's image (and the index).
    #[test]
    fn a_named_index_keeps_every_platform_and_resolves_each() {
        let dir = tempfile::tempdir().unwrap();
        let (index, manifests) = {
            let store = Store::open(dir.path()).unwrap();
            let mut descriptors = Vec::new();
            for (arch, content) in [(crate::host_architecture(), "host"), ("s390x", "other")] {
                let active = store.prepare(None).unwrap();
                fs::write(active.upper.join("arch"), content).unwrap();
                let layer = store
                    .create_layer(&active.upper, LayerOptions::default())
                    .unwrap();
                store.commit_layer(active, &layer).unwrap();
                let mut config = image_config(vec![layer.diff_id.clone()]);
                config.architecture = arch.to_owned();
                let mut manifest = store.write_image(&config, vec![layer.descriptor]).unwrap();
                manifest.platform = Some(crate::oci::Platform {
                    architecture: arch.to_owned(),
                    os: "linux".into(),
                    variant: None,
                });
                descriptors.push(manifest);
            }
            let manifests: Vec<Digest> = descriptors.iter().map(|d| d.digest.clone()).collect();
            let index = store.write_index(descriptors).unwrap();
            store
                .tag(&"multi:1".parse().unwrap(), &index.digest)
                .unwrap();
            (index.digest, manifests)
        };
        let store = Store::open(dir.path()).unwrap();
        let name = "multi:1".parse().unwrap();
        assert_eq!(store.image(&name).unwrap().manifest_digest, manifests[0]);
        let s390x = crate::oci::Platform {
            architecture: "s390x".into(),
            os: "linux".into(),
            variant: None,
        };
        assert_eq!(
            store
                .image_for(&name, Some(&s390x))
                .unwrap()
                .manifest_digest,
            manifests[1]
        );
        let riscv = crate::oci::Platform {
            architecture: "riscv64".into(),
            ..s390x.clone()
        };
        let err = store
            .image_for(&name, Some(&riscv))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("linux/riscv64") && err.contains("linux/s390x"),
            "{err}"
        );
        let platforms: Vec<String> = store
            .platforms(&index)
            .unwrap()
            .iter()
            .map(|p| p.architecture.clone())
            .collect();
        assert_eq!(platforms, [crate::host_architecture(), "s390x"]);

        store.gc(&GcOptions::default()).unwrap();
        assert!(store.has_blob(&index));
        for manifest in &manifests {
            let image = store.image_by_manifest(manifest).unwrap();
            assert!(store.has_blob(&image.config_digest));
            assert!(store.unpack(&image).is_ok());
        }
        assert!(store.verify().unwrap().broken_images.is_empty());
    }

    #[test]
    fn gc_keeps_what_images_and_leases_reach_and_removes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (kept, garbage) = {
            let store = Store::open(dir.path()).unwrap();
            let active = store.prepare(None).unwrap();
            fs::write(active.upper.join("kept"), "kept").unwrap();
            let layer = store
                .create_layer(&active.upper, LayerOptions::default())
                .unwrap();
            let base = store.commit_layer(active, &layer).unwrap().0;
            let manifest = store
                .write_image(
                    &image_config(vec![layer.diff_id.clone()]),
                    vec![layer.descriptor],
                )
                .unwrap();
            store
                .tag(&"kept:1".parse().unwrap(), &manifest.digest)
                .unwrap();

            let garbage = store.write_blob(b"garbage").unwrap();
            let active = store.prepare(Some(&base)).unwrap();
            fs::write(active.upper.join("gone"), "gone").unwrap();
            store.commit(active, &Digest::of(b"gone")).unwrap();
            // Everything is leased while this handle lives.
            assert_eq!(
                store.gc(&GcOptions::default()).unwrap(),
                GcReport::default()
            );
            (manifest.digest, garbage)
        };
        let store = Store::open(dir.path()).unwrap();
        let dry = store
            .gc(&GcOptions {
                dry_run: true,
                ..Default::default()
            })
            .unwrap();
        assert_eq!((dry.blobs, dry.snapshots), (1, 1));
        assert!(store.has_blob(&garbage));
        let report = store.gc(&GcOptions::default()).unwrap();
        assert_eq!(report, dry);
        assert!(report.bytes > 0);
        assert!(!store.has_blob(&garbage));
        let image = store.image(&"kept:1".parse().unwrap()).unwrap();
        assert_eq!(image.manifest_digest, kept);
        let top = image.top().unwrap();
        assert!(store.lowers(&top).unwrap()[0].join("kept").is_file());
        let dirs: Vec<_> = fs::read_dir(dir.path().join("snapshots"))
            .unwrap()
            .collect();
        assert_eq!(dirs.len(), 1, "only the image's snapshot remains: {dirs:?}");

        // Removing the name makes the image garbage too.
        store.untag(&"kept:1".parse().unwrap()).unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let report = store.gc(&GcOptions::default()).unwrap();
        // Its manifest and config; the layer was kept only as its snapshot.
        assert_eq!((report.blobs, report.snapshots), (2, 1));
    }

    #[test]
    fn cleanup_removes_what_dead_processes_left() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = Owner {
            pid: child.id(),
            start: 1,
        };
        child.wait().unwrap();
        let ingest = dir.path().join(format!("ingest/{dead}-1-0"));
        fs::write(&ingest, "partial").unwrap();
        let scratch = dir.path().join(format!("tmp/copy-{dead}-1-0"));
        fs::create_dir_all(scratch.join("rootfs")).unwrap();
        let live_ingest = dir.path().join(format!("ingest/{}-1-0", Owner::current()));
        fs::write(&live_ingest, "in progress").unwrap();
        // An active snapshot of the dead process, and a directory nobody recorded.
        let id = store.inner.meta.begin_snapshot(dead).unwrap();
        fs::create_dir_all(dir.path().join(format!("snapshots/{id}/fs"))).unwrap();
        fs::create_dir_all(dir.path().join("snapshots/999/fs")).unwrap();
        let mine = store.prepare(None).unwrap();
        store
            .inner
            .meta
            .put(
                meta::LEASES,
                "dead-lease",
                &LeaseRecord {
                    owner: Some(dead),
                    ..Default::default()
                },
            )
            .unwrap();

        store.cleanup().unwrap();
        assert!(!ingest.exists() && !scratch.exists());
        assert!(live_ingest.exists(), "a live process's ingest stays");
        assert!(!dir.path().join(format!("snapshots/{id}")).exists());
        assert!(!dir.path().join("snapshots/999").exists());
        assert!(mine.upper.is_dir(), "this process's active snapshot stays");
        let active: BTreeMap<String, ActiveRecord> = store
            .inner
            .meta
            .list(meta::ACTIVE)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(active.len(), 1);
        assert!(
            store
                .inner
                .meta
                .get::<LeaseRecord>(meta::LEASES, "dead-lease")
                .unwrap()
                .is_none()
        );
    }
}
