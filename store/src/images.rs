//! Images: names → manifests → config and layers; making layers; unpacking them.

use crate::error::{Error, Result};
use crate::layer;
use crate::meta::{self, ImageRecord};
use crate::oci::{self, Descriptor, ImageConfiguration, Manifest};
use crate::{Digest, ImageName, SnapshotName, Store};

/// An image read from the store: its manifest and config, both verified.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    pub config_digest: Digest,
    pub config: ImageConfiguration,
}

impl Image {
    /// The snapshot names of the image's layer stack, bottom first.
    pub fn chain(&self) -> Vec<SnapshotName> {
        let mut chain: Vec<SnapshotName> = Vec::new();
        for diff_id in &self.config.rootfs.diff_ids {
            let next = SnapshotName::chain(chain.last(), diff_id);
            chain.push(next);
        }
        chain
    }

    /// The top of the layer stack, `None` for an image without layers.
    pub fn top(&self) -> Option<SnapshotName> {
        self.chain().pop()
    }
}

impl Store {
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        Ok(self
            .inner
            .meta
            .list::<ImageRecord>(meta::IMAGES)?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// The record for `name`: the name as given, else one that means the same registry
    /// reference (`busybox:latest` and `docker.io/library/busybox:latest`).
    pub fn image_record(&self, name: &ImageName) -> Result<Option<ImageRecord>> {
        if let Some(record) = self.inner.meta.get(meta::IMAGES, &name.to_string())? {
            return Ok(Some(record));
        }
        let normalized = name.normalized();
        Ok(self
            .images()?
            .into_iter()
            .find(|record| record.name.normalized() == normalized))
    }

    /// Looks up `name` and reads its manifest and config (this machine's platform's, for
    /// a multi-platform image).
    pub fn image(&self, name: &ImageName) -> Result<Image> {
        self.image_for(name, None)
    }

    /// [`Store::image`] for `platform` (this machine's when `None`).
    pub fn image_for(&self, name: &ImageName, platform: Option<&oci::Platform>) -> Result<Image> {
        let record = self
            .image_record(name)?
            .ok_or_else(|| Error::ImageNotFound { name: name.clone() })?;
        self.image_by_digest_for(&record.manifest, platform)
    }

    /// The manifests of the index `digest`, or `None` when it is not an index (a
    /// manifest, or a blob that is not there).
    pub fn index_children(&self, digest: &Digest) -> Option<Vec<Digest>> {
        let index = self.read_index(digest)?;
        Some(index.manifests.into_iter().map(|m| m.digest).collect())
    }

    /// The platforms' images of the index `digest` (not its attestations), or `None` when
    /// it is not an index.
    pub fn index_images(&self, digest: &Digest) -> Option<Vec<Digest>> {
        let index = self.read_index(digest)?;
        Some(
            index
                .manifests
                .into_iter()
                .filter(|m| !crate::attestations::is_attestation(m))
                .map(|m| m.digest)
                .collect(),
        )
    }

    /// The index `digest`, or `None` when it is not one.
    pub fn read_index(&self, digest: &Digest) -> Option<oci::Index> {
        let value: serde_json::Value = self.read_json("manifest", digest).ok()?;
        value.get("manifests")?;
        serde_json::from_value(value).ok()
    }

    /// The platforms of the image `digest` names: each manifest's of an index (not its
    /// attestations), else the config's.
    pub fn platforms(&self, digest: &Digest) -> Result<Vec<oci::Platform>> {
        if let Some(index) = self.read_index(digest) {
            return Ok(index
                .manifests
                .into_iter()
                .filter(|m| !crate::attestations::is_attestation(m))
                .filter_map(|m| m.platform)
                .collect());
        }
        let image = self.image_by_manifest(digest)?;
        Ok(vec![image.config.platform()])
    }

    /// Writes an image index over `manifests` (each descriptor with its platform);
    /// returns its descriptor.
    pub fn write_index(&self, manifests: Vec<Descriptor>) -> Result<Descriptor> {
        self.write_annotated_index(manifests, std::collections::BTreeMap::new())
    }

    /// [`Store::write_index`] with the index's `annotations`.
    pub fn write_annotated_index(
        &self,
        manifests: Vec<Descriptor>,
        annotations: std::collections::BTreeMap<String, String>,
    ) -> Result<Descriptor> {
        let mut index = oci::Index::new(manifests);
        index.annotations = annotations;
        let bytes = oci::canonical_json(&index);
        let digest = self.write_blob(&bytes)?;
        Ok(Descriptor::new(
            oci::MEDIA_TYPE_INDEX,
            digest,
            bytes.len() as u64,
        ))
    }

    /// Looks up `name`, keeps the image it names from GC for as long as this handle lives
    /// (see [`Store::protect_image`]), then reads it: what `rbuild run` uses, so that an
    /// `rmi` and a prune meanwhile take nothing from under the sandbox.
    pub fn image_in_use(&self, name: &ImageName) -> Result<Image> {
        self.image_in_use_for(name, None)
    }

    /// [`Store::image_in_use`] for `platform` of a multi-platform image (this machine's
    /// when `None`).
    pub fn image_in_use_for(
        &self,
        name: &ImageName,
        platform: Option<&oci::Platform>,
    ) -> Result<Image> {
        let record = self
            .image_record(name)?
            .ok_or_else(|| Error::ImageNotFound { name: name.clone() })?;
        self.protect_image(&record.manifest)?;
        self.image_by_digest_for(&record.manifest, platform)
    }

    pub fn image_by_manifest(&self, manifest_digest: &Digest) -> Result<Image> {
        let manifest: Manifest = self.read_json("manifest", manifest_digest)?;
        let config: ImageConfiguration = self.read_json("image config", &manifest.config.digest)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(Error::LayerCountMismatch {
                name: manifest_digest.to_string(),
                layers: manifest.layers.len(),
                diff_ids: config.rootfs.diff_ids.len(),
            });
        }
        Ok(Image {
            manifest_digest: manifest_digest.clone(),
            config_digest: manifest.config.digest.clone(),
            manifest,
            config,
        })
    }

    /// The JSON blob `digest` (at most [`MAX_JSON_BLOB`](crate::MAX_JSON_BLOB) bytes) parsed as
    /// `T`; `what` names it in the error when it is not.
    pub fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        digest: &Digest,
    ) -> Result<T> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes).map_err(|source| Error::InvalidJson {
            what,
            digest: digest.clone(),
            source,
        })
    }

    /// Points `name` at `manifest`, which must be in the store.
    pub fn tag(&self, name: &ImageName, manifest: &Digest) -> Result<()> {
        if !self.has_blob(manifest) {
            return Err(Error::BlobNotFound {
                digest: manifest.clone(),
            });
        }
        let record = ImageRecord {
            name: name.clone(),
            manifest: manifest.clone(),
            tagged: crate::time::rfc3339(crate::time::now_unix()),
        };
        self.inner
            .meta
            .put(meta::IMAGES, &name.to_string(), &record)
    }

    /// Removes the name `name`; returns whether it existed. Blobs stay until GC.
    pub fn untag(&self, name: &ImageName) -> Result<bool> {
        self.inner.meta.remove(meta::IMAGES, &name.to_string())
    }

    /// Writes `config` and a manifest over `layers`; returns the manifest's descriptor.
    pub fn write_image(
        &self,
        config: &ImageConfiguration,
        layers: Vec<Descriptor>,
    ) -> Result<Descriptor> {
        self.write_annotated_image(config, layers, std::collections::BTreeMap::new())
    }

    /// [`Store::write_image`] with the manifest's `annotations`.
    pub fn write_annotated_image(
        &self,
        config: &ImageConfiguration,
        layers: Vec<Descriptor>,
        annotations: std::collections::BTreeMap<String, String>,
    ) -> Result<Descriptor> {
        let config_bytes = oci::canonical_json(config);
        let config_digest = self.write_blob(&config_bytes)?;
        let manifest = Manifest::new(
            Descriptor::new(
                oci::MEDIA_TYPE_CONFIG,
                config_digest,
                config_bytes.len() as u64,
            ),
            layers,
        );
        let manifest = Manifest {
            annotations,
            ..manifest
        };
        let manifest_bytes = oci::canonical_json(&manifest);
        let manifest_digest = self.write_blob(&manifest_bytes)?;
        Ok(Descriptor::new(
            oci::MEDIA_TYPE_MANIFEST,
            manifest_digest,
            manifest_bytes.len() as u64,
        ))
    }

    /// Makes sure every layer of `image` is unpacked as a snapshot; returns the top one.
    pub fn unpack(&self, image: &Image) -> Result<Option<SnapshotName>> {
        let layers: Vec<(Descriptor, Digest)> = image
            .manifest
            .layers
            .iter()
            .cloned()
            .zip(image.config.rootfs.diff_ids.iter().cloned())
            .collect();
        self.unpack_layers(&layers)
    }

    /// Makes sure the layer stack `layers` (descriptor and diff id, bottom first) is
    /// unpacked as snapshots; returns the top one. Every layer whose snapshot is missing
    /// must be in the store.
    pub fn unpack_layers(&self, layers: &[(Descriptor, Digest)]) -> Result<Option<SnapshotName>> {
        let mut parent: Option<SnapshotName> = None;
        for (descriptor, diff_id) in layers {
            let name = SnapshotName::chain(parent.as_ref(), diff_id);
            if self.snapshot(&name)?.is_none() {
                if !oci::is_layer_media_type(&descriptor.media_type) {
                    return Err(Error::InvalidLayer {
                        digest: descriptor.digest.clone(),
                        reason: format!("unsupported media type `{}`", descriptor.media_type),
                    });
                }
                let active = self.prepare(parent.as_ref())?;
                let blob = self.open_content(&descriptor.digest, Some(descriptor.size))?;
                let unpacked = match layer::unpack_layer(
                    blob,
                    &active.upper,
                    &descriptor.digest,
                    self.overlay_xattrs(),
                ) {
                    Ok(unpacked) => unpacked,
                    Err(err) => {
                        let _ = self.discard(active);
                        return Err(err);
                    }
                };
                if &unpacked.diff_id != diff_id {
                    let _ = self.discard(active);
                    return Err(Error::DiffIdMismatch {
                        diff_id: diff_id.clone(),
                        actual: unpacked.diff_id,
                    });
                }
                let committed = self.commit(active, diff_id)?;
                debug_assert_eq!(committed, name);
                self.record_layer_size(diff_id, unpacked.size)?;
            }
            parent = Some(name);
        }
        Ok(parent)
    }

    /// The image behind `digest`: a manifest, or an index (this machine's platform is
    /// chosen from it).
    pub fn image_by_digest(&self, digest: &Digest) -> Result<Image> {
        self.image_by_digest_for(digest, None)
    }

    /// The image behind `digest` for `platform` (this machine's when `None`): a manifest,
    /// or the platform's manifest of an index.
    pub fn image_by_digest_for(
        &self,
        digest: &Digest,
        platform: Option<&oci::Platform>,
    ) -> Result<Image> {
        let value: serde_json::Value = self.read_json("manifest", digest)?;
        if value.get("manifests").is_none() {
            let image = self.image_by_manifest(digest)?;
            // Asked for a platform a single-platform image is not for: said, not ignored.
            if let Some(want) = platform {
                let have = image.config.platform();
                if !crate::platform::platform_runs(want, &have) {
                    return Err(Error::PlatformNotFound {
                        platform: crate::platform::platform_string(want),
                        available: crate::platform::platform_string(&have),
                    });
                }
            }
            return Ok(image);
        }
        let index: oci::Index = self.read_json("image index", digest)?;
        let images: Vec<&Descriptor> = index
            .manifests
            .iter()
            .filter(|m| !crate::attestations::is_attestation(m))
            .collect();
        // One platform's image with its attestations: that image, as a single-platform
        // image is whatever its platform (checked when one is asked for).
        if let ([only], None) = (images.as_slice(), platform) {
            return self.image_by_manifest(&only.digest);
        }
        let want = platform
            .cloned()
            .unwrap_or_else(crate::platform::host_platform);
        let chosen = crate::platform::choose_platform(&index, &want).ok_or_else(|| {
            let has: Vec<String> = images
                .iter()
                .filter_map(|m| m.platform.as_ref().map(crate::platform::platform_string))
                .collect();
            Error::PlatformNotFound {
                platform: crate::platform::platform_string(&want),
                available: has.join(", "),
            }
        })?;
        self.image_by_manifest(&chosen.digest)
    }
}
