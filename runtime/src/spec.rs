//! What a sandbox runs and over which mounts: the data the caller hands the runtime.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One process to run in a fresh sandbox.
///
/// The runtime mounts `root` as the sandbox's `/`, then `mounts` inside it in order, then
/// its own `/proc`, `/dev` and `/sys`; it pivots into the root, applies `process` and
/// `limits`, and runs `process.args`. Every mount and process of the sandbox is gone when
/// [`crate::Child::wait`] returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// The root filesystem, typically an overlay of snapshot directories.
    pub root: Mount,
    /// Further mounts; each `target` is an absolute path inside the sandbox.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    pub process: Process,
    pub hostname: String,
    pub network: Network,
    #[serde(default)]
    pub limits: Limits,
    /// Mount the root read-only.
    #[serde(default)]
    pub readonly_root: bool,
}

/// A filesystem to mount, as data: the runtime performs it, the store only describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// `overlay`, `bind`, `tmpfs`, ...
    pub fstype: String,
    /// The source path for binds; a label such as `overlay` otherwise.
    pub source: PathBuf,
    /// For `root`, ignored; otherwise an absolute path inside the sandbox.
    pub target: PathBuf,
    /// Options as in mount(8): `ro`, `lowerdir=…`, `upperdir=…`, `workdir=…`, `rbind`, …
    pub options: Vec<String>,
}

impl Mount {
    /// An overlay: `lower` top-most first. With no `upper`, the overlay is read-only.
    /// With no `lower` at all, `empty_lower` (an empty directory) stands in, because
    /// overlayfs needs at least one lower directory.
    pub fn overlay(
        lower: &[PathBuf],
        upper: Option<(PathBuf, PathBuf)>,
        empty_lower: PathBuf,
    ) -> Mount {
        let mut lowers: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
        if lowers.is_empty() {
            lowers.push(empty_lower.display().to_string());
        }
        let mut options = vec![format!("lowerdir={}", lowers.join(":"))];
        match upper {
            Some((upper, work)) => {
                options.push(format!("upperdir={}", upper.display()));
                options.push(format!("workdir={}", work.display()));
            }
            // A single lower without upper is refused by overlayfs; a read-only overlay
            // of one dir is fine with two lowers, so repeat the empty dir.
            None if lowers.len() == 1 => {
                options[0] = format!("lowerdir={}:{}", lowers[0], empty_lower.display());
            }
            None => {}
        }
        Mount {
            fstype: "overlay".into(),
            source: "overlay".into(),
            target: "/".into(),
            options,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Process {
    /// argv; `args[0]` is looked up in the sandbox's `PATH` (from `env`) when it has no `/`.
    pub args: Vec<String>,
    /// `KEY=value` entries, exactly the environment the process gets.
    pub env: Vec<String>,
    /// Absolute working directory inside the sandbox, resolved inside the root.
    pub cwd: String,
    /// `name`, `uid`, `name:group`, `uid:gid`; empty means root. Resolved from the sandbox's
    /// own `/etc/passwd` and `/etc/group`.
    #[serde(default)]
    pub user: String,
    /// Allocate a pseudo-terminal for the process.
    #[serde(default)]
    pub terminal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// A new network namespace with only loopback, up.
    None,
    /// The host's network namespace.
    Host,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory limit in bytes (swap is not allowed beyond it). The runtime's helper and
    /// init, about a megabyte, are charged to it too.
    pub memory_bytes: Option<u64>,
    /// Maximum number of processes and threads of the sandboxed process tree (the
    /// runtime's own helper and init, two processes, come on top).
    pub pids: Option<u64>,
}
