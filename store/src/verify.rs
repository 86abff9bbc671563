//! `store verify`: rehash every blob, check that every image's manifest, config and layers
//! are present and sound and that every snapshot has its directory; `repair` drops what is
//! broken and whatever depends on it from the metadata, so later builds recreate it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;

use crate::error::{Error, Result};
use crate::meta::{self, SnapshotRecord};
use crate::oci::{ImageConfiguration, Manifest};
use crate::{Digest, ImageName, Store};

/// What [`Store::verify`] found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Blobs rehashed.
    pub blobs: usize,
    /// Blobs whose content does not match their name.
    pub corrupt: BTreeSet<Digest>,
    /// Blobs an image needs that the store does not have, with the images needing them.
    pub missing: BTreeMap<Digest, BTreeSet<ImageName>>,
    /// Images that cannot be used: a needed blob is missing, corrupt or unreadable.
    pub broken_images: BTreeSet<ImageName>,
    /// Snapshots whose directory or parent is gone, or whose built layer no longer matches
    /// its digest.
    pub broken_snapshots: BTreeSet<Digest>,
    /// Layers rbuild built, written again from their snapshots and rehashed.
    pub built_layers: usize,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty()
            && self.missing.is_empty()
            && self.broken_images.is_empty()
            && self.broken_snapshots.is_empty()
    }
}

impl Store {
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let dir = self.root().join("blobs/sha256");
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map_err(Error::io("list", &dir))?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        for name in names {
            let Ok(digest) = Digest::from_hex(&name) else {
                continue;
            };
            report.blobs += 1;
            let mut reader = self.open_blob(&digest, None)?;
            match io::copy(&mut reader, &mut io::sink()) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::InvalidData => {
                    report.corrupt.insert(digest);
                }
                Err(err) => return Err(Error::io("read", self.blob_path(&digest))(err)),
            }
        }

        let mut verified_layers = BTreeSet::new();
        for image in self.images()? {
            let mut needed = vec![image.manifest.clone()];
            // A multi-platform image: its index and every platform's image.
            let manifests = self
                .index_children(&image.manifest)
                .unwrap_or_else(|| vec![image.manifest.clone()]);
            for digest in manifests {
                needed.push(digest.clone());
                match self.read_json::<Manifest>("manifest", &digest) {
                    Ok(manifest) => {
                        needed.push(manifest.config.digest.clone());
                        needed.extend(manifest.layers.iter().map(|l| l.digest.clone()));
                        if self
                            .read_json::<ImageConfiguration>(
                                "image config",
                                &manifest.config.digest,
                            )
                            .is_err()
                        {
                            report.broken_images.insert(image.name.clone());
                        }
                    }
                    Err(_) => {
                        report.broken_images.insert(image.name.clone());
                    }
                }
            }
            for digest in needed {
                if report.corrupt.contains(&digest) {
                    report.broken_images.insert(image.name.clone());
                } else if self.has_blob(&digest) || verified_layers.contains(&digest) {
                    continue;
                } else if let Some((snapshot, _)) = self.built_layer(&digest)? {
                    // A layer kept only as its snapshot: write it again and rehash it.
                    let mut reader = self.open_content(&digest, None)?;
                    match io::copy(&mut reader, &mut io::sink()) {
                        Ok(_) => {
                            report.built_layers += 1;
                            verified_layers.insert(digest);
                        }
                        Err(err) if err.kind() == io::ErrorKind::InvalidData => {
                            report.corrupt.insert(digest);
                            report.broken_images.insert(image.name.clone());
                            report.broken_snapshots.insert(snapshot);
                        }
                        Err(err) => {
                            return Err(Error::io(
                                "read the snapshot of layer",
                                digest.to_string(),
                            )(err));
                        }
                    }
                } else {
                    report.broken_images.insert(image.name.clone());
                    report
                        .missing
                        .entry(digest)
                        .or_default()
                        .insert(image.name.clone());
                }
            }
        }

        let snapshots: BTreeMap<String, SnapshotRecord> =
            self.inner.meta.list(meta::SNAPSHOTS)?.into_iter().collect();
        for (key, record) in &snapshots {
            let Ok(digest) = key.parse::<Digest>() else {
                continue;
            };
            let dir_ok = self.snapshot_dir_of(record).join("fs").is_dir();
            if !dir_ok || !self.chain_is_whole(record, &snapshots) {
                report.broken_snapshots.insert(digest);
            }
        }
        Ok(report)
    }

    /// Whether every ancestor of `record` is recorded and has its directory.
    fn chain_is_whole(
        &self,
        record: &SnapshotRecord,
        all: &BTreeMap<String, SnapshotRecord>,
    ) -> bool {
        let mut next = record.parent.clone();
        let mut steps = 0;
        while let Some(parent) = next {
            steps += 1;
            let Some(parent) = all.get(&parent.to_string()) else {
                return false;
            };
            if steps > all.len() || !self.snapshot_dir_of(parent).join("fs").is_dir() {
                return false;
            }
            next = parent.parent.clone();
        }
        true
    }

    /// Drops what `report` found broken: corrupt blobs are deleted, broken images lose
    /// their names, broken snapshots their records and directories. Blobs and snapshots
    /// that are only unreferenced are left to GC.
    pub fn repair(&self, report: &VerifyReport) -> Result<()> {
        let _lock = self.write_lock()?;
        for digest in &report.corrupt {
            let path = self.blob_path(digest);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(Error::io("remove", path)(err)),
            }
        }
        for name in &report.broken_images {
            self.untag(name)?;
        }
        for digest in &report.broken_snapshots {
            if let Some(record) = self.snapshot_record(digest)? {
                self.inner
                    .meta
                    .remove(meta::SNAPSHOTS, &digest.to_string())?;
                let _ = fs::remove_dir_all(self.snapshot_dir_of(&record));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::layer::LayerOptions;
    use crate::oci::RootFs;

    #[test]
    fn finds_and_repairs_corrupt_and_missing_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let active = store.prepare(None).unwrap();
        fs::write(active.upper.join("f"), "content").unwrap();
        let layer = store
            .create_layer(&active.upper, LayerOptions::default())
            .unwrap();
        let snapshot = store.commit_layer(active, &layer).unwrap().0;
        let config = ImageConfiguration {
            created: None,
            author: None,
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
            config: serde_json::Value::Null,
            rootfs: RootFs::layers(vec![layer.diff_id.clone()]),
            history: vec![],
        };
        let manifest = store
            .write_image(&config, vec![layer.descriptor.clone()])
            .unwrap();
        let name: ImageName = "app:1".parse().unwrap();
        store.tag(&name, &manifest.digest).unwrap();
        let report = store.verify().unwrap();
        assert!(report.is_clean());
        assert_eq!(
            report.built_layers, 1,
            "the built layer is written again and rehashed"
        );

        // Corrupt the config blob and the layer's only copy, its snapshot.
        let config = manifest_config(&store, &manifest.digest);
        let path = store.blob_path(&config);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&path, "not a config").unwrap();
        fs::write(store.lowers(&snapshot).unwrap()[0].join("f"), "changed").unwrap();

        let report = store.verify().unwrap();
        assert!(!report.is_clean());
        assert_eq!(
            report.corrupt,
            BTreeSet::from([config, layer.diff_id.clone()])
        );
        assert_eq!(report.broken_images, BTreeSet::from([name.clone()]));
        assert_eq!(
            report.broken_snapshots,
            BTreeSet::from([snapshot.digest().clone()])
        );

        store.repair(&report).unwrap();
        assert!(store.verify().unwrap().is_clean());
        assert!(store.image_record(&name).unwrap().is_none());
        assert!(!store.has_content(&layer.diff_id).unwrap());
    }

    fn manifest_config(store: &Store, manifest: &Digest) -> Digest {
        store
            .read_json::<Manifest>("manifest", manifest)
            .unwrap()
            .config
            .digest
    }
}
