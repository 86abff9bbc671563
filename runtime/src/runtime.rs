//! The caller's side of a sandbox: `Runtime::spawn` prepares the state directory and the
//! cgroup and starts the helper; `Child::wait` collects the outcome and removes every
//! trace of the sandbox.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::sys::termios::{self, SetArg, Termios};
use nix::unistd::Pid;
use tokio::process::{ChildStderr, ChildStdout};

use crate::cgroup::{CgroupVersion, Hierarchy, SandboxCgroup, validate_parent};
use crate::error::Error;
use crate::init::{INIT_ARG, INIT_NAME};
use crate::network::{self, BridgeOptions, Lease};
use crate::spec::{Network, SandboxSpec};
use crate::state::{CONFIG_FILE, InitConfig, ROOTFS_DIR, STATE_FILES, STATUS_FILE, Status};

/// How long `wait` keeps trying to remove a cgroup whose last processes are exiting.
const CGROUP_REMOVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Options of a [`Runtime`]; `RuntimeOptions { state_dir, ..Default::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// The binary re-executed as the sandbox helper; its `main` must call
    /// [`crate::init_main`] when `argv[1]` is [`INIT_ARG`]. Default: `/proc/self/exe`.
    pub helper: PathBuf,
    /// Per-sandbox scratch directories go here (inside the store root). Created if missing.
    pub state_dir: PathBuf,
    /// Cgroup under which each sandbox gets its own, relative to the hierarchy's root.
    pub cgroup_parent: String,
    /// The bridge of `Network::Bridge` sandboxes, created on first use.
    pub bridge: BridgeOptions,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            helper: PathBuf::from("/proc/self/exe"),
            state_dir: std::env::temp_dir().join("rbuild-sandboxes"),
            cgroup_parent: "rbuild".to_owned(),
            bridge: BridgeOptions::default(),
        }
    }
}

/// Starts sandboxes. Cheap to clone; safe to share between tasks.
#[derive(Debug, Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    opts: RuntimeOptions,
    hierarchy: Hierarchy,
    /// Why `Network::Bridge` is impossible here (rootless), if it is.
    bridge_unavailable: Option<String>,
    next_id: AtomicU64,
}

/// Where the sandboxed process's stdio goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdioMode {
    /// rbuild's own stdin, stdout and stderr (`rbuild run -i`).
    Inherit,
    /// stdin `/dev/null`, rbuild's own stdout and stderr (`rbuild run`).
    InheritOutput,
    /// stdin `/dev/null`, stdout and stderr piped to [`Child::stdout`] and
    /// [`Child::stderr`] (RUN steps). The sandbox gets its own process group, so a
    /// terminal's Ctrl-C reaches rbuild only, which decides what to kill.
    Piped,
}

impl Runtime {
    /// Detects the cgroup hierarchy (and, for an ordinary user, the part of it delegated to
    /// it, if any) and creates `state_dir`.
    pub fn new(opts: RuntimeOptions) -> Result<Runtime, Error> {
        Runtime::with_hierarchy(opts, crate::cgroup::writable(Hierarchy::detect()?))
    }

    /// Uses the cgroup2 hierarchy mounted at `mount` whatever the host's layout: lets the
    /// tests of a hybrid host run the v2 code on its (controller-less) cgroup2 mount.
    #[doc(hidden)]
    pub fn with_cgroup2_mount(opts: RuntimeOptions, mount: PathBuf) -> Result<Runtime, Error> {
        Runtime::with_hierarchy(opts, Hierarchy::V2 { root: mount })
    }

    fn with_hierarchy(opts: RuntimeOptions, hierarchy: Hierarchy) -> Result<Runtime, Error> {
        validate_parent(&opts.cgroup_parent)?;
        opts.bridge.validate()?;
        fs::create_dir_all(&opts.state_dir).map_err(|source| Error::CreateStateDir {
            path: opts.state_dir.clone(),
            source,
        })?;
        remove_stale_sandboxes(&opts, &hierarchy);
        Ok(Runtime {
            inner: Arc::new(Inner {
                opts,
                hierarchy,
                bridge_unavailable: network::bridge_unavailable(),
                next_id: AtomicU64::new(0),
            }),
        })
    }

    pub fn cgroup_version(&self) -> CgroupVersion {
        self.inner.hierarchy.version()
    }

    /// Why sandboxes cannot have cgroup limits here (rootless on cgroup v1, a v2 cgroup not
    /// delegated to the user); `None` when they can.
    pub fn limits_unavailable(&self) -> Option<&str> {
        self.inner.hierarchy.unavailable()
    }

    /// Fails, before anything runs, when `limits` asks for a limit this runtime cannot keep.
    pub fn check_limits(&self, limits: &crate::Limits) -> Result<(), Error> {
        self.inner.hierarchy.check(limits)
    }

    /// Starts a sandbox running `spec`. Callable from a tokio task: the helper is started
    /// with `tokio::process::Command` (fork + exec), never by a bare fork.
    ///
    /// Setup failures inside the sandbox (mounts, user, working directory, executable)
    /// are reported by [`Child::wait`] as [`Error::Setup`].
    pub fn spawn(&self, spec: &SandboxSpec, stdio: StdioMode) -> Result<Child, Error> {
        let opts = &self.inner.opts;
        let id = self.unique_id();
        let state_dir = opts.state_dir.join(&id);
        // Owner-only: the config written here holds the process's environment, which may
        // carry a secret (`RUN --mount=type=secret,env=...`).
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&state_dir)
            .map_err(|source| Error::CreateStateDir {
                path: state_dir.clone(),
                source,
            })?;
        let (cgroup, lease) = match self.prepare(spec, &id, &state_dir) {
            Ok(prepared) => prepared,
            Err(err) => {
                let _ = remove_state_dir(&state_dir);
                return Err(err);
            }
        };
        let mut sandbox = Sandbox {
            state_dir,
            cgroup,
            terminal: None,
            lease,
        };
        let result = (|| {
            if spec.process.terminal && stdio == StdioMode::Inherit {
                sandbox.terminal = RawTerminal::enter()?;
            }
            let mut command = tokio::process::Command::new(&opts.helper);
            // The state directory is the helper's current directory rather than an
            // argument: init's command line is what `/proc/1/cmdline` shows inside, and
            // it names no host path.
            command
                .arg0(INIT_NAME)
                .arg(INIT_ARG)
                .current_dir(&sandbox.state_dir);
            match stdio {
                StdioMode::Inherit => {}
                StdioMode::InheritOutput => {
                    command.stdin(std::process::Stdio::null());
                }
                StdioMode::Piped => {
                    command
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::piped())
                        .process_group(0);
                }
            }
            command.spawn().map_err(|source| Error::SpawnHelper {
                helper: opts.helper.clone(),
                source,
            })
        })();
        match result {
            Ok(mut helper) => Ok(Child {
                stdout: helper.stdout.take(),
                stderr: helper.stderr.take(),
                address: sandbox.lease.as_ref().map(|lease| lease.address),
                helper,
                sandbox: Some(sandbox),
            }),
            Err(err) => {
                drop(sandbox.terminal.take());
                let _ = sandbox.cgroup.try_remove();
                let _ = remove_state_dir(&sandbox.state_dir);
                Err(err)
            }
        }
    }

    /// Takes an address (bridge), writes the network files, creates the cgroup and writes
    /// the helper's config; the state dir exists.
    fn prepare(
        &self,
        spec: &SandboxSpec,
        id: &str,
        state_dir: &Path,
    ) -> Result<(SandboxCgroup, Option<Lease>), Error> {
        let opts = &self.inner.opts;
        let rootfs = state_dir.join(ROOTFS_DIR);
        fs::create_dir(&rootfs).map_err(|source| Error::CreateStateDir {
            path: rootfs,
            source,
        })?;
        let lease = match spec.network {
            Network::Bridge => {
                if let Some(reason) = &self.inner.bridge_unavailable {
                    return Err(Error::BridgeUnavailable {
                        reason: reason.clone(),
                    });
                }
                Some(Lease::acquire(&opts.bridge)?)
            }
            Network::None | Network::Host => None,
        };
        let address = lease.as_ref().map(|lease| lease.address);
        network::write_files(
            state_dir,
            spec.network,
            &spec.hostname,
            address,
            &spec.extra_hosts,
        )?;
        let cgroup =
            SandboxCgroup::create(&self.inner.hierarchy, &opts.cgroup_parent, id, &spec.limits)?;
        let config = InitConfig {
            spec: spec.clone(),
            cgroup_procs: cgroup.procs_files(),
            clone_into: cgroup.v2_dir().map(Path::to_path_buf),
            runtime_procs: cgroup.runtime_procs(),
            limited_procs: cgroup.limited_procs(),
            parent_pid: std::process::id() as i32,
            cgroupfs: self.inner.hierarchy.cgroupfs(),
            bridge: lease.as_ref().map(|lease| lease.config(&opts.bridge)),
        };
        let path = state_dir.join(CONFIG_FILE);
        let json = serde_json::to_vec(&config).expect("a sandbox config always serializes");
        if let Err(source) = fs::write(&path, json) {
            let _ = cgroup.try_remove();
            return Err(Error::WriteState { path, source });
        }
        Ok((cgroup, lease))
    }

    /// Unique among the runtimes sharing a state dir and a cgroup parent: pid, sequence
    /// number, and the clock against pid reuse after a crash.
    fn unique_id(&self) -> String {
        let sequence = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        format!("rb-{}-{sequence}-{nanos:08x}", std::process::id())
    }
}

/// Passes `signal` to the sandbox whose helper has pid `helper` ([`Child::id`]); the
/// helper hands SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 on to the command.
/// For `rbuild run`, which forwards its own signals while it waits. Best effort: a sandbox
/// that is gone is fine.
pub fn signal_sandbox(helper: u32, signal: i32) {
    if let (Ok(pid), Ok(signal)) = (i32::try_from(helper), Signal::try_from(signal)) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// How the sandboxed process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub status: ExitStatus,
    /// The kernel's OOM killer killed a process of the sandbox (memory limit reached).
    pub oom_killed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    /// Killed by this signal number.
    Signaled(i32),
}

impl ExitStatus {
    /// The shell's convention: the exit code, or 128 + N for signal N.
    pub fn code(&self) -> i32 {
        match *self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(signal) => 128 + signal,
        }
    }

    pub fn success(&self) -> bool {
        *self == ExitStatus::Exited(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Exited(code) => write!(f, "exit code {code}"),
            ExitStatus::Signaled(signal) => match Signal::try_from(signal) {
                Ok(name) => write!(f, "signal {signal} ({name})"),
                Err(_) => write!(f, "signal {signal}"),
            },
        }
    }
}

/// A running sandbox. [`Child::wait`] must be called to collect it; dropping it instead
/// kills the sandbox and cleans up in the background.
#[derive(Debug)]
pub struct Child {
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
    address: Option<std::net::Ipv4Addr>,
    helper: tokio::process::Child,
    /// `None` once `wait` or `drop` took charge of the cleanup.
    sandbox: Option<Sandbox>,
}

#[derive(Debug)]
struct Sandbox {
    state_dir: PathBuf,
    cgroup: SandboxCgroup,
    terminal: Option<RawTerminal>,
    /// Released once every process of the sandbox is gone.
    lease: Option<Lease>,
}

impl Child {
    /// The helper's pid (host pid namespace). SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1,
    /// SIGUSR2 and SIGWINCH sent to it with kill(2) are passed on to the sandboxed process.
    pub fn id(&self) -> Option<u32> {
        self.helper.id()
    }

    /// The sandbox's address on the bridge (`Network::Bridge` only).
    pub fn address(&self) -> Option<std::net::Ipv4Addr> {
        self.address
    }

    /// SIGKILLs everything in the sandbox. `wait` then reports `Signaled(9)`.
    pub fn kill(&self) {
        if let Some(sandbox) = &self.sandbox {
            sandbox.cgroup.kill();
        }
        // Covers the moment before the helper joined the cgroup; init follows it (its
        // parent-death signal).
        if let Some(pid) = self.helper.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }

    /// Waits for the sandbox to end. When it returns, no process, mount or cgroup of the
    /// sandbox is left and its state directory is gone.
    pub async fn wait(mut self) -> Result<Outcome, Error> {
        let waited = self.helper.wait().await;
        let sandbox = self
            .sandbox
            .take()
            .expect("the sandbox is only taken by wait or drop");
        let outcome = match waited {
            Ok(status) => sandbox.outcome(status),
            Err(source) => {
                sandbox.cgroup.kill();
                Err(Error::WaitHelper { source })
            }
        };
        let cleaned = sandbox.cleanup().await;
        let outcome = outcome?;
        cleaned?;
        Ok(outcome)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let Some(mut sandbox) = self.sandbox.take() else {
            return;
        };
        drop(sandbox.terminal.take());
        sandbox.cgroup.kill();
        let _ = self.helper.start_kill();
        // Blocking cleanup off the caller's thread; tokio reaps the helper.
        let _ = std::thread::Builder::new()
            .name("rbuild-sandbox-cleanup".into())
            .spawn(move || {
                let deadline = Instant::now() + CGROUP_REMOVE_TIMEOUT;
                while sandbox.cgroup.try_remove().is_err() && Instant::now() < deadline {
                    sandbox.cgroup.kill();
                    std::thread::sleep(Duration::from_millis(5));
                }
                let _ = remove_state_dir(&sandbox.state_dir);
            });
    }
}

impl Sandbox {
    fn outcome(&self, helper: std::process::ExitStatus) -> Result<Outcome, Error> {
        let path = self.state_dir.join(STATUS_FILE);
        let status = match fs::read(&path) {
            // Init creates it empty when it starts; empty, nobody could report.
            Ok(bytes) if bytes.is_empty() => None,
            Ok(bytes) => Some(
                serde_json::from_slice::<Status>(&bytes)
                    .map_err(|source| Error::ParseStatus { path, source })?,
            ),
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(Error::ReadStatus { path, source }),
        };
        let status = match status {
            Some(Status::Exited { code }) => ExitStatus::Exited(code),
            Some(Status::Signaled { signal }) => ExitStatus::Signaled(signal),
            Some(Status::SetupFailed { kind, message }) => {
                return Err(Error::Setup { kind, message });
            }
            // The helper itself was killed (`Child::kill` before it forked).
            None => match helper.signal() {
                Some(signal) => ExitStatus::Signaled(signal),
                None => {
                    return Err(Error::HelperFailed {
                        status: helper,
                        why: full_disk(&self.state_dir),
                    });
                }
            },
        };
        let sigkill = status == ExitStatus::Signaled(libc::SIGKILL);
        Ok(Outcome {
            status,
            oom_killed: self.cgroup.oom_killed(sigkill),
        })
    }

    async fn cleanup(mut self) -> Result<(), Error> {
        drop(self.terminal.take());
        let deadline = Instant::now() + CGROUP_REMOVE_TIMEOUT;
        let removed = loop {
            match self.cgroup.try_remove() {
                Ok(()) => break Ok(()),
                // Processes still leaving (or, with v1, a fork that raced with `kill`).
                Err((_, err)) if err.raw_os_error() == Some(libc::EBUSY) => {
                    if Instant::now() >= deadline {
                        break Err(err);
                    }
                    self.cgroup.kill();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((path, source)) => return Err(Error::RemoveCgroup { path, source }),
            }
        };
        let state = remove_state_dir(&self.state_dir);
        if let Err(source) = removed {
            let path = self.cgroup.dirs().first().map(|dir| dir.to_path_buf());
            return Err(Error::RemoveCgroup {
                path: path.unwrap_or_default(),
                source,
            });
        }
        state.map_err(|source| Error::RemoveStateDir {
            path: self.state_dir.clone(),
            source,
        })
    }
}

/// Removes the state dirs and cgroups of sandboxes whose rbuild process is gone (killed
/// before `wait` could clean up). Best effort; a live owner's sandboxes are left alone.
fn remove_stale_sandboxes(opts: &RuntimeOptions, hierarchy: &Hierarchy) {
    let Ok(entries) = fs::read_dir(&opts.state_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name.to_str() else {
            continue;
        };
        let Some(owner) = id
            .strip_prefix("rb-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        // Signal 0 only checks existence; EPERM means alive (and not ours).
        if kill(Pid::from_raw(owner), None) != Err(nix::errno::Errno::ESRCH) {
            continue;
        }
        let cgroup = SandboxCgroup::existing(hierarchy, &opts.cgroup_parent, id);
        cgroup.kill();
        if cgroup.try_remove().is_ok() {
            let _ = remove_state_dir(&entry.path());
        }
    }
}

/// Removes exactly the files a state dir may hold, never recursing: `rootfs` is a mount
/// point inside the sandbox and must be an empty directory out here.
fn remove_state_dir(dir: &Path) -> io::Result<()> {
    for file in STATE_FILES {
        match fs::remove_file(dir.join(file)) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    for dir in [dir.join(ROOTFS_DIR), dir.to_owned()] {
        match fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// rbuild's stdin in raw mode while a sandbox with a terminal runs, restored on drop: the
/// line discipline that matters is the sandbox's pty.
#[derive(Debug)]
struct RawTerminal {
    saved: Termios,
}

impl RawTerminal {
    fn enter() -> Result<Option<RawTerminal>, Error> {
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(&stdin) else {
            // Not a terminal: nothing to switch.
            return Ok(None);
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&stdin, SetArg::TCSANOW, &raw)
            .map_err(|source| Error::Terminal { source })?;
        Ok(Some(RawTerminal { saved }))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSADRAIN, &self.saved);
    }
}

/// Why a sandbox's status may be missing: its state directory's filesystem (the store's)
/// is full. Empty when it is not, or when that cannot be told.
fn full_disk(dir: &Path) -> String {
    const NEARLY_FULL: u64 = 64 * 1024;
    match nix::sys::statvfs::statvfs(dir) {
        Ok(stat) => {
            // The C library's types (`u64` in glibc on 64-bit machines, narrower elsewhere).
            #[allow(clippy::useless_conversion)]
            let free = u64::from(stat.blocks_available()) * u64::from(stat.fragment_size());
            if free < NEARLY_FULL {
                format!(
                    ": the filesystem of {} is full ({free} bytes free)",
                    dir.display()
                )
            } else {
                String::new()
            }
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_codes_follow_the_shell() {
        assert_eq!(ExitStatus::Exited(3).code(), 3);
        assert_eq!(ExitStatus::Signaled(9).code(), 137);
        assert!(ExitStatus::Exited(0).success());
        assert!(!ExitStatus::Exited(1).success());
        assert!(!ExitStatus::Signaled(15).success());
        assert_eq!(ExitStatus::Signaled(9).to_string(), "signal 9 (SIGKILL)");
        assert_eq!(ExitStatus::Exited(2).to_string(), "exit code 2");
    }

    #[test]
    fn removes_only_known_state_files() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("sb");
        fs::create_dir_all(dir.join(ROOTFS_DIR)).unwrap();
        fs::write(dir.join(CONFIG_FILE), "{}").unwrap();
        fs::write(dir.join(STATUS_FILE), "{}").unwrap();
        remove_state_dir(&dir).unwrap();
        assert!(!dir.exists());

        fs::create_dir_all(dir.join(ROOTFS_DIR)).unwrap();
        fs::write(dir.join(ROOTFS_DIR).join("file"), "").unwrap();
        assert!(remove_state_dir(&dir).is_err());
        assert!(dir.join(ROOTFS_DIR).join("file").exists());
    }

    #[test]
    fn default_options() {
        let opts = RuntimeOptions::default();
        assert_eq!(opts.helper, PathBuf::from("/proc/self/exe"));
        assert_eq!(opts.cgroup_parent, "rbuild");
    }
}
