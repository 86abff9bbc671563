//! The sandbox cgroup's directories and limits, on fake v1 and v2 trees.

use super::*;
use crate::spec::CpuQuota;

/// Creates the directories without writing limits: fake trees have no control files
/// until the test writes them.
fn dirs_only(hierarchy: &Hierarchy, parent: &str, id: &str, limits: &Limits) -> SandboxCgroup {
    let mut cgroup = SandboxCgroup {
        version: Some(hierarchy.version()),
        ..SandboxCgroup::default()
    };
    cgroup.create_dirs(hierarchy, parent, id, limits).unwrap();
    cgroup
}

/// A v1 hierarchy with only the memory controller, at `root`.
fn memory_only(root: &Path) -> Hierarchy {
    Hierarchy::V1 {
        memory: Some(root.to_owned()),
        pids: None,
        cpu: None,
        cpuset: None,
        mounts: Vec::new(),
    }
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
        cpu: None,
        cpuset: None,
        mounts: Vec::new(),
    };
    let limits = Limits {
        memory_bytes: Some(32 << 20),
        pids: Some(20),
        ..Limits::default()
    };
    // The fake tree has no control files, so writing limits fails, and the failure
    // removes what was created.
    let err = SandboxCgroup::create(&hierarchy, "rbuild", "sb1", &limits).unwrap_err();
    assert!(matches!(err, Error::WriteCgroup { .. }), "{err:?}");
    assert!(!memory.join("rbuild/sb1").exists());

    // Without a memory limit there is no memory cgroup.
    let cgroup = SandboxCgroup::create(&hierarchy, "rbuild", "sb0", &Limits::default()).unwrap();
    assert_eq!(cgroup.dirs(), vec![pids.join("rbuild/sb0")]);
    assert!(!memory.join("rbuild/sb0").exists());
    assert!(!cgroup.oom_killed(true));

    let mut cgroup = dirs_only(&hierarchy, "rbuild", "sb1", &limits);
    assert_eq!(
        cgroup.dirs(),
        vec![memory.join("rbuild/sb1"), pids.join("rbuild/sb1")]
    );
    // With a pids limit, rbuild's own processes have a sibling in the pids hierarchy,
    // which the helper does not join and which goes with the sandbox.
    cgroup.create_runtime_dir(&limits).unwrap();
    assert_eq!(
        cgroup.runtime_procs(),
        Some(pids.join("rbuild/sb1.runtime/cgroup.procs"))
    );
    assert!(!memory.join("rbuild/sb1.runtime").exists());
    assert_eq!(
        SandboxCgroup::existing(&hierarchy, "rbuild", "sb1").runtime_procs(),
        cgroup.runtime_procs()
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
        "20",
        "the limit is the command's alone"
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
    let hierarchy = memory_only(temp.path());
    let cgroup = SandboxCgroup::create(&hierarchy, "", "sb", &Limits::default()).unwrap();
    let dir = temp.path().join("sb");
    assert_eq!(cgroup.dirs(), vec![dir.as_path()]);
    touch(&dir.join("memory.limit_in_bytes"), "");
    let limits = Limits {
        memory_bytes: Some(1000),
        pids: None,
        ..Limits::default()
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
    let hierarchy = memory_only(temp.path());
    let limits = Limits {
        memory_bytes: None,
        pids: Some(5),
        ..Limits::default()
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
        root: root.to_owned(),
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
        ..Limits::default()
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
    assert_eq!(fs::read_to_string(dir.join("pids.max")).unwrap(), "100");

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
        root: temp.path().to_owned(),
    };
    let limits = Limits {
        memory_bytes: Some(1 << 20),
        pids: None,
        ..Limits::default()
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
    let hierarchy = memory_only(temp.path());
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

#[test]
fn v1_cpu_quota_and_cpuset() {
    let temp = tempfile::tempdir().unwrap();
    let cpu = temp.path().join("cpu");
    let cpuset = temp.path().join("cpuset");
    let pids = temp.path().join("pids");
    for dir in [&cpu, &cpuset, &pids] {
        fs::create_dir_all(dir).unwrap();
    }
    touch(&cpuset.join("cpuset.cpus"), "0-1\n");
    touch(&cpuset.join("cpuset.mems"), "0\n");
    // The `rbuild` level exists and is still empty, as the kernel makes it.
    fs::create_dir(cpuset.join("rbuild")).unwrap();
    touch(&cpuset.join("rbuild/cpuset.cpus"), "\n");
    touch(&cpuset.join("rbuild/cpuset.mems"), "\n");
    let hierarchy = Hierarchy::V1 {
        memory: None,
        pids: Some(pids.clone()),
        cpu: Some(cpu.clone()),
        cpuset: Some(cpuset.clone()),
        mounts: Vec::new(),
    };
    let limits = Limits {
        cpu: CpuQuota::from_cpus(0.5),
        cpuset_cpus: Some("1".into()),
        ..Limits::default()
    };
    let cgroup = dirs_only(&hierarchy, "rbuild", "sb", &limits);
    assert_eq!(
        cgroup.dirs(),
        vec![
            pids.join("rbuild/sb"),
            cpu.join("rbuild/sb"),
            cpuset.join("rbuild/sb")
        ]
    );
    // The parent level got its cpus and memory nodes from the root.
    assert_eq!(
        fs::read_to_string(cpuset.join("rbuild/cpuset.cpus")).unwrap(),
        "0-1"
    );
    assert_eq!(
        fs::read_to_string(cpuset.join("rbuild/cpuset.mems")).unwrap(),
        "0"
    );
    for file in ["cpu.cfs_period_us", "cpu.cfs_quota_us"] {
        touch(&cpu.join("rbuild/sb").join(file), "-1\n");
    }
    for file in ["cpuset.cpus", "cpuset.mems"] {
        touch(&cpuset.join("rbuild/sb").join(file), "\n");
    }
    cgroup.apply_limits(&limits).unwrap();
    let read = |path: PathBuf| fs::read_to_string(path).unwrap();
    assert_eq!(read(cpu.join("rbuild/sb/cpu.cfs_period_us")), "100000");
    assert_eq!(read(cpu.join("rbuild/sb/cpu.cfs_quota_us")), "50000");
    assert_eq!(read(cpuset.join("rbuild/sb/cpuset.cpus")), "1");
    assert_eq!(read(cpuset.join("rbuild/sb/cpuset.mems")), "0");

    // Without the controller, a CPU limit is an error.
    let without = Hierarchy::V1 {
        memory: None,
        pids: Some(pids.clone()),
        cpu: None,
        cpuset: None,
        mounts: Vec::new(),
    };
    let err = SandboxCgroup::create(&without, "rbuild", "sb2", &limits).unwrap_err();
    assert!(
        matches!(
            err,
            Error::MissingController {
                controller: "cpu",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!pids.join("rbuild/sb2").exists());
}

#[test]
fn v2_cpu_max_and_cpuset() {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path();
    fake_v2_level(root, "cpuset cpu memory pids\n");
    let hierarchy = Hierarchy::V2 {
        root: root.to_owned(),
    };
    let limits = Limits {
        cpu: CpuQuota::from_cpus(1.5),
        cpuset_cpus: Some("0".into()),
        ..Limits::default()
    };
    fake_v2_level(&root.join("rbuild"), "cpuset cpu memory pids\n");
    let cgroup = dirs_only(&hierarchy, "rbuild", "sb", &limits);
    let dir = root.join("rbuild/sb");
    assert_eq!(cgroup.dirs(), vec![dir.as_path()]);
    assert_eq!(
        fs::read_to_string(root.join("rbuild/cgroup.subtree_control")).unwrap(),
        "+memory +pids +cpu +cpuset"
    );
    touch(&dir.join("cpu.max"), "max 100000\n");
    touch(&dir.join("cpuset.cpus"), "\n");
    cgroup.apply_limits(&limits).unwrap();
    assert_eq!(
        fs::read_to_string(dir.join("cpu.max")).unwrap(),
        "150000 100000"
    );
    assert_eq!(fs::read_to_string(dir.join("cpuset.cpus")).unwrap(), "0");

    // Without `cpu` in the root's controllers, a quota is an error.
    let temp = tempfile::tempdir().unwrap();
    fake_v2_level(temp.path(), "memory pids\n");
    let hierarchy = Hierarchy::V2 {
        root: temp.path().to_owned(),
    };
    let err = SandboxCgroup::create(&hierarchy, "rbuild", "sb", &limits).unwrap_err();
    assert!(
        matches!(
            err,
            Error::MissingController {
                controller: "cpu",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn v2_runtime_cgroup_is_a_sibling_only_with_a_pids_limit() {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path();
    fake_v2_level(root, "memory pids\n");
    fake_v2_level(&root.join("rbuild"), "memory pids\n");
    let hierarchy = Hierarchy::V2 {
        root: root.to_owned(),
    };
    let without = SandboxCgroup::create(&hierarchy, "rbuild", "a", &Limits::default()).unwrap();
    assert_eq!(without.runtime_procs(), None);
    let limits = Limits {
        pids: Some(10),
        ..Limits::default()
    };
    let mut cgroup = dirs_only(&hierarchy, "rbuild", "b", &limits);
    cgroup.create_runtime_dir(&limits).unwrap();
    assert_eq!(
        cgroup.runtime_procs(),
        Some(root.join("rbuild/b.runtime/cgroup.procs"))
    );
    // The helper starts init in the sandbox's cgroup, not in rbuild's.
    assert_eq!(cgroup.v2_dir(), Some(root.join("rbuild/b").as_path()));
    assert_eq!(cgroup.dirs(), vec![root.join("rbuild/b")]);
    cgroup.try_remove().unwrap();
    assert!(!root.join("rbuild/b.runtime").exists());
    assert!(!root.join("rbuild/b").exists());
}
