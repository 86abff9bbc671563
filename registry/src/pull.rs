//! Pull: manifest (through an index to the platform's manifest), config and layers into
//! the store, every byte checked against its digest before it is committed.
//!
//! Manifests are kept as pulled (their digest stays the registry's); blobs are kept as
//! they came (compressed). Layers download in parallel; a download that breaks resumes
//! with a `Range` request where the registry allows it, and starts over where it does not.

use std::sync::Arc;

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use tokio::sync::mpsc;

use super::client::{Registry, Repo, check_status, read_limited};
use super::error::{RegistryError, Result};
use super::manifest::{is_index, manifest_media_type};
use super::retry::{backoff, describe};
use super::sink::{Chunk, StreamUnpack, write_chunks};
use super::{BlobOutcome, TransferEvent, host_platform, platform_string};
use rbuild_store::Reference;
use rbuild_store::oci::{self, Descriptor, ImageConfiguration, Index, Manifest, Platform};
use rbuild_store::platform::choose_platform;
use rbuild_store::{Digest, Store};

/// What to pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// The platform to choose from an index; this machine's when `None`.
    pub platform: Option<Platform>,
    /// Unpack the layers as snapshots, each as soon as it and the layers below it are
    /// downloaded, while the later ones are still downloading.
    pub unpack: bool,
    /// Stop after the image's config: no layer is fetched and the image is not written
    /// to the store (its `Pulled::image` is only in memory), for what needs only the
    /// config (`rbuild build --print graph`).
    pub config_only: bool,
    /// Also fetch the attestation manifests (provenance, SBOMs) an index has for the
    /// chosen image: they come back in [`Pulled::attestations`].
    pub attestations: bool,
}

/// An image pulled into the store (its layers not yet unpacked).
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The image manifest (for the chosen platform).
    pub manifest: Digest,
    /// The index it was chosen from, when the reference named one.
    pub index: Option<Digest>,
    pub image: rbuild_store::Image,
    /// The image's entry in that index (with its platform).
    pub entry: Option<Descriptor>,
    /// The index's attestation manifests about the image, in the store with their
    /// statements (with [`PullOptions::attestations`]).
    pub attestations: Vec<Descriptor>,
}

/// A manifest or index as the registry sent it.
pub(crate) struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

impl Registry {
    /// Pulls `reference` into `store`: from the registry's mirrors first (when configured),
    /// then from the registry itself.
    pub async fn pull(
        &self,
        store: &Store,
        reference: &Reference,
        opts: &PullOptions,
    ) -> Result<Pulled> {
        self.on_endpoints(reference, |repo| async move {
            self.pull_from(store, &repo, reference, opts).await
        })
        .await
    }

    /// Runs `attempt` on each endpoint `source` is read from (its registry's mirrors
    /// first, then the registry) until one succeeds. A mirror that fails (or lacks the
    /// content) is skipped; so is a scheme the registry does not speak (TLS, then plain
    /// HTTP, for insecure registries).
    pub(crate) async fn on_endpoints<T, F, Fut>(
        &self,
        source: &Reference,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut(Repo) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let endpoints = self
            .config
            .endpoints(source.registry(), source.api_host(), true);
        let mut last_error = None;
        for endpoint in endpoints {
            let mirror = endpoint.mirror;
            let repo = Repo {
                endpoint,
                repository: source.repository().to_owned(),
                push: false,
                mount_from: Vec::new(),
            };
            match attempt(repo).await {
                Ok(value) => return Ok(value),
                Err(err) if mirror || matches!(err, RegistryError::Transport { .. }) => {
                    last_error = Some(err);
                }
                Err(err) => return Err(err),
            }
        }
        Err(last_error.expect("every registry has at least one endpoint"))
    }

    async fn pull_from(
        &self,
        store: &Store,
        repo: &Repo,
        reference: &Reference,
        opts: &PullOptions,
    ) -> Result<Pulled> {
        let top = self
            .fetch_manifest(repo, &reference.manifest_reference(), reference.digest())
            .await?;
        let mut entry = None;
        let mut attestation_entries: Vec<Descriptor> = Vec::new();
        self.event(TransferEvent::Resolved {
            reference: reference.to_string(),
            digest: top.digest.to_string(),
        });
        let (manifest, index) = if is_index(&top.media_type) {
            let index: Index = parse_json(&top.bytes, &repo.url("manifests/"))?;
            let want = opts.platform.clone().unwrap_or_else(host_platform);
            let chosen = choose_platform(&index, &want).ok_or_else(|| {
                RegistryError::NoMatchingPlatform {
                    reference: reference.to_string(),
                    platform: platform_string(&want),
                    available: index
                        .manifests
                        .iter()
                        .filter_map(|m| m.platform.as_ref().map(platform_string))
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            })?;
            let manifest = self
                .fetch_manifest(repo, &chosen.digest.to_string(), Some(&chosen.digest))
                .await?;
            if is_index(&manifest.media_type) {
                return Err(RegistryError::InvalidManifest {
                    url: repo.url(&format!("manifests/{}", chosen.digest)),
                    reason: "an index inside an index is not supported".to_owned(),
                });
            }
            entry = Some(chosen.clone());
            if opts.attestations {
                attestation_entries =
                    rbuild_store::attestations::attestations_about(&index, &chosen.digest)
                        .cloned()
                        .collect();
            }
            (manifest, Some(top))
        } else {
            (top, None)
        };
        let url = repo.url(&format!("manifests/{}", manifest.digest));
        let parsed: Manifest = parse_json(&manifest.bytes, &url)?;
        for layer in &parsed.layers {
            if !oci::is_layer_media_type(&layer.media_type) {
                return Err(RegistryError::InvalidManifest {
                    url,
                    reason: format!(
                        "layer {} has media type `{}`, which is not a layer rbuild can unpack",
                        layer.digest, layer.media_type
                    ),
                });
            }
        }

        // The config first (small, and it says how many layers to expect), then the layers
        // in parallel; the manifest last, so it names only blobs that are in the store.
        self.fetch_blob(store, repo, &parsed.config).await?;
        let config: ImageConfiguration = {
            let store = store.clone();
            let digest = parsed.config.digest.clone();
            tokio::task::spawn_blocking(move || store.read_json("image config", &digest)).await??
        };
        if config.rootfs.diff_ids.len() != parsed.layers.len() {
            return Err(RegistryError::InvalidManifest {
                url,
                reason: format!(
                    "{} layers but the config lists {} diff ids",
                    parsed.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        if opts.config_only {
            return Ok(Pulled {
                entry,
                attestations: Vec::new(),
                manifest: manifest.digest.clone(),
                index: index.map(|i| i.digest),
                image: rbuild_store::Image {
                    manifest_digest: manifest.digest,
                    config_digest: parsed.config.digest.clone(),
                    manifest: parsed,
                    config,
                },
            });
        }
        let unpack = opts.unpack.then(|| {
            parsed
                .layers
                .iter()
                .cloned()
                .zip(config.rootfs.diff_ids.iter().cloned())
                .collect::<Vec<_>>()
        });
        self.fetch_layers(store, repo, &parsed.layers, unpack)
            .await?;
        let written = {
            let store = store.clone();
            let index_bytes = index.as_ref().map(|i| i.bytes.clone());
            let bytes = manifest.bytes;
            tokio::task::spawn_blocking(move || -> rbuild_store::Result<Digest> {
                if let Some(index) = index_bytes {
                    store.write_blob(&index)?;
                }
                store.write_blob(&bytes)
            })
            .await??
        };
        debug_assert_eq!(written, manifest.digest);
        let image = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.image_by_manifest(&written)).await??
        };
        self.remember_sources(store, repo, &parsed).await;
        for attestation in &attestation_entries {
            self.fetch_attestation(store, repo, attestation).await?;
        }
        if opts.attestations {
            self.fetch_referrers(store, repo, &manifest.digest).await?;
        }
        Ok(Pulled {
            manifest: manifest.digest,
            index: index.map(|i| i.digest),
            image,
            entry,
            attestations: attestation_entries,
        })
    }

    /// Fetches the attestation manifest `entry` of an index of `reference` and its
    /// statements into the store (`pull --platform all` keeps an index's attestations).
    pub async fn pull_attestation(
        &self,
        store: &Store,
        reference: &Reference,
        entry: &Descriptor,
    ) -> Result<()> {
        self.on_endpoints(reference, |repo| async move {
            self.fetch_attestation(store, &repo, entry).await
        })
        .await
    }

    /// Fetches an attestation manifest and its statements into the store (verified
    /// against their digests; nothing to unpack).
    async fn fetch_attestation(
        &self,
        store: &Store,
        repo: &Repo,
        entry: &Descriptor,
    ) -> Result<()> {
        let fetched = self
            .fetch_manifest(repo, &entry.digest.to_string(), Some(&entry.digest))
            .await?;
        let url = repo.url(&format!("manifests/{}", entry.digest));
        let parsed: Manifest = parse_json(&fetched.bytes, &url)?;
        self.fetch_blob(store, repo, &parsed.config).await?;
        for layer in &parsed.layers {
            self.fetch_blob(store, repo, layer).await?;
        }
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.write_blob(&fetched.bytes)).await??;
        Ok(())
    }

    /// Fetches the referrers the registry lists for `subject` (its referrers API, else
    /// the tag-schema fallback `sha256-<hex>`) into the store, each recorded as one of
    /// `subject`'s referrers.
    async fn fetch_referrers(&self, store: &Store, repo: &Repo, subject: &Digest) -> Result<()> {
        let url = repo.url(&format!("referrers/{subject}"));
        let response = self
            .send(repo, &url, true, || {
                let mut headers = HeaderMap::new();
                headers.insert(
                    header::ACCEPT,
                    HeaderValue::from_static(oci::MEDIA_TYPE_INDEX),
                );
                (Method::GET, headers, None)
            })
            .await?;
        let listed = if response.status().is_success() {
            let bytes = read_limited(response, 4 << 20, "referrers list", &url).await?;
            parse_json::<Index>(&bytes, &url)?.manifests
        } else if response.status() == StatusCode::NOT_FOUND {
            let tag = format!("sha256-{}", subject.hex());
            match self.fetch_manifest(repo, &tag, None).await {
                Ok(fetched) => {
                    parse_json::<Index>(&fetched.bytes, &repo.url(&format!("manifests/{tag}")))?
                        .manifests
                }
                Err(err) if err.is_not_found() => Vec::new(),
                Err(err) => return Err(err),
            }
        } else {
            check_status(response, "GET", &url).await?;
            Vec::new()
        };
        for referrer in listed {
            self.fetch_attestation(store, repo, &referrer).await?;
            let (store, subject) = (store.clone(), subject.clone());
            tokio::task::spawn_blocking(move || store.add_referrer(&subject, referrer)).await??;
        }
        Ok(())
    }

    /// Remembers where the image's blobs live, so a push to another repository of the same
    /// registry can mount them instead of uploading them.
    pub(crate) async fn remember_sources(&self, store: &Store, repo: &Repo, manifest: &Manifest) {
        let store = store.clone();
        let source = format!("{}/{}", repo.endpoint.host, repo.repository);
        let digests: Vec<Digest> = std::iter::once(&manifest.config)
            .chain(&manifest.layers)
            .map(|d| d.digest.clone())
            .collect();
        // Best effort: a lost hint costs an upload, nothing more.
        let _ =
            tokio::task::spawn_blocking(move || store.add_blob_sources(&digests, &source)).await;
    }

    /// GETs a manifest or index, refusing more than 4 MiB, unknown or ambiguous media types,
    /// and content whose digest is not the one asked for (or the one the registry states).
    pub(crate) async fn fetch_manifest(
        &self,
        repo: &Repo,
        reference: &str,
        expected: Option<&Digest>,
    ) -> Result<FetchedManifest> {
        let url = repo.url(&format!("manifests/{reference}"));
        let response = self
            .send(repo, &url, true, || {
                let mut headers = HeaderMap::new();
                headers.insert(
                    header::ACCEPT,
                    HeaderValue::from_static(concat!(
                        "application/vnd.oci.image.manifest.v1+json, ",
                        "application/vnd.oci.image.index.v1+json, ",
                        "application/vnd.docker.distribution.manifest.v2+json, ",
                        "application/vnd.docker.distribution.manifest.list.v2+json"
                    )),
                );
                (Method::GET, headers, None)
            })
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                // A digest follows `@`, a tag `:`.
                reference: if reference.starts_with("sha256:") {
                    format!("{}/{}@{reference}", repo.endpoint.host, repo.repository)
                } else {
                    format!("{}/{}:{reference}", repo.endpoint.host, repo.repository)
                },
            });
        }
        let response = check_status(response, "GET", &url).await?;
        let header_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let stated = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let bytes = read_limited(response, rbuild_store::MAX_JSON_BLOB, "manifest", &url).await?;
        let digest = Digest::of(&bytes);
        if let Some(expected) = expected.or(stated.as_ref())
            && *expected != digest
        {
            return Err(RegistryError::DigestMismatch {
                what: "manifest",
                url,
                expected: expected.clone(),
                actual: digest,
            });
        }
        let media_type = manifest_media_type(&bytes, header_type.as_deref()).map_err(|reason| {
            RegistryError::InvalidManifest {
                url: url.clone(),
                reason,
            }
        })?;
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Downloads blobs into the store, `transfer.concurrency` at a time.
    pub(crate) async fn fetch_blobs(
        &self,
        store: &Store,
        repo: &Repo,
        blobs: &[Descriptor],
    ) -> Result<()> {
        let limit = Arc::new(tokio::sync::Semaphore::new(
            self.config.transfer.concurrency,
        ));
        let mut tasks = Vec::new();
        for descriptor in blobs {
            let limit = limit.clone();
            tasks.push(async move {
                let _permit = limit
                    .acquire()
                    .await
                    .expect("the semaphore is never closed");
                self.fetch_blob(store, repo, descriptor).await
            });
        }
        // Poll them together; every download ends (committed, or its ingest removed)
        // before the first error is returned.
        let results = join_all(tasks).await;
        results.into_iter().collect::<Result<Vec<()>>>()?;
        Ok(())
    }

    /// Downloads layers like [`Registry::fetch_blobs`]; with `unpack` (the layers with
    /// their diff ids), unpacks layer N as soon as layers 0..=N are in the store.
    async fn fetch_layers(
        &self,
        store: &Store,
        repo: &Repo,
        layers: &[Descriptor],
        unpack: Option<Vec<(Descriptor, Digest)>>,
    ) -> Result<()> {
        let Some(stack) = unpack else {
            return self.fetch_blobs(store, repo, layers).await;
        };
        // The lowest layer without a snapshot is unpacked while it downloads (the layers
        // below it are there); the others as soon as their turn comes.
        let streamed = {
            let store = store.clone();
            let stack = stack.clone();
            tokio::task::spawn_blocking(
                move || -> rbuild_store::Result<Option<(usize, StreamUnpack)>> {
                    let mut parent: Option<rbuild_store::SnapshotName> = None;
                    for (index, (_, diff_id)) in stack.iter().enumerate() {
                        let name = rbuild_store::SnapshotName::chain(parent.as_ref(), diff_id);
                        if store.snapshot(&name)?.is_none() {
                            return Ok(Some((
                                index,
                                StreamUnpack {
                                    parent,
                                    diff_id: diff_id.clone(),
                                },
                            )));
                        }
                        parent = Some(name);
                    }
                    Ok(None)
                },
            )
            .await??
        };
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<usize>();
        let limit = Arc::new(tokio::sync::Semaphore::new(
            self.config.transfer.concurrency,
        ));
        let downloads: Vec<_> = layers
            .iter()
            .enumerate()
            .map(|(index, descriptor)| {
                let limit = limit.clone();
                let done = done_tx.clone();
                let unpack = streamed
                    .as_ref()
                    .filter(|(streamed, _)| *streamed == index)
                    .map(|(_, unpack)| unpack.clone());
                async move {
                    let _permit = limit.acquire().await.expect("never closed");
                    self.fetch_blob_unpacking(store, repo, descriptor, unpack)
                        .await?;
                    let _ = done.send(index);
                    Ok::<(), RegistryError>(())
                }
            })
            .collect();
        drop(done_tx);
        let unpacker = async {
            let mut ready = vec![false; stack.len()];
            let mut next = 0;
            while let Some(index) = done_rx.recv().await {
                ready[index] = true;
                let mut upto = next;
                while upto < ready.len() && ready[upto] {
                    upto += 1;
                }
                if upto > next {
                    let store = store.clone();
                    let prefix = stack[..upto].to_vec();
                    tokio::task::spawn_blocking(move || store.unpack_layers(&prefix)).await??;
                    next = upto;
                }
            }
            Ok::<(), RegistryError>(())
        };
        let (downloaded, unpacked) = tokio::join!(join_all(downloads), unpacker);
        downloaded.into_iter().collect::<Result<Vec<()>>>()?;
        unpacked
    }

    /// Downloads one blob into the store unless it is there; verified against its digest
    /// and size before it is committed. A corrupt body is fetched once more before giving up.
    pub(crate) async fn fetch_blob(
        &self,
        store: &Store,
        repo: &Repo,
        descriptor: &Descriptor,
    ) -> Result<()> {
        self.fetch_blob_unpacking(store, repo, descriptor, None)
            .await
    }

    /// [`Registry::fetch_blob`], unpacking the layer while it downloads when `unpack`
    /// says how (best effort: see `sink`).
    async fn fetch_blob_unpacking(
        &self,
        store: &Store,
        repo: &Repo,
        descriptor: &Descriptor,
        unpack: Option<StreamUnpack>,
    ) -> Result<()> {
        let exists = {
            let store = store.clone();
            let digest = descriptor.digest.clone();
            tokio::task::spawn_blocking(move || store.keep_existing_blob(&digest)).await??
        };
        if exists {
            self.event(TransferEvent::BlobDone {
                digest: descriptor.digest.to_string(),
                size: descriptor.size,
                outcome: BlobOutcome::Existed,
            });
            return Ok(());
        }
        self.event(TransferEvent::BlobStarted {
            digest: descriptor.digest.to_string(),
            size: descriptor.size,
        });
        let mut tries = 0;
        loop {
            tries += 1;
            match self.download(store, repo, descriptor, unpack.clone()).await {
                Err(err @ RegistryError::DigestMismatch { .. }) if tries < 2 => {
                    self.event(TransferEvent::Retrying {
                        what: repo.url(&format!("blobs/{}", descriptor.digest)),
                        attempt: tries,
                        reason: err.to_string(),
                    });
                }
                Err(err) => return Err(err),
                Ok(()) => break,
            }
        }
        self.event(TransferEvent::BlobDone {
            digest: descriptor.digest.to_string(),
            size: descriptor.size,
            outcome: BlobOutcome::Downloaded,
        });
        Ok(())
    }

    async fn download(
        &self,
        store: &Store,
        repo: &Repo,
        descriptor: &Descriptor,
        unpack: Option<StreamUnpack>,
    ) -> Result<()> {
        let url = repo.url(&format!("blobs/{}", descriptor.digest));
        let (sender, receiver) = mpsc::channel::<Chunk>(16);
        let writer = {
            let store = store.clone();
            let digest = descriptor.digest.clone();
            tokio::task::spawn_blocking(move || write_chunks(&store, receiver, &digest, unpack))
        };
        let streamed = self.stream_blob(repo, &url, descriptor, &sender).await;
        let finished = match streamed {
            Ok(()) => sender.send(Chunk::Finish).await.is_ok(),
            Err(_) => false,
        };
        drop(sender);
        let written = writer.await?;
        streamed?;
        if !finished {
            // The writer stopped early: its own error says why.
            written?;
            return Ok(());
        }
        match written {
            Ok(_) => Ok(()),
            Err(rbuild_store::Error::DigestMismatch { expected, actual }) => {
                Err(RegistryError::DigestMismatch {
                    what: "blob",
                    url,
                    expected,
                    actual,
                })
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Streams the blob at `url` to `sender`, resuming after broken connections.
    async fn stream_blob(
        &self,
        repo: &Repo,
        url: &str,
        blob: &Descriptor,
        sender: &mpsc::Sender<Chunk>,
    ) -> Result<()> {
        let size = blob.size;
        let mismatch = |received| RegistryError::SizeMismatch {
            url: url.to_owned(),
            digest: blob.digest.clone(),
            expected: size,
            actual: received,
        };
        let mut received: u64 = 0;
        let mut attempt = 0;
        let retries = self.config.transfer.retries;
        loop {
            let offset = received;
            let response = self
                .send(repo, url, true, || {
                    let mut headers = HeaderMap::new();
                    if offset > 0 {
                        headers.insert(
                            header::RANGE,
                            HeaderValue::from_str(&format!("bytes={offset}-"))
                                .expect("a range is a valid header"),
                        );
                    }
                    (Method::GET, headers, None)
                })
                .await?;
            match response.status() {
                StatusCode::PARTIAL_CONTENT
                    if offset > 0 && range_start(&response) == Some(offset) => {}
                StatusCode::OK => {
                    if received > 0 {
                        // The registry ignored the range: start over.
                        sender.send(Chunk::Restart).await.map_err(|_| closed())?;
                        received = 0;
                    }
                }
                StatusCode::NOT_FOUND => {
                    return Err(RegistryError::NotFound {
                        reference: url.to_owned(),
                    });
                }
                _ => {
                    check_status(response, "GET", url).await?;
                    return Err(RegistryError::InvalidManifest {
                        url: url.to_owned(),
                        reason: "the registry answered a range request with the wrong range"
                            .to_owned(),
                    });
                }
            }
            let mut response = response;
            let broken = loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        received += chunk.len() as u64;
                        if received > size {
                            return Err(mismatch(received));
                        }
                        sender
                            .send(Chunk::Data(chunk))
                            .await
                            .map_err(|_| closed())?;
                    }
                    Ok(None) => break None,
                    Err(err) => break Some(describe(&err)),
                }
            };
            if broken.is_none() && received == size {
                return Ok(());
            }
            let reason = broken.unwrap_or_else(|| {
                format!("the connection closed after {received} of {size} bytes")
            });
            attempt += 1;
            if attempt > retries {
                return Err(mismatch(received));
            }
            self.event(TransferEvent::Retrying {
                what: url.to_owned(),
                attempt,
                reason,
            });
            tokio::time::sleep(backoff(attempt)).await;
        }
    }
}

fn closed() -> RegistryError {
    RegistryError::Io {
        action: "write a downloaded blob into",
        path: "the store".into(),
        source: std::io::Error::from(std::io::ErrorKind::BrokenPipe),
    }
}

/// The first byte of a `Content-Range: bytes 100-199/200` answer.
fn range_start(response: &reqwest::Response) -> Option<u64> {
    let value = response
        .headers()
        .get(header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    content_range_start(value)
}

/// The first byte of a `Content-Range` value (`bytes 100-199/200` → 100).
pub(crate) fn content_range_start(value: &str) -> Option<u64> {
    let range = value.strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// Polls futures together and returns their results in order.
pub(crate) async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, result) in futures.iter_mut().zip(results.iter_mut()) {
            if result.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *result = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results
        .into_iter()
        .map(|r| r.expect("every future finished"))
        .collect()
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], url: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|err| RegistryError::InvalidManifest {
        url: url.to_owned(),
        reason: format!("not a valid manifest: {err}"),
    })
}
