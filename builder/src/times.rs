//! File times written the same every time: a git checkout's (the commit's time) and an
//! export's under `SOURCE_DATE_EPOCH` (clamped), set on every entry of a tree.

use std::io;
use std::path::{Path, PathBuf};

use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

/// What to do with an entry's times.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Times {
    /// Set them to this time.
    Set(i64),
    /// Lower them to this time where they are later; a missing entry is left alone.
    Clamp(i64),
}

/// Applies `times` to the entry at `at.join(path)` for each path of the tree `tree`
/// (`tree` itself when `with_root`), symlinks themselves rather than their targets.
/// Directories come after their contents: setting a child's times does not change its
/// directory's, but creating it did.
pub(crate) fn apply_to_tree(
    tree: &Path,
    at: &Path,
    times: Times,
    with_root: bool,
) -> io::Result<()> {
    let mut pending = vec![PathBuf::new()];
    let mut dirs = Vec::new();
    while let Some(relative) = pending.pop() {
        let from = tree.join(&relative);
        if std::fs::symlink_metadata(&from)?.is_dir() {
            for entry in std::fs::read_dir(&from)? {
                pending.push(relative.join(entry?.file_name()));
            }
            if with_root || !relative.as_os_str().is_empty() {
                dirs.push(relative);
            }
        } else {
            apply(&at.join(&relative), times)?;
        }
    }
    for relative in dirs.iter().rev() {
        apply(&at.join(relative), times)?;
    }
    Ok(())
}

fn apply(path: &Path, times: Times) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let time = match times {
        Times::Set(time) => time,
        Times::Clamp(epoch) => match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.mtime() > epoch => epoch,
            Ok(_) => return Ok(()),
            // Left out by the copy (a socket, say): nothing to clamp.
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err),
        },
    };
    let spec = TimeSpec::new(time, 0);
    utimensat(None, path, &spec, &spec, UtimensatFlags::NoFollowSymlink).map_err(io::Error::from)
}
