//! Mounts as data turned into mount(2) calls ([`plan`], [`mount_at`]), paths resolved inside
//! a root ([`resolve`]), and mount points created and held by descriptor inside it
//! ([`point`]), without ever following a symlink out of it.

mod api;
mod point;
mod resolve;

pub(crate) use api::bind_or_remount;
pub(crate) use point::{
    MountPoint, MountPointKind, Stub, create_in, ensure_mount_point, fd_path, fd_stat,
    filesystem_magic, is_kind, open_beneath, open_path, procfs_ready,
};
pub(crate) use resolve::{open_in_root, resolve_in_root};

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};

use crate::spec::Mount;

/// A failed mount(2), with what was being mounted where.
#[derive(Debug, thiserror::Error)]
#[error("failed to mount {fstype} {origin} on {target}")]
pub(crate) struct MountError {
    pub fstype: String,
    pub origin: String,
    pub target: PathBuf,
    #[source]
    pub errno: nix::Error,
}

/// mount(8)-style options split into flags and filesystem data.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct MountPlan {
    pub bind: bool,
    pub flags: MsFlags,
    /// Applied by a separate mount(2) call, as the kernel requires.
    pub propagation: MsFlags,
    pub data: String,
}

pub(crate) fn plan(fstype: &str, options: &[String]) -> MountPlan {
    let mut plan = MountPlan {
        bind: fstype == "bind",
        flags: MsFlags::empty(),
        propagation: MsFlags::empty(),
        data: String::new(),
    };
    let mut data: Vec<&str> = Vec::new();
    for option in options {
        let (set, clear) = match option.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "bind" => {
                plan.bind = true;
                continue;
            }
            "rbind" => {
                plan.bind = true;
                (MsFlags::MS_REC, MsFlags::empty())
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                plan.propagation = match option.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                if option.starts_with('r') {
                    plan.propagation |= MsFlags::MS_REC;
                }
                continue;
            }
            "defaults" => continue,
            other => {
                data.push(other);
                continue;
            }
        };
        plan.flags = (plan.flags | set) & !clear;
    }
    plan.data = data.join(",");
    plan
}

/// Performs `mount` at `target` (its own `target` field is not looked at).
///
/// A bind mount with flags such as `ro` takes two calls: the kernel ignores them on the
/// bind itself and applies them only on a remount.
pub(crate) fn mount_at(spec: &Mount, target: &Path) -> Result<(), MountError> {
    let plan = plan(&spec.fstype, &spec.options);
    let error = |errno| MountError {
        fstype: spec.fstype.clone(),
        origin: spec.source.display().to_string(),
        target: target.to_owned(),
        errno,
    };
    if plan.bind {
        let recursive = plan.flags & MsFlags::MS_REC;
        mount(
            Some(&spec.source),
            target,
            None::<&str>,
            MsFlags::MS_BIND | recursive,
            None::<&str>,
        )
        .map_err(error)?;
        let extra = plan.flags & !MsFlags::MS_REC;
        if !extra.is_empty() {
            let explicit_rw = spec.options.iter().any(|option| option == "rw");
            mount(
                None::<&str>,
                target,
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | extra | kept_flags(target, explicit_rw),
                None::<&str>,
            )
            .map_err(error)?;
        }
    } else if let Some((dir, data)) = shortened_overlay_data(&spec.fstype, &plan.data) {
        // Too long for one page: name the directories relative to their common parent
        // and mount from there (the kernel resolves them against the caller's cwd). Every
        // caller runs with a cwd of its own: the sandbox's helper and init are single
        // threads, and host mounts run in a thread that unshared CLONE_FS.
        let here = fs::File::open(".").map_err(|e| error(io_errno(&e)))?;
        nix::unistd::chdir(&dir).map_err(error)?;
        let mounted = mount(
            Some(&spec.source),
            target,
            Some(spec.fstype.as_str()),
            plan.flags,
            Some(data.as_str()),
        );
        nix::unistd::fchdir(std::os::fd::AsRawFd::as_raw_fd(&here)).map_err(error)?;
        mounted.map_err(error)?;
    } else {
        let data = (!plan.data.is_empty()).then_some(plan.data.as_str());
        mount(
            Some(&spec.source),
            target,
            Some(spec.fstype.as_str()),
            plan.flags,
            data,
        )
        .map_err(error)?;
    }
    if !plan.propagation.is_empty() {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            plan.propagation,
            None::<&str>,
        )
        .map_err(error)?;
    }
    Ok(())
}

/// Performs `mount` onto the mount point `point`, by its descriptor: a bind through the
/// descriptor-based mount API, any other filesystem through the point's magic link (its
/// flags are given in the one call). On kernels without the API (< 5.12) a bind goes by
/// path, as it did before.
pub(crate) fn mount_onto(spec: &Mount, point: &MountPoint) -> Result<(), MountError> {
    let plan = plan(&spec.fstype, &spec.options);
    let error = |errno| MountError {
        fstype: spec.fstype.clone(),
        origin: spec.source.display().to_string(),
        target: point.sandbox_path.clone(),
        errno,
    };
    if plan.bind {
        let explicit_rw = spec.options.iter().any(|option| option == "rw");
        match api::bind_onto(
            &spec.source,
            std::os::fd::AsFd::as_fd(&point.fd),
            plan.flags,
            plan.propagation,
            explicit_rw,
        ) {
            Err(nix::errno::Errno::ENOSYS) => return mount_at(spec, &point.path),
            result => return result.map_err(error),
        }
    }
    let without_propagation = Mount {
        options: spec
            .options
            .iter()
            .filter(|option| !plan_is_propagation(option))
            .cloned()
            .collect(),
        ..spec.clone()
    };
    // The target is the descriptor's magic link; messages name the sandbox's path. ENOENT
    // there means the directory was removed after it was found (a racing sandbox sharing
    // it): nothing was mounted.
    mount_at(&without_propagation, &point.target()).map_err(|err| MountError {
        target: point.sandbox_path.clone(),
        ..err
    })?;
    if !plan.propagation.is_empty() {
        // The point's descriptor names the directory under the new mount: the mount is
        // looked up again to change its propagation.
        let mounted = point.reopen().map_err(|e| error(io_errno(&e)))?;
        mount(
            None::<&str>,
            &fd_path(&mounted),
            None::<&str>,
            plan.propagation,
            None::<&str>,
        )
        .map_err(error)?;
    }
    Ok(())
}

fn plan_is_propagation(option: &str) -> bool {
    matches!(
        option.trim_start_matches('r'),
        "private" | "shared" | "slave" | "unbindable"
    )
}

/// The flags the bind mount at `target` has from its source, which a remount keeps: a
/// remount sets a mount's flags anew, and in a user namespace (rootless) the flags the
/// source's owner gave it (`nosuid`, `nodev`, `noexec`, `ro`, the atime ones) are locked:
/// leaving one out fails with `EPERM`. `ro` is kept unless `rw` was asked for.
fn kept_flags(target: &Path, explicit_rw: bool) -> MsFlags {
    use nix::sys::statvfs::{FsFlags, statvfs};
    let Ok(stat) = statvfs(target) else {
        return MsFlags::empty();
    };
    let current = stat.flags();
    let mut kept = MsFlags::empty();
    for (have, flag) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        // ST_RELATIME (4096) by value: nix names it for glibc only.
        (FsFlags::from_bits_retain(4096), MsFlags::MS_RELATIME),
    ] {
        if current.contains(have) {
            kept |= flag;
        }
    }
    if current.contains(FsFlags::ST_RDONLY) && !explicit_rw {
        kept |= MsFlags::MS_RDONLY;
    }
    kept
}

/// The most the kernel reads of mount(2)'s data: one page, with its terminating NUL.
const MAX_MOUNT_DATA: usize = 4095;

/// For an overlay whose options do not fit in a page (a stack of ~100 layers or more):
/// the common parent directory of its directories, and the options with each directory
/// named relative to it. `None` when the options fit, or when even that does not help.
fn shortened_overlay_data(fstype: &str, data: &str) -> Option<(PathBuf, String)> {
    if fstype != "overlay" || data.len() <= MAX_MOUNT_DATA {
        return None;
    }
    let mut paths: Vec<&Path> = Vec::new();
    for option in data.split(',') {
        match option.split_once('=') {
            Some(("lowerdir", list)) => paths.extend(list.split(':').map(Path::new)),
            Some(("upperdir" | "workdir", path)) => paths.push(Path::new(path)),
            _ => {}
        }
    }
    if paths.iter().any(|p| !p.is_absolute()) {
        return None;
    }
    let mut common = paths.first()?.parent()?.to_path_buf();
    while !paths.iter().all(|p| p.starts_with(&common)) {
        common = common.parent()?.to_path_buf();
    }
    let relative = |path: &str| -> String {
        Path::new(path)
            .strip_prefix(&common)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| path.to_owned())
    };
    let shortened: Vec<String> = data
        .split(',')
        .map(|option| match option.split_once('=') {
            Some(("lowerdir", list)) => format!(
                "lowerdir={}",
                list.split(':').map(relative).collect::<Vec<_>>().join(":")
            ),
            Some((key @ ("upperdir" | "workdir"), path)) => format!("{key}={}", relative(path)),
            _ => option.to_owned(),
        })
        .collect();
    let shortened = shortened.join(",");
    (shortened.len() <= MAX_MOUNT_DATA).then_some((common, shortened))
}

fn io_errno(err: &io::Error) -> nix::errno::Errno {
    nix::errno::Errno::from_raw(err.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plans_overlay_options_as_data() {
        let plan = plan(
            "overlay",
            &options(&["lowerdir=/a:/b", "upperdir=/u", "workdir=/w", "nosuid"]),
        );
        assert!(!plan.bind);
        assert_eq!(plan.flags, MsFlags::MS_NOSUID);
        assert_eq!(plan.data, "lowerdir=/a:/b,upperdir=/u,workdir=/w");
        assert!(plan.propagation.is_empty());
    }

    #[test]
    fn long_overlay_options_are_named_from_their_common_parent() {
        let lowers: Vec<String> = (0..200)
            .map(|n| format!("/var/lib/rbuild/snapshots/{n}/fs"))
            .collect();
        let data = format!(
            "lowerdir={},upperdir=/var/lib/rbuild/snapshots/900/fs,workdir=/var/lib/rbuild/snapshots/900/work",
            lowers.join(":")
        );
        assert!(data.len() > MAX_MOUNT_DATA);
        let (dir, short) = shortened_overlay_data("overlay", &data).unwrap();
        assert_eq!(dir, Path::new("/var/lib/rbuild/snapshots"));
        assert!(short.starts_with("lowerdir=0/fs:1/fs:2/fs:"), "{short}");
        assert!(
            short.ends_with(",upperdir=900/fs,workdir=900/work"),
            "{short}"
        );
        // Short options, and other filesystems, are left alone.
        assert_eq!(shortened_overlay_data("overlay", "lowerdir=/a:/b"), None);
        assert_eq!(shortened_overlay_data("tmpfs", &data), None);
    }

    #[test]
    fn plans_binds_and_propagation() {
        let plan = plan("none", &options(&["rbind", "ro", "rprivate"]));
        assert!(plan.bind);
        assert_eq!(plan.flags, MsFlags::MS_REC | MsFlags::MS_RDONLY);
        assert_eq!(plan.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        let plan = super::plan("bind", &options(&["ro", "rw", "slave"]));
        assert!(plan.bind);
        assert!(plan.flags.is_empty());
        assert_eq!(plan.propagation, MsFlags::MS_SLAVE);
        let plan = super::plan(
            "tmpfs",
            &options(&["size=64m", "mode=1777", "nodev", "defaults"]),
        );
        assert_eq!(plan.flags, MsFlags::MS_NODEV);
        assert_eq!(plan.data, "size=64m,mode=1777");
    }
}
