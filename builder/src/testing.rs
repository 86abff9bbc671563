//! For the builder's unit tests: an [`Executor`] that runs no process, and a builder over a
//! store in a temporary directory, seen through copies, so that whole builds run without
//! root, namespaces or mounts.
//!
//! The scripted executor reads a RUN step's command (the last argument: `RUN cmd` is
//! `/bin/sh -c cmd`) as a few words separated by `;`, and acts on the step's root directory:
//! `write PATH TEXT`, `remove PATH`, `echo TEXT` (a line of output), `exit N`,
//! `env NAME PATH` (writes the value of the step's variable NAME), `meet NAME` (waits until
//! another step meets at NAME), `hang` (until cancelled).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rbuild_runtime::{ExitStatus, Outcome, Runtime, SandboxSpec};
use rbuild_store::layer::LayerOptions;
use rbuild_store::{
    ActiveSnapshot, CacheRecord, Materialized, NewLayer, OverlayXattrs, SnapshotKey, SnapshotName,
    SnapshotRecord, Store, Uncommitted,
};
use tokio::sync::Barrier;

use crate::BuildError;
use crate::executor::{Executor, OutputSink, Running};
use crate::progress::{Silent, Stream};
use crate::snapshots::Snapshots;
use crate::snapshotter::Snapshotter;
use crate::solve::{BuildOptions, BuildResult, Builder, Cancel};

#[derive(Default)]
pub(crate) struct Scripted {
    /// Commands run, in order of starting.
    pub started: Mutex<Vec<String>>,
    /// Commands that ended because the build was cancelled.
    pub cancelled: Mutex<Vec<String>>,
    meetings: Mutex<HashMap<String, Arc<Barrier>>>,
}

impl Scripted {
    pub fn started(&self) -> Vec<String> {
        self.started.lock().unwrap().clone()
    }

    async fn script(
        &self,
        root: &Path,
        env: &[String],
        command: &str,
        output: OutputSink<'_>,
        cancel: &Cancel,
    ) -> i32 {
        for word in command.split(';').map(str::trim) {
            let (verb, rest) = word.split_once(' ').unwrap_or((word, ""));
            match verb {
                "write" => {
                    let (path, text) = rest.split_once(' ').unwrap_or((rest, ""));
                    let path = root.join(path.trim_start_matches('/'));
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(path, text).unwrap();
                }
                "env" => {
                    let (name, path) = rest.split_once(' ').unwrap();
                    let value = env
                        .iter()
                        .find_map(|e| e.strip_prefix(name)?.strip_prefix('='))
                        .unwrap_or_default();
                    std::fs::write(root.join(path.trim_start_matches('/')), value).unwrap();
                }
                "remove" => std::fs::remove_file(root.join(rest.trim_start_matches('/'))).unwrap(),
                "echo" => output(Stream::Stdout, rest.as_bytes()),
                "exit" => return rest.parse().unwrap(),
                "meet" => {
                    let barrier = self
                        .meetings
                        .lock()
                        .unwrap()
                        .entry(rest.to_owned())
                        .or_insert_with(|| Arc::new(Barrier::new(2)))
                        .clone();
                    tokio::select! {
                        _ = barrier.wait() => {}
                        () = cancel.cancelled() => return self.was_cancelled(command),
                    }
                }
                "hang" => {
                    cancel.cancelled().await;
                    return self.was_cancelled(command);
                }
                other => panic!("the scripted executor has no `{other}`"),
            }
        }
        0
    }

    fn was_cancelled(&self, command: &str) -> i32 {
        self.cancelled.lock().unwrap().push(command.to_owned());
        // As a killed process: SIGKILL.
        -9
    }
}

impl Executor for Scripted {
    fn run<'a>(
        &'a self,
        spec: &'a SandboxSpec,
        output: OutputSink<'a>,
        cancel: &'a Cancel,
    ) -> Running<'a> {
        Box::pin(async move {
            assert_eq!(
                spec.root.fstype, "bind",
                "tests see snapshots through copies"
            );
            let command = spec.process.args.last().cloned().unwrap_or_default();
            self.started.lock().unwrap().push(command.clone());
            let code = self
                .script(
                    &spec.root.source,
                    &spec.process.env,
                    &command,
                    output,
                    cancel,
                )
                .await;
            Ok(Outcome {
                status: if code < 0 {
                    ExitStatus::Signaled(-code)
                } else {
                    ExitStatus::Exited(code)
                },
                oom_killed: false,
            })
        })
    }

    fn runtime(&self) -> Option<&Runtime> {
        None
    }
}

/// A store, a context directory and a builder with the scripted executor, which reaches
/// the store's snapshots through [`Watched`].
pub(crate) struct Bench {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub executor: Arc<Scripted>,
    pub snapshots: Arc<Watched>,
    pub builder: Builder,
}

impl Bench {
    pub fn new() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("context")).unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let executor = Arc::new(Scripted::default());
        let snapshotter = Snapshotter::Copy {
            reason: "unit tests".to_owned(),
        };
        let snapshots = Arc::new(Watched::new(store.clone()));
        let builder = Builder::with_executor(store.clone(), executor.clone(), snapshotter)
            .with_snapshots(snapshots.clone());
        Bench {
            dir,
            store,
            executor,
            snapshots,
            builder,
        }
    }

    pub fn context(&self) -> PathBuf {
        self.dir.path().join("context")
    }

    /// Writes a file of the context.
    pub fn file(&self, name: &str, text: &str) {
        std::fs::write(self.context().join(name), text).unwrap();
    }

    pub fn options(&self, dockerfile: &str) -> BuildOptions {
        BuildOptions {
            dockerfile: dockerfile.to_owned(),
            context: self.context(),
            ..Default::default()
        }
    }

    pub async fn build(&self, dockerfile: &str) -> Result<BuildResult, BuildError> {
        self.build_with(self.options(dockerfile), Cancel::default())
            .await
    }

    /// Builds, failing the test if the build takes more than 20 seconds (a deadlock), or
    /// if the build, whether it succeeded or not, left a snapshot neither committed nor
    /// discarded.
    pub async fn build_with(
        &self,
        opts: BuildOptions,
        cancel: Cancel,
    ) -> Result<BuildResult, BuildError> {
        let build = self.builder.build(opts, Arc::new(Silent), cancel);
        let result = tokio::time::timeout(std::time::Duration::from_secs(20), build)
            .await
            .expect("the build finished");
        assert_eq!(
            self.snapshots.active(),
            0,
            "the build left active snapshots behind ({result:?})"
        );
        result
    }

    /// Names an image of one layer holding `files` (path, contents) in the store, with the
    /// environment `env`, as a base image to build `FROM`.
    pub fn base(&self, name: &str, files: &[(&str, &str)], env: &[&str]) {
        use rbuild_store::oci::{ImageConfiguration, RootFs};
        let active = self.store.prepare(None).unwrap();
        for (path, text) in files {
            let path = active.upper.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let layer = self
            .store
            .create_layer(&active.upper, LayerOptions::default())
            .unwrap();
        self.store.commit_layer(active, &layer).unwrap();
        let config = ImageConfiguration {
            created: None,
            author: None,
            architecture: rbuild_store::host_architecture().to_owned(),
            os: "linux".to_owned(),
            variant: None,
            config: serde_json::json!({ "Env": env }),
            rootfs: RootFs::layers(vec![layer.diff_id.clone()]),
            history: Vec::new(),
        };
        let manifest = self
            .store
            .write_image(&config, vec![layer.descriptor])
            .unwrap();
        self.store
            .tag(&name.parse().unwrap(), &manifest.digest)
            .unwrap();
    }

    /// The files of the built image: path → contents, directories left out.
    pub fn files(&self, result: &BuildResult) -> HashMap<String, String> {
        let image = self
            .store
            .image_by_manifest(&result.manifest.digest)
            .unwrap();
        let out = self
            .dir
            .path()
            .join(format!("rootfs-{}", result.config.hex()));
        crate::export_rootfs(
            &self.store,
            &self.builder.snapshotter,
            &image,
            crate::RootfsOutput::Dir(out.clone()),
            None,
        )
        .unwrap();
        let mut files = HashMap::new();
        let mut stack = vec![out.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let name = path.strip_prefix(&out).unwrap().display().to_string();
                    files.insert(name, std::fs::read_to_string(&path).unwrap());
                }
            }
        }
        files
    }
}

/// Whether a test whose build writes files owned by root (COPY, WORKDIR: root's ids, as
/// in any image) can run here: as root, or in a user namespace as its root. An ordinary
/// user's test runs itself again in a child, in a user namespace of its own (`unshare
/// --map-root-user`, as rootless rbuild runs), and this returns `false` once the child
/// has passed (it panics when the child failed). Where no user namespace can be made, the
/// test is skipped with a reason, unless `RBUILD_PRIVILEGED_TESTS=1` makes that a failure.
pub(crate) fn can_own_files_as_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    const CHILD: &str = "RBUILD_TEST_IN_USER_NAMESPACE";
    // libtest and nextest name the test's thread after the test.
    let name = std::thread::current().name().map(str::to_owned);
    if std::env::var_os(CHILD).is_none()
        && let (Some(name), Ok(exe)) = (name, std::env::current_exe())
    {
        let output = std::process::Command::new("unshare")
            .args(["--map-root-user", "--"])
            .arg(exe)
            .args([name.as_str(), "--exact", "--test-threads=1"])
            .env(CHILD, "1")
            .output();
        match output {
            // The child ran this one test, and it passed.
            Ok(output)
                if output.status.success()
                    && String::from_utf8_lossy(&output.stdout).contains("1 passed") =>
            {
                return false;
            }
            Ok(output) if output.status.code() == Some(101) => panic!(
                "{name} failed in a user namespace:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
            Ok(output) => eprintln!(
                "cannot run {name} in a user namespace: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Err(err) => eprintln!("cannot run unshare: {err}"),
        }
    }
    if std::env::var("RBUILD_PRIVILEGED_TESTS").as_deref() == Ok("1") {
        panic!("this test needs root, and RBUILD_PRIVILEGED_TESTS=1 forbids skipping it");
    }
    eprintln!("skipped: COPY and WORKDIR give files to root, which needs root");
    false
}

/// A store's snapshots, layers and cache seen through a fake that keeps the cache in
/// memory, counts every call, knows which snapshots are active (prepared and not yet
/// committed or discarded), and fails a chosen call as a full disk would: what the builder
/// does with the store's failures, and what it leaves behind, without filling a disk.
pub(crate) struct Watched {
    store: Store,
    cache: Mutex<BTreeMap<String, CacheRecord>>,
    calls: Mutex<BTreeMap<&'static str, usize>>,
    active: Mutex<HashSet<SnapshotKey>>,
    /// A call by name, and how many more of it succeed before one fails.
    fault: Mutex<Option<(&'static str, usize)>>,
}

impl Watched {
    pub fn new(store: Store) -> Watched {
        Watched {
            store,
            cache: Mutex::default(),
            calls: Mutex::default(),
            active: Mutex::default(),
            fault: Mutex::default(),
        }
    }

    /// Fails the call `name` after `succeeding` more of it have succeeded, once.
    pub fn fail(&self, name: &'static str, succeeding: usize) {
        *self.fault.lock().unwrap() = Some((name, succeeding));
    }

    /// How often `name` was called.
    pub fn calls(&self, name: &str) -> usize {
        self.calls.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    /// Snapshots prepared and neither committed nor discarded.
    pub fn active(&self) -> usize {
        self.active.lock().unwrap().len()
    }

    /// The cache's records, by key.
    pub fn cache(&self) -> BTreeMap<String, CacheRecord> {
        self.cache.lock().unwrap().clone()
    }

    /// Counts the call `name`; the injected failure when it is this one's turn.
    fn call(&self, name: &'static str) -> rbuild_store::Result<()> {
        *self.calls.lock().unwrap().entry(name).or_default() += 1;
        let mut fault = self.fault.lock().unwrap();
        match &mut *fault {
            Some((call, 0)) if *call == name => {
                *fault = None;
                Err(rbuild_store::Error::Io {
                    action: name,
                    path: self.store.root().to_owned(),
                    source: std::io::Error::from_raw_os_error(nix::libc::ENOSPC),
                })
            }
            Some((call, left)) if *call == name => {
                *left -= 1;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn activated(&self, active: &ActiveSnapshot) {
        assert!(self.active.lock().unwrap().insert(active.key));
    }

    fn ended(&self, active: &ActiveSnapshot) {
        assert!(
            self.active.lock().unwrap().remove(&active.key),
            "snapshot {} ended twice, or was never prepared",
            active.key
        );
    }
}

impl Snapshots for Watched {
    fn cache_get(&self, key: &str) -> rbuild_store::Result<Option<CacheRecord>> {
        self.call("cache_get")?;
        let Some(record) = self.cache.lock().unwrap().get(key).cloned() else {
            return Ok(None);
        };
        // As the store: a record never names a snapshot that is gone.
        if let Some(snapshot) = &record.snapshot {
            let name = SnapshotName::from_digest(snapshot.clone());
            if self.store.snapshot(&name)?.is_none() {
                return Ok(None);
            }
        }
        Ok(Some(record))
    }

    fn cache_put(&self, key: &str, record: &CacheRecord) -> rbuild_store::Result<()> {
        self.call("cache_put")?;
        self.cache
            .lock()
            .unwrap()
            .insert(key.to_owned(), record.clone());
        Ok(())
    }

    fn snapshot(&self, name: &SnapshotName) -> rbuild_store::Result<Option<SnapshotRecord>> {
        self.call("snapshot")?;
        self.store.snapshot(name)
    }

    fn lowers(&self, name: &SnapshotName) -> rbuild_store::Result<Vec<PathBuf>> {
        self.call("lowers")?;
        self.store.lowers(name)
    }

    fn prepare_on(&self, lowers: Vec<PathBuf>) -> rbuild_store::Result<ActiveSnapshot> {
        self.call("prepare_on")?;
        let active = self.store.prepare_on(lowers)?;
        self.activated(&active);
        Ok(active)
    }

    fn discard(&self, active: ActiveSnapshot) -> rbuild_store::Result<()> {
        self.call("discard")?;
        self.ended(&active);
        self.store.discard(active)
    }

    fn create_layer(&self, upper: &Path, options: LayerOptions) -> rbuild_store::Result<NewLayer> {
        self.call("create_layer")?;
        self.store.create_layer(upper, options)
    }

    fn commit_layer(
        &self,
        active: ActiveSnapshot,
        layer: &NewLayer,
    ) -> Result<(SnapshotName, Option<ActiveSnapshot>), Uncommitted> {
        if let Err(error) = self.call("commit_layer") {
            return Err(Uncommitted {
                error,
                active: Box::new(active),
            });
        }
        let key = active.key;
        let (name, unused) = self.store.commit_layer(active, layer)?;
        if unused.is_none() {
            assert!(self.active.lock().unwrap().remove(&key));
        }
        Ok((name, unused))
    }

    fn clone_layer(
        &self,
        layer: &rbuild_store::oci::Descriptor,
    ) -> rbuild_store::Result<Option<(ActiveSnapshot, NewLayer)>> {
        self.call("clone_layer")?;
        let cloned = self.store.clone_layer(layer)?;
        if let Some((active, _)) = &cloned {
            self.activated(active);
        }
        Ok(cloned)
    }

    fn materialize(&self, active: &ActiveSnapshot) -> rbuild_store::Result<Materialized> {
        self.call("materialize")?;
        self.store.materialize(active)
    }

    fn capture(
        &self,
        active: &ActiveSnapshot,
        materialized: Materialized,
    ) -> rbuild_store::Result<()> {
        self.call("capture")?;
        self.store.capture(active, materialized)
    }

    fn merge_into(&self, lowers: &[PathBuf], target: &Path) -> rbuild_store::Result<()> {
        self.call("merge_into")?;
        self.store.merge_into(lowers, target)
    }

    fn empty_dir(&self) -> rbuild_store::Result<PathBuf> {
        self.call("empty_dir")?;
        self.store.empty_dir()
    }

    fn overlay_xattrs(&self) -> OverlayXattrs {
        self.store.overlay_xattrs()
    }
}
