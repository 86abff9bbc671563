//! Push: check the registry (one `GET /v2/`), compress the layers the store holds
//! uncompressed, upload the blobs the registry lacks (see `upload`), then PUT the manifest.
//!
//! Compression is deterministic (gzip with a zero mtime and no name, or zstd, single
//! stream, fixed levels), so the same layer always becomes the same blob and pushes of the
//! same image have the same digest. The compressed blob is kept in the store and the
//! store remembers which blob a layer compressed to, so a second push compresses nothing.

use std::sync::Arc;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{self, HeaderMap, HeaderValue};

use super::TransferEvent;
use super::client::{Registry, Repo, check_status};
use super::error::{RegistryError, Result};
use super::pull::join_all;
use rbuild_store::Reference;
pub use rbuild_store::layer::BlobCompression as Compression;
use rbuild_store::oci::{self, Descriptor, Manifest};
use rbuild_store::{Digest, Store};

#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    pub compression: Compression,
}

/// What a push left in the registry.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The pushed manifest's digest (the registry's name for the image).
    pub digest: Digest,
    pub size: u64,
    pub reference: Reference,
    /// The registry said it indexed the manifest's `subject` (`OCI-Subject`: it has the
    /// referrers API).
    pub subject_accepted: bool,
}

impl Registry {
    /// Pushes the image whose manifest is `manifest` as `target`.
    pub async fn push(
        &self,
        store: &Store,
        manifest: &Digest,
        target: &Reference,
        opts: &PushOptions,
    ) -> Result<Pushed> {
        let index = {
            let store = store.clone();
            let digest = manifest.clone();
            tokio::task::spawn_blocking(move || store.read_index(&digest)).await?
        };
        if let Some(index) = index {
            return self.push_index(store, index, target, opts).await;
        }
        let image = {
            let store = store.clone();
            let manifest = manifest.clone();
            tokio::task::spawn_blocking(move || store.image_by_manifest(&manifest)).await??
        };
        let repo = self.push_endpoint(target).await?;
        let layers = self
            .compress_layers(store, &image.manifest.layers, opts.compression)
            .await?;
        let (bytes, media_type) = if layers == image.manifest.layers {
            // Nothing changed: push the manifest as it is, so its digest stays the same.
            let store = store.clone();
            let digest = manifest.clone();
            let bytes = tokio::task::spawn_blocking(move || store.read_blob(&digest)).await??;
            let media_type = image
                .manifest
                .media_type
                .clone()
                .unwrap_or_else(|| oci::MEDIA_TYPE_MANIFEST.to_owned());
            (bytes, media_type)
        } else {
            let mut config = image.manifest.config.clone();
            if config.media_type == oci::MEDIA_TYPE_DOCKER_CONFIG {
                config.media_type = oci::MEDIA_TYPE_CONFIG.to_owned();
            }
            let layers = layers
                .into_iter()
                .map(|mut layer| {
                    if layer.media_type == oci::MEDIA_TYPE_DOCKER_LAYER_GZIP {
                        layer.media_type = oci::MEDIA_TYPE_LAYER_GZIP.to_owned();
                    }
                    layer
                })
                .collect();
            let mut pushed = Manifest::new(config, layers);
            pushed.annotations = image.manifest.annotations.clone();
            let bytes = oci::canonical_json(&pushed);
            let store = store.clone();
            let copy = bytes.clone();
            // Kept in the store, so pulling it back finds it and `rbuild inspect` can show it.
            tokio::task::spawn_blocking(move || store.write_blob(&copy)).await??;
            (bytes, oci::MEDIA_TYPE_MANIFEST.to_owned())
        };
        let blobs = manifest_blobs(&bytes, target)?;
        let pushed = self
            .push_manifest(store, &repo, target, &blobs, &bytes, &media_type)
            .await?;
        let subject = Descriptor::new(&media_type, pushed.digest.clone(), pushed.size);
        self.push_referrers(store, &repo, target, manifest, &subject)
            .await?;
        Ok(pushed)
    }

    /// Pushes the referrers the store has of the image `local` (pushed as `subject`):
    /// renamed to the pushed digest when pushing changed it, each by digest, and listed in
    /// the tag-schema fallback (`sha256-<hex>`, an index of the referrers) unless the
    /// registry has the referrers API.
    async fn push_referrers(
        &self,
        store: &Store,
        repo: &Repo,
        target: &Reference,
        local: &Digest,
        subject: &Descriptor,
    ) -> Result<()> {
        let referrers = {
            let (store, local) = (store.clone(), local.clone());
            tokio::task::spawn_blocking(move || store.referrers(&local)).await??
        };
        if referrers.is_empty() {
            return Ok(());
        }
        let by_digest = target.without_tag();
        let mut pushed_list = Vec::new();
        let mut indexed = true;
        for referrer in referrers {
            let (store_copy, subject_copy) = (store.clone(), subject.clone());
            let (descriptor, bytes) = tokio::task::spawn_blocking(
                move || -> rbuild_store::Result<(Descriptor, Vec<u8>)> {
                    let descriptor = store_copy.rename_referrer(&referrer, &subject_copy)?;
                    let bytes = store_copy.read_blob(&descriptor.digest)?;
                    Ok((descriptor, bytes))
                },
            )
            .await??;
            let blobs = manifest_blobs(&bytes, target)?;
            let pushed = self
                .push_manifest(
                    store,
                    repo,
                    &by_digest,
                    &blobs,
                    &bytes,
                    oci::MEDIA_TYPE_MANIFEST,
                )
                .await?;
            indexed &= pushed.subject_accepted;
            pushed_list.push(descriptor);
        }
        if indexed {
            return Ok(());
        }
        // The registry has no referrers API: the list under the fallback tag, merged with
        // what is there already.
        let tag = format!("sha256-{}", subject.digest.hex());
        let mut manifests = match self.fetch_manifest(repo, &tag, None).await {
            Ok(existing) => serde_json::from_slice::<oci::Index>(&existing.bytes)
                .map(|index| index.manifests)
                .unwrap_or_default(),
            Err(err) if err.is_not_found() => Vec::new(),
            Err(err) => return Err(err),
        };
        // The build's own statements replace those an earlier push of a build of the same
        // image listed (as a build replaces them in the store); others stay.
        if pushed_list
            .iter()
            .any(rbuild_store::attestations::is_build_statement)
        {
            manifests.retain(|m| !rbuild_store::attestations::is_build_statement(m));
        }
        for descriptor in pushed_list {
            if !manifests.iter().any(|m| m.digest == descriptor.digest) {
                manifests.push(descriptor);
            }
        }
        let bytes = oci::canonical_json(&oci::Index::new(manifests));
        self.push_manifest(
            store,
            repo,
            &target.with_tag(&tag),
            &[],
            &bytes,
            oci::MEDIA_TYPE_INDEX,
        )
        .await?;
        Ok(())
    }

    /// Pushes a multi-platform image: every platform's image by digest, then the index
    /// (with the digests the platforms' manifests have in the registry, their layers
    /// compressed) as `target`. The tag moves only once every platform is there.
    async fn push_index(
        &self,
        store: &Store,
        index: oci::Index,
        target: &Reference,
        opts: &PushOptions,
    ) -> Result<Pushed> {
        let by_digest = target.without_tag();
        let mut manifests = Vec::with_capacity(index.manifests.len());
        // The platforms' images first: their digests in the registry (layers compressed)
        // are what the attestations must then name.
        let mut renamed = std::collections::HashMap::new();
        let (attestations, images): (Vec<&Descriptor>, Vec<&Descriptor>) = index
            .manifests
            .iter()
            .partition(|child| rbuild_store::attestations::is_attestation(child));
        for child in images {
            let pushed = Box::pin(self.push(store, &child.digest, &by_digest, opts)).await?;
            renamed.insert(child.digest.clone(), pushed.digest.clone());
            manifests.push(Descriptor {
                media_type: oci::MEDIA_TYPE_MANIFEST.to_owned(),
                digest: pushed.digest,
                size: pushed.size,
                ..child.clone()
            });
        }
        for child in attestations {
            let (kept, child_owned, names) = (store.clone(), child.clone(), renamed.clone());
            let child = tokio::task::spawn_blocking(move || {
                kept.rename_attestation_subject(&child_owned, &names)
            })
            .await??;
            let pushed = Box::pin(self.push(store, &child.digest, &by_digest, opts)).await?;
            manifests.push(Descriptor {
                media_type: oci::MEDIA_TYPE_MANIFEST.to_owned(),
                digest: pushed.digest,
                size: pushed.size,
                ..child
            });
        }
        let mut pushed = oci::Index::new(manifests);
        pushed.annotations = index.annotations.clone();
        let bytes = oci::canonical_json(&pushed);
        let copy = bytes.clone();
        let kept = store.clone();
        // Kept in the store, so pulling it back finds it.
        tokio::task::spawn_blocking(move || kept.write_blob(&copy)).await??;
        let repo = self.push_endpoint(target).await?;
        self.push_manifest(store, &repo, target, &[], &bytes, oci::MEDIA_TYPE_INDEX)
            .await
    }

    /// The endpoint a push to `target` goes to, checked with one `GET /v2/` (with the
    /// credentials or token the push will use): the first that answers, TLS before plain
    /// HTTP for an insecure registry. Done before anything is compressed, so a registry
    /// that is not there, is not a registry or does not let us in costs one request, as
    /// docker's ping does.
    pub(crate) async fn push_endpoint(&self, target: &Reference) -> Result<Repo> {
        let mut last_error = None;
        for endpoint in self
            .config
            .endpoints(target.registry(), target.api_host(), false)
        {
            let repo = Repo {
                endpoint,
                repository: target.repository().to_owned(),
                push: true,
                mount_from: Vec::new(),
            };
            let url = format!("{}/v2/", repo.endpoint.base);
            match self
                .send(&repo, &url, true, || (Method::GET, HeaderMap::new(), None))
                .await
            {
                Ok(response) => {
                    check_status(response, "GET", &url).await?;
                    return Ok(repo);
                }
                Err(err @ RegistryError::Transport { .. }) => last_error = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last_error.expect("every registry has at least one endpoint"))
    }

    /// Uploads `blobs` and then the manifest `bytes` as `target`, to `repo` (from
    /// [`Registry::push_endpoint`]).
    pub(crate) async fn push_manifest(
        &self,
        store: &Store,
        repo: &Repo,
        target: &Reference,
        blobs: &[Descriptor],
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Pushed> {
        let limit = Arc::new(tokio::sync::Semaphore::new(
            self.config.transfer.concurrency,
        ));
        let mut unique: Vec<&Descriptor> = Vec::new();
        for blob in blobs {
            if !unique.iter().any(|b| b.digest == blob.digest) {
                unique.push(blob);
            }
        }
        let tasks: Vec<_> = unique
            .into_iter()
            .map(|blob| {
                let limit = limit.clone();
                async move {
                    let _permit = limit.acquire().await.expect("never closed");
                    self.upload_blob(store, repo, blob).await
                }
            })
            .collect();
        join_all(tasks)
            .await
            .into_iter()
            .collect::<Result<Vec<()>>>()?;

        let tag = target
            .tag()
            .map_or_else(|| Digest::of(bytes).to_string(), str::to_owned);
        let url = repo.url(&format!("manifests/{tag}"));
        let body = Bytes::copy_from_slice(bytes);
        let content_type =
            HeaderValue::from_str(media_type).map_err(|_| RegistryError::InvalidManifest {
                url: url.clone(),
                reason: format!("media type `{media_type}` is not a valid header"),
            })?;
        let response = self
            .send(repo, &url, true, || {
                let mut headers = HeaderMap::new();
                headers.insert(header::CONTENT_TYPE, content_type.clone());
                (Method::PUT, headers, Some(body.clone()))
            })
            .await?;
        let response = check_status(response, "PUT", &url).await?;
        let digest = Digest::of(bytes);
        if let Some(stated) = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok())
            && stated != digest
        {
            return Err(RegistryError::DigestMismatch {
                what: "pushed manifest",
                url,
                expected: digest,
                actual: stated,
            });
        }
        // An image's manifest (not an index): its blobs are now in this repository too.
        if media_type != oci::MEDIA_TYPE_INDEX {
            let manifest: Manifest =
                serde_json::from_slice(bytes).map_err(|err| RegistryError::InvalidManifest {
                    url: url.clone(),
                    reason: err.to_string(),
                })?;
            self.remember_sources(store, repo, &manifest).await;
        }
        let subject_accepted = response.headers().contains_key("oci-subject");
        Ok(Pushed {
            digest,
            size: bytes.len() as u64,
            reference: target.clone(),
            subject_accepted,
        })
    }

    /// Compresses every uncompressed layer (at most `concurrency` at a time); returns the
    /// descriptors to push.
    async fn compress_layers(
        &self,
        store: &Store,
        layers: &[Descriptor],
        compression: Compression,
    ) -> Result<Vec<Descriptor>> {
        let limit = Arc::new(tokio::sync::Semaphore::new(
            self.config
                .transfer
                .concurrency
                .min(std::thread::available_parallelism().map_or(1, |n| n.get())),
        ));
        let tasks: Vec<_> = layers
            .iter()
            .map(|layer| {
                let limit = limit.clone();
                let store = store.clone();
                let layer = layer.clone();
                async move {
                    if !is_uncompressed(&layer.media_type) {
                        return Ok(layer);
                    }
                    let _permit = limit.acquire().await.expect("never closed");
                    self.event(TransferEvent::Compressing {
                        digest: layer.digest.to_string(),
                        size: layer.size,
                    });
                    let compressed = tokio::task::spawn_blocking(move || {
                        store.compressed_layer(&layer, compression)
                    })
                    .await??;
                    Ok(compressed)
                }
            })
            .collect();
        join_all(tasks).await.into_iter().collect()
    }

    /// Fetches `blob` into the store from a repository known to hold it (see
    /// [`Store::blob_sources`]).
    pub(super) async fn fetch_from_sources(&self, store: &Store, blob: &Descriptor) -> Result<()> {
        let sources = {
            let store = store.clone();
            let digest = blob.digest.clone();
            tokio::task::spawn_blocking(move || store.blob_sources(&digest)).await?
        };
        let mut last_error = None;
        for source in sources {
            let Ok(reference) = source.parse::<Reference>() else {
                continue;
            };
            match self.pull_cache_layer(store, &reference, blob).await {
                Ok(()) => return Ok(()),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            rbuild_store::Error::BlobNotFound {
                digest: blob.digest.clone(),
            }
            .into()
        }))
    }
}

fn is_uncompressed(media_type: &str) -> bool {
    media_type == oci::MEDIA_TYPE_LAYER
        || media_type == "application/vnd.docker.image.rootfs.diff.tar"
}

/// The blobs a manifest (its JSON `bytes`) names: its config and layers.
fn manifest_blobs(bytes: &[u8], target: &Reference) -> Result<Vec<Descriptor>> {
    let parsed: Manifest =
        serde_json::from_slice(bytes).map_err(|err| RegistryError::InvalidManifest {
            url: target.to_string(),
            reason: err.to_string(),
        })?;
    let mut blobs = vec![parsed.config];
    blobs.extend(parsed.layers);
    Ok(blobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_deterministic_and_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "hello", &b"hello"[..])
            .unwrap();
        let bytes = tar.into_inner().unwrap();
        let digest = store.write_blob(&bytes).unwrap();
        let layer = Descriptor::new(oci::MEDIA_TYPE_LAYER, digest, bytes.len() as u64);
        for compression in [Compression::Gzip, Compression::Zstd] {
            let first = store.compressed_layer(&layer, compression).unwrap();
            assert_eq!(first.media_type, compression.media_type());
            // Made again from scratch: the same bytes.
            store
                .put_state(
                    &format!("compressed/{}/{}", compression.name(), layer.digest),
                    b"null",
                )
                .unwrap();
            let second = store.compressed_layer(&layer, compression).unwrap();
            assert_eq!(first, second);
            let (_, decompressed) =
                rbuild_store::layer::decompress(store.open_blob(&first.digest, None).unwrap())
                    .unwrap();
            let mut out = Vec::new();
            let mut decompressed = decompressed;
            decompressed.read_to_end(&mut out).unwrap();
            assert_eq!(out, bytes);
        }
    }

    #[test]
    fn sources_are_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let digest = Digest::of(b"x");
        store
            .add_blob_sources(std::slice::from_ref(&digest), "r:1/a")
            .unwrap();
        store
            .add_blob_sources(std::slice::from_ref(&digest), "r:1/b")
            .unwrap();
        store
            .add_blob_sources(std::slice::from_ref(&digest), "r:1/a")
            .unwrap();
        assert_eq!(store.blob_sources(&digest), ["r:1/b", "r:1/a"]);
    }
}
