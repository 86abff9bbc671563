//! Snapshots without overlayfs (the copy snapshotter): a stack of snapshot directories
//! copied into one directory as overlayfs would show it merged, and the changes made to that
//! copy found again afterwards and written as an overlay-format diff, so that nothing else
//! in the store (layer tars, lower stacks) can tell the difference.
//!
//! Used where overlayfs cannot be mounted: in a user namespace before Linux 5.11 (no
//! `userxattr`), or with the store on a filesystem overlayfs refuses as an upper directory
//! (an overlay, as a container's own root filesystem is; tmpfs before Linux 6.6). It costs a
//! copy of the whole filesystem per step, as buildah's `vfs` driver does.
//!
//! Finding the changes: every entry's inode, birth time (where the filesystem keeps one),
//! kind and ctime are recorded after the copy, and rbuild waits until the kernel's coarse
//! clock has passed the newest ctime, so that any later change of content or metadata gives
//! a later ctime, which no process can set back. An entry whose ctime moved is written to
//! the diff; a new inode (or birth time) is a replaced entry, and a replaced directory is
//! opaque; an entry gone is a whiteout; the directories above a change come along, as
//! overlayfs copies them up.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, StatxFlags};

use crate::overlay::{is_opaque, is_whiteout, make_whiteout as whiteout, set_opaque};

/// A copy of a stack of snapshots and what each of its entries was when it was made.
#[derive(Debug)]
pub struct Materialized {
    /// The merged copy; a sandbox's root, or the target of COPY.
    pub root: PathBuf,
    stamps: HashMap<PathBuf, Stamp>,
    /// Each directory's entries when the copy was made (paths relative to `root`).
    children: HashMap<PathBuf, Vec<OsString>>,
}

/// What tells an entry changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    /// `S_IFMT` bits.
    kind: u32,
    ctime: (i64, i64),
    btime: Option<(i64, u32)>,
}

/// Copies the merged view of `lowers` (top first, overlay format: 0/0 character devices
/// are whiteouts, `opaque_xattr` marks opaque directories) into the empty directory
/// `target`, hard links within a layer kept (as the merged view of an overlay shows them).
pub(crate) fn merge(lowers: &[PathBuf], target: &Path, opaque_xattr: &str) -> io::Result<()> {
    merge_layers(lowers, target, opaque_xattr, true)
}

fn merge_layers(
    lowers: &[PathBuf],
    target: &Path,
    opaque_xattr: &str,
    keep_links: bool,
) -> io::Result<()> {
    let mut copier = Copier {
        keep_links,
        ..Copier::default()
    };
    for layer in lowers.iter().rev() {
        apply(layer, target, opaque_xattr, &mut copier)?;
        // Hard links are kept within a layer: a later layer holds its own copies.
        copier.hardlinks.clear();
    }
    copier.finish()
}

/// `merge` into `root`, then the stamps of what it holds. Hard links of the layers become
/// separate files: overlayfs (without `index`) copies up only the name that is written to,
/// and the change must be found at that name alone.
pub(crate) fn materialize(
    lowers: &[PathBuf],
    root: &Path,
    opaque_xattr: &str,
) -> io::Result<Materialized> {
    merge_layers(lowers, root, opaque_xattr, false)?;
    let mut materialized = Materialized {
        root: root.to_owned(),
        stamps: HashMap::new(),
        children: HashMap::new(),
    };
    let mut newest = (0, 0);
    record(root, Path::new(""), &mut materialized, &mut newest)?;
    wait_past(newest);
    Ok(materialized)
}

/// Writes what changed in `materialized.root` since it was made into `upper` (empty) as an
/// overlay-format diff, then removes the copy.
pub(crate) fn capture(
    materialized: Materialized,
    upper: &Path,
    opaque_xattr: &str,
) -> io::Result<()> {
    let mut capture = Capture {
        materialized: &materialized,
        upper,
        opaque_xattr,
        copier: Copier {
            keep_links: true,
            ..Copier::default()
        },
    };
    capture.dir(Path::new(""))?;
    capture.copier.finish()?;
    fs::remove_dir_all(&materialized.root)
}

/// Applies one snapshot directory `layer` onto `target`.
fn apply(layer: &Path, target: &Path, opaque_xattr: &str, copier: &mut Copier) -> io::Result<()> {
    for entry in fs::read_dir(layer)? {
        let entry = entry?;
        let source = entry.path();
        let dest = target.join(entry.file_name());
        let meta = fs::symlink_metadata(&source)?;
        if is_whiteout(&meta) {
            remove_any(&dest)?;
            continue;
        }
        if meta.is_dir() {
            let existing = fs::symlink_metadata(&dest).ok();
            let merge_below =
                existing.is_some_and(|m| m.is_dir()) && !is_opaque(&source, opaque_xattr);
            if !merge_below {
                remove_any(&dest)?;
                fs::create_dir(&dest)?;
            }
            apply(&source, &dest, opaque_xattr, copier)?;
            // The upper directory's attributes are the merged view's.
            copier.dir_attributes(&source, &meta, &dest)?;
            continue;
        }
        remove_any(&dest)?;
        copier.entry(&source, &meta, &dest)?;
    }
    Ok(())
}

fn record(
    root: &Path,
    rel: &Path,
    into: &mut Materialized,
    newest: &mut (i64, i64),
) -> io::Result<()> {
    let mut names = Vec::new();
    for entry in fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let child = rel.join(entry.file_name());
        let path = root.join(&child);
        let stamp = stamp(&path)?;
        *newest = (*newest).max(stamp.ctime);
        if stamp.kind == libc::S_IFDIR {
            record(root, &child, into, newest)?;
        }
        into.stamps.insert(child, stamp);
        names.push(entry.file_name());
    }
    into.children.insert(rel.to_owned(), names);
    Ok(())
}

fn stamp(path: &Path) -> io::Result<Stamp> {
    let statx = rustix::fs::statx(
        rustix::fs::CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS | StatxFlags::BTIME,
    )?;
    let btime = (statx.stx_mask & StatxFlags::BTIME.bits() != 0)
        .then_some((statx.stx_btime.tv_sec, statx.stx_btime.tv_nsec));
    Ok(Stamp {
        ino: statx.stx_ino,
        kind: u32::from(statx.stx_mode) & libc::S_IFMT,
        ctime: (statx.stx_ctime.tv_sec, i64::from(statx.stx_ctime.tv_nsec)),
        btime,
    })
}

/// Waits until the coarse realtime clock (the one ctime comes from) is past `ctime`.
fn wait_past(ctime: (i64, i64)) {
    loop {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
        if (now.tv_sec, now.tv_nsec) > ctime {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

struct Capture<'a> {
    materialized: &'a Materialized,
    upper: &'a Path,
    opaque_xattr: &'a str,
    copier: Copier,
}

impl Capture<'_> {
    /// Writes the changes below `rel`; returns whether there were any.
    fn dir(&mut self, rel: &Path) -> io::Result<bool> {
        let root = &self.materialized.root;
        let mut changed = false;
        let mut present = HashSet::new();
        let mut names: Vec<OsString> = fs::read_dir(root.join(rel))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            let child = rel.join(&name);
            present.insert(name);
            let path = root.join(&child);
            let meta = fs::symlink_metadata(&path)?;
            let now = stamp(&path)?;
            match self.materialized.stamps.get(&child) {
                None => {
                    self.ensure_dir(rel)?;
                    self.copy_tree(&path, &meta, &self.upper.join(&child))?;
                    changed = true;
                }
                Some(before) if replaced(before, &now) => {
                    self.ensure_dir(rel)?;
                    let dest = self.upper.join(&child);
                    self.copy_tree(&path, &meta, &dest)?;
                    if meta.is_dir() {
                        set_opaque(&dest, self.opaque_xattr)?;
                    }
                    changed = true;
                }
                Some(before) if meta.is_dir() => {
                    let own = before.ctime != now.ctime;
                    if own {
                        self.ensure_dir(&child)?;
                    }
                    changed |= self.dir(&child)? | own;
                }
                Some(before) if before.ctime != now.ctime => {
                    self.ensure_dir(rel)?;
                    self.copier.entry(&path, &meta, &self.upper.join(&child))?;
                    changed = true;
                }
                Some(_) => {}
            }
        }
        if let Some(before) = self.materialized.children.get(rel) {
            for name in before.iter().filter(|name| !present.contains(*name)) {
                self.ensure_dir(rel)?;
                whiteout(&self.upper.join(rel).join(name))?;
                changed = true;
            }
        }
        Ok(changed)
    }

    /// The upper directory `rel` and its parents, with the merged copy's attributes.
    fn ensure_dir(&mut self, rel: &Path) -> io::Result<()> {
        let dest = self.upper.join(rel);
        if rel.as_os_str().is_empty() || fs::symlink_metadata(&dest).is_ok() {
            return Ok(());
        }
        if let Some(parent) = rel.parent() {
            self.ensure_dir(parent)?;
        }
        let source = self.materialized.root.join(rel);
        let meta = fs::symlink_metadata(&source)?;
        fs::create_dir(&dest)?;
        self.copier.dir_attributes(&source, &meta, &dest)
    }

    fn copy_tree(&mut self, source: &Path, meta: &Metadata, dest: &Path) -> io::Result<()> {
        if !meta.is_dir() {
            return self.copier.entry(source, meta, dest);
        }
        fs::create_dir(dest)?;
        for entry in fs::read_dir(source)? {
            let entry = entry?;
            let path = entry.path();
            let meta = fs::symlink_metadata(&path)?;
            self.copy_tree(&path, &meta, &dest.join(entry.file_name()))?;
        }
        self.copier.dir_attributes(source, meta, dest)
    }
}

/// A new inode (or, where the filesystem reuses inode numbers at once, a new birth time), or
/// another kind of file: the entry was removed and made again.
fn replaced(before: &Stamp, now: &Stamp) -> bool {
    before.ino != now.ino
        || before.kind != now.kind
        || matches!((before.btime, now.btime), (Some(a), Some(b)) if a != b)
}

/// Copies entries with their owner, mode, times and xattrs (overlay's own left out), hard
/// links kept; directory times are set last, deepest first, once nothing more is made in
/// them.
#[derive(Default)]
struct Copier {
    /// Whether files with several links are copied as hard links of one copy.
    keep_links: bool,
    /// (device, inode) of a source file with several links → its first copy.
    hardlinks: HashMap<(u64, u64), PathBuf>,
    dir_times: Vec<(PathBuf, Metadata)>,
}

impl Copier {
    fn entry(&mut self, source: &Path, meta: &Metadata, dest: &Path) -> io::Result<()> {
        let file_type = meta.file_type();
        if file_type.is_symlink() {
            symlink(fs::read_link(source)?, dest)?;
            std::os::unix::fs::lchown(dest, Some(meta.uid()), Some(meta.gid()))?;
            copy_xattrs(source, dest, true)?;
            return set_times(dest, meta);
        }
        if file_type.is_file() {
            if self.keep_links && meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.hardlinks.get(&key) {
                    return fs::hard_link(first, dest);
                }
                self.hardlinks.insert(key, dest.to_owned());
            }
            let mut input = File::open(source)?;
            let mut output = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(dest)?;
            // copy_file_range where it can: a reflink on filesystems that share extents.
            io::copy(&mut input, &mut output)?;
            drop(output);
        } else if file_type.is_socket() {
            // A layer cannot hold a socket (the layer writer drops them too).
            return Ok(());
        } else {
            make_node_like(meta, dest)?;
        }
        // chown before chmod: chown clears setuid and setgid.
        std::os::unix::fs::lchown(dest, Some(meta.uid()), Some(meta.gid()))?;
        fs::set_permissions(dest, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        copy_xattrs(source, dest, false)?;
        set_times(dest, meta)
    }

    /// Owner, mode and xattrs now; times in `finish`.
    fn dir_attributes(&mut self, source: &Path, meta: &Metadata, dest: &Path) -> io::Result<()> {
        std::os::unix::fs::lchown(dest, Some(meta.uid()), Some(meta.gid()))?;
        fs::set_permissions(dest, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        copy_xattrs(source, dest, false)?;
        self.dir_times.push((dest.to_owned(), meta.clone()));
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        self.dir_times
            .sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
        // Later entries of one path (a directory in several layers) come later and win; a
        // directory a later layer removed is simply gone.
        for (path, meta) in &self.dir_times {
            match set_times(path, meta) {
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
        Ok(())
    }
}

fn set_times(path: &Path, meta: &Metadata) -> io::Result<()> {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    utimensat(
        None,
        path,
        &TimeSpec::new(meta.atime(), meta.atime_nsec()),
        &TimeSpec::new(meta.mtime(), meta.mtime_nsec()),
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

/// Every xattr but overlay's bookkeeping. `user.*` cannot be set on a symlink: skipped there.
fn copy_xattrs(source: &Path, dest: &Path, is_symlink: bool) -> io::Result<()> {
    for name in list_xattrs(source)? {
        let bytes = name.as_bytes();
        if bytes.starts_with(b"trusted.overlay.")
            || bytes.starts_with(b"user.overlay.")
            || (is_symlink && bytes.starts_with(b"user."))
        {
            continue;
        }
        let Some(value) = get_xattr(source, &name)? else {
            continue;
        };
        rustix::fs::lsetxattr(dest, &name, &value, rustix::fs::XattrFlags::empty())?;
    }
    Ok(())
}

fn list_xattrs(path: &Path) -> io::Result<Vec<OsString>> {
    let mut buffer = vec![0u8; 1024];
    let len = loop {
        match rustix::fs::llistxattr(path, &mut buffer[..]) {
            Ok(len) => break len,
            Err(rustix::io::Errno::RANGE) => buffer.resize(buffer.len() * 4, 0),
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(err) => return Err(err.into()),
        }
    };
    Ok(buffer[..len]
        .split(|b| *b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| OsStr::from_bytes(name).to_owned())
        .collect())
}

/// `None` when the xattr is gone or not readable here (a `trusted.*` one without the host's
/// root).
fn get_xattr(path: &Path, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
    let mut value = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(path, name, &mut value[..]) {
            Ok(len) => {
                value.truncate(len);
                return Ok(Some(value));
            }
            Err(rustix::io::Errno::RANGE) => value.resize(value.len() * 4, 0),
            Err(rustix::io::Errno::NODATA | rustix::io::Errno::PERM) => return Ok(None),
            Err(err) => return Err(err.into()),
        }
    }
}

/// A FIFO, character or block device at `dest` like the one `meta` describes (mode 0600;
/// the caller sets mode and owner after). A user namespace cannot make device nodes: the
/// error says so (`EPERM`), and callers word it.
pub fn make_node_like(meta: &Metadata, dest: &Path) -> io::Result<()> {
    let file_type = meta.file_type();
    let kind = if file_type.is_fifo() {
        libc::S_IFIFO
    } else if file_type.is_char_device() {
        libc::S_IFCHR
    } else {
        libc::S_IFBLK
    };
    nix::sys::stat::mknod(
        dest,
        nix::sys::stat::SFlag::from_bits_truncate(kind),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        meta.rdev(),
    )
    .map_err(io::Error::from)
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::tests::privileged;
    use crate::layer::{LayerOptions, write_layer};

    const OPAQUE: &str = "trusted.overlay.opaque";

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    /// Two layers in overlay format: the bottom one with files and directories, the top one
    /// deleting, replacing and making a directory opaque.
    fn layers(dir: &Path) -> Vec<PathBuf> {
        let (bottom, top) = (dir.join("bottom"), dir.join("top"));
        write(&bottom.join("a/x"), "x");
        write(&bottom.join("a/y"), "y");
        write(&bottom.join("b/old"), "old");
        write(&bottom.join("keep/deep/f"), "f");
        write(&bottom.join("link-target"), "t");
        fs::hard_link(bottom.join("link-target"), bottom.join("link")).unwrap();
        symlink("a/x", bottom.join("sym")).unwrap();
        fs::create_dir_all(top.join("a")).unwrap();
        whiteout(&top.join("a/x")).unwrap();
        write(&top.join("b/new"), "new");
        set_opaque(&top.join("b"), OPAQUE).unwrap();
        write(&top.join("c"), "c");
        vec![top, bottom]
    }

    fn tree(root: &Path) -> Vec<String> {
        fn walk(root: &Path, rel: &Path, out: &mut Vec<String>) {
            let mut names: Vec<_> = fs::read_dir(root.join(rel))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for name in names {
                let child = rel.join(&name);
                let meta = fs::symlink_metadata(root.join(&child)).unwrap();
                out.push(child.display().to_string());
                if meta.is_dir() {
                    walk(root, &child, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(root, Path::new(""), &mut out);
        out
    }

    #[test]
    fn merges_as_overlayfs_shows_it() {
        if !privileged() {
            return;
        }
        let temp = tempfile::tempdir().unwrap();
        let lowers = layers(temp.path());
        let merged = temp.path().join("merged");
        fs::create_dir(&merged).unwrap();
        merge(&lowers, &merged, OPAQUE).unwrap();
        assert_eq!(
            tree(&merged),
            [
                "a",
                "a/y",
                "b",
                "b/new",
                "c",
                "keep",
                "keep/deep",
                "keep/deep/f",
                "link",
                "link-target",
                "sym"
            ]
        );
        let (link, target) = (
            fs::metadata(merged.join("link")).unwrap(),
            fs::metadata(merged.join("link-target")).unwrap(),
        );
        assert_eq!(link.ino(), target.ino(), "hard links stay linked");
        assert_eq!(fs::read_link(merged.join("sym")).unwrap(), Path::new("a/x"));
        assert!(
            !is_opaque(&merged.join("b"), OPAQUE),
            "the merged view has no markers"
        );
    }

    /// The same changes made through a real overlay and through the copy give the same
    /// layer, byte for byte.
    #[test]
    fn captured_changes_are_the_layer_an_overlay_gives() {
        if !privileged() {
            return;
        }
        let temp = tempfile::tempdir().unwrap();
        let lowers = layers(temp.path());
        let change = |root: &Path| {
            fs::write(root.join("a/y"), "changed").unwrap();
            fs::remove_file(root.join("c")).unwrap();
            fs::remove_dir_all(root.join("b")).unwrap();
            fs::create_dir(root.join("b")).unwrap();
            fs::write(root.join("b/again"), "again").unwrap();
            fs::create_dir_all(root.join("fresh/dir")).unwrap();
            fs::write(root.join("fresh/dir/file"), "new").unwrap();
            fs::set_permissions(root.join("keep/deep"), fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::lchown(root.join("link"), Some(7), Some(8)).unwrap();
            for dir in ["", "a", "b", "fresh", "fresh/dir", "keep", "keep/deep"] {
                let time = nix::sys::time::TimeSpec::new(1_700_000_000, 0);
                nix::sys::stat::utimensat(
                    None,
                    &root.join(dir),
                    &time,
                    &time,
                    nix::sys::stat::UtimensatFlags::NoFollowSymlink,
                )
                .unwrap();
            }
        };

        // Through overlayfs, in a thread of its own mount namespace.
        let (upper, work, mounted) = (
            temp.path().join("upper"),
            temp.path().join("work"),
            temp.path().join("mnt"),
        );
        for dir in [&upper, &work, &mounted] {
            fs::create_dir(dir).unwrap();
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={},index=off,redirect_dir=nofollow,metacopy=off",
            lowers
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":"),
            upper.display(),
            work.display()
        );
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    use nix::mount::{MntFlags, MsFlags, mount, umount2};
                    nix::sched::unshare(
                        nix::sched::CloneFlags::CLONE_FS | nix::sched::CloneFlags::CLONE_NEWNS,
                    )
                    .unwrap();
                    mount(
                        None::<&str>,
                        "/",
                        None::<&str>,
                        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                        None::<&str>,
                    )
                    .unwrap();
                    mount(
                        Some("overlay"),
                        &mounted,
                        Some("overlay"),
                        MsFlags::empty(),
                        Some(options.as_str()),
                    )
                    .unwrap();
                    change(&mounted);
                    umount2(&mounted, MntFlags::empty()).unwrap();
                })
                .join()
                .unwrap();
        });

        // Through a copy.
        let root = temp.path().join("copy");
        fs::create_dir(&root).unwrap();
        let materialized = materialize(&lowers, &root, OPAQUE).unwrap();
        change(&root);
        let captured = temp.path().join("captured");
        fs::create_dir(&captured).unwrap();
        capture(materialized, &captured, OPAQUE).unwrap();
        assert!(!root.exists(), "the copy is removed");

        assert_eq!(tree(&captured), tree(&upper));
        // The files were written at different moments in the two runs: times clamped.
        let clamped = LayerOptions {
            clamp_mtime: Some(1_700_000_000),
        };
        let layer = |dir: &Path| write_layer(dir, Vec::new(), clamped).unwrap();
        let headers = |bytes: &[u8]| -> Vec<String> {
            tar::Archive::new(bytes)
                .entries()
                .unwrap()
                .map(|entry| {
                    let entry = entry.unwrap();
                    let h = entry.header();
                    format!(
                        "{} {:o} {}:{} {} {:?}",
                        entry.path().unwrap().display(),
                        h.mode().unwrap(),
                        h.uid().unwrap(),
                        h.gid().unwrap(),
                        h.mtime().unwrap(),
                        h.entry_type()
                    )
                })
                .collect()
        };
        assert_eq!(headers(&layer(&captured)), headers(&layer(&upper)));
        assert!(
            layer(&captured) == layer(&upper),
            "copy: {:?}\noverlay: {:?}",
            tree(&captured),
            tree(&upper)
        );
    }
}
