//! What the sandbox may not see or change under `/proc` and `/sys`: Docker's masked paths
//! (`/dev/null` bound over files, an empty read-only tmpfs over directories), its read-only
//! paths, and a read-only cgroup filesystem of the sandbox's own cgroup namespace at
//! `/sys/fs/cgroup`. Applied under the new root before pivot_root, through descriptors of
//! the `proc` and `sys` rbuild mounted there.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::SetupError;
use crate::cgroup::CgroupFs;
use crate::mount::{
    MountError, MountPointKind, bind_or_remount, create_in, fd_path, fd_stat, is_kind, open_beneath,
};

/// Docker's `defaultMaskedPaths` (moby `oci/defaults.go`) and `/sys/kernel/security`;
/// missing ones are skipped.
pub(crate) const MASKED: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/sys/kernel/security",
];

/// Docker's `defaultReadonlyPaths`.
pub(crate) const READONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

fn mount_error(fstype: &str, origin: &str, target: &str) -> impl FnOnce(nix::Error) -> SetupError {
    let error = MountError {
        fstype: fstype.into(),
        origin: origin.into(),
        target: target.into(),
        errno: nix::Error::UnknownErrno,
    };
    move |errno| SetupError::Mount(MountError { errno, ..error })
}

/// The descriptor of `path` (`/proc/...` or `/sys/...`) beneath the sandbox's `proc` or
/// `sys` mount, following no symlink; `None` when it does not exist.
fn beneath(
    proc: BorrowedFd<'_>,
    sys: BorrowedFd<'_>,
    path: &str,
) -> Result<Option<OwnedFd>, SetupError> {
    match open_below(proc, sys, path) {
        Ok(fd) => Ok(Some(fd)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SetupError::MountPoint {
            path: path.into(),
            source,
        }),
    }
}

/// [`open_beneath`] of a `/proc/...` path beneath `proc`, of a `/sys/...` one beneath `sys`.
fn open_below(proc: BorrowedFd<'_>, sys: BorrowedFd<'_>, path: &str) -> io::Result<OwnedFd> {
    let (base, relative) = match path.strip_prefix("/proc/") {
        Some(relative) => (proc, relative),
        None => (sys, path.strip_prefix("/sys/").unwrap_or(path)),
    };
    open_beneath(base, Path::new(relative))
}

/// Masks and write-protects the kernel's files in the sandbox's `proc` and `sys` (held by
/// descriptor, checked to be procfs and sysfs): each target is opened beneath them without
/// following a symlink, and a masked file gets `null`, the host's null device that rbuild
/// opened and checked, never a `/dev/null` found in the root.
pub(super) fn apply(
    proc: BorrowedFd<'_>,
    sys: BorrowedFd<'_>,
    null: BorrowedFd<'_>,
) -> Result<(), SetupError> {
    for path in MASKED {
        let Some(target) = beneath(proc, sys, path)? else {
            continue;
        };
        let stat = fd_stat(target.as_fd()).map_err(|source| SetupError::MountPoint {
            path: path.into(),
            source,
        })?;
        if is_kind(&stat, libc::S_IFDIR) {
            mount(
                Some("tmpfs"),
                &fd_path(&target),
                Some("tmpfs"),
                MsFlags::MS_RDONLY | NOSUID_NODEV_NOEXEC,
                Some("size=0"),
            )
            .map_err(mount_error("tmpfs", "tmpfs", path))?;
        } else {
            mount(
                Some(&fd_path(&null)),
                &fd_path(&target),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(mount_error("bind", "/dev/null", path))?;
        }
    }
    for path in READONLY {
        let Some(target) = beneath(proc, sys, path)? else {
            continue;
        };
        let flags = MsFlags::MS_REC | MsFlags::MS_RDONLY | NOSUID_NODEV_NOEXEC;
        bind_or_remount(&fd_path(&target), target.as_fd(), flags, || {
            open_below(proc, sys, path)
        })
        .map_err(mount_error("bind", path, path))?;
    }
    Ok(())
}

/// Mounts the sandbox's cgroup filesystem, read-only unless `writable` (a privileged
/// sandbox), at `/sys/fs/cgroup` beneath `sys`
/// (the sandbox's sysfs, by descriptor). The helper unshared the cgroup namespace after
/// joining the sandbox's cgroups, so each hierarchy shows the sandbox's own cgroup as its
/// root.
///
/// Best effort: it only informs the process (of its limits, for instance), so a hierarchy
/// the kernel will not mount again with the host's options is left out rather than failing
/// the sandbox; what is mounted is always read-only (the sysfs directory under it is too).
pub(super) fn mount_cgroupfs(sys: BorrowedFd<'_>, cgroupfs: &CgroupFs, writable: bool) {
    let here = Path::new("fs/cgroup");
    let Ok(target) = open_beneath(sys, here) else {
        return;
    };
    if !fd_stat(target.as_fd()).is_ok_and(|stat| is_kind(&stat, libc::S_IFDIR)) {
        return;
    }
    let flags = if writable {
        NOSUID_NODEV_NOEXEC
    } else {
        MsFlags::MS_RDONLY | NOSUID_NODEV_NOEXEC
    };
    match cgroupfs {
        CgroupFs::V2 => {
            let cgroup2 = |at: &OwnedFd| {
                mount(
                    Some("cgroup2"),
                    &fd_path(at),
                    Some("cgroup2"),
                    flags,
                    None::<&str>,
                )
            };
            // Where the host's /sys was bound (rootless, host network) its cgroup2 is
            // mounted here already, and the kernel refuses the same filesystem on the root
            // of its own mount (`EBUSY`): a read-only tmpfs in between.
            if cgroup2(&target) == Err(nix::errno::Errno::EBUSY)
                && mount(
                    Some("tmpfs"),
                    &fd_path(&target),
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY | NOSUID_NODEV_NOEXEC,
                    Some("size=0,mode=755"),
                )
                .is_ok()
                && let Ok(tmpfs) = open_beneath(sys, here)
            {
                let _ = cgroup2(&tmpfs);
            }
        }
        CgroupFs::V1 { hierarchies } => {
            let data = Some("mode=755,size=64k");
            if mount(
                Some("tmpfs"),
                &fd_path(&target),
                Some("tmpfs"),
                NOSUID_NODEV_NOEXEC,
                data,
            )
            .is_err()
            {
                return;
            }
            let Ok(tmpfs) = open_beneath(sys, here) else {
                return;
            };
            for hierarchy in hierarchies {
                let Ok(dir) = create_in(tmpfs.as_fd(), &hierarchy.name, MountPointKind::Dir) else {
                    continue;
                };
                // `release_agent` may only be set from the initial cgroup namespace
                // (CVE-2022-0492), and the sandbox has no business with it.
                let options: Vec<&str> = hierarchy
                    .options
                    .split(',')
                    .filter(|option| !option.starts_with("release_agent="))
                    .collect();
                let mounted = mount(
                    Some("cgroup"),
                    &fd_path(&dir),
                    Some("cgroup"),
                    flags,
                    Some(options.join(",").as_str()),
                );
                if mounted.is_err() {
                    drop(dir);
                    let _ = nix::unistd::unlinkat(
                        Some(tmpfs.as_raw_fd()),
                        hierarchy.name.as_str(),
                        nix::unistd::UnlinkatFlags::RemoveDir,
                    );
                }
            }
            // A bind remount changes the mount's flags only: a user namespace's tmpfs
            // refuses a filesystem remount that names its options again.
            let readonly = mount(
                None::<&str>,
                &fd_path(&tmpfs),
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags,
                None::<&str>,
            );
            if readonly.is_err() {
                // Never leave a writable tmpfs behind: without it, the read-only sysfs
                // directory shows.
                let _ = umount2(&fd_path(&tmpfs), MntFlags::MNT_DETACH);
            }
        }
    }
}
