//! Paths looked up in a stack of overlay lower directories (a state's snapshots) the way
//! overlayfs merges them, without mounting anything: for `RUN --mount=from=…,source=…`,
//! whose sub-directory becomes an overlay of the same sub-directory of each layer.
//!
//! Snapshots are in overlay format: a 0/0 character device is a whiteout, and a directory
//! with the `overlay.opaque` xattr hides what lower layers have below it. rbuild's overlays
//! run with `redirect_dir=nofollow`, so no directory is found anywhere but at its own path.

use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sys::time::TimeSpec;
use rbuild_store::overlay::{is_opaque_in_any_format as is_opaque, is_whiteout};

/// What a path is in the merged view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// A directory: the layers' directories that make it up, top first.
    Dir(Vec<PathBuf>),
    /// Anything else (file, device, ...; never a symlink once resolved): the top layer's.
    Other(PathBuf),
    Missing,
}

/// Resolves `path` (absolute inside the merged root) in `lowers` (top first), following
/// symlinks as if the merged root were `/`; `..` stops at the root.
pub(crate) fn lookup(lowers: &[PathBuf], path: &str) -> io::Result<Found> {
    let resolved = resolve(lowers, path)?;
    Ok(match lookup_exact(lowers, &resolved)? {
        Exact::Dir(dirs) => Found::Dir(dirs),
        Exact::Other(host, _) => Found::Other(host),
        Exact::Missing => Found::Missing,
    })
}

/// After a step: removes the directories of the upper dir `upper` that overlay only
/// copied up because the runtime created (and later removed) a mount point below them,
/// e.g. `/etc` for `/etc/hosts` or for a mount at `/etc/app/token`. A directory goes only
/// if it is empty, not opaque, and has the mode, owner and mtime it has in `lowers`; the
/// step's own changes are never touched. Best effort: what cannot be checked stays.
pub(crate) fn remove_copied_up_parents(upper: &Path, lowers: &[PathBuf], targets: &[&str]) {
    let merged: Vec<PathBuf> = std::iter::once(upper.to_owned())
        .chain(lowers.iter().cloned())
        .collect();
    for target in targets {
        let Ok(mut components) = resolve(&merged, target) else {
            continue;
        };
        // The mount point itself is the runtime's: it removes the stubs it made.
        components.pop();
        while !components.is_empty() {
            let dir = upper.join(components.join("/"));
            if fs::symlink_metadata(&dir).is_err() {
                // Not in the upper dir (a stub the runtime removed): look further up.
                components.pop();
                continue;
            }
            if !is_unchanged_copy(&dir, lowers, &components) {
                break;
            }
            // Removing it changes its parent's times: put them back, so the parent, if it
            // is a copy too, still looks unchanged.
            let parent = dir
                .parent()
                .map(|p| (p.to_owned(), fs::symlink_metadata(p)));
            if fs::remove_dir(&dir).is_err() {
                break;
            }
            if let Some((parent, Ok(meta))) = parent {
                let _ = nix::sys::stat::utimensat(
                    None,
                    &parent,
                    &TimeSpec::new(meta.atime(), meta.atime_nsec()),
                    &TimeSpec::new(meta.mtime(), meta.mtime_nsec()),
                    nix::sys::stat::UtimensatFlags::NoFollowSymlink,
                );
            }
            components.pop();
        }
    }
}

fn is_unchanged_copy(dir: &Path, lowers: &[PathBuf], components: &[String]) -> bool {
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return false;
    };
    let empty = fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none());
    if !meta.is_dir() || !empty || is_opaque(dir) {
        return false;
    }
    let Ok(Exact::Dir(below)) = lookup_exact(lowers, components) else {
        return false;
    };
    let Ok(lower) = fs::symlink_metadata(&below[0]) else {
        return false;
    };
    (
        meta.mode(),
        meta.uid(),
        meta.gid(),
        meta.mtime(),
        meta.mtime_nsec(),
    ) == (
        lower.mode(),
        lower.uid(),
        lower.gid(),
        lower.mtime(),
        lower.mtime_nsec(),
    )
}

/// `path`'s components in the merged view, symlinks resolved.
fn resolve(lowers: &[PathBuf], path: &str) -> io::Result<Vec<String>> {
    crate::resolve::walk(path, true, |components| {
        match lookup_exact(lowers, components)? {
            Exact::Other(host, meta) if meta.file_type().is_symlink() => {
                fs::read_link(&host).map(Some)
            }
            _ => Ok(None),
        }
    })
}

enum Exact {
    Dir(Vec<PathBuf>),
    Other(PathBuf, Metadata),
    Missing,
}

/// Looks `components` up without following symlinks.
fn lookup_exact(lowers: &[PathBuf], components: &[String]) -> io::Result<Exact> {
    let mut dirs: Vec<PathBuf> = lowers.to_vec();
    for (index, component) in components.iter().enumerate() {
        let last = index + 1 == components.len();
        let mut next = Vec::new();
        for dir in &dirs {
            let candidate = dir.join(component);
            let meta = match fs::symlink_metadata(&candidate) {
                Ok(meta) => meta,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            if is_whiteout(&meta) {
                break;
            }
            if meta.is_dir() {
                let opaque = is_opaque(&candidate);
                next.push(candidate);
                if opaque {
                    break;
                }
                continue;
            }
            // A non-directory hides everything below it; under a directory of a higher
            // layer it is itself hidden.
            if next.is_empty() {
                return Ok(if last {
                    Exact::Other(candidate, meta)
                } else if meta.file_type().is_symlink() {
                    // The caller resolves symlinks one component at a time; this is one
                    // of the components already resolved, so not a symlink in practice.
                    Exact::Other(candidate, meta)
                } else {
                    Exact::Missing
                });
            }
            break;
        }
        if next.is_empty() {
            return Ok(Exact::Missing);
        }
        dirs = next;
    }
    Ok(Exact::Dir(dirs))
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn whiteout(path: &Path) {
        nix::sys::stat::mknod(
            path,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
    }

    #[test]
    fn merges_directories_of_every_layer() {
        let temp = tempfile::tempdir().unwrap();
        let (top, bottom) = (temp.path().join("top"), temp.path().join("bottom"));
        fs::create_dir_all(top.join("app/src")).unwrap();
        fs::create_dir_all(bottom.join("app/src")).unwrap();
        fs::create_dir_all(bottom.join("usr/lib")).unwrap();
        fs::write(bottom.join("app/src/a.rs"), "a").unwrap();
        fs::write(top.join("app/version"), "2").unwrap();
        fs::write(bottom.join("app/version"), "1").unwrap();
        symlink("/usr/lib", top.join("lib")).unwrap();
        symlink("../../usr", bottom.join("app/up")).unwrap();
        let lowers = vec![top.clone(), bottom.clone()];

        assert_eq!(
            lookup(&lowers, "/app/src").unwrap(),
            Found::Dir(vec![top.join("app/src"), bottom.join("app/src")])
        );
        assert_eq!(
            lookup(&lowers, "app/version").unwrap(),
            Found::Other(top.join("app/version"))
        );
        assert_eq!(
            lookup(&lowers, "/lib").unwrap(),
            Found::Dir(vec![bottom.join("usr/lib")])
        );
        assert_eq!(
            lookup(&lowers, "/app/up/lib/../../../..").unwrap(),
            Found::Dir(lowers.clone())
        );
        assert_eq!(lookup(&lowers, "/nothing").unwrap(), Found::Missing);
        assert_eq!(lookup(&lowers, "/app/version/x").unwrap(), Found::Missing);
    }

    #[test]
    fn whiteouts_and_opaque_dirs_hide_lower_layers() {
        if !crate::lowers::tests::is_root() {
            eprintln!("skipped: whiteouts need root (mknod)");
            return;
        }
        let temp = tempfile::tempdir().unwrap();
        let (top, bottom) = (temp.path().join("top"), temp.path().join("bottom"));
        fs::create_dir_all(top.join("etc")).unwrap();
        fs::create_dir_all(bottom.join("etc/conf.d")).unwrap();
        fs::create_dir_all(bottom.join("gone/deep")).unwrap();
        fs::create_dir_all(top.join("opaque")).unwrap();
        fs::create_dir_all(bottom.join("opaque/old")).unwrap();
        whiteout(&top.join("gone"));
        whiteout(&top.join("etc/conf.d"));
        let name = CString::new("trusted.overlay.opaque").unwrap();
        let path = CString::new(top.join("opaque").as_os_str().as_bytes()).unwrap();
        // SAFETY: NUL-terminated strings and a one-byte value of the given length.
        let set =
            unsafe { libc::lsetxattr(path.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
        assert_eq!(set, 0);
        let lowers = vec![top.clone(), bottom.clone()];
        assert_eq!(lookup(&lowers, "/gone/deep").unwrap(), Found::Missing);
        assert_eq!(lookup(&lowers, "/etc/conf.d").unwrap(), Found::Missing);
        assert_eq!(
            lookup(&lowers, "/etc").unwrap(),
            Found::Dir(vec![top.join("etc"), bottom.join("etc")])
        );
        assert_eq!(
            lookup(&lowers, "/opaque").unwrap(),
            Found::Dir(vec![top.join("opaque")])
        );
        assert_eq!(lookup(&lowers, "/opaque/old").unwrap(), Found::Missing);
    }

    #[test]
    fn copied_up_parents_go_and_changed_ones_stay() {
        let temp = tempfile::tempdir().unwrap();
        let (upper, lower) = (temp.path().join("upper"), temp.path().join("lower"));
        fs::create_dir_all(lower.join("etc/app")).unwrap();
        fs::create_dir_all(lower.join("var")).unwrap();
        fs::create_dir_all(upper.join("var")).unwrap();
        symlink("/etc", lower.join("config")).unwrap();
        // A copy of `/etc/app` and `/etc` with the same times, as overlay's copy-up makes.
        fs::create_dir_all(upper.join("etc/app")).unwrap();
        for dir in ["etc", "etc/app"] {
            let meta = fs::metadata(lower.join(dir)).unwrap();
            let file = fs::File::open(upper.join(dir)).unwrap();
            file.set_modified(meta.modified().unwrap()).unwrap();
        }
        // `/var` was changed by the step (a new mtime), and holds a file.
        fs::write(upper.join("var/log"), "x").unwrap();
        let lowers = vec![lower.clone()];
        remove_copied_up_parents(&upper, &lowers, &["/config/app/token", "/var/x/y"]);
        assert!(!upper.join("etc").exists());
        assert!(upper.join("var/log").exists());

        // A directory whose mode the step changed stays.
        fs::create_dir_all(upper.join("etc")).unwrap();
        let meta = fs::metadata(lower.join("etc")).unwrap();
        fs::File::open(upper.join("etc"))
            .unwrap()
            .set_modified(meta.modified().unwrap())
            .unwrap();
        fs::set_permissions(upper.join("etc"), fs::Permissions::from_mode(0o700)).unwrap();
        remove_copied_up_parents(&upper, &lowers, &["/etc/hosts"]);
        assert!(upper.join("etc").exists());
    }

    pub(crate) fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }
}
