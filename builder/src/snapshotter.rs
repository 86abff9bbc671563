//! How steps see the store's snapshots as filesystems: overlayfs where it can be mounted
//! (root; an ordinary user's namespace with `userxattr`, Linux 5.11), else copies made by
//! the store (`Store::materialize`, `Store::capture`, `Store::merge_into`), as where the
//! store is on an overlay itself (a container's root filesystem) or on an old kernel.
//!
//! Chosen once per process by mounting a small overlay in the store's `tmp/`;
//! `RBUILD_SNAPSHOTTER=overlayfs|copy` chooses instead (`copy` is how the tests and the
//! benchmarks run the fallback where overlayfs works).

use std::fs;
use std::path::{Path, PathBuf};

use rbuild_runtime::{HostMount, Mount};
use rbuild_store::{ActiveSnapshot, Materialized, Store};

use crate::error::BuildError;
use crate::exec::overlay;
use crate::snapshots::Snapshots;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snapshotter {
    /// Kernel overlayfs over the snapshot directories.
    Overlayfs,
    /// Whole copies: each step's root is the merged layers copied into a directory, and its
    /// changes are found by comparing afterwards. `reason` says why overlayfs was not used.
    Copy { reason: String },
}

impl Snapshotter {
    /// Overlayfs if an overlay of the store's directories mounts here, else copies.
    pub fn detect(store: &Store) -> Snapshotter {
        match std::env::var("RBUILD_SNAPSHOTTER").as_deref() {
            Ok("copy") => {
                return Snapshotter::Copy {
                    reason: "RBUILD_SNAPSHOTTER=copy".to_owned(),
                };
            }
            Ok("overlayfs") => return Snapshotter::Overlayfs,
            _ => {}
        }
        // The answer depends on the kernel and on the store's filesystem: remembered for
        // them in the store, as a probe costs a mount namespace and a mount (5–8 ms).
        let key = probe_key(store.root());
        if let Some(known) = key.as_deref().and_then(|key| remembered(store, key)) {
            return known;
        }
        let found = match probe(store) {
            Ok(()) => Snapshotter::Overlayfs,
            Err(reason) => Snapshotter::Copy {
                reason: format!("{}{reason}", why_not(store.root())),
            },
        };
        if let Some(key) = key {
            let reason = match &found {
                Snapshotter::Overlayfs => String::new(),
                Snapshotter::Copy { reason } => reason.clone(),
            };
            let record =
                serde_json::json!({"key": key, "snapshotter": found.name(), "reason": reason});
            let _ = store.put_state(STATE, record.to_string().as_bytes());
        }
        found
    }

    pub fn name(&self) -> &'static str {
        match self {
            Snapshotter::Overlayfs => "overlayfs",
            Snapshotter::Copy { .. } => "copy",
        }
    }

    /// A writable filesystem for `active`: with overlayfs, the overlay to mount; with
    /// copies, its lower stack copied into a directory (slow: call from a blocking thread).
    pub(crate) fn writable(
        &self,
        store: &dyn Snapshots,
        active: &ActiveSnapshot,
    ) -> Result<Writable, BuildError> {
        match self {
            Snapshotter::Overlayfs => Ok(Writable::Overlay(overlay(
                &active.lowers,
                Some((active.upper.clone(), active.work.clone())),
                store.empty_dir()?,
                store.overlay_xattrs(),
            ))),
            Snapshotter::Copy { .. } => Ok(Writable::Copy(store.materialize(active)?)),
        }
    }

    /// A read-only view of `lowers` (top first) at the existing empty directory `at`: an
    /// overlay to mount there, or (copies) the merged files written into it, with no mount.
    pub(crate) fn read_only(
        &self,
        store: &dyn Snapshots,
        lowers: &[PathBuf],
        at: &Path,
    ) -> Result<Option<HostMount>, BuildError> {
        match self {
            Snapshotter::Overlayfs => Ok(Some(HostMount {
                mount: overlay(lowers, None, store.empty_dir()?, store.overlay_xattrs()),
                at: at.to_owned(),
            })),
            Snapshotter::Copy { .. } => {
                store.merge_into(lowers, at)?;
                Ok(None)
            }
        }
    }
}

impl Snapshotter {
    /// A throwaway writable root over `lowers` in the existing empty directory `dir`, for
    /// `rbuild run`, whose changes are never kept: an overlay with `dir/upper` and
    /// `dir/work`, or (copies) the merged files in `dir/merged`, bound.
    pub fn scratch_root(
        &self,
        store: &dyn Snapshots,
        lowers: &[PathBuf],
        dir: &Path,
    ) -> Result<Mount, rbuild_store::Error> {
        let create = |name: &str| {
            let path = dir.join(name);
            fs::create_dir(&path).map_err(|source| rbuild_store::Error::Io {
                action: "create",
                path: path.clone(),
                source,
            })?;
            Ok::<_, rbuild_store::Error>(path)
        };
        Ok(match self {
            Snapshotter::Overlayfs => overlay(
                lowers,
                Some((create("upper")?, create("work")?)),
                store.empty_dir()?,
                store.overlay_xattrs(),
            ),
            Snapshotter::Copy { .. } => {
                let merged = create("merged")?;
                store.merge_into(lowers, &merged)?;
                bind(&merged)
            }
        })
    }
}

/// A step's writable filesystem (see [`Snapshotter::writable`]).
#[derive(Debug)]
pub(crate) enum Writable {
    Overlay(Mount),
    Copy(Materialized),
}

impl Writable {
    /// What to mount as the root (of a sandbox, or at a host directory).
    pub(crate) fn mount(&self) -> Mount {
        match self {
            Writable::Overlay(mount) => mount.clone(),
            Writable::Copy(materialized) => bind(&materialized.root),
        }
    }

    /// Where the builder writes on the host: with overlayfs, `scratch/rootfs` with the
    /// overlay to mount there (in a thread's private mount namespace); with copies, the copy
    /// itself.
    pub(crate) fn on_host(&self, scratch: &Path) -> std::io::Result<(PathBuf, Option<HostMount>)> {
        match self {
            Writable::Overlay(mount) => {
                let at = scratch.join("rootfs");
                fs::create_dir(&at)?;
                Ok((
                    at.clone(),
                    Some(HostMount {
                        mount: mount.clone(),
                        at,
                    }),
                ))
            }
            Writable::Copy(materialized) => Ok((materialized.root.clone(), None)),
        }
    }

    /// After the writes: with copies, the changes into `active`'s upper dir (the copy goes).
    pub(crate) fn finish(
        self,
        store: &dyn Snapshots,
        active: &ActiveSnapshot,
    ) -> Result<(), BuildError> {
        match self {
            Writable::Overlay(_) => Ok(()),
            Writable::Copy(materialized) => Ok(store.capture(active, materialized)?),
        }
    }
}

/// A bind mount of `dir`.
pub(crate) fn bind(dir: &Path) -> Mount {
    Mount {
        fstype: "bind".into(),
        source: dir.to_owned(),
        target: "/".into(),
        options: vec!["bind".into()],
    }
}

/// The store's state document with the last probe's answer.
const STATE: &str = "snapshotter";

/// What the probe's answer depends on: the kernel's release and the store's filesystem.
fn probe_key(root: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let kernel = nix::sys::utsname::uname().ok()?;
    let device = fs::metadata(root.join("snapshots")).ok()?.dev();
    Some(format!("{} {device}", kernel.release().to_string_lossy()))
}

/// The remembered answer for `key`, if the last probe was made for it.
fn remembered(store: &Store, key: &str) -> Option<Snapshotter> {
    let bytes = store.get_state(STATE).ok()??;
    let record: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    if record["key"] != key {
        return None;
    }
    match record["snapshotter"].as_str()? {
        "overlayfs" => Some(Snapshotter::Overlayfs),
        "copy" => Some(Snapshotter::Copy {
            reason: record["reason"].as_str()?.to_owned(),
        }),
        _ => None,
    }
}

/// What the store's filesystem says about overlayfs failing on it.
fn why_not(root: &Path) -> &'static str {
    const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    // The magic's type is the C library's (`i64` in glibc, `u64` in musl).
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    let magic = |stat: nix::sys::statfs::Statfs| stat.filesystem_type().0 as i64;
    match nix::sys::statfs::statfs(root).map(magic) {
        Ok(OVERLAYFS_SUPER_MAGIC) => {
            "the store is on an overlay (a container's own filesystem?), which overlayfs cannot write over: a volume for the store (an `emptyDir`) lets rbuild use overlayfs; "
        }
        Ok(TMPFS_MAGIC) => "the store is on a tmpfs, which keeps no user xattrs before Linux 6.6: ",
        _ => "",
    }
}

/// Mounts an overlay of a store directory with one file over another, writes through it,
/// and checks the write landed in the upper directory.
fn probe(store: &Store) -> Result<(), String> {
    let dir = store
        .temp_dir("overlay-probe")
        .map_err(|err| err.to_string())?;
    let result = (|| {
        let [lower, upper, work, merged] =
            ["lower", "upper", "work", "merged"].map(|name| dir.join(name));
        for path in [&lower, &upper, &work, &merged] {
            fs::create_dir(path).map_err(|err| err.to_string())?;
        }
        fs::write(lower.join("file"), "lower").map_err(|err| err.to_string())?;
        let empty = store.empty_dir().map_err(|err| err.to_string())?;
        let mount = HostMount {
            mount: overlay(
                &[lower],
                Some((upper.clone(), work)),
                empty,
                store.overlay_xattrs(),
            ),
            at: merged.clone(),
        };
        rbuild_runtime::with_mounts(&[mount], || fs::write(merged.join("file"), "upper"))
            .map_err(|err| crate::error::with_causes(&err))?
            .map_err(|err| format!("writing through overlayfs failed: {err}"))?;
        match fs::read_to_string(upper.join("file")) {
            Ok(text) if text == "upper" => Ok(()),
            _ => Err("a write through overlayfs did not reach its upper directory".to_owned()),
        }
    })();
    let _ = fs::remove_dir_all(&dir);
    result
}
