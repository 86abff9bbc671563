//! Build caches imported from registries, on the builder's side: steps found in an
//! imported cache, their layers fetched only when a step needs their files or the image
//! has them, their records kept in the local cache afterwards; and the records a build
//! hands back for `--cache-to`.

use std::collections::{HashMap, HashSet};

use rbuild_frontend::{BuildGraph, ExecMount, ExecOp, OpId, OpKind};
use rbuild_registry::CacheExportRecord;
use rbuild_store::oci::Descriptor;
use rbuild_store::{CacheRecord, CachedLayer, Digest, Reference, SnapshotName};

use crate::cache::CacheKey;
use crate::error::BuildError;
use crate::progress::{Event, Stream};
use crate::solve::{Done, SolveContext};
use crate::state::{Layer, LayerRef, State};

/// A step's record for `--cache-to`, kept until its layer is measured.
pub(crate) struct PendingExport {
    id: OpId,
    key: String,
    parent: Option<String>,
    description: String,
    layer: Option<LayerRef>,
}

/// A step taken from an imported cache.
pub(crate) struct RemoteHit {
    key: CacheKey,
    description: String,
    parent: State,
    state: State,
    /// The cache it came from, pinned by digest.
    source: Reference,
    /// When the step's result was made, as the cache says.
    created: i64,
}

impl SolveContext {
    /// Remembers a step's record for `--cache-to`: its key, its parent's, and the layer
    /// it added to its parent's state, if any.
    pub(crate) fn export(&self, id: OpId, key: &CacheKey, parent: &Done, state: &State) {
        let layer = (state.layers.len() > parent.output.layers.len())
            .then(|| state.layers.last().cloned())
            .flatten();
        self.records().exports.push(PendingExport {
            id,
            key: key.to_string(),
            parent: Some(parent.key.to_string()),
            description: self.graph.op(id).description.clone(),
            layer,
        });
    }

    /// Every step's record for `--cache-to`, with whether the step's result is in the
    /// image (`mode=min` exports only those). Waits for layers still being measured.
    pub(crate) async fn export_records(
        &self,
    ) -> Result<Vec<(CacheExportRecord, bool)>, BuildError> {
        let roots = self.targets.iter().map(|target| target.output.root);
        let in_result = result_ops(&self.graph, roots);
        let (times, pending) = {
            let mut records = self.records();
            (
                records.op_times.clone(),
                std::mem::take(&mut records.exports),
            )
        };
        let mut records = Vec::with_capacity(pending.len());
        for export in pending {
            let layer = match &export.layer {
                Some(layer) => {
                    let layer = layer.layer().await?;
                    Some(CachedLayer {
                        descriptor: layer.descriptor,
                        diff_id: layer.diff_id,
                    })
                }
                None => None,
            };
            records.push((
                CacheExportRecord {
                    key: export.key,
                    parent: export.parent,
                    layer,
                    description: export.description,
                    created: times.get(&export.id).copied(),
                },
                in_result.contains(&export.id),
            ));
        }
        Ok(records)
    }

    /// The state after a step whose layer is in a registry cache: its parent's plus that
    /// layer, not fetched yet.
    pub(crate) fn remote_state(
        &self,
        parent: &State,
        layer: Option<CachedLayer>,
        source: &Reference,
    ) -> State {
        let mut state = parent.clone();
        if let Some(layer) = layer {
            self.sources
                .remote_blobs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(layer.descriptor.digest.clone(), source.clone());
            state.layers.push(LayerRef::Remote(Layer {
                descriptor: layer.descriptor,
                diff_id: layer.diff_id,
            }));
        }
        state
    }

    /// The state after a step found in an imported cache (`--cache-from`), if one has it.
    /// With the state comes when the step's result was made (now, if the cache does not
    /// say).
    pub(crate) fn remote_hit(
        &self,
        key: &CacheKey,
        op: &rbuild_frontend::Op,
        parent: &State,
    ) -> Option<(State, i64)> {
        let (source, layer, created) = self.opts.cache_from.iter().find_map(|import| {
            import
                .get(key.as_str())
                .map(|(record, layer)| (import.source.clone(), layer, record.created))
        })?;
        let created = created.unwrap_or_else(rbuild_store::time::now_unix);
        let state = self.remote_state(parent, layer, &source);
        self.records().remote_hits.push(RemoteHit {
            key: key.clone(),
            description: op.description.clone(),
            parent: parent.clone(),
            state: state.clone(),
            source,
            created,
        });
        Some((state, created))
    }

    /// `state` with every layer unpacked as a snapshot, fetching the layers of imported
    /// caches the store lacks; `state` itself when it has no such layer.
    // Long: fetch, unpack and rebuild the state are one pass over the layers, in order.
    pub(crate) async fn materialize(&self, state: &State) -> Result<State, BuildError> {
        if !state.has_remote() {
            return Ok(state.clone());
        }
        // One at a time: two steps over the same imported layers fetch them once.
        let _guard = self.work.materializing.lock().await;
        let store = self.builder.store.clone();
        let layers: Vec<(Descriptor, Digest)> = state
            .resolved_layers()
            .await?
            .into_iter()
            .map(|l| (l.descriptor, l.diff_id))
            .collect();
        let missing = {
            let store = store.clone();
            let layers = layers.clone();
            tokio::task::spawn_blocking(move || -> Result<Vec<Descriptor>, BuildError> {
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
        for descriptor in missing {
            let source = self
                .sources
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
        let unpack = layers.clone();
        let (top, lowers) = tokio::task::spawn_blocking(move || {
            let top = store.unpack_layers(&unpack)?;
            let lowers = match &top {
                Some(top) => store.lowers(top)?,
                None => Vec::new(),
            };
            Ok::<_, rbuild_store::Error>((top, lowers))
        })
        .await??;
        debug_assert!(top.is_some() || layers.is_empty());
        let mut parent: Option<SnapshotName> = None;
        let layers = layers
            .into_iter()
            .map(|(descriptor, diff_id)| {
                let name = SnapshotName::chain(parent.as_ref(), &diff_id);
                parent = Some(name.clone());
                LayerRef::Ready(
                    Layer {
                        descriptor,
                        diff_id,
                    },
                    name,
                )
            })
            .collect();
        Ok(State { lowers, layers })
    }

    fn description_of(&self, blob: &Digest) -> String {
        self.records()
            .remote_hits
            .iter()
            .find(|hit| {
                hit.state.layers.last().is_some_and(
                    |l| matches!(l, LayerRef::Remote(l) if &l.descriptor.digest == blob),
                )
            })
            .map(|hit| hit.description.clone())
            .unwrap_or_default()
    }

    /// Records the steps taken from imported caches in the local cache: with their
    /// snapshot when their layer was fetched, else with the cache to fetch it from, so a
    /// later build finds them without `--cache-from` and still fetches only what it needs.
    pub(crate) async fn record_remote_hits(&self) -> Result<(), BuildError> {
        let hits = std::mem::take(&mut self.records().remote_hits);
        let now = rbuild_store::time::now_unix();
        for hit in hits {
            let layers = hit.state.resolved_layers().await?;
            let top = layers
                .iter()
                .fold(None, |parent: Option<SnapshotName>, layer| {
                    Some(SnapshotName::chain(parent.as_ref(), &layer.diff_id))
                });
            let added = hit.state.layers.len() > hit.parent.layers.len();
            let store = self.builder.snapshots.clone();
            let key = hit.key.to_string();
            let source = hit.source.to_string();
            let mut record = CacheRecord {
                layer: added.then(|| {
                    let layer = layers.last().expect("a layer was added");
                    CachedLayer {
                        descriptor: layer.descriptor.clone(),
                        diff_id: layer.diff_id.clone(),
                    }
                }),
                snapshot: top.as_ref().map(|t| t.digest().clone()),
                description: hit.description,
                created: hit.created,
                last_used: now,
                size: 0,
                remote: None,
                image: None,
            };
            tokio::task::spawn_blocking(move || -> Result<(), rbuild_store::Error> {
                if let Some(top) = &top {
                    match store.snapshot(top)? {
                        Some(snapshot) if added => record.size = snapshot.size,
                        Some(_) => {}
                        None if added => record.remote = Some(source),
                        // No layer of its own and its parent's not fetched: nothing to
                        // keep that a later build could use without the cache.
                        None => return Ok(()),
                    }
                }
                store.cache_put(&key, &record)
            })
            .await??;
        }
        Ok(())
    }
}

impl SolveContext {
    /// The contents of `exec`'s cache mounts that an imported cache carries (`mounts=true`)
    /// and the store has no directory for yet, fetched: a new cache directory starts from
    /// them. A fetch that fails is reported in the step's output and the cache starts
    /// empty, as without the import.
    pub(crate) async fn import_cache_mounts(
        &self,
        step: usize,
        exec: &ExecOp,
    ) -> HashMap<String, (Descriptor, Digest)> {
        let mut imported = HashMap::new();
        let Some(registry) = &self.builder.registry else {
            return imported;
        };
        for mount in &exec.mounts {
            let ExecMount::Cache(cache) = mount else {
                continue;
            };
            if imported.contains_key(&cache.id) || self.builder.store.has_cache_mount(&cache.id) {
                continue;
            }
            let Some((source, (descriptor, diff_id))) =
                self.opts.cache_from.iter().find_map(|import| {
                    let found = import.mounts.get(&cache.id)?;
                    Some((import.source.clone(), found.clone()))
                })
            else {
                continue;
            };
            match registry
                .pull_cache_layer(&self.builder.store, &source, &descriptor)
                .await
            {
                Ok(()) => {
                    imported.insert(cache.id.clone(), (descriptor, diff_id));
                }
                Err(err) => {
                    let line = format!(
                        "WARNING: cannot import the contents of cache mount `{}` from {source}, \
                         it starts empty: {err}",
                        cache.id
                    );
                    self.progress.event(Event::Log {
                        step,
                        stream: Stream::Stderr,
                        line: line.as_bytes(),
                    });
                }
            }
        }
        imported
    }
}

/// The ids of the cache mounts the graph's RUN steps use, sorted.
pub(crate) fn cache_mount_ids(graph: &BuildGraph) -> Vec<String> {
    let mut ids: Vec<String> = graph
        .ops
        .iter()
        .filter_map(|op| match &op.kind {
            OpKind::Exec(exec) => Some(exec.mounts.iter()),
            _ => None,
        })
        .flatten()
        .filter_map(|mount| match mount {
            ExecMount::Cache(cache) => Some(cache.id.clone()),
            _ => None,
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The ops whose results are in the images: each root's chain of filesystem parents.
pub(crate) fn result_ops(
    graph: &BuildGraph,
    roots: impl IntoIterator<Item = OpId>,
) -> HashSet<OpId> {
    let mut ops = HashSet::new();
    for root in roots {
        let mut current = Some(root);
        while let Some(id) = current {
            ops.insert(id);
            current = graph.op(id).kind.rootfs();
        }
    }
    ops
}
