//! Which cgroups rbuild may write. Root: the whole hierarchy. An ordinary user (rootless):
//! on cgroup v2, the cgroup delegated to it, as systemd gives one to a unit with
//! `Delegate=yes` (`systemd-run --user --scope -p Delegate=yes rbuild …`) and a container
//! runtime gives a container its own cgroup namespace; on cgroup v1, none (its hierarchies
//! are root's).
//!
//! A delegated v2 cgroup usually holds processes (rbuild, the shell that started it), and
//! cgroup v2 enables controllers for children only in a cgroup without processes of its
//! own. So rbuild moves them all into a leaf, `rbuild-init`, and makes the sandboxes'
//! cgroups beside it, as rootlesskit does for rootless BuildKit. A later rbuild started
//! from that leaf finds it by name and uses its parent again.

use std::fs;
use std::path::{Path, PathBuf};

use nix::unistd::{AccessFlags, access};

use super::{Hierarchy, create_dir_all, read_file, write_file};

/// The leaf the delegated cgroup's processes are moved into.
const INIT_LEAF: &str = "rbuild-init";

/// `hierarchy` where rbuild may write it; otherwise [`Hierarchy::Unavailable`] with the
/// reason.
pub(crate) fn writable(hierarchy: Hierarchy) -> Hierarchy {
    let unavailable = |hierarchy: &Hierarchy, reason: String| Hierarchy::Unavailable {
        version: hierarchy.version(),
        cgroupfs: hierarchy.cgroupfs(),
        reason,
    };
    match &hierarchy {
        Hierarchy::V1 { memory, pids, .. } => {
            let probe = memory.as_ref().or(pids.as_ref());
            match probe {
                Some(dir) if is_writable(dir) => hierarchy,
                Some(dir) => unavailable(
                    &hierarchy,
                    format!(
                        "cgroup v1 ({}) is root's alone: a user cannot have cgroups of its own there",
                        dir.display()
                    ),
                ),
                None => hierarchy,
            }
        }
        Hierarchy::V2 { root } => {
            if is_writable(&root.join("cgroup.procs")) {
                return hierarchy;
            }
            match delegated(root) {
                Ok(base) => Hierarchy::V2 { root: base },
                Err(reason) => unavailable(&hierarchy, reason),
            }
        }
        Hierarchy::Unavailable { .. } => hierarchy,
    }
}

/// The delegated cgroup this process is in, made ready for sandboxes beside `rbuild-init`.
fn delegated(mount: &Path) -> Result<PathBuf, String> {
    let own = own_cgroup(mount)
        .ok_or_else(|| "this process's cgroup v2 is not listed in /proc/self/cgroup".to_owned())?;
    let base = if own.file_name().is_some_and(|name| name == INIT_LEAF) {
        own.parent().map_or_else(|| own.clone(), Path::to_path_buf)
    } else {
        own.clone()
    };
    for file in ["cgroup.procs", "cgroup.subtree_control"] {
        if !is_writable(&base.join(file)) {
            return Err(format!(
                "cgroup {} is not delegated to this user (run rbuild with `systemd-run --user --scope -p Delegate=yes rbuild …`, or in a container with a writable cgroup namespace)",
                base.display()
            ));
        }
    }
    let leaf = base.join(INIT_LEAF);
    create_dir_all(&leaf).map_err(|err| err.to_string())?;
    // Processes may still be forked into the base while they are moved: a few rounds.
    for _ in 0..10 {
        let procs = read_file(&base.join("cgroup.procs")).map_err(|err| err.to_string())?;
        let pids: Vec<&str> = procs.split_whitespace().collect();
        if pids.is_empty() {
            return Ok(base);
        }
        for pid in pids {
            // A process that exited meanwhile is fine.
            let _ = write_file(&leaf.join("cgroup.procs"), pid);
        }
    }
    Err(format!(
        "the processes of cgroup {} could not all be moved to {INIT_LEAF}",
        base.display()
    ))
}

/// `<mount>/<path>` for this process's `0::<path>` line of `/proc/self/cgroup`.
fn own_cgroup(mount: &Path) -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = text.lines().find_map(|line| line.strip_prefix("0::"))?;
    Some(mount.join(path.trim_start_matches('/')))
}

fn is_writable(path: &Path) -> bool {
    access(path, AccessFlags::W_OK).is_ok()
}
