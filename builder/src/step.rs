//! rbuild's [`Solver`]: how one step of a build is keyed (with the trace that explains a
//! miss), resolved (base images, scratch), found in the local or an imported cache, or run
//! by the runner of its kind (`exec`, `copy`, `fileops`) and committed (`commit`).

use std::time::Instant;

use rbuild_frontend::{BuildGraph, CopySource, Op, OpId, OpKind};

use crate::cache::CacheKey;
use crate::error::BuildError;
use crate::explain;
use crate::progress::Event;
use crate::scheduler::{Inputs, Solver};
use crate::solve::{Miss, SolveContext};
use crate::state::State;

impl Solver for SolveContext {
    type Output = State;

    async fn key(&self, id: OpId, inputs: &Inputs<State>) -> Result<CacheKey, BuildError> {
        let (key, trace) = self.cache_key(&self.graph, id, inputs).await?;
        let identity = self.step_identity(id);
        let mut records = self.records();
        // What changed since the previous build, whether or not the cache still has the
        // step: the steps after it name this as their cause.
        let previous = self.history.previous.steps.get(&identity);
        if let Some(old) = previous.filter(|old| old.key != trace.key) {
            let step = id.0 + 1;
            let traces = &records.traces;
            let ancestors = || self.ancestor_keys(id, traces);
            let cause = if self.history.imported {
                // Imported traces carry hashes of the environment's values.
                let redacted = trace.redacted();
                explain::explain(step, old, &redacted, &records.reasons, ancestors)
            } else {
                explain::explain(step, old, &trace, &records.reasons, ancestors)
            };
            records.reasons.insert(key.to_string(), cause);
        }
        if self.opts.attest.provenance.is_some() {
            records
                .op_inputs
                .insert(id, crate::attest::OpInputs::of(&trace));
        }
        records.traces.steps.insert(identity, trace);
        Ok(key)
    }

    async fn resolve(&self, id: OpId, _: &CacheKey) -> Result<Option<State>, BuildError> {
        let op = self.graph.op(id);
        // Image and scratch ops are resolved, not run: nothing to cache.
        if !matches!(op.kind, OpKind::Scratch | OpKind::Image { .. }) {
            return Ok(None);
        }
        let state = self.root_state(op).await?;
        let step = id.0 + 1;
        self.progress.event(Event::StepStarted {
            step,
            description: &op.description,
        });
        self.progress.event(Event::StepFinished {
            step,
            elapsed: Default::default(),
        });
        Ok(Some(state))
    }

    fn reused(&self, id: OpId, key: &CacheKey, _: &State) {
        let time = self.records().key_times.get(key.as_str()).copied();
        let time = time.unwrap_or_else(rbuild_store::time::now_unix);
        self.cached(id, key, time);
    }

    async fn lookup(
        &self,
        id: OpId,
        key: &CacheKey,
        inputs: &Inputs<State>,
    ) -> Result<Option<State>, BuildError> {
        let op = self.graph.op(id);
        if !self.cache_allowed(op) {
            return Ok(None);
        }
        let parent = &inputs[&rootfs(op)];
        let store = self.builder.snapshots.clone();
        let lookup = key.to_string();
        let local = tokio::task::spawn_blocking(move || store.cache_get(&lookup)).await??;
        let hit = if let Some(record) = local {
            let state = match (&op.kind, &record.layer) {
                // A layer rbuild built (uncompressed: its digest is its diff id), not one
                // an imported cache brought.
                (OpKind::Copy(copy), Some(layer))
                    if copy.link && layer.descriptor.digest == layer.diff_id =>
                {
                    self.restack(key, op, &parent.output, &layer.descriptor, &record)
                        .await?
                }
                _ => self.cached_state(&parent.output, &record).await?,
            };
            Some((state, record.created))
        } else {
            // Not here: maybe in a cache imported from a registry.
            self.remote_hit(key, op, &parent.output)
        };
        let Some((state, created)) = hit else {
            return Ok(None);
        };
        self.cached(id, key, created);
        self.export(id, key, parent, &state);
        Ok(Some(state))
    }

    async fn run(
        &self,
        id: OpId,
        key: &CacheKey,
        mut inputs: Inputs<State>,
    ) -> Result<State, BuildError> {
        let op = self.graph.op(id);
        let step = id.0 + 1;
        // The step runs: whatever it reads must be files now.
        for done in inputs.values_mut() {
            if done.output.has_remote() {
                done.output = self.materialize(&done.output).await?;
            }
        }
        let parent = &inputs[&rootfs(op)];
        self.progress.event(Event::StepStarted {
            step,
            description: &op.description,
        });
        let reason = self.miss_reason(id, key);
        if let Some(reason) = &reason {
            self.progress.event(Event::StepMiss { step, reason });
        }
        self.records().misses.push(Miss {
            step,
            description: op.description.clone(),
            reason,
        });
        let started = Instant::now();
        let ran = self.run_op(id, &parent.output, &inputs).await;
        let state = match ran.map_err(|err| err.in_step(op.span, &op.description)) {
            Ok((active, keep_empty)) => self
                .commit_pipelined(key, op, &parent.output, active, keep_empty, None)
                .await
                .map_err(|err| err.in_step(op.span, &op.description))?,
            Err(err) => {
                let elapsed = started.elapsed();
                self.progress.event(Event::StepFailed { step, elapsed });
                return Err(err);
            }
        };
        self.note_time(id, key, rbuild_store::time::now_unix());
        self.export(id, key, parent, &state);
        let elapsed = started.elapsed();
        self.progress.event(Event::StepFinished { step, elapsed });
        self.records().executed += 1;
        Ok(state)
    }
}

impl SolveContext {
    /// Runs a layer-producing op by its kind's runner. Each leaves an active snapshot whose
    /// upper dir holds its changes, and says whether an empty one is still a layer.
    async fn run_op(
        &self,
        id: OpId,
        parent: &State,
        inputs: &Inputs<State>,
    ) -> Result<(rbuild_store::ActiveSnapshot, bool), BuildError> {
        let graph = &self.graph;
        let op = graph.op(id);
        match &op.kind {
            OpKind::Exec(exec) => {
                let sources = exec
                    .mounts
                    .iter()
                    .filter_map(|mount| mount.input())
                    .map(|source| {
                        let lowers = inputs[&source].output.lowers.clone();
                        (source, (lowers, origin(graph, &CopySource::Op(source))))
                    })
                    .collect();
                let active = self.exec(op, exec, parent, sources, id.0 + 1).await?;
                Ok((active, true))
            }
            OpKind::Copy(copy) => {
                let source = match copy.source {
                    CopySource::Op(source) => Some(&inputs[&source].output),
                    _ => None,
                };
                let remote = self.remote_files(op, copy, id.0 + 1).await?;
                let origin = origin(graph, &copy.source);
                let active = self.copy(op, copy, parent, source, &origin, remote).await?;
                Ok((active, true))
            }
            OpKind::Mkdir(mkdir) => Ok((self.mkdir(op, mkdir, parent).await?, false)),
            OpKind::Scratch | OpKind::Image { .. } => {
                unreachable!("resolved, not run (see `resolve`)")
            }
        }
    }

    /// A cached `COPY --link` on this parent: the recorded layer's files are linked into a
    /// snapshot of their own and committed on the parent; nothing is run or measured again.
    /// Without the layer's snapshot, the recorded state as for any hit.
    async fn restack(
        &self,
        key: &CacheKey,
        op: &Op,
        parent: &State,
        layer: &rbuild_store::oci::Descriptor,
        record: &rbuild_store::CacheRecord,
    ) -> Result<State, BuildError> {
        let store = self.builder.snapshots.clone();
        let layer = layer.clone();
        match tokio::task::spawn_blocking(move || store.clone_layer(&layer)).await?? {
            Some((active, known)) => {
                // Committed on its parent, which must be files for that.
                let parent = self.materialize(parent).await?;
                self.commit_pipelined(key, op, &parent, active, true, Some(known))
                    .await
            }
            None => self.cached_state(parent, record).await,
        }
    }

    /// Why a step that runs missed the cache, when that is known.
    fn miss_reason(&self, id: OpId, key: &CacheKey) -> Option<String> {
        let op = self.graph.op(id);
        if !self.cache_allowed(op) {
            let flag = if self.opts.no_cache {
                "--no-cache"
            } else {
                "--no-cache-filter"
            };
            return Some(flag.to_owned());
        }
        let step = id.0 + 1;
        if let Some(cause) = self.records().reasons.get(key.as_str()) {
            return Some(cause.message(step));
        }
        let identity = self.step_identity(id);
        if !self.history.previous.steps.contains_key(&identity) {
            return None;
        }
        Some(if self.history.imported {
            "the imported cache does not have it (was it exported with `mode=min`, which \
             leaves out the steps not in the image?)"
                .to_owned()
        } else {
            "its cache record is gone (pruned, or its layer was removed)".to_owned()
        })
    }

    /// A step taken from a cache or from an identical step of this build, made at `time`.
    fn cached(&self, id: OpId, key: &CacheKey, time: i64) {
        self.note_time(id, key, time);
        let op = self.graph.op(id);
        let step = id.0 + 1;
        self.progress.event(Event::StepStarted {
            step,
            description: &op.description,
        });
        self.progress.event(Event::StepCached { step });
        self.records().cached += 1;
    }

    fn note_time(&self, id: OpId, key: &CacheKey, time: i64) {
        let mut records = self.records();
        records.op_times.insert(id, time);
        records.key_times.insert(key.to_string(), time);
    }
}

/// The op a layer-producing op builds on.
fn rootfs(op: &Op) -> OpId {
    op.kind.rootfs().expect("layer-producing ops have a rootfs")
}

impl SolveContext {
    /// A step's identity across builds: its stage and its position in the stage, so an
    /// edited instruction is still the same step; in a multi-platform build, also the
    /// platform whose graph it is in.
    /// This build's keys of the ops `id` builds on, directly or not, nearest first.
    fn ancestor_keys(&self, id: OpId, traces: &explain::Traces) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        let mut queue: std::collections::VecDeque<OpId> =
            self.graph.op(id).kind.inputs().into_iter().collect();
        let mut keys = Vec::new();
        while let Some(input) = queue.pop_front() {
            if !seen.insert(input) {
                continue;
            }
            if let Some(trace) = traces.steps.get(&self.step_identity(input)) {
                keys.push(trace.key.clone());
            }
            queue.extend(self.graph.op(input).kind.inputs());
        }
        keys
    }

    pub(crate) fn step_identity(&self, id: OpId) -> String {
        let target = self
            .targets
            .iter()
            .rev()
            .find(|target| target.first_op <= id.0)
            .expect("the first target starts at op 0");
        let op = self.graph.op(id);
        let position = self.graph.ops[target.first_op..id.0]
            .iter()
            .filter(|other| other.stage.index == op.stage.index)
            .count();
        let identity = match &op.stage.name {
            Some(name) => format!("{name}#{position}"),
            None => format!("{}#{position}", op.stage.index),
        };
        if self.targets.len() > 1 {
            format!("{}|{identity}", target.platform)
        } else {
            identity
        }
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

#[cfg(test)]
mod faults;
#[cfg(test)]
mod runners;
#[cfg(test)]
mod tests;
