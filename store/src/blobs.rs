//! Content-addressed blobs in OCI layout (`blobs/sha256/<hex>`), written only through ingest.
//!
//! An ingest is a temporary file under `ingest/` that is hashed while it is written. On
//! commit it is fsynced, checked against the expected digest and size, made read-only and
//! renamed into place, and the directory is fsynced: a blob exists whole or not at all.
//! Two processes ingesting the same content both succeed; the second rename just replaces
//! identical bytes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Digest;
use crate::digest::{Hasher, VerifyingReader};
use crate::error::{Error, Result};
use crate::owner::Owner;

#[derive(Debug, Clone)]
pub(crate) struct Blobs {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl Blobs {
    pub(crate) fn ensure(root: &Path) -> Result<Blobs> {
        let blobs = root.join("blobs").join("sha256");
        let ingest = root.join("ingest");
        for dir in [&blobs, &ingest] {
            fs::create_dir_all(dir).map_err(Error::io("create", dir.as_path()))?;
        }
        Ok(Blobs { blobs, ingest })
    }

    pub(crate) fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    pub(crate) fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    pub(crate) fn ingest(&self) -> Result<Ingest> {
        let path = self.ingest.join(unique_name());
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(Error::io("create ingest", &path))?;
        Ok(Ingest {
            file: Some(io::BufWriter::with_capacity(256 * 1024, file)),
            path,
            hasher: Hasher::new(),
            blobs: self.blobs.clone(),
            store: None,
        })
    }

    /// Opens a blob for reading; the reader fails at end of stream unless the content
    /// matches `digest` (and `size`, when given).
    pub(crate) fn open(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<VerifyingReader<BufReader<File>>> {
        let path = self.path(digest);
        let file = File::open(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => Error::BlobNotFound {
                digest: digest.clone(),
            },
            _ => Error::Io {
                action: "open blob",
                path: path.clone(),
                source,
            },
        })?;
        Ok(VerifyingReader::new(
            BufReader::with_capacity(256 * 1024, file),
            digest.clone(),
            size,
        ))
    }

    /// Reads a whole blob (a manifest or config), verified, refusing more than `limit` bytes.
    pub(crate) fn read(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let path = self.path(digest);
        let size = fs::metadata(&path)
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => Error::BlobNotFound {
                    digest: digest.clone(),
                },
                _ => Error::Io {
                    action: "stat blob",
                    path: path.clone(),
                    source,
                },
            })?
            .len();
        if size > limit {
            return Err(Error::TooLarge {
                what: "blob",
                size,
                limit,
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        self.open(digest, None)?
            .read_to_end(&mut bytes)
            .map_err(|source| Error::CorruptBlob {
                digest: digest.clone(),
                source,
            })?;
        Ok(bytes)
    }
}

/// A blob being written. Dropping it without [`Ingest::commit`] removes the temporary file.
pub struct Ingest {
    file: Option<io::BufWriter<File>>,
    path: PathBuf,
    hasher: Hasher,
    blobs: PathBuf,
    /// The store whose process lease records the blob when it is committed.
    pub(crate) store: Option<crate::Store>,
}

impl Ingest {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.hasher.size()
    }

    /// Makes the blob durable under its digest. With `expected`, content that hashes to
    /// anything else is refused and removed.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let writer = self.file.take().expect("commit consumes the ingest");
        let file = writer.into_inner().map_err(|err| Error::Io {
            action: "write ingest",
            path: self.path.clone(),
            source: err.into_error(),
        })?;
        let size = self.hasher.size();
        let digest = std::mem::take(&mut self.hasher).finish();
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual: digest,
            });
        }
        file.sync_all()
            .map_err(Error::io("fsync ingest", &self.path))?;
        file.set_permissions(fs::Permissions::from_mode(0o444))
            .map_err(Error::io("chmod ingest", &self.path))?;
        drop(file);
        // Under the write lock, GC cannot run between the rename and the lease record.
        let _lock = self
            .store
            .as_ref()
            .map(|store| store.write_lock())
            .transpose()?;
        let target = self.blobs.join(digest.hex());
        fs::rename(&self.path, &target).map_err(Error::io("commit blob", &target))?;
        // Renamed: nothing left for Drop to remove.
        self.path = PathBuf::new();
        sync_dir(&self.blobs)?;
        if let Some(store) = &self.store {
            store.lease_add(std::slice::from_ref(&digest), &[], &[])?;
        }
        Ok((digest, size))
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self.file.as_mut().expect("ingest is open until commit");
        let written = file.write(buf)?;
        self.hasher.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file
            .as_mut()
            .expect("ingest is open until commit")
            .flush()
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("fsync directory", dir))
}

/// A name no other writer of this store uses: the owning process (see [`Owner`]), the time
/// and a per-process counter. Cleanup reads the owner back from the part before the first
/// `-` (see [`owner_of_name`]).
pub fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{:x}-{}",
        Owner::current(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The owner encoded in a name made by [`unique_name`] after `prefix-`.
pub(crate) fn owner_of_name(name: &str) -> Option<Owner> {
    name.split('-').find_map(|part| part.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_verifies_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        let blobs = Blobs::ensure(dir.path()).unwrap();
        let digest = store.write_blob(b"hello").unwrap();
        assert_eq!(digest, Digest::of(b"hello"));
        assert_eq!(store.write_blob(b"hello").unwrap(), digest);
        assert_eq!(blobs.read(&digest, 100).unwrap(), b"hello");
        let mode = fs::metadata(blobs.path(&digest))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o444);

        let mut ingest = blobs.ingest().unwrap();
        ingest.write_all(b"other").unwrap();
        let err = ingest.commit(Some(&digest)).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
    }

    #[test]
    fn read_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        let blobs = Blobs::ensure(dir.path()).unwrap();
        let digest = store.write_blob(b"hello").unwrap();
        let path = blobs.path(&digest);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&path, b"jello").unwrap();
        let err = blobs.read(&digest, 100).unwrap_err();
        assert!(matches!(err, Error::CorruptBlob { .. }), "{err}");
    }
}
