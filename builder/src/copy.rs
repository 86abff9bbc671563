//! COPY and ADD of local files and of files ADD downloaded, and WORKDIR's directory
//! creation, inside a mounted rootfs.
//!
//! Everything here works on host paths of directories the caller mounted privately: the
//! source root (the context, or another stage's filesystem) and the destination root (the
//! overlay the new layer is written through). Every path a Dockerfile names is resolved
//! with [`resolve_in_root`], so neither side can be left through `..` or a symlink.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use crate::chmod::{Chmod, InvalidChmod};
use crate::glob;
use crate::ignore::IgnoreMatcher;
use crate::owner::Owner;
use crate::resolve::{display_in_root, resolve_in_root};

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map_or_else(String::new, |name| format!(" (did you mean `{name}`?)"))
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CopyError {
    #[error("`{path}` not found in {origin}{}", did_you_mean(.suggestion))]
    NotFound {
        path: String,
        origin: String,
        /// A name beside it that is likely what was meant.
        suggestion: Option<String>,
    },
    /// Named literally, but left out by `.dockerignore` or `--exclude`: saying so saves
    /// the user a search for a file that is plainly there.
    #[error("`{path}` is excluded by {by}")]
    Excluded { path: String, by: &'static str },
    #[error("no source files were specified")]
    NoSources,
    #[error(
        "when using COPY with more than one source file, the destination must be a directory and end with a /"
    )]
    DestinationNotDirectory,
    #[error("cannot copy to non-directory: {path}")]
    NotADirectory { path: String },
    #[error("cannot replace directory {path} with a file")]
    DirectoryExists { path: String },
    #[error(transparent)]
    Pattern(#[from] glob::BadPattern),
    #[error("failed to extract `{path}`")]
    Extract {
        path: String,
        #[source]
        source: rbuild_store::Error,
    },
    #[error(
        "the URL `{url}` has no file name to give the file in the directory `{destination}`: name the file in the destination"
    )]
    NoFileName { url: String, destination: String },
    #[error(transparent)]
    InvalidChmod(#[from] InvalidChmod),
    /// An owner the user namespace does not map, a device node in a user namespace.
    #[error("failed to copy {path}")]
    Rootless {
        path: String,
        #[source]
        source: rbuild_store::Error,
    },
    #[error("failed to copy {path}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

pub(crate) struct CopyRequest<'a> {
    pub source_root: &'a Path,
    /// What the source root is, for errors: "the build context", "stage `builder`".
    pub origin: &'a str,
    /// Source operands as written in the Dockerfile (after variable expansion).
    pub sources: &'a [String],
    pub dest_root: &'a Path,
    /// Absolute destination; a trailing `/` means "into this directory".
    pub destination: &'a str,
    /// `--chown`, resolved. Without it, context files belong to root and files from another
    /// stage keep their owner (`preserve_owner`).
    pub owner: Option<Owner>,
    pub preserve_owner: bool,
    /// `--chmod`, parsed.
    pub mode: Option<Chmod>,
    /// The context's ignore rules: excluded paths are as good as absent.
    pub ignore: Option<&'a IgnoreMatcher>,
    /// ADD: local tar archives (plain, gzip, bzip2, xz, zstd) are extracted.
    pub extract_archives: bool,
    /// `--exclude` patterns, matched against paths relative to the source root.
    pub exclude: Option<&'a IgnoreMatcher>,
    /// `--parents`: each source keeps its path (below a `/./` pivot) under the destination.
    pub parents: bool,
    /// ADD: the downloaded content of the sources that are URLs.
    pub remote: &'a [RemoteFile],
}

/// A file ADD downloaded: it is copied as a regular file, mode 0600 (unless `--chmod`),
/// owned by root (unless `--chown`), never extracted, as BuildKit does.
#[derive(Debug, Clone)]
pub(crate) struct RemoteFile {
    /// The source as written: the URL.
    pub url: String,
    /// The downloaded content (a blob of the store).
    pub path: PathBuf,
    /// Its mtime: `Last-Modified`, else the epoch (BuildKit's choice).
    pub mtime: i64,
}

/// The name a downloaded file gets in a destination directory: the last segment of the
/// URL's path, percent-decoded, without query string or fragment. `None` when there is
/// none (`https://host/`, `https://host/dir/`).
pub(crate) fn url_file_name(url: &str) -> Option<String> {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .split_once('/')
        .map_or("", |(_, path)| path);
    let segment = path.rsplit('/').next().unwrap_or("");
    let decoded = percent_decode(segment);
    let name = decoded.rsplit('/').next().unwrap_or("");
    (!name.is_empty() && name != "." && name != ".." && !name.contains('\0'))
        .then(|| name.to_owned())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[index] == b'%'
            && let (Some(high), Some(low)) = (
                bytes.get(index + 1).and_then(|b| hex(*b)),
                bytes.get(index + 2).and_then(|b| hex(*b)),
            )
        {
            out.push((high * 16 + low) as u8);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl CopyRequest<'_> {
    fn remote(&self, source: &str) -> Option<&RemoteFile> {
        self.remote.iter().find(|remote| remote.url == source)
    }

    fn is_excluded(&self, rel: &str) -> bool {
        self.excluded_by(rel).is_some()
    }

    /// `source` is missing: the error, with the closest name in its directory (one that
    /// is not excluded) when one is likely what was meant.
    fn not_found(&self, source: &str) -> CopyError {
        let clean = source.trim_start_matches('/');
        let (dir, name) = match clean.rsplit_once('/') {
            Some((dir, name)) => (dir, name),
            None => ("", clean),
        };
        let suggestion = (!glob::has_wildcards(source) && !name.is_empty())
            .then(|| resolve_in_root(self.source_root, dir, true).ok())
            .flatten()
            .and_then(|host| fs::read_dir(host).ok())
            .and_then(|entries| {
                let names: Vec<String> = entries
                    .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                    .filter(|entry| {
                        let rel = if dir.is_empty() {
                            entry.clone()
                        } else {
                            format!("{dir}/{entry}")
                        };
                        !self.is_excluded(&rel)
                    })
                    .collect();
                let closest = crate::suggest::closest(name, names.iter().map(String::as_str))?;
                Some(if dir.is_empty() {
                    closest.to_owned()
                } else {
                    format!("{dir}/{closest}")
                })
            });
        CopyError::NotFound {
            path: source.to_owned(),
            origin: self.origin.to_owned(),
            suggestion,
        }
    }

    /// What excludes `rel`, if anything, as the user would name it.
    fn excluded_by(&self, rel: &str) -> Option<&'static str> {
        if self.ignore.is_some_and(|ignore| ignore.is_excluded(rel)) {
            Some(".dockerignore")
        } else if self.exclude.is_some_and(|exclude| exclude.is_excluded(rel)) {
            Some("--exclude")
        } else {
            None
        }
    }

    /// Whether an excluded directory may still hold files a `!` pattern re-includes.
    fn has_exceptions(&self) -> bool {
        self.ignore.is_some_and(|i| i.has_exceptions())
            || self.exclude.is_some_and(|e| e.has_exceptions())
    }
}

/// For `--parents`: how many leading directories of a source's path are dropped, i.e. the
/// position of a `/./` pivot (`src/./app/main.go` keeps `app/main.go`); none drops nothing.
fn pivot_depth(source: &str) -> usize {
    let mut depth = 0;
    for (index, component) in source.split('/').enumerate() {
        match component {
            "" => {}
            "." if index == 0 => {}
            "." => return depth,
            _ => depth += 1,
        }
    }
    0
}

/// Copies everything under `source_root` into `dest_root` as it is: owners, modes and
/// times kept, nothing excluded or extracted (an image's filesystem to a directory, a
/// cache mount's first contents).
pub(crate) fn copy_tree(
    source_root: &Path,
    origin: &str,
    dest_root: &Path,
) -> Result<(), CopyError> {
    copy_tree_owned(source_root, origin, dest_root, true)
}

/// [`copy_tree`]; with `keep_owners` false every copy belongs to root (in a rootless
/// rbuild's namespace: the user, so that what it writes for the user is theirs).
pub(crate) fn copy_tree_owned(
    source_root: &Path,
    origin: &str,
    dest_root: &Path,
    keep_owners: bool,
) -> Result<(), CopyError> {
    copy(&CopyRequest {
        source_root,
        origin,
        sources: &[".".to_owned()],
        dest_root,
        destination: "/",
        owner: None,
        preserve_owner: keep_owners,
        mode: None,
        ignore: None,
        extract_archives: false,
        exclude: None,
        parents: false,
        remote: &[],
    })
}

pub(crate) fn copy(req: &CopyRequest<'_>) -> Result<(), CopyError> {
    if req.sources.is_empty() {
        return Err(CopyError::NoSources);
    }
    // Each match with how many leading directories `--parents` drops from it.
    let mut matched: Vec<(String, usize)> = Vec::new();
    for source in req.sources {
        let depth = if req.parents { pivot_depth(source) } else { 0 };
        if req.remote(source).is_some() {
            // A URL is never a pattern, even with a `?` in its query string.
            matched.push((source.clone(), 0));
        } else if glob::has_wildcards(source) {
            // A wildcard that matches nothing is fine as long as something else matched.
            let found = glob::expand(req.source_root, source)?;
            matched.extend(
                found
                    .into_iter()
                    .filter(|rel| !req.is_excluded(rel))
                    .map(|rel| (rel, depth)),
            );
        } else {
            matched.push((source.clone(), depth));
        }
    }
    if matched.is_empty() {
        return Err(req.not_found(&req.sources[0]));
    }
    if req.sources.len() > 1 && !req.destination.ends_with('/') {
        return Err(CopyError::DestinationNotDirectory);
    }
    let dest =
        resolve_in_root(req.dest_root, req.destination, true).map_err(|source| CopyError::Io {
            path: req.destination.to_owned(),
            source,
        })?;
    let dest_is_dir =
        req.destination.ends_with('/') || matched.len() > 1 || dest.is_dir() || req.parents;
    let mut copier = Copier {
        req,
        hardlinks: HashMap::new(),
        dir_times: Vec::new(),
        operand: PathBuf::new(),
    };
    for (source, depth) in &matched {
        if let Some(remote) = req.remote(source) {
            let target = if dest_is_dir {
                let name = url_file_name(&remote.url).ok_or_else(|| CopyError::NoFileName {
                    url: remote.url.clone(),
                    destination: req.destination.to_owned(),
                })?;
                copier.ensure_dir(&dest)?;
                dest.join(name)
            } else {
                if let Some(parent) = dest.parent() {
                    copier.ensure_dir(parent)?;
                }
                dest.clone()
            };
            copier.copy_remote(remote, &target)?;
            continue;
        }
        let clean = source.trim_start_matches('/');
        if let Some(by) = req.excluded_by(clean) {
            return Err(CopyError::Excluded {
                path: source.clone(),
                by,
            });
        }
        let host =
            resolve_in_root(req.source_root, clean, true).map_err(|e| copier.io_err(source, e))?;
        copier.operand = host.clone();
        let meta = match fs::metadata(&host) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(req.not_found(source));
            }
            Err(err) => return Err(copier.io_err(source, err)),
        };
        if req.parents {
            // The source's own path, below the pivot, is kept under the destination.
            let kept: std::path::PathBuf = Path::new(clean)
                .components()
                .filter(|c| matches!(c, std::path::Component::Normal(_)))
                .skip(*depth)
                .collect();
            let target = dest.join(&kept);
            if meta.is_dir() {
                copier.ensure_dir(&target)?;
                copier.copy_children(&host, &target)?;
            } else {
                if let Some(parent) = target.parent() {
                    copier.ensure_dir(parent)?;
                }
                copier.copy_entry(&host, &target, &meta)?;
            }
        } else if meta.is_dir() {
            // A directory source copies its contents, not the directory itself.
            copier.ensure_dir(&dest)?;
            copier.copy_children(&host, &dest)?;
        } else if let Some(archive) = req
            .extract_archives
            .then(|| crate::unarchive::open_archive(&host))
            .transpose()
            .map_err(|e| copier.io_err(&host, e))?
            .flatten()
        {
            // ADD of a local archive: its contents go into the destination directory.
            copier.ensure_dir(&dest)?;
            let owner = req.owner.map(|o| (o.uid, o.gid));
            rbuild_store::layer::extract_archive(archive, &dest, owner, source).map_err(
                |source_err| CopyError::Extract {
                    path: source.clone(),
                    source: source_err,
                },
            )?;
        } else {
            let target = if dest_is_dir {
                copier.ensure_dir(&dest)?;
                let name = Path::new(clean)
                    .file_name()
                    .map(|n| n.to_owned())
                    .unwrap_or_default();
                dest.join(name)
            } else {
                if let Some(parent) = dest.parent() {
                    copier.ensure_dir(parent)?;
                }
                dest.clone()
            };
            copier.copy_entry(&host, &target, &meta)?;
        }
    }
    copier.finish()
}

struct Copier<'a> {
    req: &'a CopyRequest<'a>,
    /// (dev, ino) of multiply-linked source files → where the first copy went.
    hardlinks: HashMap<(u64, u64), PathBuf>,
    /// mtimes of copied directories, applied last (writing children changes them).
    dir_times: Vec<(PathBuf, i64, i64)>,
    /// The source operand being copied: `--exclude` patterns also match paths relative to
    /// it (`COPY --exclude=*.md docs /dst/` leaves out `docs/README.md`).
    operand: PathBuf,
}

impl Copier<'_> {
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

    fn io_err(&self, path: impl AsRef<Path>, source: io::Error) -> CopyError {
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
    fn ensure_dir(&mut self, dir: &Path) -> Result<(), CopyError> {
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

    fn copy_children(&mut self, source: &Path, target: &Path) -> Result<(), CopyError> {
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
    fn copy_entry(
        &mut self,
        source: &Path,
        target: &Path,
        meta: &fs::Metadata,
    ) -> Result<(), CopyError> {
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
            let kind = if file_type.is_fifo() {
                libc::S_IFIFO
            } else if file_type.is_char_device() {
                libc::S_IFCHR
            } else {
                libc::S_IFBLK
            };
            nix::sys::stat::mknod(
                target,
                nix::sys::stat::SFlag::from_bits_truncate(kind),
                nix::sys::stat::Mode::from_bits_truncate(0o600),
                meta.rdev(),
            )
            .map_err(|e| {
                let e = io::Error::from(e);
                // A user namespace (rootless) cannot create device nodes.
                let shown = self.shown(source);
                match (kind != libc::S_IFIFO)
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
    fn copy_remote(&mut self, remote: &RemoteFile, target: &Path) -> Result<(), CopyError> {
        self.clear_for_file(target, fs::symlink_metadata(target).ok().as_ref())?;
        self.create_file(target, Some(&remote.path))?;
        let mode = match &self.req.mode {
            Some(chmod) => chmod.apply(0o600, false),
            None => 0o600,
        };
        self.set_owner_mode(target, self.req.owner.unwrap_or(Owner::ROOT), mode)?;
        set_mtime(target, remote.mtime, 0, false).map_err(|e| self.io_err(target, e))
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

    fn finish(mut self) -> Result<(), CopyError> {
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

/// WORKDIR: creates `path` and its missing parents inside `root`, owned by `owner`, mode
/// 0755. Existing directories are left as they are.
pub(crate) fn make_workdir(root: &Path, path: &str, owner: Owner) -> Result<(), CopyError> {
    let target = resolve_in_root(root, path, true).map_err(|source| CopyError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut missing = Vec::new();
    let mut current = target.as_path();
    while current.starts_with(root) && current != root {
        match fs::symlink_metadata(current) {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => {
                return Err(CopyError::NotADirectory {
                    path: display_in_root(root, current),
                });
            }
            Err(_) => missing.push(current.to_owned()),
        }
        current = current.parent().unwrap_or(root);
    }
    for dir in missing.into_iter().rev() {
        let err = |source| CopyError::Io {
            path: display_in_root(root, &dir),
            source,
        };
        fs::create_dir(&dir).map_err(err)?;
        std::os::unix::fs::lchown(&dir, Some(owner.uid), Some(owner.gid))
            .map_err(|source| chown_error(display_in_root(root, &dir), owner, source))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(err)?;
    }
    Ok(())
}

/// A failed chown of `path` (as shown) to `owner`, as [`rbuild_store::Error::UnmappedOwner`]
/// when the user namespace does not map the id.
fn chown_error(path: String, owner: Owner, source: io::Error) -> CopyError {
    match rbuild_store::Error::unmapped_owner(&path, owner.uid, owner.gid, &source) {
        Some(unmapped) => CopyError::Rootless {
            path,
            source: unmapped,
        },
        None => CopyError::Io { path, source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloaded_files_are_named_from_the_url_path() {
        let name = |url: &str| url_file_name(url);
        assert_eq!(
            name("https://h/a/file.tar.gz?x=1#y").as_deref(),
            Some("file.tar.gz")
        );
        assert_eq!(name("http://h:8080/f").as_deref(), Some("f"));
        assert_eq!(name("https://h/a%20b.txt").as_deref(), Some("a b.txt"));
        assert_eq!(
            name("https://h/x/..%2Fetc%2Fpasswd").as_deref(),
            Some("passwd")
        );
        for none in [
            "https://h",
            "https://h/",
            "https://h/dir/",
            "https://h/?file=x",
            "https://h/..",
            "https://h/%2E%2E",
        ] {
            assert_eq!(name(none), None, "{none}");
        }
    }
}
