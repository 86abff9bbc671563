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
        let store = self.builder.store.clone();
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
    /// cache, written to the store and named; with what the build recorded.
    pub(crate) async fn finish(
        &self,
        states: &[State],
        traces: Traces,
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
        let mut times = self.records().op_times.clone();
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
            images.push((target.platform.clone(), config, layers, undated));
        }
        let store = self.builder.store.clone();
        let tags = self.opts.tags.clone();
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
            } = write_images(&store, images)?;
            // A build cancelled until now names nothing.
            if cancel.is_cancelled() {
                return Err(BuildError::Cancelled);
            }
            for tag in &tags {
                store.tag(tag, &manifest.digest)?;
            }
            // After the image exists: the record names it, and `rbuild prune` keeps it as
            // long as the image is named.
            for (key, record) in undated_records {
                store.cache_put(&key, &record)?;
            }
            Ok(BuildResult {
                config,
                manifest,
                platforms,
                tags,
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
}

/// One platform's assembled image: its config and layers, and the cache record of an
/// image nothing dates (see `image::undated_key`).
type Assembled = (
    rbuild_frontend::Platform,
    rbuild_store::oci::ImageConfiguration,
    Vec<rbuild_store::oci::Descriptor>,
    Option<(String, rbuild_store::CacheRecord)>,
);

/// Writes every platform's image, and an index over them when there are several; returns
/// the image's (or index's) descriptor and id, each platform's image, and the undated
/// images' cache records (with the image set) to write once the name is set.
fn write_images(
    store: &rbuild_store::Store,
    images: Vec<Assembled>,
) -> Result<Written, BuildError> {
    let multi = images.len() > 1;
    let mut platforms = Vec::new();
    let mut undated_records = Vec::new();
    for (platform, config, layers, undated) in images {
        let mut manifest = store.write_image(&config, layers)?;
        if multi {
            manifest.platform = Some(crate::bases::oci_platform(&platform));
        }
        let config = store.image_by_manifest(&manifest.digest)?.config_digest;
        if let Some((key, mut record)) = undated {
            record.image = Some(manifest.digest.clone());
            undated_records.push((key, record));
        }
        platforms.push(PlatformImage {
            platform,
            manifest,
            config,
        });
    }
    let (manifest, config) = if multi {
        let manifests = platforms.iter().map(|p| p.manifest.clone()).collect();
        let index = store.write_index(manifests)?;
        let digest = index.digest.clone();
        (index, digest)
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

/// What [`write_images`] wrote.
struct Written {
    manifest: rbuild_store::oci::Descriptor,
    config: rbuild_store::Digest,
    platforms: Vec<PlatformImage>,
    undated_records: Vec<(String, rbuild_store::CacheRecord)>,
}
