//! One sandbox's cgroup: created with its limits (memory without swap, pids, CPU quota,
//! cpuset), read for OOM kills, killed and removed.
//!
//! A pids limit counts the command's processes only, as Docker's does: rbuild's own (the
//! helper, and init when it is not the command) leave the limited cgroup for a sibling
//! one, `<id>.runtime`, once the cgroup namespace is made (see `init::enter_cgroup`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{
    CgroupVersion, Hierarchy, create_dir, create_dir_all, enable_controllers, read_file,
    read_keyed, write_file,
};
use crate::error::Error;
use crate::spec::Limits;

/// The cgroup directories of one sandbox. With v2, they are all the same dir.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SandboxCgroup {
    version: Option<CgroupVersion>,
    memory: Option<PathBuf>,
    pids: Option<PathBuf>,
    cpu: Option<PathBuf>,
    cpuset: Option<PathBuf>,
    /// With a pids limit: the sibling of `pids` that rbuild's own processes move to, so
    /// that the limit is the command's alone.
    runtime: Option<PathBuf>,
}

/// The cgroup of rbuild's own processes beside the sandbox's limited `pids` one.
fn runtime_dir(pids: &Path) -> PathBuf {
    let mut name = pids.file_name().unwrap_or_default().to_owned();
    name.push(".runtime");
    pids.with_file_name(name)
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
        let runtime = |pids: &Option<PathBuf>| {
            pids.as_ref()
                .map(|mount| runtime_dir(&mount.join(parent).join(id)))
                .filter(|dir| dir.is_dir())
        };
        match hierarchy {
            Hierarchy::V1 {
                memory,
                pids,
                cpu,
                cpuset,
                ..
            } => SandboxCgroup {
                version: Some(CgroupVersion::V1),
                memory: existing(memory),
                pids: existing(pids),
                cpu: existing(cpu),
                cpuset: existing(cpuset),
                runtime: runtime(pids),
            },
            Hierarchy::V2 { root: mount } => SandboxCgroup {
                version: Some(CgroupVersion::V2),
                pids: existing(&Some(mount.clone())),
                runtime: runtime(&Some(mount.clone())),
                ..SandboxCgroup::default()
            },
            Hierarchy::Unavailable { version, .. } => SandboxCgroup {
                version: Some(*version),
                ..SandboxCgroup::default()
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
            version: Some(hierarchy.version()),
            ..SandboxCgroup::default()
        };
        let result = cgroup.create_dirs(hierarchy, parent, id, limits);
        let result = result.and_then(|()| cgroup.create_runtime_dir(limits));
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
            // Without a cgroup, the sandbox's processes are found through its pid namespace
            // (init's death ends them all); a limit cannot be kept.
            Hierarchy::Unavailable { .. } => hierarchy.check(limits),
            Hierarchy::V1 {
                memory,
                pids,
                cpu,
                cpuset,
                ..
            } => {
                // Joining a v1 memory cgroup costs about a millisecond (and removing it
                // more), so there is one only with a memory limit; the pids cgroup, cheap,
                // always exists to find every process of the sandbox. CPU ones only with
                // their limits.
                let need_memory = limits.memory_bytes.is_some() || pids.is_none();
                let wants_cpu = limits.cpu.is_some();
                let wants_cpuset = limits.cpuset_cpus.is_some();
                for (controller, mount, needed, wanted, slot) in [
                    (
                        "memory",
                        memory,
                        need_memory,
                        limits.memory_bytes.is_some(),
                        &mut self.memory,
                    ),
                    ("pids", pids, true, limits.pids.is_some(), &mut self.pids),
                    ("cpu", cpu, wants_cpu, wants_cpu, &mut self.cpu),
                    (
                        "cpuset",
                        cpuset,
                        wants_cpuset,
                        wants_cpuset,
                        &mut self.cpuset,
                    ),
                ] {
                    match mount {
                        Some(mount) if needed => {
                            let parent_dir = if controller == "cpuset" {
                                create_cpuset_parents(mount, parent)?
                            } else {
                                let dir = mount.join(parent);
                                create_dir_all(&dir)?;
                                dir
                            };
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
            Hierarchy::V2 { root: mount } => {
                let available = read_file(&mount.join("cgroup.controllers"))?;
                let mut enable = Vec::new();
                // memory and pids always when the host has them (cheap on v2, and
                // `memory.events` tells OOM kills apart); cpu and cpuset with their limits.
                for (controller, needed, wanted) in [
                    ("memory", true, limits.memory_bytes.is_some()),
                    ("pids", true, limits.pids.is_some()),
                    ("cpu", limits.cpu.is_some(), limits.cpu.is_some()),
                    (
                        "cpuset",
                        limits.cpuset_cpus.is_some(),
                        limits.cpuset_cpus.is_some(),
                    ),
                ] {
                    if !needed {
                        continue;
                    }
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
                if enable.contains(&"cpu") {
                    self.cpu = Some(dir.clone());
                }
                if enable.contains(&"cpuset") {
                    self.cpuset = Some(dir.clone());
                }
                if self.memory.is_none() && self.pids.is_none() {
                    // Still a cgroup: it lets `kill` and the cleanup find every process.
                    self.pids = Some(dir);
                }
                Ok(())
            }
        }
    }

    /// With a pids limit, the sibling cgroup rbuild's own processes leave the limited one
    /// for. On v2 it is a leaf beside the sandbox's, under the same parent (whose
    /// controllers it gets, with no limit); on v1 it exists in the pids hierarchy only.
    fn create_runtime_dir(&mut self, limits: &Limits) -> Result<(), Error> {
        if let (Some(_), Some(pids)) = (limits.pids, &self.pids) {
            let dir = runtime_dir(pids);
            create_dir(&dir)?;
            self.runtime = Some(dir);
        }
        Ok(())
    }

    pub(crate) fn apply_limits(&self, limits: &Limits) -> Result<(), Error> {
        if let (Some(bytes), Some(dir)) = (limits.memory_bytes, &self.memory) {
            let bytes = bytes.to_string();
            match self.version() {
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
            write_file(&dir.join("pids.max"), &pids.to_string())?;
        }
        if let (Some(quota), Some(dir)) = (&limits.cpu, &self.cpu) {
            match self.version() {
                CgroupVersion::V1 => {
                    // The period first: a quota is checked against the current period.
                    write_file(&dir.join("cpu.cfs_period_us"), &quota.period_us.to_string())?;
                    write_file(&dir.join("cpu.cfs_quota_us"), &quota.quota_us.to_string())?;
                }
                CgroupVersion::V2 => write_file(
                    &dir.join("cpu.max"),
                    &format!("{} {}", quota.quota_us, quota.period_us),
                )?,
            }
        }
        if let (Some(cpus), Some(dir)) = (&limits.cpuset_cpus, &self.cpuset) {
            if self.version() == CgroupVersion::V1 {
                // A v1 cpuset starts with no memory nodes, and a task cannot join it so.
                let parent = dir.parent().unwrap_or(dir);
                let mems = read_file(&parent.join("cpuset.mems"))?;
                write_file(&dir.join("cpuset.mems"), mems.trim())?;
            }
            write_file(&dir.join("cpuset.cpus"), cpus)?;
        }
        Ok(())
    }

    pub(crate) fn version(&self) -> CgroupVersion {
        self.version.unwrap_or(CgroupVersion::V1)
    }

    /// The `cgroup.procs` of the cgroup rbuild's own processes move to (see
    /// `create_runtime_dir`), when there is one.
    pub(crate) fn runtime_procs(&self) -> Option<PathBuf> {
        self.runtime.as_ref().map(|dir| dir.join("cgroup.procs"))
    }

    /// The `cgroup.procs` of the limited pids cgroup, when rbuild's own processes leave
    /// it (see `runtime_procs`).
    pub(crate) fn limited_procs(&self) -> Option<PathBuf> {
        self.runtime.as_ref()?;
        self.pids.as_ref().map(|dir| dir.join("cgroup.procs"))
    }

    /// The cgroup directories the helper joins, each once.
    pub(crate) fn dirs(&self) -> Vec<&Path> {
        let mut dirs: Vec<&Path> = Vec::with_capacity(4);
        for dir in [&self.memory, &self.pids, &self.cpu, &self.cpuset]
            .into_iter()
            .flatten()
        {
            if !dirs.contains(&dir.as_path()) {
                dirs.push(dir);
            }
        }
        dirs
    }

    /// The sandbox's one directory, on v2.
    pub(crate) fn v2_dir(&self) -> Option<&Path> {
        match self.version() {
            CgroupVersion::V2 => self.dirs().first().copied(),
            CgroupVersion::V1 => None,
        }
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
        match self.version() {
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

    /// Every directory of the sandbox: those the helper joins and rbuild's own.
    fn all_dirs(&self) -> Vec<&Path> {
        let mut dirs = self.dirs();
        dirs.extend(self.runtime.as_deref());
        dirs
    }

    /// SIGKILLs every process in the cgroup. Best effort: a process that is gone is fine.
    pub(crate) fn kill(&self) {
        // `cgroup.kill` (v2, Linux 5.14) kills atomically, forks in flight included.
        if self.version() == CgroupVersion::V2 {
            let dirs = self.all_dirs();
            let killed = dirs
                .iter()
                .filter(|dir| write_file(&dir.join("cgroup.kill"), "1").is_ok())
                .count();
            if !dirs.is_empty() && killed == dirs.len() {
                return;
            }
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
        for dir in self.all_dirs() {
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
        for dir in self.all_dirs() {
            match fs::remove_dir(dir) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err((dir.to_owned(), err)),
            }
        }
        Ok(())
    }
}

/// Creates the v1 cpuset levels of `parent` under `mount`, each with the cpus and memory
/// nodes of the level above (a v1 cpuset starts empty, and an empty one takes no child
/// that has cpus). Returns the last level.
fn create_cpuset_parents(mount: &Path, parent: &str) -> Result<PathBuf, Error> {
    let mut dir = mount.to_owned();
    for part in parent.split('/').filter(|part| !part.is_empty()) {
        let above = dir.clone();
        dir.push(part);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(Error::CreateCgroup {
                    path: dir.clone(),
                    source,
                });
            }
        }
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if read_file(&dir.join(file))?.trim().is_empty() {
                let value = read_file(&above.join(file))?;
                write_file(&dir.join(file), value.trim())?;
            }
        }
    }
    Ok(dir)
}

#[cfg(test)]
mod tests;
