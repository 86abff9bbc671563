//! Solving a build: resolve base images, convert the Dockerfile, run the graph's ops with
//! the cache, assemble and name the image.
//!
//! Ops run as soon as their inputs are done, several at a time: independent stages build
//! concurrently, RUN steps wait asynchronously, file work runs on blocking threads. Each op
//! first computes its cache key; a hit reuses the recorded layer, a miss runs the op and
//! records it. Two ops with the same key in one build run once. The first failure cancels
//! the rest: running sandboxes are killed and every op cleans up after itself.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rbuild_frontend::{
    self as frontend, BindMount, BuildGraph, CopySource, ExecMount, MountSource, OpId, OpKind,
};
use rbuild_runtime::{Limits, Network, Runtime};
use rbuild_store::layer::LayerOptions;
use rbuild_store::oci::Descriptor;
use rbuild_store::registry::{CacheExportRecord, CacheImport, PullOptions, Registry};
use rbuild_store::{
    ActiveSnapshot, CacheRecord, CachedLayer, Digest, Image, ImageName, Reference, SnapshotName,
    Store,
};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cache::{CacheKey, KeyBuilder};
use crate::context::Context;
use crate::error::BuildError;
use crate::explain::{self, Trace, Traces};
use crate::ignore::IgnoreMatcher;
use crate::progress::{Event, Progress};
use crate::remote::{PendingExport, RemoteHit};
use crate::secrets::SecretSource;
use crate::state::{Layer, LayerRef, State};

/// What to build and how.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The Dockerfile's text.
    pub dockerfile: String,
    /// The build context directory.
    pub context: PathBuf,
    /// The ignore file's text (`.dockerignore`, or `<Dockerfile>.dockerignore`).
    pub ignore: Option<String>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    /// Names for the result, set only when the whole build succeeded.
    pub tags: Vec<ImageName>,
    /// The network of RUN steps that do not choose one (`RUN --network`).
    pub network: Option<Network>,
    pub limits: Limits,
    /// `SOURCE_DATE_EPOCH`: the time in the config and history, and the latest mtime in
    /// layers rbuild creates.
    pub source_date_epoch: Option<i64>,
    /// `--label`: set on the image, over the Dockerfile's.
    pub labels: BTreeMap<String, String>,
    /// Run every step, reusing nothing.
    pub no_cache: bool,
    /// Run every step of these stages (by name, any case, or index).
    pub no_cache_filter: Vec<String>,
    /// `--secret`s by id, for `RUN --mount=type=secret`; read only when a step mounts them.
    pub secrets: BTreeMap<String, SecretSource>,
    /// Pull every base image, even one the store has (`--pull`).
    pub pull: bool,
    /// Caches imported from registries (`--cache-from`), consulted after the local cache.
    /// Their layers are fetched only when a step that needs them as files runs, or when
    /// they are part of the result.
    pub cache_from: Vec<CacheImport>,
}

/// The image a build produced.
#[derive(Debug, Clone)]
pub struct BuildResult {
    pub manifest: Descriptor,
    /// The config digest: what `docker images` calls the image id.
    pub config: Digest,
    pub tags: Vec<ImageName>,
    /// Steps taken from the cache, and steps run.
    pub cached: usize,
    pub executed: usize,
    /// The steps that ran, with why they missed the cache when that is known.
    pub misses: Vec<Miss>,
    /// Every step's cache record (for `--cache-to`), with whether the step's result is
    /// part of the image (`mode=min` exports only those).
    pub cache_records: Vec<(CacheExportRecord, bool)>,
    /// The ids of the cache mounts the build's RUN steps use (for `mounts=true`).
    pub cache_mounts: Vec<String>,
    /// What went into each step's cache key, for `--cache-to` (so a build elsewhere can
    /// say why a step missed).
    pub traces: Option<serde_json::Value>,
}

/// A step that ran instead of coming from the cache.
#[derive(Debug, Clone)]
pub struct Miss {
    pub step: usize,
    pub description: String,
    /// Why, compared with the previous build of the same context and target; `None` when
    /// there was no previous build to compare with.
    pub reason: Option<String>,
}

/// Cancels a build: running sandboxes are killed, no further step starts, and the build
/// returns [`BuildError::Cancelled`] once everything is cleaned up.
#[derive(Clone)]
pub struct Cancel {
    sender: Arc<watch::Sender<bool>>,
}

impl Default for Cancel {
    fn default() -> Self {
        Cancel {
            sender: Arc::new(watch::channel(false).0),
        }
    }
}

impl Cancel {
    pub fn cancel(&self) {
        self.sender.send_replace(true);
    }

    pub fn is_cancelled(&self) -> bool {
        *self.sender.borrow()
    }

    /// Resolves once the build is cancelled.
    pub async fn cancelled(&self) {
        let mut receiver = self.sender.subscribe();
        let _ = receiver.wait_for(|cancelled| *cancelled).await;
    }
}

/// Builds images from Dockerfiles, with the store for bytes and the runtime for RUN.
#[derive(Clone)]
pub struct Builder {
    pub(crate) store: Store,
    pub(crate) runtime: Runtime,
    /// Where base images the store lacks, and layers of imported caches, come from.
    pub(crate) registry: Option<Arc<Registry>>,
}

impl Builder {
    pub fn new(store: Store, runtime: Runtime) -> Builder {
        Builder {
            store,
            runtime,
            registry: None,
        }
    }

    /// Pulls base images the store lacks (and all of them with `BuildOptions::pull`)
    /// from registries through `registry`.
    pub fn with_registry(mut self, registry: Arc<Registry>) -> Builder {
        self.registry = Some(registry);
        self
    }

    pub async fn build(
        &self,
        opts: BuildOptions,
        progress: Arc<dyn Progress>,
        cancel: Cancel,
    ) -> Result<BuildResult, BuildError> {
        let context_root =
            std::fs::canonicalize(&opts.context).map_err(|source| BuildError::Context {
                path: opts.context.clone(),
                source,
            })?;
        if !context_root.is_dir() {
            return Err(BuildError::Context {
                path: opts.context.clone(),
                source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
            });
        }
        let dockerfile = frontend::parse(&opts.dockerfile)?;
        let convert_opts = frontend::ConvertOptions {
            build_args: opts.build_args.clone(),
            target: opts.target.clone(),
            ..Default::default()
        };
        let mut bases = HashMap::new();
        let mut base_configs = BTreeMap::new();
        for reference in frontend::image_references(&dockerfile, &convert_opts)? {
            // A pull stops at once when the build is cancelled.
            let image = tokio::select! {
                image = self.base_image(&reference, opts.pull) => image?,
                () = cancel.cancelled() => return Err(BuildError::Cancelled),
            };
            base_configs.insert(
                reference.clone(),
                crate::image::frontend_config(&image.config.config),
            );
            bases.insert(reference, image);
        }
        let graph = Arc::new(frontend::convert(
            &dockerfile,
            &convert_opts,
            &base_configs,
        )?);
        let ignore = IgnoreMatcher::parse(opts.ignore.as_deref().unwrap_or(""));
        let explain_scope = format!(
            "{}|{}",
            context_root.display(),
            opts.target.as_deref().unwrap_or("")
        );
        let context = Context::open(context_root, ignore, &self.store);
        // Compared with the previous build here, or, on a machine without one (a fresh CI
        // runner), with the build that exported an imported cache.
        let mut previous = Traces::load(&self.store, &explain_scope);
        let mut previous_imported = false;
        if previous.steps.is_empty()
            && let Some(imported) = opts
                .cache_from
                .iter()
                .find_map(|import| import.traces.as_ref())
                .and_then(|traces| serde_json::from_value::<Traces>(traces.clone()).ok())
        {
            previous = imported;
            previous_imported = true;
        }
        let ctx = Arc::new(SolveContext {
            builder: self.clone(),
            opts,
            context,
            bases,
            progress,
            cancel,
            running: Mutex::new(HashMap::new()),
            counts: Mutex::new((0, 0)),
            background: Mutex::new(JoinSet::new()),
            unused: Arc::new(Mutex::new(Vec::new())),
            cpu: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            previous,
            previous_imported,
            traces: Mutex::new(Traces::default()),
            reasons: Mutex::new(HashMap::new()),
            misses: Mutex::new(Vec::new()),
            exports: Mutex::new(Vec::new()),
            remote_hits: Mutex::new(Vec::new()),
            remote_blobs: Mutex::new(HashMap::new()),
            materializing: tokio::sync::Mutex::new(()),
            urls: Mutex::new(HashMap::new()),
            http: std::sync::OnceLock::new(),
            op_times: Mutex::new(HashMap::new()),
            key_times: Mutex::new(HashMap::new()),
        });
        let states = ctx.solve(&graph).await;
        // Layers still being measured finish (or fail) before the build ends, either way.
        let background = ctx.finish_background().await;
        let unused = std::mem::take(&mut *ctx.unused.lock().unwrap_or_else(|e| e.into_inner()));
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            for active in unused {
                let _ = store.discard(active);
            }
        })
        .await?;
        ctx.context.save_hashes(&self.store);
        let states = states?;
        background?;
        let traces = std::mem::take(&mut *ctx.traces.lock().unwrap_or_else(|e| e.into_inner()));
        traces.save(&self.store, &explain_scope, &ctx.previous);
        let exported_traces = serde_json::to_value(traces.redacted()).ok();
        let misses = std::mem::take(&mut *ctx.misses.lock().unwrap_or_else(|e| e.into_inner()));
        // Layers that came from an imported cache: fetched now if the image has them.
        let root = ctx.materialize(&states[graph.output.root.0]).await?;
        ctx.record_remote_hits().await?;
        let cache_records = ctx.export_records(&graph).await?;
        let cache_mounts = crate::remote::cache_mount_ids(&graph);
        ctx.progress.event(Event::Exporting);
        let root_layers = root.resolved_layers().await?;
        let times = ctx
            .op_times
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (config, layers) =
            crate::image::assemble(&graph, &states, root_layers, &times, &ctx.bases, &ctx.opts)?;
        let store = self.store.clone();
        let tags = ctx.opts.tags.clone();
        let (cached, executed) = *ctx.counts.lock().unwrap_or_else(|e| e.into_inner());
        let cancel = ctx.cancel.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<BuildResult, BuildError> {
            let manifest = store.write_image(&config, layers)?;
            // A build cancelled until now names nothing.
            if cancel.is_cancelled() {
                return Err(BuildError::Cancelled);
            }
            for tag in &tags {
                store.tag(tag, &manifest.digest)?;
            }
            Ok(BuildResult {
                config: store.image_by_manifest(&manifest.digest)?.config_digest,
                manifest,
                tags,
                cached,
                executed,
                misses,
                cache_records,
                cache_mounts,
                traces: exported_traces,
            })
        })
        .await??;
        Ok(result)
    }

    /// The base image `reference` names: from the store (by name as written, else by its
    /// normalized name; by digest when pinned), else pulled (always pulled with `pull`).
    /// It is kept (with its snapshots) from GC for the whole build, even if its name is
    /// removed meanwhile, and unpacked so every RUN finds its lower dirs.
    async fn base_image(&self, reference: &str, pull: bool) -> Result<Image, BuildError> {
        let invalid = |source| BuildError::InvalidReference {
            reference: reference.to_owned(),
            source,
        };
        let parsed: Reference = reference.parse().map_err(invalid)?;
        let name = Reference::image_name(reference);
        let store = self.store.clone();
        let local = {
            let store = store.clone();
            let parsed = parsed.clone();
            let name = name.clone();
            tokio::task::spawn_blocking(move || -> Result<Option<Image>, BuildError> {
                let found = match (parsed.digest(), &name) {
                    (Some(digest), _) => store.image_by_digest(digest).and_then(|image| {
                        store.protect_image(&image.manifest_digest)?;
                        Ok(image)
                    }),
                    (None, Some(name)) => store.image_in_use(name),
                    (None, None) => return Ok(None),
                };
                match found {
                    Ok(image) => Ok(Some(image)),
                    Err(err) if err.is_not_found() => Ok(None),
                    Err(err) => Err(err.into()),
                }
            })
            .await??
        };
        let missing = local.is_none();
        let image = match (local, &self.registry) {
            (Some(image), registry) if !pull || registry.is_none() => image,
            (_, None) => {
                return Err(BuildError::BaseImageNotFound {
                    reference: reference.to_owned(),
                });
            }
            (_, Some(registry)) => {
                let pulled = registry
                    .pull(
                        &store,
                        &parsed,
                        &PullOptions {
                            unpack: true,
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(|source| BuildError::Pull {
                        reference: reference.to_owned(),
                        missing,
                        source: Box::new(source),
                    })?;
                let store = store.clone();
                let name = name.clone();
                let manifest = pulled.manifest.clone();
                let image = pulled.image.manifest_digest.clone();
                tokio::task::spawn_blocking(move || -> Result<(), rbuild_store::Error> {
                    if let Some(name) = &name {
                        store.tag(name, &manifest)?;
                    }
                    store.protect_image(&image)
                })
                .await??;
                pulled.image
            }
        };
        tokio::task::spawn_blocking(move || -> Result<Image, BuildError> {
            store.unpack(&image)?;
            Ok(image)
        })
        .await?
    }
}

pub(crate) struct SolveContext {
    pub builder: Builder,
    pub opts: BuildOptions,
    pub context: Context,
    pub bases: HashMap<String, Image>,
    pub progress: Arc<dyn Progress>,
    pub cancel: Cancel,
    /// Ops running now, by cache key: an identical op waits for the first and reuses it.
    running: Mutex<HashMap<CacheKey, Arc<tokio::sync::Mutex<Option<State>>>>>,
    /// (cached, executed) steps.
    counts: Mutex<(usize, usize)>,
    /// Layers being measured and committed, cache records being written.
    background: Mutex<JoinSet<Result<(), BuildError>>>,
    /// CPU-heavy work (hashing, copying, making tars) at most one per core at a time, so
    /// parallel stages do not thrash each other.
    pub cpu: Arc<tokio::sync::Semaphore>,
    /// Upper dirs whose layer the store already had, discarded when the build ends.
    unused: Arc<Mutex<Vec<ActiveSnapshot>>>,
    /// The traces of the previous build of this context and target, and of this one.
    previous: Traces,
    /// `previous` came from an imported cache.
    previous_imported: bool,
    traces: Mutex<Traces>,
    /// Why each step that ran missed the cache, by its key.
    reasons: Mutex<HashMap<String, explain::Cause>>,
    misses: Mutex<Vec<Miss>>,
    /// Every layer-producing step's record, for `--cache-to`.
    pub(crate) exports: Mutex<Vec<PendingExport>>,
    /// Steps taken from an imported cache, recorded in the local cache at the end.
    pub(crate) remote_hits: Mutex<Vec<RemoteHit>>,
    /// Where the layers of imported cache records come from: blob digest → cache.
    pub(crate) remote_blobs: Mutex<HashMap<Digest, Reference>>,
    /// Held while layers of imported caches are fetched and unpacked.
    pub(crate) materializing: tokio::sync::Mutex<()>,
    /// ADD's URL sources fetched in this build, by URL (see `download`).
    pub(crate) urls: Mutex<HashMap<String, rbuild_store::registry::UrlContent>>,
    /// The client for URL downloads when the builder has no registry client.
    pub(crate) http: std::sync::OnceLock<Arc<Registry>>,
    /// When each layer-producing op's result was made (Unix seconds): now for a step that
    /// ran, the cache record's time for one that did not. The image history shows these, so
    /// a rebuild from the cache is the same image, bit for bit.
    pub(crate) op_times: Mutex<HashMap<OpId, i64>>,
    key_times: Mutex<HashMap<String, i64>>,
}

/// What a finished op hands to the ops that use it.
#[derive(Clone)]
struct Done {
    key: CacheKey,
    state: State,
}

impl SolveContext {
    async fn solve(self: &Arc<Self>, graph: &Arc<BuildGraph>) -> Result<Vec<State>, BuildError> {
        let count = graph.ops.len();
        self.progress.event(Event::Started { steps: count });
        let mut waiting: Vec<usize> = Vec::with_capacity(count);
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); count];
        for (index, op) in graph.ops.iter().enumerate() {
            let mut inputs = op.kind.inputs();
            inputs.sort();
            inputs.dedup();
            waiting.push(inputs.len());
            for input in inputs {
                dependents[input.0].push(index);
            }
        }
        let mut done: Vec<Option<Done>> = vec![None; count];
        let mut tasks = JoinSet::new();
        let mut failure: Option<BuildError> = None;
        let spawn = |tasks: &mut JoinSet<(usize, Result<Done, BuildError>)>,
                     index: usize,
                     done: &[Option<Done>]| {
            let inputs: HashMap<OpId, Done> = graph.ops[index]
                .kind
                .inputs()
                .into_iter()
                .map(|id| {
                    (
                        id,
                        done[id.0]
                            .clone()
                            .expect("inputs finish before their users start"),
                    )
                })
                .collect();
            let ctx = self.clone();
            let graph = graph.clone();
            tasks.spawn(async move { (index, ctx.step(&graph, OpId(index), inputs).await) });
        };
        let ready: Vec<usize> = (0..count).filter(|&index| waiting[index] == 0).collect();
        for index in ready {
            spawn(&mut tasks, index, &done);
        }
        while let Some(joined) = tasks.join_next().await {
            let (index, result) = match joined {
                Ok(finished) => finished,
                Err(err) => {
                    self.cancel.cancel();
                    failure.get_or_insert(BuildError::Join(err));
                    continue;
                }
            };
            match result {
                Ok(finished) => {
                    done[index] = Some(finished);
                    if failure.is_some() || self.cancel.is_cancelled() {
                        continue;
                    }
                    for &dependent in &dependents[index] {
                        waiting[dependent] -= 1;
                        if waiting[dependent] == 0 {
                            spawn(&mut tasks, dependent, &done);
                        }
                    }
                }
                Err(err) => {
                    // The first failure is the one to report; stop everything else.
                    self.cancel.cancel();
                    if failure.is_none() || matches!(failure, Some(BuildError::Cancelled)) {
                        failure = Some(err);
                    }
                }
            }
        }
        if let Some(err) = failure {
            return Err(err);
        }
        if self.cancel.is_cancelled() {
            return Err(BuildError::Cancelled);
        }
        Ok(done
            .into_iter()
            .map(|d| d.expect("every op finished").state)
            .collect())
    }

    /// Runs one op, or takes it from the cache.
    async fn step(
        &self,
        graph: &BuildGraph,
        id: OpId,
        inputs: HashMap<OpId, Done>,
    ) -> Result<Done, BuildError> {
        if self.cancel.is_cancelled() {
            return Err(BuildError::Cancelled);
        }
        let op = graph.op(id);
        let step = id.0 + 1;
        let (key, trace) = self.cache_key(graph, id, &inputs).await?;
        let identity = step_identity(graph, id);
        let previous = self.previous.steps.get(&identity);

        // What changed since the previous build, whether or not the cache still has the
        // step: the steps after it name this as their cause.
        let cause = previous
            .as_ref()
            .filter(|old| old.key != trace.key)
            .map(|old| {
                let causes = self.reasons.lock().unwrap_or_else(|e| e.into_inner());
                if self.previous_imported {
                    // Imported traces carry hashes of the environment's values.
                    explain::explain(step, old, &trace.redacted(), &causes)
                } else {
                    explain::explain(step, old, &trace, &causes)
                }
            });
        if let Some(cause) = &cause {
            self.reasons
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.to_string(), cause.clone());
        }
        let has_previous = previous.is_some();
        self.traces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .steps
            .insert(identity, trace);
        let parent = op.kind.rootfs().map(|p| inputs[&p].state.clone());
        let parent_key = op.kind.rootfs().map(|p| inputs[&p].key.clone());

        // Image and scratch ops are resolved, not run: nothing to cache.
        if let OpKind::Scratch | OpKind::Image { .. } = op.kind {
            let state = self.root_state(&op.kind).await?;
            self.progress.event(Event::StepStarted {
                step,
                description: &op.description,
            });
            self.progress.event(Event::StepFinished {
                step,
                elapsed: Default::default(),
            });
            return Ok(Done { key, state });
        }
        let parent = parent.expect("layer-producing ops have a rootfs");

        // An identical op already running in this build: wait for it and reuse its result.
        let slot = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            running.entry(key.clone()).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if let Some(state) = slot.as_ref() {
            let time = self
                .key_times
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(key.as_str())
                .copied()
                .unwrap_or_else(rbuild_store::time::now_unix);
            self.note_time(id, &key, time);
            self.progress.event(Event::StepStarted {
                step,
                description: &op.description,
            });
            self.progress.event(Event::StepCached { step });
            self.count(true);
            return Ok(Done {
                key,
                state: state.clone(),
            });
        }

        if self.cache_allowed(op) {
            let store = self.builder.store.clone();
            let lookup = key.to_string();
            if let Some(record) =
                tokio::task::spawn_blocking(move || store.cache_get(&lookup)).await??
            {
                let state = match (&op.kind, &record.layer) {
                    (OpKind::Copy(copy), Some(layer)) if copy.link => {
                        // Stack the recorded layer on this parent: its files are linked into
                        // a snapshot of their own, nothing is run or measured again.
                        let store = self.builder.store.clone();
                        let diff_id = layer.diff_id.clone();
                        match tokio::task::spawn_blocking(move || store.clone_layer(&diff_id))
                            .await??
                        {
                            Some((active, known)) => {
                                // Committed on its parent, which must be files for that.
                                let parent = self.materialize(&parent).await?;
                                self.commit_pipelined(&key, op, &parent, active, true, Some(known))
                                    .await?
                            }
                            None => self.cached_state(&parent, &record).await?,
                        }
                    }
                    _ => self.cached_state(&parent, &record).await?,
                };
                self.progress.event(Event::StepStarted {
                    step,
                    description: &op.description,
                });
                self.progress.event(Event::StepCached { step });
                self.count(true);
                self.note_time(id, &key, record.created);
                self.export(
                    id,
                    &key,
                    parent_key.as_ref(),
                    &op.description,
                    &parent,
                    &state,
                );
                *slot = Some(state.clone());
                return Ok(Done { key, state });
            }
            if let Some((state, created)) = self.remote_hit(&key, op, &parent) {
                self.note_time(id, &key, created);
                self.progress.event(Event::StepStarted {
                    step,
                    description: &op.description,
                });
                self.progress.event(Event::StepCached { step });
                self.count(true);
                self.export(
                    id,
                    &key,
                    parent_key.as_ref(),
                    &op.description,
                    &parent,
                    &state,
                );
                *slot = Some(state.clone());
                return Ok(Done { key, state });
            }
        }

        // The step runs: whatever it reads must be files now.
        let parent = self.materialize(&parent).await?;
        let mut inputs = inputs;
        for done in inputs.values_mut() {
            if done.state.has_remote() {
                done.state = self.materialize(&done.state).await?;
            }
        }

        self.progress.event(Event::StepStarted {
            step,
            description: &op.description,
        });
        let reason = if !self.cache_allowed(op) {
            Some(
                if self.opts.no_cache {
                    "--no-cache"
                } else {
                    "--no-cache-filter"
                }
                .to_owned(),
            )
        } else {
            match (&cause, has_previous) {
                (Some(cause), _) => Some(cause.message(step)),
                (None, true) if self.previous_imported => Some(
                    "the imported cache does not have it (was it exported with `mode=min`, \
                     which leaves out the steps not in the image?)"
                        .to_owned(),
                ),
                (None, true) => {
                    Some("its cache record is gone (pruned, or its layer was removed)".to_owned())
                }
                (None, false) => None,
            }
        };
        if let Some(reason) = &reason {
            self.progress.event(Event::StepMiss { step, reason });
        }
        self.misses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Miss {
                step,
                description: op.description.clone(),
                reason,
            });
        let started = Instant::now();
        // Each op leaves an active snapshot whose upper dir holds its changes.
        let result = match &op.kind {
            OpKind::Exec(exec) => {
                let sources = exec
                    .mounts
                    .iter()
                    .filter_map(|mount| mount.input())
                    .map(|source| {
                        let lowers = inputs[&source].state.lowers.clone();
                        (source, (lowers, origin(graph, &CopySource::Op(source))))
                    })
                    .collect();
                self.exec(op, exec, &parent, sources, step)
                    .await
                    .map(|active| (active, true))
            }
            OpKind::Copy(copy) => {
                let source = match copy.source {
                    CopySource::Op(source) => Some(&inputs[&source].state),
                    _ => None,
                };
                match self.remote_files(op, copy, step).await {
                    Ok(remote) => self
                        .copy(
                            op,
                            copy,
                            &parent,
                            source,
                            &origin(graph, &copy.source),
                            remote,
                        )
                        .await
                        .map(|active| (active, true)),
                    Err(err) => Err(err),
                }
            }
            OpKind::Mkdir(mkdir) => self
                .mkdir(op, mkdir, &parent)
                .await
                .map(|active| (active, false)),
            OpKind::Scratch | OpKind::Image { .. } => unreachable!("handled above"),
        };
        let state = match result {
            Ok((active, keep_empty)) => {
                self.commit_pipelined(&key, op, &parent, active, keep_empty, None)
                    .await?
            }
            Err(err) => {
                self.progress.event(Event::StepFailed {
                    step,
                    elapsed: started.elapsed(),
                });
                return Err(err);
            }
        };
        self.note_time(id, &key, rbuild_store::time::now_unix());
        self.export(
            id,
            &key,
            parent_key.as_ref(),
            &op.description,
            &parent,
            &state,
        );
        self.progress.event(Event::StepFinished {
            step,
            elapsed: started.elapsed(),
        });
        self.count(false);
        *slot = Some(state.clone());
        Ok(Done { key, state })
    }

    fn note_time(&self, id: OpId, key: &CacheKey, time: i64) {
        self.op_times
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, time);
        self.key_times
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), time);
    }

    fn count(&self, cached: bool) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if cached {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
    }

    fn cache_allowed(&self, op: &rbuild_frontend::Op) -> bool {
        if self.opts.no_cache {
            return false;
        }
        !self.opts.no_cache_filter.iter().any(|filter| {
            op.stage
                .name
                .as_deref()
                .is_some_and(|name| name.eq_ignore_ascii_case(filter))
                || filter
                    .parse::<usize>()
                    .is_ok_and(|index| index == op.stage.index)
        })
    }

    async fn root_state(&self, kind: &OpKind) -> Result<State, BuildError> {
        let OpKind::Image { reference } = kind else {
            return Ok(State::default());
        };
        let image = self
            .bases
            .get(reference)
            .ok_or_else(|| BuildError::BaseImageNotFound {
                reference: reference.clone(),
            })?;
        let chain = image.chain();
        let layers = image
            .manifest
            .layers
            .iter()
            .zip(&image.config.rootfs.diff_ids)
            .zip(chain)
            .map(|((descriptor, diff_id), name)| {
                LayerRef::Ready(
                    Layer {
                        descriptor: descriptor.clone(),
                        diff_id: diff_id.clone(),
                    },
                    name,
                )
            })
            .collect();
        let lowers = match image.top() {
            Some(top) => {
                let store = self.builder.store.clone();
                tokio::task::spawn_blocking(move || store.lowers(&top)).await??
            }
            None => Vec::new(),
        };
        Ok(State { lowers, layers })
    }

    /// The op's cache key: its definition, its inputs' keys, and what else decides its
    /// result (see `cache`).
    async fn cache_key(
        &self,
        graph: &BuildGraph,
        id: OpId,
        inputs: &HashMap<OpId, Done>,
    ) -> Result<(CacheKey, Trace), BuildError> {
        let op = graph.op(id);
        let mut trace = Trace {
            description: op.description.clone(),
            digest: op.digest.0.clone(),
            ..Default::default()
        };
        let mut key = KeyBuilder::new("op");
        let mut input_ids = op.kind.inputs();
        input_ids.dedup();
        match &op.kind {
            // `COPY --link` does not depend on the layers below: its key leaves them out,
            // so a new base image keeps the step cached and its layer is restacked.
            OpKind::Copy(copy) if copy.link => {
                let mut definition = copy.clone();
                definition.rootfs = OpId(0);
                if let CopySource::Op(_) = definition.source {
                    definition.source = CopySource::Op(OpId(0));
                }
                key.part("link")
                    .part(&serde_json::to_string(&definition).expect("ops serialize"));
                input_ids.retain(|input| *input != copy.rootfs);
            }
            _ => {
                key.part(&op.digest.0);
            }
        }
        for input in input_ids {
            key.part(inputs[&input].key.as_str());
            trace.inputs.push((
                graph.op(input).description.clone(),
                inputs[&input].key.to_string(),
            ));
        }
        match &op.kind {
            OpKind::Scratch => {}
            OpKind::Image { reference } => {
                if let Some(image) = self.bases.get(reference) {
                    key.part(&image.manifest_digest.to_string());
                    trace.base = Some(image.manifest_digest.to_string());
                }
            }
            OpKind::Exec(exec) => {
                let network = match exec.network {
                    rbuild_frontend::NetworkMode::None => Network::None,
                    rbuild_frontend::NetworkMode::Host => Network::Host,
                    rbuild_frontend::NetworkMode::Default => {
                        self.opts.network.unwrap_or(crate::exec::DEFAULT_NETWORK)
                    }
                };
                key.part(&format!("{network:?}"));
                trace
                    .other
                    .push(format!("network {network:?}").to_lowercase());
                trace.env = exec
                    .env
                    .iter()
                    .filter(|e| {
                        let name = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
                        !exec.cache_excluded_env.iter().any(|x| x == name)
                    })
                    .cloned()
                    .collect();
                // What a bind mount of the context shows is read like a COPY source; a
                // mount of another op is covered by that op's key, among the inputs.
                for mount in &exec.mounts {
                    if let ExecMount::Bind(BindMount {
                        source: MountSource::Context,
                        path,
                        ..
                    }) = mount
                    {
                        let ctx = &self.context;
                        let (checksum, files) =
                            tokio::task::block_in_place(|| ctx.checksum_path(path)).map_err(
                                |source| BuildError::StepFailed {
                                    span: op.span,
                                    description: op.description.clone(),
                                    source: Box::new(source),
                                },
                            )?;
                        key.part("bind-context").part(&checksum);
                        trace.files.extend(files);
                    }
                }
            }
            OpKind::Copy(copy) => {
                if let CopySource::Context = copy.source {
                    let sources: Vec<String> = copy
                        .sources
                        .iter()
                        .filter(|s| !rbuild_frontend::CopyOp::is_url(s))
                        .cloned()
                        .collect();
                    // Ops without URLs keep the keys they always had.
                    if !sources.is_empty() || sources.len() == copy.sources.len() {
                        let exclude = (!copy.excludes.is_empty())
                            .then(|| IgnoreMatcher::parse(&copy.excludes.join("\n")));
                        let _permit = self
                            .cpu
                            .acquire()
                            .await
                            .map_err(|_| BuildError::Cancelled)?;
                        let (checksum, files) = {
                            // Hashing reads files: keep it off the async workers.
                            let ctx = &self.context;
                            tokio::task::block_in_place(|| {
                                ctx.checksum_files(&sources, exclude.as_ref())
                            })
                        }
                        .map_err(|source| BuildError::StepFailed {
                            span: op.span,
                            description: op.description.clone(),
                            source: Box::new(source),
                        })?;
                        key.part(&checksum);
                        trace.files = files;
                    }
                    // A URL is keyed by its content: the checksum it must have, else
                    // what the server serves now (revalidated, see `download`).
                    for url in copy
                        .sources
                        .iter()
                        .filter(|s| rbuild_frontend::CopyOp::is_url(s))
                    {
                        let digest = match &copy.checksum {
                            Some(checksum) => checksum.clone(),
                            None => self.url_content(op, url, None).await?.digest.to_string(),
                        };
                        key.part("url").part(url).part(&digest);
                        trace.files.insert(url.clone(), digest);
                    }
                }
            }
            OpKind::Mkdir(_) => {}
        }
        if op.kind.rootfs().is_some() {
            key.part(&format!("epoch:{:?}", self.opts.source_date_epoch));
            if let Some(epoch) = self.opts.source_date_epoch {
                trace.other.push(format!("SOURCE_DATE_EPOCH={epoch}"));
            }
        }
        let key = key.finish();
        trace.key = key.to_string();
        Ok((key, trace))
    }

    /// The state after a cached op: its parent's layers plus the recorded one, over the
    /// recorded snapshot chain's directories.
    async fn cached_state(
        &self,
        parent: &State,
        record: &CacheRecord,
    ) -> Result<State, BuildError> {
        let (Some(layer), Some(snapshot)) = (&record.layer, &record.snapshot) else {
            return Ok(parent.clone());
        };
        let name = SnapshotName::from_digest(snapshot.clone());
        let store = self.builder.store.clone();
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
        let store = self.builder.store.clone();
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
        };
        let key = key.to_string();
        let parent_top = parent.layers.last().cloned();
        if !keep_empty && is_empty_dir(&active.upper) {
            let discard = store.clone();
            tokio::task::spawn_blocking(move || discard.discard(active)).await??;
            self.background(async move {
                record.snapshot = match parent_top {
                    Some(top) => Some(top.get().await?.1.digest().clone()),
                    None => None,
                };
                tokio::task::spawn_blocking(move || store.cache_put(&key, &record)).await??;
                Ok(())
            });
            return Ok(parent.clone());
        }
        let mut state = parent.clone();
        state.lowers.insert(0, active.upper.clone());
        let unused = self.unused.clone();
        let cpu = self.cpu.clone();
        let (sender, layer) = LayerRef::pending();
        state.layers.push(layer);
        self.background(async move {
            let result = async {
                let upper = active.upper.clone();
                let measuring = store.clone();
                let new_layer = match known {
                    Some(layer) => layer,
                    None => {
                        let _permit = cpu
                            .acquire_owned()
                            .await
                            .map_err(|_| BuildError::Cancelled)?;
                        tokio::task::spawn_blocking(move || measuring.create_layer(&upper, options))
                            .await??
                    }
                };
                let parent_name = match &parent_top {
                    Some(top) => Some(top.get().await?.1),
                    None => None,
                };
                let committing = store.clone();
                let unused = unused.clone();
                let (name, size, new_layer) =
                    tokio::task::spawn_blocking(move || -> Result<_, rbuild_store::Error> {
                        let mut active = active;
                        active.parent = parent_name;
                        let (name, duplicate) = committing.commit_layer(active, &new_layer)?;
                        // Same content as a snapshot the store has: later steps may be
                        // running over this directory, so it goes when the build ends.
                        if let Some(duplicate) = duplicate {
                            unused
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(duplicate);
                        }
                        let size = committing.snapshot(&name)?.map_or(0, |s| s.size);
                        Ok((name, size, new_layer))
                    })
                    .await??;
                let layer = Layer {
                    descriptor: new_layer.descriptor,
                    diff_id: new_layer.diff_id,
                };
                Ok::<_, BuildError>(((layer, name), size))
            }
            .await;
            match result {
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
                    sender.send_replace(Some(Err(err.to_string())));
                    Err(err)
                }
            }
        });
        Ok(state)
    }

    /// Waits for every background task; the first failure is the result.
    async fn finish_background(&self) -> Result<(), BuildError> {
        let mut tasks =
            std::mem::take(&mut *self.background.lock().unwrap_or_else(|e| e.into_inner()));
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
    fn background(
        &self,
        task: impl std::future::Future<Output = Result<(), BuildError>> + Send + 'static,
    ) {
        let mut tasks = self.background.lock().unwrap_or_else(|e| e.into_inner());
        tasks.spawn(task);
    }
}

fn is_empty_dir(path: &std::path::Path) -> bool {
    std::fs::read_dir(path)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

/// A step's identity across builds: its stage and its position in the stage, so an edited
/// instruction is still the same step.
fn step_identity(graph: &BuildGraph, id: OpId) -> String {
    let op = graph.op(id);
    let position = graph.ops[..id.0]
        .iter()
        .filter(|other| other.stage.index == op.stage.index)
        .count();
    match &op.stage.name {
        Some(name) => format!("{name}#{position}"),
        None => format!("{}#{position}", op.stage.index),
    }
}

/// What a COPY's source is, for messages.
fn origin(graph: &BuildGraph, source: &CopySource) -> String {
    match source {
        CopySource::Op(source) => {
            let source_op = graph.op(*source);
            match (&source_op.kind, &source_op.stage.name) {
                (OpKind::Image { reference }, _) => format!("image `{reference}`"),
                (_, Some(name)) => format!("stage `{name}`"),
                (_, None) => format!("stage {}", source_op.stage.index),
            }
        }
        CopySource::Context => "the build context".to_owned(),
        CopySource::Inline(_) => "the Dockerfile".to_owned(),
    }
}
