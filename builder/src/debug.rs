//! A failed RUN step kept as it ended (`rbuild build --on-error shell`): its filesystem
//! with the command's changes, its mounts (cache, bind, secret, ssh, tmpfs), environment,
//! user, working directory, network and limits, so that a shell can be opened in it.
//!
//! Nothing of it is cached or committed: dropping it discards the snapshot, releases the
//! cache mounts' locks and removes the secret files, as a failed step does at once
//! without `--on-error shell`.

use rbuild_frontend::Span;
use rbuild_runtime::{Runtime, SandboxSpec};
use rbuild_store::ActiveSnapshot;

use crate::mounts::StepMounts;
use crate::snapshots::Snapshots;
use crate::snapshotter::Writable;

/// The state a failed RUN step left, held until dropped.
pub struct FailedStep {
    /// The step's own sandbox, as it ran.
    spec: SandboxSpec,
    runtime: Runtime,
    store: std::sync::Arc<dyn Snapshots>,
    span: Span,
    description: String,
    /// Released before the snapshot is discarded (their order in `drop`).
    mounts: Option<StepMounts>,
    root: Option<Writable>,
    active: Option<ActiveSnapshot>,
}

impl FailedStep {
    pub(crate) fn new(
        spec: SandboxSpec,
        runtime: Runtime,
        store: std::sync::Arc<dyn Snapshots>,
        op: &rbuild_frontend::Op,
        mounts: StepMounts,
        root: Writable,
        active: ActiveSnapshot,
    ) -> FailedStep {
        FailedStep {
            spec,
            runtime,
            store,
            span: op.span,
            description: op.description.clone(),
            mounts: Some(mounts),
            root: Some(root),
            active: Some(active),
        }
    }

    /// The step's instruction, as in its error.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Where the step is in the Dockerfile.
    pub fn span(&self) -> Span {
        self.span
    }

    /// The runtime the step ran in, to start [`FailedStep::shell`] with.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The step's sandbox running `args` instead of the step's command (on a terminal
    /// when `terminal`): the same root, with the step's changes, mounts, environment,
    /// user, working directory, network, limits and rbuild's init.
    pub fn shell(&self, args: Vec<String>, terminal: bool) -> SandboxSpec {
        let mut spec = self.spec.clone();
        spec.process.args = args;
        spec.process.terminal = terminal;
        if terminal && !spec.process.env.iter().any(|e| e.starts_with("TERM=")) {
            let term = std::env::var("TERM").unwrap_or_else(|_| "xterm".to_owned());
            spec.process.env.push(format!("TERM={term}"));
        }
        spec
    }
}

impl std::fmt::Debug for FailedStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailedStep")
            .field("description", &self.description)
            .field("snapshot", &self.active.as_ref().map(|a| &a.upper))
            .finish_non_exhaustive()
    }
}

impl Drop for FailedStep {
    fn drop(&mut self) {
        drop(self.mounts.take());
        drop(self.root.take());
        if let Some(active) = self.active.take() {
            let _ = self.store.discard(active);
        }
    }
}
