//! Cgroups: finding the hierarchy (v1 or v2) and describing the read-only cgroupfs a
//! sandbox mounts; `sandbox` owns one sandbox's cgroup (limits, OOM, kill, removal).
//!
//! v1 (hybrid hosts, CI here): one cgroup per controller, `<memory mount>/<parent>/<id>`,
//! `<pids mount>/<parent>/<id>`, and for CPU limits `cpu` and `cpuset` ones. v2:
//! `<cgroup2 mount>/<parent>/<id>`, with the controllers enabled in the
//! `cgroup.subtree_control` of the root and of every parent level. All paths are relative
//! to the hierarchy's mount point, as Docker's `--cgroup-parent`.

use std::fs;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;

mod delegation;
mod sandbox;

pub(crate) use delegation::writable;
pub(crate) use sandbox::SandboxCgroup;

/// The cgroup version the host uses for the controllers the runtime needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// Where the controllers are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hierarchy {
    V1 {
        memory: Option<PathBuf>,
        pids: Option<PathBuf>,
        cpu: Option<PathBuf>,
        cpuset: Option<PathBuf>,
        /// Every v1 hierarchy, for the sandbox's own read-only cgroupfs.
        mounts: Vec<V1Mount>,
    },
    V2 {
        /// The cgroup under which rbuild makes its own: the hierarchy's mount point for
        /// root, the cgroup delegated to the user for rootless rbuild (see `delegation`).
        root: PathBuf,
    },
    /// No cgroup rbuild may write (a user on cgroup v1, a v2 cgroup not delegated to the
    /// user, a read-only cgroupfs): sandboxes run without a cgroup of their own, and a
    /// limit is an error that gives `reason`.
    Unavailable {
        version: CgroupVersion,
        cgroupfs: CgroupFs,
        reason: String,
    },
}

/// One v1 hierarchy as the sandbox mounts it: `/sys/fs/cgroup/<name>` with `options`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct V1Mount {
    /// The host mount point's last component (`cpu`, `memory`, `systemd`, ...).
    pub name: String,
    /// The controllers (and `name=`) of the hierarchy, as mount(8) options.
    pub options: String,
}

/// The cgroup filesystem a sandbox sees at `/sys/fs/cgroup`, read-only and rooted at its
/// own cgroup (it is mounted inside the sandbox's cgroup namespace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "version", rename_all = "lowercase")]
pub(crate) enum CgroupFs {
    /// A tmpfs with one directory per hierarchy.
    V1 { hierarchies: Vec<V1Mount> },
    /// One cgroup2 mount.
    V2,
}

const MOUNTINFO: &str = "/proc/self/mountinfo";

impl Hierarchy {
    pub(crate) fn detect() -> Result<Hierarchy, Error> {
        let text = fs::read_to_string(MOUNTINFO).map_err(|source| Error::ReadMountinfo {
            path: MOUNTINFO.into(),
            source,
        })?;
        Hierarchy::from_mountinfo(&text).ok_or(Error::NoCgroupHierarchy)
    }

    /// A v1 hierarchy holding `memory` or `pids` wins: on hybrid hosts the cgroup2 mount
    /// exists but has no controllers.
    pub(crate) fn from_mountinfo(text: &str) -> Option<Hierarchy> {
        let mut memory = None;
        let mut pids = None;
        let mut cpu = None;
        let mut cpuset = None;
        let mut mounts = Vec::new();
        let mut unified = None;
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount_point) = left.split(' ').nth(4) else {
                continue;
            };
            let mut right = right.split(' ');
            let fstype = right.next();
            let super_options = right.nth(1).unwrap_or("");
            match fstype {
                Some("cgroup2") if unified.is_none() => unified = Some(unescape(mount_point)),
                Some("cgroup") => {
                    let path = unescape(mount_point);
                    for option in super_options.split(',') {
                        let slot = match option {
                            "memory" => &mut memory,
                            "pids" => &mut pids,
                            "cpu" => &mut cpu,
                            "cpuset" => &mut cpuset,
                            _ => continue,
                        };
                        if slot.is_none() {
                            *slot = Some(path.clone());
                        }
                    }
                    let options: Vec<&str> = super_options
                        .split(',')
                        .filter(|option| !matches!(*option, "rw" | "ro" | ""))
                        .collect();
                    let name = path.file_name().and_then(|name| name.to_str());
                    if let (Some(name), false) = (name, options.is_empty())
                        && !mounts.iter().any(|mount: &V1Mount| mount.name == name)
                    {
                        mounts.push(V1Mount {
                            name: name.to_owned(),
                            options: options.join(","),
                        });
                    }
                }
                _ => {}
            }
        }
        if memory.is_some() || pids.is_some() {
            Some(Hierarchy::V1 {
                memory,
                pids,
                cpu,
                cpuset,
                mounts,
            })
        } else {
            unified.map(|root| Hierarchy::V2 { root })
        }
    }

    pub(crate) fn version(&self) -> CgroupVersion {
        match self {
            Hierarchy::V1 { .. } => CgroupVersion::V1,
            Hierarchy::V2 { .. } => CgroupVersion::V2,
            Hierarchy::Unavailable { version, .. } => *version,
        }
    }

    pub(crate) fn cgroupfs(&self) -> CgroupFs {
        match self {
            Hierarchy::V1 { mounts, .. } => CgroupFs::V1 {
                hierarchies: mounts.clone(),
            },
            Hierarchy::V2 { .. } => CgroupFs::V2,
            Hierarchy::Unavailable { cgroupfs, .. } => cgroupfs.clone(),
        }
    }

    /// Why limits cannot be applied, if they cannot.
    pub(crate) fn unavailable(&self) -> Option<&str> {
        match self {
            Hierarchy::Unavailable { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// Fails when `limits` asks for a limit this hierarchy cannot keep.
    pub(crate) fn check(&self, limits: &crate::spec::Limits) -> Result<(), Error> {
        match (self.unavailable(), limits.first_named()) {
            (Some(reason), Some(limit)) => Err(Error::LimitUnavailable {
                limit,
                reason: reason.to_owned(),
            }),
            _ => Ok(()),
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(value as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Checks a `cgroup_parent` option: relative, no `..`, no empty components.
pub(crate) fn validate_parent(parent: &str) -> Result<(), Error> {
    let valid = parent.is_empty()
        || (!parent.starts_with('/')
            && parent
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != ".."));
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidCgroupParent {
            parent: parent.to_owned(),
        })
    }
}

/// Enables `controllers` for the children of `dir` unless they already are.
pub(crate) fn enable_controllers(dir: &Path, controllers: &[&str]) -> Result<(), Error> {
    if controllers.is_empty() {
        return Ok(());
    }
    let path = dir.join("cgroup.subtree_control");
    let enabled = read_file(&path)?;
    let missing: Vec<String> = controllers
        .iter()
        .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    write_file(&path, &missing.join(" "))
}

pub(crate) fn create_dir_all(dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|source| Error::CreateCgroup {
        path: dir.to_owned(),
        source,
    })
}

pub(crate) fn create_dir(dir: &Path) -> Result<(), Error> {
    fs::create_dir(dir).map_err(|source| Error::CreateCgroup {
        path: dir.to_owned(),
        source,
    })
}

pub(crate) fn read_file(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(|source| Error::ReadCgroup {
        path: path.to_owned(),
        source,
    })
}

/// Writes to an existing control file: cgroupfs does not create files, and neither should
/// a typo here. (`O_TRUNC` is ignored by cgroupfs and makes fake trees in tests behave.)
pub(crate) fn write_file(path: &Path, value: &str) -> Result<(), Error> {
    use std::io::Write;
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut file| file.write_all(value.as_bytes()))
        .map_err(|source| Error::WriteCgroup {
            path: path.to_owned(),
            value: value.to_owned(),
            source,
        })
}

/// Reads `key N` from a flat keyed file such as `memory.events`.
pub(crate) fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime shared:5 - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const UNIFIED: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn detects_hybrid_as_v1() {
        assert_eq!(
            Hierarchy::from_mountinfo(HYBRID),
            Some(Hierarchy::V1 {
                memory: Some("/sys/fs/cgroup/memory".into()),
                pids: Some("/sys/fs/cgroup/pids".into()),
                cpu: Some("/sys/fs/cgroup/cpu,cpuacct".into()),
                cpuset: None,
                mounts: vec![
                    V1Mount {
                        name: "cpu,cpuacct".into(),
                        options: "cpu,cpuacct".into()
                    },
                    V1Mount {
                        name: "memory".into(),
                        options: "memory".into()
                    },
                    V1Mount {
                        name: "pids".into(),
                        options: "pids".into()
                    },
                    V1Mount {
                        name: "systemd".into(),
                        options: "xattr,name=systemd".into()
                    },
                ],
            })
        );
        let hierarchy = Hierarchy::from_mountinfo(HYBRID).unwrap();
        let CgroupFs::V1 { hierarchies } = hierarchy.cgroupfs() else {
            panic!("v1 expected");
        };
        assert_eq!(hierarchies.len(), 4);
    }

    #[test]
    fn detects_unified_as_v2() {
        let hierarchy = Hierarchy::from_mountinfo(UNIFIED).unwrap();
        assert_eq!(
            hierarchy,
            Hierarchy::V2 {
                root: "/sys/fs/cgroup".into()
            }
        );
        assert_eq!(hierarchy.version(), CgroupVersion::V2);
        assert_eq!(hierarchy.cgroupfs(), CgroupFs::V2);
    }

    #[test]
    fn detects_nothing_without_cgroups() {
        assert_eq!(
            Hierarchy::from_mountinfo("22 27 0:21 / /proc rw - proc proc rw\n"),
            None
        );
    }

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape(r"/a\040b\134c"), PathBuf::from(r"/a b\c"));
        assert_eq!(unescape(r"/tail\04"), PathBuf::from(r"/tail\04"));
    }

    #[test]
    fn validates_parent() {
        assert!(validate_parent("rbuild").is_ok());
        assert!(validate_parent("a/b").is_ok());
        assert!(validate_parent("").is_ok());
        assert!(validate_parent("/abs").is_err());
        assert!(validate_parent("a/../b").is_err());
        assert!(validate_parent("a//b").is_err());
    }
}
