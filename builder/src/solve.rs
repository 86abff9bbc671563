//! Solving a build: resolve base images, convert the Dockerfile, run the graph's ops with
//! the cache, assemble and name the image.
//!
//! Ops run as soon as their inputs are done, several at a time: independent stages build
//! concurrently, RUN steps wait asynchronously, file work runs on blocking threads. Each op
//! first computes its cache key; a hit reuses the recorded layer, a miss runs the op and
//! records it. Two ops with the same key in one build run once. The first failure cancels
//! the rest: running sandboxes are killed and every op cleans up after itself.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rbuild_frontend::{self as frontend, BuildGraph, OpId, OpKind};
use rbuild_registry::{CacheExportRecord, CacheImport, Registry};
use rbuild_runtime::{ExtraHost, Limits, Network, Rlimit, Runtime};
use rbuild_store::oci::Descriptor;
use rbuild_store::{ActiveSnapshot, Digest, ImageName, Reference, Store};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::bases::Bases;
use crate::context::Context;
use crate::error::BuildError;
use crate::executor::Executor;
use crate::explain::{self, Traces};
use crate::ignore::IgnoreMatcher;
use crate::progress::{Event, Progress};
use crate::remote::{PendingExport, RemoteHit};
use crate::secrets::SecretSource;
use crate::snapshots::Snapshots;
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
    /// The platforms to build for (`--platform`); this machine's when empty. With more
    /// than one, the result is an image index with an image per platform, built in the one
    /// solve (steps the same for every platform run once). A RUN step for another
    /// architecture runs emulated (see `emulation`).
    pub platforms: Vec<frontend::Platform>,
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
    /// `--provenance`, `--sbom`: statements attached to each image (which makes the
    /// result an index), and what they record about the invocation.
    pub attest: crate::attest::AttestOptions,
    /// `--annotation`s, over the standard ones rbuild sets.
    pub annotations: Vec<crate::attest::Annotation>,
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
    /// The image's manifest, or the index of a multi-platform build.
    pub manifest: Descriptor,
    /// The config digest: what `docker images` calls the image id (the index's digest
    /// for a multi-platform build, as with containerd's image store).
    pub config: Digest,
    /// Each platform's image, in the order of `BuildOptions::platforms`.
    pub platforms: Vec<PlatformImage>,
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

/// One platform's image of a build.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    pub platform: frontend::Platform,
    /// Its manifest, with the platform set (as in the index).
    pub manifest: Descriptor,
    pub config: Digest,
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
    /// The store's snapshots, layers and cache as the steps see them: the store itself,
    /// or a test's fake in front of it.
    pub(crate) snapshots: Arc<dyn Snapshots>,
    /// Runs RUN steps' processes: the runtime's sandboxes.
    pub(crate) executor: Arc<dyn Executor>,
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
        Builder::with_executor(store, Arc::new(runtime), snapshotter)
    }

    /// A builder whose RUN steps run through `executor`, seeing snapshots through
    /// `snapshotter`.
    pub fn with_executor(
        store: Store,
        executor: Arc<dyn Executor>,
        snapshotter: Snapshotter,
    ) -> Builder {
        Builder {
            snapshots: Arc::new(store.clone()),
            store,
            executor,
            snapshotter,
            registry: None,
        }
    }

    /// A builder whose steps reach the store's snapshots, layers and cache through
    /// `snapshots` (which must be in front of the same store), e.g. to watch or fail them.
    pub fn with_snapshots(mut self, snapshots: Arc<dyn Snapshots>) -> Builder {
        self.snapshots = snapshots;
        self
    }

    /// The store the builder builds into.
    pub fn store(&self) -> &Store {
        &self.store
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
        let started = rbuild_store::time::now_unix();
        let context_root = context_root(&opts.context)?;
        let dockerfile = frontend::parse(&opts.dockerfile)?;
        let (named, named_contexts) = self.named_contexts(&opts.named_contexts).await?;
        let platforms = match opts.platforms.as_slice() {
            [] => vec![frontend::Platform::default()],
            given => given.to_vec(),
        };
        let convert_opts: Vec<frontend::ConvertOptions> = platforms
            .iter()
            .map(|platform| frontend::ConvertOptions {
                build_args: opts.build_args.clone(),
                target: opts.target.clone(),
                platform: platform.clone(),
                named_contexts: named_contexts.clone(),
                ..Default::default()
            })
            .collect();
        let bases = self
            .base_images(&dockerfile, &convert_opts, opts.pull, &cancel)
            .await?;
        let (graph, targets) = platform_graphs(&dockerfile, &convert_opts, &bases)?;
        let graph = Arc::new(graph);
        check_insecure(&graph, opts.allow_insecure)?;
        let ignore = IgnoreMatcher::parse(opts.ignore.as_deref().unwrap_or(""))
            .map_err(|source| BuildError::IgnoreFile { source })?;
        let explain_scope = format!(
            "{}|{}",
            context_root.display(),
            opts.target.as_deref().unwrap_or("")
        );
        let history = History::load(&self.store, &explain_scope, &opts.cache_from);
        let (ssh, key_agents) = self.ssh_agents(&opts.ssh)?;
        let sources = Sources {
            context: Context::open(context_root, ignore, &self.store),
            named,
            ssh,
            _key_agents: key_agents,
            bases,
            git_commits: Mutex::default(),
            urls: Mutex::default(),
            http: std::sync::OnceLock::new(),
            remote_blobs: Mutex::default(),
        };
        let ctx = Arc::new(SolveContext {
            builder: self.clone(),
            opts,
            graph: graph.clone(),
            targets,
            sources,
            progress,
            cancel,
            work: Work::default(),
            history,
            records: Mutex::default(),
        });
        ctx.progress.event(Event::Started {
            steps: graph.ops.len(),
        });
        let inputs: Vec<Vec<OpId>> = graph.ops.iter().map(|op| op.kind.inputs()).collect();
        let solved = crate::scheduler::solve(ctx.clone(), &inputs, &ctx.cancel).await;
        let cleaned = ctx.clean_up().await;
        // A step's error is the one to report; then one of the background work.
        let states: Vec<State> = solved?.into_iter().map(|done| done.output).collect();
        cleaned?;
        let traces = std::mem::take(&mut ctx.records().traces);
        traces.save(&self.store, &explain_scope, &ctx.history.previous);
        ctx.finish(&states, traces, started).await
    }

    /// The local named contexts, opened, and what each named context is to the frontend.
    async fn named_contexts(
        &self,
        given: &BTreeMap<String, NamedContextSource>,
    ) -> Result<NamedContexts, BuildError> {
        let mut local = BTreeMap::new();
        let mut named = BTreeMap::new();
        for (name, source) in given {
            let context = match source {
                NamedContextSource::Image(reference) => {
                    frontend::NamedContext::Image(reference.clone())
                }
                NamedContextSource::OciLayout { dir, selector } => {
                    let store = self.store.clone();
                    let (name, dir, selector) = (name.clone(), dir.clone(), selector.clone());
                    let reference = tokio::task::spawn_blocking(move || {
                        let selector = selector.as_deref();
                        crate::bases::oci_layout_reference(&store, &name, &dir, selector)
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
                    let context = Context::open(root, IgnoreMatcher::default(), &self.store);
                    local.insert(name.clone(), context);
                    frontend::NamedContext::Local
                }
            };
            named.insert(name.clone(), context);
        }
        Ok((local, named))
    }

    /// The base images the Dockerfile names, each for the platforms it is used with (in
    /// the builds for each of `convert_opts`' platforms), found in the store or pulled.
    async fn base_images(
        &self,
        dockerfile: &frontend::Dockerfile,
        convert_opts: &[frontend::ConvertOptions],
        pull: bool,
        cancel: &Cancel,
    ) -> Result<Bases, BuildError> {
        let mut bases = Bases::default();
        let mut uses = Vec::new();
        for opts in convert_opts {
            for used in frontend::image_uses(dockerfile, opts)? {
                if !uses.contains(&used) {
                    uses.push(used);
                }
            }
        }
        for (reference, platform) in uses {
            // A pull stops at once when the build is cancelled.
            let image = tokio::select! {
                image = self.base_image(&reference, pull, &platform) => image?,
                () = cancel.cancelled() => return Err(BuildError::Cancelled),
            };
            bases.insert(reference, platform, image);
        }
        Ok(bases)
    }

    /// The sockets of the `--ssh` agents by id, starting an agent for each set of key
    /// files (they stop when the returned agents are dropped, with the build).
    fn ssh_agents(
        &self,
        given: &BTreeMap<String, crate::ssh::SshSource>,
    ) -> Result<(BTreeMap<String, PathBuf>, Vec<crate::ssh::KeyAgent>), BuildError> {
        let mut sockets = BTreeMap::new();
        let mut agents = Vec::new();
        for (id, source) in given {
            match source {
                crate::ssh::SshSource::Socket(path) => {
                    sockets.insert(id.clone(), path.clone());
                }
                crate::ssh::SshSource::Keys(keys) => {
                    let dir = self.store.temp_dir("ssh-agent")?;
                    let agent = crate::ssh::KeyAgent::start(id, keys, dir)
                        .map_err(|source| BuildError::Ssh { source })?;
                    sockets.insert(id.clone(), agent.socket.clone());
                    agents.push(agent);
                }
            }
        }
        Ok((sockets, agents))
    }
}

/// Every platform's graph, merged into one (its steps labelled by platform when there
/// are several), and where each platform's part begins.
fn platform_graphs(
    dockerfile: &frontend::Dockerfile,
    convert_opts: &[frontend::ConvertOptions],
    bases: &Bases,
) -> Result<(BuildGraph, Vec<Target>), BuildError> {
    let configs = bases.configs();
    let mut graphs = Vec::new();
    let mut first_ops = Vec::new();
    let mut first_op = 0;
    for opts in convert_opts {
        let graph = frontend::convert(dockerfile, opts, &configs)?;
        first_ops.push(first_op);
        first_op += graph.ops.len();
        graphs.push(graph);
    }
    let (mut merged, outputs) = BuildGraph::merge(graphs);
    let targets = convert_opts
        .iter()
        .zip(first_ops)
        .zip(outputs)
        .map(|((opts, first_op), output)| Target {
            platform: opts.platform.clone(),
            first_op,
            output,
        })
        .collect::<Vec<_>>();
    if targets.len() > 1 {
        // Which platform each step is for, in the progress and the errors.
        for op in &mut merged.ops {
            op.description = format!("[{}] {}", op.platform, op.description);
        }
    }
    Ok((merged, targets))
}

/// The local named contexts by name, and every named context as the frontend sees it.
type NamedContexts = (
    BTreeMap<String, Context>,
    BTreeMap<String, frontend::NamedContext>,
);

/// The build context directory, resolved, or why it cannot be used.
fn context_root(path: &Path) -> Result<PathBuf, BuildError> {
    let root = std::fs::canonicalize(path).map_err(|source| BuildError::Context {
        path: path.to_owned(),
        source,
    })?;
    if !root.is_dir() {
        return Err(BuildError::Context {
            path: path.to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
        });
    }
    Ok(root)
}

/// Before anything runs, and whether or not the step would be cached: a build either is
/// allowed to contain a privileged step or fails the same way every time.
fn check_insecure(graph: &BuildGraph, allowed: bool) -> Result<(), BuildError> {
    let insecure = graph
        .ops
        .iter()
        .find(|op| matches!(&op.kind, OpKind::Exec(exec) if exec.insecure));
    match insecure {
        Some(op) if !allowed => Err(BuildError::InsecureNotAllowed {
            span: op.span,
            description: op.description.clone(),
        }),
        _ => Ok(()),
    }
}

/// One platform's part of a build: its ops are the merged graph's from `first_op` on.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub platform: frontend::Platform,
    pub first_op: usize,
    pub output: frontend::ImageOutput,
}

/// One build being solved: what it reads, what it records, and its work in progress.
pub(crate) struct SolveContext {
    pub builder: Builder,
    pub opts: BuildOptions,
    /// Every platform's graph, merged (see `BuildGraph::merge`).
    pub graph: Arc<BuildGraph>,
    /// The platforms built, one or more.
    pub targets: Vec<Target>,
    pub sources: Sources,
    pub progress: Arc<dyn Progress>,
    pub cancel: Cancel,
    pub(crate) work: Work,
    /// The previous build of this context and target, to explain misses against.
    pub(crate) history: History,
    records: Mutex<Records>,
}

/// What the build reads besides its graph: the contexts, base images, SSH agents, and what
/// it fetched (git commits, URLs, imported cache layers).
pub(crate) struct Sources {
    pub context: Context,
    /// The local named contexts (`--build-context NAME=DIR`), by name.
    pub named: BTreeMap<String, Context>,
    /// The SSH agents' sockets, by id; and the agents rbuild started for key files, which
    /// stop when the build ends.
    pub ssh: BTreeMap<String, PathBuf>,
    pub _key_agents: Vec<crate::ssh::KeyAgent>,
    pub bases: Bases,
    /// The commit each git source's ref resolved to when its key was made, by op digest:
    /// the step fetches that commit, even if the ref moves meanwhile.
    pub git_commits: Mutex<HashMap<String, String>>,
    /// ADD's URL sources fetched in this build, by URL (see `download`).
    pub(crate) urls: Mutex<HashMap<String, rbuild_registry::UrlContent>>,
    /// The client for URL downloads when the builder has no registry client.
    pub(crate) http: std::sync::OnceLock<Arc<Registry>>,
    /// Where the layers of imported cache records come from: blob digest → cache.
    pub(crate) remote_blobs: Mutex<HashMap<Digest, Reference>>,
}

/// Work the build started besides its steps, finished or discarded when it ends.
pub(crate) struct Work {
    /// Layers being measured and committed, cache records being written.
    pub background: Mutex<JoinSet<Result<(), BuildError>>>,
    /// Upper dirs whose layer the store already had, discarded when the build ends.
    pub unused: Arc<Mutex<Vec<ActiveSnapshot>>>,
    /// CPU-heavy work (hashing, copying, making tars) at most one per core at a time, so
    /// parallel stages do not thrash each other.
    pub cpu: Arc<tokio::sync::Semaphore>,
    /// Held while layers of imported caches are fetched and unpacked.
    pub materializing: tokio::sync::Mutex<()>,
}

impl Default for Work {
    fn default() -> Work {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Work {
            background: Mutex::new(JoinSet::new()),
            unused: Arc::default(),
            cpu: Arc::new(tokio::sync::Semaphore::new(cores)),
            materializing: tokio::sync::Mutex::new(()),
        }
    }
}

/// The traces of the build a miss is explained against.
pub(crate) struct History {
    pub previous: Traces,
    /// `previous` came from an imported cache (its environment values are hashed).
    pub imported: bool,
}

impl History {
    /// The previous build here, or, on a machine without one (a fresh CI runner), the
    /// build that exported an imported cache.
    fn load(store: &Store, scope: &str, cache_from: &[CacheImport]) -> History {
        let previous = Traces::load(store, scope);
        if previous.steps.is_empty()
            && let Some(imported) = cache_from
                .iter()
                .find_map(|import| import.traces.as_ref())
                .and_then(|traces| serde_json::from_value::<Traces>(traces.clone()).ok())
        {
            return History {
                previous: imported,
                imported: true,
            };
        }
        History {
            previous,
            imported: false,
        }
    }
}

/// What the build records as its steps finish, for its result, its cache export and the
/// next build's explanations. Plain data behind the one lock of [`SolveContext::records`].
#[derive(Default)]
pub(crate) struct Records {
    /// Steps taken from the cache, and steps run.
    pub cached: usize,
    pub executed: usize,
    /// What went into each step's key, by the step's identity (see `step_identity`).
    pub traces: Traces,
    /// Why each step that ran missed the cache, by its key.
    pub reasons: HashMap<String, explain::Cause>,
    pub misses: Vec<Miss>,
    /// Every layer-producing step's record, for `--cache-to`.
    pub exports: Vec<PendingExport>,
    /// Steps taken from an imported cache, recorded in the local cache at the end.
    pub remote_hits: Vec<RemoteHit>,
    /// When each layer-producing op's result was made (Unix seconds): now for a step that
    /// ran, the cache record's time for one that did not. The image history shows these, so
    /// a rebuild from the cache is the same image, bit for bit. Also by key, for an op
    /// that reuses an identical one's result.
    pub op_times: HashMap<OpId, i64>,
    pub key_times: HashMap<String, i64>,
    /// What each op read, for the materials of the provenance.
    pub op_inputs: HashMap<OpId, crate::attest::OpInputs>,
}

/// What a finished op hands to the ops that use it.
pub(crate) type Done = crate::scheduler::Done<State>;

impl SolveContext {
    /// The build's records; held briefly, never across an await.
    pub(crate) fn records(&self) -> MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One of the permits for CPU-heavy work (hashing, copying, making tars), one per core.
    pub(crate) async fn cpu_permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, BuildError> {
        self.work
            .cpu
            .acquire()
            .await
            .map_err(|_| BuildError::Cancelled)
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
            ssh_agent: self.sources.ssh.get("default").cloned(),
        }
    }

    /// The commit a git source resolves to: the one its key was made with, else now.
    pub(crate) fn git_commit(
        &self,
        op: &frontend::Op,
        git: &frontend::GitSource,
    ) -> Result<String, crate::git::GitError> {
        let known = self
            .sources
            .git_commits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&op.digest.0)
            .cloned();
        match known {
            Some(commit) => Ok(commit),
            None => {
                let commit = crate::git::resolve(git, &self.git_auth())?;
                self.sources
                    .git_commits
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
        self.sources
            .named
            .get(name)
            .ok_or_else(|| BuildError::NamedContext {
                name: name.to_owned(),
                path: PathBuf::new(),
            })
    }
}
