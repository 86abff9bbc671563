//! Mounts as data turned into mount(2) calls, and mount points resolved and created inside
//! a root without ever following a symlink out of it.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{MsFlags, mount};
use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

use crate::spec::Mount;

/// A failed mount(2), with what was being mounted where.
#[derive(Debug, thiserror::Error)]
#[error("failed to mount {fstype} {origin} on {target}")]
pub(crate) struct MountError {
    pub fstype: String,
    pub origin: String,
    pub target: PathBuf,
    #[source]
    pub errno: nix::Error,
}

/// mount(8)-style options split into flags and filesystem data.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct MountPlan {
    pub bind: bool,
    pub flags: MsFlags,
    /// Applied by a separate mount(2) call, as the kernel requires.
    pub propagation: MsFlags,
    pub data: String,
}

pub(crate) fn plan(fstype: &str, options: &[String]) -> MountPlan {
    let mut plan = MountPlan {
        bind: fstype == "bind",
        flags: MsFlags::empty(),
        propagation: MsFlags::empty(),
        data: String::new(),
    };
    let mut data: Vec<&str> = Vec::new();
    for option in options {
        let (set, clear) = match option.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "bind" => {
                plan.bind = true;
                continue;
            }
            "rbind" => {
                plan.bind = true;
                (MsFlags::MS_REC, MsFlags::empty())
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                plan.propagation = match option.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                if option.starts_with('r') {
                    plan.propagation |= MsFlags::MS_REC;
                }
                continue;
            }
            "defaults" => continue,
            other => {
                data.push(other);
                continue;
            }
        };
        plan.flags = (plan.flags | set) & !clear;
    }
    plan.data = data.join(",");
    plan
}

/// Performs `mount` at `target` (its own `target` field is not looked at).
///
/// A bind mount with flags such as `ro` takes two calls: the kernel ignores them on the
/// bind itself and applies them only on a remount.
pub(crate) fn mount_at(spec: &Mount, target: &Path) -> Result<(), MountError> {
    let plan = plan(&spec.fstype, &spec.options);
    let error = |errno| MountError {
        fstype: spec.fstype.clone(),
        origin: spec.source.display().to_string(),
        target: target.to_owned(),
        errno,
    };
    if plan.bind {
        let recursive = plan.flags & MsFlags::MS_REC;
        mount(
            Some(&spec.source),
            target,
            None::<&str>,
            MsFlags::MS_BIND | recursive,
            None::<&str>,
        )
        .map_err(error)?;
        let extra = plan.flags & !MsFlags::MS_REC;
        if !extra.is_empty() {
            let explicit_rw = spec.options.iter().any(|option| option == "rw");
            mount(
                None::<&str>,
                target,
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | extra | kept_flags(target, explicit_rw),
                None::<&str>,
            )
            .map_err(error)?;
        }
    } else if let Some((dir, data)) = shortened_overlay_data(&spec.fstype, &plan.data) {
        // Too long for one page: name the directories relative to their common parent
        // and mount from there (the kernel resolves them against the caller's cwd). Every
        // caller runs with a cwd of its own: the sandbox's helper and init are single
        // threads, and host mounts run in a thread that unshared CLONE_FS.
        let here = fs::File::open(".").map_err(|e| error(io_errno(&e)))?;
        nix::unistd::chdir(&dir).map_err(error)?;
        let mounted = mount(
            Some(&spec.source),
            target,
            Some(spec.fstype.as_str()),
            plan.flags,
            Some(data.as_str()),
        );
        nix::unistd::fchdir(std::os::fd::AsRawFd::as_raw_fd(&here)).map_err(error)?;
        mounted.map_err(error)?;
    } else {
        let data = (!plan.data.is_empty()).then_some(plan.data.as_str());
        mount(
            Some(&spec.source),
            target,
            Some(spec.fstype.as_str()),
            plan.flags,
            data,
        )
        .map_err(error)?;
    }
    if !plan.propagation.is_empty() {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            plan.propagation,
            None::<&str>,
        )
        .map_err(error)?;
    }
    Ok(())
}

/// The flags the bind mount at `target` has from its source, which a remount keeps: a
/// remount sets a mount's flags anew, and in a user namespace (rootless) the flags the
/// source's owner gave it (`nosuid`, `nodev`, `noexec`, `ro`, the atime ones) are locked:
/// leaving one out fails with `EPERM`. `ro` is kept unless `rw` was asked for.
fn kept_flags(target: &Path, explicit_rw: bool) -> MsFlags {
    use nix::sys::statvfs::{FsFlags, statvfs};
    let Ok(stat) = statvfs(target) else {
        return MsFlags::empty();
    };
    let current = stat.flags();
    let mut kept = MsFlags::empty();
    for (have, flag) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        // ST_RELATIME (4096) by value: nix names it for glibc only.
        (FsFlags::from_bits_retain(4096), MsFlags::MS_RELATIME),
    ] {
        if current.contains(have) {
            kept |= flag;
        }
    }
    if current.contains(FsFlags::ST_RDONLY) && !explicit_rw {
        kept |= MsFlags::MS_RDONLY;
    }
    kept
}

/// The most the kernel reads of mount(2)'s data: one page, with its terminating NUL.
const MAX_MOUNT_DATA: usize = 4095;

/// For an overlay whose options do not fit in a page (a stack of ~100 layers or more):
/// the common parent directory of its directories, and the options with each directory
/// named relative to it. `None` when the options fit, or when even that does not help.
fn shortened_overlay_data(fstype: &str, data: &str) -> Option<(PathBuf, String)> {
    if fstype != "overlay" || data.len() <= MAX_MOUNT_DATA {
        return None;
    }
    let mut paths: Vec<&Path> = Vec::new();
    for option in data.split(',') {
        match option.split_once('=') {
            Some(("lowerdir", list)) => paths.extend(list.split(':').map(Path::new)),
            Some(("upperdir" | "workdir", path)) => paths.push(Path::new(path)),
            _ => {}
        }
    }
    if paths.iter().any(|p| !p.is_absolute()) {
        return None;
    }
    let mut common = paths.first()?.parent()?.to_path_buf();
    while !paths.iter().all(|p| p.starts_with(&common)) {
        common = common.parent()?.to_path_buf();
    }
    let relative = |path: &str| -> String {
        Path::new(path)
            .strip_prefix(&common)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| path.to_owned())
    };
    let shortened: Vec<String> = data
        .split(',')
        .map(|option| match option.split_once('=') {
            Some(("lowerdir", list)) => format!(
                "lowerdir={}",
                list.split(':').map(relative).collect::<Vec<_>>().join(":")
            ),
            Some((key @ ("upperdir" | "workdir"), path)) => format!("{key}={}", relative(path)),
            _ => option.to_owned(),
        })
        .collect();
    let shortened = shortened.join(",");
    (shortened.len() <= MAX_MOUNT_DATA).then_some((common, shortened))
}

fn io_errno(err: &io::Error) -> nix::errno::Errno {
    nix::errno::Errno::from_raw(err.raw_os_error().unwrap_or(libc::EIO))
}

/// Resolves `path` inside `root` as if `root` were `/`: `..` stops at the root, and
/// symlinks (absolute or relative) are followed within it. Returns the resolved path
/// relative to `root`; components that do not exist are kept as they are.
pub(crate) fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    const MAX_LINKS: u32 = 255;
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, path);
    let mut resolved = PathBuf::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        let full = root.join(&candidate);
        match fs::symlink_metadata(&full) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = fs::read_link(&full)?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                push_components(&mut pending, &target);
            }
            Ok(_) => resolved = candidate,
            Err(err) if err.kind() == io::ErrorKind::NotFound => resolved = candidate,
            Err(err) => return Err(err),
        }
    }
    Ok(resolved)
}

/// Opens `path` inside `root` as if `root` were `/`, with openat2(2): `..` and symlinks
/// stay inside the root (`RESOLVE_IN_ROOT`), and `/proc` magic links such as
/// `/proc/self/fd/N`, which lead wherever the descriptor is, are refused with `ELOOP`
/// (`RESOLVE_NO_MAGICLINKS`; the way out of runc's CVE-2024-21626). On kernels without
/// openat2 (< 5.6), the path is resolved with [`resolve_in_root`], which reads magic
/// links as plain text and so also stays inside.
pub(crate) fn open_in_root(root: &Path, path: &Path, flags: i32) -> io::Result<fs::File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;
    let root_dir = fs::File::open(root)?;
    let relative = path.strip_prefix("/").unwrap_or(path);
    let relative = if relative.as_os_str().is_empty() {
        Path::new(".")
    } else {
        relative
    };
    let name = std::ffi::CString::new(relative.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open_how is plain data; all-zero is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 reads the NUL-terminated name and `how`, both valid for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root_dir.as_raw_fd(),
            name.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd >= 0 {
        // SAFETY: a fresh descriptor nothing else owns.
        return Ok(unsafe { fs::File::from_raw_fd(fd as i32) });
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ENOSYS) {
        return Err(err);
    }
    let resolved = resolve_in_root(root, path)?;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags | libc::O_NOFOLLOW)
        .open(root.join(resolved))
}

/// Pushes the components of `path` so that the first one is popped first.
fn push_components(stack: &mut Vec<OsString>, path: &Path) {
    let start = stack.len();
    for component in path.components() {
        match component {
            Component::Normal(part) => stack.push(part.to_owned()),
            Component::ParentDir => stack.push("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    stack[start..].reverse();
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MountPointKind {
    Dir,
    File,
}

/// A mount point inside a root: where to mount, and what had to be created for it.
#[derive(Debug)]
pub(crate) struct MountPoint {
    /// Host path of the mount point (under `root`).
    pub path: PathBuf,
    /// The same path as the sandbox sees it (absolute, from the sandbox's `/`).
    pub sandbox_path: PathBuf,
    /// What did not exist and was created, parents first.
    pub created: Vec<Stub>,
}

/// A file or directory created only to be mounted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stub {
    /// As the sandbox sees it.
    pub path: PathBuf,
    /// Access and modification times of the existing parent before the stub was created,
    /// to put back when the stub is removed (the first stub of a chain only).
    pub parent_times: Option<(TimeSpec, TimeSpec)>,
}

impl Stub {
    /// Removes the stub if it is still an empty directory or an empty file, and puts the
    /// parent's times back. `host` is where `self.path` is now.
    pub(crate) fn remove(&self, host: &Path) {
        let Ok(meta) = fs::symlink_metadata(host) else {
            return;
        };
        let removed = if meta.is_dir() {
            // Fails, as it should, when something was put in it.
            fs::remove_dir(host).is_ok()
        } else {
            meta.is_file() && meta.len() == 0 && fs::remove_file(host).is_ok()
        };
        if let (true, Some((atime, mtime)), Some(parent)) =
            (removed, &self.parent_times, host.parent())
        {
            let _ = utimensat(None, parent, atime, mtime, UtimensatFlags::NoFollowSymlink);
        }
    }
}

/// Resolves `path` inside `root` and creates what is missing of it: directories, and for
/// `MountPointKind::File` an empty file as the last component.
pub(crate) fn ensure_mount_point(
    root: &Path,
    path: &Path,
    kind: MountPointKind,
) -> io::Result<MountPoint> {
    let relative = resolve_in_root(root, path)?;
    let mut host = root.to_path_buf();
    let mut sandbox = PathBuf::from("/");
    let mut created = Vec::new();
    let count = relative.components().count();
    for (index, component) in relative.components().enumerate() {
        host.push(component);
        sandbox.push(component);
        let last = index + 1 == count;
        match fs::symlink_metadata(&host) {
            Ok(meta) if !last && !meta.is_dir() => {
                return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
            }
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let parent_times = if created.is_empty() {
                    let parent = host.parent().unwrap_or(root);
                    let meta = fs::symlink_metadata(parent)?;
                    Some((
                        TimeSpec::new(meta.atime(), meta.atime_nsec()),
                        TimeSpec::new(meta.mtime(), meta.mtime_nsec()),
                    ))
                } else {
                    None
                };
                if last && kind == MountPointKind::File {
                    fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o644)
                        .open(&host)?;
                } else {
                    fs::DirBuilder::new().mode(0o755).create(&host)?;
                }
                created.push(Stub {
                    path: sandbox.clone(),
                    parent_times,
                });
            }
            Err(err) => return Err(err),
        }
    }
    Ok(MountPoint {
        path: host,
        sandbox_path: sandbox,
        created,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn options(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plans_overlay_options_as_data() {
        let plan = plan(
            "overlay",
            &options(&["lowerdir=/a:/b", "upperdir=/u", "workdir=/w", "nosuid"]),
        );
        assert!(!plan.bind);
        assert_eq!(plan.flags, MsFlags::MS_NOSUID);
        assert_eq!(plan.data, "lowerdir=/a:/b,upperdir=/u,workdir=/w");
        assert!(plan.propagation.is_empty());
    }

    #[test]
    fn long_overlay_options_are_named_from_their_common_parent() {
        let lowers: Vec<String> = (0..200)
            .map(|n| format!("/var/lib/rbuild/snapshots/{n}/fs"))
            .collect();
        let data = format!(
            "lowerdir={},upperdir=/var/lib/rbuild/snapshots/900/fs,workdir=/var/lib/rbuild/snapshots/900/work",
            lowers.join(":")
        );
        assert!(data.len() > MAX_MOUNT_DATA);
        let (dir, short) = shortened_overlay_data("overlay", &data).unwrap();
        assert_eq!(dir, Path::new("/var/lib/rbuild/snapshots"));
        assert!(short.starts_with("lowerdir=0/fs:1/fs:2/fs:"), "{short}");
        assert!(
            short.ends_with(",upperdir=900/fs,workdir=900/work"),
            "{short}"
        );
        // Short options, and other filesystems, are left alone.
        assert_eq!(shortened_overlay_data("overlay", "lowerdir=/a:/b"), None);
        assert_eq!(shortened_overlay_data("tmpfs", &data), None);
    }

    #[test]
    fn plans_binds_and_propagation() {
        let plan = plan("none", &options(&["rbind", "ro", "rprivate"]));
        assert!(plan.bind);
        assert_eq!(plan.flags, MsFlags::MS_REC | MsFlags::MS_RDONLY);
        assert_eq!(plan.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        let plan = super::plan("bind", &options(&["ro", "rw", "slave"]));
        assert!(plan.bind);
        assert!(plan.flags.is_empty());
        assert_eq!(plan.propagation, MsFlags::MS_SLAVE);
        let plan = super::plan(
            "tmpfs",
            &options(&["size=64m", "mode=1777", "nodev", "defaults"]),
        );
        assert_eq!(plan.flags, MsFlags::MS_NODEV);
        assert_eq!(plan.data, "size=64m,mode=1777");
    }

    #[test]
    fn resolves_symlinks_inside_the_root() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        symlink("/usr/lib", root.join("lib")).unwrap();
        symlink("../../../../etc", root.join("usr/escape")).unwrap();
        symlink("/", root.join("usr/lib/up")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        let resolve = |path: &str| resolve_in_root(root, Path::new(path)).unwrap();
        assert_eq!(resolve("/lib/x"), PathBuf::from("usr/lib/x"));
        assert_eq!(resolve("/usr/escape/passwd"), PathBuf::from("etc/passwd"));
        assert_eq!(resolve("/../../lib/up/lib"), PathBuf::from("usr/lib"));
        assert_eq!(resolve("relative/./a/../b"), PathBuf::from("relative/b"));
        assert_eq!(resolve("/"), PathBuf::new());
        let err = resolve_in_root(root, Path::new("/loop1")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn opens_inside_the_root_and_refuses_magic_links() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/passwd"), "inside\n").unwrap();
        fs::write(temp.path().join("secret"), "outside\n").unwrap();
        symlink("../../../secret", root.join("etc/up")).unwrap();
        symlink("/etc/passwd", root.join("etc/absolute")).unwrap();
        fs::write(root.join("secret"), "root's own\n").unwrap();
        let read = |path: &str| {
            let mut text = String::new();
            use std::io::Read;
            open_in_root(&root, Path::new(path), libc::O_RDONLY).map(|mut file| {
                file.read_to_string(&mut text).unwrap();
                text
            })
        };
        assert_eq!(read("/etc/passwd").unwrap(), "inside\n");
        assert_eq!(read("/etc/absolute").unwrap(), "inside\n");
        // `..` stops at the root: the link reaches the root's own `secret`.
        assert_eq!(read("/etc/up").unwrap(), "root's own\n");
        assert_eq!(read("/../../secret").unwrap(), "root's own\n");

        // A magic link (here the host's /proc, as a leaked descriptor would be) is refused.
        let held = fs::File::open(temp.path()).unwrap();
        use std::os::fd::AsRawFd;
        let magic = format!("/proc/self/fd/{}", held.as_raw_fd());
        let err = open_in_root(Path::new("/"), Path::new(&magic), libc::O_PATH).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
        // Directories open with O_DIRECTORY; files do not.
        assert!(open_in_root(&root, Path::new("/etc"), libc::O_PATH | libc::O_DIRECTORY).is_ok());
        let err = open_in_root(
            &root,
            Path::new("/etc/passwd"),
            libc::O_PATH | libc::O_DIRECTORY,
        )
        .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR));
    }

    #[test]
    fn creates_missing_mount_points_and_records_them() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path();
        fs::create_dir(root.join("etc")).unwrap();
        symlink("/etc", root.join("config")).unwrap();
        let point =
            ensure_mount_point(root, Path::new("/config/a/b"), MountPointKind::Dir).unwrap();
        assert_eq!(point.path, root.join("etc/a/b"));
        assert_eq!(point.sandbox_path, PathBuf::from("/etc/a/b"));
        let paths: Vec<_> = point.created.iter().map(|stub| stub.path.clone()).collect();
        assert_eq!(
            paths,
            vec![PathBuf::from("/etc/a"), PathBuf::from("/etc/a/b")]
        );
        assert!(point.created[0].parent_times.is_some());
        assert!(point.created[1].parent_times.is_none());
        assert!(root.join("etc/a/b").is_dir());

        // Put the stubs back the way they were, the parent's times included.
        fs::write(root.join("etc/a/b/kept"), "").unwrap();
        for stub in point.created.iter().rev() {
            stub.remove(&root.join(stub.path.strip_prefix("/").unwrap()));
        }
        assert!(root.join("etc/a/b/kept").exists());
        fs::remove_file(root.join("etc/a/b/kept")).unwrap();
        fs::remove_dir_all(root.join("etc/a")).unwrap();
        let etc_mtime = |root: &Path| fs::metadata(root.join("etc")).unwrap().modified().unwrap();
        let before = etc_mtime(root);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let point = ensure_mount_point(root, Path::new("/etc/a/b"), MountPointKind::Dir).unwrap();
        assert_ne!(etc_mtime(root), before);
        for stub in point.created.iter().rev() {
            stub.remove(&root.join(stub.path.strip_prefix("/").unwrap()));
        }
        assert!(!root.join("etc/a").exists());
        assert_eq!(etc_mtime(root), before);

        let point =
            ensure_mount_point(root, Path::new("/etc/hosts"), MountPointKind::File).unwrap();
        assert_eq!(point.created.len(), 1);
        assert_eq!(point.created[0].path, PathBuf::from("/etc/hosts"));
        assert!(root.join("etc/hosts").is_file());
        let again =
            ensure_mount_point(root, Path::new("/etc/hosts"), MountPointKind::File).unwrap();
        assert!(again.created.is_empty());

        let err =
            ensure_mount_point(root, Path::new("/etc/hosts/x"), MountPointKind::Dir).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR));
    }
}
