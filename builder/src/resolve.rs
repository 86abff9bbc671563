//! Path resolution inside a root directory: symlinks are followed as if the root were `/`,
//! so no path a Dockerfile or a context names can lead outside the root.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed before giving up, as Linux does (`ELOOP`).
const MAX_SYMLINKS: usize = 40;

/// Resolves `path` (absolute or relative, taken from `root`) inside `root`, following every
/// symlink, including the last component when `follow_last` is set. Missing components are
/// fine: the result is where the path *would* be. The result always starts with `root`.
pub(crate) fn resolve_in_root(root: &Path, path: &str, follow_last: bool) -> io::Result<PathBuf> {
    let resolved = walk(path, follow_last, |components| {
        let candidate = join(root, components);
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => fs::read_link(&candidate).map(Some),
            _ => Ok(None),
        }
    })
    .map_err(|err| match err.raw_os_error() {
        Some(libc::ELOOP) => io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("too many levels of symbolic links in `{path}`"),
        ),
        _ => err,
    })?;
    Ok(join(root, &resolved))
}

/// The components `path` resolves to as if its root were `/`: `..` stops at the root, and
/// a symlink (absolute or relative) is replaced by its target. `link_at` says whether the
/// components so far name a symlink, and its target: the caller decides what a path is (a
/// directory on the host, or the merged view of an overlay's lower dirs). The last
/// component is followed only with `follow_last`. More than [`MAX_SYMLINKS`] links is
/// `ELOOP`.
pub(crate) fn walk(
    path: &str,
    follow_last: bool,
    mut link_at: impl FnMut(&[String]) -> io::Result<Option<PathBuf>>,
) -> io::Result<Vec<String>> {
    let mut resolved: Vec<String> = Vec::new();
    let mut pending: Vec<String> = components(path).into_iter().rev().collect();
    let mut links = 0;
    while let Some(component) = pending.pop() {
        match component.as_str() {
            "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let is_last = pending.is_empty();
        resolved.push(component);
        if is_last && !follow_last {
            break;
        }
        if let Some(target) = link_at(&resolved)? {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            resolved.pop();
            let target = target.to_string_lossy();
            if target.starts_with('/') {
                resolved.clear();
            }
            pending.extend(components(&target).into_iter().rev());
        }
    }
    Ok(resolved)
}

fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_owned()),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => None,
        })
        .collect()
}

fn join(root: &Path, components: &[String]) -> PathBuf {
    let mut path = root.to_path_buf();
    for component in components {
        path.push(component);
    }
    path
}

/// `path` relative to `root`, for messages: `/etc/passwd` rather than the host path.
pub(crate) fn display_in_root(root: &Path, path: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn symlinks_cannot_leave_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        symlink("/", root.join("a/up")).unwrap();
        symlink("../../..", root.join("a/b/dots")).unwrap();
        symlink("/a/b", root.join("abs")).unwrap();
        symlink("loop", root.join("loop")).unwrap();

        assert_eq!(
            resolve_in_root(root, "../../etc", true).unwrap(),
            root.join("etc")
        );
        assert_eq!(
            resolve_in_root(root, "a/up/etc", true).unwrap(),
            root.join("etc")
        );
        assert_eq!(
            resolve_in_root(root, "a/b/dots/x", true).unwrap(),
            root.join("x")
        );
        assert_eq!(
            resolve_in_root(root, "/abs/c", true).unwrap(),
            root.join("a/b/c")
        );
        assert_eq!(
            resolve_in_root(root, "abs", false).unwrap(),
            root.join("abs")
        );
        assert!(resolve_in_root(root, "loop", true).is_err());
    }
}
