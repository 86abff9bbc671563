//! Shared setup of the privileged sandbox tests: a busybox root filesystem, an overlay
//! over it, a runtime with its own cgroup parent and state dir.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use rbuild_runtime::{
    Error, Limits, Mount, Network, Outcome, Process, Runtime, RuntimeOptions, SandboxSpec,
    StdioMode,
};
use tempfile::TempDir;
use tokio::io::AsyncReadExt;

/// Skips the test without root, unless `RBUILD_PRIVILEGED_TESTS=1` makes that a failure.
#[macro_export]
macro_rules! require_privileges {
    () => {
        if !common::privileged() {
            return;
        }
    };
}

pub fn privileged() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("RBUILD_PRIVILEGED_TESTS").as_deref() == Ok("1") {
        panic!("this test needs root, and RBUILD_PRIVILEGED_TESTS=1 forbids skipping it");
    }
    eprintln!("skipped: needs root");
    false
}

pub const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
alice:x:1000:1000:Alice:/home/alice:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
";

pub const GROUP: &str = "\
root:x:0:
wheel:x:10:root,alice
alice:x:1000:
nogroup:x:65534:
";

/// A busybox root filesystem as the lower dir, and an upper and work dir for an overlay.
pub struct Fixture {
    pub temp: TempDir,
    pub lower: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub empty: PathBuf,
    pub state: PathBuf,
    pub cgroup_parent: String,
    pub runtime: Runtime,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Fixture {
    pub fn new() -> Fixture {
        let temp = tempfile::Builder::new()
            .prefix("rbuild-runtime-test-")
            .tempdir()
            .unwrap();
        let lower = temp.path().join("lower");
        busybox_rootfs(&lower);
        let upper = temp.path().join("upper");
        let work = temp.path().join("work");
        let empty = temp.path().join("empty");
        let state = temp.path().join("state");
        for dir in [&upper, &work, &empty] {
            fs::create_dir(dir).unwrap();
        }
        let cgroup_parent = format!(
            "rbuild-test/{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let runtime = Runtime::new(RuntimeOptions {
            helper: env!("CARGO_BIN_EXE_rbuild-sandbox-test-helper").into(),
            state_dir: state.clone(),
            cgroup_parent: cgroup_parent.clone(),
            ..Default::default()
        })
        .unwrap();
        Fixture {
            temp,
            lower,
            upper,
            work,
            empty,
            state,
            cgroup_parent,
            runtime,
        }
    }

    pub fn root(&self) -> Mount {
        Mount::overlay(
            std::slice::from_ref(&self.lower),
            Some((self.upper.clone(), self.work.clone())),
            self.empty.clone(),
        )
    }

    pub fn spec(&self, args: &[&str]) -> SandboxSpec {
        SandboxSpec {
            root: self.root(),
            mounts: Vec::new(),
            process: Process {
                args: args.iter().map(|arg| arg.to_string()).collect(),
                env: vec!["PATH=/bin".into()],
                cwd: "/".into(),
                user: String::new(),
                terminal: false,
                rlimits: Vec::new(),
            },
            hostname: "sandbox".into(),
            network: Network::None,
            limits: Limits::default(),
            readonly_root: false,
            seccomp: Default::default(),
            init: true,
            capabilities: Default::default(),
            extra_hosts: Vec::new(),
            shm_size: None,
            privileged: false,
        }
    }

    /// Runs `spec` with piped stdio; returns the outcome and the captured output.
    pub async fn run(&self, spec: &SandboxSpec) -> (Result<Outcome, Error>, String, String) {
        let mut child = self.runtime.spawn(spec, StdioMode::Piped).unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let mut out = String::new();
        let mut err = String::new();
        let (read_out, read_err, outcome) = tokio::join!(
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err),
            child.wait()
        );
        read_out.unwrap();
        read_err.unwrap();
        (outcome, out, err)
    }

    /// Runs `args` and expects success; returns stdout.
    pub async fn output(&self, args: &[&str]) -> String {
        let (outcome, out, err) = self.run(&self.spec(args)).await;
        let outcome = outcome.unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert!(
            outcome.status.success(),
            "{args:?}: {outcome:?}, stderr: {err}"
        );
        out
    }

    /// The cgroup directories of this fixture's runtime that exist.
    pub fn cgroup_parents(&self) -> Vec<PathBuf> {
        self.cgroup_parent_paths()
            .into_iter()
            .filter(|dir| dir.exists())
            .collect()
    }

    /// The cgroup directories of this fixture's runtime, one per hierarchy with `memory`
    /// or `pids` (v1) or the cgroup2 one.
    pub fn cgroup_parent_paths(&self) -> Vec<PathBuf> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mut v1_dirs = Vec::new();
        let mut v2_dirs = Vec::new();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount_point = left.split(' ').nth(4).unwrap();
            let mut right = right.split(' ');
            let fstype = right.next().unwrap();
            let options = right.nth(1).unwrap_or("");
            let v1 = fstype == "cgroup"
                && options
                    .split(',')
                    .any(|o| matches!(o, "memory" | "pids" | "cpu" | "cpuset"));
            let v2 = fstype == "cgroup2";
            let dir = Path::new(mount_point).join(&self.cgroup_parent);
            if v1 {
                v1_dirs.push(dir);
            } else if v2 {
                v2_dirs.push(dir);
            }
        }
        // As the runtime: a hybrid host's empty cgroup2 mount is not used.
        if v1_dirs.is_empty() { v2_dirs } else { v1_dirs }
    }

    /// Sub-directories (sandbox cgroups) left under the fixture's cgroup parent.
    pub fn cgroups_left(&self) -> Vec<PathBuf> {
        let mut left = Vec::new();
        for parent in self.cgroup_parents() {
            for entry in fs::read_dir(&parent).unwrap() {
                let entry = entry.unwrap();
                if entry.file_type().unwrap().is_dir() {
                    left.push(entry.path());
                }
            }
        }
        left
    }

    /// Entries left in the state dir.
    pub fn state_left(&self) -> Vec<PathBuf> {
        fs::read_dir(&self.state)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for dir in self.cgroup_parents() {
            let _ = fs::remove_dir(&dir);
            // `rbuild-test` itself, once the last fixture is gone.
            if let Some(parent) = dir.parent() {
                let _ = fs::remove_dir(parent);
            }
        }
    }
}

/// `bin/busybox` with a symlink per applet, `etc/passwd`, `etc/group`.
pub fn busybox_rootfs(root: &Path) {
    let bin = root.join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    if fs::hard_link("/bin/busybox", bin.join("busybox")).is_err() {
        fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    }
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            symlink("busybox", bin.join(applet)).unwrap();
        }
    }
    fs::write(root.join("etc/passwd"), PASSWD).unwrap();
    fs::write(root.join("etc/group"), GROUP).unwrap();
}

/// Host mountinfo lines mentioning `path`.
pub fn host_mounts_under(path: &Path) -> Vec<String> {
    let needle = path.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|line| line.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// The first cgroup2 mount point, if any.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split(' ').nth(4)?;
        (right.split(' ').next() == Some("cgroup2")).then(|| PathBuf::from(mount_point))
    })
}
