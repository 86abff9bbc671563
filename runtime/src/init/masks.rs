//! What the sandbox may not see or change under `/proc` and `/sys`: Docker's masked paths
//! (`/dev/null` bound over files, an empty read-only tmpfs over directories), its read-only
//! paths, and a read-only cgroup filesystem of the sandbox's own cgroup namespace at
//! `/sys/fs/cgroup`. Applied under the new root before pivot_root.

use std::fs;
use std::io;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::SetupError;
use crate::cgroup::CgroupFs;
use crate::mount::MountError;

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

/// Masks and write-protects the kernel's files under `rootfs` (with `/proc` and `/sys`
/// already mounted there).
pub(super) fn apply(rootfs: &Path) -> Result<(), SetupError> {
    for path in MASKED {
        let host = rootfs.join(&path[1..]);
        let meta = match fs::symlink_metadata(&host) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(SetupError::MountPoint {
                    path: path.into(),
                    source,
                });
            }
        };
        if meta.is_dir() {
            mount(
                Some("tmpfs"),
                &host,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | NOSUID_NODEV_NOEXEC,
                Some("size=0"),
            )
            .map_err(mount_error("tmpfs", "tmpfs", path))?;
        } else {
            mount(
                Some("/dev/null"),
                &host,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(mount_error("bind", "/dev/null", path))?;
        }
    }
    for path in READONLY {
        let host = rootfs.join(&path[1..]);
        if fs::symlink_metadata(&host).is_err() {
            continue;
        }
        mount(
            Some(&host),
            &host,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(mount_error("bind", path, path))?;
        mount(
            None::<&str>,
            &host,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | NOSUID_NODEV_NOEXEC,
            None::<&str>,
        )
        .map_err(mount_error("bind", path, path))?;
    }
    Ok(())
}

/// Mounts the sandbox's cgroup filesystem, read-only, at `<rootfs>/sys/fs/cgroup`. The
/// helper unshared the cgroup namespace after joining the sandbox's cgroups, so each
/// hierarchy shows the sandbox's own cgroup as its root.
///
/// Best effort: it only informs the process (of its limits, for instance), so a hierarchy
/// the kernel will not mount again with the host's options is left out rather than failing
/// the sandbox; what is mounted is always read-only (the sysfs directory under it is too).
pub(super) fn mount_cgroupfs(rootfs: &Path, cgroupfs: &CgroupFs) {
    let target = rootfs.join("sys/fs/cgroup");
    if !target.is_dir() {
        return;
    }
    let flags = MsFlags::MS_RDONLY | NOSUID_NODEV_NOEXEC;
    match cgroupfs {
        CgroupFs::V2 => {
            let cgroup2 = || {
                mount(
                    Some("cgroup2"),
                    &target,
                    Some("cgroup2"),
                    flags,
                    None::<&str>,
                )
            };
            // Where the host's /sys was bound (rootless, host network) its cgroup2 is
            // mounted here already, and the kernel refuses the same filesystem on the root
            // of its own mount (`EBUSY`): a read-only tmpfs in between.
            if cgroup2() == Err(nix::errno::Errno::EBUSY)
                && mount(
                    Some("tmpfs"),
                    &target,
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY | NOSUID_NODEV_NOEXEC,
                    Some("size=0,mode=755"),
                )
                .is_ok()
            {
                let _ = cgroup2();
            }
        }
        CgroupFs::V1 { hierarchies } => {
            let data = Some("mode=755,size=64k");
            if mount(
                Some("tmpfs"),
                &target,
                Some("tmpfs"),
                NOSUID_NODEV_NOEXEC,
                data,
            )
            .is_err()
            {
                return;
            }
            for hierarchy in hierarchies {
                let dir = target.join(&hierarchy.name);
                if fs::create_dir(&dir).is_err() {
                    continue;
                }
                // `release_agent` may only be set from the initial cgroup namespace
                // (CVE-2022-0492), and the sandbox has no business with it.
                let options: Vec<&str> = hierarchy
                    .options
                    .split(',')
                    .filter(|option| !option.starts_with("release_agent="))
                    .collect();
                let mounted = mount(
                    Some("cgroup"),
                    &dir,
                    Some("cgroup"),
                    flags,
                    Some(options.join(",").as_str()),
                );
                if mounted.is_err() {
                    let _ = fs::remove_dir(&dir);
                }
            }
            // A bind remount changes the mount's flags only: a user namespace's tmpfs
            // refuses a filesystem remount that names its options again.
            let readonly = mount(
                None::<&str>,
                &target,
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags,
                None::<&str>,
            );
            if readonly.is_err() {
                // Never leave a writable tmpfs behind: without it, the read-only sysfs
                // directory shows.
                let _ = umount2(&target, MntFlags::MNT_DETACH);
            }
        }
    }
}
