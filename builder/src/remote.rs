//! Build caches imported from registries, on the builder's side: steps found in an
//! imported cache, their layers fetched only when a step needs their files or the image
//! has them, their records kept in the local cache afterwards; and the records a build
//! hands back for `--cache-to`.

use std::collections::HashSet;

use rbuild_frontend::{BuildGraph, OpId};
use rbuild_store::oci::Descriptor;
use rbuild_store::registry::CacheExportRecord;
use rbuild_store::{CachedLayer, Digest, Reference, SnapshotName};

use crate::cache::CacheKey;
use crate::error::BuildError;
use crate::solve::{Layer, SolveContext, State};

impl SolveContext {
    /// Remembers a step's record for `--cache-to`.
    pub(crate) fn export(
        &self,
        id: OpId,
        key: &CacheKey,
        parent_key: Option<&CacheKey>,
        op: &rbuild_frontend::Op,
        parent: &State,
        state: &State,
    ) {
        let layer = (state.layers.len() > parent.layers.len()).then(|| {
            let layer = state.layers.last().expect("a layer was added");
            CachedLayer {
                descriptor: layer.descriptor.clone(),
                diff_id: layer.diff_id.clone(),
            }
        });
        self.exports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((
                id,
                CacheExportRecord {
                    key: key.to_string(),
                    parent: parent_key.map(ToString::to_string),
                    layer,
                    description: op.description.clone(),
                },
            ));
    }

    /// The state after a step found in an imported cache: its parent's plus the record's
    /// layer, which is not fetched yet.
    pub(crate) fn remote_hit(
        &self,
        key: &CacheKey,
        op: &rbuild_frontend::Op,
        parent: &State,
    ) -> Option<State> {
        let (source, layer) = self.opts.cache_from.iter().find_map(|import| {
            import
                .get(key.as_str())
                .map(|(_, layer)| (import.source.clone(), layer))
        })?;
        let mut state = parent.clone();
        if let Some(layer) = layer {
            state.top = Some(SnapshotName::chain(parent.top.as_ref(), &layer.diff_id));
            self.remote_blobs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(layer.descriptor.digest.clone(), source.clone());
            state.layers.push(Layer {
                descriptor: layer.descriptor,
                diff_id: layer.diff_id,
            });
        }
        self.remote_hits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(RemoteHit {
                key: key.clone(),
                description: op.description.clone(),
                parent: parent.clone(),
                state: state.clone(),
                source,
            });
        Some(state)
    }

    /// Makes sure `state`'s layers are unpacked as snapshots, fetching the layers of
    /// imported cache records the store lacks.
    pub(crate) async fn materialize(&self, state: &State) -> Result<(), BuildError> {
        let store = self.builder.store.clone();
        let layers: Vec<(Descriptor, Digest)> = state
            .layers
            .iter()
            .map(|l| (l.descriptor.clone(), l.diff_id.clone()))
            .collect();
        let top = state.top.clone();
        let missing = {
            let store = store.clone();
            let layers = layers.clone();
            tokio::task::spawn_blocking(move || -> Result<Vec<Descriptor>, BuildError> {
                if let Some(top) = &top
                    && store.snapshot(top)?.is_some()
                {
                    return Ok(Vec::new());
                }
                let mut missing = Vec::new();
                let mut parent: Option<SnapshotName> = None;
                for (descriptor, diff_id) in &layers {
                    let name = SnapshotName::chain(parent.as_ref(), diff_id);
                    if store.snapshot(&name)?.is_none() && !store.has_content(&descriptor.digest)? {
                        missing.push(descriptor.clone());
                    }
                    parent = Some(name);
                }
                Ok(missing)
            })
            .await??
        };
        if state.top.is_none() {
            return Ok(());
        }
        for descriptor in missing {
            let source = self
                .remote_blobs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&descriptor.digest)
                .cloned();
            let (Some(source), Some(registry)) = (source, &self.builder.registry) else {
                return Err(rbuild_store::Error::BlobNotFound {
                    digest: descriptor.digest.clone(),
                }
                .into());
            };
            registry
                .pull_cache_layer(&store, &source, &descriptor)
                .await
                .map_err(|err| BuildError::CacheLayer {
                    digest: descriptor.digest.clone(),
                    description: self.description_of(&descriptor.digest),
                    source_ref: source.to_string(),
                    source: Box::new(err),
                })?;
        }
        tokio::task::spawn_blocking(move || store.unpack_layers(&layers)).await??;
        Ok(())
    }

    fn description_of(&self, blob: &Digest) -> String {
        self.remote_hits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|hit| {
                hit.state
                    .layers
                    .last()
                    .is_some_and(|l| &l.descriptor.digest == blob)
            })
            .map(|hit| hit.description.clone())
            .unwrap_or_default()
    }

    /// Records the steps taken from imported caches in the local cache: with their
    /// snapshot when their layer was fetched, else with the cache to fetch it from, so a
    /// later build finds them without `--cache-from` and still fetches only what it needs.
    pub(crate) async fn record_remote_hits(&self) -> Result<(), BuildError> {
        let hits = std::mem::take(&mut *self.remote_hits.lock().unwrap_or_else(|e| e.into_inner()));
        for hit in hits {
            let present = match &hit.state.top {
                Some(top) => {
                    let store = self.builder.store.clone();
                    let top = top.clone();
                    tokio::task::spawn_blocking(move || store.snapshot(&top))
                        .await??
                        .is_some()
                }
                None => true,
            };
            let remote = (!present).then(|| hit.source.to_string());
            self.record(&hit.key, &hit.description, &hit.parent, &hit.state, remote)
                .await?;
        }
        Ok(())
    }
}

/// A step taken from an imported cache.
pub(crate) struct RemoteHit {
    key: CacheKey,
    description: String,
    parent: State,
    state: State,
    /// The cache it came from, pinned by digest.
    source: Reference,
}

/// The ops whose results are in the image: the output's chain of filesystem parents.
pub(crate) fn result_ops(graph: &BuildGraph) -> HashSet<OpId> {
    let mut ops = HashSet::new();
    let mut current = Some(graph.output.root);
    while let Some(id) = current {
        ops.insert(id);
        current = graph.op(id).kind.rootfs();
    }
    ops
}
