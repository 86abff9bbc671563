//! The other side of `Runtime::spawn`: the re-executed helper and the sandbox's init.
//!
//! ```text
//! rbuild ── helper: `rbuild-init __sandbox-init` in the state dir; host pid namespace, joins the
//!    │      sandbox's cgroup, readies the bridge, unshares pid/uts/ipc/cgroup(/net),
//!    │      plugs the veth pair in, forks; forwards signals
//!    └── init: pid 1 of the new pid namespace, own mount namespace: mounts, masks,
//!         │    pivot_root, user, cwd; reaps; writes `status.json`; its exit ends the
//!         │    namespace
//!         └── the command: Docker's capabilities, no_new_privs, seccomp, then exec
//! ```
//!
//! Both run single-threaded and without tokio: the helper is freshly exec'd, so fork is
//! safe there, and setup errors travel back as data in `status.json`, never as exit codes.

mod command;
mod enter_cgroup;
mod masks;
mod pid1;
mod rootfs;
mod security;
mod terminal;

use std::cell::RefCell;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::exit;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, getpid, getppid};

use crate::error::SetupKind;
use crate::mount::MountError;
use crate::network::{self, NetworkError};
use crate::seccomp::CompileError;
use crate::spec::Network;
use crate::state::{CONFIG_FILE, InitConfig, STATUS_FILE, STATUS_ROOM, Status};
use crate::user::UserError;
use terminal::Relay;

pub(crate) use command::LookupError;

/// `argv[1]` of the re-executed helper.
pub const INIT_ARG: &str = "__sandbox-init";

/// `argv[0]` of the helper and init: all a command sees of init in `/proc/1/cmdline`.
pub(crate) const INIT_NAME: &str = "rbuild-init";

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

/// Entry point of the re-executed helper (`argv[1] == INIT_ARG`, started in the sandbox's
/// state directory). Call it first thing in `main`, before any thread or tokio runtime
/// exists: it forks. Never returns.
pub fn init_main() -> ! {
    // Nothing rbuild's caller left open (above stdio) goes into the sandbox, not even into
    // the helper and init. No Rust code has opened anything yet.
    // SAFETY: close_range(2) with integer arguments.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        );
    }
    // The state directory is the current one (see `Runtime::spawn`).
    let state_dir = match std::env::current_dir() {
        Ok(dir) => dir,
        Err(err) => {
            eprintln!("rbuild: `{INIT_ARG}` needs a state directory as its current one: {err}");
            exit(125);
        }
    };
    let state = match StateDir::open(state_dir.into_os_string()) {
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

/// The state directory, kept open by the helper. Init keeps only its status file open
/// (see [`StateDir::keep_only_status`]): a directory of the host held by pid 1 is what a
/// `/proc/1/fd/N` or `/proc/self/fd/N` path would reach.
pub(crate) struct StateDir {
    path: PathBuf,
    dir: RefCell<Option<File>>,
    status: RefCell<Option<File>>,
}

impl StateDir {
    fn open(path: OsString) -> Result<StateDir, SetupError> {
        let path = PathBuf::from(path);
        let dir = File::open(&path).map_err(|source| SetupError::OpenState {
            path: path.clone(),
            source,
        })?;
        Ok(StateDir {
            path,
            dir: RefCell::new(Some(dir)),
            status: RefCell::new(None),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn open_status(&self, flags: OFlag) -> io::Result<File> {
        let dir = self.dir.borrow();
        let dir = dir
            .as_ref()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        let fd = nix::fcntl::openat(
            Some(std::os::fd::AsRawFd::as_raw_fd(dir)),
            STATUS_FILE,
            flags | OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::from_bits_truncate(0o600),
        )?;
        // SAFETY: `fd` was just returned by openat and is owned by nothing else.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Init's first step: opens (creates, empty) the status file and closes the directory.
    /// Room for the status is reserved now (the file stays empty): a step that fills the
    /// disk must still be able to say how it ended.
    pub(crate) fn keep_only_status(&self) {
        if let Ok(file) = self.open_status(OFlag::empty()) {
            // Best effort: a filesystem without fallocate (or full already) gets none.
            let _ = nix::fcntl::fallocate(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
                0,
                STATUS_ROOM,
            );
            *self.status.borrow_mut() = Some(file);
        }
        drop(self.dir.borrow_mut().take());
    }

    /// Whether init wrote its status (it creates the file empty when it starts).
    fn has_status(&self) -> bool {
        let dir = self.dir.borrow();
        let Some(dir) = dir.as_ref() else {
            return false;
        };
        nix::sys::stat::fstatat(
            Some(std::os::fd::AsRawFd::as_raw_fd(dir)),
            STATUS_FILE,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .is_ok_and(|stat| stat.st_size > 0)
    }

    /// Best effort: with no status the parent reports the helper's own exit.
    pub(crate) fn write_status(&self, status: &Status) {
        let kept = self.status.borrow_mut().take();
        let file = match kept {
            Some(file) => Ok(file),
            None => self.open_status(OFlag::O_TRUNC),
        };
        let result = file.and_then(|mut file| {
            let json = serde_json::to_vec(status).map_err(io::Error::other)?;
            // Written over the reserved room first, cut to its length after: emptying the
            // file first would give the room back.
            std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))?;
            file.write_all(&json)?;
            file.set_len(json.len() as u64)
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
    #[error("failed to check {what}")]
    Verify {
        what: String,
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
    #[error("working directory {path} cannot be resolved inside the root")]
    CwdOutsideRoot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Seccomp(#[from] CompileError),
    #[error("failed to drop capabilities")]
    Capabilities {
        #[source]
        source: nix::Error,
    },
    #[error("failed to set no_new_privs")]
    NoNewPrivs {
        #[source]
        source: nix::Error,
    },
    #[error("failed to install the seccomp profile")]
    InstallSeccomp {
        #[source]
        source: nix::Error,
    },
    #[error(
        "failed to set a resource limit (raising a hard limit above rbuild's own needs root, and no limit may exceed the kernel's maximum)"
    )]
    Rlimit {
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
            | SetupError::Verify { .. }
            | SetupError::PivotRoot { .. }
            | SetupError::ReadonlyRoot { .. } => SetupKind::Mount,
            SetupError::User(_) | SetupError::SwitchUser { .. } => SetupKind::User,
            SetupError::CwdNotDirectory { .. }
            | SetupError::CwdOutsideRoot { .. }
            | SetupError::CreateCwd { .. }
            | SetupError::Chdir { .. } => SetupKind::WorkingDirectory,
            SetupError::Network(_) => SetupKind::Network,
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

    let entry = enter_cgroup::prepare(&config)?;
    // The OOM killer must pick the command, not the helper or init (whose death would be
    // reported as a plain SIGKILL); the command gets rbuild's own score back.
    let oom_score_adj = shield_from_oom();

    // Blocked before the fork, so init inherits the mask and no signal is lost in between.
    let signals = block_signals()?;

    // The bridge is readied from the host's namespace; the socket stays there.
    let bridge = match &config.bridge {
        Some(bridge) if config.spec.network == Network::Bridge => {
            Some((bridge, network::prepare_bridge(bridge)?))
        }
        _ => None,
    };
    // The cgroup namespace is init's to make, once it is in the sandbox's cgroup (on v2
    // the helper never is).
    let mut flags = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if config.spec.network != Network::Host {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).map_err(|source| SetupError::Unshare { source })?;
    if let Some((bridge, (netlink, index))) = bridge {
        network::attach(bridge, netlink, index)?;
    }

    // A command that is pid 1 has its terminal relayed by the helper: init sends the
    // master side over this pair before it becomes the command.
    let terminal_pair = if config.spec.process.terminal && !config.spec.init {
        Some(
            socketpair(
                AddressFamily::Unix,
                SockType::Stream,
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .map_err(|source| SetupError::Terminal { source })?,
        )
    } else {
        None
    };

    // SAFETY: the helper is single-threaded (freshly exec'd, `init_main` runs before any
    // thread is started), so the child may run arbitrary code after the fork.
    match unsafe { enter_cgroup::fork_init(&entry, &config) }? {
        ForkResult::Child => {
            drop(parent);
            drop(entry);
            let socket = terminal_pair.map(|(_, init_side)| init_side);
            pid1::main(state, &config, signals, &oom_score_adj, socket)
        }
        ForkResult::Parent { child } => {
            let terminal = terminal_pair.map(|(helper_side, _)| helper_side);
            let watched = Watched {
                init: child,
                command_is_init: !config.spec.init,
                cgroup_procs: &config.cgroup_procs,
            };
            supervise(state, &watched, &signals, parent, terminal)
        }
    }
}

/// What the helper supervises.
struct Watched<'a> {
    init: Pid,
    /// The command is pid 1 itself (no rbuild init): its exit is the command's.
    command_is_init: bool,
    cgroup_procs: &'a [PathBuf],
}

/// The terminal of a command that is pid 1, relayed by the helper: first the socket the
/// master arrives on, then the relay.
enum HelperTerminal {
    Waiting(OwnedFd),
    Relaying(Relay),
    None,
}

/// Waits for init, passing on signals, and kills the sandbox if rbuild goes away: init
/// (whose death takes its pid namespace down) and everything in the sandbox's cgroups.
fn supervise(
    state: &StateDir,
    watched: &Watched<'_>,
    signals: &SignalFd,
    mut parent: Option<OwnedFd>,
    terminal: Option<OwnedFd>,
) -> Result<(), SetupError> {
    let init = watched.init;
    let mut terminal = terminal.map_or(HelperTerminal::None, HelperTerminal::Waiting);
    let ended = loop {
        let (parent_gone, socket_ready, master_ready, stdin_ready) = {
            let stdin = std::io::stdin();
            let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
            let mut slots = [None; 4];
            fn add<'a>(
                slots: &mut [Option<usize>; 4],
                slot: usize,
                fd: BorrowedFd<'a>,
                fds: &mut Vec<PollFd<'a>>,
            ) {
                slots[slot] = Some(fds.len());
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
            }
            if let Some(parent) = &parent {
                add(&mut slots, 0, parent.as_fd(), &mut fds);
            }
            match &terminal {
                HelperTerminal::Waiting(socket) => add(&mut slots, 1, socket.as_fd(), &mut fds),
                HelperTerminal::Relaying(relay) => {
                    if relay.master_open() {
                        add(&mut slots, 2, relay.master(), &mut fds);
                    }
                    if relay.stdin_open() {
                        add(&mut slots, 3, stdin.as_fd(), &mut fds);
                    }
                }
                HelperTerminal::None => {}
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(source) => {
                    let _ = kill(init, Signal::SIGKILL);
                    return Err(SetupError::Signals { source });
                }
            }
            let ready = |slot: usize| {
                slots[slot]
                    .and_then(|index| fds.get(index))
                    .and_then(|fd| fd.revents())
                    .is_some_and(|events| !events.is_empty())
            };
            (ready(0), ready(1), ready(2), ready(3))
        };
        if parent_gone {
            let _ = kill(init, Signal::SIGKILL);
            kill_cgroup(watched.cgroup_procs);
            parent = None;
        }
        if socket_ready && let HelperTerminal::Waiting(socket) = &terminal {
            terminal = match terminal::recv_fd(socket.as_fd()) {
                Ok(Some(master)) => HelperTerminal::Relaying(Relay::new(master)),
                // Init failed before it had a terminal (its status says why).
                _ => HelperTerminal::None,
            };
        }
        if let HelperTerminal::Relaying(relay) = &mut terminal {
            if master_ready && relay.master_open() {
                relay.pump_master();
            }
            if stdin_ready {
                relay.pump_stdin();
            }
        }
        while let Ok(Some(info)) = signals.read_signal() {
            let signal = Signal::try_from(info.ssi_signo as i32).ok();
            match signal {
                Some(Signal::SIGCHLD) | None => {}
                Some(Signal::SIGWINCH) if matches!(terminal, HelperTerminal::Relaying(_)) => {
                    if let HelperTerminal::Relaying(relay) = &terminal {
                        relay.resize();
                    }
                }
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
    if let HelperTerminal::Relaying(relay) = &mut terminal {
        relay.drain();
    }
    if !state.has_status() {
        let status = match ended {
            Err(signal) => Status::Signaled {
                signal: signal as i32,
            },
            // The command itself was pid 1, and init writes a status only when it fails
            // before it becomes the command.
            Ok(code) if watched.command_is_init => Status::Exited { code },
            // Init was killed (Child::kill, OOM killer) before it could report.
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

/// SIGKILLs every process listed in the sandbox's `cgroup.procs` files but the helper.
fn kill_cgroup(cgroup_procs: &[PathBuf]) {
    let me = getpid().as_raw();
    for procs in cgroup_procs {
        let Ok(text) = std::fs::read_to_string(procs) else {
            continue;
        };
        for pid in text
            .lines()
            .filter_map(|line| line.trim().parse::<i32>().ok())
        {
            if pid != me {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// Sets the helper's `oom_score_adj` (inherited by init) to -1000, the OOM killer's
/// "never"; returns the value it had, for the command.
fn shield_from_oom() -> String {
    const PATH: &str = "/proc/self/oom_score_adj";
    let original = std::fs::read_to_string(PATH)
        .map(|text| text.trim().to_owned())
        .unwrap_or_else(|_| "0".to_owned());
    let _ = std::fs::write(PATH, "-1000");
    original
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
