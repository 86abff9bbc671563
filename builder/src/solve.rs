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

use rbuild_frontend::{self as frontend, BuildGraph, CopySource, OpId, OpKind};
use rbuild_runtime::{ExtraHost, Limits, Network, Rlimit, Runtime};
use rbuild_store::oci::Descriptor;
use rbuild_store::registry::{CacheExportRecord, CacheImport, Registry};
use rbuild_store::{ActiveSnapshot, Digest, Image, ImageName, Reference, Store};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cache::CacheKey;
use crate::context::Context;
use crate::error::BuildError;
use crate::explain::{self, Traces};
use crate::ignore::IgnoreMatcher;
use crate::progress::{Event, Progress};
use crate::remote::{PendingExport, RemoteHit};
use crate::secrets::SecretSource;
use crate::snapshotter::Snapshotter;
use crate::state::State;

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
    /// Keep a failed RUN step's state (its snapshot and mounts) in the error, for a shell
    /// (`--on-error shell`; see [`crate::FailedStep`]) instead of discarding it.
    pub keep_failed_step: bool,
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
    /// `--build-context NAME=...`: what `FROM NAME`, `COPY --from=NAME` and
    /// `RUN --mount=from=NAME` read instead of a stage or an image of that name.
    pub named_contexts: BTreeMap<String, NamedContextSource>,
    /// `--ssh`: the SSH agents `RUN --mount=type=ssh` forwards, by id.
    pub ssh: BTreeMap<String, crate::ssh::SshSource>,
    /// `--add-host`: `/etc/hosts` lines of every RUN step. The names are part of a step's
    /// cache key, the addresses are not (as BuildKit: the same names on another network
    /// are the same build).
    pub extra_hosts: Vec<ExtraHost>,
    /// `--ulimit`: resource limits of every RUN step; part of the cache key, as a step
    /// may behave differently under them (as BuildKit).
    pub rlimits: Vec<Rlimit>,
    /// `--shm-size`: the size of RUN steps' `/dev/shm`; part of the cache key (BuildKit
    /// makes it a mount of the step).
    pub shm_size: Option<u64>,
    /// `--allow security.insecure`: `RUN --security=insecure` steps may run privileged.
    /// Without it a build with such a step fails before anything runs.
    pub allow_insecure: bool,
}

/// Where a named build context's files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContextSource {
    /// `docker-image://REF`: an image (normalized reference), found or pulled like a base.
    Image(String),
    /// A local directory, read as the build context is (without an ignore file).
    Dir(PathBuf),
    /// `oci-layout://DIR[:TAG|@DIGEST]`: an image of an OCI layout directory, loaded into
    /// the store unnamed and used by digest. `selector` is the tag (its `ref.name` in
    /// `index.json`) or the `sha256:` digest; `None`: the layout's only image, else the
    /// one tagged `latest`.
    OciLayout {
        dir: PathBuf,
        selector: Option<String>,
    },
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
    /// Overlayfs or copies, chosen when the builder is made.
    pub(crate) snapshotter: Snapshotter,
    /// Where base images the store lacks, and layers of imported caches, come from.
    pub(crate) registry: Option<Arc<Registry>>,
}

impl Builder {
    /// A builder over `store` and `runtime`; finds out whether overlayfs works here (see
    /// [`Snapshotter::detect`]).
    pub fn new(store: Store, runtime: Runtime) -> Builder {
        let snapshotter = Snapshotter::detect(&store);
        Builder {
            store,
            runtime,
            snapshotter,
            registry: None,
        }
    }

    /// How steps see the store's snapshots.
    pub fn snapshotter(&self) -> &Snapshotter {
        &self.snapshotter
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
        let mut named = BTreeMap::new();
        let mut named_contexts = BTreeMap::new();
        for (name, source) in &opts.named_contexts {
            named_contexts.insert(
                name.clone(),
                match source {
                    NamedContextSource::Image(reference) => {
                        frontend::NamedContext::Image(reference.clone())
                    }
                    NamedContextSource::OciLayout { dir, selector } => {
                        let store = self.store.clone();
                        let (name, dir, selector) = (name.clone(), dir.clone(), selector.clone());
                        let reference = tokio::task::spawn_blocking(move || {
                            crate::bases::oci_layout_reference(
                                &store,
                                &name,
                                &dir,
                                selector.as_deref(),
                            )
                        })
                        .await??;
                        frontend::NamedContext::Image(reference)
                    }
                    NamedContextSource::Dir(dir) => {
                        let root = std::fs::canonicalize(dir)
                            .ok()
                            .filter(|root| root.is_dir())
                            .ok_or_else(|| BuildError::NamedContext {
                                name: name.clone(),
                                path: dir.clone(),
                            })?;
                        named.insert(
                            name.clone(),
                            Context::open(root, IgnoreMatcher::default(), &self.store),
                        );
                        frontend::NamedContext::Local
                    }
                },
            );
        }
        let convert_opts = frontend::ConvertOptions {
            build_args: opts.build_args.clone(),
            target: opts.target.clone(),
            named_contexts,
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
        // Before anything runs, and whether or not the step would be cached: a build
        // either is allowed to contain a privileged step or fails the same way every time.
        if !opts.allow_insecure
            && let Some(op) = graph
                .ops
                .iter()
                .find(|op| matches!(&op.kind, frontend::OpKind::Exec(exec) if exec.insecure))
        {
            return Err(BuildError::InsecureNotAllowed {
                span: op.span,
                description: op.description.clone(),
            });
        }
        let ignore = IgnoreMatcher::parse(opts.ignore.as_deref().unwrap_or(""))
            .map_err(|source| BuildError::IgnoreFile { source })?;
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
        let mut ssh = BTreeMap::new();
        let mut key_agents = Vec::new();
        for (id, source) in &opts.ssh {
            match source {
                crate::ssh::SshSource::Socket(path) => {
                    ssh.insert(id.clone(), path.clone());
                }
                crate::ssh::SshSource::Keys(keys) => {
                    let dir = self.store.temp_dir("ssh-agent")?;
                    let agent = crate::ssh::KeyAgent::start(id, keys, dir)
                        .map_err(|source| BuildError::Ssh { source })?;
                    ssh.insert(id.clone(), agent.socket.clone());
                    key_agents.push(agent);
                }
            }
        }
        let ctx = Arc::new(SolveContext {
            builder: self.clone(),
            opts,
            context,
            named,
            ssh,
            _key_agents: key_agents,
            git_commits: Mutex::new(HashMap::new()),
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
        for named in ctx.named.values() {
            named.save_hashes(&self.store);
        }
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
        let mut times = ctx
            .op_times
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let undated = ctx
            .date_undated(&graph, &states, &root_layers, &mut times)
            .await?;
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
            // After the image exists: the record names it, and `rbuild prune` keeps it as
            // long as the image is named.
            if let Some((key, mut record)) = undated {
                record.image = Some(manifest.digest.clone());
                store.cache_put(&key, &record)?;
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
}

pub(crate) struct SolveContext {
    pub builder: Builder,
    pub opts: BuildOptions,
    pub context: Context,
    /// The local named contexts (`--build-context NAME=DIR`), by name.
    pub named: BTreeMap<String, Context>,
    /// The SSH agents' sockets, by id; and the agents rbuild started for key files, which
    /// stop when the build ends.
    pub ssh: BTreeMap<String, PathBuf>,
    pub _key_agents: Vec<crate::ssh::KeyAgent>,
    /// The commit each git source's ref resolved to when its key was made, by op digest:
    /// the step fetches that commit, even if the ref moves meanwhile.
    pub git_commits: Mutex<HashMap<String, String>>,
    pub bases: HashMap<String, Image>,
    pub progress: Arc<dyn Progress>,
    pub cancel: Cancel,
    /// Ops running now, by cache key: an identical op waits for the first and reuses it.
    pub(crate) running: Mutex<HashMap<CacheKey, Arc<tokio::sync::Mutex<Option<State>>>>>,
    /// (cached, executed) steps.
    pub(crate) counts: Mutex<(usize, usize)>,
    /// Layers being measured and committed, cache records being written.
    pub(crate) background: Mutex<JoinSet<Result<(), BuildError>>>,
    /// CPU-heavy work (hashing, copying, making tars) at most one per core at a time, so
    /// parallel stages do not thrash each other.
    pub cpu: Arc<tokio::sync::Semaphore>,
    /// Upper dirs whose layer the store already had, discarded when the build ends.
    pub(crate) unused: Arc<Mutex<Vec<ActiveSnapshot>>>,
    /// The traces of the previous build of this context and target, and of this one.
    pub(crate) previous: Traces,
    /// `previous` came from an imported cache.
    pub(crate) previous_imported: bool,
    pub(crate) traces: Mutex<Traces>,
    /// Why each step that ran missed the cache, by its key.
    pub(crate) reasons: Mutex<HashMap<String, explain::Cause>>,
    pub(crate) misses: Mutex<Vec<Miss>>,
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
    pub(crate) key_times: Mutex<HashMap<String, i64>>,
}

/// What a finished op hands to the ops that use it.
#[derive(Clone)]
pub(crate) struct Done {
    pub(crate) key: CacheKey,
    pub(crate) state: State,
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
            let local = tokio::task::spawn_blocking(move || store.cache_get(&lookup)).await??;
            let hit = if let Some(record) = local {
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
                Some((state, record.created))
            } else {
                // Not here: maybe in a cache imported from a registry.
                self.remote_hit(&key, op, &parent)
            };
            if let Some((state, created)) = hit {
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

    pub(crate) fn cache_allowed(&self, op: &rbuild_frontend::Op) -> bool {
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

impl SolveContext {
    /// How `git` authenticates: the `GIT_AUTH_TOKEN` secret, and the default SSH agent.
    pub(crate) fn git_auth(&self) -> crate::git::GitAuth {
        let token = self
            .opts
            .secrets
            .get("GIT_AUTH_TOKEN")
            .and_then(|source| source.read("GIT_AUTH_TOKEN").ok().flatten())
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .map(|token| token.trim().to_owned());
        crate::git::GitAuth {
            token,
            ssh_agent: self.ssh.get("default").cloned(),
        }
    }

    /// The commit a git source resolves to: the one its key was made with, else now.
    pub(crate) fn git_commit(
        &self,
        op: &frontend::Op,
        git: &frontend::GitSource,
    ) -> Result<String, crate::git::GitError> {
        let known = self
            .git_commits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&op.digest.0)
            .cloned();
        match known {
            Some(commit) => Ok(commit),
            None => {
                let commit = crate::git::resolve(git, &self.git_auth())?;
                self.git_commits
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(op.digest.0.clone(), commit.clone());
                Ok(commit)
            }
        }
    }

    /// The local named context `name` (`--build-context NAME=DIR`); the frontend names
    /// only those the build was given.
    pub(crate) fn named_context(&self, name: &str) -> Result<&Context, BuildError> {
        self.named
            .get(name)
            .ok_or_else(|| BuildError::NamedContext {
                name: name.to_owned(),
                path: PathBuf::new(),
            })
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
        CopySource::Named(name) => format!("the build context `{name}`"),
        CopySource::Git(git) => format!("the repository {}", git.display()),
        CopySource::Inline(_) => "the Dockerfile".to_owned(),
    }
}
