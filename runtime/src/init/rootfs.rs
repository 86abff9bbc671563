//! The sandbox's filesystem: root and caller mounts, `/proc`, `/dev`, `/sys` (masked and
//! read-only paths, a read-only cgroupfs), the network's `/etc` files, then pivot_root; and
//! the undoing of the mount points it had to create.

use std::fs;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::unistd::{chdir, pivot_root};

use super::{SetupError, masks};
use crate::cgroup::CgroupFs;
use crate::mount::{
    MountError, MountPoint, MountPointKind, Stub, ensure_mount_point, mount_at, plan,
    resolve_in_root,
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

    fn host_path(&self, sandbox_path: &Path) -> PathBuf {
        self.root
            .join(sandbox_path.strip_prefix("/").unwrap_or(sandbox_path))
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
        for target in self.mounts.iter().rev() {
            let _ = umount2(&self.host_path(target), MntFlags::MNT_DETACH);
        }
        for stub in self.stubs.iter().rev() {
            stub.remove(&self.host_path(&stub.path));
        }
    }
}

/// Builds the sandbox's filesystem under `rootfs` and pivots into it.
pub(super) fn setup(
    state_dir: &Path,
    rootfs: &Path,
    spec: &SandboxSpec,
    cgroupfs: &CgroupFs,
    undo: &mut Undo,
) -> Result<(), SetupError> {
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

    // Every filesystem of the sandbox is `nodev` but the device nodes bound into `/dev` and
    // devpts: CAP_MKNOD (in Docker's default set) creates nodes, and nothing opens them.
    // Docker gets the same from the devices cgroup; `nodev` works alike on v1 and v2.
    mount_at(&without_devices(&spec.root), rootfs)?;

    for spec_mount in &spec.mounts {
        let bind = plan(&spec_mount.fstype, &spec_mount.options).bind;
        let kind = if bind && fs::metadata(&spec_mount.source).is_ok_and(|meta| !meta.is_dir()) {
            MountPointKind::File
        } else {
            MountPointKind::Dir
        };
        let target = mount_point(rootfs, &spec_mount.target, kind, undo)?;
        mount_at(&without_devices(spec_mount), &target.path)?;
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
    match proc {
        Ok(_) => {}
        // In a user namespace the kernel mounts a new proc only where the proc it already
        // has is fully visible; a container's masked paths (Kubernetes' default
        // `procMount`) hide parts of it. The container's own /proc is bound instead: the
        // sandbox keeps its pid namespace but lists the container's processes.
        Err(SetupError::Mount(MountError {
            errno: Errno::EPERM,
            ..
        })) => bind_host(rootfs, "/proc", undo)?,
        Err(err) => return Err(err),
    }
    let dev = special(
        rootfs,
        "/dev",
        "tmpfs",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
        undo,
    )?;
    populate_dev(&dev, spec.shm_size.unwrap_or(crate::spec::DEFAULT_SHM_SIZE))?;
    let sys = special(
        rootfs,
        "/sys",
        "sysfs",
        "sysfs",
        nosuid_nodev_noexec | MsFlags::MS_RDONLY,
        None,
        undo,
    );
    match sys {
        Ok(_) => {}
        // In a user namespace sysfs can only be mounted with a network namespace of the
        // namespace's own, and RUN steps share the host's network by default: the host's
        // /sys is bound instead, read-only all the way down (as rootless podman does).
        Err(SetupError::Mount(MountError {
            errno: Errno::EPERM,
            ..
        })) => bind_host(rootfs, "/sys", undo)?,
        Err(err) => return Err(err),
    }

    masks::mount_cgroupfs(rootfs, cgroupfs);
    masks::apply(rootfs)?;
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
    Ok(())
}

/// `mount` with `nodev` added (the caller may not take it away).
fn without_devices(mount: &crate::spec::Mount) -> crate::spec::Mount {
    let mut mount = mount.clone();
    mount.options.retain(|option| option != "dev");
    mount.options.push("nodev".into());
    mount
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

/// Mounts a kernel filesystem at `target` in the root; returns the host path.
fn special(
    rootfs: &Path,
    target: &str,
    fstype: &str,
    source: &str,
    flags: MsFlags,
    data: Option<&str>,
    undo: &mut Undo,
) -> Result<PathBuf, SetupError> {
    let point = mount_point(rootfs, Path::new(target), MountPointKind::Dir, undo)?;
    mount(Some(source), &point.path, Some(fstype), flags, data).map_err(|errno| MountError {
        fstype: fstype.to_owned(),
        origin: source.to_owned(),
        target: target.into(),
        errno,
    })?;
    undo.mounts.push(point.sandbox_path);
    Ok(point.path)
}

/// The host's `path` (`/sys`, `/proc`), bound recursively with every mount below it, made
/// `nosuid`, `nodev` and `noexec`, and for `/sys` read-only (`mount_setattr`, Linux 5.12;
/// before, the top mount only). `/proc` gets its read-only and masked paths afterwards, as
/// a proc of its own would.
fn bind_host(rootfs: &Path, path: &str, undo: &mut Undo) -> Result<(), SetupError> {
    let point = mount_point(rootfs, Path::new(path), MountPointKind::Dir, undo)?;
    let error = |errno| MountError {
        fstype: "bind".into(),
        origin: path.into(),
        target: path.into(),
        errno,
    };
    mount(
        Some(path),
        &point.path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(error)?;
    undo.mounts.push(point.sandbox_path);
    let read_only = path == "/sys";
    match restrict_recursively(&point.path, read_only) {
        Err(Errno::ENOSYS) => {
            let mut flags = MsFlags::MS_REMOUNT
                | MsFlags::MS_BIND
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC;
            if read_only {
                flags |= MsFlags::MS_RDONLY;
            }
            mount(None::<&str>, &point.path, None::<&str>, flags, None::<&str>).map_err(error)?
        }
        result => result.map_err(error)?,
    }
    Ok(())
}

/// `mount_setattr(path, AT_RECURSIVE, nosuid|nodev|noexec`, and `ro` if `read_only`).
fn restrict_recursively(path: &Path, read_only: bool) -> Result<(), Errno> {
    use std::os::unix::ffi::OsStrExt;
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    const MOUNT_ATTR_NOEXEC: u64 = 0x8;
    let mut attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    if read_only {
        attr_set |= MOUNT_ATTR_RDONLY;
    }
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: mount_setattr(2) reads the NUL-terminated path and `attr` for the call only.
    let result = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

/// Device nodes bound from the host (no mknod: the `/dev` tmpfs is `nodev`, and each bind is
/// a mount of its own that allows its one device), a private devpts, shm, mqueue and the
/// usual symlinks.
fn populate_dev(dev: &Path, shm_size: u64) -> Result<(), SetupError> {
    let create_error = |path: &Path| {
        let path = path.to_owned();
        move |source| SetupError::CreateDevice { path, source }
    };
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let host = Path::new("/dev").join(name);
        if !host.exists() {
            continue;
        }
        let target = dev.join(name);
        fs::File::create(&target).map_err(create_error(&target))?;
        mount(
            Some(&host),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|errno| MountError {
            fstype: "bind".into(),
            origin: host.display().to_string(),
            target: Path::new("/dev").join(name),
            errno,
        })?;
    }
    let kernel_fs = |name: &str, fstype: &str, flags: MsFlags, data: &str| {
        let target = dev.join(name);
        fs::create_dir(&target).map_err(create_error(&target))?;
        mount(Some(fstype), &target, Some(fstype), flags, Some(data)).map_err(|errno| {
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
        let path = dev.join(name);
        symlink(target, &path).map_err(create_error(&path))?;
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
        mount_at(&bind, &target.path)?;
        undo.mounts.push(target.sandbox_path);
    }
    Ok(())
}
