//! Writing what a COPY or ADD copies into the destination root: directories merged, files
//! replaced, owners, modes, times and hardlinks as Docker keeps them.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use super::{CopyError, CopyRequest, RemoteFile, chown_error};
use crate::owner::Owner;
use crate::resolve::display_in_root;

pub(super) struct Copier<'a> {
    req: &'a CopyRequest<'a>,
    /// (dev, ino) of multiply-linked source files → where the first copy went.
    hardlinks: HashMap<(u64, u64), PathBuf>,
    /// mtimes of copied directories, applied last (writing children changes them).
    dir_times: Vec<(PathBuf, i64, i64)>,
    /// The source operand being copied: `--exclude` patterns also match paths relative to
    /// it (`COPY --exclude=*.md docs /dst/` leaves out `docs/README.md`).
    pub(super) operand: PathBuf,
}

impl<'a> Copier<'a> {
    pub(super) fn new(req: &'a CopyRequest<'a>) -> Copier<'a> {
        Copier {
            req,
            hardlinks: HashMap::new(),
            dir_times: Vec::new(),
            operand: PathBuf::new(),
        }
    }

    fn excluded(&self, host: &Path) -> bool {
        let by_root = host
            .strip_prefix(self.req.source_root)
            .is_ok_and(|rel| self.req.is_excluded(&rel.to_string_lossy()));
        let by_operand = self.req.exclude.is_some_and(|exclude| {
            host.strip_prefix(&self.operand).is_ok_and(|rel| {
                !rel.as_os_str().is_empty() && exclude.is_excluded(&rel.to_string_lossy())
            })
        });
        by_root || by_operand
    }

    /// A failed chown to `owner`, as [`rbuild_store::Error::UnmappedOwner`] when the user
    /// namespace does not map the id.
    fn chown_err(&self, path: &Path, owner: Owner, source: io::Error) -> CopyError {
        chown_error(self.shown(path), owner, source)
    }

    pub(super) fn io_err(&self, path: impl AsRef<Path>, source: io::Error) -> CopyError {
        CopyError::Io {
            path: self.shown(path.as_ref()),
            source,
        }
    }

    /// `path` as the Dockerfile would name it: inside the destination or the source.
    fn shown(&self, path: &Path) -> String {
        if path.starts_with(self.req.dest_root) {
            display_in_root(self.req.dest_root, path)
        } else if path.starts_with(self.req.source_root) {
            display_in_root(self.req.source_root, path)
        } else {
            path.display().to_string()
        }
    }

    fn owner_of(&self, meta: &fs::Metadata) -> Owner {
        match self.req.owner {
            Some(owner) => owner,
            None if self.req.preserve_owner => Owner {
                uid: meta.uid(),
                gid: meta.gid(),
            },
            None => Owner::ROOT,
        }
    }

    /// Creates `dir` and missing parents (mode 0755, owned by `--chown` or root); an
    /// existing directory keeps its owner and mode.
    pub(super) fn ensure_dir(&mut self, dir: &Path) -> Result<(), CopyError> {
        self.check_layer_name(None, dir)?;
        match fs::symlink_metadata(dir) {
            Ok(meta) if meta.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(CopyError::NotADirectory {
                    path: display_in_root(self.req.dest_root, dir),
                });
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(self.io_err(dir, err)),
        }
        if let Some(parent) = dir.parent()
            && parent.starts_with(self.req.dest_root)
            && parent != dir
        {
            self.ensure_dir(parent)?;
        }
        fs::create_dir(dir).map_err(|e| self.io_err(dir, e))?;
        let owner = self.req.owner.unwrap_or(Owner::ROOT);
        std::os::unix::fs::lchown(dir, Some(owner.uid), Some(owner.gid))
            .map_err(|e| self.chown_err(dir, owner, e))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
            .map_err(|e| self.io_err(dir, e))?;
        Ok(())
    }

    pub(super) fn copy_children(&mut self, source: &Path, target: &Path) -> Result<(), CopyError> {
        let mut names: Vec<_> = fs::read_dir(source)
            .map_err(|e| self.io_err(source, e))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(|e| self.io_err(source, e))?;
        names.sort();
        for name in names {
            let child = source.join(&name);
            let meta = fs::symlink_metadata(&child).map_err(|e| self.io_err(&child, e))?;
            let excluded = self.excluded(&child);
            if !excluded {
                self.copy_entry(&child, &target.join(&name), &meta)?;
            } else if meta.is_dir() && self.req.has_exceptions() {
                // An excluded directory may still hold files a `!` pattern re-includes: copy
                // those, and keep the directory only if one turned up.
                let existed = target.join(&name).exists();
                self.copy_entry(&child, &target.join(&name), &meta)?;
                let created = target.join(&name);
                if !existed && fs::read_dir(&created).is_ok_and(|mut d| d.next().is_none()) {
                    fs::remove_dir(&created).map_err(|e| self.io_err(&created, e))?;
                    self.dir_times.retain(|(dir, _, _)| dir != &created);
                }
            }
        }
        Ok(())
    }

    /// Copies one entry (recursively for directories) to `target`.
    pub(super) fn copy_entry(
        &mut self,
        source: &Path,
        target: &Path,
        meta: &fs::Metadata,
    ) -> Result<(), CopyError> {
        self.check_layer_name(Some(source), target)?;
        let owner = self.owner_of(meta);
        let mode = match &self.req.mode {
            Some(chmod) => chmod.apply(meta.mode(), meta.is_dir()),
            None => meta.mode() & 0o7777,
        };
        let file_type = meta.file_type();
        let existing = fs::symlink_metadata(target).ok();
        if file_type.is_dir() {
            match existing {
                // Directories merge; an existing one keeps its owner and mode.
                Some(existing) if existing.is_dir() => {}
                other => {
                    if other.is_some() {
                        fs::remove_file(target).map_err(|e| self.io_err(target, e))?;
                    }
                    fs::create_dir(target).map_err(|e| self.io_err(target, e))?;
                    self.set_owner_mode(target, owner, mode)?;
                    self.dir_times
                        .push((target.to_owned(), meta.mtime(), meta.mtime_nsec()));
                }
            }
            return self.copy_children(source, target);
        }
        self.clear_for_file(target, existing.as_ref())?;
        if file_type.is_symlink() {
            let link = fs::read_link(source).map_err(|e| self.io_err(source, e))?;
            symlink(&link, target).map_err(|e| self.io_err(target, e))?;
            std::os::unix::fs::lchown(target, Some(owner.uid), Some(owner.gid))
                .map_err(|e| self.chown_err(target, owner, e))?;
            return self.set_times(target, meta, false);
        }
        if meta.nlink() > 1 && file_type.is_file() {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.hardlinks.get(&key) {
                return fs::hard_link(first, target).map_err(|e| self.io_err(target, e));
            }
            self.hardlinks.insert(key, target.to_owned());
        }
        if file_type.is_file() || file_type.is_socket() {
            // Sockets become empty regular files, as with Docker.
            self.create_file(target, file_type.is_file().then_some(source))?;
        } else {
            rbuild_store::make_node_like(meta, target).map_err(|e| {
                // A user namespace (rootless) cannot create device nodes.
                let shown = self.shown(source);
                match (!file_type.is_fifo())
                    .then(|| rbuild_store::Error::device_node(&shown, &e))
                    .flatten()
                {
                    Some(refused) => CopyError::Rootless {
                        path: shown,
                        source: refused,
                    },
                    None => self.io_err(target, e),
                }
            })?;
        }
        self.set_owner_mode(target, owner, mode)?;
        self.set_times(target, meta, true)
    }

    /// Writes a downloaded file to `target`, replacing a file there.
    pub(super) fn copy_remote(
        &mut self,
        remote: &RemoteFile,
        target: &Path,
    ) -> Result<(), CopyError> {
        self.check_layer_name(None, target)?;
        self.clear_for_file(target, fs::symlink_metadata(target).ok().as_ref())?;
        self.create_file(target, Some(&remote.path))?;
        let mode = match &self.req.mode {
            Some(chmod) => chmod.apply(0o600, false),
            None => 0o600,
        };
        self.set_owner_mode(target, self.req.owner.unwrap_or(Owner::ROOT), mode)?;
        set_mtime(target, remote.mtime, 0, false).map_err(|e| self.io_err(target, e))
    }

    /// Refuses to write `target` into a layer when its name is a whiteout's (see
    /// [`CopyError::WhiteoutName`]). Docker writes it and the image loses the file; the
    /// check is on the name written, which a destination can give (`COPY a /x/.wh.b`).
    fn check_layer_name(&self, source: Option<&Path>, target: &Path) -> Result<(), CopyError> {
        let Some(deleted) = target
            .file_name()
            .and_then(|name| name.as_bytes().strip_prefix(b".wh."))
            .filter(|_| self.req.layer)
        else {
            return Ok(());
        };
        let shown = display_in_root(self.req.dest_root, target);
        let what = match source {
            Some(source) => format!(
                "`{}` in {} cannot be copied to `{shown}`",
                display_in_root(self.req.source_root, source),
                self.req.origin
            ),
            None => format!("cannot create `{shown}`"),
        };
        Err(CopyError::WhiteoutName {
            what,
            deleted: String::from_utf8_lossy(deleted).into_owned(),
        })
    }

    /// Makes room for a file (or link, or node) at `target`, where `existing` is: a file
    /// there goes, a directory is an error.
    fn clear_for_file(
        &self,
        target: &Path,
        existing: Option<&fs::Metadata>,
    ) -> Result<(), CopyError> {
        match existing {
            Some(existing) if existing.is_dir() => Err(CopyError::DirectoryExists {
                path: display_in_root(self.req.dest_root, target),
            }),
            Some(_) => fs::remove_file(target).map_err(|e| self.io_err(target, e)),
            None => Ok(()),
        }
    }

    /// Creates the regular file `target` (mode 0600 until its owner and mode are set;
    /// never through a symlink) with `content`'s bytes, or empty.
    fn create_file(&self, target: &Path, content: Option<&Path>) -> Result<(), CopyError> {
        let mut out = File::options()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(target)
            .map_err(|e| self.io_err(target, e))?;
        if let Some(content) = content {
            let mut input = File::open(content).map_err(|e| self.io_err(content, e))?;
            io::copy(&mut input, &mut out).map_err(|e| self.io_err(target, e))?;
        }
        Ok(())
    }

    fn set_owner_mode(&self, path: &Path, owner: Owner, mode: u32) -> Result<(), CopyError> {
        // chown first: it clears setuid/setgid bits that chmod then sets.
        std::os::unix::fs::lchown(path, Some(owner.uid), Some(owner.gid))
            .map_err(|e| self.chown_err(path, owner, e))?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| self.io_err(path, e))
    }

    fn set_times(&self, path: &Path, meta: &fs::Metadata, follow: bool) -> Result<(), CopyError> {
        set_mtime(path, meta.mtime(), meta.mtime_nsec(), follow).map_err(|e| self.io_err(path, e))
    }

    pub(super) fn finish(mut self) -> Result<(), CopyError> {
        for (dir, secs, nanos) in std::mem::take(&mut self.dir_times).into_iter().rev() {
            set_mtime(&dir, secs, nanos, true).map_err(|e| self.io_err(&dir, e))?;
        }
        Ok(())
    }
}

fn set_mtime(path: &Path, secs: i64, nanos: i64, follow: bool) -> io::Result<()> {
    let time = nix::sys::time::TimeSpec::new(secs, nanos);
    let flag = if follow {
        nix::sys::stat::UtimensatFlags::FollowSymlink
    } else {
        nix::sys::stat::UtimensatFlags::NoFollowSymlink
    };
    nix::sys::stat::utimensat(None, path, &time, &time, flag).map_err(io::Error::from)
}
