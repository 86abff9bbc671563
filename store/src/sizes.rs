//! How big an image is: the size of each of its layers uncompressed (its tar, the content
//! its diff id names), as `docker images` counts. The copy the store holds does not
//! matter: a layer rbuild built is kept as a plain tar, a pulled, loaded or imported one
//! compressed, and the same image (one config, one IMAGE ID) reached both ways must show
//! one size.
//!
//! A compressed layer's uncompressed size is not in its manifest: it is recorded, by diff
//! id, when the layer is unpacked, or measured once from the blob when asked for before
//! that (`rbuild load` leaves unpacking to the first use).

use std::io;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::meta;
use crate::oci::Descriptor;
use crate::{Digest, Image, Store, VerifyingReader};

/// The uncompressed size of the layer whose diff id is the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LayerSizeRecord {
    pub size: u64,
}

impl Store {
    /// The size of `image`'s layers uncompressed: what `rbuild images` shows as SIZE.
    /// Layers shared with other images are counted in full, as docker does.
    pub fn image_size(&self, image: &Image) -> Result<u64> {
        Ok(self.layer_sizes(image)?.iter().sum())
    }

    /// Each of `image`'s layers' size uncompressed, bottom first.
    pub fn layer_sizes(&self, image: &Image) -> Result<Vec<u64>> {
        image
            .manifest
            .layers
            .iter()
            .zip(&image.config.rootfs.diff_ids)
            .map(|(descriptor, diff_id)| self.layer_size(descriptor, diff_id))
            .collect()
    }

    fn layer_size(&self, descriptor: &Descriptor, diff_id: &Digest) -> Result<u64> {
        // An uncompressed layer is its own tar.
        if &descriptor.digest == diff_id {
            return Ok(descriptor.size);
        }
        if let Some(record) = self
            .inner
            .meta
            .get::<LayerSizeRecord>(meta::LAYER_SIZES, &diff_id.to_string())?
        {
            return Ok(record.size);
        }
        let path = self.blob_path(&descriptor.digest);
        let blob = self.open_content(&descriptor.digest, Some(descriptor.size))?;
        let (_, tar) = crate::layer::decompress(blob).map_err(Error::io("read", &path))?;
        // Verified: a size recorded under a diff id is that content's.
        let mut tar = VerifyingReader::new(tar, diff_id.clone(), None);
        let size = io::copy(&mut tar, &mut io::sink()).map_err(Error::io("read", &path))?;
        self.record_layer_size(diff_id, size)?;
        Ok(size)
    }

    /// Remembers that the layer `diff_id` is `size` bytes uncompressed (its tar was just
    /// read whole, to unpack it).
    pub fn record_layer_size(&self, diff_id: &Digest, size: u64) -> Result<()> {
        self.inner.meta.put(
            meta::LAYER_SIZES,
            &diff_id.to_string(),
            &LayerSizeRecord { size },
        )
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::oci::{self, ImageConfiguration, RootFs};

    fn layer() -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        let data = b"hello, world\n".repeat(1000);
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "hello.txt", data.as_slice())
            .unwrap();
        tar.into_inner().unwrap()
    }

    fn config(diff_id: &Digest) -> ImageConfiguration {
        ImageConfiguration {
            created: None,
            author: None,
            architecture: "amd64".to_owned(),
            os: "linux".to_owned(),
            variant: None,
            config: serde_json::Value::Null,
            rootfs: RootFs::layers(vec![diff_id.clone()]),
            history: Vec::new(),
        }
    }

    #[test]
    fn a_blob_that_is_not_its_diff_id_is_not_measured() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(&layer()).unwrap();
        let gzip = gzip.finish().unwrap();
        let wrong = Digest::of(b"another layer");
        let image = store
            .write_image(
                &config(&wrong),
                vec![Descriptor::new(
                    oci::MEDIA_TYPE_LAYER_GZIP,
                    store.write_blob(&gzip).unwrap(),
                    gzip.len() as u64,
                )],
            )
            .unwrap();
        let image = store.image_by_manifest(&image.digest).unwrap();
        assert!(store.image_size(&image).is_err());
        assert!(
            store
                .inner
                .meta
                .get::<LayerSizeRecord>(meta::LAYER_SIZES, &wrong.to_string())
                .unwrap()
                .is_none(),
            "nothing is recorded for a layer that is not what the config says"
        );
    }
}
