//! Layers rbuild builds are kept as snapshots only.
//!
//! A build step's layer is the tar of its overlay upper dir. rbuild measures it once (its
//! sha256 is both the diff id and, uncompressed, the blob digest) and keeps only the
//! directory, which is committed as a snapshot and never written again; whenever the blob
//! is read (save, push, verify) the tar is written again from the directory, by the same
//! deterministic writer with the same options, and checked against the digest as it
//! streams. Measured on this kind of machine (see docs/architecture.md), compressing at
//! build time cost 5-10 times the CPU of the tar itself and writing a second copy of every
//! layer doubled the disk writes of big COPYs; images compress when they leave the store.

use std::io::{self, Read};
use std::path::Path;
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::layer::{self, LayerOptions};
use crate::meta::{self, SnapshotRecord};
use crate::oci::{self, Descriptor};
use crate::{Digest, HashingWriter, Store, VerifyingReader};

/// A layer measured by [`Store::create_layer`].
#[derive(Debug, Clone)]
pub struct NewLayer {
    /// An uncompressed layer: digest and diff id are the same.
    pub descriptor: Descriptor,
    pub diff_id: Digest,
    /// Whether the tar holds no entries at all.
    pub empty: bool,
    /// How the tar is written; kept with the snapshot to write it again identically.
    pub options: LayerOptions,
}

impl Store {
    /// Measures the layer of the overlay upper dir `upper`. Commit the snapshot with
    /// [`Store::commit_layer`]; nothing is written until then.
    pub fn create_layer(&self, upper: &Path, options: LayerOptions) -> Result<NewLayer> {
        let hashing = layer::write_layer(upper, HashingWriter::new(io::sink()), options)
            .map_err(Error::io("read layer from", upper))?;
        let (_, diff_id, size) = hashing.finish();
        Ok(NewLayer {
            descriptor: Descriptor::new(oci::MEDIA_TYPE_LAYER, diff_id.clone(), size),
            diff_id,
            // An empty tar is just the two 512-byte end-of-archive blocks.
            empty: size <= 1024,
            options,
        })
    }

    /// The snapshot that holds the layer rbuild built with this diff id, if any.
    /// (A store holds few enough snapshots that a scan beats keeping an index in step.)
    pub(crate) fn built_layer(&self, diff_id: &Digest) -> Result<Option<(Digest, SnapshotRecord)>> {
        Ok(self
            .inner
            .meta
            .list::<SnapshotRecord>(meta::SNAPSHOTS)?
            .into_iter()
            .filter(|(_, record)| record.built.is_some() && &record.diff_id == diff_id)
            .find_map(|(key, record)| Some((key.parse().ok()?, record))))
    }

    /// Whether the store can produce the blob `digest`: as a file, or as a built layer.
    pub fn has_content(&self, digest: &Digest) -> Result<bool> {
        Ok(self.has_blob(digest) || self.built_layer(digest)?.is_some())
    }

    /// Opens any blob, built layers included, as a verified stream.
    pub fn open_content(&self, digest: &Digest, size: Option<u64>) -> Result<Box<dyn Read + Send>> {
        if self.has_blob(digest) {
            return Ok(Box::new(self.open_blob(digest, size)?));
        }
        let (_, record) = self
            .built_layer(digest)?
            .ok_or_else(|| Error::BlobNotFound {
                digest: digest.clone(),
            })?;
        let options = record.built.unwrap_or_default();
        let dir = self.snapshot_dir_of(&record).join("fs");
        let (reader, writer) = io::pipe().map_err(Error::io("create a pipe for", &dir))?;
        let thread = std::thread::Builder::new()
            .name("layer-writer".into())
            .spawn(move || -> io::Result<()> {
                let writer = io::BufWriter::with_capacity(1 << 20, writer);
                let mut writer = layer::write_layer(&dir, writer, options)?;
                io::Write::flush(&mut writer)
            })
            .map_err(Error::io("start a thread for", self.root()))?;
        Ok(Box::new(VerifyingReader::new(
            Generated {
                reader,
                thread: Some(thread),
            },
            digest.clone(),
            size,
        )))
    }
}

/// The read end of a layer being written by a thread; at end of stream the thread's own
/// error, if it had one, is reported instead of a silent short read.
struct Generated {
    reader: io::PipeReader,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf)?;
        if n == 0
            && !buf.is_empty()
            && let Some(thread) = self.thread.take()
        {
            match thread.join() {
                Ok(result) => result?,
                Err(_) => return Err(io::Error::other("the layer writer thread panicked")),
            }
        }
        Ok(n)
    }
}

impl Store {
    /// A new active snapshot holding the same files as the layer rbuild built, `layer`
    /// (uncompressed: its digest is its diff id, its size the tar's as measured when it
    /// was built; hard links: nothing is copied), to stack that layer on another parent,
    /// as `COPY --link` allows; `None` when the store has no such layer.
    pub fn clone_layer(
        &self,
        layer: &Descriptor,
    ) -> Result<Option<(crate::ActiveSnapshot, NewLayer)>> {
        let diff_id = &layer.digest;
        let Some((_, record)) = self.built_layer(diff_id)? else {
            return Ok(None);
        };
        let source = self.snapshot_dir_of(&record).join("fs");
        let active = self.prepare_on(Vec::new())?;
        if let Err(err) = link_tree(&source, &active.upper) {
            let _ = self.discard(active);
            return Err(Error::io("link the files of", source)(err));
        }
        let layer = NewLayer {
            descriptor: Descriptor::new(oci::MEDIA_TYPE_LAYER, diff_id.clone(), layer.size),
            diff_id: diff_id.clone(),
            empty: false,
            options: record.built.unwrap_or_default(),
        };
        Ok(Some((active, layer)))
    }
}

/// Recreates the tree `source` under the existing directory `target`: directories anew with
/// the same mode, owner, xattrs and times; everything else hard-linked.
fn link_tree(source: &Path, target: &Path) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for entry in std::fs::read_dir(source)? {
        let entry = entry?;
        let from = entry.path();
        let to = target.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&from)?;
        if meta.is_dir() {
            std::fs::create_dir(&to)?;
            link_tree(&from, &to)?;
            std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()))?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
            copy_xattrs(&from, &to)?;
            let time = rustix::fs::Timestamps {
                last_access: rustix::fs::Timespec {
                    tv_sec: meta.atime(),
                    tv_nsec: meta.atime_nsec(),
                },
                last_modification: rustix::fs::Timespec {
                    tv_sec: meta.mtime(),
                    tv_nsec: meta.mtime_nsec(),
                },
            };
            rustix::fs::utimensat(
                rustix::fs::CWD,
                &to,
                &time,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )?;
        } else {
            std::fs::hard_link(&from, &to)?;
        }
    }
    Ok(())
}

fn copy_xattrs(from: &Path, to: &Path) -> io::Result<()> {
    let mut names = vec![0u8; 4096];
    let len = match rustix::fs::llistxattr(from, &mut names[..]) {
        Ok(len) => len,
        Err(rustix::io::Errno::NOTSUP) => return Ok(()),
        Err(err) => return Err(err.into()),
    };
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name);
        let mut value = vec![0u8; 4096];
        let n = rustix::fs::lgetxattr(from, name, &mut value[..])?;
        rustix::fs::lsetxattr(to, name, &value[..n], rustix::fs::XattrFlags::empty())?;
    }
    Ok(())
}
