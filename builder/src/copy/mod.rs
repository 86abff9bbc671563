//! COPY and ADD of local files and of files ADD downloaded, and WORKDIR's directory
//! creation, inside a mounted rootfs.
//!
//! Everything here works on host paths of directories the caller mounted privately: the
//! source root (the context, or another stage's filesystem) and the destination root (the
//! overlay the new layer is written through). Every path a Dockerfile names is resolved
//! with [`resolve_in_root`], so neither side can be left through `..` or a symlink.

mod sources;
mod writer;

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::chmod::{Chmod, InvalidChmod};
use crate::glob;
use crate::ignore::IgnoreMatcher;
use crate::owner::Owner;
use crate::resolve::{display_in_root, resolve_in_root};
use writer::Copier;

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map_or_else(String::new, |name| format!(" (did you mean `{name}`?)"))
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CopyError {
    #[error(
        "`{path}` is a symlink to `{target}`, which is not in {origin} (a symlink is followed inside {origin}, as if it were `/`)"
    )]
    DanglingLink {
        path: String,
        target: String,
        origin: String,
    },
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
    /// In a layer, `.wh.<name>` is a whiteout: written there, the file would delete
    /// `<name>` from the image below when the image is unpacked, and vanish itself.
    #[error(
        "{what}: a name that starts with `.wh.` marks a deleted file in an image layer, so the \
         image would lose both it and `{deleted}`; rename it, or leave it out with \
         `.dockerignore` or `--exclude`"
    )]
    WhiteoutName { what: String, deleted: String },
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
    /// ADD `--unpack`: downloaded archives are extracted too.
    pub extract_downloads: bool,
    /// `--exclude` patterns, matched against paths relative to the source root.
    pub exclude: Option<&'a IgnoreMatcher>,
    /// `--parents`: each source keeps its path (below a `/./` pivot) under the destination.
    pub parents: bool,
    /// ADD: the downloaded content of the sources that are URLs.
    pub remote: &'a [RemoteFile],
    /// The destination becomes a layer: a name that starts with `.wh.` is refused there
    /// ([`CopyError::WhiteoutName`]).
    pub layer: bool,
}

/// A file ADD downloaded: it is copied as a regular file, mode 0600 (unless `--chmod`),
/// owned by root (unless `--chown`), extracted only with `--unpack`, as BuildKit does.
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
        extract_downloads: false,
        exclude: None,
        parents: false,
        remote: &[],
        layer: false,
    })
}

pub(crate) fn copy(req: &CopyRequest<'_>) -> Result<(), CopyError> {
    if req.sources.is_empty() {
        return Err(CopyError::NoSources);
    }
    let matched = sources::matched(req)?;
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
    let target = Destination {
        is_dir: req.destination.ends_with('/') || matched.len() > 1 || dest.is_dir() || req.parents,
        path: dest,
    };
    let mut copier = Copier::new(req);
    for (source, depth) in &matched {
        match req.remote(source) {
            Some(remote) => copy_download(&mut copier, req, remote, source, &target)?,
            None => copy_local(&mut copier, req, source, *depth, &target)?,
        }
    }
    copier.finish()
}

/// Where a COPY writes: the destination resolved in the root, and whether it is a
/// directory to copy into (a trailing `/`, several sources, an existing directory,
/// `--parents`) or the name of the one file.
struct Destination {
    path: PathBuf,
    is_dir: bool,
}

impl Destination {
    /// The file `name` goes to: inside the directory, or the destination itself; its
    /// parent directory made.
    fn file(&self, copier: &mut Copier<'_>, name: &std::ffi::OsStr) -> Result<PathBuf, CopyError> {
        if self.is_dir {
            copier.ensure_dir(&self.path)?;
            return Ok(self.path.join(name));
        }
        if let Some(parent) = self.path.parent() {
            copier.ensure_dir(parent)?;
        }
        Ok(self.path.clone())
    }
}

/// An `ADD <url>` source, downloaded already: the file, or with `--unpack` its contents.
fn copy_download(
    copier: &mut Copier<'_>,
    req: &CopyRequest<'_>,
    remote: &RemoteFile,
    source: &str,
    dest: &Destination,
) -> Result<(), CopyError> {
    if req.extract_downloads
        && let Some(archive) = crate::unarchive::open_archive(&remote.path)
            .map_err(|e| copier.io_err(&remote.path, e))?
    {
        return extract(copier, req, archive, &dest.path, source);
    }
    let name = match dest.is_dir {
        true => url_file_name(&remote.url).ok_or_else(|| CopyError::NoFileName {
            url: remote.url.clone(),
            destination: req.destination.to_owned(),
        })?,
        false => String::new(),
    };
    let target = dest.file(copier, name.as_ref())?;
    copier.copy_remote(remote, &target)
}

/// A source from the context, a stage or an image: a directory's contents, a file (an
/// archive ADD unpacks), or with `--parents` either one under its own path.
fn copy_local(
    copier: &mut Copier<'_>,
    req: &CopyRequest<'_>,
    source: &str,
    depth: usize,
    dest: &Destination,
) -> Result<(), CopyError> {
    let clean = source.trim_start_matches('/');
    if let Some(by) = req.excluded_by(clean) {
        return Err(CopyError::Excluded {
            path: source.to_owned(),
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
        let kept: PathBuf = Path::new(clean)
            .components()
            .filter(|c| matches!(c, std::path::Component::Normal(_)))
            .skip(depth)
            .collect();
        let target = dest.path.join(&kept);
        if meta.is_dir() {
            copier.ensure_dir(&target)?;
            return copier.copy_children(&host, &target);
        }
        if let Some(parent) = target.parent() {
            copier.ensure_dir(parent)?;
        }
        return copier.copy_entry(&host, &target, &meta);
    }
    if meta.is_dir() {
        // A directory source copies its contents, not the directory itself.
        copier.ensure_dir(&dest.path)?;
        return copier.copy_children(&host, &dest.path);
    }
    // Only a regular file can be an archive: opening a FIFO would wait for a writer, a
    // socket cannot be opened at all.
    if req.extract_archives
        && meta.is_file()
        && let Some(archive) =
            crate::unarchive::open_archive(&host).map_err(|e| copier.io_err(&host, e))?
    {
        // ADD of a local archive: its contents go into the destination directory.
        return extract(copier, req, archive, &dest.path, source);
    }
    let name = Path::new(clean).file_name().unwrap_or_default();
    let target = dest.file(copier, name)?;
    copier.copy_entry(&host, &target, &meta)
}

/// An archive's contents into the directory `dest` (made if missing), owned by `--chown`'s
/// owner when given, else as the archive says.
fn extract(
    copier: &mut Copier<'_>,
    req: &CopyRequest<'_>,
    archive: Box<dyn io::Read>,
    dest: &Path,
    source: &str,
) -> Result<(), CopyError> {
    copier.ensure_dir(dest)?;
    let owner = req.owner.map(|o| (o.uid, o.gid));
    rbuild_store::layer::extract_archive(archive, dest, owner, source).map_err(|err| {
        CopyError::Extract {
            path: source.to_owned(),
            source: err,
        }
    })
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
