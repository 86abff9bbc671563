//! Build secrets (`--secret id=…,src=…|env=…`) for `RUN --mount=type=secret`.
//!
//! A secret is read only when a step mounts it. As a file it lives, for that step only, in
//! a private directory on a memory-backed filesystem (`$XDG_RUNTIME_DIR`, `/dev/shm` or
//! `/run`, whichever is tmpfs or ramfs) and is bind-mounted read-only into the sandbox;
//! its content never reaches the store, a layer, the cache key, the history or the logs.
//! Only when no memory-backed directory is available does it go to the store's scratch
//! directory (removed when the step ends, and by the next `Store::open` after a crash).
//! Memory-backed directories a crashed rbuild left are removed by the next step that
//! mounts a secret.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use rbuild_store::Store;

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file's content.
    File(PathBuf),
    /// The value of an environment variable of rbuild's own process.
    Env(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret `{id}` from {path}")]
    Read {
        id: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Given as `env=NAME`, and `NAME` is not set in rbuild's environment.
    #[error("secret `{id}` comes from the environment variable `{env}`, which is not set")]
    Unset { id: String, env: String },
    #[error("secret `{id}` is not valid UTF-8, so it cannot be the environment variable `{env}`")]
    NotUtf8 { id: String, env: String },
    #[error("failed to make a directory for the step's secrets")]
    Dir {
        #[source]
        source: io::Error,
    },
    #[error("failed to write secret `{id}` for the step")]
    Write {
        id: String,
        #[source]
        source: io::Error,
    },
}

impl SecretSource {
    /// The secret's value, which must be there: its file read, its variable set.
    pub fn read_given(&self, id: &str) -> Result<Vec<u8>, SecretError> {
        self.read(id)?.ok_or_else(|| match self {
            SecretSource::Env(env) => SecretError::Unset {
                id: id.to_owned(),
                env: env.clone(),
            },
            SecretSource::File(_) => unreachable!("a file secret is read or fails"),
        })
    }

    /// The secret's value; `None` when its environment variable is not set.
    pub fn read(&self, id: &str) -> Result<Option<Vec<u8>>, SecretError> {
        match self {
            SecretSource::File(path) => {
                fs::read(path)
                    .map(Some)
                    .map_err(|source| SecretError::Read {
                        id: id.to_owned(),
                        path: path.clone(),
                        source,
                    })
            }
            SecretSource::Env(name) => Ok(std::env::var_os(name)
                .map(|value| std::os::unix::ffi::OsStrExt::as_bytes(value.as_os_str()).to_vec())),
        }
    }
}

/// The secret files of one step; removed on drop.
#[derive(Debug)]
pub(crate) struct SecretFiles {
    dir: PathBuf,
    count: usize,
}

impl SecretFiles {
    /// A private directory for one step's secrets, memory-backed when possible, else
    /// in the store's scratch directory.
    pub(crate) fn create(store: &Store) -> Result<SecretFiles, SecretError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = match memory_backed_dir() {
            Some(parent) => {
                remove_stale(&parent);
                let dir = parent.join(format!(
                    "rbuild-secrets-{}-{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed)
                ));
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|source| SecretError::Dir { source })?;
                dir
            }
            None => {
                let dir = store
                    .temp_dir("secrets")
                    .map_err(|source| SecretError::Dir {
                        source: io::Error::other(source),
                    })?;
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                    .map_err(|source| SecretError::Dir { source })?;
                dir
            }
        };
        Ok(SecretFiles { dir, count: 0 })
    }

    /// Writes one secret file with its mode and owner; returns its path.
    pub(crate) fn write(
        &mut self,
        id: &str,
        value: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<PathBuf, SecretError> {
        self.count += 1;
        let path = self.dir.join(self.count.to_string());
        let write = || -> io::Result<()> {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            file.write_all(value)?;
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
            file.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
            Ok(())
        };
        write().map_err(|source| SecretError::Write {
            id: id.to_owned(),
            source,
        })?;
        Ok(path)
    }
}

impl Drop for SecretFiles {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Removes the secret directories in `parent` of rbuild processes that died before they
/// could (their names carry the pid).
fn remove_stale(parent: &std::path::Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix("rbuild-secrets-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH);
        if gone {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// The first of `$XDG_RUNTIME_DIR`, `/dev/shm` and `/run` that is a writable tmpfs or
/// ramfs.
fn memory_backed_dir() -> Option<PathBuf> {
    use nix::sys::statfs::{FsType, TMPFS_MAGIC, statfs};
    // nix names no ramfs constant; the kernel's `RAMFS_MAGIC`.
    const RAMFS_MAGIC: FsType = FsType(0x8584_58f6_u32 as _);
    let candidates = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/dev/shm", "/run"].map(PathBuf::from));
    candidates.into_iter().find(|dir| {
        let memory = statfs(dir.as_path()).is_ok_and(|fs| {
            fs.filesystem_type() == TMPFS_MAGIC || fs.filesystem_type() == RAMFS_MAGIC
        });
        memory && nix::unistd::access(dir.as_path(), nix::unistd::AccessFlags::W_OK).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_go_away_with_the_step() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let mut files = SecretFiles::create(&store).unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let path = files.write("token", b"s3cr3t", 0o400, uid, gid).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"s3cr3t");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o400);
        if memory_backed_dir().is_some() {
            assert!(!path.starts_with(root.path()), "{}", path.display());
        }
        let dir = path.parent().unwrap().to_owned();
        drop(files);
        assert!(!dir.exists());
    }

    #[test]
    fn directories_of_dead_processes_are_removed() {
        let parent = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = parent.path().join(format!("rbuild-secrets-{dead}-0"));
        let live = parent
            .path()
            .join(format!("rbuild-secrets-{}-0", std::process::id()));
        let other = parent.path().join("unrelated-1");
        for dir in [&stale, &live, &other] {
            fs::create_dir(dir).unwrap();
        }
        remove_stale(parent.path());
        assert!(!stale.exists());
        assert!(live.exists() && other.exists());
    }

    #[test]
    fn reads_files_and_variables() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        fs::write(&file, "from file").unwrap();
        assert_eq!(
            SecretSource::File(file).read("a").unwrap().unwrap(),
            b"from file"
        );
        let missing = SecretSource::File(dir.path().join("none")).read("b");
        assert!(matches!(missing, Err(SecretError::Read { .. })));
        assert_eq!(
            SecretSource::Env("RBUILD_TEST_SURELY_UNSET_VARIABLE".into())
                .read("c")
                .unwrap(),
            None
        );
    }
}
