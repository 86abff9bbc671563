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
use rbuild_store::oci::Descriptor;
use rbuild_store::{CacheRecord, CachedLayer, Digest, Image, ImageName, SnapshotName, Store};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cache::{CacheKey, KeyBuilder};
use crate::context::Context;
use crate::error::BuildError;
use crate::ignore::IgnoreMatcher;
use crate::progress::{Event, Progress};
use crate::secrets::SecretSource;

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
    /// `--cpus`: CPU time of each RUN step, in CPUs.
    // TODO(#5): applied once the runtime's `Limits` has its CPU quota (the runtime branch).
    pub cpus: Option<f64>,
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

/// One layer of a filesystem state.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

/// The filesystem an op produced: its layers, bottom first, and the snapshot of the top.
#[derive(Debug, Clone, Default)]
pub(crate) struct State {
    pub layers: Vec<Layer>,
    pub top: Option<SnapshotName>,
}

/// Builds images from Dockerfiles, with the store for bytes and the runtime for RUN.
#[derive(Clone)]
pub struct Builder {
    pub(crate) store: Store,
    pub(crate) runtime: Runtime,
}

impl Builder {
    pub fn new(store: Store, runtime: Runtime) -> Builder {
        Builder { store, runtime }
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
            let image = self.base_image(&reference).await?;
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
        let context = Context::open(context_root, ignore, &self.store);
        let ctx = Arc::new(SolveContext {
            builder: self.clone(),
            opts,
            context,
            bases,
            progress,
            cancel,
            running: Mutex::new(HashMap::new()),
            counts: Mutex::new((0, 0)),
        });
        let states = ctx.solve(&graph).await;
        ctx.context.save_hashes(&self.store);
        let states = states?;
        ctx.progress.event(Event::Exporting);
        let (config, layers) = crate::image::assemble(&graph, &states, &ctx.bases, &ctx.opts)?;
        let store = self.store.clone();
        let tags = ctx.opts.tags.clone();
        let (cached, executed) = *ctx.counts.lock().unwrap_or_else(|e| e.into_inner());
        let result = tokio::task::spawn_blocking(move || -> Result<BuildResult, BuildError> {
            let manifest = store.write_image(&config, layers)?;
            for tag in &tags {
                store.tag(tag, &manifest.digest)?;
            }
            Ok(BuildResult {
                config: store.image_by_manifest(&manifest.digest)?.config_digest,
                manifest,
                tags,
                cached,
                executed,
            })
        })
        .await??;
        Ok(result)
    }

    async fn base_image(&self, reference: &str) -> Result<Image, BuildError> {
        let name: ImageName = reference
            .parse()
            .map_err(|source| BuildError::InvalidReference {
                reference: reference.to_owned(),
                source,
            })?;
        let store = self.store.clone();
        let reference = reference.to_owned();
        tokio::task::spawn_blocking(move || match store.image(&name) {
            Ok(image) => {
                // Keep it (and its snapshots) from GC for the whole build, even if its name
                // is removed meanwhile; unpack now so every RUN finds its lower dirs.
                store.protect_image(&image.manifest_digest)?;
                store.unpack(&image)?;
                Ok(image)
            }
            Err(err) if err.is_not_found() => Err(BuildError::BaseImageNotFound { reference }),
            Err(err) => Err(err.into()),
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
        let key = self.cache_key(graph, id, &inputs).await?;
        let parent = op.kind.rootfs().map(|p| inputs[&p].state.clone());

        // Image and scratch ops are resolved, not run: nothing to cache.
        if let OpKind::Scratch | OpKind::Image { .. } = op.kind {
            let state = self.root_state(&op.kind)?;
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
                let state = cached_state(&parent, &record);
                self.progress.event(Event::StepStarted {
                    step,
                    description: &op.description,
                });
                self.progress.event(Event::StepCached { step });
                self.count(true);
                *slot = Some(state.clone());
                return Ok(Done { key, state });
            }
        }

        self.progress.event(Event::StepStarted {
            step,
            description: &op.description,
        });
        let started = Instant::now();
        let result = match &op.kind {
            OpKind::Exec(exec) => {
                let sources = exec
                    .mounts
                    .iter()
                    .filter_map(|mount| mount.input())
                    .map(|source| {
                        let top = inputs[&source].state.top.clone();
                        (source, (top, origin(graph, &CopySource::Op(source))))
                    })
                    .collect();
                self.exec(op, exec, &parent, sources, step).await
            }
            OpKind::Copy(copy) => {
                let source = match copy.source {
                    CopySource::Op(source) => Some(&inputs[&source].state),
                    _ => None,
                };
                self.copy(op, copy, &parent, source, &origin(graph, &copy.source))
                    .await
            }
            OpKind::Mkdir(mkdir) => self.mkdir(op, mkdir, &parent).await,
            OpKind::Scratch | OpKind::Image { .. } => unreachable!("handled above"),
        };
        let state = match result {
            Ok(state) => state,
            Err(err) => {
                self.progress.event(Event::StepFailed {
                    step,
                    elapsed: started.elapsed(),
                });
                return Err(err);
            }
        };
        self.record(&key, op, &parent, &state).await?;
        self.progress.event(Event::StepFinished {
            step,
            elapsed: started.elapsed(),
        });
        self.count(false);
        *slot = Some(state.clone());
        Ok(Done { key, state })
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

    fn root_state(&self, kind: &OpKind) -> Result<State, BuildError> {
        match kind {
            OpKind::Image { reference } => {
                let image =
                    self.bases
                        .get(reference)
                        .ok_or_else(|| BuildError::BaseImageNotFound {
                            reference: reference.clone(),
                        })?;
                Ok(State {
                    layers: image
                        .manifest
                        .layers
                        .iter()
                        .zip(&image.config.rootfs.diff_ids)
                        .map(|(descriptor, diff_id)| Layer {
                            descriptor: descriptor.clone(),
                            diff_id: diff_id.clone(),
                        })
                        .collect(),
                    top: image.top(),
                })
            }
            _ => Ok(State::default()),
        }
    }

    /// The op's cache key: its definition, its inputs' keys, and what else decides its
    /// result (see `cache`).
    async fn cache_key(
        &self,
        graph: &BuildGraph,
        id: OpId,
        inputs: &HashMap<OpId, Done>,
    ) -> Result<CacheKey, BuildError> {
        let op = graph.op(id);
        let mut key = KeyBuilder::new("op");
        key.part(&op.digest.0);
        let mut input_ids = op.kind.inputs();
        input_ids.dedup();
        for input in input_ids {
            key.part(inputs[&input].key.as_str());
        }
        match &op.kind {
            OpKind::Scratch => {}
            OpKind::Image { reference } => {
                if let Some(image) = self.bases.get(reference) {
                    key.part(&image.manifest_digest.to_string());
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
                        let checksum = tokio::task::block_in_place(|| ctx.checksum_path(path))
                            .map_err(|source| BuildError::StepFailed {
                                span: op.span,
                                description: op.description.clone(),
                                source: Box::new(source),
                            })?;
                        key.part("bind-context").part(&checksum);
                    }
                }
            }
            OpKind::Copy(copy) => {
                if let CopySource::Context = copy.source {
                    let sources = copy.sources.clone();
                    let checksum = {
                        // Hashing reads files: keep it off the async workers.
                        let ctx = &self.context;
                        tokio::task::block_in_place(|| ctx.checksum(&sources))
                    }
                    .map_err(|source| BuildError::StepFailed {
                        span: op.span,
                        description: op.description.clone(),
                        source: Box::new(source),
                    })?;
                    key.part(&checksum);
                }
            }
            OpKind::Mkdir(_) => {}
        }
        if op.kind.rootfs().is_some() {
            key.part(&format!("epoch:{:?}", self.opts.source_date_epoch));
        }
        Ok(key.finish())
    }

    /// Records what an op produced under its key.
    async fn record(
        &self,
        key: &CacheKey,
        op: &rbuild_frontend::Op,
        parent: &State,
        state: &State,
    ) -> Result<(), BuildError> {
        let added = state.layers.len() > parent.layers.len();
        let now = rbuild_store::time::now_unix();
        let store = self.builder.store.clone();
        let key = key.to_string();
        let top = state.top.clone();
        let record = CacheRecord {
            layer: added.then(|| {
                let layer = state.layers.last().expect("a layer was added");
                CachedLayer {
                    descriptor: layer.descriptor.clone(),
                    diff_id: layer.diff_id.clone(),
                }
            }),
            snapshot: state.top.as_ref().map(|top| top.digest().clone()),
            description: op.description.clone(),
            created: now,
            last_used: now,
            size: 0,
        };
        tokio::task::spawn_blocking(move || -> Result<(), rbuild_store::Error> {
            let mut record = record;
            if let Some(top) = &top {
                record.size = store.snapshot(top)?.map_or(0, |s| s.size);
            }
            store.cache_put(&key, &record)
        })
        .await??;
        Ok(())
    }
}

/// The state after a cached op: its parent's plus the recorded layer.
fn cached_state(parent: &State, record: &CacheRecord) -> State {
    let mut state = parent.clone();
    if let Some(layer) = &record.layer {
        state.layers.push(Layer {
            descriptor: layer.descriptor.clone(),
            diff_id: layer.diff_id.clone(),
        });
        state.top = record.snapshot.clone().map(SnapshotName::from_digest);
    }
    state
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
