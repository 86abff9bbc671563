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
        let candidate = join(root, &resolved).join(&component);
        if is_last && !follow_last {
            resolved.push(component);
            break;
        }
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("too many levels of symbolic links in `{path}`"),
                    ));
                }
                let target = fs::read_link(&candidate)?;
                let target = target.to_string_lossy();
                if target.starts_with('/') {
                    resolved.clear();
                }
                for part in components(&target).into_iter().rev() {
                    pending.push(part);
                }
            }
            _ => resolved.push(component),
        }
    }
    Ok(join(root, &resolved))
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
