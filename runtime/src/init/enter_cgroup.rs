//! How the sandbox's processes get into its cgroup. On v1 the helper moves itself in
//! (a write to each `cgroup.procs`) and init is forked inside. On v2 the helper stays out
//! and starts init directly in the cgroup with `clone3(CLONE_INTO_CGROUP)` (Linux 5.7):
//! moving a task between cgroups waits for an RCU grace period (8–11 ms, the largest part
//! of a sandbox's start), and being born there does not. Without clone3, v2 falls back to
//! the v1 way.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use nix::errno::Errno;
use nix::unistd::{ForkResult, Pid, fork, getpid};

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

/// Forks init, into the cgroup on v2.
///
/// # Safety
/// As fork(2): the helper must be single-threaded. The child continues in Rust without
/// glibc's fork bookkeeping (atfork handlers, the cached thread id used by `raise`), which
/// a single-threaded process that takes no lock across the call does not need.
pub(super) unsafe fn fork_init(
    entry: &Entry,
    config: &InitConfig,
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
