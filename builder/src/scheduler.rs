//! The scheduler: runs a build graph's ops in dependency order, as many at a time as are
//! ready, each through a [`Solver`] that keys, looks up and runs it.
//!
//! What the scheduler owns, and nothing else: the order (an op starts once every input is
//! done), parallelism (independent ops run concurrently, as tasks), identical work (two ops
//! with the same cache key in one build run once: the second waits for the first and reuses
//! its result), cancellation (no op starts after [`Cancel::cancel`], and the build returns
//! [`BuildError::Cancelled`]) and failure (the first error cancels the rest and is the one
//! returned, whatever the others then report). What an op's key is, where its cache lives,
//! how it runs and what is recorded about it are the solver's (see `step` for rbuild's).
//!
//! The unit tests below drive it with an in-memory solver; they need no root and no store.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use rbuild_frontend::OpId;
use tokio::task::JoinSet;

use crate::cache::CacheKey;
use crate::error::BuildError;
use crate::solve::Cancel;

/// What a finished op hands to the ops that use it.
#[derive(Debug, Clone)]
pub(crate) struct Done<O> {
    pub key: CacheKey,
    pub output: O,
}

/// The results of an op's inputs, by op.
pub(crate) type Inputs<O> = HashMap<OpId, Done<O>>;

/// How each op is keyed, found in a cache or run. The scheduler calls, for one op:
/// [`key`](Solver::key); then [`resolve`](Solver::resolve), whose `Some` ends the op (an op
/// that is not cached, such as a base image); then, once per key in a build,
/// [`lookup`](Solver::lookup) and, on a miss, [`run`](Solver::run). An op whose key an
/// earlier op of the build had gets that op's output through [`reused`](Solver::reused).
///
/// Every method may be called concurrently for different ops. An error from any of them
/// fails the op, which cancels the build.
pub(crate) trait Solver: Send + Sync + 'static {
    /// What an op leaves for the ops after it (rbuild's: a filesystem state).
    type Output: Clone + Send + Sync + 'static;

    /// The op's cache key, from its definition and its inputs' keys and outputs.
    fn key(
        &self,
        op: OpId,
        inputs: &Inputs<Self::Output>,
    ) -> impl Future<Output = Result<CacheKey, BuildError>> + Send;

    /// The output of an op that is resolved rather than cached or run, or `None` for an op
    /// that goes through the cache.
    fn resolve(
        &self,
        op: OpId,
        key: &CacheKey,
    ) -> impl Future<Output = Result<Option<Self::Output>, BuildError>> + Send;

    /// An op of this build with the same key already produced `output`, which `op` reuses.
    fn reused(&self, op: OpId, key: &CacheKey, output: &Self::Output);

    /// The op's output from a cache, or `None` on a miss.
    fn lookup(
        &self,
        op: OpId,
        key: &CacheKey,
        inputs: &Inputs<Self::Output>,
    ) -> impl Future<Output = Result<Option<Self::Output>, BuildError>> + Send;

    /// Runs the op (a cache miss).
    fn run(
        &self,
        op: OpId,
        key: &CacheKey,
        inputs: Inputs<Self::Output>,
    ) -> impl Future<Output = Result<Self::Output, BuildError>> + Send;
}

/// Ops of the build that are running or ran, by key: an op with the key of another waits
/// for it and reuses its output.
type Slots<O> = Mutex<HashMap<CacheKey, Arc<tokio::sync::Mutex<Option<O>>>>>;

/// An op's index and its result, as its task ends.
type Finished<O> = (usize, Result<Done<O>, BuildError>);

/// Solves the graph whose op `i` reads the ops `inputs[i]` (each listed before its users or
/// not, in any order; duplicates allowed). Returns every op's result, by index.
pub(crate) async fn solve<S: Solver>(
    solver: Arc<S>,
    inputs: &[Vec<OpId>],
    cancel: &Cancel,
) -> Result<Vec<Done<S::Output>>, BuildError> {
    let count = inputs.len();
    let Edges {
        inputs,
        mut waiting,
        dependents,
    } = Edges::of(inputs);
    let slots: Arc<Slots<S::Output>> = Arc::default();
    let mut done: Vec<Option<Done<S::Output>>> = vec![None; count];
    let mut tasks = JoinSet::new();
    let mut failure: Option<BuildError> = None;
    let spawn = |tasks: &mut JoinSet<Finished<S::Output>>,
                 index: usize,
                 done: &[Option<Done<S::Output>>]| {
        let given: Inputs<S::Output> = inputs[index]
            .iter()
            .map(|&id| {
                let result = done[id.0].clone();
                (id, result.expect("inputs finish before their users start"))
            })
            .collect();
        let (solver, slots, cancel) = (solver.clone(), slots.clone(), cancel.clone());
        tasks.spawn(async move {
            let result = step(&*solver, &slots, &cancel, OpId(index), given).await;
            (index, result)
        });
    };
    for index in (0..count).filter(|&index| waiting[index] == 0) {
        spawn(&mut tasks, index, &done);
    }
    while let Some(joined) = tasks.join_next().await {
        let (index, result) = match joined {
            Ok(finished) => finished,
            Err(err) => {
                // A panic: stop everything, as for an error.
                cancel.cancel();
                failure.get_or_insert(BuildError::Join(err));
                continue;
            }
        };
        match result {
            Ok(finished) => {
                done[index] = Some(finished);
                if failure.is_some() || cancel.is_cancelled() {
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
                cancel.cancel();
                if failure.is_none() || matches!(failure, Some(BuildError::Cancelled)) {
                    failure = Some(err);
                }
            }
        }
    }
    if let Some(err) = failure {
        return Err(err);
    }
    if cancel.is_cancelled() {
        return Err(BuildError::Cancelled);
    }
    Ok(done
        .into_iter()
        .map(|done| done.expect("every op finished"))
        .collect())
}

/// The graph's edges both ways, and how many inputs each op still waits for.
struct Edges {
    /// Each op's inputs, each once.
    inputs: Arc<Vec<Vec<OpId>>>,
    waiting: Vec<usize>,
    /// The ops that read each op.
    dependents: Vec<Vec<usize>>,
}

impl Edges {
    fn of(inputs: &[Vec<OpId>]) -> Edges {
        let inputs: Vec<Vec<OpId>> = inputs
            .iter()
            .map(|ids| {
                let mut ids = ids.clone();
                ids.sort();
                ids.dedup();
                ids
            })
            .collect();
        let waiting = inputs.iter().map(Vec::len).collect();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); inputs.len()];
        for (index, ids) in inputs.iter().enumerate() {
            for input in ids {
                dependents[input.0].push(index);
            }
        }
        Edges {
            inputs: Arc::new(inputs),
            waiting,
            dependents,
        }
    }
}

/// One op: keyed, then resolved, reused, found in the cache, or run.
async fn step<S: Solver>(
    solver: &S,
    slots: &Slots<S::Output>,
    cancel: &Cancel,
    op: OpId,
    inputs: Inputs<S::Output>,
) -> Result<Done<S::Output>, BuildError> {
    if cancel.is_cancelled() {
        return Err(BuildError::Cancelled);
    }
    let key = solver.key(op, &inputs).await?;
    if let Some(output) = solver.resolve(op, &key).await? {
        return Ok(Done { key, output });
    }
    let slot = slots
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key.clone())
        .or_default()
        .clone();
    // Held until this op's output is known: an identical op waits here.
    let mut slot = slot.lock().await;
    if let Some(output) = slot.as_ref() {
        solver.reused(op, &key, output);
        let output = output.clone();
        return Ok(Done { key, output });
    }
    let output = match solver.lookup(op, &key, &inputs).await? {
        Some(output) => output,
        None => solver.run(op, &key, inputs).await?,
    };
    *slot = Some(output.clone());
    Ok(Done { key, output })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};
    use std::time::Duration;

    use tokio::sync::Barrier;

    use super::*;
    use crate::cache::KeyBuilder;

    /// An in-memory solver: op `i` is named `names[i]`; its key is its name and its
    /// inputs' keys; its output the concatenation of its name and its inputs' outputs. The
    /// cache is a map from key to output; `behaviour` makes an op fail, wait or panic.
    #[derive(Default)]
    struct Fake {
        names: Vec<&'static str>,
        cache: Mutex<HashMap<CacheKey, String>>,
        behaviour: HashMap<&'static str, Behaviour>,
        /// Events in order: "run a", "hit a", "reused a", "resolved a", "finished a".
        log: Mutex<Vec<String>>,
        /// An output is the op's name alone (for graphs where nesting grows exponentially).
        flat: bool,
    }

    enum Behaviour {
        Fail,
        Panic,
        /// Waits at the barrier (with the other ops of the same barrier) before finishing.
        Meet(Arc<Barrier>),
        /// Never finishes unless cancelled.
        Hang(Cancel),
        /// Not cached: resolved at once (as a base image is).
        Resolved,
    }

    impl Fake {
        fn new(names: &[&'static str]) -> Fake {
            Fake {
                names: names.to_vec(),
                ..Default::default()
            }
        }

        fn note(&self, event: &str, op: OpId) {
            let entry = format!("{event} {}", self.names[op.0]);
            self.log.lock().unwrap().push(entry);
        }

        fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }

        fn count(&self, event: &str) -> usize {
            self.log().iter().filter(|e| e.starts_with(event)).count()
        }

        fn output(&self, op: OpId, inputs: &Inputs<String>) -> String {
            if self.flat {
                return self.names[op.0].to_owned();
            }
            let inputs: BTreeMap<_, _> = inputs.iter().map(|(id, d)| (id, &d.output)).collect();
            let parts: Vec<&str> = inputs.values().map(|s| s.as_str()).collect();
            format!("{}({})", self.names[op.0], parts.join(","))
        }
    }

    impl Solver for Fake {
        type Output = String;

        async fn key(&self, op: OpId, inputs: &Inputs<String>) -> Result<CacheKey, BuildError> {
            let mut key = KeyBuilder::new("fake");
            key.part(self.names[op.0]);
            let inputs: BTreeMap<_, _> = inputs.iter().collect();
            for done in inputs.values() {
                key.part(done.key.as_str());
            }
            Ok(key.finish())
        }

        async fn resolve(&self, op: OpId, _: &CacheKey) -> Result<Option<String>, BuildError> {
            if let Some(Behaviour::Resolved) = self.behaviour.get(self.names[op.0]) {
                self.note("resolved", op);
                return Ok(Some(self.names[op.0].to_owned()));
            }
            Ok(None)
        }

        fn reused(&self, op: OpId, _: &CacheKey, _: &String) {
            self.note("reused", op);
        }

        async fn lookup(
            &self,
            op: OpId,
            key: &CacheKey,
            _: &Inputs<String>,
        ) -> Result<Option<String>, BuildError> {
            let hit = self.cache.lock().unwrap().get(key).cloned();
            if hit.is_some() {
                self.note("hit", op);
            }
            Ok(hit)
        }

        async fn run(
            &self,
            op: OpId,
            key: &CacheKey,
            inputs: Inputs<String>,
        ) -> Result<String, BuildError> {
            self.note("run", op);
            match self.behaviour.get(self.names[op.0]) {
                Some(Behaviour::Fail) => {
                    return Err(BuildError::LayerFailed {
                        message: format!("{} failed", self.names[op.0]),
                    });
                }
                Some(Behaviour::Panic) => panic!("{} panicked", self.names[op.0]),
                Some(Behaviour::Meet(barrier)) => {
                    barrier.wait().await;
                }
                Some(Behaviour::Hang(cancel)) => {
                    cancel.cancelled().await;
                    return Err(BuildError::Cancelled);
                }
                Some(Behaviour::Resolved) | None => {}
            }
            let output = self.output(op, &inputs);
            self.cache
                .lock()
                .unwrap()
                .insert(key.clone(), output.clone());
            self.note("finished", op);
            Ok(output)
        }
    }

    fn ids(list: &[usize]) -> Vec<OpId> {
        list.iter().map(|&i| OpId(i)).collect()
    }

    /// Solves with a time bound, so a scheduler that deadlocks fails the test instead of
    /// hanging it.
    async fn solve_fake(
        fake: &Arc<Fake>,
        inputs: &[Vec<OpId>],
        cancel: &Cancel,
    ) -> Result<Vec<Done<String>>, BuildError> {
        tokio::time::timeout(Duration::from_secs(10), solve(fake.clone(), inputs, cancel))
            .await
            .expect("the scheduler finished")
    }

    fn outputs(done: &[Done<String>]) -> Vec<&str> {
        done.iter().map(|d| d.output.as_str()).collect()
    }

    #[tokio::test]
    async fn ops_run_after_their_inputs_and_get_their_outputs() {
        // base → {left, right} → top, inputs listed out of order and twice.
        let fake = Arc::new(Fake::new(&["base", "left", "right", "top"]));
        let graph = [ids(&[]), ids(&[0]), ids(&[0, 0]), ids(&[2, 1])];
        let done = solve_fake(&fake, &graph, &Cancel::default()).await.unwrap();
        assert_eq!(
            outputs(&done),
            [
                "base()",
                "left(base())",
                "right(base())",
                "top(left(base()),right(base()))"
            ]
        );
        let log = fake.log();
        let at = |event: &str| log.iter().position(|e| e == event).unwrap();
        assert!(at("finished base") < at("run left"));
        assert!(at("finished base") < at("run right"));
        assert!(at("finished left") < at("run top"));
        assert!(at("finished right") < at("run top"));
    }

    #[tokio::test]
    async fn independent_ops_run_at_the_same_time() {
        // Two stages that each wait for the other inside `run`: only a scheduler that runs
        // them concurrently finishes.
        let barrier = Arc::new(Barrier::new(2));
        let mut fake = Fake::new(&["a", "b", "both"]);
        fake.behaviour.insert("a", Behaviour::Meet(barrier.clone()));
        fake.behaviour.insert("b", Behaviour::Meet(barrier));
        let fake = Arc::new(fake);
        let graph = [ids(&[]), ids(&[]), ids(&[0, 1])];
        let done = solve_fake(&fake, &graph, &Cancel::default()).await.unwrap();
        assert_eq!(done[2].output, "both(a(),b())");
    }

    #[tokio::test]
    async fn identical_ops_of_one_build_run_once() {
        // Two stages with the same definition on the same base: one runs, the other reuses.
        let fake = Arc::new(Fake::new(&["base", "same", "same", "top"]));
        let graph = [ids(&[]), ids(&[0]), ids(&[0]), ids(&[1, 2])];
        let done = solve_fake(&fake, &graph, &Cancel::default()).await.unwrap();
        assert_eq!(fake.count("run same"), 1, "{:?}", fake.log());
        assert_eq!(fake.count("reused same"), 1, "{:?}", fake.log());
        assert_eq!(done[1].key, done[2].key);
        assert_eq!(done[1].output, done[2].output);
        assert_eq!(fake.count("run top"), 1);
    }

    #[tokio::test]
    async fn a_second_build_takes_every_op_from_the_cache_and_a_change_reruns_its_users() {
        let fake = Arc::new(Fake::new(&["base", "mid", "top"]));
        let graph = [ids(&[]), ids(&[0]), ids(&[1])];
        let first = solve_fake(&fake, &graph, &Cancel::default()).await.unwrap();
        assert_eq!(fake.count("run"), 3);

        fake.log.lock().unwrap().clear();
        let second = solve_fake(&fake, &graph, &Cancel::default()).await.unwrap();
        assert_eq!(fake.count("run"), 0, "{:?}", fake.log());
        assert_eq!(fake.count("hit"), 3);
        assert_eq!(outputs(&first), outputs(&second));
        let keys = |done: &[Done<String>]| done.iter().map(|d| d.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&first), keys(&second));

        // The middle op changes (its name is its definition): it and the op above it miss,
        // the base still hits.
        let mut changed = Fake::new(&["base", "mid2", "top"]);
        changed.cache = Mutex::new(fake.cache.lock().unwrap().clone());
        let changed = Arc::new(changed);
        let third = solve_fake(&changed, &graph, &Cancel::default())
            .await
            .unwrap();
        assert_eq!(
            changed.log(),
            [
                "hit base",
                "run mid2",
                "finished mid2",
                "run top",
                "finished top"
            ]
        );
        assert_eq!(third[0].key, first[0].key);
        assert_ne!(
            third[2].key, first[2].key,
            "a changed input changes the key"
        );
    }

    #[tokio::test]
    async fn resolved_ops_skip_the_cache_and_are_never_reused() {
        let mut fake = Fake::new(&["image", "image", "run"]);
        fake.behaviour.insert("image", Behaviour::Resolved);
        let fake = Arc::new(fake);
        let graph = [ids(&[]), ids(&[]), ids(&[0, 1])];
        let done = solve_fake(&fake, &graph, &Cancel::default()).await.unwrap();
        assert_eq!(fake.count("resolved image"), 2);
        assert_eq!(fake.count("reused"), 0);
        assert_eq!(fake.count("hit"), 0);
        assert_eq!(done[2].output, "run(image,image)");
    }

    #[tokio::test]
    async fn the_first_failure_cancels_the_rest_and_is_the_error() {
        // `slow` runs until cancelled; `bad` fails; `after` (after `bad`) never starts.
        let cancel = Cancel::default();
        let mut fake = Fake::new(&["slow", "bad", "after"]);
        fake.behaviour
            .insert("slow", Behaviour::Hang(cancel.clone()));
        fake.behaviour.insert("bad", Behaviour::Fail);
        let fake = Arc::new(fake);
        let graph = [ids(&[]), ids(&[]), ids(&[1])];
        let err = solve_fake(&fake, &graph, &cancel).await.unwrap_err();
        assert!(
            matches!(&err, BuildError::LayerFailed { message } if message == "bad failed"),
            "{err:?}"
        );
        assert!(cancel.is_cancelled());
        assert_eq!(fake.count("run after"), 0);
        assert_eq!(fake.count("finished"), 0, "{:?}", fake.log());
    }

    #[tokio::test]
    async fn a_panicking_op_fails_the_build_instead_of_hanging_it() {
        let cancel = Cancel::default();
        let mut fake = Fake::new(&["boom", "slow", "after"]);
        fake.behaviour.insert("boom", Behaviour::Panic);
        fake.behaviour
            .insert("slow", Behaviour::Hang(cancel.clone()));
        let fake = Arc::new(fake);
        let graph = [ids(&[]), ids(&[]), ids(&[0])];
        let err = solve_fake(&fake, &graph, &cancel).await.unwrap_err();
        assert!(matches!(err, BuildError::Join(_)), "{err:?}");
        assert!(cancel.is_cancelled());
        assert_eq!(fake.count("run after"), 0);
    }

    #[tokio::test]
    async fn a_cancelled_build_stops_its_running_ops_and_starts_no_other() {
        let cancel = Cancel::default();
        let mut fake = Fake::new(&["slow", "after"]);
        fake.behaviour
            .insert("slow", Behaviour::Hang(cancel.clone()));
        let fake = Arc::new(fake);
        let graph = [ids(&[]), ids(&[0])];
        let canceller = {
            let (cancel, fake) = (cancel.clone(), fake.clone());
            tokio::spawn(async move {
                while fake.count("run slow") == 0 {
                    tokio::task::yield_now().await;
                }
                cancel.cancel();
            })
        };
        let err = solve_fake(&fake, &graph, &cancel).await.unwrap_err();
        canceller.await.unwrap();
        assert!(matches!(err, BuildError::Cancelled), "{err:?}");
        assert_eq!(fake.count("run after"), 0);

        // Already cancelled: nothing runs at all.
        fake.log.lock().unwrap().clear();
        let err = solve_fake(&fake, &graph, &cancel).await.unwrap_err();
        assert!(matches!(err, BuildError::Cancelled), "{err:?}");
        assert!(fake.log().is_empty(), "{:?}", fake.log());
    }

    #[tokio::test]
    async fn wide_graphs_finish_with_every_op_run_once() {
        // 200 ops in layers of 20, each reading every op of the layer below.
        let names: Vec<&'static str> = (0..200)
            .map(|i| &*Box::leak(format!("op{i}").into_boxed_str()))
            .collect();
        let mut fake = Fake::new(&names);
        fake.flat = true;
        let fake = Arc::new(fake);
        let graph: Vec<Vec<OpId>> = (0..200)
            .map(|i| {
                let layer = i / 20;
                if layer == 0 {
                    Vec::new()
                } else {
                    ((layer - 1) * 20..layer * 20).map(OpId).collect()
                }
            })
            .collect();
        let done = solve_fake(&fake, &graph, &Cancel::default()).await.unwrap();
        assert_eq!(done.len(), 200);
        let ran: HashSet<String> = fake
            .log()
            .into_iter()
            .filter(|e| e.starts_with("run"))
            .collect();
        assert_eq!(ran.len(), 200);
        assert_eq!(fake.count("run"), 200);
    }
}
