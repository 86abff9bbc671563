//! rbuild's sandbox: runs one process in new namespaces over the mounts it is given, with
//! cgroup limits (v1 and v2), Docker's default capabilities, `no_new_privs` and a seccomp
//! profile, on no network, the host's, or a bridge. It never reads the store.
//!
//! ```ignore
//! let runtime = Runtime::new(RuntimeOptions { helper: std::env::current_exe()?, state_dir, ..Default::default() })?;
//! let mut child = runtime.spawn(&spec, StdioMode::Piped)?;   // callable from a tokio task
//! let stdout = child.stdout.take();                           // tokio::process::ChildStdout
//! let outcome: Outcome = child.wait().await?;                 // mounts, cgroup and processes gone
//!
//! // in main(), before anything else (no threads, no tokio yet):
//! if std::env::args().nth(1).as_deref() == Some(rbuild_runtime::INIT_ARG) { rbuild_runtime::init_main() }
//!
//! // run a closure on a dedicated thread with mounts private to that thread (for COPY):
//! let n = rbuild_runtime::with_mounts(&[HostMount { mount, at: dir }], || count_files(&dir))?;
//! ```
//!
//! Lifecycle: `spawn` creates `<state_dir>/<id>/` (config, status, network files, `rootfs`
//! mount point), takes a bridge address if the sandbox has one, and creates the cgroup
//! `<parent>/<id>` with the limits, then starts `helper __sandbox-init <state dir>`. The
//! helper joins the cgroup, unshares the namespaces (plugging the veth pair in) and forks
//! the sandbox's init (pid 1), which mounts the root and everything else in its own mount
//! namespace, pivots, and runs the command with its privileges reduced. `wait` reads the
//! status the sandbox wrote, then removes the cgroup and the state dir and releases the
//! address. See `init` for the process tree.

mod capabilities;
mod cgroup;
mod error;
mod host_mount;
mod init;
mod mount;
mod network;
mod runtime;
mod seccomp;
mod spec;
mod state;
mod user;
pub mod userns;

pub use capabilities::{Capabilities, UnknownCapability};
pub use cgroup::CgroupVersion;
pub use error::{Error, SetupKind};
pub use host_mount::{HostMount, with_mounts};
pub use init::{INIT_ARG, init_main};
pub use network::{BridgeOptions, bridge_unavailable};
pub use runtime::{Child, ExitStatus, Outcome, Runtime, RuntimeOptions, StdioMode, signal_sandbox};
pub use spec::{
    CpuQuota, ExtraHost, Limits, Mount, Network, Process, RLIMIT_NAMES, Rlimit, SandboxSpec,
    Seccomp,
};
pub use user::{MAX_DATABASE, UserError, read_user_database};

/// For the cargo-fuzz targets in `fuzz/` only (the user module is private): not an API.
#[doc(hidden)]
pub mod fuzzing {
    /// The ids and home a sandboxed process gets for `user` (`name[:group]`, `uid[:gid]`)
    /// under the image's `/etc/passwd` and `/etc/group` texts: `(uid, gid, groups, home)`,
    /// or the error message.
    pub fn resolve_user(
        user: &str,
        passwd: &str,
        group: &str,
    ) -> Result<(u32, u32, Vec<u32>, String), String> {
        crate::user::resolve(user, passwd, group)
            .map(|user| (user.uid, user.gid, user.groups, user.home))
            .map_err(|err| err.to_string())
    }
}
