//! What the store keeps for transfers to and from registries (`rbuild-registry`): the
//! compressed blob each layer became, so a second push compresses nothing, and the
//! repositories a blob is known to be in, so a push can mount it from there.

use crate::layer::BlobCompression;
use crate::oci::Descriptor;
use crate::{Digest, Store};

const SOURCES_PREFIX: &str = "blob-sources/";

impl Store {
    /// The compressed blob for an uncompressed layer: made once (deterministically), kept
    /// as a blob, and remembered by the layer's digest.
    pub fn compressed_layer(
        &self,
        layer: &Descriptor,
        compression: BlobCompression,
    ) -> crate::Result<Descriptor> {
        let key = format!("compressed/{}/{}", compression.name(), layer.digest);
        if let Some(known) = self.get_state(&key)?
            && let Ok(descriptor) = serde_json::from_slice::<Descriptor>(&known)
            && self.keep_existing_blob(&descriptor.digest)?
        {
            return Ok(descriptor);
        }
        let content = self.open_content(&layer.digest, Some(layer.size))?;
        let ingest = self.ingest()?;
        let root = self.root().to_owned();
        let read_error = |source: std::io::Error| match source.kind() {
            std::io::ErrorKind::InvalidData => crate::Error::CorruptBlob {
                digest: layer.digest.clone(),
                source,
            },
            _ => crate::Error::io("compress layer into", &root)(source),
        };
        let ingest = compression.compress(content, ingest).map_err(read_error)?;
        let (digest, size) = ingest.commit(None)?;
        let descriptor = Descriptor::new(compression.media_type(), digest, size);
        self.put_state(
            &key,
            &serde_json::to_vec(&descriptor).expect("descriptors serialize"),
        )?;
        Ok(descriptor)
    }

    /// Registry repositories (`host/repository`) known to hold `digest`.
    pub fn blob_sources(&self, digest: &Digest) -> Vec<String> {
        self.get_state(&format!("{SOURCES_PREFIX}{digest}"))
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default()
    }

    /// Remembers that the registry repository `source` (`host/repository`) holds
    /// `digests`: the last eight such repositories per blob.
    pub fn add_blob_sources(&self, digests: &[Digest], source: &str) -> crate::Result<()> {
        for digest in digests {
            let mut sources = self.blob_sources(digest);
            if sources.iter().any(|s| s == source) {
                continue;
            }
            sources.insert(0, source.to_owned());
            sources.truncate(8);
            self.put_state(
                &format!("{SOURCES_PREFIX}{digest}"),
                &serde_json::to_vec(&sources).expect("strings serialize"),
            )?;
        }
        Ok(())
    }
}
