//! The other side of `Runtime::spawn`: the re-executed helper and the sandbox's init.
//!
//! ```text
//! rbuild ── helper: `rbuild __sandbox-init <state dir>`; host pid namespace, joins the
//!    │      sandbox's cgroup, unshares pid/uts/ipc/cgroup(/net), forks; forwards signals
//!    └── init: pid 1 of the new pid namespace, own mount namespace: mounts, pivot_root,
//!         │    user, cwd; reaps; writes `status.json`; its exit ends the namespace
//!         └── the command
//! ```
//!
//! Both run single-threaded and without tokio: the helper is freshly exec'd, so fork is
//! safe there, and setup errors travel back as data in `status.json`, never as exit codes.

mod command;
mod pid1;
mod rootfs;
mod terminal;

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::exit;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid, getppid};

use crate::error::SetupKind;
use crate::mount::MountError;
use crate::spec::Network;
use crate::state::{CONFIG_FILE, InitConfig, STATUS_FILE, Status};
use crate::user::UserError;

pub(crate) use command::LookupError;

/// `argv[1]` of the re-executed helper.
pub const INIT_ARG: &str = "__sandbox-init";

/// Signals passed on to the command (for `rbuild run`). Only those sent with kill(2) and
/// friends are passed on: the terminal's own SIGINT or SIGWINCH already reaches the command
/// through its process group, and passing it again would deliver it twice.
const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Entry point of the re-executed helper (`argv[1] == INIT_ARG`, `argv[2]` the sandbox's
/// state directory). Call it first thing in `main`, before any thread or tokio runtime
/// exists: it forks. Never returns.
pub fn init_main() -> ! {
    let Some(state_dir) = std::env::args_os().nth(2) else {
        eprintln!("rbuild: `{INIT_ARG}` needs a state directory");
        exit(125);
    };
    let state = match StateDir::open(state_dir) {
        Ok(state) => state,
        Err(err) => {
            eprintln!("rbuild: {}", message_chain(&err));
            exit(125);
        }
    };
    match helper(&state) {
        Ok(()) => exit(0),
        Err(err) => {
            state.write_status(&err.to_status());
            exit(125)
        }
    }
}

/// The state directory, kept open: init pivots away from the host's filesystem but still
/// writes its status here.
pub(crate) struct StateDir {
    path: PathBuf,
    dir: File,
}

impl StateDir {
    fn open(path: OsString) -> Result<StateDir, SetupError> {
        let path = PathBuf::from(path);
        let dir = File::open(&path).map_err(|source| SetupError::OpenState {
            path: path.clone(),
            source,
        })?;
        Ok(StateDir { path, dir })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn has_status(&self) -> bool {
        nix::sys::stat::fstatat(
            Some(std::os::fd::AsRawFd::as_raw_fd(&self.dir)),
            STATUS_FILE,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .is_ok()
    }

    /// Best effort: with no status the parent reports the helper's own exit.
    pub(crate) fn write_status(&self, status: &Status) {
        let result = nix::fcntl::openat(
            Some(std::os::fd::AsRawFd::as_raw_fd(&self.dir)),
            STATUS_FILE,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map(|fd| {
            // SAFETY: `fd` was just returned by openat and is owned by nothing else.
            unsafe { File::from_raw_fd(fd) }
        })
        .map_err(io::Error::from)
        .and_then(|mut file| {
            let json = serde_json::to_vec(status).map_err(io::Error::other)?;
            file.write_all(&json)
        });
        if let Err(err) = result {
            eprintln!(
                "rbuild: failed to write sandbox status {}: {err}",
                STATUS_FILE
            );
        }
    }
}

/// A failure to set up the sandbox, reported to the caller as `Error::Setup`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupError {
    #[error("failed to open sandbox state directory {path}")]
    OpenState {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to read sandbox config {path}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("sandbox config {path} is malformed")]
    ParseConfig {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to join cgroup {path}")]
    JoinCgroup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to set up signal handling")]
    Signals {
        #[source]
        source: nix::Error,
    },
    #[error("failed to create namespaces")]
    Unshare {
        #[source]
        source: nix::Error,
    },
    #[error("failed to fork {what}")]
    Fork {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("failed to wait for {what}")]
    Wait {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("failed to make the mount namespace private")]
    PrivateMounts {
        #[source]
        source: nix::Error,
    },
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error("failed to create mount point {path}")]
    MountPoint {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to create {path}")]
    CreateDevice {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to copy {path} into the sandbox")]
    CopyHostFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to pivot into the root filesystem")]
    PivotRoot {
        #[source]
        source: nix::Error,
    },
    #[error("failed to set hostname `{hostname}`")]
    Hostname {
        hostname: String,
        #[source]
        source: nix::Error,
    },
    #[error("failed to bring up the loopback interface")]
    Loopback {
        #[source]
        source: nix::Error,
    },
    #[error("failed to make the root filesystem read-only")]
    ReadonlyRoot {
        #[source]
        source: nix::Error,
    },
    #[error(transparent)]
    User(#[from] UserError),
    #[error("failed to switch to user {uid}:{gid}")]
    SwitchUser {
        uid: u32,
        gid: u32,
        #[source]
        source: nix::Error,
    },
    #[error("working directory {path} is not a directory")]
    CwdNotDirectory { path: PathBuf },
    #[error("failed to create working directory {path}")]
    CreateCwd {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to change to working directory {path}")]
    Chdir {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("no command given")]
    NoCommand,
    #[error("{what} contains a NUL byte")]
    Nul { what: &'static str },
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("failed to exec {path}")]
    Exec {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("failed to set up the pseudo-terminal")]
    Terminal {
        #[source]
        source: nix::Error,
    },
}

impl SetupError {
    fn kind(&self) -> SetupKind {
        match self {
            SetupError::JoinCgroup { .. } => SetupKind::Cgroup,
            SetupError::PrivateMounts { .. }
            | SetupError::Mount(_)
            | SetupError::MountPoint { .. }
            | SetupError::CreateDevice { .. }
            | SetupError::CopyHostFile { .. }
            | SetupError::PivotRoot { .. }
            | SetupError::ReadonlyRoot { .. } => SetupKind::Mount,
            SetupError::User(_) | SetupError::SwitchUser { .. } => SetupKind::User,
            SetupError::CwdNotDirectory { .. }
            | SetupError::CreateCwd { .. }
            | SetupError::Chdir { .. } => SetupKind::WorkingDirectory,
            SetupError::NoCommand | SetupError::Lookup(_) | SetupError::Exec { .. } => {
                SetupKind::Executable
            }
            _ => SetupKind::Other,
        }
    }

    pub(crate) fn to_status(&self) -> Status {
        Status::SetupFailed {
            kind: self.kind(),
            message: message_chain(self),
        }
    }
}

/// `error: cause: cause`, on one line.
pub(crate) fn message_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The helper: joins the cgroup, creates the namespaces, forks init and waits for it.
fn helper(state: &StateDir) -> Result<(), SetupError> {
    let config_path = state.path.join(CONFIG_FILE);
    let bytes = std::fs::read(&config_path).map_err(|source| SetupError::ReadConfig {
        path: config_path.clone(),
        source,
    })?;
    let config: InitConfig =
        serde_json::from_slice(&bytes).map_err(|source| SetupError::ParseConfig {
            path: config_path,
            source,
        })?;

    // PR_SET_PDEATHSIG fires when the parent *thread* exits, and rbuild spawns from tokio
    // threads that may come and go (spawn_blocking); a pidfd of the parent process is
    // readable only when the whole process is gone.
    let parent = watch_parent(config.parent_pid);
    if getppid().as_raw() != config.parent_pid {
        // rbuild died before we could watch it: nobody is waiting for this sandbox.
        exit(0);
    }

    let pid = getpid().to_string();
    for procs in &config.cgroup_procs {
        std::fs::write(procs, &pid).map_err(|source| SetupError::JoinCgroup {
            path: procs.clone(),
            source,
        })?;
    }

    // Blocked before the fork, so init inherits the mask and no signal is lost in between.
    let signals = block_signals()?;

    let mut flags = CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWCGROUP;
    if config.spec.network == Network::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).map_err(|source| SetupError::Unshare { source })?;

    // SAFETY: the helper is single-threaded (freshly exec'd, `init_main` runs before any
    // thread is started), so the child may run arbitrary code after the fork.
    match unsafe { fork() }.map_err(|source| SetupError::Fork {
        what: "the sandbox init",
        source,
    })? {
        ForkResult::Child => {
            drop(parent);
            pid1::main(state, &config.spec, signals)
        }
        ForkResult::Parent { child } => supervise(state, child, &signals, parent),
    }
}

/// Waits for init, passing on signals, and kills it if rbuild goes away.
fn supervise(
    state: &StateDir,
    init: Pid,
    signals: &SignalFd,
    mut parent: Option<OwnedFd>,
) -> Result<(), SetupError> {
    let ended = loop {
        let parent_gone = {
            let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
            if let Some(parent) = &parent {
                fds.push(PollFd::new(parent.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(source) => {
                    let _ = kill(init, Signal::SIGKILL);
                    return Err(SetupError::Signals { source });
                }
            }
            fds.get(1)
                .and_then(|fd| fd.revents())
                .is_some_and(|events| !events.is_empty())
        };
        if parent_gone {
            let _ = kill(init, Signal::SIGKILL);
            parent = None;
        }
        while let Ok(Some(info)) = signals.read_signal() {
            let signal = Signal::try_from(info.ssi_signo as i32).ok();
            match signal {
                Some(Signal::SIGCHLD) | None => {}
                Some(signal) if sent_by_process(info.ssi_code) => {
                    let _ = kill(init, signal);
                }
                Some(_) => {}
            }
        }
        match waitpid(init, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => break Ok(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => break Err(signal),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(source) => {
                return Err(SetupError::Wait {
                    what: "the sandbox init",
                    source,
                });
            }
        }
    };
    if !state.has_status() {
        // Init was killed (Child::kill, OOM killer) before it could report.
        let status = match ended {
            Err(signal) => Status::Signaled {
                signal: signal as i32,
            },
            Ok(code) => Status::SetupFailed {
                kind: SetupKind::Other,
                message: format!("sandbox init exited with code {code} without a status"),
            },
        };
        state.write_status(&status);
    }
    // Init's own exit code mirrors the command's; pass it on.
    match ended {
        Ok(code) => exit(code),
        Err(_) => Ok(()),
    }
}

/// A pidfd of rbuild, readable once it has exited; `PR_SET_PDEATHSIG` on kernels without
/// pidfds (< 5.3).
fn watch_parent(parent: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1;
    // pidfds are always close-on-exec.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, parent, 0) };
    if fd < 0 {
        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
        return None;
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Blocks SIGCHLD and the forwarded signals and returns a signalfd reading them. The
/// signalfd reads the signals of whichever process reads it, so init reuses it.
fn block_signals() -> Result<SignalFd, SetupError> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    for signal in FORWARDED {
        set.add(signal);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|source| SetupError::Signals { source })?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|source| SetupError::Signals { source })
}

/// Sent with kill(2), sigqueue(3) or tkill(2), rather than by the kernel (a terminal).
fn sent_by_process(code: i32) -> bool {
    matches!(code, libc::SI_USER | libc::SI_QUEUE | libc::SI_TKILL)
}
