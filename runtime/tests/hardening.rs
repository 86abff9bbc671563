//! Privileged tests of the sandbox's hardening through the runtime's API: Docker's default
//! privileges, working directories through magic links, CPU limits in the sandbox's own
//! read-only cgroupfs.

mod common;

use common::Fixture;
use rbuild_runtime::{Limits, SetupKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileges_are_dockers_defaults() {
    require_privileges!();
    let fixture = Fixture::new();
    let out = fixture
        .output(&[
            "sh",
            "-c",
            "grep -E '^(CapEff|CapBnd|CapInh|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status; \
             mount -t tmpfs t /tmp 2>/dev/null || echo no-mount; \
             unshare -U true 2>/dev/null || echo no-userns; \
             echo 1 > /proc/sys/kernel/hostname 2>/dev/null || echo proc-sys-ro; \
             test -s /proc/keys || echo keys-masked",
        ])
        .await;
    assert_eq!(
        out,
        "CapInh:\t0000000000000000\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\n\
         CapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n\
         no-mount\nno-userns\nproc-sys-ro\nkeys-masked\n"
    );
}

/// CVE-2024-21626: init may hold descriptors of the host; a working directory through
/// `/proc/self/fd` must not reach them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn working_directory_through_a_magic_link_is_refused() {
    require_privileges!();
    let fixture = Fixture::new();
    for fd in 0..8 {
        let mut spec = fixture.spec(&["pwd"]);
        spec.process.cwd = format!("/proc/self/fd/{fd}");
        let (outcome, out, _) = fixture.run(&spec).await;
        let err = outcome.expect_err(&spec.process.cwd);
        assert_eq!(err.setup_kind(), Some(SetupKind::WorkingDirectory), "{err}");
        assert_eq!(out, "");
    }
    // A symlink in the image leading out of the root stays inside it.
    std::os::unix::fs::symlink("../../../../../../../tmp/w", fixture.lower.join("w")).unwrap();
    let mut spec = fixture.spec(&["pwd"]);
    spec.process.cwd = "/w".into();
    let (outcome, out, _) = fixture.run(&spec).await;
    assert!(outcome.unwrap().status.success());
    assert_eq!(out, "/tmp/w\n");
    assert!(fixture.upper.join("tmp/w").is_dir());
}

/// The limits as written to the sandbox's own cgroups, read through its read-only cgroupfs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_quota_and_cpuset_are_applied() {
    require_privileges!();
    let fixture = Fixture::new();
    let mut spec = fixture.spec(&[
        "sh",
        "-c",
        "cat /sys/fs/cgroup/cpu.max /sys/fs/cgroup/cpuset.cpus.effective 2>/dev/null \
         || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpuset/cpuset.cpus; \
         touch /sys/fs/cgroup/x 2>/dev/null || echo read-only",
    ]);
    spec.limits = Limits {
        cpu: rbuild_runtime::CpuQuota::from_cpus(0.25),
        cpuset_cpus: Some("0".into()),
        ..Limits::default()
    };
    let (outcome, out, err) = fixture.run(&spec).await;
    assert!(outcome.unwrap().status.success(), "{err}");
    assert!(
        out == "25000\n0\nread-only\n" || out == "25000 100000\n0\nread-only\n",
        "{out:?}"
    );
    assert!(fixture.cgroups_left().is_empty());
}
