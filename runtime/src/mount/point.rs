//! Mount points inside a root, created and held by descriptor.
//!
//! A path inside a root that other sandboxes share parts of (a cache mount, a bind of the
//! same directory) can change between the moment rbuild looks it up and the moment it
//! mounts on it or creates a file there: a racing sandbox swaps a directory for a symlink
//! to a host path, and the mount or the file lands outside the root (runc's CVE-2025-52881
//! and its kin). So a mount point is looked up by text once ([`resolve_in_root`], symlinks
//! followed inside the root), then walked one component at a time from a descriptor of
//! the root, never following a symlink (one that appeared since is refused), creating what
//! is missing relative to its parent's descriptor; and mounts go onto the descriptor of
//! what was found, not onto a path.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::sys::time::TimeSpec;

use super::resolve::resolve_in_root;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MountPointKind {
    Dir,
    File,
}

/// A mount point inside a root: held open, with what had to be created for it.
#[derive(Debug)]
pub(crate) struct MountPoint {
    /// `O_PATH` descriptor of the mount point itself.
    pub fd: OwnedFd,
    /// Its parent directory and name, to look up what is mounted there afterwards (a
    /// descriptor keeps naming the directory under a mount). `None` for the root itself.
    parent: Option<(OwnedFd, CString)>,
    /// Host path of the mount point (under `root`), for messages.
    pub path: PathBuf,
    /// The same path as the sandbox sees it (absolute, from the sandbox's `/`).
    pub sandbox_path: PathBuf,
    /// What did not exist and was created, parents first.
    pub created: Vec<Stub>,
}

impl MountPoint {
    /// What mount(2) is given as the target: the magic link to [`MountPoint::fd`], which
    /// leads to exactly the inode that was checked, whatever its path has become.
    pub(crate) fn target(&self) -> PathBuf {
        fd_path(&self.fd)
    }

    /// The root of what is mounted on the mount point now (the mount point itself when
    /// nothing is), looked up from its parent without following a symlink.
    pub(crate) fn reopen(&self) -> io::Result<OwnedFd> {
        match &self.parent {
            Some((parent, name)) => open_component(parent.as_fd(), name),
            None => open_path(&self.path),
        }
    }
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
    /// parent's times back. The stub is reached from `root`, a descriptor of the
    /// sandbox's root, one component at a time without following a symlink, and removed
    /// relative to its parent's descriptor: a racing sandbox that swapped a directory on
    /// the way (one of a shared cache mount) for a symlink to a host path gets nothing
    /// removed or touched there.
    pub(crate) fn remove_beneath(&self, root: BorrowedFd<'_>) {
        let relative = self.path.strip_prefix("/").unwrap_or(&self.path);
        let (Some(parent_path), Some(name)) = (relative.parent(), relative.file_name()) else {
            return;
        };
        let Ok(parent) = open_beneath(root, parent_path) else {
            return;
        };
        let Ok(name) = cstring(name.as_bytes()) else {
            return;
        };
        let Ok(stat) = open_component(parent.as_fd(), &name).and_then(|fd| fd_stat(fd.as_fd()))
        else {
            return;
        };
        let flags = if is_kind(&stat, libc::S_IFDIR) {
            // Fails, as it should, when something was put in it.
            libc::AT_REMOVEDIR
        } else if is_kind(&stat, libc::S_IFREG) && stat.st_size == 0 {
            0
        } else {
            return;
        };
        // SAFETY: unlinkat reads the NUL-terminated name for the call. Whatever `name` is
        // by now, it is an entry of `parent`, which is inside the root.
        let removed = unsafe { libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), flags) } == 0;
        if let (true, Some((atime, mtime))) = (removed, &self.parent_times) {
            // A readable descriptor of the same directory: futimens needs one, and /proc
            // (for the magic link of the O_PATH one) may be unmounted by now.
            if let Ok(dir) = openat(
                parent.as_raw_fd(),
                c".",
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
            ) {
                let _ = nix::sys::stat::futimens(dir.as_raw_fd(), atime, mtime);
            }
        }
    }
}

/// `/proc/self/fd/N` for `fd`.
pub(crate) fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Checks that this process's `/proc` is procfs, so that [`fd_path`] names the descriptor
/// and not whatever a file at that path would be.
pub(crate) fn procfs_ready() -> io::Result<()> {
    let proc = open_path(Path::new("/proc/self/fd"))?;
    if filesystem_magic(proc.as_fd())? != libc::PROC_SUPER_MAGIC as u64 {
        return Err(io::Error::other(
            "/proc is not procfs: rbuild mounts through /proc/self/fd",
        ));
    }
    Ok(())
}

/// The magic number of the filesystem `fd` is on (`statfs(2)`'s `f_type`).
pub(crate) fn filesystem_magic(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: statfs is plain data; fstatfs fills it for the call.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is a valid descriptor for the call; `stat` is writable.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // The type's width differs between C libraries.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    Ok(stat.f_type as u64)
}

/// `stat(2)` of a descriptor.
pub(crate) fn fd_stat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: stat is plain data; fstat fills it for the call.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is a valid descriptor for the call; `stat` is writable.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat)
}

/// Whether `stat` is of the file type `kind` (`S_IFDIR`, `S_IFREG`, …).
pub(crate) fn is_kind(stat: &libc::stat, kind: libc::mode_t) -> bool {
    stat.st_mode & libc::S_IFMT == kind
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `openat(2)` of `name` in `dir` (`AT_FDCWD` for a path), close-on-exec, as an owned
/// descriptor.
fn openat(dir: RawFd, name: &CStr, flags: libc::c_int, mode: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: openat reads the NUL-terminated name for the call.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An `O_PATH` descriptor of a trusted path (rbuild's own directories, the host's `/dev`
/// and `/proc` before the root is entered).
pub(crate) fn open_path(path: &Path) -> io::Result<OwnedFd> {
    let name = cstring(path.as_os_str().as_bytes())?;
    openat(libc::AT_FDCWD, &name, libc::O_PATH, 0)
}

/// Opens the entry `name` of `dir` (`O_PATH`), refusing a symlink with `ELOOP`.
fn open_component(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    let fd = openat(dir.as_raw_fd(), name, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
    // O_PATH with O_NOFOLLOW opens a symlink itself rather than failing.
    if is_kind(&fd_stat(fd.as_fd())?, libc::S_IFLNK) {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    Ok(fd)
}

/// Opens `path` (relative, without `..`) beneath `dir` one component at a time, following
/// no symlink: for paths inside a filesystem rbuild just mounted and holds (`/proc`,
/// `/sys`, `/dev`), where nothing needs a symlink.
pub(crate) fn open_beneath(dir: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    let mut current: Option<OwnedFd> = None;
    for component in path.components() {
        let Component::Normal(name) = component else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        let name = cstring(name.as_bytes())?;
        let parent = current.as_ref().map_or(dir, |fd| fd.as_fd());
        current = Some(open_component(parent, &name)?);
    }
    match current {
        Some(fd) => Ok(fd),
        None => dir.try_clone_to_owned(),
    }
}

/// The error for a component that became a symlink, or disappeared, after the path was
/// resolved.
fn changed(sandbox_path: &Path, how: &str) -> io::Error {
    io::Error::other(format!(
        "{} {how} while the sandbox was set up (a directory it shares with another \
         sandbox changed under it); refused",
        sandbox_path.display()
    ))
}

/// [`changed`] for the errors of a walk that mean so: ELOOP (a symlink where a directory
/// was) and ENOENT (removed since it was found or created).
fn when_changed(sandbox_path: &Path) -> impl Fn(io::Error) -> io::Error + '_ {
    move |err| match err.raw_os_error() {
        Some(libc::ELOOP) => changed(sandbox_path, "became a symlink"),
        Some(libc::ENOENT) => changed(sandbox_path, "disappeared"),
        _ => err,
    }
}

/// Resolves `path` inside `root` and creates what is missing of it: directories, and for
/// `MountPointKind::File` an empty file as the last component; returns it held open.
pub(crate) fn ensure_mount_point(
    root: &Path,
    path: &Path,
    kind: MountPointKind,
) -> io::Result<MountPoint> {
    let relative = resolve_in_root(root, path)?;
    open_resolved(root, &relative, kind)
}

/// [`ensure_mount_point`] for a path already resolved inside `root` (no symlinks, no
/// `..`): any symlink found on the way now was put there since, and is refused.
pub(crate) fn open_resolved(
    root: &Path,
    relative: &Path,
    kind: MountPointKind,
) -> io::Result<MountPoint> {
    let mut current = open_path(root)?;
    let mut parent: Option<(OwnedFd, CString)> = None;
    let mut host = root.to_path_buf();
    let mut sandbox = PathBuf::from("/");
    let mut created = Vec::new();
    let count = relative.components().count();
    for (index, component) in relative.components().enumerate() {
        let Component::Normal(part) = component else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        let name = cstring(part.as_bytes())?;
        host.push(part);
        sandbox.push(part);
        let last = index + 1 == count;
        let dir = current;
        let next = match open_component(dir.as_fd(), &name) {
            Ok(fd) => {
                if !last && !is_kind(&fd_stat(fd.as_fd())?, libc::S_IFDIR) {
                    return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
                }
                fd
            }
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
                let parent_times = if created.is_empty() {
                    let stat = fd_stat(dir.as_fd())?;
                    Some((
                        TimeSpec::new(stat.st_atime, stat.st_atime_nsec),
                        TimeSpec::new(stat.st_mtime, stat.st_mtime_nsec),
                    ))
                } else {
                    None
                };
                create_at(dir.as_fd(), &name, last && kind == MountPointKind::File)
                    .map_err(when_changed(&sandbox))?;
                created.push(Stub {
                    path: sandbox.clone(),
                    parent_times,
                });
                open_component(dir.as_fd(), &name).map_err(when_changed(&sandbox))?
            }
            Err(err) if err.raw_os_error() == Some(libc::ELOOP) => {
                return Err(changed(&sandbox, "became a symlink"));
            }
            Err(err) => return Err(err),
        };
        parent = Some((dir, name));
        current = next;
    }
    Ok(MountPoint {
        fd: current,
        parent,
        path: host,
        sandbox_path: sandbox,
        created,
    })
}

/// Creates `name` (an empty file or a directory) in `dir`, a directory rbuild made, and
/// returns it held open.
pub(crate) fn create_in(
    dir: BorrowedFd<'_>,
    name: &str,
    kind: MountPointKind,
) -> io::Result<OwnedFd> {
    let name = cstring(name.as_bytes())?;
    create_at(dir, &name, kind == MountPointKind::File)?;
    open_component(dir, &name)
}

/// Creates the empty file or directory `name` in `dir`; one that appeared meanwhile is
/// left for the caller's open to judge.
fn create_at(dir: BorrowedFd<'_>, name: &CStr, file: bool) -> io::Result<()> {
    let created = if file {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        openat(dir.as_raw_fd(), name, flags, 0o644).map(drop)
    } else {
        // SAFETY: mkdirat reads the NUL-terminated name for the call.
        match unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o755) } {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    };
    match created {
        Err(err) if err.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;

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
        // The descriptor is the directory that was created.
        assert_eq!(
            fs::metadata(point.target()).unwrap().ino(),
            fs::metadata(root.join("etc/a/b")).unwrap().ino()
        );

        // Put the stubs back the way they were, the parent's times included.
        fs::write(root.join("etc/a/b/kept"), "").unwrap();
        for stub in point.created.iter().rev() {
            stub.remove_beneath(open_path(root).unwrap().as_fd());
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
            stub.remove_beneath(open_path(root).unwrap().as_fd());
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

    use std::os::unix::fs::MetadataExt;

    /// The race of CVE-2025-52881, made deterministic: a directory of the resolved path is
    /// swapped for a symlink to a host directory after the lookup and before the mount
    /// point is created. Nothing may be created outside the root.
    #[test]
    fn a_component_swapped_for_a_symlink_after_the_lookup_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("root");
        let outside = temp.path().join("host");
        fs::create_dir_all(root.join("cache/d")).unwrap();
        fs::create_dir(&outside).unwrap();
        let relative = resolve_in_root(&root, Path::new("/cache/d/x/y")).unwrap();
        assert_eq!(relative, PathBuf::from("cache/d/x/y"));

        // The racing sandbox swaps `d` for an absolute symlink to the host directory.
        fs::remove_dir(root.join("cache/d")).unwrap();
        symlink(&outside, root.join("cache/d")).unwrap();
        for kind in [MountPointKind::Dir, MountPointKind::File] {
            let err = open_resolved(&root, &relative, kind).unwrap_err();
            assert!(
                err.to_string()
                    .contains("/cache/d became a symlink while the sandbox was set up"),
                "{err}"
            );
        }
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "created outside"
        );

        // A created last component swapped at once is refused too.
        fs::remove_file(root.join("cache/d")).unwrap();
        fs::create_dir(root.join("cache/d")).unwrap();
        symlink(&outside, root.join("cache/d/x")).unwrap();
        let err = open_resolved(&root, &relative, MountPointKind::Dir).unwrap_err();
        assert!(
            err.to_string().contains("/cache/d/x became a symlink"),
            "{err}"
        );
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "created outside"
        );
    }

    /// The same race at the end of a step: a stub's parent swapped for a symlink to a host
    /// directory holding an empty directory and an empty file of the stub's name. Removing
    /// the stub must not remove (or touch) them.
    #[test]
    fn stubs_are_removed_only_inside_the_root() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("root");
        let outside = temp.path().join("host");
        fs::create_dir_all(root.join("cache/d")).unwrap();
        let point =
            ensure_mount_point(&root, Path::new("/cache/d/x/f"), MountPointKind::File).unwrap();
        assert_eq!(point.created.len(), 2);
        drop(point.fd);

        fs::remove_dir_all(root.join("cache/d")).unwrap();
        fs::create_dir_all(outside.join("x")).unwrap();
        fs::write(outside.join("x/f"), "").unwrap();
        symlink(&outside, root.join("cache/d")).unwrap();
        let root_fd = open_path(&root).unwrap();
        for stub in point.created.iter().rev() {
            stub.remove_beneath(root_fd.as_fd());
        }
        assert!(outside.join("x/f").is_file(), "a host file was removed");
        assert!(outside.join("x").is_dir());

        // Inside the root, the same stubs go.
        fs::remove_file(root.join("cache/d")).unwrap();
        fs::create_dir_all(root.join("cache/d/x")).unwrap();
        fs::write(root.join("cache/d/x/f"), "").unwrap();
        for stub in point.created.iter().rev() {
            stub.remove_beneath(root_fd.as_fd());
        }
        assert!(!root.join("cache/d/x").exists());
    }

    #[test]
    fn paths_beneath_a_descriptor_follow_no_symlink() {
        let temp = tempfile::tempdir().unwrap();
        fs::create_dir_all(temp.path().join("a/b")).unwrap();
        symlink("/etc", temp.path().join("a/link")).unwrap();
        let dir = open_path(temp.path()).unwrap();
        let found = open_beneath(dir.as_fd(), Path::new("a/b")).unwrap();
        assert_eq!(
            fs::metadata(fd_path(&found)).unwrap().ino(),
            fs::metadata(temp.path().join("a/b")).unwrap().ino()
        );
        let err = open_beneath(dir.as_fd(), Path::new("a/link/passwd")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
        let err = open_beneath(dir.as_fd(), Path::new("a/../a")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn procfs_is_checked() {
        procfs_ready().unwrap();
        let proc = open_path(Path::new("/proc")).unwrap();
        assert_eq!(
            filesystem_magic(proc.as_fd()).unwrap(),
            libc::PROC_SUPER_MAGIC as u64
        );
    }
}
