//! The command: finding it in the sandbox's `PATH`, and the fork + exec that starts it as
//! the resolved user, with its exact environment, no inherited descriptor above 2, Docker's
//! default capabilities, `no_new_privs` and the seccomp profile.

use std::ffi::{CString, c_char};
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, fork, pipe2};

use super::SetupError;
use super::security;
use crate::capabilities::Capabilities;
use crate::seccomp::Filter;
use crate::spec::{Rlimit, SandboxSpec, Seccomp};
use crate::user::ExecUser;

/// The `PATH` used when `process.env` has none (Docker's default).
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Wording as Docker's, so that messages read the same as with `docker build`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LookupError {
    #[error("exec: \"{name}\": executable file not found in $PATH")]
    NotFound { name: String },
    #[error("exec: \"{name}\": stat {name}")]
    Stat {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("exec: \"{name}\": is a directory")]
    Directory { name: String },
}

/// Finds `name` as execvp(3) would: a name with a `/` is used as is (relative to the
/// current directory), others are searched in `path` (an empty entry is `.`). A candidate
/// must be a regular file with an execute bit.
pub(crate) fn lookup_executable(name: &str, path: Option<&str>) -> Result<PathBuf, LookupError> {
    if name.contains('/') {
        let meta = fs::metadata(name).map_err(|source| LookupError::Stat {
            name: name.to_owned(),
            source,
        })?;
        if meta.is_dir() {
            return Err(LookupError::Directory {
                name: name.to_owned(),
            });
        }
        return Ok(PathBuf::from(name));
    }
    if !name.is_empty() {
        for dir in path.unwrap_or(DEFAULT_PATH).split(':') {
            let candidate = Path::new(if dir.is_empty() { "." } else { dir }).join(name);
            let executable = fs::metadata(&candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0);
            if executable {
                return Ok(candidate);
            }
        }
    }
    Err(LookupError::NotFound {
        name: name.to_owned(),
    })
}

/// Everything the child needs, allocated before the fork.
pub(super) struct Command {
    path: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    user: ExecUser,
    /// `None` when the sandbox's profile is [`Seccomp::Unconfined`].
    filter: Option<Filter>,
    /// The `oom_score_adj` the command gets back: init and the helper shield themselves
    /// from the OOM killer, and the child inherits that.
    oom_score_adj: Vec<u8>,
    /// The sandbox's procfs, opened and checked by rbuild before anything of the image
    /// ran: the OOM score is written through it, never through a `/proc` path that the
    /// root's contents (or a racing sandbox sharing a mount) could have redirected.
    proc: OwnedFd,
    /// The capabilities the command keeps, as a mask.
    capabilities: u64,
    /// Whether exec may no longer grant privileges (always, but in a privileged sandbox).
    no_new_privs: bool,
    rlimits: Vec<Rlimit>,
    /// False in a user namespace whose `setgroups` is denied (the single-id mapping of a
    /// user without subordinate ids): the groups stay the user's own, and no other group
    /// exists there to give.
    set_groups: bool,
}

/// Steps of the child that can fail, reported through the error pipe.
const STEP_TERMINAL: u32 = 1;
const STEP_GROUPS: u32 = 2;
const STEP_GID: u32 = 3;
const STEP_UID: u32 = 4;
const STEP_EXEC: u32 = 5;
const STEP_CAPABILITIES: u32 = 6;
const STEP_NO_NEW_PRIVS: u32 = 7;
const STEP_SECCOMP: u32 = 8;
const STEP_RLIMIT: u32 = 9;

/// Relative to the sandbox's procfs handle.
const OOM_SCORE_ADJ: &std::ffi::CStr = c"self/oom_score_adj";
const SETGROUPS: &std::ffi::CStr = c"self/setgroups";

impl Command {
    /// Resolves the executable; the current directory must already be `process.cwd`.
    /// `proc` is the sandbox's procfs as [`super::rootfs::setup`] verified it.
    pub(super) fn prepare(
        spec: &SandboxSpec,
        user: ExecUser,
        oom_score_adj: &str,
        proc: OwnedFd,
    ) -> Result<Command, SetupError> {
        let process = &spec.process;
        let name = process.args.first().ok_or(SetupError::NoCommand)?;
        let path_var = process
            .env
            .iter()
            .rev()
            .find_map(|entry| entry.strip_prefix("PATH="));
        let path = lookup_executable(name, path_var)?;
        let cstring =
            |bytes: &[u8], what| CString::new(bytes).map_err(|_| SetupError::Nul { what });
        Ok(Command {
            path: cstring(path.as_os_str().as_bytes(), "the executable path")?,
            argv: process
                .args
                .iter()
                .map(|arg| cstring(arg.as_bytes(), "an argument"))
                .collect::<Result<_, _>>()?,
            env: process
                .env
                .iter()
                .map(String::as_str)
                .map(str::to_owned)
                // As runc does, a process without HOME gets the user's home directory.
                .chain(
                    (!process.env.iter().any(|entry| entry.starts_with("HOME=")))
                        .then(|| format!("HOME={}", user.home)),
                )
                .map(|entry| cstring(entry.as_bytes(), "an environment variable"))
                .collect::<Result<_, _>>()?,
            user,
            filter: match spec.seccomp {
                _ if spec.privileged => None,
                Seccomp::Default => Some(Filter::profile(spec.capabilities)?),
                Seccomp::Unconfined => None,
            },
            capabilities: if spec.privileged {
                Capabilities::all().mask()
            } else {
                spec.capabilities.mask()
            },
            no_new_privs: !spec.privileged,
            rlimits: process.rlimits.clone(),
            oom_score_adj: oom_score_adj.as_bytes().to_vec(),
            set_groups: read_proc(proc.as_fd(), SETGROUPS)
                .map_or(true, |text| text.trim() != "deny"),
            proc,
        })
    }

    /// Forks and execs the command; returns once exec succeeded (the close-on-exec error
    /// pipe reads end-of-file) or with the step that failed.
    pub(super) fn spawn(&self, tty: Option<RawFd>) -> Result<Pid, SetupError> {
        let (argv, env) = self.pointers();
        let groups: Vec<libc::gid_t> = self.user.groups.clone();
        let (reader, writer) = pipe2(OFlag::O_CLOEXEC).map_err(|source| SetupError::Fork {
            what: "the command",
            source,
        })?;

        // SAFETY: init is single-threaded. The child only makes async-signal-safe calls on
        // memory prepared above, then execs or `_exit`s.
        match unsafe { fork() }.map_err(|source| SetupError::Fork {
            what: "the command",
            source,
        })? {
            ForkResult::Child => {
                // SAFETY: we are the freshly forked child; the pointers stay valid because
                // nothing is freed before exec or `_exit`.
                unsafe {
                    super::enter_cgroup::enter_pids_limit();
                    let step = enter_and_exec(self, &argv, &env, &groups, tty, false);
                    fail(writer.as_raw_fd(), step)
                }
            }
            ForkResult::Parent { child } => {
                drop(writer);
                let mut report = [0u8; 8];
                let mut filled = 0;
                while filled < report.len() {
                    match nix::unistd::read(reader.as_raw_fd(), &mut report[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(Errno::EINTR) => {}
                        Err(_) => break,
                    }
                }
                if filled < report.len() {
                    return Ok(child);
                }
                // The child `_exit`ed: reap it so it is not mistaken for the command later.
                let _ = waitpid(child, None);
                let step = u32::from_ne_bytes([report[0], report[1], report[2], report[3]]);
                let errno = i32::from_ne_bytes([report[4], report[5], report[6], report[7]]);
                Err(self.failure(step, Errno::from_raw(errno)))
            }
        }
    }

    /// Becomes the command: the same steps as the forked child, in this process, which
    /// must be single-threaded. Returns only when a step failed. With `tty`, the caller
    /// has handed the master side to whoever relays it.
    pub(super) fn exec(&self, tty: Option<RawFd>) -> SetupError {
        let (argv, env) = self.pointers();
        let groups: Vec<libc::gid_t> = self.user.groups.clone();
        // SAFETY: single-threaded (init); the pointers stay valid until exec.
        let step = unsafe { enter_and_exec(self, &argv, &env, &groups, tty, true) };
        self.failure(step, Errno::last())
    }

    /// NUL-terminated pointer arrays of argv and env, for execve.
    fn pointers(&self) -> (Vec<*const c_char>, Vec<*const c_char>) {
        let array = |strings: &[CString]| {
            strings
                .iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        };
        (array(&self.argv), array(&self.env))
    }

    fn failure(&self, step: u32, source: Errno) -> SetupError {
        match step {
            STEP_TERMINAL => SetupError::Terminal { source },
            STEP_GROUPS | STEP_GID | STEP_UID => SetupError::SwitchUser {
                uid: self.user.uid,
                gid: self.user.gid,
                source,
            },
            STEP_CAPABILITIES => SetupError::Capabilities { source },
            STEP_NO_NEW_PRIVS => SetupError::NoNewPrivs { source },
            STEP_SECCOMP => SetupError::InstallSeccomp { source },
            STEP_RLIMIT => SetupError::Rlimit { source },
            _ => SetupError::Exec {
                path: PathBuf::from(std::ffi::OsStr::from_bytes(self.path.as_bytes())),
                source,
            },
        }
    }
}

/// The command's last steps: signals back to default, controlling terminal, OOM score,
/// capability bounding set, user, remaining capabilities, `no_new_privs`, descriptors,
/// seccomp (last, so that nothing before it needs a denied syscall), exec. Only raw
/// async-signal-safe calls, no allocation. Returns the step that failed (errno says why).
///
/// `pid1`: the process is the namespace's pid 1 becoming the command. Switching user
/// clears the parent-death signal, which is set again: the command must not outlive the
/// helper that watches rbuild.
///
/// # Safety
/// Must be called in a freshly forked child, or a single-threaded process, with valid
/// NUL-terminated pointer arrays.
unsafe fn enter_and_exec(
    command: &Command,
    argv: &[*const c_char],
    env: &[*const c_char],
    groups: &[libc::gid_t],
    tty: Option<RawFd>,
    pid1: bool,
) -> u32 {
    let keep = command.capabilities;
    // The whole block: plain syscalls on values prepared before the fork.
    // SAFETY: every call is async-signal-safe and reads only memory prepared before.
    unsafe {
        // Rust ignores SIGPIPE and the helper blocks the forwarded signals; both would be
        // inherited through exec.
        for signal in 1..32 {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());

        if let Some(tty) = tty {
            if libc::setsid() < 0 || libc::ioctl(tty, libc::TIOCSCTTY, 0) < 0 {
                return STEP_TERMINAL;
            }
            for fd in 0..3 {
                if libc::dup2(tty, fd) < 0 {
                    return STEP_TERMINAL;
                }
            }
        }
        // Best effort: raising the score needs no privilege, and a failure only leaves the
        // command as protected as init.
        let fd = open_proc_file(command.proc.as_raw_fd(), OOM_SCORE_ADJ, libc::O_WRONLY);
        if fd >= 0 {
            let value = &command.oom_score_adj;
            libc::write(fd, value.as_ptr().cast(), value.len());
            libc::close(fd);
        }
        // Before the switch of user: raising a hard limit needs CAP_SYS_RESOURCE, which
        // root still has in its effective set until `limit_capabilities`.
        for limit in &command.rlimits {
            let value = libc::rlimit {
                rlim_cur: limit.soft,
                rlim_max: limit.hard,
            };
            if libc::setrlimit(limit.resource as _, &value) != 0 {
                return STEP_RLIMIT;
            }
        }
        if security::limit_bounding_set(keep).is_err() {
            return STEP_CAPABILITIES;
        }
        if command.set_groups && libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
            return STEP_GROUPS;
        }
        if libc::setgid(command.user.gid) != 0 {
            return STEP_GID;
        }
        if libc::setuid(command.user.uid) != 0 {
            return STEP_UID;
        }
        if pid1 {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        }
        if security::limit_capabilities(keep).is_err() {
            return STEP_CAPABILITIES;
        }
        if command.no_new_privs && security::set_no_new_privs().is_err() {
            return STEP_NO_NEW_PRIVS;
        }
        // Close-on-exec rather than close: the report pipe must outlive a failed exec.
        // The raw syscall (Linux 5.11), not glibc's wrapper, which needs glibc 2.34.
        let cloexec = libc::CLOSE_RANGE_CLOEXEC as libc::c_uint;
        if libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            cloexec,
        ) != 0
        {
            for fd in 3..4096 {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        if let Some(filter) = &command.filter
            && filter.install() != 0
        {
            return STEP_SECCOMP;
        }
        libc::execve(command.path.as_ptr(), argv.as_ptr(), env.as_ptr());
        STEP_EXEC
    }
}

/// Opens `name` below the sandbox's procfs handle `proc` without leaving that mount
/// (nothing mounted over a procfs file since is followed) and without magic links; on
/// kernels without openat2 (< 5.6), without following a symlink in the last component.
/// Returns the descriptor or -1. Async-signal-safe: raw syscalls on prepared memory.
fn open_proc_file(proc: RawFd, name: &std::ffi::CStr, flags: libc::c_int) -> RawFd {
    // SAFETY: open_how is plain data, all-zero is valid; openat2 and openat read the
    // NUL-terminated name and `how`, both valid for the call.
    unsafe {
        let mut how: libc::open_how = std::mem::zeroed();
        how.flags = (flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64;
        how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_XDEV | libc::RESOLVE_NO_MAGICLINKS;
        let fd = libc::syscall(
            libc::SYS_openat2,
            proc,
            name.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        );
        if fd >= 0 {
            return fd as RawFd;
        }
        if *libc::__errno_location() != libc::ENOSYS {
            return -1;
        }
        libc::openat(
            proc,
            name.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    }
}

/// Reads a small procfs file through the sandbox's procfs handle.
fn read_proc(proc: BorrowedFd<'_>, name: &std::ffi::CStr) -> io::Result<String> {
    let fd = open_proc_file(proc.as_raw_fd(), name, libc::O_RDONLY);
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let file = unsafe { <fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    io::read_to_string(file)
}

/// Reports `step` and errno to init and exits with 127.
///
/// # Safety
/// Async-signal-safe; for the forked child only.
unsafe fn fail(report: RawFd, step: u32) -> ! {
    // SAFETY: errno location is thread-local and valid; write and _exit are
    // async-signal-safe.
    unsafe {
        let errno = *libc::__errno_location();
        let mut buffer = [0u8; 8];
        buffer[..4].copy_from_slice(&step.to_ne_bytes());
        buffer[4..].copy_from_slice(&errno.to_ne_bytes());
        libc::write(report, buffer.as_ptr().cast(), buffer.len());
        libc::_exit(127)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn write_file(path: &Path, mode: u32) {
        fs::write(path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn finds_the_first_executable_in_path() {
        let temp = tempfile::tempdir().unwrap();
        let first = temp.path().join("first");
        let second = temp.path().join("second");
        fs::create_dir_all(&first).unwrap();
        fs::create_dir_all(&second).unwrap();
        write_file(&first.join("tool"), 0o644);
        write_file(&second.join("tool"), 0o755);
        fs::create_dir(first.join("dir")).unwrap();
        write_file(&second.join("dir"), 0o700);
        let path = format!("{}:{}", first.display(), second.display());
        assert_eq!(
            lookup_executable("tool", Some(&path)).unwrap(),
            second.join("tool")
        );
        assert_eq!(
            lookup_executable("dir", Some(&path)).unwrap(),
            second.join("dir")
        );
        let err = lookup_executable("missing", Some(&path)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "exec: \"missing\": executable file not found in $PATH"
        );
        assert!(matches!(
            lookup_executable("", Some(&path)),
            Err(LookupError::NotFound { .. })
        ));
    }

    #[test]
    fn uses_names_with_a_slash_as_they_are() {
        let temp = tempfile::tempdir().unwrap();
        let tool = temp.path().join("tool");
        write_file(&tool, 0o755);
        let name = tool.to_str().unwrap();
        assert_eq!(lookup_executable(name, Some("")).unwrap(), tool);
        let missing = temp.path().join("missing");
        let err = lookup_executable(missing.to_str().unwrap(), None).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "exec: \"{}\": stat {}",
                missing.display(),
                missing.display()
            )),
            "{err}"
        );
        assert!(matches!(
            lookup_executable(temp.path().to_str().unwrap(), None),
            Err(LookupError::Directory { .. })
        ));
    }

    #[test]
    fn default_path_is_dockers() {
        assert_eq!(
            DEFAULT_PATH,
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        );
        assert!(lookup_executable("sh", None).is_ok());
    }
}
