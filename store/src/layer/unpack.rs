//! OCI layer tar → snapshot directory in overlay format, contained inside the target.
//!
//! Layers come from anywhere, so nothing an entry says may reach outside the target: every
//! path is split into components (`..` and absolute paths are refused), and every parent
//! directory is opened component by component with `O_NOFOLLOW` from the target's own file
//! descriptor, so a symlink in the layer can never redirect a later write. Files are created
//! with `O_EXCL | O_NOFOLLOW`, hardlink targets are resolved the same way as entries.
//!
//! Whiteouts become overlay's encoding: `.wh.<name>` → a 0/0 character device `<name>`,
//! `.wh..wh..opq` → the `overlay.opaque=y` xattr on the directory, `trusted.` or `user.`
//! as the store's format says ([`OverlayXattrs`]).
//!
//! In a user namespace, an owner the namespace does not map and a device node cannot be
//! created: both are errors that name the entry ([`Error::UnmappedOwner`],
//! [`Error::DeviceNode`]), never a file with another owner or a missing one; the one
//! exception is device nodes under `/dev`, which no sandbox sees (its `/dev` is its own).

use std::cell::Cell;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid};
use rustix::io::Errno;
use tar::EntryType;

use super::blocks::TarBlocks;
use crate::digest::Hasher;
use crate::error::{Error, Result};
use crate::{Digest, IdMapping, OverlayXattrs};

/// What unpacking a layer found.
#[derive(Debug, Clone)]
pub struct Unpacked {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Size of the uncompressed tar stream.
    pub size: u64,
}

/// The compression of a layer stream, told from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

pub fn detect_compression(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Unpacks the (possibly compressed) layer `blob` into the existing empty directory `target`.
/// `what` names the layer in errors.
pub fn unpack_layer(
    blob: impl Read,
    target: &Path,
    what: &Digest,
    xattrs: OverlayXattrs,
) -> Result<Unpacked> {
    let (_, decompressed) = decompress(blob).map_err(|source| Error::CorruptBlob {
        digest: what.clone(),
        source,
    })?;
    let mut hashing = HashingReader {
        inner: decompressed,
        hasher: Hasher::new(),
    };
    let root = rustix::fs::open(
        target,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open unpack target", target)(e.into()))?;
    let mut unpacker = Unpacker {
        root,
        directory_times: Vec::new(),
        whiteouts: true,
        owner: None,
        opaque_xattr: xattrs.opaque(),
    };
    {
        let mut archive = tar::Archive::new(TarBlocks::new(&mut hashing));
        let entries = archive.entries().map_err(|source| Error::CorruptBlob {
            digest: what.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| Error::CorruptBlob {
                digest: what.clone(),
                source,
            })?;
            unpacker.entry(entry, what)?;
        }
    }
    // The diff id covers the whole stream, including the end-of-archive padding.
    io::copy(&mut hashing, &mut io::sink()).map_err(|source| Error::CorruptBlob {
        digest: what.clone(),
        source,
    })?;
    unpacker.finish()?;
    let size = hashing.hasher.size();
    Ok(Unpacked {
        diff_id: hashing.hasher.finish(),
        size,
    })
}

/// How far a compressed stream may expand before rbuild calls it a decompression bomb:
/// past 1 GiB of output, more than this many times the input read so far.
/// `RBUILD_MAX_EXPANSION` overrides it.
pub const DEFAULT_MAX_EXPANSION: u64 = 200;
const EXPANSION_CHECK_AFTER: u64 = 1 << 30;

/// Detects the compression of `input` from its first bytes and returns the decompressed
/// stream, guarded against decompression bombs.
pub fn decompress<'a>(input: impl Read + 'a) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let ratio = std::env::var("RBUILD_MAX_EXPANSION")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_EXPANSION);
    decompress_with(input, EXPANSION_CHECK_AFTER, ratio)
}

fn decompress_with<'a>(
    input: impl Read + 'a,
    check_after: u64,
    limit: u64,
) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let consumed = Rc::new(Cell::new(0u64));
    let counting = CountingReader {
        inner: input,
        count: consumed.clone(),
    };
    let mut reader = BufReader::with_capacity(256 * 1024, counting);
    let compression = detect_compression(reader.fill_buf()?);
    let decompressed: Box<dyn Read + 'a> = match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::Decoder::with_buffer(reader)?),
        Compression::None => return Ok((compression, Box::new(reader))),
    };
    Ok((
        compression,
        Box::new(BombGuard {
            inner: decompressed,
            consumed,
            produced: 0,
            check_after,
            limit,
        }),
    ))
}

struct CountingReader<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

struct BombGuard<R> {
    inner: R,
    consumed: Rc<Cell<u64>>,
    produced: u64,
    check_after: u64,
    limit: u64,
}

impl<R: Read> Read for BombGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.produced += n as u64;
        let consumed = self.consumed.get().max(1);
        if self.produced > self.check_after && self.produced / consumed > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} compressed bytes expanded to more than {} (over {}:1): a decompression bomb? \
                     (RBUILD_MAX_EXPANSION raises the limit)",
                    consumed, self.produced, self.limit
                ),
            ));
        }
        Ok(n)
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

struct Unpacker {
    root: OwnedFd,
    /// Directory mtimes are set last: creating children changes them.
    directory_times: Vec<(Vec<String>, u64)>,
    /// Layer mode: `.wh.` entries are whiteouts. Archives (ADD) refuse them.
    whiteouts: bool,
    /// Every entry's owner, instead of the archive's (ADD `--chown`).
    owner: Option<(u32, u32)>,
    /// The xattr that marks an opaque directory in the target's overlay format.
    opaque_xattr: &'static str,
}

/// Extracts a plain (already decompressed) tar `archive` into the directory `target`, with
/// the same containment as layers but without layer semantics: existing files are
/// replaced, existing directories merged, as `tar -x` does. `owner` replaces every entry's
/// owner. Used by ADD for local archives.
///
/// A name that starts with `.wh.` is refused ([`Error::UnsafeEntry`]): `target` becomes a
/// layer, where that name is a whiteout, so the file would delete its namesake in the
/// image below and vanish itself when the image is unpacked. Applying it as a whiteout
/// would be as wrong: an archive is not a layer, and `tar -x` writes a plain file.
pub fn extract_archive(
    archive: impl Read,
    target: &Path,
    owner: Option<(u32, u32)>,
    what: &str,
) -> Result<()> {
    let corrupt = |source: io::Error| Error::Unpack {
        path: what.to_owned(),
        source,
    };
    let root = rustix::fs::open(
        target,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open", target)(e.into()))?;
    let mut unpacker = Unpacker {
        root,
        directory_times: Vec::new(),
        whiteouts: false,
        owner,
        opaque_xattr: OverlayXattrs::Trusted.opaque(),
    };
    let mut archive = tar::Archive::new(TarBlocks::new(archive));
    let placeholder = Digest::of(what.as_bytes());
    for entry in archive.entries().map_err(corrupt)? {
        unpacker.entry(entry.map_err(corrupt)?, &placeholder)?;
    }
    unpacker.finish()
}

impl Unpacker {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>, layer: &Digest) -> Result<()> {
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let components = split_path(&raw_path)?;
        let entry_type = entry.header().entry_type();
        if matches!(
            entry_type,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        if !self.whiteouts
            && let Some(component) = components.iter().find(|c| c.starts_with(".wh."))
        {
            return Err(unsafe_entry(
                &raw_path,
                &format!(
                    "`{component}` starts with `.wh.`, which marks a deleted file in an image layer: \
                     extracted into one it would delete `{}` from the image and vanish itself; \
                     rename it in the archive",
                    &component[4..]
                ),
            ));
        }
        let unpack_err = |source: io::Error| Error::Unpack {
            path: raw_path.clone(),
            source,
        };
        let header = entry.header();
        let mode = header.mode().map_err(unpack_err)? & 0o7777;
        let uid = header.uid().map_err(unpack_err)?;
        let gid = header.gid().map_err(unpack_err)?;
        let mtime = header.mtime().map_err(unpack_err)?;
        let owner = match self.owner {
            Some(owner) => owner,
            None => (
                u32::try_from(uid).map_err(|_| unsafe_entry(&raw_path, "uid out of range"))?,
                u32::try_from(gid).map_err(|_| unsafe_entry(&raw_path, "gid out of range"))?,
            ),
        };
        let Some((name, parents)) = components.split_last() else {
            // The root of the layer itself (`./`): its attributes apply to the target.
            if entry_type == EntryType::Directory {
                let dir = self
                    .open_dir(&[], true)
                    .and_then(|root| open_existing_dir(&root, None))
                    .map_err(unpack_err)?;
                set_owner_mode(&dir, owner, mode).map_err(unpack_err)?;
                self.directory_times.push((Vec::new(), mtime));
            }
            return Ok(());
        };
        let name = name.as_str();
        let parent = self.open_dir(parents, true).map_err(unpack_err)?;
        let owner_err = |source: io::Error| owner_error(&raw_path, owner, source);

        if let Some(hidden) = name.strip_prefix(".wh.").filter(|_| self.whiteouts) {
            if hidden == ".wh..opq" {
                let dir = open_existing_dir(&parent, None).map_err(unpack_err)?;
                rustix::fs::fsetxattr(
                    &dir,
                    self.opaque_xattr,
                    b"y",
                    rustix::fs::XattrFlags::empty(),
                )
                .map_err(|e| unpack_err(e.into()))?;
                return Ok(());
            }
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(unsafe_entry(&raw_path, "invalid whiteout"));
            }
            remove_existing(&parent, hidden).map_err(unpack_err)?;
            rustix::fs::mknodat(&parent, hidden, FileType::CharacterDevice, Mode::empty(), 0)
                .map_err(|e| unpack_err(e.into()))?;
            return Ok(());
        }

        let xattrs = pax_xattrs(&mut entry).map_err(unpack_err)?;
        match entry_type {
            EntryType::Directory => {
                let dir = match open_existing_dir(&parent, Some(name)) {
                    Ok(dir) => dir,
                    Err(_) => {
                        remove_existing(&parent, name).map_err(unpack_err)?;
                        rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o700))
                            .map_err(|e| unpack_err(e.into()))?;
                        open_existing_dir(&parent, Some(name)).map_err(unpack_err)?
                    }
                };
                set_owner_mode(&dir, owner, mode).map_err(owner_err)?;
                set_xattrs(&dir, &xattrs).map_err(unpack_err)?;
                self.directory_times.push((components.clone(), mtime));
            }
            EntryType::Regular | EntryType::Continuous => {
                remove_existing(&parent, name).map_err(unpack_err)?;
                let file = rustix::fs::openat(
                    &parent,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| unpack_err(e.into()))?;
                let mut file = File::from(file);
                io::copy(&mut entry, &mut file).map_err(|source| Error::CorruptBlob {
                    digest: layer.clone(),
                    source,
                })?;
                // chown before chmod: chown clears setuid and setgid bits.
                set_owner_mode(&file, owner, mode).map_err(owner_err)?;
                set_xattrs(&file, &xattrs).map_err(unpack_err)?;
                rustix::fs::futimens(&file, &timestamps(mtime))
                    .map_err(|e| unpack_err(e.into()))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(&raw_path, "symlink without a target"))?
                    .into_owned();
                remove_existing(&parent, name).map_err(unpack_err)?;
                // The target is stored, never followed: it is resolved by overlay at run time,
                // inside the sandbox's root.
                rustix::fs::symlinkat(OsStr::from_bytes(&target), &parent, name)
                    .map_err(|e| unpack_err(e.into()))?;
                rustix::fs::chownat(
                    &parent,
                    name,
                    Some(Uid::from_raw(owner.0)),
                    Some(Gid::from_raw(owner.1)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| owner_err(e.into()))?;
                rustix::fs::utimensat(&parent, name, &timestamps(mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| unpack_err(e.into()))?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(&raw_path, "hardlink without a target"))?;
                let target = String::from_utf8_lossy(&target).into_owned();
                let target_components = split_path(&target)?;
                let Some((target_name, target_parents)) = target_components.split_last() else {
                    return Err(unsafe_entry(&raw_path, "hardlink to the layer root"));
                };
                let target_parent = self.open_dir(target_parents, false).map_err(unpack_err)?;
                remove_existing(&parent, name).map_err(unpack_err)?;
                rustix::fs::linkat(
                    &target_parent,
                    target_name.as_str(),
                    &parent,
                    name,
                    AtFlags::empty(),
                )
                .map_err(|e| unpack_err(e.into()))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let file_type = match entry_type {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                // Root filesystems made by debootstrap and the like carry /dev's nodes. A
                // user namespace cannot create them, and no sandbox ever sees them: its
                // /dev is its own tmpfs. Skipped there, as rootless podman and docker do;
                // a device node anywhere else is refused (`Error::DeviceNode`).
                if file_type != FileType::Fifo
                    && components.first().is_some_and(|first| first == "dev")
                    && IdMapping::in_user_namespace()
                {
                    return Ok(());
                }
                // A FIFO's device numbers mean nothing and are not read (GNU tar does
                // not read them either; some writers leave them blank).
                let (major, minor) = if file_type == FileType::Fifo {
                    (0, 0)
                } else {
                    let header = entry.header();
                    (
                        header.device_major().map_err(unpack_err)?.unwrap_or(0),
                        header.device_minor().map_err(unpack_err)?.unwrap_or(0),
                    )
                };
                remove_existing(&parent, name).map_err(unpack_err)?;
                rustix::fs::mknodat(
                    &parent,
                    name,
                    file_type,
                    Mode::from_raw_mode(mode & 0o777),
                    rustix::fs::makedev(major, minor),
                )
                .map_err(|e| {
                    let e = io::Error::from(e);
                    match file_type {
                        FileType::Fifo => None,
                        _ => Error::device_node(&raw_path, &e),
                    }
                    .unwrap_or_else(|| unpack_err(e))
                })?;
                rustix::fs::chownat(
                    &parent,
                    name,
                    Some(Uid::from_raw(owner.0)),
                    Some(Gid::from_raw(owner.1)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| owner_err(e.into()))?;
                rustix::fs::chmodat(&parent, name, Mode::from_raw_mode(mode), AtFlags::empty())
                    .map_err(|e| unpack_err(e.into()))?;
                rustix::fs::utimensat(&parent, name, &timestamps(mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| unpack_err(e.into()))?;
            }
            other => {
                return Err(unsafe_entry(
                    &raw_path,
                    &format!("unsupported entry type {other:?}"),
                ));
            }
        }
        Ok(())
    }

    /// Opens the directory at `components` below the root without following any symlink,
    /// creating missing directories (mode 0755, root-owned) when `create` is set.
    fn open_dir(&self, components: &[String], create: bool) -> io::Result<OwnedFd> {
        let mut current = rustix::fs::openat(
            &self.root,
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        for component in components {
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            current = match rustix::fs::openat(&current, component.as_str(), flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(
                        &current,
                        component.as_str(),
                        Mode::from_raw_mode(0o755),
                    ) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(err) => return Err(err.into()),
                    }
                    rustix::fs::openat(&current, component.as_str(), flags, Mode::empty())?
                }
                Err(Errno::NOTDIR | Errno::LOOP) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("`{component}` is not a directory (symlinks are not followed)"),
                    ));
                }
                Err(err) => return Err(err.into()),
            };
        }
        Ok(current)
    }

    fn finish(mut self) -> Result<()> {
        // Deepest first, so setting a child's time does not disturb its parent's.
        self.directory_times
            .sort_by_key(|(components, _)| std::cmp::Reverse(components.len()));
        for (components, mtime) in std::mem::take(&mut self.directory_times) {
            let path = components.join("/");
            let dir = self
                .open_dir(&components, false)
                .and_then(|dir| open_existing_dir(&dir, None))
                .map_err(|source| Error::Unpack {
                    path: path.clone(),
                    source,
                })?;
            rustix::fs::futimens(&dir, &timestamps(mtime)).map_err(|e| Error::Unpack {
                path,
                source: e.into(),
            })?;
        }
        Ok(())
    }
}

/// Splits an entry path into normal components; refuses `..` anywhere.
fn split_path(path: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(unsafe_entry(path, "the path leaves the layer root (`..`)")),
            name if name.as_bytes().contains(&0) => {
                return Err(unsafe_entry(path, "NUL in the path"));
            }
            name => out.push(name.to_owned()),
        }
    }
    Ok(out)
}

fn unsafe_entry(path: &str, reason: &str) -> Error {
    Error::UnsafeEntry {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Opens `name` in `parent` (or `parent` itself) as a real, readable directory.
fn open_existing_dir(parent: &OwnedFd, name: Option<&str>) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        parent,
        name.unwrap_or("."),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Removes whatever is at `name` (a directory with all its contents), if anything.
fn remove_existing(parent: &OwnedFd, name: &str) -> io::Result<()> {
    match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => remove_dir_all_at(parent, name),
        Err(err) => Err(err.into()),
    }
}

fn remove_dir_all_at(parent: &OwnedFd, name: &str) -> io::Result<()> {
    let dir = open_existing_dir(parent, Some(name))?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&dir)? {
        let entry = entry?;
        let entry_name = entry.file_name().to_bytes();
        if entry_name != b"." && entry_name != b".." {
            names.push((
                String::from_utf8_lossy(entry_name).into_owned(),
                entry.file_type(),
            ));
        }
    }
    for (child, file_type) in names {
        if file_type == FileType::Directory {
            remove_dir_all_at(&dir, &child)?;
        } else {
            rustix::fs::unlinkat(&dir, child.as_str(), AtFlags::empty())?;
        }
    }
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

/// A failed chown: `EINVAL` is the kernel's answer for an id the user namespace does not
/// map, which gets an error of its own.
fn owner_error(path: &str, (uid, gid): (u32, u32), source: io::Error) -> Error {
    Error::unmapped_owner(path, uid, gid, &source).unwrap_or_else(|| Error::Unpack {
        path: path.to_owned(),
        source,
    })
}

fn set_owner_mode(fd: &impl AsFd, owner: (u32, u32), mode: u32) -> io::Result<()> {
    rustix::fs::fchown(
        fd,
        Some(Uid::from_raw(owner.0)),
        Some(Gid::from_raw(owner.1)),
    )?;
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?;
    Ok(())
}

fn set_xattrs(fd: &impl AsFd, xattrs: &[(Vec<u8>, Vec<u8>)]) -> io::Result<()> {
    for (name, value) in xattrs {
        rustix::fs::fsetxattr(
            fd,
            OsStr::from_bytes(name),
            value,
            rustix::fs::XattrFlags::empty(),
        )?;
    }
    Ok(())
}

fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut xattrs = Vec::new();
    if let Some(extensions) = entry.pax_extensions()? {
        for extension in extensions {
            let extension = extension?;
            if let Some(name) = extension.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                // Overlay bookkeeping from another machine must not steer our overlay.
                if !name.starts_with(b"trusted.overlay.") && !name.starts_with(b"user.overlay.") {
                    xattrs.push((name.to_vec(), extension.value_bytes().to_vec()));
                }
            }
        }
    }
    Ok(xattrs)
}

fn timestamps(mtime: u64) -> Timestamps {
    let time = Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    Timestamps {
        last_access: time,
        last_modification: time,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn decompression_bombs_are_stopped() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        gz.write_all(&vec![0u8; 8 << 20]).unwrap();
        let bomb = gz.finish().unwrap();
        let (compression, mut stream) = decompress_with(bomb.as_slice(), 1 << 20, 100).unwrap();
        assert_eq!(compression, Compression::Gzip);
        let err = io::copy(&mut stream, &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("decompression bomb"), "{err}");
        // The same data under a generous limit passes.
        let (_, mut stream) = decompress_with(bomb.as_slice(), 1 << 20, 100_000).unwrap();
        assert_eq!(io::copy(&mut stream, &mut io::sink()).unwrap(), 8 << 20);
    }

    #[test]
    fn zstd_layers_are_detected_and_read() {
        let tar = {
            let mut builder = tar::Builder::new(Vec::new());
            let mut header = tar::Header::new_gnu();
            header.set_size(5);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            builder
                .append_data(&mut header, "hello.txt", &b"hello"[..])
                .unwrap();
            builder.into_inner().unwrap()
        };
        let compressed = zstd::encode_all(tar.as_slice(), 3).unwrap();
        let target = tempfile::tempdir().unwrap();
        let unpacked = unpack_layer(
            compressed.as_slice(),
            target.path(),
            &Digest::of(&compressed),
            OverlayXattrs::Trusted,
        )
        .unwrap();
        assert_eq!(unpacked.diff_id, Digest::of(&tar));
        assert_eq!(
            std::fs::read_to_string(target.path().join("hello.txt")).unwrap(),
            "hello"
        );
    }

    #[test]
    fn an_absurd_size_field_on_a_short_stream_is_a_clear_error() {
        let mut header = tar::Header::new_gnu();
        header.set_path("huge").unwrap();
        header.set_size(1 << 40);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_cksum();
        let mut tar = header.as_bytes().to_vec();
        tar.extend_from_slice(&[b'x'; 4096]);
        let target = tempfile::tempdir().unwrap();
        let err = unpack_layer(
            tar.as_slice(),
            target.path(),
            &Digest::of(&tar),
            OverlayXattrs::Trusted,
        )
        .unwrap_err();
        let message = format!(
            "{err}: {}",
            std::error::Error::source(&err)
                .map(|e| e.to_string())
                .unwrap_or_default()
        );
        assert!(message.contains("corrupt"), "{message}");
    }
}
