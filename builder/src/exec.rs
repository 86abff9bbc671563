//! RUN: one process in the sandbox over an overlay of the parent's layers and a fresh upper
//! dir, whose changes become the step's layer, with the step's `--mount`s (see `mounts`)
//! on top; neither they nor the mount points made for them end up in the layer.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;

use rbuild_frontend::{ExecOp, NetworkMode, Op, OpId};
use rbuild_runtime::{ExitStatus, Mount, Network, Process, SandboxSpec};

use crate::debug::FailedStep;
use crate::error::BuildError;
use crate::lowers;
use crate::mounts::{self, MountError, MountRequest, StepMounts};
use crate::progress::{Event, Stream};
use crate::snapshotter::Writable;
use crate::solve::SolveContext;
use crate::state::State;
use rbuild_store::{ActiveSnapshot, OverlayXattrs};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Output lines kept for the error message of a failed step.
const TAIL_LINES: usize = 20;

/// RUN's network when neither the step nor the build chooses one: the host's, as with
/// BuildKit's OCI worker without CNI and `docker build`'s default bridge in effect —
/// package installs work out of the box. `--network none` makes a step hermetic.
pub const DEFAULT_NETWORK: Network = Network::Host;

/// The network a RUN step gets: its own `--network`, else the build's, else
/// [`DEFAULT_NETWORK`]. The one place that decides it, for the step's cache key and for
/// the sandbox alike.
pub(crate) fn effective_network(step: NetworkMode, build: Option<Network>) -> Network {
    match step {
        NetworkMode::None => Network::None,
        NetworkMode::Host => Network::Host,
        NetworkMode::Default => build.unwrap_or(DEFAULT_NETWORK),
    }
}

/// How a network is written into a step's cache key: fixed words, part of the on-disk
/// cache format, never a derived `Debug` output that a rename would change.
pub(crate) fn network_key(network: Network) -> &'static str {
    match network {
        Network::None => "None",
        Network::Host => "Host",
        Network::Bridge => "Bridge",
    }
}

/// Files the runtime binds into the root (when it has an `/etc`); their mount points may
/// be created, so `/etc` may be copied up.
const NETWORK_FILES: [&str; 3] = ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"];

/// Checks, for a step of another architecture, that it can run emulated (see
/// `emulation`): a foreign binary is never run some other way.
async fn check_emulation(op: &Op) -> Result<(), BuildError> {
    if crate::emulation::native(&op.platform) {
        return Ok(());
    }
    let platform = op.platform.clone();
    let dir = std::path::Path::new(crate::emulation::BINFMT_MISC);
    tokio::task::spawn_blocking(move || crate::emulation::check(&platform, dir))
        .await?
        .map_err(|source| BuildError::Emulation {
            span: op.span,
            description: op.description.clone(),
            platform: op.platform.to_string(),
            source: Box::new(source),
        })
}

impl SolveContext {
    /// Runs a RUN step. `sources` are the filesystems (their directories, top first, and
    /// names for messages) of the ops its mounts read.
    pub(crate) async fn exec(
        &self,
        op: &Op,
        exec: &ExecOp,
        parent: &State,
        sources: HashMap<OpId, (Vec<PathBuf>, String)>,
        step: usize,
    ) -> Result<ActiveSnapshot, BuildError> {
        check_emulation(op).await?;
        let mounts = self.step_mounts(op, exec, sources, step).await?;
        let (active, root) = self.writable_root(parent).await?;
        let spec = self.sandbox_spec(exec, &root, &mounts);
        let outcome = self.run_sandbox(&spec, step).await;
        let failed = outcome
            .as_ref()
            .is_ok_and(|(outcome, _)| outcome.oom_killed || !outcome.status.success());
        // Locks, scratch dirs and secret files go as soon as the process is gone, unless
        // a failed step is kept for a shell (`--on-error shell`), which only the runtime's
        // sandboxes can open.
        let keep = failed
            && self.opts.keep_failed_step
            && !self.cancel.is_cancelled()
            && self.builder.executor.runtime().is_some();
        let mut mounts = Some(mounts);
        if !keep {
            let mounts = mounts.take();
            let _ = tokio::task::spawn_blocking(move || drop(mounts)).await;
        }
        if self.cancel.is_cancelled() {
            self.discard(active).await;
            return Err(BuildError::Cancelled);
        }
        let (outcome, tail) = match outcome {
            Ok(result) => result,
            Err(err) => {
                self.discard(active).await;
                return Err(BuildError::step_failed(op, err));
            }
        };
        if outcome.oom_killed || !outcome.status.success() {
            let kept = match (mounts, self.builder.executor.runtime()) {
                (Some(mounts), Some(runtime)) => Some(Box::new(FailedStep::new(
                    spec,
                    runtime.clone(),
                    self.builder.snapshots.clone(),
                    op,
                    mounts,
                    root,
                    active,
                ))),
                _ => {
                    self.discard(active).await;
                    None
                }
            };
            return Err(self.failure(op, &outcome, tail, kept));
        }
        self.finish_root(exec, root, active).await
    }

    /// The step's `--mount`s, made ready (cache directories locked, secrets written,
    /// binds resolved).
    async fn step_mounts(
        &self,
        op: &Op,
        exec: &ExecOp,
        sources: HashMap<OpId, (Vec<PathBuf>, String)>,
        step: usize,
    ) -> Result<StepMounts, BuildError> {
        let request = MountRequest {
            store: self.builder.store.clone(),
            snapshots: self.builder.snapshots.clone(),
            context_root: self.sources.context.root.clone(),
            ignore: self.sources.context.ignore.clone(),
            named_roots: self
                .sources
                .named
                .iter()
                .map(|(name, context)| (name.clone(), context.root.clone()))
                .collect(),
            ssh: self.sources.ssh.clone(),
            secrets: self.opts.secrets.clone(),
            sources,
            cancel: self.cancel.clone(),
            imported_caches: self.import_cache_mounts(step, exec).await,
            snapshotter: self.builder.snapshotter.clone(),
        };
        let exec_mounts = exec.mounts.clone();
        let mounts = tokio::task::spawn_blocking(move || mounts::prepare(&request, &exec_mounts))
            .await?
            .map_err(|err| match err {
                MountError::Cancelled { .. } => BuildError::Cancelled,
                MountError::SecretRequired { id } => BuildError::SecretRequired {
                    span: op.span,
                    description: op.description.clone(),
                    id,
                },
                err => BuildError::step_failed(op, err),
            })?;
        Ok(mounts)
    }

    /// A new snapshot on the parent's layers and the step's writable view of it.
    async fn writable_root(
        &self,
        parent: &State,
    ) -> Result<(ActiveSnapshot, Writable), BuildError> {
        let store = self.builder.snapshots.clone();
        let snapshotter = self.builder.snapshotter.clone();
        let parent_lowers = parent.lowers.clone();
        tokio::task::spawn_blocking(move || -> Result<_, BuildError> {
            let active = store.prepare_on(parent_lowers)?;
            match snapshotter.writable(&*store, &active) {
                Ok(root) => Ok((active, root)),
                Err(err) => {
                    let _ = store.discard(active);
                    Err(err)
                }
            }
        })
        .await?
    }

    /// The step's sandbox: its process over `root` with its mounts, and the build's
    /// network, limits and sandbox flags.
    fn sandbox_spec(&self, exec: &ExecOp, root: &Writable, mounts: &StepMounts) -> SandboxSpec {
        let mut env = exec.env.clone();
        // A base image without PATH (`FROM scratch`, an imported tarball) still gets the
        // usual one for RUN, as with BuildKit.
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        // Secrets given as variables; never in the definition, the cache key or the logs.
        env.extend(mounts.env.iter().cloned());
        SandboxSpec {
            root: root.mount(),
            mounts: mounts.mounts.clone(),
            process: Process {
                args: exec.args.clone(),
                env,
                cwd: exec.cwd.clone(),
                user: exec.user.clone(),
                terminal: false,
                rlimits: self.opts.rlimits.clone(),
            },
            hostname: "rbuild".to_owned(),
            network: effective_network(exec.network, self.opts.network),
            limits: self.opts.limits.clone(),
            readonly_root: false,
            seccomp: Default::default(),
            // A step keeps rbuild's init: orphans of the step are reaped (a tool waiting
            // for a pid to go away would otherwise wait for a zombie), and the mount-point
            // stubs made in a bare root are removed before the layer is taken.
            init: true,
            capabilities: Default::default(),
            extra_hosts: self.opts.extra_hosts.clone(),
            shm_size: self.opts.shm_size,
            // Allowed: the build checked `allow_insecure` before it started.
            privileged: exec.insecure,
        }
    }

    /// The error of a step whose process failed or was killed for memory.
    fn failure(
        &self,
        op: &Op,
        outcome: &rbuild_runtime::Outcome,
        tail: Vec<String>,
        kept: Option<Box<FailedStep>>,
    ) -> BuildError {
        if outcome.oom_killed {
            return BuildError::OutOfMemory {
                span: op.span,
                description: op.description.clone(),
                limit: self.opts.limits.memory_bytes.unwrap_or(0),
                tail,
                kept,
            };
        }
        let code = match outcome.status {
            ExitStatus::Exited(code) => code,
            signaled => signaled.code(),
        };
        BuildError::RunFailed {
            span: op.span,
            description: op.description.clone(),
            code,
            tail,
            kept,
        }
    }

    /// After a step that succeeded: its changes into the snapshot's upper dir, without the
    /// parent directories copied up only to hold its mount points.
    async fn finish_root(
        &self,
        exec: &ExecOp,
        root: Writable,
        active: ActiveSnapshot,
    ) -> Result<ActiveSnapshot, BuildError> {
        let mut targets: Vec<String> = exec
            .mounts
            .iter()
            .filter_map(|mount| mount.target().map(str::to_owned))
            .collect();
        targets.extend(NETWORK_FILES.map(String::from));
        let store = self.builder.snapshots.clone();
        tokio::task::spawn_blocking(move || -> Result<_, BuildError> {
            if let Err(err) = root.finish(&*store, &active) {
                let _ = store.discard(active);
                return Err(err);
            }
            let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
            lowers::remove_copied_up_parents(&active.upper, &active.lowers, &targets);
            Ok(active)
        })
        .await?
    }

    /// Runs the sandbox, passing its output on line by line; returns how it ended and the
    /// last lines of output.
    async fn run_sandbox(
        &self,
        spec: &SandboxSpec,
        step: usize,
    ) -> Result<(rbuild_runtime::Outcome, Vec<String>), rbuild_runtime::Error> {
        let tail = Mutex::new(VecDeque::with_capacity(TAIL_LINES));
        let output = |stream: Stream, line: &[u8]| {
            self.progress.event(Event::Log { step, stream, line });
            let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(String::from_utf8_lossy(line).into_owned());
        };
        let outcome = self
            .builder
            .executor
            .run(spec, &output, &self.cancel)
            .await?;
        let tail = tail.into_inner().unwrap_or_else(|e| e.into_inner());
        Ok((outcome, tail.into_iter().collect()))
    }
}

/// The overlay of a store's snapshots for a step (or `rbuild run`): `lowers` top first,
/// in the store's overlay format (`xattrs`).
pub(crate) fn overlay(
    lowers: &[std::path::PathBuf],
    upper: Option<(std::path::PathBuf, std::path::PathBuf)>,
    empty: std::path::PathBuf,
    xattrs: OverlayXattrs,
) -> Mount {
    let mut mount = Mount::overlay(lowers, upper, empty);
    // Plain overlay semantics only: layers are made from the upper dir, which must not
    // depend on features (index, redirects, metacopy) that store state elsewhere. Redirects
    // are not even followed (`off` follows them on kernels built with
    // REDIRECT_ALWAYS_FOLLOW, and conflicts with `userxattr`).
    mount
        .options
        .extend(["index=off", "redirect_dir=nofollow", "metacopy=off"].map(String::from));
    // In a user namespace (rootless) overlayfs keeps its bookkeeping in `user.overlay.*`.
    mount
        .options
        .extend(xattrs.mount_option().map(String::from));
    mount
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words are part of every stored cache key: changing one makes every RUN step of
    /// every existing cache miss.
    #[test]
    fn networks_are_keyed_by_fixed_words() {
        let keyed = |step, build| network_key(effective_network(step, build));
        assert_eq!(keyed(NetworkMode::Default, None), "Host");
        assert_eq!(keyed(NetworkMode::Default, Some(Network::None)), "None");
        assert_eq!(keyed(NetworkMode::Default, Some(Network::Bridge)), "Bridge");
        assert_eq!(keyed(NetworkMode::None, Some(Network::Host)), "None");
        assert_eq!(keyed(NetworkMode::Host, Some(Network::None)), "Host");
    }
}
