//! The per-sandbox state directory: the config the parent writes for the helper, the
//! status the sandbox writes back, and the empty `rootfs` mount point.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cgroup::CgroupFs;
use crate::error::SetupKind;
use crate::network::BridgeConfig;
use crate::spec::SandboxSpec;

pub(crate) const CONFIG_FILE: &str = "config.json";
pub(crate) const STATUS_FILE: &str = "status.json";
/// Bytes reserved for the status when init starts: a status is a few hundred bytes.
pub(crate) const STATUS_ROOM: i64 = 4096;
pub(crate) const ROOTFS_DIR: &str = "rootfs";
/// The sandbox's own resolver and host files, bound over the root's `/etc` ones: copies of
/// the host's for the host network, generated for a bridge.
pub(crate) const RESOLV_CONF_FILE: &str = "resolv.conf";
pub(crate) const HOSTS_FILE: &str = "hosts";
pub(crate) const HOSTNAME_FILE: &str = "hostname";
/// Every file a state dir may hold (the `rootfs` mount point aside).
pub(crate) const STATE_FILES: [&str; 5] = [
    CONFIG_FILE,
    STATUS_FILE,
    RESOLV_CONF_FILE,
    HOSTS_FILE,
    HOSTNAME_FILE,
];

/// What the helper needs besides the spec.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct InitConfig {
    pub spec: SandboxSpec,
    /// `cgroup.procs` files the helper joins before creating namespaces (v1), and whose
    /// processes it kills if rbuild dies.
    pub cgroup_procs: Vec<PathBuf>,
    /// v2: the cgroup init is started in with `clone3(CLONE_INTO_CGROUP)`; the helper then
    /// stays out of it.
    #[serde(default)]
    pub clone_into: Option<PathBuf>,
    /// With a pids limit: the `cgroup.procs` of the cgroup rbuild's own processes move to,
    /// so that the limit counts the command's processes only (see `init::enter_cgroup`).
    #[serde(default)]
    pub runtime_procs: Option<PathBuf>,
    /// With a pids limit: the limited cgroup's `cgroup.procs`, which the command joins
    /// again before it execs (init having left it).
    #[serde(default)]
    pub limited_procs: Option<PathBuf>,
    /// The rbuild process; the sandbox is killed when it dies.
    pub parent_pid: i32,
    /// What the sandbox mounts, read-only, at `/sys/fs/cgroup`.
    pub cgroupfs: CgroupFs,
    /// For `Network::Bridge`: the address and bridge to plug the sandbox into.
    #[serde(default)]
    pub bridge: Option<BridgeConfig>,
}

/// How the sandbox ended, as written to `status.json` by the sandbox's init (or by the
/// helper when init could not write it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub(crate) enum Status {
    Exited { code: i32 },
    Signaled { signal: i32 },
    SetupFailed { kind: SetupKind, message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_as_tagged_json() {
        let status = Status::SetupFailed {
            kind: SetupKind::User,
            message: "unable to find user x: no matching entries in passwd file".into(),
        };
        let json = serde_json::to_string(&status).unwrap();
        assert_eq!(
            json,
            r#"{"result":"setup_failed","kind":"user","message":"unable to find user x: no matching entries in passwd file"}"#
        );
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), status);
        assert_eq!(
            serde_json::to_string(&Status::Exited { code: 3 }).unwrap(),
            r#"{"result":"exited","code":3}"#
        );
    }
}
