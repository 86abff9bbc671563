//! Cache mount directories (`RUN --mount=type=cache`): kept between steps and builds under
//! `cache-mounts/`, one per id, locked while a step uses them. The store hands out the
//! directory; the builder mounts it.
//!
//! ```text
//! cache-mounts/<sha256 of the id>/<n>/id     the id as written (for listings)
//!                                    /lock   flock: shared by `shared` users, exclusive
//!                                            for `locked` and `private` ones and for GC
//!                                    /data/  what the step sees at the mount's target
//! ```
//!
//! The id is only ever hashed into a name, so no id (`../../etc`, `/`) reaches a path.
//! Instance `0` is the cache; `private` users that find an instance busy take the next
//! free one, creating it if needed, so several private caches of one id can exist.
//! A new instance is made complete under a temporary name (owned by this process, so
//! [`crate::Store::cleanup`] removes it after a crash) and renamed into place.
//! Cache mounts are not GC roots and not layers: `rbuild du` counts them, and only
//! `prune --all` removes them (those unused for the `until` filter's time, when given).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::FlockOperation;

use crate::blobs::{owner_of_name, unique_name};
use crate::error::{Error, Result};
use crate::gc::disk_usage;
use crate::layer::BlobCompression;
use crate::oci::Descriptor;
use crate::{Digest, HashingWriter, Store};

pub(crate) const DIR: &str = "cache-mounts";

/// How concurrent users of one cache id share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheSharing {
    /// Every user gets the same directory at once.
    #[default]
    Shared,
    /// A user finding the directory in use gets another one.
    Private,
    /// One user at a time; the others wait.
    Locked,
}

/// How to use a cache mount, and how to make its directory when it does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheMountOptions {
    pub sharing: CacheSharing,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Default for CacheMountOptions {
    fn default() -> Self {
        CacheMountOptions {
            sharing: CacheSharing::Shared,
            mode: 0o755,
            uid: 0,
            gid: 0,
        }
    }
}

/// A cache directory in use; the lock is released when this is dropped.
#[derive(Debug)]
pub struct CacheMount {
    /// The directory to mount.
    pub dir: PathBuf,
    /// Whether this use created it.
    pub created: bool,
    _lock: File,
}

/// One cache mount directory, for `rbuild du`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheMountUsage {
    pub id: String,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub last_used: i64,
}

impl Store {
    /// Takes the cache directory of `id` for one step, creating it (with `init` run on the
    /// new, empty directory before anyone can see it) when it does not exist.
    ///
    /// Blocking: `Locked` users, and `Shared` users while a `Locked` or `Private` one
    /// holds the directory, wait, calling `keep_waiting` between attempts; when it
    /// returns false, this returns `Ok(None)`.
    pub fn cache_mount(
        &self,
        id: &str,
        opts: &CacheMountOptions,
        init: &dyn Fn(&Path) -> io::Result<()>,
        keep_waiting: &dyn Fn() -> bool,
    ) -> Result<Option<CacheMount>> {
        let base = self.root().join(DIR).join(Digest::of(id.as_bytes()).hex());
        fs::create_dir_all(&base).map_err(Error::io("create", &base))?;
        let mut instance = 0u32;
        loop {
            let dir = base.join(instance.to_string());
            let created = self.ensure_instance(&dir, id, opts, init)?;
            let operation = match opts.sharing {
                CacheSharing::Shared => FlockOperation::NonBlockingLockShared,
                CacheSharing::Private | CacheSharing::Locked => {
                    FlockOperation::NonBlockingLockExclusive
                }
            };
            match lock_instance(&dir, operation)? {
                Some(lock) => {
                    touch(&dir.join("id"));
                    return Ok(Some(CacheMount {
                        dir: dir.join("data"),
                        created,
                        _lock: lock,
                    }));
                }
                None if opts.sharing == CacheSharing::Private => instance += 1,
                None => {
                    if !keep_waiting() {
                        return Ok(None);
                    }
                    std::thread::sleep(Duration::from_millis(25));
                }
            }
        }
    }

    /// Makes instance `dir` if it does not exist; true if this call made it.
    fn ensure_instance(
        &self,
        dir: &Path,
        id: &str,
        opts: &CacheMountOptions,
        init: &dyn Fn(&Path) -> io::Result<()>,
    ) -> Result<bool> {
        if dir.join("data").is_dir() {
            return Ok(false);
        }
        let parent = dir
            .parent()
            .expect("an instance is inside its id's directory");
        let temp = parent.join(format!("new-{}", unique_name()));
        let made = (|| -> Result<()> {
            fs::create_dir(&temp).map_err(Error::io("create", &temp))?;
            fs::write(temp.join("id"), id).map_err(Error::io("write", temp.join("id")))?;
            File::create(temp.join("lock")).map_err(Error::io("create", temp.join("lock")))?;
            let data = temp.join("data");
            fs::create_dir(&data).map_err(Error::io("create", &data))?;
            init(&data).map_err(Error::io("fill the cache mount", &data))?;
            rustix::fs::chown(
                &data,
                Some(rustix::fs::Uid::from_raw(opts.uid)),
                Some(rustix::fs::Gid::from_raw(opts.gid)),
            )
            .map_err(|e| {
                let e = std::io::Error::from(e);
                let shown = format!("cache mount `{id}` (uid={}, gid={})", opts.uid, opts.gid);
                Error::unmapped_owner(&shown, opts.uid, opts.gid, &e)
                    .unwrap_or_else(|| Error::io("chown", &data)(e))
            })?;
            fs::set_permissions(&data, fs::Permissions::from_mode(opts.mode & 0o7777))
                .map_err(Error::io("chmod", &data))?;
            Ok(())
        })();
        let result = made.and_then(|()| match fs::rename(&temp, dir) {
            Ok(()) => Ok(true),
            // Someone else made it meanwhile: theirs is as good.
            Err(err) if dir.join("data").is_dir() => {
                let _ = err;
                Ok(false)
            }
            Err(err) => Err(Error::io("rename", dir)(err)),
        });
        let _ = fs::remove_dir_all(&temp);
        result
    }

    /// Whether the cache directory of `id` exists (its first instance, the one builds
    /// share).
    pub fn has_cache_mount(&self, id: &str) -> bool {
        self.root()
            .join(DIR)
            .join(Digest::of(id.as_bytes()).hex())
            .join("0/data")
            .is_dir()
    }

    /// The data directory of `id`'s first instance under a shared lock (waiting for a
    /// `locked` or `private` user to finish), for exporting it; `None` when there is none.
    /// Other `shared` users may write meanwhile: a cache is a cache.
    pub(crate) fn read_cache_mount(&self, id: &str) -> Result<Option<(PathBuf, File)>> {
        let dir = self
            .root()
            .join(DIR)
            .join(Digest::of(id.as_bytes()).hex())
            .join("0");
        if !dir.join("data").is_dir() {
            return Ok(None);
        }
        Ok(lock_instance(&dir, FlockOperation::LockShared)?.map(|lock| (dir.join("data"), lock)))
    }

    /// The cache mount directories, for `rbuild du`.
    pub fn cache_mounts(&self) -> Result<Vec<CacheMountUsage>> {
        let mut usages = Vec::new();
        for (dir, id) in self.cache_mount_instances()? {
            usages.push(CacheMountUsage {
                id,
                size: disk_usage(&dir),
                last_used: last_used(&dir),
            });
        }
        usages.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(usages)
    }

    /// Removes the cache mount directories unused for at least `unused_for` seconds (all
    /// when `None`) that no step holds now; returns how many and their size.
    pub(crate) fn prune_cache_mounts(
        &self,
        unused_for: Option<i64>,
        dry_run: bool,
    ) -> Result<(usize, u64)> {
        let now = crate::time::now_unix();
        let (mut count, mut bytes) = (0, 0);
        for (dir, _) in self.cache_mount_instances()? {
            if unused_for.is_some_and(|age| now - last_used(&dir) < age) {
                continue;
            }
            let Some(_lock) = lock_instance(&dir, FlockOperation::NonBlockingLockExclusive)? else {
                continue;
            };
            count += 1;
            bytes += disk_usage(&dir);
            if !dry_run {
                // `data` first: a half-removed instance must not look usable.
                let data = dir.join("data");
                fs::remove_dir_all(&data)
                    .or_else(ignore_not_found)
                    .map_err(Error::io("remove", &data))?;
                fs::remove_dir_all(&dir)
                    .or_else(ignore_not_found)
                    .map_err(Error::io("remove", &dir))?;
            }
        }
        if !dry_run {
            // Id directories left empty.
            for entry in read_dir(&self.root().join(DIR))? {
                let _ = fs::remove_dir(entry);
            }
        }
        Ok((count, bytes))
    }

    /// Every instance directory with its id.
    fn cache_mount_instances(&self) -> Result<Vec<(PathBuf, String)>> {
        let mut instances = Vec::new();
        for base in read_dir(&self.root().join(DIR))? {
            for dir in read_dir(&base)? {
                let is_instance = dir
                    .file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.parse::<u32>().is_ok());
                if is_instance && dir.join("data").is_dir() {
                    let id = fs::read_to_string(dir.join("id")).unwrap_or_default();
                    instances.push((dir, id));
                }
            }
        }
        Ok(instances)
    }

    /// Removes instances half made by processes that are gone.
    pub(crate) fn cleanup_cache_mounts(&self) -> Result<()> {
        for base in read_dir(&self.root().join(DIR))? {
            for dir in read_dir(&base)? {
                let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if let Some(rest) = name.strip_prefix("new-")
                    && owner_of_name(rest).is_some_and(|owner| !owner.is_alive())
                {
                    let _ = fs::remove_dir_all(&dir);
                }
            }
        }
        Ok(())
    }
}

/// Locks instance `dir`; `None` when a non-blocking `operation` finds it held. The lock is
/// only good if the instance was not removed (by GC) between opening and locking.
fn lock_instance(dir: &Path, operation: FlockOperation) -> Result<Option<File>> {
    let path = dir.join("lock");
    let file = match File::open(&path) {
        Ok(file) => file,
        // Removed by GC meanwhile: busy as far as the caller is concerned.
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(Error::io("open", &path)(err)),
    };
    match rustix::fs::flock(&file, operation) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
        Err(err) => return Err(Error::io("lock", &path)(err.into())),
    }
    let locked = file.metadata().map_err(Error::io("stat", &path))?.ino();
    let current = fs::metadata(&path).map(|meta| meta.ino()).ok();
    Ok((current == Some(locked) && dir.join("data").is_dir()).then_some(file))
}

fn touch(path: &Path) {
    if let Ok(file) = File::options().write(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

fn last_used(dir: &Path) -> i64 {
    fs::metadata(dir.join("id")).map_or(0, |meta| meta.mtime())
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|entry| entry.map(|e| e.path()))
            .collect::<io::Result<_>>()
            .map_err(Error::io("read", dir)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(Error::io("read", dir)(err)),
    }
}

fn ignore_not_found(err: io::Error) -> io::Result<()> {
    if err.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(err)
    }
}

impl Store {
    /// The contents of cache mount `id` as a compressed layer blob and its diff id, for
    /// `mounts=true`; `None` when the store has no such cache.
    pub fn cache_mount_layer(
        &self,
        id: &str,
        compression: BlobCompression,
    ) -> Result<Option<(Descriptor, Digest)>> {
        let Some((data, _lock)) = self.read_cache_mount(id)? else {
            return Ok(None);
        };
        let ingest = self.ingest()?;
        let failed = |source| Error::io("pack the cache mount", &data)(source);
        // The tar is written into a pipe by one thread, hashed on the way (its diff id),
        // and compressed from the pipe by this one, as layers are at push.
        let (reader, writer) = std::io::pipe().map_err(failed)?;
        let (ingest, diff_id) = std::thread::scope(|scope| {
            let tar = scope.spawn(|| {
                let hashing = crate::layer::write_layer(
                    &data,
                    HashingWriter::new(writer),
                    Default::default(),
                )?;
                // The pipe's writing end closes here: the compressor sees the end.
                let (_, diff_id, _) = hashing.finish();
                Ok::<_, std::io::Error>(diff_id)
            });
            let compressed = compression.compress(reader, ingest);
            let diff_id = tar
                .join()
                .map_err(|_| std::io::Error::other("the tar writer panicked"));
            Ok::<_, std::io::Error>((compressed?, diff_id??))
        })
        .map_err(failed)?;
        let (digest, size) = ingest.commit(None)?;
        Ok(Some((
            Descriptor::new(compression.media_type(), digest, size),
            diff_id,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(sharing: CacheSharing) -> CacheMountOptions {
        CacheMountOptions {
            sharing,
            ..Default::default()
        }
    }

    const NO_INIT: &dyn Fn(&Path) -> io::Result<()> = &|_| Ok(());

    #[test]
    fn ids_are_hashed_and_dirs_persist() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let escape = "../../../etc";
        let mount = store
            .cache_mount(escape, &opts(CacheSharing::Shared), NO_INIT, &|| false)
            .unwrap()
            .unwrap();
        assert!(mount.created);
        assert!(mount.dir.starts_with(root.path().join(DIR)));
        assert_eq!(
            mount.dir,
            root.path()
                .join(DIR)
                .join(Digest::of(escape.as_bytes()).hex())
                .join("0/data")
        );
        fs::write(mount.dir.join("kept"), "1").unwrap();
        // Shared: a second user gets the same directory at once.
        let again = store
            .cache_mount(escape, &opts(CacheSharing::Shared), NO_INIT, &|| false)
            .unwrap()
            .unwrap();
        assert!(!again.created);
        assert_eq!(again.dir, mount.dir);
        drop((mount, again));
        let usage = store.cache_mounts().unwrap();
        assert_eq!(usage.len(), 1);
        assert_eq!(usage[0].id, escape);
    }

    #[test]
    fn private_and_locked_users_exclude_each_other() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let first = store
            .cache_mount("go", &opts(CacheSharing::Locked), NO_INIT, &|| false)
            .unwrap()
            .unwrap();
        // Locked while held: the waiter gives up when told to.
        let waited = std::cell::Cell::new(0);
        let second = store
            .cache_mount("go", &opts(CacheSharing::Locked), NO_INIT, &|| {
                waited.set(waited.get() + 1);
                waited.get() < 3
            })
            .unwrap();
        assert!(second.is_none());
        assert_eq!(waited.get(), 3);
        // Private: another directory, made for it.
        let private = store
            .cache_mount("go", &opts(CacheSharing::Private), NO_INIT, &|| false)
            .unwrap()
            .unwrap();
        assert_ne!(private.dir, first.dir);
        assert!(private.created);
        drop(first);
        let locked = store
            .cache_mount("go", &opts(CacheSharing::Locked), NO_INIT, &|| false)
            .unwrap()
            .unwrap();
        assert!(!locked.created);
        drop((locked, private));
    }

    #[test]
    fn new_dirs_get_mode_and_content_and_prune_removes_idle_ones() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let opts = CacheMountOptions {
            mode: 0o700,
            ..Default::default()
        };
        let mount = store
            .cache_mount(
                "seeded",
                &opts,
                &|dir| fs::write(dir.join("seed"), "s"),
                &|| false,
            )
            .unwrap()
            .unwrap();
        let meta = fs::metadata(&mount.dir).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o700);
        assert_eq!(fs::read_to_string(mount.dir.join("seed")).unwrap(), "s");
        // In use: prune leaves it.
        assert_eq!(store.prune_cache_mounts(None, false).unwrap().0, 0);
        let dir = mount.dir.clone();
        drop(mount);
        assert_eq!(store.prune_cache_mounts(Some(3600), false).unwrap().0, 0);
        assert_eq!(store.prune_cache_mounts(None, true).unwrap().0, 1);
        assert!(dir.exists());
        assert_eq!(store.prune_cache_mounts(None, false).unwrap().0, 1);
        assert!(!dir.exists());
        assert!(store.cache_mounts().unwrap().is_empty());
        assert_eq!(fs::read_dir(root.path().join(DIR)).unwrap().count(), 0);
    }
}
