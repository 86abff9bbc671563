//! The sandbox's init, pid 1 of its pid namespace: sets up the filesystem, resolves the
//! user and working directory, starts the command, reaps, and reports how it ended.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::process::exit;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::SignalFd;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
use nix::sys::stat::{Mode, umask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, sethostname};

use super::command::Command;
use super::rootfs::{self, Undo};
use super::terminal::{Pty, Relay, send_fd};
use super::{SetupError, StateDir, sent_by_process};
use crate::mount::{open_in_root, resolve_in_root};
use crate::spec::Network;
use crate::state::{InitConfig, ROOTFS_DIR, Status};
use crate::user;

/// Runs init to the end and exits; its exit takes every other process of the pid
/// namespace, and with them the mount namespace, down.
pub(super) fn main(
    state: &StateDir,
    config: &InitConfig,
    signals: SignalFd,
    oom_score_adj: &str,
    terminal_socket: Option<OwnedFd>,
) -> ! {
    // Init already dies with the helper (`enter_cgroup::fork_init`), and the namespace
    // with init.
    // No host directory stays open in pid 1, and nobody without CAP_SYS_PTRACE may look
    // into /proc/1 (its descriptors, its root, its memory).
    state.keep_only_status();
    let _ = nix::sys::prctl::set_dumpable(false);
    // The command inherits it; Docker's containers start with 022 too.
    umask(Mode::from_bits_truncate(0o022));
    let mut undo = Undo::default();
    let result = run(
        state,
        config,
        &signals,
        oom_score_adj,
        terminal_socket.as_ref().map(AsFd::as_fd),
        &mut undo,
    );
    if undo.has_stubs() {
        kill_everything_else();
        undo.remove_stubs();
    }
    let status = match result {
        Ok(status) => status,
        Err(err) => err.to_status(),
    };
    state.write_status(&status);
    // For anyone looking at exit codes (the status file is what counts): as a shell would.
    exit(match status {
        Status::Exited { code } => code,
        Status::Signaled { signal } => 128 + signal,
        Status::SetupFailed { .. } => 125,
    })
}

fn run(
    state: &StateDir,
    config: &InitConfig,
    signals: &SignalFd,
    oom_score_adj: &str,
    terminal_socket: Option<BorrowedFd<'_>>,
    undo: &mut Undo,
) -> Result<Status, SetupError> {
    let spec = &config.spec;
    let rootfs = state.path().join(ROOTFS_DIR);
    let proc = rootfs::setup(state.path(), &rootfs, spec, &config.cgroupfs, undo)?;
    if !spec.hostname.is_empty() {
        sethostname(&spec.hostname).map_err(|source| SetupError::Hostname {
            hostname: spec.hostname.clone(),
            source,
        })?;
    }
    if spec.network == Network::None {
        loopback_up().map_err(|source| SetupError::Loopback { source })?;
    }
    // After pivot_root, so that /etc/passwd and every symlink resolve inside the root.
    let user = user::resolve_from(&spec.process.user, Path::new("/"))?;
    enter_cwd(&spec.process.cwd)?;
    let command = Command::prepare(spec, user.clone(), oom_score_adj, proc)?;
    let pty = if spec.process.terminal {
        Some(Pty::open(user.uid).map_err(|source| SetupError::Terminal { source })?)
    } else {
        None
    };
    if !spec.init {
        // The command becomes pid 1; the helper relays its terminal and reports its end.
        if let Some(pty) = &pty {
            let socket = terminal_socket.ok_or(SetupError::Terminal {
                source: Errno::EBADF,
            })?;
            send_fd(socket, pty.master.as_fd())
                .map_err(|source| SetupError::Terminal { source })?;
        }
        let slave = pty.as_ref().map(|pty| pty.slave.as_raw_fd());
        return Err(command.exec(slave));
    }
    super::enter_cgroup::leave_pids_limit();
    let pid = command.spawn(pty.as_ref().map(|pty| pty.slave.as_raw_fd()))?;
    let relay = pty.map(|pty| {
        // Our copy of the slave must go, or the master never reports the end.
        drop(pty.slave);
        Relay::new(pty.master)
    });
    wait_for(pid, signals, relay)
}

/// Creates `cwd` when missing (as runc does) and makes it init's current directory, which
/// the command inherits; relative executables are looked up from there. The directory is
/// opened inside the root without following magic links, so `/proc/self/fd/N` (a
/// descriptor init might hold, CVE-2024-21626) is refused, and checked to be a directory.
fn enter_cwd(cwd: &str) -> Result<(), SetupError> {
    let path = Path::new("/").join(cwd);
    let open = || open_in_root(Path::new("/"), &path, libc::O_PATH | libc::O_DIRECTORY);
    let dir = match open() {
        Ok(dir) => dir,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            // Every existing component resolved, symlinks included; only new directories
            // are created below the last existing one.
            let resolved = resolve_in_root(Path::new("/"), &path).map_err(|source| {
                SetupError::CwdOutsideRoot {
                    path: path.clone(),
                    source,
                }
            })?;
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(Path::new("/").join(resolved))
                .map_err(|source| SetupError::CreateCwd {
                    path: path.clone(),
                    source,
                })?;
            open().map_err(|source| SetupError::CwdOutsideRoot {
                path: path.clone(),
                source,
            })?
        }
        Err(err) if err.raw_os_error() == Some(libc::ENOTDIR) => {
            return Err(SetupError::CwdNotDirectory { path });
        }
        Err(source) => return Err(SetupError::CwdOutsideRoot { path, source }),
    };
    nix::unistd::fchdir(dir.as_raw_fd()).map_err(|source| SetupError::Chdir { path, source })
}

/// Reaps every child until the command's own status is known, passing on signals and
/// relaying the terminal.
fn wait_for(
    command: Pid,
    signals: &SignalFd,
    mut relay: Option<Relay>,
) -> Result<Status, SetupError> {
    let mut status = None;
    loop {
        let (stdin_ready, master_ready) = {
            let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
            let stdin = std::io::stdin();
            if let Some(relay) = &relay {
                fds.push(PollFd::new(relay.master(), PollFlags::POLLIN));
                if relay.stdin_open() {
                    fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
                }
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(source) => return Err(SetupError::Signals { source }),
            }
            let ready = |index: usize| {
                fds.get(index)
                    .and_then(|fd| fd.revents())
                    .is_some_and(|events| !events.is_empty())
            };
            (ready(2), ready(1))
        };
        if let Some(relay) = &mut relay {
            if master_ready && relay.master_open() {
                relay.pump_master();
            }
            if stdin_ready {
                relay.pump_stdin();
            }
        }
        while let Ok(Some(info)) = signals.read_signal() {
            let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            match signal {
                Signal::SIGCHLD => reap(command, &mut status)?,
                Signal::SIGWINCH if relay.is_some() => {
                    if let Some(relay) = &relay {
                        relay.resize();
                    }
                }
                signal if sent_by_process(info.ssi_code) => {
                    let _ = kill(command, signal);
                }
                _ => {}
            }
        }
        if let Some(status) = status {
            if let Some(relay) = &mut relay {
                relay.drain();
            }
            return Ok(status);
        }
    }
}

/// Reaps all exited children (orphans are reparented to init) without blocking.
fn reap(command: Pid, status: &mut Option<Status>) -> Result<(), SetupError> {
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == command => {
                *status = Some(Status::Exited { code });
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == command => {
                *status = Some(Status::Signaled {
                    signal: signal as i32,
                });
            }
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(()),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(source) => {
                return Err(SetupError::Wait {
                    what: "the command",
                    source,
                });
            }
        }
    }
}

/// SIGKILLs every other process of the namespace and reaps them, so that their mounts and
/// open files no longer pin the stubs.
fn kill_everything_else() {
    // kill(-1) from a namespace's init reaches every process in it but init itself.
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    while let Ok(_) | Err(Errno::EINTR) = waitpid(None::<Pid>, None) {}
}

/// Brings `lo` up in a fresh network namespace (it starts down).
fn loopback_up() -> Result<(), nix::Error> {
    let socket = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills `request`, a valid ifreq naming `lo`.
    Errno::result(unsafe {
        libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut request)
    })?;
    // SAFETY: after SIOCGIFFLAGS the flags member of the union is the initialised one.
    unsafe {
        request.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads the valid ifreq.
    Errno::result(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS as _, &request) })?;
    Ok(())
}
