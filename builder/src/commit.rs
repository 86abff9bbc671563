//! Committing what a step produced: its state handed on at once, its layer measured,
//! committed and recorded in the cache in the background (see `state`); and the state
//! after a step taken from the cache.

use rbuild_store::layer::LayerOptions;
use rbuild_store::{ActiveSnapshot, CacheRecord, CachedLayer, Reference, SnapshotName};

use crate::cache::CacheKey;
use crate::error::BuildError;
use crate::solve::SolveContext;
use crate::state::{Layer, LayerRef, State};

impl SolveContext {
    /// The state after a cached op: its parent's layers plus the recorded one, over the
    /// recorded snapshot chain's directories.
    pub(crate) async fn cached_state(
        &self,
        parent: &State,
        record: &CacheRecord,
    ) -> Result<State, BuildError> {
        let (Some(layer), Some(snapshot)) = (&record.layer, &record.snapshot) else {
            return Ok(parent.clone());
        };
        let name = SnapshotName::from_digest(snapshot.clone());
        let store = self.builder.snapshots.clone();
        let lookup = name.clone();
        let lowers = tokio::task::spawn_blocking(move || match store.snapshot(&lookup)? {
            Some(_) => store.lowers(&lookup).map(Some),
            None => Ok(None),
        })
        .await??;
        let Some(lowers) = lowers else {
            // Imported from a registry cache and never needed as files so far.
            let source = record
                .remote
                .as_deref()
                .and_then(|r| r.parse::<Reference>().ok())
                .ok_or_else(|| rbuild_store::Error::SnapshotNotFound {
                    name: snapshot.to_string(),
                })?;
            return Ok(self.remote_state(parent, Some(layer.clone()), &source));
        };
        let mut layers = parent.layers.clone();
        layers.push(LayerRef::Ready(
            Layer {
                descriptor: layer.descriptor.clone(),
                diff_id: layer.diff_id.clone(),
            },
            name,
        ));
        Ok(State { lowers, layers })
    }

    /// Hands a finished step's filesystem on at once and measures, commits and records its
    /// layer in the background (see `state`). `keep_empty` unset: an unchanged filesystem
    /// adds no layer (WORKDIR of an existing directory).
    pub(crate) async fn commit_pipelined(
        &self,
        key: &CacheKey,
        op: &rbuild_frontend::Op,
        parent: &State,
        active: ActiveSnapshot,
        keep_empty: bool,
        known: Option<rbuild_store::NewLayer>,
    ) -> Result<State, BuildError> {
        let store = self.builder.snapshots.clone();
        let options = LayerOptions {
            clamp_mtime: self
                .opts
                .source_date_epoch
                .and_then(|e| u64::try_from(e).ok()),
        };
        let mut record = CacheRecord {
            layer: None,
            snapshot: None,
            description: op.description.clone(),
            created: rbuild_store::time::now_unix(),
            last_used: rbuild_store::time::now_unix(),
            size: 0,
            remote: None,
            image: None,
        };
        let key = key.to_string();
        let parent_top = parent.layers.last().cloned();
        if !keep_empty && is_empty_dir(&active.upper) {
            let discard = store.clone();
            tokio::task::spawn_blocking(move || discard.discard(active)).await??;
            self.background(failing_as(op, async move {
                record.snapshot = match parent_top {
                    Some(top) => Some(top.get().await?.1.digest().clone()),
                    None => None,
                };
                tokio::task::spawn_blocking(move || store.cache_put(&key, &record)).await??;
                Ok(())
            }));
            return Ok(parent.clone());
        }
        let mut state = parent.clone();
        state.lowers.insert(0, active.upper.clone());
        let unused = self.work.unused.clone();
        let cpu = self.work.cpu.clone();
        let (sender, layer) = LayerRef::pending();
        state.layers.push(layer);
        self.background(failing_as(op, async move {
            let job = CommitJob {
                store: store.clone(),
                active,
                known,
                options,
                cpu,
                unused,
            };
            match job.run(parent_top).await {
                Ok(((layer, name), size)) => {
                    record.layer = Some(CachedLayer {
                        descriptor: layer.descriptor.clone(),
                        diff_id: layer.diff_id.clone(),
                    });
                    record.snapshot = Some(name.digest().clone());
                    record.size = size;
                    sender.send_replace(Some(Ok((layer, name))));
                    tokio::task::spawn_blocking(move || store.cache_put(&key, &record)).await??;
                    Ok(())
                }
                Err(err) => {
                    // The whole cause, for the steps that waited for this layer.
                    sender.send_replace(Some(Err(crate::error::with_causes(&err))));
                    Err(err)
                }
            }
        }));
        Ok(state)
    }

    /// Waits for every background task; the first failure is the result.
    pub(crate) async fn finish_background(&self) -> Result<(), BuildError> {
        let mut tasks = std::mem::take(
            &mut *self
                .work
                .background
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let mut result = Ok(());
        while let Some(joined) = tasks.join_next().await {
            let outcome = joined.map_err(BuildError::Join).and_then(|r| r);
            if let (Err(err), Ok(())) = (outcome, &result) {
                result = Err(err);
            }
        }
        result
    }

    /// Runs `task` beside the build; the build waits for it before it finishes.
    pub(crate) fn background(
        &self,
        task: impl std::future::Future<Output = Result<(), BuildError>> + Send + 'static,
    ) {
        let mut tasks = self
            .work
            .background
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        tasks.spawn(task);
    }
}

/// `task`, whose failures in the store are `op`'s: the error names its line.
fn failing_as(
    op: &rbuild_frontend::Op,
    task: impl std::future::Future<Output = Result<(), BuildError>> + Send + 'static,
) -> impl std::future::Future<Output = Result<(), BuildError>> + Send + 'static {
    let (span, description) = (op.span, op.description.clone());
    async move { task.await.map_err(|err| err.in_step(span, &description)) }
}

fn is_empty_dir(path: &std::path::Path) -> bool {
    std::fs::read_dir(path)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

/// A step's upper dir to measure as a layer and commit as a snapshot, in the background.
struct CommitJob {
    store: std::sync::Arc<dyn crate::snapshots::Snapshots>,
    active: ActiveSnapshot,
    /// The layer, when it is known already (a restacked `COPY --link`).
    known: Option<rbuild_store::NewLayer>,
    options: LayerOptions,
    cpu: std::sync::Arc<tokio::sync::Semaphore>,
    unused: std::sync::Arc<std::sync::Mutex<Vec<ActiveSnapshot>>>,
}

impl CommitJob {
    /// The layer (measured unless known, one per core at a time) and its snapshot,
    /// committed on `parent_top`'s once that one is; with the snapshot's size. On failure
    /// the snapshot goes when the build ends, as later steps may be reading it.
    async fn run(
        self,
        parent_top: Option<LayerRef>,
    ) -> Result<((Layer, rbuild_store::SnapshotName), u64), BuildError> {
        let CommitJob {
            store,
            mut active,
            known,
            options,
            cpu,
            unused,
        } = self;
        let keep_until_the_end = move |active: ActiveSnapshot| {
            unused
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(active);
        };
        let ready = async {
            let new_layer = match known {
                Some(layer) => layer,
                None => {
                    let _permit = cpu
                        .acquire_owned()
                        .await
                        .map_err(|_| BuildError::Cancelled)?;
                    let (measuring, upper) = (store.clone(), active.upper.clone());
                    tokio::task::spawn_blocking(move || measuring.create_layer(&upper, options))
                        .await??
                }
            };
            let parent = match &parent_top {
                Some(top) => Some(top.get().await?.1),
                None => None,
            };
            Ok::<_, BuildError>((new_layer, parent))
        };
        let (new_layer, parent) = match ready.await {
            Ok(ready) => ready,
            Err(err) => {
                keep_until_the_end(active);
                return Err(err);
            }
        };
        active.parent = parent;
        let (name, size, new_layer) =
            tokio::task::spawn_blocking(move || -> Result<_, rbuild_store::Error> {
                let (name, duplicate) = match store.commit_layer(active, &new_layer) {
                    Ok(committed) => committed,
                    Err(uncommitted) => {
                        keep_until_the_end(*uncommitted.active);
                        return Err(uncommitted.error);
                    }
                };
                // Same content as a snapshot the store has: later steps may be running
                // over this directory, so it goes when the build ends.
                if let Some(duplicate) = duplicate {
                    keep_until_the_end(duplicate);
                }
                let size = store.snapshot(&name)?.map_or(0, |s| s.size);
                Ok((name, size, new_layer))
            })
            .await??;
        let layer = Layer {
            descriptor: new_layer.descriptor,
            diff_id: new_layer.diff_id,
        };
        Ok(((layer, name), size))
    }
}
