//! `rbuild du`: where the store's disk space goes. Totals are measured like `du` (allocated
//! blocks, each inode once), so they match `du -s` of the root; objects shared by several
//! images are counted once in the totals and shown as shared per image.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::error::Result;
use crate::gc::{GcOptions, disk_usage};
use crate::oci::{ImageConfiguration, Manifest};
use crate::{Digest, ImageName, SnapshotName, Store};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Everything under the root.
    pub total: u64,
    pub blobs: u64,
    pub blob_count: usize,
    pub snapshots: u64,
    pub snapshot_count: usize,
    /// `meta.redb`.
    pub metadata: u64,
    /// `RUN --mount=type=cache` directories (removed only by `prune --all`).
    pub cache_mounts: u64,
    pub cache_mount_count: usize,
    /// What GC would give back now.
    pub reclaimable: u64,
    pub images: Vec<ImageUsage>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUsage {
    pub name: ImageName,
    /// Blobs and snapshots the image uses.
    pub size: u64,
    /// The part of `size` other images use too.
    pub shared: u64,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Object {
    Blob(Digest),
    Snapshot(Digest),
}

impl Store {
    /// A quick estimate of the store's size, without walking snapshot trees: blob files plus
    /// the sizes recorded for snapshots. Good enough to decide whether to collect garbage.
    pub fn estimated_usage(&self) -> Result<u64> {
        let blobs: u64 = fs::read_dir(self.root().join("blobs/sha256"))
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok()?.metadata().ok())
            .map(|meta| meta.blocks() * 512)
            .sum();
        let snapshots: u64 = self
            .inner
            .meta
            .list::<crate::SnapshotRecord>(crate::meta::SNAPSHOTS)?
            .into_iter()
            .map(|(_, record)| record.size)
            .sum();
        Ok(blobs + snapshots)
    }

    pub fn usage(&self) -> Result<Usage> {
        let root = self.root();
        let mut usage = Usage {
            total: disk_usage(root),
            blobs: disk_usage(&root.join("blobs")),
            snapshots: disk_usage(&root.join("snapshots")),
            metadata: fs::metadata(root.join("meta.redb")).map_or(0, |m| m.blocks() * 512),
            ..Default::default()
        };
        usage.blob_count = fs::read_dir(root.join("blobs/sha256")).map_or(0, |d| d.count());
        let cache_mounts = self.cache_mounts()?;
        usage.cache_mount_count = cache_mounts.len();
        usage.cache_mounts = cache_mounts.iter().map(|c| c.size).sum();
        usage.snapshot_count = self
            .inner
            .meta
            .list::<crate::SnapshotRecord>(crate::meta::SNAPSHOTS)?
            .len();

        let mut sizes: HashMap<Object, u64> = HashMap::new();
        let mut users: HashMap<Object, usize> = HashMap::new();
        let mut per_image = Vec::new();
        for record in self.images()? {
            let mut objects = HashSet::new();
            objects.insert(Object::Blob(record.manifest.clone()));
            // A multi-platform image: its index and every platform's image.
            let manifests = self
                .index_children(&record.manifest)
                .unwrap_or_else(|| vec![record.manifest.clone()]);
            for digest in &manifests {
                objects.insert(Object::Blob(digest.clone()));
                if let Ok(manifest) = self.read_json::<Manifest>("manifest", digest) {
                    objects.insert(Object::Blob(manifest.config.digest.clone()));
                    objects.extend(
                        manifest
                            .layers
                            .iter()
                            .map(|l| Object::Blob(l.digest.clone())),
                    );
                    if let Ok(config) = self
                        .read_json::<ImageConfiguration>("image config", &manifest.config.digest)
                    {
                        let mut parent: Option<SnapshotName> = None;
                        for diff_id in &config.rootfs.diff_ids {
                            let name = SnapshotName::chain(parent.as_ref(), diff_id);
                            objects.insert(Object::Snapshot(name.digest().clone()));
                            parent = Some(name);
                        }
                    }
                }
            }
            for object in &objects {
                *users.entry(object.clone()).or_default() += 1;
                if !sizes.contains_key(object) {
                    let size = match object {
                        Object::Blob(digest) => {
                            fs::metadata(self.blob_path(digest)).map_or(0, |m| m.blocks() * 512)
                        }
                        Object::Snapshot(digest) => {
                            self.snapshot_record(digest)?.map_or(0, |r| r.size)
                        }
                    };
                    sizes.insert(object.clone(), size);
                }
            }
            per_image.push((record.name, objects));
        }
        for (name, objects) in per_image {
            let size = objects.iter().map(|o| sizes[o]).sum();
            let shared = objects
                .iter()
                .filter(|o| users[*o] > 1)
                .map(|o| sizes[o])
                .sum();
            usage.images.push(ImageUsage { name, size, shared });
        }
        usage.reclaimable = self
            .gc(&GcOptions {
                dry_run: true,
                cache: crate::gc::CachePrune::Dangling,
                ..Default::default()
            })?
            .bytes;
        Ok(usage)
    }
}
