//! For the builder's unit tests: an [`Executor`] that runs no process, and a builder over a
//! store in a temporary directory, seen through copies, so that whole builds run without
//! root, namespaces or mounts.
//!
//! The scripted executor reads a RUN step's command (the last argument: `RUN cmd` is
//! `/bin/sh -c cmd`) as a few words separated by `;`, and acts on the step's root directory:
//! `write PATH TEXT`, `remove PATH`, `echo TEXT` (a line of output), `exit N`,
//! `meet NAME` (waits until another step meets at NAME), `hang` (until cancelled).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rbuild_runtime::{ExitStatus, Outcome, Runtime, SandboxSpec};
use rbuild_store::Store;
use tokio::sync::Barrier;

use crate::BuildError;
use crate::executor::{Executor, OutputSink, Running};
use crate::progress::{Silent, Stream};
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
                .script(&spec.root.source, &command, output, cancel)
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

/// A store, a context directory and a builder with the scripted executor.
pub(crate) struct Bench {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub executor: Arc<Scripted>,
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
        let builder = Builder::with_executor(store.clone(), executor.clone(), snapshotter);
        Bench {
            dir,
            store,
            executor,
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

    /// Builds, failing the test if the build takes more than 20 seconds (a deadlock).
    pub async fn build_with(
        &self,
        opts: BuildOptions,
        cancel: Cancel,
    ) -> Result<BuildResult, BuildError> {
        let build = self.builder.build(opts, Arc::new(Silent), cancel);
        tokio::time::timeout(std::time::Duration::from_secs(20), build)
            .await
            .expect("the build finished")
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
