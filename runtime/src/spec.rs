//! What a sandbox runs and over which mounts: the data the caller hands the runtime.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::capabilities::Capabilities;

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
    /// The seccomp profile of the process.
    #[serde(default)]
    pub seccomp: Seccomp,
    /// Whether rbuild's init is pid 1, with the command as its child (it reaps orphans and
    /// passes signals on, as `docker run --init`), or the command is pid 1 itself (as
    /// `docker run` without `--init`: programs that check for pid 1 see it, and signals
    /// reach it only where it handles them).
    #[serde(default = "yes")]
    pub init: bool,
    /// The capabilities the command keeps (Docker's default set unless changed).
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Further `/etc/hosts` entries (`--add-host`), after the network's own.
    #[serde(default)]
    pub extra_hosts: Vec<ExtraHost>,
    /// Size of the `/dev/shm` tmpfs in bytes; `None` for docker's 64 MiB.
    #[serde(default)]
    pub shm_size: Option<u64>,
    /// `RUN --security=insecure` (`docker run --privileged`): every capability, no
    /// seccomp profile and no `no_new_privs`, no masked or read-only paths under `/proc`
    /// and `/sys`, `/sys` and the cgroup filesystem writable, and the host's device nodes
    /// in `/dev`. The namespaces, the cgroup limits, the user and the root stay: the
    /// command can reach the host's kernel, not the host's files.
    #[serde(default)]
    pub privileged: bool,
}

/// Docker's `/dev/shm` size when `--shm-size` is not given.
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// One `/etc/hosts` line: `address name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraHost {
    pub name: String,
    pub address: std::net::IpAddr,
}

/// A resource limit of the command (`setrlimit(2)`), as `--ulimit` sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// `RLIMIT_*` number.
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
}

/// `--ulimit` names (docker's, from `ulimit -a`) and their `RLIMIT_*` numbers (`u32` in
/// glibc's headers, `i32` in musl's: hence the casts).
#[allow(clippy::unnecessary_cast)]
pub const RLIMIT_NAMES: [(&str, u32); 15] = [
    ("core", libc::RLIMIT_CORE as u32),
    ("cpu", libc::RLIMIT_CPU as u32),
    ("data", libc::RLIMIT_DATA as u32),
    ("fsize", libc::RLIMIT_FSIZE as u32),
    ("locks", libc::RLIMIT_LOCKS as u32),
    ("memlock", libc::RLIMIT_MEMLOCK as u32),
    ("msgqueue", libc::RLIMIT_MSGQUEUE as u32),
    ("nice", libc::RLIMIT_NICE as u32),
    ("nofile", libc::RLIMIT_NOFILE as u32),
    ("nproc", libc::RLIMIT_NPROC as u32),
    ("rss", libc::RLIMIT_RSS as u32),
    ("rtprio", libc::RLIMIT_RTPRIO as u32),
    ("rttime", libc::RLIMIT_RTTIME as u32),
    ("sigpending", libc::RLIMIT_SIGPENDING as u32),
    ("stack", libc::RLIMIT_STACK as u32),
];

impl Rlimit {
    /// `NAME=SOFT[:HARD]` (`-1` for unlimited), as `docker run --ulimit`.
    pub fn parse(text: &str) -> Result<Rlimit, String> {
        let (name, values) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}` is not `NAME=SOFT[:HARD]`"))?;
        let resource = RLIMIT_NAMES
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, resource)| *resource)
            .ok_or_else(|| {
                let names: Vec<&str> = RLIMIT_NAMES.iter().map(|(name, _)| *name).collect();
                format!("`{name}` is not a limit ({})", names.join(", "))
            })?;
        let value = |v: &str| -> Result<u64, String> {
            match v {
                "-1" | "unlimited" => Ok(libc::RLIM_INFINITY),
                _ => v
                    .parse::<u64>()
                    .map_err(|_| format!("`{text}`: `{v}` is not a number")),
            }
        };
        let (soft, hard) = match values.split_once(':') {
            Some((soft, hard)) => (value(soft)?, value(hard)?),
            None => (value(values)?, value(values)?),
        };
        if soft > hard {
            return Err(format!("`{text}`: the soft limit is above the hard limit"));
        }
        Ok(Rlimit {
            resource,
            soft,
            hard,
        })
    }
}

fn yes() -> bool {
    true
}

/// The process's seccomp profile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Seccomp {
    /// rbuild's profile (`seccomp.rs`): as Docker's default.
    #[default]
    Default,
    /// None (`--security-opt seccomp=unconfined`): what a container needs to run rbuild,
    /// or any tool that makes namespaces, inside it. Capabilities, `no_new_privs` and the
    /// user still hold.
    Unconfined,
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
    /// Resource limits set before exec (others are inherited from rbuild).
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// A new network namespace with only loopback, up.
    None,
    /// The host's network namespace.
    Host,
    /// A new network namespace with loopback and `eth0`, one end of a veth pair whose other
    /// end is on the runtime's bridge ([`crate::BridgeOptions`]); an address of the
    /// bridge's subnet, the bridge as default gateway, and `/etc/hosts`, `/etc/hostname`
    /// and `/etc/resolv.conf` of its own.
    Bridge,
}

/// `Limits { memory_bytes: Some(512 << 20), ..Limits::default() }`: every limit is
/// optional, and without one the sandbox shares what its parent cgroup has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory limit in bytes (swap is not allowed beyond it). The runtime's helper and
    /// init, about a megabyte, are charged to it too.
    pub memory_bytes: Option<u64>,
    /// Maximum number of processes and threads of the sandboxed process tree, as the
    /// cgroup's `pids.max` inside shows it; the runtime's own processes are not counted.
    pub pids: Option<u64>,
    /// CPU time per scheduling period (CFS bandwidth: v1 `cpu.cfs_quota_us`, v2 `cpu.max`).
    #[serde(default)]
    pub cpu: Option<CpuQuota>,
    /// The CPUs the sandbox may run on, in the kernel's list format (`0-2,4`).
    #[serde(default)]
    pub cpuset_cpus: Option<String>,
}

impl Limits {
    /// The first limit that is set, by name (`memory`, `pids`, `cpu`, `cpuset`).
    pub fn first_named(&self) -> Option<&'static str> {
        if self.memory_bytes.is_some() {
            Some("memory")
        } else if self.pids.is_some() {
            Some("pids")
        } else if self.cpu.is_some() {
            Some("cpu")
        } else if self.cpuset_cpus.is_some() {
            Some("cpuset")
        } else {
            None
        }
    }
}

/// `quota_us` of CPU time in each `period_us`: `--cpus 0.5` is 50 000 µs per 100 000 µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuQuota {
    pub quota_us: u64,
    pub period_us: u64,
}

impl CpuQuota {
    /// The period Docker uses for `--cpus`.
    pub const PERIOD_US: u64 = 100_000;
    /// The kernel refuses a quota under 1 ms.
    pub const MIN_QUOTA_US: u64 = 1_000;

    /// Docker's `--cpus N`: `N` CPUs' worth of time per 100 ms period. `None` when `cpus`
    /// is not a positive number or gives a quota under the kernel's 1 ms minimum.
    pub fn from_cpus(cpus: f64) -> Option<CpuQuota> {
        if !cpus.is_finite() || cpus <= 0.0 {
            return None;
        }
        let quota_us = (cpus * Self::PERIOD_US as f64).round() as u64;
        (quota_us >= Self::MIN_QUOTA_US).then_some(CpuQuota {
            quota_us,
            period_us: Self::PERIOD_US,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_become_a_quota_per_100ms() {
        assert_eq!(
            CpuQuota::from_cpus(0.5),
            Some(CpuQuota {
                quota_us: 50_000,
                period_us: 100_000
            })
        );
        assert_eq!(CpuQuota::from_cpus(2.0).unwrap().quota_us, 200_000);
        assert_eq!(CpuQuota::from_cpus(0.01).unwrap().quota_us, 1_000);
        assert_eq!(CpuQuota::from_cpus(0.001), None);
        assert_eq!(CpuQuota::from_cpus(0.0), None);
        assert_eq!(CpuQuota::from_cpus(-1.0), None);
        assert_eq!(CpuQuota::from_cpus(f64::NAN), None);
    }

    #[test]
    fn limits_without_cpu_fields_still_parse() {
        let limits: Limits = serde_json::from_str(r#"{"memory_bytes":1,"pids":null}"#).unwrap();
        assert_eq!(limits.cpu, None);
        assert_eq!(limits.cpuset_cpus, None);
    }
}
