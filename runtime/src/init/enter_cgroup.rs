//! How the sandbox's processes get into its cgroup. On v1 the helper moves itself in
//! (a write to each `cgroup.procs`) and init is forked inside. On v2 the helper stays out
//! and starts init directly in the cgroup with `clone3(CLONE_INTO_CGROUP)` (Linux 5.7):
//! moving a task between cgroups waits for an RCU grace period (8–11 ms, the largest part
//! of a sandbox's start), and being born there does not. Without clone3, v2 falls back to
//! the v1 way.
//!
//! With a pids limit, rbuild's own processes leave the limited cgroup for its sibling
//! (`<id>.runtime`, see `cgroup::sandbox`), so that the limit is the command's alone, as in
//! Docker. Init is still born in the limited cgroup, so that its cgroup namespace is
//! rooted there and `/sys/fs/cgroup/pids.max` inside shows the limit. Then:
//! - the helper (v1, or v2 without clone3) leaves right after forking init;
//! - init, when it is not the command itself, leaves before it forks the command, and the
//!   command's process moves itself back in before it execs. Init cannot leave *after*
//!   the fork: a migration waits for an RCU grace period, and meanwhile the command runs
//!   and forks with init still charged (its forks near the limit failed). Moving the
//!   command in before exec leaves no window: no code of the user runs outside the limit.
//!
//! Both write to `cgroup.procs` files init opened before making its cgroup namespace:
//! since Linux 5.16 a migration is checked against the namespace the file was opened in,
//! so a cgroup2 mounted with `nsdelegate` lets init out of (and the command into) its
//! namespace's root. On an older kernel that refuses, init stays in the limited cgroup
//! (the command is then born there) and counts against the limit.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::unistd::{ForkResult, Pid, fork, getpid, pipe2};

use super::SetupError;
use crate::state::InitConfig;

/// `CLONE_INTO_CGROUP`, not in every libc release.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` of clone3(2), up to `cgroup` (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Where init will be started.
pub(super) enum Entry {
    /// The helper is in the sandbox's cgroups: a plain fork.
    Joined,
    /// The sandbox's v2 cgroup, for clone3.
    Into(OwnedFd),
}

/// Before the namespaces: on v2 opens the cgroup directory, on v1 (or if that fails) moves
/// the helper into the cgroups.
pub(super) fn prepare(config: &InitConfig) -> Result<Entry, SetupError> {
    if let Some(dir) = &config.clone_into {
        let opened = File::options()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(dir);
        if let Ok(dir) = opened {
            return Ok(Entry::Into(OwnedFd::from(dir)));
        }
    }
    join(config)?;
    Ok(Entry::Joined)
}

fn join(config: &InitConfig) -> Result<(), SetupError> {
    let pid = getpid().to_string();
    for procs in &config.cgroup_procs {
        std::fs::write(procs, &pid).map_err(|source| SetupError::JoinCgroup {
            path: procs.clone(),
            source,
        })?;
    }
    Ok(())
}

/// In init: the `cgroup.procs` of rbuild's side of a pids-limited sandbox, opened before
/// the cgroup namespace was made (see the module's notes), until init leaves.
static RUNTIME_PROCS: Mutex<Option<File>> = Mutex::new(None);

/// In init: the limited cgroup's `cgroup.procs`, as a raw descriptor (read by the forked
/// command, where only async-signal-safe calls are allowed); -1 when the command is born
/// in the limited cgroup anyway.
static LIMITED_PROCS: AtomicI32 = AtomicI32::new(-1);

/// Forks init, into the cgroup on v2; with a pids limit, the helper then leaves it (see
/// the module's notes) and init keeps the way out.
///
/// # Safety
/// As fork(2): the helper must be single-threaded. The child continues in Rust without
/// glibc's fork bookkeeping (atfork handlers, the cached thread id used by `raise`), which
/// a single-threaded process that takes no lock across the call does not need.
pub(super) unsafe fn fork_init(
    entry: &Entry,
    config: &InitConfig,
) -> Result<ForkResult, SetupError> {
    let mut joined = matches!(entry, Entry::Joined);
    // Open in the helper for as long as it lives (close-on-exec, and the helper never
    // execs): init reads the helper's death from it (see `die_with_helper`).
    let (alive_read, alive_write) = pipe2(OFlag::O_CLOEXEC).map_err(|source| SetupError::Fork {
        what: "the sandbox init (its pipe to the helper)",
        source,
    })?;
    // SAFETY: passed on from the caller.
    let forked = unsafe { fork_into(entry, config, &mut joined) }?;
    match forked {
        ForkResult::Child => {
            drop(alive_write);
            die_with_helper(alive_read);
        }
        ForkResult::Parent { .. } => {
            drop(alive_read);
            std::mem::forget(alive_write);
        }
    }
    let (Some(procs), Some(limited)) = (&config.runtime_procs, &config.limited_procs) else {
        return Ok(forked);
    };
    match forked {
        ForkResult::Child => {
            let open = |path| {
                File::options()
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(path)
            };
            // Without both, init stays, and counts against the limit.
            if let (Ok(runtime), Ok(limited)) = (open(procs), open(limited)) {
                *RUNTIME_PROCS.lock().unwrap_or_else(|e| e.into_inner()) = Some(runtime);
                LIMITED_PROCS.store(limited.into_raw_fd(), Ordering::Relaxed);
            }
        }
        // On v2 with clone3 the helper never was in the cgroup.
        ForkResult::Parent { .. } if joined => {
            std::fs::write(procs, getpid().to_string()).map_err(|source| {
                SetupError::JoinCgroup {
                    path: procs.clone(),
                    source,
                }
            })?;
        }
        ForkResult::Parent { .. } => {}
    }
    Ok(forked)
}

/// In init, first thing after the fork: init (and with it the pid namespace) dies with
/// the helper. rbuild ends a sandbox by killing the helper, at any moment, also while it
/// forks init; a parent-death signal asked for after the parent died never comes, and
/// init would run the command to its end, orphaned, holding the step's output pipes open.
/// So, once the signal is asked for, the pipe tells whether the helper already died: its
/// only write end was the helper's.
fn die_with_helper(alive: OwnedFd) {
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    let mut fds = [PollFd::new(alive.as_fd(), PollFlags::empty())];
    // POLLHUP is reported whatever the events asked for.
    let hung_up = poll(&mut fds, PollTimeout::ZERO).is_ok_and(|ready| ready > 0);
    if hung_up {
        std::process::exit(0);
    }
}

/// In init, before it forks the command: init leaves the limited cgroup, so that the
/// pids limit counts the command's processes only; the command moves back in with
/// [`enter_pids_limit`]. Best effort (see the module's notes); does nothing without a
/// pids limit.
pub(super) fn leave_pids_limit() {
    let file = RUNTIME_PROCS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let Some(mut file) = file else {
        return;
    };
    // `0` is the writer itself, whatever pid namespace it is in.
    if file.write_all(b"0").is_err() {
        // Init stays, and the command is born in the limited cgroup.
        let limited = LIMITED_PROCS.swap(-1, Ordering::Relaxed);
        if limited >= 0 {
            // SAFETY: the descriptor was opened by init and is closed only here.
            unsafe { libc::close(limited) };
        }
    }
}

/// In the forked command, before anything of it runs: back into the limited cgroup that
/// init left (see [`leave_pids_limit`]). A command that cannot get in is not run at all:
/// it would run without its limit.
///
/// # Safety
/// Only async-signal-safe calls: it runs between fork and exec.
pub(super) unsafe fn enter_pids_limit() {
    let limited = LIMITED_PROCS.load(Ordering::Relaxed);
    if limited < 0 {
        return;
    }
    // SAFETY: write(2) and _exit(2) are async-signal-safe; the buffers are static.
    unsafe {
        if libc::write(limited, b"0".as_ptr().cast(), 1) != 1 {
            let message = b"rbuild: the command cannot join its pids-limited cgroup\n";
            libc::write(2, message.as_ptr().cast(), message.len());
            libc::_exit(125);
        }
        libc::close(limited);
    }
}

/// Forks init, into the cgroup on v2 (`joined` is set when the helper had to join it).
///
/// # Safety
/// As [`fork_init`].
unsafe fn fork_into(
    entry: &Entry,
    config: &InitConfig,
    joined: &mut bool,
) -> Result<ForkResult, SetupError> {
    if let Entry::Into(dir) = entry {
        let args = CloneArgs {
            flags: CLONE_INTO_CGROUP,
            exit_signal: libc::SIGCHLD as u64,
            cgroup: dir.as_raw_fd() as u64,
            ..CloneArgs::default()
        };
        // SAFETY: clone3 without CLONE_VM and without a stack duplicates the process as
        // fork does; `args` is valid for the call.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        match pid {
            0 => return Ok(ForkResult::Child),
            pid if pid > 0 => {
                return Ok(ForkResult::Parent {
                    child: Pid::from_raw(pid as i32),
                });
            }
            // An older kernel (no clone3, no CLONE_INTO_CGROUP): the v1 way.
            _ if matches!(Errno::last(), Errno::ENOSYS | Errno::E2BIG | Errno::EINVAL) => {
                join(config)?;
                *joined = true;
            }
            _ => {
                return Err(SetupError::Fork {
                    what: "the sandbox init",
                    source: Errno::last(),
                });
            }
        }
    }
    // SAFETY: the caller guarantees a single-threaded process.
    unsafe { fork() }.map_err(|source| SetupError::Fork {
        what: "the sandbox init",
        source,
    })
}
