//! The end of a build: its background work finished and its leftovers discarded whether
//! or not it succeeded; then, for a solved build, every platform's image assembled from
//! the steps' results, written, gathered in an index when there are several, and named.

use rbuild_frontend::BuildGraph;

use crate::error::BuildError;
use crate::explain::Traces;
use crate::progress::Event;
use crate::solve::{BuildResult, PlatformImage, SolveContext};
use crate::state::State;

impl SolveContext {
    /// After the steps, whether they succeeded or not: background work finishes (or
    /// fails), unused snapshots go, and the contexts' checksums are kept for next time.
    pub(crate) async fn clean_up(&self) -> Result<(), BuildError> {
        let background = self.finish_background().await;
        let unused =
            std::mem::take(&mut *self.work.unused.lock().unwrap_or_else(|e| e.into_inner()));
        let store = self.builder.snapshots.clone();
        tokio::task::spawn_blocking(move || {
            for active in unused {
                let _ = store.discard(active);
            }
        })
        .await?;
        self.sources.context.save_hashes(&self.builder.store);
        for named in self.sources.named.values() {
            named.save_hashes(&self.builder.store);
        }
        background
    }

    /// The image of a solved build: its layers fetched where they came from an imported
    /// cache, written to the store with its annotations and attestations, and named; with
    /// what the build recorded. `started` is when the build started (Unix seconds).
    pub(crate) async fn finish(
        &self,
        states: &[State],
        traces: Traces,
        started: i64,
    ) -> Result<BuildResult, BuildError> {
        let exported_traces = serde_json::to_value(traces.redacted()).ok();
        let misses = std::mem::take(&mut self.records().misses);
        // Layers that came from an imported cache: fetched now if an image has them.
        let mut roots = Vec::new();
        for target in &self.targets {
            roots.push(self.materialize(&states[target.output.root.0]).await?);
        }
        self.record_remote_hits().await?;
        let cache_records = self.export_records().await?;
        let cache_mounts = crate::remote::cache_mount_ids(&self.graph);
        self.progress.event(Event::Exporting);
        let images = self.assemble_images(states, roots).await?;
        let store = self.builder.store.clone();
        let snapshots = self.builder.snapshots.clone();
        let opts = self.opts.clone();
        let (cached, executed) = {
            let records = self.records();
            (records.cached, records.executed)
        };
        let cancel = self.cancel.clone();
        tokio::task::spawn_blocking(move || -> Result<BuildResult, BuildError> {
            let Written {
                manifest,
                config,
                platforms,
                undated_records,
            } = write_images(&store, images, &opts, started)?;
            // A build cancelled until now names nothing.
            if cancel.is_cancelled() {
                return Err(BuildError::Cancelled);
            }
            for tag in &opts.tags {
                store.tag(tag, &manifest.digest)?;
            }
            // After the image exists: the record names it, and `rbuild prune` keeps it as
            // long as the image is named.
            for (key, record) in undated_records {
                snapshots.cache_put(&key, &record)?;
            }
            Ok(BuildResult {
                config,
                manifest,
                platforms,
                tags: opts.tags,
                cached,
                executed,
                misses,
                cache_records,
                cache_mounts,
                traces: exported_traces,
            })
        })
        .await?
    }

    /// Each platform's image config and layers, with what its annotations and
    /// attestations need: its base, its undated record, its materials.
    async fn assemble_images(
        &self,
        states: &[State],
        roots: Vec<State>,
    ) -> Result<Vec<Assembled>, BuildError> {
        let mut times = self.records().op_times.clone();
        let op_inputs = std::mem::take(&mut self.records().op_inputs);
        let git = self.opts.attest.invocation.git.as_ref();
        let mut images = Vec::new();
        for (target, root) in self.targets.iter().zip(roots) {
            // The merged graph with this platform's output.
            let graph = BuildGraph {
                ops: self.graph.ops.clone(),
                output: target.output.clone(),
            };
            let root_layers = root.resolved_layers().await?;
            let undated = self
                .date_undated(&graph, states, &root_layers, &mut times)
                .await?;
            let bases = &self.sources.bases;
            let (config, layers) =
                crate::image::assemble(&graph, states, root_layers, &times, bases, &self.opts)?;
            let root_platform = &graph.op(target.output.root).platform;
            let base = target.output.base.as_ref().and_then(|reference| {
                let image = bases.get(reference, root_platform)?;
                Some((reference.clone(), image.clone()))
            });
            images.push(Assembled {
                platform: target.platform.clone(),
                config,
                layers,
                undated,
                base,
                materials: crate::attest::materials(
                    &self.graph,
                    target.output.root,
                    &op_inputs,
                    git,
                ),
            });
        }
        Ok(images)
    }
}

/// One platform's assembled image: its config and layers, the cache record of an image
/// nothing dates (see `image::undated_key`), its last stage's base image by name, and
/// what it was made from.
struct Assembled {
    platform: rbuild_frontend::Platform,
    config: rbuild_store::oci::ImageConfiguration,
    layers: Vec<rbuild_store::oci::Descriptor>,
    undated: Option<(String, rbuild_store::CacheRecord)>,
    base: Option<(String, rbuild_store::Image)>,
    materials: Vec<crate::attest::Material>,
}

/// Writes every platform's image with its annotations and attestations, and an index
/// over them when there are several or any attestation; returns the image's (or index's)
/// descriptor and id, each platform's image, and the undated images' cache records (with
/// the image set) to write once the name is set.
fn write_images(
    store: &rbuild_store::Store,
    images: Vec<Assembled>,
    opts: &crate::solve::BuildOptions,
    started: i64,
) -> Result<Written, BuildError> {
    use crate::attest::{AnnotationLevel, annotations_for};
    let indexed = images.len() > 1 || opts.attest.in_index();
    let mut platforms = Vec::new();
    let mut attestations = Vec::new();
    let mut undated_records = Vec::new();
    for image in images {
        let written = write_image(store, image, opts, indexed, started)?;
        platforms.push(written.image);
        attestations.extend(written.attestations);
        undated_records.extend(written.undated);
    }
    // The id: the index's for several platforms, else the one image's config (as docker
    // shows an image with attestations).
    let (manifest, config) = if indexed {
        let manifests = platforms
            .iter()
            .map(|p| p.manifest.clone())
            .chain(attestations)
            .collect();
        let index = store.write_annotated_index(
            manifests,
            annotations_for(&opts.annotations, AnnotationLevel::Index, None),
        )?;
        let id = match platforms.as_slice() {
            [only] => only.config.clone(),
            _ => index.digest.clone(),
        };
        (index, id)
    } else {
        (platforms[0].manifest.clone(), platforms[0].config.clone())
    };
    Ok(Written {
        manifest,
        config,
        platforms,
        undated_records,
    })
}

/// What [`write_image`] wrote for one platform.
struct WrittenImage {
    image: PlatformImage,
    /// Its attestation manifest, for the index.
    attestations: Option<rbuild_store::oci::Descriptor>,
    /// Its undated cache record, naming the manifest.
    undated: Option<(String, rbuild_store::CacheRecord)>,
}

/// Writes one platform's image with its annotations (and, `indexed`, those of its entry
/// in the index) and its attestations: as OCI referrers, or as an attestation manifest
/// for the index.
fn write_image(
    store: &rbuild_store::Store,
    image: Assembled,
    opts: &crate::solve::BuildOptions,
    indexed: bool,
    started: i64,
) -> Result<WrittenImage, BuildError> {
    use crate::attest::{AnnotationLevel, annotations_for};
    let platform = Some(&image.platform);
    let mut annotations = crate::attest::default_annotations(
        image.config.created.as_deref(),
        image
            .base
            .as_ref()
            .map(|(name, base)| (name.as_str(), base)),
        opts.attest.invocation.git.as_ref(),
    );
    annotations.extend(annotations_for(
        &opts.annotations,
        AnnotationLevel::Manifest,
        platform,
    ));
    let mut manifest =
        store.write_annotated_image(&image.config, image.layers.clone(), annotations)?;
    if indexed {
        manifest.platform = Some(crate::bases::oci_platform(&image.platform));
        manifest.annotations = annotations_for(
            &opts.annotations,
            AnnotationLevel::ManifestDescriptor,
            platform,
        );
    }
    // The config's digest, as the store wrote it (its canonical JSON).
    let config = rbuild_store::Digest::of(&rbuild_store::oci::canonical_json(&image.config));
    let undated = image.undated.map(|(key, mut record)| {
        record.image = Some(manifest.digest.clone());
        (key, record)
    });
    let statements = crate::attest::statements(
        store,
        opts,
        &image.platform,
        &manifest,
        &image.config,
        &image.layers,
        image.materials,
        started,
    )?;
    let mut attestations = None;
    if opts.attest.format == crate::attest::AttestFormat::Oci {
        // This build's attestations, not those an earlier build of the same image left as
        // its referrers. (In the index form they come with the index: the referrers
        // another name's build attached stay.)
        store.remove_build_referrers(&manifest.digest)?;
        for statement in &statements {
            store.write_referrer(&manifest, statement)?;
        }
    } else if !statements.is_empty() {
        attestations = Some(store.write_attestations(&manifest, &statements)?);
    }
    Ok(WrittenImage {
        image: PlatformImage {
            platform: image.platform,
            manifest,
            config,
        },
        attestations,
        undated,
    })
}

/// What [`write_images`] wrote.
struct Written {
    manifest: rbuild_store::oci::Descriptor,
    config: rbuild_store::Digest,
    platforms: Vec<PlatformImage>,
    undated_records: Vec<(String, rbuild_store::CacheRecord)>,
}
