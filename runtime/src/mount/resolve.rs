//! Paths inside a root, resolved as if the root were `/`.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

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
}
