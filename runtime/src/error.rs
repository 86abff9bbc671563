//! Errors of the sandbox runtime as its callers see them.

use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Why a sandbox could not be started, waited for or cleaned up.
///
/// The process's own non-zero exit is not an error: it is an [`crate::Outcome`]. Failures to
/// set up the sandbox (a mount, the user, the working directory, the executable) are
/// [`Error::Setup`], with a one-line message made to be shown as is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("failed to read {path}")]
    ReadMountinfo {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no cgroup hierarchy with the `memory` or `pids` controller is mounted")]
    NoCgroupHierarchy,
    #[error("cgroup parent `{parent}` must be a relative path without `..`")]
    InvalidCgroupParent { parent: String },
    #[error("cgroup controller `{controller}` is not available under {path}")]
    MissingController {
        controller: &'static str,
        path: PathBuf,
    },
    #[error("the bridge network is not available: {reason}")]
    BridgeUnavailable { reason: String },
    #[error("a {limit} limit needs a cgroup rbuild can write, and {reason}")]
    LimitUnavailable { limit: &'static str, reason: String },
    #[error("failed to create cgroup {path}")]
    CreateCgroup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to read {path}")]
    ReadCgroup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write `{value}` to {path}")]
    WriteCgroup {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to remove cgroup {path}")]
    RemoveCgroup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to create sandbox state directory {path}")]
    CreateStateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to remove sandbox state directory {path}")]
    RemoveStateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write {path}")]
    WriteState {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to set up the terminal")]
    Terminal {
        #[source]
        source: nix::Error,
    },
    #[error("failed to start sandbox helper {helper}")]
    SpawnHelper {
        helper: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to wait for the sandbox helper")]
    WaitHelper {
        #[source]
        source: io::Error,
    },
    #[error("failed to read sandbox status {path}")]
    ReadStatus {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("sandbox status {path} is malformed")]
    ParseStatus {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// `why` is empty, or says what kept the status from being written (a full disk).
    #[error("sandbox helper ended ({status}) without reporting how the process ended{why}")]
    HelperFailed {
        status: std::process::ExitStatus,
        why: String,
    },
    /// The sandbox could not be set up; `message` is complete (it includes the causes).
    #[error("{message}")]
    Setup { kind: SetupKind, message: String },
    #[error("failed to make a private mount namespace for the mount thread")]
    PrivateMountNamespace {
        #[source]
        source: nix::Error,
    },
    #[error("failed to mount {fstype} on {target}")]
    Mount {
        fstype: String,
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("failed to start the mount thread")]
    SpawnThread {
        #[source]
        source: io::Error,
    },
    #[error(
        "bridge `{name}` with subnet {subnet} is not valid: the name must be 1 to 15 letters, digits, `-`, `_` or `.`, and the subnet a network address with a prefix of 8 to 30"
    )]
    InvalidBridge { name: String, subnet: String },
    #[error("failed to allocate a sandbox address under {path}")]
    AllocateAddress {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no free address left in {subnet} of bridge `{bridge}`")]
    AddressesExhausted { bridge: String, subnet: String },
    #[error("failed to read {path}")]
    ReadHostFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// What failed, for a setup failure of the sandbox.
    pub fn setup_kind(&self) -> Option<SetupKind> {
        match self {
            Error::Setup { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// Which part of the sandbox's setup failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SetupKind {
    /// A mount: the root, one of `SandboxSpec::mounts`, `/proc`, `/dev`, `/sys`, ...
    Mount,
    /// Joining the sandbox's cgroup.
    Cgroup,
    /// `process.user` is not in the sandbox's `/etc/passwd` or `/etc/group`, or switching
    /// to it failed.
    User,
    /// `process.cwd` is not a directory or could not be created or entered.
    WorkingDirectory,
    /// `process.args[0]` was not found or could not be executed.
    Executable,
    /// The network: the bridge, the veth pair, addresses, routes.
    Network,
    /// Namespaces, signals, the terminal, ...
    Other,
}
