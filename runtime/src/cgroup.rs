//! Cgroups of a sandbox: finding the hierarchy (v1 or v2), creating the sandbox's cgroup,
//! writing its limits, reading OOM kills, killing what is left in it and removing it.
//!
//! v1 (hybrid hosts, CI here): one cgroup per controller, `<memory mount>/<parent>/<id>`
//! and `<pids mount>/<parent>/<id>`. v2: `<cgroup2 mount>/<parent>/<id>`, with `memory` and
//! `pids` enabled in the `cgroup.subtree_control` of the root and of every parent level.
//! All paths are relative to the hierarchy's mount point, as Docker's `--cgroup-parent`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::Error;
use crate::spec::Limits;

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
    },
    V2 {
        mount: PathBuf,
    },
}

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The runtime's own processes in a sandbox's cgroup (the helper and init), added to the
/// caller's pids limit, which counts the sandboxed process tree only.
pub(crate) const RUNTIME_PIDS: u64 = 2;

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
                    for option in super_options.split(',') {
                        match option {
                            "memory" if memory.is_none() => memory = Some(unescape(mount_point)),
                            "pids" if pids.is_none() => pids = Some(unescape(mount_point)),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if memory.is_some() || pids.is_some() {
            Some(Hierarchy::V1 { memory, pids })
        } else {
            unified.map(|mount| Hierarchy::V2 { mount })
        }
    }

    pub(crate) fn version(&self) -> CgroupVersion {
        match self {
            Hierarchy::V1 { .. } => CgroupVersion::V1,
            Hierarchy::V2 { .. } => CgroupVersion::V2,
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

/// The cgroup directories of one sandbox. With v2, `memory` and `pids` are the same dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SandboxCgroup {
    version: CgroupVersion,
    memory: Option<PathBuf>,
    pids: Option<PathBuf>,
}

impl SandboxCgroup {
    /// The cgroup `<parent>/<id>` as a sandbox that is no longer running left it (its
    /// rbuild was killed): only what exists.
    pub(crate) fn existing(hierarchy: &Hierarchy, parent: &str, id: &str) -> SandboxCgroup {
        let existing = |mount: &Option<PathBuf>| {
            mount
                .as_ref()
                .map(|mount| mount.join(parent).join(id))
                .filter(|dir| dir.is_dir())
        };
        match hierarchy {
            Hierarchy::V1 { memory, pids } => SandboxCgroup {
                version: CgroupVersion::V1,
                memory: existing(memory),
                pids: existing(pids),
            },
            Hierarchy::V2 { mount } => SandboxCgroup {
                version: CgroupVersion::V2,
                memory: None,
                pids: existing(&Some(mount.clone())),
            },
        }
    }

    /// Creates `<parent>/<id>` in each hierarchy (`id` must not exist yet) and writes
    /// `limits`. On error, whatever was created is removed again.
    pub(crate) fn create(
        hierarchy: &Hierarchy,
        parent: &str,
        id: &str,
        limits: &Limits,
    ) -> Result<SandboxCgroup, Error> {
        let mut cgroup = SandboxCgroup {
            version: hierarchy.version(),
            memory: None,
            pids: None,
        };
        let result = cgroup.create_dirs(hierarchy, parent, id, limits);
        let result = result.and_then(|()| cgroup.apply_limits(limits));
        if let Err(err) = result {
            let _ = cgroup.try_remove();
            return Err(err);
        }
        Ok(cgroup)
    }

    fn create_dirs(
        &mut self,
        hierarchy: &Hierarchy,
        parent: &str,
        id: &str,
        limits: &Limits,
    ) -> Result<(), Error> {
        match hierarchy {
            Hierarchy::V1 { memory, pids } => {
                // Joining a v1 memory cgroup costs about a millisecond (and removing it
                // more), so there is one only with a memory limit; the pids cgroup, cheap,
                // always exists to find every process of the sandbox.
                let need_memory = limits.memory_bytes.is_some() || pids.is_none();
                for (controller, mount, needed, wanted, slot) in [
                    (
                        "memory",
                        memory,
                        need_memory,
                        limits.memory_bytes.is_some(),
                        &mut self.memory,
                    ),
                    ("pids", pids, true, limits.pids.is_some(), &mut self.pids),
                ] {
                    match mount {
                        Some(mount) if needed => {
                            let parent_dir = mount.join(parent);
                            create_dir_all(&parent_dir)?;
                            let dir = parent_dir.join(id);
                            create_dir(&dir)?;
                            *slot = Some(dir);
                        }
                        None if wanted => {
                            return Err(Error::MissingController {
                                controller,
                                path: "/sys/fs/cgroup".into(),
                            });
                        }
                        _ => {}
                    }
                }
                Ok(())
            }
            Hierarchy::V2 { mount } => {
                let available = read_file(&mount.join("cgroup.controllers"))?;
                let mut enable = Vec::new();
                for (controller, wanted) in [
                    ("memory", limits.memory_bytes.is_some()),
                    ("pids", limits.pids.is_some()),
                ] {
                    if available.split_whitespace().any(|c| c == controller) {
                        enable.push(controller);
                    } else if wanted {
                        return Err(Error::MissingController {
                            controller,
                            path: mount.clone(),
                        });
                    }
                }
                let mut dir = mount.clone();
                for part in parent.split('/').filter(|part| !part.is_empty()) {
                    enable_controllers(&dir, &enable)?;
                    dir.push(part);
                    create_dir_all(&dir)?;
                }
                enable_controllers(&dir, &enable)?;
                dir.push(id);
                create_dir(&dir)?;
                if enable.contains(&"memory") {
                    self.memory = Some(dir.clone());
                }
                if enable.contains(&"pids") {
                    self.pids = Some(dir.clone());
                }
                if self.memory.is_none() && self.pids.is_none() {
                    // Still a cgroup: it lets `kill` and the cleanup find every process.
                    self.pids = Some(dir);
                }
                Ok(())
            }
        }
    }

    pub(crate) fn apply_limits(&self, limits: &Limits) -> Result<(), Error> {
        if let (Some(bytes), Some(dir)) = (limits.memory_bytes, &self.memory) {
            let bytes = bytes.to_string();
            match self.version {
                CgroupVersion::V1 => {
                    // memsw (memory + swap) must be written after the memory limit: the
                    // kernel refuses memsw < memory. Equal values mean no swap.
                    write_file(&dir.join("memory.limit_in_bytes"), &bytes)?;
                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write_file(&memsw, &bytes)?;
                    }
                }
                CgroupVersion::V2 => {
                    write_file(&dir.join("memory.max"), &bytes)?;
                    let swap = dir.join("memory.swap.max");
                    if swap.exists() {
                        write_file(&swap, "0")?;
                    }
                }
            }
        }
        if let (Some(pids), Some(dir)) = (limits.pids, &self.pids) {
            let pids = pids.saturating_add(RUNTIME_PIDS);
            write_file(&dir.join("pids.max"), &pids.to_string())?;
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn version(&self) -> CgroupVersion {
        self.version
    }

    /// The cgroup directories, each once.
    pub(crate) fn dirs(&self) -> Vec<&Path> {
        let mut dirs: Vec<&Path> = Vec::with_capacity(2);
        for dir in [&self.memory, &self.pids].into_iter().flatten() {
            if !dirs.contains(&dir.as_path()) {
                dirs.push(dir);
            }
        }
        dirs
    }

    /// The `cgroup.procs` files the helper writes its pid to.
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs()
            .iter()
            .map(|dir| dir.join("cgroup.procs"))
            .collect()
    }

    /// Whether the kernel's OOM killer killed a process of the sandbox.
    pub(crate) fn oom_killed(&self, killed_by_sigkill: bool) -> bool {
        let Some(dir) = &self.memory else {
            return false;
        };
        match self.version {
            CgroupVersion::V2 => {
                read_keyed(&dir.join("memory.events"), "oom_kill").is_some_and(|n| n > 0)
            }
            // `oom_kill` in `memory.oom_control` exists since Linux 4.13; before that a
            // SIGKILL while the limit was hit is the best evidence there is.
            CgroupVersion::V1 => match read_keyed(&dir.join("memory.oom_control"), "oom_kill") {
                Some(count) => count > 0,
                None => {
                    killed_by_sigkill
                        && fs::read_to_string(dir.join("memory.failcnt"))
                            .ok()
                            .and_then(|text| text.trim().parse::<u64>().ok())
                            .is_some_and(|n| n > 0)
                }
            },
        }
    }

    /// SIGKILLs every process in the cgroup. Best effort: a process that is gone is fine.
    pub(crate) fn kill(&self) {
        // `cgroup.kill` (v2, Linux 5.14) kills atomically, forks in flight included.
        if self.version == CgroupVersion::V2
            && let Some(dir) = self.dirs().first()
            && write_file(&dir.join("cgroup.kill"), "1").is_ok()
        {
            return;
        }
        // Without `cgroup.kill` a fork can race with the listing, so list again; the
        // sandbox's init is among the listed processes and its death takes down its whole
        // pid namespace anyway.
        for _ in 0..3 {
            let pids = self.pids();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }

    /// The processes in the cgroup (pids in the caller's pid namespace).
    pub(crate) fn pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for dir in self.dirs() {
            if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
                pids.extend(
                    text.lines()
                        .filter_map(|line| line.trim().parse::<i32>().ok()),
                );
            }
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Removes the cgroup directories; a directory already gone is fine. Fails with
    /// `EBUSY` while processes are still leaving.
    pub(crate) fn try_remove(&self) -> Result<(), (PathBuf, io::Error)> {
        for dir in self.dirs() {
            match fs::remove_dir(dir) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err((dir.to_owned(), err)),
            }
        }
        Ok(())
    }
}

/// Enables `controllers` for the children of `dir` unless they already are.
fn enable_controllers(dir: &Path, controllers: &[&str]) -> Result<(), Error> {
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

fn create_dir_all(dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|source| Error::CreateCgroup {
        path: dir.to_owned(),
        source,
    })
}

fn create_dir(dir: &Path) -> Result<(), Error> {
    fs::create_dir(dir).map_err(|source| Error::CreateCgroup {
        path: dir.to_owned(),
        source,
    })
}

fn read_file(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(|source| Error::ReadCgroup {
        path: path.to_owned(),
        source,
    })
}

/// Writes to an existing control file: cgroupfs does not create files, and neither should
/// a typo here. (`O_TRUNC` is ignored by cgroupfs and makes fake trees in tests behave.)
fn write_file(path: &Path, value: &str) -> Result<(), Error> {
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
fn read_keyed(path: &Path, key: &str) -> Option<u64> {
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
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime shared:5 - cgroup cgroup rw,pids
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
            })
        );
    }

    #[test]
    fn detects_unified_as_v2() {
        let hierarchy = Hierarchy::from_mountinfo(UNIFIED).unwrap();
        assert_eq!(
            hierarchy,
            Hierarchy::V2 {
                mount: "/sys/fs/cgroup".into()
            }
        );
        assert_eq!(hierarchy.version(), CgroupVersion::V2);
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

    /// Creates the directories without writing limits: fake trees have no control files
    /// until the test writes them.
    fn dirs_only(hierarchy: &Hierarchy, parent: &str, id: &str, limits: &Limits) -> SandboxCgroup {
        let mut cgroup = SandboxCgroup {
            version: hierarchy.version(),
            memory: None,
            pids: None,
        };
        cgroup.create_dirs(hierarchy, parent, id, limits).unwrap();
        cgroup
    }

    fn touch(path: &Path, content: &str) {
        fs::write(path, content).unwrap();
    }

    #[test]
    fn v1_creates_per_controller_dirs_and_writes_limits() {
        let temp = tempfile::tempdir().unwrap();
        let memory = temp.path().join("memory");
        let pids = temp.path().join("pids");
        fs::create_dir_all(&memory).unwrap();
        fs::create_dir_all(&pids).unwrap();
        let hierarchy = Hierarchy::V1 {
            memory: Some(memory.clone()),
            pids: Some(pids.clone()),
        };
        let limits = Limits {
            memory_bytes: Some(32 << 20),
            pids: Some(20),
        };
        // The fake tree has no control files, so writing limits fails, and the failure
        // removes what was created.
        let err = SandboxCgroup::create(&hierarchy, "rbuild", "sb1", &limits).unwrap_err();
        assert!(matches!(err, Error::WriteCgroup { .. }), "{err:?}");
        assert!(!memory.join("rbuild/sb1").exists());

        // Without a memory limit there is no memory cgroup.
        let cgroup =
            SandboxCgroup::create(&hierarchy, "rbuild", "sb0", &Limits::default()).unwrap();
        assert_eq!(cgroup.dirs(), vec![pids.join("rbuild/sb0")]);
        assert!(!memory.join("rbuild/sb0").exists());
        assert!(!cgroup.oom_killed(true));

        let cgroup = dirs_only(&hierarchy, "rbuild", "sb1", &limits);
        assert_eq!(
            cgroup.dirs(),
            vec![memory.join("rbuild/sb1"), pids.join("rbuild/sb1")]
        );
        assert_eq!(
            cgroup.procs_files(),
            vec![
                memory.join("rbuild/sb1/cgroup.procs"),
                pids.join("rbuild/sb1/cgroup.procs")
            ]
        );
        let dir = memory.join("rbuild/sb1");
        touch(&dir.join("memory.limit_in_bytes"), "9223372036854771712\n");
        touch(
            &dir.join("memory.memsw.limit_in_bytes"),
            "9223372036854771712\n",
        );
        touch(&pids.join("rbuild/sb1/pids.max"), "max\n");
        cgroup.apply_limits(&limits).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("memory.limit_in_bytes")).unwrap(),
            "33554432"
        );
        assert_eq!(
            fs::read_to_string(dir.join("memory.memsw.limit_in_bytes")).unwrap(),
            "33554432"
        );
        assert_eq!(
            fs::read_to_string(pids.join("rbuild/sb1/pids.max")).unwrap(),
            "22"
        );
        assert_eq!(cgroup.version(), CgroupVersion::V1);

        // A second sandbox with the same id is refused.
        assert!(matches!(
            SandboxCgroup::create(&hierarchy, "rbuild", "sb1", &Limits::default()),
            Err(Error::CreateCgroup { .. })
        ));
    }

    #[test]
    fn v1_without_memsw_writes_only_the_memory_limit() {
        let temp = tempfile::tempdir().unwrap();
        let hierarchy = Hierarchy::V1 {
            memory: Some(temp.path().to_owned()),
            pids: None,
        };
        let cgroup = SandboxCgroup::create(&hierarchy, "", "sb", &Limits::default()).unwrap();
        let dir = temp.path().join("sb");
        assert_eq!(cgroup.dirs(), vec![dir.as_path()]);
        touch(&dir.join("memory.limit_in_bytes"), "");
        let limits = Limits {
            memory_bytes: Some(1000),
            pids: None,
        };
        cgroup.apply_limits(&limits).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("memory.limit_in_bytes")).unwrap(),
            "1000"
        );
        assert!(!dir.join("memory.memsw.limit_in_bytes").exists());
    }

    #[test]
    fn v1_missing_controller_for_a_limit_is_an_error() {
        let temp = tempfile::tempdir().unwrap();
        let hierarchy = Hierarchy::V1 {
            memory: Some(temp.path().to_owned()),
            pids: None,
        };
        let limits = Limits {
            memory_bytes: None,
            pids: Some(5),
        };
        let err = SandboxCgroup::create(&hierarchy, "rbuild", "sb", &limits).unwrap_err();
        assert!(
            matches!(
                err,
                Error::MissingController {
                    controller: "pids",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!temp.path().join("rbuild/sb").exists());
    }

    fn fake_v2_level(dir: &Path, controllers: &str) {
        fs::create_dir_all(dir).unwrap();
        touch(&dir.join("cgroup.controllers"), controllers);
        touch(&dir.join("cgroup.subtree_control"), "");
    }

    #[test]
    fn v2_enables_controllers_in_each_parent_and_writes_limits() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path();
        fake_v2_level(root, "cpuset cpu io memory hugetlb pids rdma misc\n");
        fake_v2_level(&root.join("rbuild"), "memory pids\n");
        fake_v2_level(&root.join("rbuild/nested"), "memory pids\n");
        // Already enabled at the nested level: not written again.
        touch(
            &root.join("rbuild/nested/cgroup.subtree_control"),
            "memory pids\n",
        );
        let hierarchy = Hierarchy::V2 {
            mount: root.to_owned(),
        };
        let cgroup =
            SandboxCgroup::create(&hierarchy, "rbuild/nested", "sb", &Limits::default()).unwrap();
        let dir = root.join("rbuild/nested/sb");
        assert_eq!(cgroup.dirs(), vec![dir.as_path()]);
        assert_eq!(cgroup.procs_files(), vec![dir.join("cgroup.procs")]);
        assert_eq!(
            fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
            "+memory +pids"
        );
        assert_eq!(
            fs::read_to_string(root.join("rbuild/cgroup.subtree_control")).unwrap(),
            "+memory +pids"
        );
        assert_eq!(
            fs::read_to_string(root.join("rbuild/nested/cgroup.subtree_control")).unwrap(),
            "memory pids\n"
        );

        touch(&dir.join("memory.max"), "max\n");
        touch(&dir.join("memory.swap.max"), "max\n");
        touch(&dir.join("pids.max"), "max\n");
        let limits = Limits {
            memory_bytes: Some(64 << 20),
            pids: Some(100),
        };
        cgroup.apply_limits(&limits).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("memory.max")).unwrap(),
            "67108864"
        );
        assert_eq!(
            fs::read_to_string(dir.join("memory.swap.max")).unwrap(),
            "0"
        );
        assert_eq!(fs::read_to_string(dir.join("pids.max")).unwrap(), "102");

        assert!(!cgroup.oom_killed(true));
        touch(
            &dir.join("memory.events"),
            "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n",
        );
        assert!(cgroup.oom_killed(false));

        touch(&dir.join("cgroup.procs"), "");
        assert!(cgroup.pids().is_empty());
    }

    #[test]
    fn v2_missing_controller_for_a_limit_is_an_error() {
        let temp = tempfile::tempdir().unwrap();
        fake_v2_level(temp.path(), "cpu io\n");
        let hierarchy = Hierarchy::V2 {
            mount: temp.path().to_owned(),
        };
        let limits = Limits {
            memory_bytes: Some(1 << 20),
            pids: None,
        };
        let err = SandboxCgroup::create(&hierarchy, "rbuild", "sb", &limits).unwrap_err();
        assert!(
            matches!(
                err,
                Error::MissingController {
                    controller: "memory",
                    ..
                }
            ),
            "{err:?}"
        );
        // Without any controller the cgroup still exists, for kill and cleanup.
        let cgroup = SandboxCgroup::create(&hierarchy, "rbuild", "sb", &Limits::default()).unwrap();
        assert_eq!(cgroup.dirs(), vec![temp.path().join("rbuild/sb")]);
        assert!(!cgroup.oom_killed(true));
    }

    #[test]
    fn v1_oom_from_oom_control_or_failcnt() {
        let temp = tempfile::tempdir().unwrap();
        let hierarchy = Hierarchy::V1 {
            memory: Some(temp.path().to_owned()),
            pids: None,
        };
        let cgroup = SandboxCgroup::create(&hierarchy, "", "sb", &Limits::default()).unwrap();
        let dir = temp.path().join("sb");
        touch(&dir.join("memory.failcnt"), "3\n");
        assert!(cgroup.oom_killed(true));
        assert!(!cgroup.oom_killed(false));
        touch(
            &dir.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        );
        assert!(!cgroup.oom_killed(true));
        touch(
            &dir.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        assert!(cgroup.oom_killed(false));
    }
}
