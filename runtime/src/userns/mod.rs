//! Rootless rbuild: the user namespace the whole rbuild process enters when an ordinary user
//! runs it, before anything else happens (as rootless podman and buildah do).
//!
//! Inside it rbuild is root: container root is the user, container ids 1.. are the user's
//! subordinate ids from `/etc/subuid` and `/etc/subgid`, mapped by shadow's setuid helpers
//! `newuidmap`/`newgidmap` (Debian's `uidmap`), the only privileged programs rootless
//! rbuild uses. Without a range or without the helpers, the namespace maps the user's own
//! id alone: container root is the user and no other id exists, so a file that needs
//! another owner fails to be created (`EINVAL`) instead of getting a wrong one.
//!
//! Everything the store holds, every mount and every sandbox then lives in that namespace:
//! files keep their container ids on disk (as the kernel maps them), overlayfs is mounted
//! with `userxattr`, and the kernel's own checks keep rbuild to what the user may do.
//!
//! ```text
//! rbuild (the user, single-threaded, in main)
//!  ├─ fork: helper, waits for the go
//!  ├─ unshare(CLONE_NEWUSER) ─ go ─▶ helper: newuidmap <pid> 0 <uid> 1 1 <sub> <n>
//!  │                                          newgidmap <pid> 0 <gid> 1 1 <sub> <n>
//!  └─ reads the helper's report, waits for it: rbuild is now root in its namespace
//! ```

mod subid;

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid, User, fork, getegid, geteuid, getpid, pipe2};
use serde::{Deserialize, Serialize};

pub use subid::{SubordinateRange, ranges_for};

/// Where the subordinate id ranges are (shadow's paths).
pub const SUBUID_FILE: &str = "/etc/subuid";
pub const SUBGID_FILE: &str = "/etc/subgid";

/// One line of `/proc/<pid>/uid_map` or `gid_map`: ids `inside..inside+count` of the
/// namespace are `outside..outside+count` of its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The uid and gid mappings of a process's user namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
}

impl IdMap {
    /// The mappings of this process's user namespace.
    pub fn of_current_process() -> Result<IdMap, UsernsError> {
        let read = |path: &str| {
            fs::read_to_string(path)
                .map(|text| parse_map(&text))
                .map_err(|source| UsernsError::ReadMap {
                    path: path.into(),
                    source,
                })
        };
        Ok(IdMap {
            uids: read("/proc/self/uid_map")?,
            gids: read("/proc/self/gid_map")?,
        })
    }

    /// The initial user namespace maps every id to itself.
    pub fn is_host(&self) -> bool {
        let all = [IdRange {
            inside: 0,
            outside: 0,
            count: u32::MAX,
        }];
        self.uids == all && self.gids == all
    }

    pub fn maps_uid(&self, uid: u32) -> bool {
        maps(&self.uids, uid)
    }

    pub fn maps_gid(&self, gid: u32) -> bool {
        maps(&self.gids, gid)
    }

    /// How many uids the namespace maps.
    pub fn uid_count(&self) -> u64 {
        self.uids.iter().map(|range| u64::from(range.count)).sum()
    }
}

fn maps(ranges: &[IdRange], id: u32) -> bool {
    ranges
        .iter()
        .any(|range| id >= range.inside && u64::from(id - range.inside) < u64::from(range.count))
}

/// `inside outside count` lines.
fn parse_map(text: &str) -> Vec<IdRange> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().map(str::parse::<u32>);
            match (fields.next(), fields.next(), fields.next()) {
                (Some(Ok(inside)), Some(Ok(outside)), Some(Ok(count))) => Some(IdRange {
                    inside,
                    outside,
                    count,
                }),
                _ => None,
            }
        })
        .collect()
}

impl fmt::Display for IdMap {
    /// `uids 0→1000 (1), 1→100000 (65536); gids …`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |ranges: &[IdRange]| {
            ranges
                .iter()
                .map(|r| format!("{}→{} ({})", r.inside, r.outside, r.count))
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(f, "uids {}; gids {}", list(&self.uids), list(&self.gids))
    }
}

/// How rbuild holds its privileges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Root with every capability, on the host: no namespace of rbuild's own.
    Host,
    /// Root in a user namespace rbuild did not make (a container with user namespaces):
    /// used as it is.
    Inherited,
    /// rbuild's namespace: container root is the user, ids 1.. the user's subordinate ids.
    Subordinate,
    /// rbuild's namespace with the user's own id alone.
    SingleId(SingleIdReason),
}

impl Mode {
    /// Whether rbuild runs as an ordinary user (in a namespace of its own).
    pub fn is_rootless(&self) -> bool {
        matches!(self, Mode::Subordinate | Mode::SingleId(_))
    }
}

/// Why rbuild's namespace maps only the user's own id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SingleIdReason {
    /// `/etc/subuid` or `/etc/subgid` has no range for the user.
    NoRanges { user: String, file: PathBuf },
    /// `newuidmap` or `newgidmap` is not on `PATH`.
    NoHelper { helper: &'static str },
    /// The helper refused (a range it does not grant, a setuid bit stripped by the container).
    HelperFailed {
        helper: &'static str,
        message: String,
    },
}

impl fmt::Display for SingleIdReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SingleIdReason::NoRanges { user, file } => {
                write!(f, "{} has no range for `{user}`", file.display())
            }
            SingleIdReason::NoHelper { helper } => {
                write!(f, "`{helper}` is not installed (Debian package `uidmap`)")
            }
            SingleIdReason::HelperFailed { helper, message } => {
                write!(f, "`{helper}` failed: {message}")
            }
        }
    }
}

/// The namespace rbuild runs in once [`enter`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserNamespace {
    pub mode: Mode,
    /// This process's mapping now.
    pub map: IdMap,
    /// The user's name (or number) on the host.
    pub user: String,
    pub host_uid: u32,
    pub host_gid: u32,
}

/// Why rbuild could not make its user namespace; each says what the machine must allow.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("user namespaces are disabled on this machine (`user.max_user_namespaces` is 0)")]
    Disabled,
    #[error(
        "unprivileged user namespaces are disabled on this machine (`kernel.unprivileged_userns_clone` is 0)"
    )]
    UnprivilegedDisabled,
    #[error(
        "AppArmor denies capabilities in unprivileged user namespaces on this machine (`kernel.apparmor_restrict_unprivileged_userns` is 1)"
    )]
    AppArmor,
    #[error("the kernel refused a new user namespace ({errno})")]
    Refused { errno: Errno },
    #[error("user namespaces are nested too deeply (the kernel allows 32 levels)")]
    TooDeep,
    #[error("rbuild must enter its user namespace while single-threaded")]
    NotSingleThreaded,
    #[error("failed to read {path}")]
    ReadMap {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to read {path}")]
    ReadSubordinateIds {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write {path}")]
    WriteMap {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to {what}")]
    Setup {
        what: &'static str,
        #[source]
        source: Errno,
    },
    #[error("`{helper}` failed after `newuidmap` succeeded: {message}")]
    GidHelper {
        helper: &'static str,
        message: String,
    },
}

impl UsernsError {
    /// What to do about it, for a `help:` line.
    pub fn help(&self) -> Option<String> {
        Some(match self {
            UsernsError::Disabled => "as root: `sysctl -w user.max_user_namespaces=28633` (and in /etc/sysctl.d to keep it), or run rbuild as root".into(),
            UsernsError::UnprivilegedDisabled => "as root: `sysctl -w kernel.unprivileged_userns_clone=1`, or run rbuild as root".into(),
            UsernsError::AppArmor => "as root, give the rbuild binary an AppArmor profile that allows `userns,` (rbuild's source has one: contrib/apparmor.d/rbuild), or `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`".into(),
            UsernsError::Refused { .. } => "in a container, its seccomp profile must allow unshare(CLONE_NEWUSER) (Kubernetes: `seccompProfile: {type: Unconfined}`; docker and rbuild run: `--security-opt seccomp=unconfined`), and AppArmor must not confine it (`appArmorProfile: {type: Unconfined}`)".into(),
            UsernsError::TooDeep => "run rbuild fewer user namespaces deep".into(),
            UsernsError::GidHelper { .. } => format!("check the user's ranges in {SUBGID_FILE}"),
            _ => return None,
        })
    }
}

/// Makes this process root of a user namespace of its own when it is not root on the host
/// already (or root without `CAP_SYS_ADMIN`). Call it first thing in `main`: the process must
/// be single-threaded (a multi-threaded process cannot change its user namespace).
pub fn enter() -> Result<UserNamespace, UsernsError> {
    let euid = geteuid();
    let egid = getegid();
    let user = User::from_uid(euid)
        .ok()
        .flatten()
        .map_or_else(|| euid.to_string(), |user| user.name);
    let namespace = |mode, map| UserNamespace {
        mode,
        map,
        user: user.clone(),
        host_uid: euid.as_raw(),
        host_gid: egid.as_raw(),
    };
    let current = IdMap::of_current_process()?;
    if euid.is_root() && has_cap_sys_admin() {
        let mode = if current.is_host() {
            Mode::Host
        } else {
            Mode::Inherited
        };
        return Ok(namespace(mode, current));
    }
    if thread_count() != Some(1) {
        return Err(UsernsError::NotSingleThreaded);
    }
    check_sysctls()?;
    let plan = plan(&user, euid, egid)?;
    let mode = match plan {
        Plan::Subordinate { uids, gids } => with_helpers(euid, egid, &uids, &gids)?,
        Plan::Single(reason) => {
            unshare_user()?;
            write_single_map(euid, egid)?;
            Mode::SingleId(reason)
        }
    };
    check_apparmor()?;
    Ok(namespace(mode, IdMap::of_current_process()?))
}

enum Plan {
    /// `newuidmap`/`newgidmap` arguments after the pid.
    Subordinate {
        uids: Vec<String>,
        gids: Vec<String>,
    },
    Single(SingleIdReason),
}

fn plan(user: &str, uid: Uid, gid: Gid) -> Result<Plan, UsernsError> {
    let read = |file: &str, id: u32| {
        ranges_for(Path::new(file), user, id).map_err(|source| UsernsError::ReadSubordinateIds {
            path: file.into(),
            source,
        })
    };
    let subuids = read(SUBUID_FILE, uid.as_raw())?;
    // shadow looks subgid ranges up by user name too, whatever the group.
    let subgids = read(SUBGID_FILE, uid.as_raw())?;
    for (ranges, file) in [(&subuids, SUBUID_FILE), (&subgids, SUBGID_FILE)] {
        if ranges.is_empty() {
            return Ok(Plan::Single(SingleIdReason::NoRanges {
                user: user.to_owned(),
                file: file.into(),
            }));
        }
    }
    for helper in ["newuidmap", "newgidmap"] {
        if find_in_path(helper).is_none() {
            return Ok(Plan::Single(SingleIdReason::NoHelper { helper }));
        }
    }
    Ok(Plan::Subordinate {
        uids: helper_args(uid.as_raw(), &subuids),
        gids: helper_args(gid.as_raw(), &subgids),
    })
}

/// `0 <own> 1`, then each range after the other from container id 1.
fn helper_args(own: u32, ranges: &[SubordinateRange]) -> Vec<String> {
    let mut args = vec!["0".to_owned(), own.to_string(), "1".to_owned()];
    let mut next: u64 = 1;
    for range in ranges {
        // The kernel takes at most 340 lines, and ids stop at 2^32 - 2.
        if args.len() / 3 >= 340 || next + u64::from(range.count) > u64::from(u32::MAX) {
            break;
        }
        args.extend([
            next.to_string(),
            range.start.to_string(),
            range.count.to_string(),
        ]);
        next += u64::from(range.count);
    }
    args
}

/// A helper process, forked before the unshare (a setuid program started from inside the
/// new namespace would not be setuid: root is not mapped there), maps this process once
/// told to. If `newuidmap` fails before anything was written, the namespace falls back to
/// the single-id mapping.
fn with_helpers(uid: Uid, gid: Gid, uids: &[String], gids: &[String]) -> Result<Mode, UsernsError> {
    let pipe = || {
        pipe2(OFlag::O_CLOEXEC).map_err(|source| UsernsError::Setup {
            what: "create a pipe",
            source,
        })
    };
    let (go_read, go_write) = pipe()?;
    let (report_read, report_write) = pipe()?;
    let target = getpid();
    // SAFETY: the process is single-threaded (checked by `enter`), so the child may run
    // any code; it only runs the two helpers and exits.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(go_write);
            drop(report_read);
            helper_child(go_read, report_write, target, uids, gids)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(go_read);
            drop(report_write);
            let unshared = unshare_user();
            let mut go = fs::File::from(go_write);
            if unshared.is_ok() {
                let _ = go.write_all(b"1");
            }
            drop(go);
            let mut report = String::new();
            let _ = fs::File::from(report_read).read_to_string(&mut report);
            loop {
                match waitpid(child, None) {
                    Err(Errno::EINTR) => continue,
                    Ok(WaitStatus::StillAlive) => continue,
                    _ => break,
                }
            }
            unshared?;
            if report.is_empty() {
                return Ok(Mode::Subordinate);
            }
            let (helper, message) = report.split_once(':').unwrap_or(("newuidmap", &report));
            let message = message.trim().to_owned();
            if helper == "newgidmap" {
                return Err(UsernsError::GidHelper {
                    helper: "newgidmap",
                    message,
                });
            }
            write_single_map(uid, gid)?;
            Ok(Mode::SingleId(SingleIdReason::HelperFailed {
                helper: "newuidmap",
                message,
            }))
        }
        Err(source) => Err(UsernsError::Setup {
            what: "fork the id-mapping helper",
            source,
        }),
    }
}

/// The forked helper: waits for the go (EOF: the unshare failed), runs `newuidmap` and
/// `newgidmap` for `target`, and reports `helper: message` on failure. Never returns.
fn helper_child(go: OwnedFd, report: OwnedFd, target: Pid, uids: &[String], gids: &[String]) -> ! {
    let mut byte = [0u8; 1];
    let told = fs::File::from(go).read(&mut byte).is_ok_and(|n| n == 1);
    if told {
        let mut report = fs::File::from(report);
        // Both at once: each is a setuid exec of a few milliseconds.
        let uid_helper = start_helper("newuidmap", target, uids);
        let gid_helper = start_helper("newgidmap", target, gids);
        for (helper, started) in [("newuidmap", uid_helper), ("newgidmap", gid_helper)] {
            if let Err(message) = started.and_then(finish_helper) {
                let _ = write!(report, "{helper}: {message}");
                break;
            }
        }
    }
    // SAFETY: _exit ends the forked child without running the parent's atexit handlers or
    // flushing its stdio buffers a second time.
    unsafe { libc::_exit(0) }
}

fn start_helper(helper: &str, target: Pid, args: &[String]) -> Result<std::process::Child, String> {
    Command::new(helper)
        .arg(target.to_string())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| err.to_string())
}

fn finish_helper(child: std::process::Child) -> Result<(), String> {
    let output = child.wait_with_output().map_err(|err| err.to_string())?;
    if output.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&output.stderr);
    // Shadow's helpers start each line with their own name, which the report gives already.
    let message = text
        .lines()
        .map(|line| {
            let line = line.trim();
            ["newuidmap: ", "newgidmap: "]
                .iter()
                .find_map(|prefix| line.strip_prefix(prefix))
                .unwrap_or(line)
        })
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    Err(if message.is_empty() {
        format!("{}", output.status)
    } else {
        message
    })
}

fn unshare_user() -> Result<(), UsernsError> {
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|errno| match errno {
        // The count of namespaces reached `max_user_namespaces` (0 included).
        Errno::ENOSPC if read_sysctl("/proc/sys/user/max_user_namespaces") == Some(0) => {
            UsernsError::Disabled
        }
        Errno::EUSERS => UsernsError::TooDeep,
        Errno::EINVAL => UsernsError::NotSingleThreaded,
        errno => UsernsError::Refused { errno },
    })
}

/// The user's own uid and gid as container root, for the maps not written yet (a helper
/// may have written one). `setgroups` must be denied first: an unprivileged process may map
/// its gid only so.
fn write_single_map(uid: Uid, gid: Gid) -> Result<(), UsernsError> {
    let write = |path: &str, text: String| {
        fs::write(path, text).map_err(|source| UsernsError::WriteMap {
            path: path.into(),
            source,
        })
    };
    let unwritten = |path: &str| fs::read_to_string(path).is_ok_and(|text| text.trim().is_empty());
    if unwritten("/proc/self/uid_map") {
        write("/proc/self/uid_map", format!("0 {uid} 1\n"))?;
    }
    if unwritten("/proc/self/gid_map") {
        write("/proc/self/setgroups", "deny".to_owned())?;
        write("/proc/self/gid_map", format!("0 {gid} 1\n"))?;
    }
    Ok(())
}

/// Says "disabled" before trying, where the machine says so plainly.
fn check_sysctls() -> Result<(), UsernsError> {
    if read_sysctl("/proc/sys/user/max_user_namespaces") == Some(0) {
        return Err(UsernsError::Disabled);
    }
    if read_sysctl("/proc/sys/kernel/unprivileged_userns_clone") == Some(0) {
        return Err(UsernsError::UnprivilegedDisabled);
    }
    Ok(())
}

/// Ubuntu (23.10 and later) lets an unconfined process create a user namespace but takes
/// its capabilities there away: every mount would fail with `EPERM`. A forked child tries
/// a mount namespace, which needs `CAP_SYS_ADMIN` in ours.
fn check_apparmor() -> Result<(), UsernsError> {
    if read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") != Some(1) {
        return Ok(());
    }
    // SAFETY: single-threaded (checked by `enter`); the child only calls unshare and _exit.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let code = i32::from(unshare(CloneFlags::CLONE_NEWNS).is_err());
            // SAFETY: as in `helper_child`.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            _ => Err(UsernsError::AppArmor),
        },
        Err(source) => Err(UsernsError::Setup {
            what: "fork",
            source,
        }),
    }
}

fn read_sysctl(path: &str) -> Option<i64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `CAP_SYS_ADMIN`'s bit (linux/capability.h).
const CAP_SYS_ADMIN: u32 = 21;

/// `CAP_SYS_ADMIN` in the effective set (`CapEff` of `/proc/self/status`).
fn has_cap_sys_admin() -> bool {
    status_field("CapEff")
        .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

fn thread_count() -> Option<u64> {
    status_field("Threads")?.parse().ok()
}

fn status_field(name: &str) -> Option<String> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim().to_owned())
    })
}

/// The first executable `name` on `PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(OsStr::new(name)))
        .find(|candidate| {
            fs::metadata(candidate).is_ok_and(|meta| meta.is_file() && meta.mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_queries_id_maps() {
        let uids =
            parse_map("         0       1000          1\n         1     100000      65536\n");
        let map = IdMap {
            uids: uids.clone(),
            gids: uids,
        };
        assert!(!map.is_host());
        assert!(map.maps_uid(0));
        assert!(map.maps_uid(65536));
        assert!(!map.maps_uid(65537));
        assert_eq!(map.uid_count(), 65537);
        assert_eq!(
            map.to_string(),
            "uids 0→1000 (1), 1→100000 (65536); gids 0→1000 (1), 1→100000 (65536)"
        );
        let host = parse_map("         0          0 4294967295\n");
        let host = IdMap {
            uids: host.clone(),
            gids: host,
        };
        assert!(host.is_host());
        assert!(host.maps_uid(u32::MAX - 1));
    }

    #[test]
    fn helper_arguments_put_ranges_after_root() {
        let ranges = [
            SubordinateRange {
                start: 100000,
                count: 65536,
            },
            SubordinateRange {
                start: 300000,
                count: 10,
            },
        ];
        assert_eq!(
            helper_args(1000, &ranges),
            [
                "0", "1000", "1", "1", "100000", "65536", "65537", "300000", "10"
            ]
        );
    }

    #[test]
    fn the_current_process_has_a_map() {
        let map = IdMap::of_current_process().unwrap();
        assert!(!map.uids.is_empty());
        assert!(map.maps_uid(geteuid().as_raw()));
    }
}
