//! The sandbox's filesystem: root and caller mounts, `/proc`, `/dev`, `/sys` (masked and
//! read-only paths, a read-only cgroupfs), the network's `/etc` files, then pivot_root; and
//! the undoing of the mount points it had to create.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::unistd::{chdir, pivot_root, symlinkat};

use super::{SetupError, masks};
use crate::cgroup::CgroupFs;
use crate::mount::{
    MountError, MountPoint, MountPointKind, Stub, bind_or_remount, create_in, ensure_mount_point,
    fd_path, fd_stat, filesystem_magic, mount_at, mount_onto, open_beneath, open_path, plan,
    procfs_ready, resolve_in_root,
};
use crate::spec::SandboxSpec;
use crate::state::{HOSTNAME_FILE, HOSTS_FILE, RESOLV_CONF_FILE};

/// What setup changed in the root that must be undone after the command exits, so that a
/// RUN over a bare root leaves no empty `/proc`, `/dev`, `/sys` or mount-point stubs in its
/// layer (BuildKit removes them too).
#[derive(Debug, Default)]
pub(super) struct Undo {
    /// Where the sandbox's `/` is: the rootfs dir before pivot_root, `/` after.
    root: PathBuf,
    /// Mount targets in the root, in mount order, as sandbox paths.
    mounts: Vec<PathBuf>,
    /// Files and dirs created as mount points, parents first.
    stubs: Vec<Stub>,
    readonly: bool,
}

impl Undo {
    pub(super) fn has_stubs(&self) -> bool {
        !self.stubs.is_empty()
    }

    /// Unmounts what covers the stubs and removes the stubs that are still empty. Every
    /// other process of the sandbox must be gone: a busy mount would only be detached,
    /// which still frees its mount point.
    pub(super) fn remove_stubs(&self) {
        if self.stubs.is_empty() {
            return;
        }
        if self.readonly {
            let _ = mount(
                None::<&str>,
                &self.root,
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND,
                None::<&str>,
            );
        }
        // Everything is reached from a descriptor of the root without following symlinks:
        // a mount point in a directory shared with another sandbox (a cache mount) may be
        // a symlink to a host path by now.
        let Ok(root) = open_path(&self.root) else {
            return;
        };
        // umount2 takes a path: the descriptor's magic link, which needs a /proc. The
        // sandbox's own goes last (before pivot_root the host's serves).
        let proc = Path::new("/proc");
        let targets = self.mounts.iter().rev();
        for target in targets
            .clone()
            .filter(|target| *target != proc)
            .chain(targets.filter(|target| *target == proc))
        {
            let relative = target.strip_prefix("/").unwrap_or(target);
            if let Ok(mounted) = open_beneath(root.as_fd(), relative) {
                let _ = umount2(&fd_path(&mounted), MntFlags::MNT_DETACH);
            }
        }
        for stub in self.stubs.iter().rev() {
            stub.remove_beneath(root.as_fd());
        }
    }
}

/// Builds the sandbox's filesystem under `rootfs` and pivots into it. Returns a handle of
/// the sandbox's procfs, checked to be procfs, for the writes the command makes to its own
/// `/proc/<pid>` before exec (never a path a sandboxed process could have swapped).
///
/// Every mount point inside the root is held by descriptor from the moment it is found
/// (see [`crate::mount::MountPoint`]); the kernel filesystems mounted here are reached by
/// descriptor afterwards, each checked to be what rbuild mounted.
pub(super) fn setup(
    state_dir: &Path,
    rootfs: &Path,
    spec: &SandboxSpec,
    cgroupfs: &CgroupFs,
    undo: &mut Undo,
) -> Result<OwnedFd, SetupError> {
    undo.root = rootfs.to_owned();
    // A mount namespace of its own, detached from the host's propagation: nothing mounted
    // here shows on the host, and it all goes away with the namespace.
    // The cgroup namespace too, now that init is in the sandbox's cgroup: its root is the
    // sandbox's own cgroup, as the read-only cgroupfs will show.
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWCGROUP)
        .map_err(|source| SetupError::Unshare { source })?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|source| SetupError::PrivateMounts { source })?;
    procfs_ready().map_err(|source| SetupError::Verify {
        what: "the host's /proc".into(),
        source,
    })?;
    // rbuild's own devices, opened before anything of the root is looked at: a mask's
    // source is the null device itself, never a path inside the root (CVE-2025-31133).
    let devices = HostDevices::open(spec.privileged)?;

    // Every filesystem of the sandbox is `nodev` but the device nodes bound into `/dev` and
    // devpts: CAP_MKNOD (in Docker's default set) creates nodes, and nothing opens them.
    // Docker gets the same from the devices cgroup; `nodev` works alike on v1 and v2.
    // The root's mount point is rbuild's own state directory, not a path in the root.
    mount_at(&without_devices(&spec.root), rootfs)?;

    for spec_mount in &spec.mounts {
        let bind = plan(&spec_mount.fstype, &spec_mount.options).bind;
        let kind = if bind && fs::metadata(&spec_mount.source).is_ok_and(|meta| !meta.is_dir()) {
            MountPointKind::File
        } else {
            MountPointKind::Dir
        };
        let target = mount_point(rootfs, &spec_mount.target, kind, undo)?;
        mount_onto(&without_devices(spec_mount), &target)?;
        undo.mounts.push(target.sandbox_path);
    }

    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let proc = special(
        rootfs,
        "/proc",
        "proc",
        "proc",
        nosuid_nodev_noexec,
        None,
        undo,
    );
    let proc = match proc {
        Ok(proc) => proc,
        // In a user namespace the kernel mounts a new proc only where the proc it already
        // has is fully visible; a container's masked paths (Kubernetes' default
        // `procMount`) hide parts of it. The container's own /proc is bound instead: the
        // sandbox keeps its pid namespace but lists the container's processes.
        Err(SetupError::Mount(MountError {
            errno: Errno::EPERM,
            ..
        })) => bind_host(rootfs, "/proc", undo)?,
        Err(err) => return Err(err),
    };
    expect_filesystem(&proc, libc::PROC_SUPER_MAGIC as u64, "/proc")?;
    let dev = special(
        rootfs,
        "/dev",
        "tmpfs",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
        undo,
    )?;
    expect_filesystem(&dev, libc::TMPFS_MAGIC as u64, "/dev")?;
    populate_dev(
        dev.as_fd(),
        &devices,
        spec.shm_size.unwrap_or(crate::spec::DEFAULT_SHM_SIZE),
    )?;
    let sys = special(
        rootfs,
        "/sys",
        "sysfs",
        "sysfs",
        if spec.privileged {
            nosuid_nodev_noexec
        } else {
            nosuid_nodev_noexec | MsFlags::MS_RDONLY
        },
        None,
        undo,
    );
    let sys = match sys {
        Ok(sys) => sys,
        // In a user namespace sysfs can only be mounted with a network namespace of the
        // namespace's own, and RUN steps share the host's network by default: the host's
        // /sys is bound instead, read-only all the way down (as rootless podman does).
        Err(SetupError::Mount(MountError {
            errno: Errno::EPERM,
            ..
        })) => bind_host(rootfs, "/sys", undo)?,
        Err(err) => return Err(err),
    };
    expect_filesystem(&sys, libc::SYSFS_MAGIC as u64, "/sys")?;

    masks::mount_cgroupfs(sys.as_fd(), cgroupfs, spec.privileged);
    if !spec.privileged {
        masks::apply(proc.as_fd(), sys.as_fd(), devices.null.as_fd())?;
    }
    bind_network_files(state_dir, rootfs, undo)?;

    // pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves
    // the new root alone, with no directory needed to park the old one in.
    chdir(rootfs).map_err(|source| SetupError::PivotRoot { source })?;
    pivot_root(".", ".").map_err(|source| SetupError::PivotRoot { source })?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|source| SetupError::PivotRoot { source })?;
    chdir("/").map_err(|source| SetupError::PivotRoot { source })?;
    undo.root = PathBuf::from("/");

    if spec.readonly_root {
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            // A bind remount sets the mount's flags anew: `nodev` must be said again.
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NODEV,
            None::<&str>,
        )
        .map_err(|source| SetupError::ReadonlyRoot { source })?;
        undo.readonly = true;
    }
    Ok(proc)
}

/// Fails unless `fd` is on the filesystem with magic number `magic`.
fn expect_filesystem(fd: &OwnedFd, magic: u64, what: &str) -> Result<(), SetupError> {
    let found = filesystem_magic(fd.as_fd()).map_err(|source| SetupError::Verify {
        what: what.into(),
        source,
    })?;
    if found != magic {
        return Err(SetupError::Verify {
            what: what.into(),
            source: io::Error::other(format!(
                "the sandbox's {what} is not the filesystem rbuild mounted there \
                 (magic {found:#x}, expected {magic:#x})"
            )),
        });
    }
    Ok(())
}

/// The host's device nodes bound into the sandbox's `/dev`, opened by rbuild from the
/// host's `/dev` and checked to be the character devices they should be.
pub(super) struct HostDevices {
    pub null: OwnedFd,
    nodes: Vec<(String, OwnedFd)>,
}

/// The nodes of `/dev`, with their device numbers (major, minor).
const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

impl HostDevices {
    /// The nodes of [`DEVICES`]; `privileged`: every other device node of the host's
    /// `/dev` too (not in its sub-directories), but its terminals.
    fn open(privileged: bool) -> Result<HostDevices, SetupError> {
        let mut nodes = Vec::new();
        let mut null = None;
        for (name, major, minor) in DEVICES {
            let path = Path::new("/dev").join(name);
            let fd = match open_path(&path) {
                Ok(fd) => fd,
                // A host without it (a minimal container) gives the sandbox none either;
                // /dev/null is required.
                Err(err) if err.kind() == io::ErrorKind::NotFound && name != "null" => continue,
                Err(source) => {
                    return Err(SetupError::Verify {
                        what: path.display().to_string(),
                        source,
                    });
                }
            };
            let stat = fd_stat(fd.as_fd()).map_err(|source| SetupError::Verify {
                what: path.display().to_string(),
                source,
            })?;
            let is_char = stat.st_mode & libc::S_IFMT == libc::S_IFCHR;
            if !is_char || libc::major(stat.st_rdev) != major || libc::minor(stat.st_rdev) != minor
            {
                return Err(SetupError::Verify {
                    what: path.display().to_string(),
                    source: io::Error::other(format!(
                        "{} is not the character device {major}:{minor}",
                        path.display()
                    )),
                });
            }
            if name == "null" {
                null = Some(fd.try_clone().map_err(|source| SetupError::Verify {
                    what: path.display().to_string(),
                    source,
                })?);
            }
            nodes.push((name.to_owned(), fd));
        }
        if privileged {
            nodes.extend(all_host_devices(&nodes));
        }
        let null = null.expect("/dev/null is required above");
        Ok(HostDevices { null, nodes })
    }
}

/// The host's character and block devices directly in `/dev` that `known` lacks, opened
/// without following symlinks, for a privileged sandbox. Left out: the host's terminals
/// and console (the sandbox has its own), and whatever cannot be opened.
fn all_host_devices(known: &[(String, OwnedFd)]) -> Vec<(String, OwnedFd)> {
    let Ok(entries) = fs::read_dir("/dev") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if known.iter().any(|(have, _)| *have == name)
            || name == "console"
            || name == "ptmx"
            || name.starts_with("tty")
            || name.starts_with("pts")
        {
            continue;
        }
        // Symlinks (`/dev/stdin`, `/dev/core`) are not devices of the host's own.
        if !entry.file_type().is_ok_and(|kind| {
            use std::os::unix::fs::FileTypeExt;
            kind.is_char_device() || kind.is_block_device()
        }) {
            continue;
        }
        let Ok(fd) = open_path(&entry.path()) else {
            continue;
        };
        let is_device = fd_stat(fd.as_fd()).is_ok_and(|stat| {
            let kind = stat.st_mode & libc::S_IFMT;
            kind == libc::S_IFCHR || kind == libc::S_IFBLK
        });
        if is_device {
            found.push((name, fd));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// `mount` with `nodev` added (the caller may not take it away).
fn without_devices(mount: &crate::spec::Mount) -> crate::spec::Mount {
    let mut mount = mount.clone();
    mount.options.retain(|option| option != "dev");
    mount.options.push("nodev".into());
    mount
}

/// The mount point of a kernel filesystem (`/proc`, `/dev`, `/sys`): it must be where the
/// sandbox looks for it. An image whose `/dev` is a symlink (into `/proc/sys`, say) would
/// have rbuild mount its `/dev` and bind its device nodes somewhere else; runc refuses
/// such images too.
fn kernel_mount_point(
    rootfs: &Path,
    target: &str,
    undo: &mut Undo,
) -> Result<MountPoint, SetupError> {
    let point = mount_point(rootfs, Path::new(target), MountPointKind::Dir, undo)?;
    if point.sandbox_path != Path::new(target) {
        return Err(SetupError::MountPoint {
            path: target.into(),
            source: io::Error::other(format!(
                "the image's {target} leads to {} (a symlink); rbuild mounts the \
                 sandbox's own {target} there only on a directory",
                point.sandbox_path.display()
            )),
        });
    }
    Ok(point)
}

fn mount_point(
    rootfs: &Path,
    target: &Path,
    kind: MountPointKind,
    undo: &mut Undo,
) -> Result<MountPoint, SetupError> {
    let point =
        ensure_mount_point(rootfs, target, kind).map_err(|source| SetupError::MountPoint {
            path: target.to_owned(),
            source,
        })?;
    undo.stubs.extend(point.created.iter().cloned());
    Ok(point)
}

/// Mounts a kernel filesystem at `target` in the root, onto the mount point's descriptor;
/// returns a descriptor of the new mount's root.
fn special(
    rootfs: &Path,
    target: &str,
    fstype: &str,
    source: &str,
    flags: MsFlags,
    data: Option<&str>,
    undo: &mut Undo,
) -> Result<OwnedFd, SetupError> {
    let point = kernel_mount_point(rootfs, target, undo)?;
    let error = |errno| MountError {
        fstype: fstype.to_owned(),
        origin: source.to_owned(),
        target: target.into(),
        errno,
    };
    mount(Some(source), &point.target(), Some(fstype), flags, data).map_err(error)?;
    undo.mounts.push(point.sandbox_path.clone());
    reopen(&point)
}

/// What is mounted on `point` now.
fn reopen(point: &MountPoint) -> Result<OwnedFd, SetupError> {
    point.reopen().map_err(|source| SetupError::MountPoint {
        path: point.sandbox_path.clone(),
        source,
    })
}

/// The host's `path` (`/sys`, `/proc`), bound recursively with every mount below it, made
/// `nosuid`, `nodev` and `noexec`, and for `/sys` read-only (`mount_setattr`, Linux 5.12;
/// before, the top mount only). `/proc` gets its read-only and masked paths afterwards, as
/// a proc of its own would. Returns a descriptor of the bound root.
fn bind_host(rootfs: &Path, path: &str, undo: &mut Undo) -> Result<OwnedFd, SetupError> {
    let point = kernel_mount_point(rootfs, path, undo)?;
    let error = |errno| MountError {
        fstype: "bind".into(),
        origin: path.into(),
        target: path.into(),
        errno,
    };
    let mut flags = MsFlags::MS_REC | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if path == "/sys" {
        flags |= MsFlags::MS_RDONLY;
    }
    // Recorded first: a failed remount still leaves the bind to undo.
    undo.mounts.push(point.sandbox_path.clone());
    bind_or_remount(Path::new(path), point.fd.as_fd(), flags, || point.reopen()).map_err(error)?;
    reopen(&point)
}

/// Device nodes bound from the host (no mknod: the `/dev` tmpfs is `nodev`, and each bind is
/// a mount of its own that allows its one device), a private devpts, shm, mqueue and the
/// usual symlinks; all made through the descriptor of the fresh tmpfs. `/dev/shm` is
/// `shm_size` bytes.
fn populate_dev(
    dev: BorrowedFd<'_>,
    devices: &HostDevices,
    shm_size: u64,
) -> Result<(), SetupError> {
    let create_error = |name: &str| {
        let path = Path::new("/dev").join(name);
        move |source| SetupError::CreateDevice { path, source }
    };
    let entry = |name: &str, kind: MountPointKind| -> Result<OwnedFd, SetupError> {
        create_in(dev, name, kind).map_err(create_error(name))
    };
    for (name, source) in &devices.nodes {
        let target = entry(name, MountPointKind::File)?;
        mount(
            Some(&fd_path(source)),
            &fd_path(&target),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|errno| MountError {
            fstype: "bind".into(),
            origin: Path::new("/dev").join(name).display().to_string(),
            target: Path::new("/dev").join(name),
            errno,
        })?;
    }
    let kernel_fs = |name: &str, fstype: &str, flags: MsFlags, data: &str| {
        let target = entry(name, MountPointKind::Dir)?;
        mount(
            Some(fstype),
            &fd_path(&target),
            Some(fstype),
            flags,
            Some(data),
        )
        .map_err(|errno| {
            SetupError::Mount(MountError {
                fstype: fstype.into(),
                origin: fstype.into(),
                target: Path::new("/dev").join(name),
                errno,
            })
        })
    };
    // Terminals belong to group 5 (`tty`), as with Docker, where the user namespace has it.
    let tty_group = crate::userns::IdMap::of_current_process().is_ok_and(|map| map.maps_gid(5));
    kernel_fs(
        "pts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        if tty_group {
            "newinstance,ptmxmode=0666,mode=0620,gid=5"
        } else {
            "newinstance,ptmxmode=0666,mode=0620"
        },
    )?;
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    kernel_fs(
        "shm",
        "tmpfs",
        nosuid_nodev_noexec,
        &format!("mode=1777,size={shm_size}"),
    )?;
    kernel_fs("mqueue", "mqueue", nosuid_nodev_noexec, "")?;
    for (name, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlinkat(target, Some(dev.as_raw_fd()), name)
            .map_err(|errno| create_error(name)(io::Error::from(errno)))?;
    }
    Ok(())
}

/// The sandbox's `/etc/resolv.conf`, `/etc/hosts` and `/etc/hostname` that rbuild wrote
/// into the state dir (copies of the host's, or made for a bridge), bound read-only, when
/// the root has an `/etc` (a root without one, such as `FROM scratch`, gets none).
fn bind_network_files(state_dir: &Path, rootfs: &Path, undo: &mut Undo) -> Result<(), SetupError> {
    let etc =
        resolve_in_root(rootfs, Path::new("/etc")).map_err(|source| SetupError::MountPoint {
            path: "/etc".into(),
            source,
        })?;
    if !rootfs.join(etc).is_dir() {
        return Ok(());
    }
    for name in [RESOLV_CONF_FILE, HOSTS_FILE, HOSTNAME_FILE] {
        let host = Path::new("/etc").join(name);
        let copy = state_dir.join(name);
        if !copy.is_file() {
            continue;
        }
        let target = mount_point(rootfs, &host, MountPointKind::File, undo)?;
        let bind = crate::spec::Mount {
            fstype: "bind".into(),
            source: copy,
            target: host,
            options: vec![
                "ro".into(),
                "nosuid".into(),
                "nodev".into(),
                "noexec".into(),
            ],
        };
        mount_onto(&bind, &target)?;
        undo.mounts.push(target.sandbox_path);
    }
    Ok(())
}
