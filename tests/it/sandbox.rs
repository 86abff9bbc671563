//! The sandbox as a security boundary, through the `rbuild` binary: what a RUN step or
//! `rbuild run` cannot see or do, and that nothing of it outlives rbuild.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// Runs `script` with `sh -c` in `rbuild run busybox` with `extra` flags before the image.
fn sh(env: &TestEnv, extra: &[&str], script: &str) -> std::process::Output {
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    env.rbuild(&args)
}

#[test]
fn host_processes_and_files_are_invisible() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let marker = env.path("host-marker");
    fs::write(&marker, "secret").unwrap();
    let script = format!(
        "test -e {} && echo visible; ls /proc | grep -c '^[0-9]'; ls /",
        marker.display()
    );
    let out = sh(&env, &[], &script);
    assert_success(&out);
    let text = stdout(&out);
    let mut lines = text.lines();
    // pid 1 (init), sh, ls and grep at most.
    let processes: u32 = lines.next().unwrap().parse().unwrap();
    assert!(processes <= 4, "{text}");
    let root: Vec<&str> = lines.collect();
    assert!(!root.contains(&"work") && !root.contains(&"boot"), "{text}");
}

#[test]
fn capabilities_are_dockers_default_set() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let out = sh(
        &env,
        &[],
        "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status",
    );
    assert_success(&out);
    assert_eq!(
        stdout(&out),
        "CapInh:\t0000000000000000\n\
         CapPrm:\t00000000a80425fb\n\
         CapEff:\t00000000a80425fb\n\
         CapBnd:\t00000000a80425fb\n\
         CapAmb:\t0000000000000000\n\
         NoNewPrivs:\t1\n\
         Seccomp:\t2\n"
    );
    // Another user keeps the bounding set only.
    let out = sh(
        &env,
        &["-u", "app"],
        "grep -E '^Cap(Eff|Bnd)' /proc/self/status",
    );
    assert_eq!(
        stdout(&out),
        "CapEff:\t0000000000000000\nCapBnd:\t00000000a80425fb\n"
    );
}

#[test]
fn cannot_mount_or_make_namespaces() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let out = sh(
        &env,
        &[],
        "mount -t tmpfs tmpfs /mnt && echo mounted; umount /proc && echo unmounted; \
         unshare -U true && echo userns; unshare -n true && echo netns; \
         nsenter -t 1 -m true && echo setns; true",
    );
    assert_success(&out);
    assert_eq!(stdout(&out), "", "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("mount: permission denied"), "{err}");
    assert!(
        err.contains("unshare(0x10000000): Operation not permitted"),
        "{err}"
    );
}

#[test]
fn cannot_write_proc_sys_sysfs_or_the_cgroupfs() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let out = sh(
        &env,
        &["--pids-limit", "100"],
        "echo 1 > /proc/sys/vm/drop_caches && echo proc-sys; \
         echo c > /proc/sysrq-trigger && echo sysrq; \
         echo x > /sys/kernel/uevent_helper && echo sysfs; \
         ls /sys/fs/cgroup | grep -q . && echo cgroupfs-mounted; \
         for f in /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max; do \
           test -e $f && { echo 1000 > $f && echo raised; }; done; \
         mkdir /sys/fs/cgroup/escape 2>/dev/null && echo mkdir; \
         cat /proc/kcore /proc/keys /proc/timer_list 2>/dev/null | wc -c; true",
    );
    assert_success(&out);
    assert_eq!(stdout(&out), "cgroupfs-mounted\n0\n", "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
}

/// CAP_MKNOD is in Docker's default set: nodes can be made, but only the devices bound
/// into `/dev` can be opened (Docker: the devices cgroup; rbuild: `nodev` mounts).
#[test]
fn device_nodes_made_inside_cannot_be_opened() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let out = sh(
        &env,
        &["--tmpfs", "/scratch"],
        "mknod /dev/full2 c 1 7 && echo x > /dev/full2; \
         mknod /tmp/full3 c 1 7 && echo x > /tmp/full3; \
         mknod /scratch/full4 c 1 7 && echo x > /scratch/full4; \
         echo x > /dev/null && echo null-ok; echo x > /dev/full; true",
    );
    assert_success(&out);
    assert_eq!(stdout(&out), "null-ok\n");
    let err = stderr(&out);
    assert_eq!(err.matches("Permission denied").count(), 3, "{err}");
    // /dev/full itself still behaves as /dev/full.
    assert!(err.contains("No space left on device"), "{err}");
}

/// CVE-2019-5736: with `--init` (and in every build step) the sandbox's pid 1 is the
/// rbuild binary, re-executed. The command must not reach it through `/proc/1/exe` (nor
/// init's descriptors or root): init is non-dumpable and the command has no CAP_SYS_PTRACE.
#[test]
fn init_and_the_rbuild_binary_are_out_of_reach() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let out = sh(
        &env,
        &["--init"],
        "cat /proc/1/comm; \
         head -c 1 /proc/1/exe >/dev/null && echo exe-readable; \
         echo x >> /proc/1/exe && echo exe-writable; \
         for fd in 0 1 2 3 4 5 6 7 8 9; do \
           readlink /proc/1/fd/$fd && echo fd-readable; \
           head -c 0 /proc/1/fd/$fd 2>/dev/null && echo fd-open; \
         done; \
         ls /proc/1/root/ >/dev/null && echo root-reachable; \
         cat /proc/1/environ >/dev/null && echo environ-readable; true",
    );
    assert_success(&out);
    assert!(stdout(&out).starts_with("rbuild"), "{}", stdout(&out));
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
}

#[test]
fn cannot_load_kernel_modules() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let out = sh(&env, &[], "insmod /bin/busybox");
    assert_failure(&out);
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn network_none_has_only_loopback() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let out = sh(
        &env,
        &["--network", "none"],
        "ls /sys/class/net; ip route | wc -l; ping -c 1 -W 1 10.88.0.1 >/dev/null 2>&1 || echo unreachable",
    );
    assert_success(&out);
    assert_eq!(stdout(&out), "lo\n0\nunreachable\n");
}

/// CVE-2024-21626 ("Leaky Vessels"): a working directory of `/proc/self/fd/N` would reach
/// a descriptor of the host held by the runtime. rbuild refuses magic links in it.
#[test]
fn leaked_fd_workdir_is_refused() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    for fd in 3..9 {
        let dir = format!("/proc/self/fd/{fd}");
        let out = env.rbuild(&["run", "-w", &dir, "busybox", "pwd"]);
        assert_eq!(out.status.code(), Some(125), "{dir}: {}", stdout(&out));
        assert!(stdout(&out).is_empty(), "{dir}: {}", stdout(&out));
    }
    let out = env.rbuild(&["run", "-w", "/proc/self/fd/5", "busybox", "pwd"]);
    assert!(
        stderr(&out).contains("working directory /proc/self/fd/5"),
        "{}",
        stderr(&out)
    );
    // The same through a Dockerfile's WORKDIR.
    let ctx = env.context(
        "leaky",
        &[(
            "Dockerfile",
            "FROM busybox\nWORKDIR /proc/self/fd/7\nRUN pwd && ls\n",
        )],
    );
    let out = env.build(&ctx, "leaky");
    assert_failure(&out);
    assert!(stderr(&out).contains("/proc/self/fd/7"), "{}", stderr(&out));
}

#[test]
fn descriptors_above_stdio_are_closed() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let held = env.path("held");
    fs::write(&held, "x").unwrap();
    // rbuild itself starts with descriptors 7 and 8 open.
    let mut command = env.command();
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
    command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            "exec 7<'{}' 8<'{}'; exec \"$0\" \"$@\"",
            held.display(),
            env.dir.path().display()
        ))
        .arg(program)
        .args(args)
        .args(["run", "busybox", "ls", "/proc/self/fd"])
        .env("RBUILD_ROOT", env.root())
        .stdin(Stdio::null());
    let out = command.output().unwrap();
    assert_success(&out);
    // ls's own directory descriptor is 3.
    assert_eq!(stdout(&out), "0\n1\n2\n3\n");
}

#[test]
fn rlimits_are_not_raised_above_the_callers() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let mut command = env.command();
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
    command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -n 512 && exec \"$0\" \"$@\"")
        .arg(program)
        .args(args)
        .args([
            "run",
            "busybox",
            "sh",
            "-c",
            "ulimit -Hn; ulimit -n 4096 && echo raised; true",
        ])
        .env("RBUILD_ROOT", env.root())
        .stdin(Stdio::null());
    let out = command.output().unwrap();
    assert_success(&out);
    assert_eq!(stdout(&out), "512\n", "{}", stderr(&out));
}

/// The sandbox's cgroup directories of the rbuild process `pid` (v1 pids or v2).
fn sandbox_cgroups(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("rb-{pid}-");
    ["/sys/fs/cgroup/pids/rbuild", "/sys/fs/cgroup/rbuild"]
        .iter()
        .filter_map(|parent| fs::read_dir(parent).ok())
        .flat_map(|entries| entries.flatten())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .map(|entry| entry.path())
        .collect()
}

fn cgroup_processes(dir: &Path) -> usize {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

/// Host pids of processes whose command line is exactly `args`.
fn processes_running(args: &[&str]) -> Vec<u32> {
    let wanted: Vec<u8> = args
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted))
        .collect()
}

/// Waits (bounded) until `done` holds; panics with `what` otherwise.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill9(child: &mut Child) {
    // SAFETY: kill(2) on the pid of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
}

#[test]
fn sandbox_dies_with_rbuild_run() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let marker = ["sleep", "3217"];
    let mut child = env
        .command()
        .args(["run", "busybox", "sh", "-c", "sleep 3217 & sleep 3217"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    kill9_and_check_the_sandbox_goes(&env, &mut child, &marker);
}

/// Waits for the two `marker` processes a sandbox of `child` runs, SIGKILLs `child`, and
/// checks that they die with it, that their cgroup empties, and that the next rbuild on the
/// store removes the cgroup.
fn kill9_and_check_the_sandbox_goes(env: &TestEnv, child: &mut Child, marker: &[&str]) {
    wait_until("the sandbox's two processes", || {
        processes_running(marker).len() == 2
    });
    let cgroups = sandbox_cgroups(child.id());
    assert!(!cgroups.is_empty());
    kill9(child);
    wait_until("the sandbox's processes to die with rbuild", || {
        processes_running(marker).is_empty()
    });
    wait_until("the sandbox's cgroup to empty", || {
        cgroups.iter().all(|dir| cgroup_processes(dir) == 0)
    });
    // The next rbuild removes what the dead one left.
    assert_success(&env.rbuild(&["run", "--network", "none", "busybox", "true"]));
    assert!(cgroups.iter().all(|dir| !dir.exists()), "{cgroups:?}");
}

#[test]
fn run_step_dies_with_rbuild_build() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let marker = ["sleep", "3218"];
    let ctx = env.context(
        "slow",
        &[("Dockerfile", "FROM busybox\nRUN sleep 3218 & sleep 3218\n")],
    );
    let mut child = env
        .command()
        .args(["build", "--progress", "plain", "-t", "slow"])
        .arg(&ctx)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    kill9_and_check_the_sandbox_goes(&env, &mut child, &marker);
}

/// A real fork bomb: the pids limit holds it (watched from the host, in the sandbox's
/// cgroup), and everything is gone when the sandbox ends.
#[test]
fn fork_bomb_is_stopped_by_the_pids_limit() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let mut child = env
        .command()
        .args([
            "run",
            "--pids-limit",
            "40",
            "busybox",
            "sh",
            "-c",
            "bomb() { bomb | bomb & }; bomb; sleep 3",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    let mut samples = 0;
    while child.try_wait().unwrap().is_none() && samples < 600 {
        for dir in sandbox_cgroups(pid) {
            peak = peak.max(cgroup_processes(&dir));
        }
        samples += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    // The command's tree only: rbuild's helper and init are not in the limited cgroup.
    assert!(peak <= 40, "{peak} processes");
    assert!(
        stderr(&out).contains("can't fork"),
        "{}",
        stderr(&out).lines().next().unwrap_or("")
    );
    assert!(sandbox_cgroups(pid).is_empty());
}

/// `--pids-limit N` is the command's, as with Docker: `pids.max` reads N inside, N
/// processes can exist and the next fork fails, whether the command is pid 1 (`run`), runs
/// under rbuild's init (`run --init`) or is a build step.
#[test]
fn the_pids_limit_is_the_commands_alone() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    // The shell and 9 sleeps are 10 processes: the 10th sleep would be the 11th. Nothing
    // else may fork in between, so only builtins (`read`, `[`, `echo`).
    let script = "f=/sys/fs/cgroup/pids.max; [ -e $f ] || f=/sys/fs/cgroup/pids/pids.max; \
                  read max < $f; echo max=$max; i=0; \
                  while [ $i -lt 10 ]; do sleep 30 & i=$((i+1)); echo started $i; done";
    let expected: String = std::iter::once("max=10\n".to_owned())
        .chain((1..10).map(|i| format!("started {i}\n")))
        .collect();
    for extra in [
        &["--pids-limit", "10"][..],
        &["--pids-limit", "10", "--init"],
    ] {
        let out = sh(&env, extra, script);
        assert_eq!(stdout(&out), expected, "{extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("can't fork"), "{}", stderr(&out));
    }

    let ctx = env.context(
        "pids",
        &[("Dockerfile", &format!("FROM busybox\nRUN {script}\n"))],
    );
    let out = env.rbuild(&[
        "build",
        "--progress",
        "plain",
        "--pids-limit",
        "10",
        ctx.to_str().unwrap(),
    ]);
    assert_failure(&out);
    let log = stderr(&out);
    assert!(log.contains("max=10") && log.contains("started 9"), "{log}");
    assert!(
        !log.contains("started 10") && log.contains("can't fork"),
        "{log}"
    );
}

#[test]
fn memory_over_the_limit_is_killed_and_reported() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let out = env.rbuild(&["run", "-m", "32m", "busybox", "tail", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(137));
    assert!(
        stderr(&out).contains("out of memory (memory limit of 33554432 bytes)"),
        "{}",
        stderr(&out)
    );
    let ctx = env.context(
        "hungry",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo start\nRUN tail /dev/zero\n",
        )],
    );
    let out = env.rbuild(&[
        "build",
        "--progress",
        "plain",
        "--memory",
        "32m",
        "-t",
        "hungry",
        ctx.to_str().unwrap(),
    ]);
    assert_failure(&out);
    let err = stderr(&out);
    assert!(
        err.contains("`RUN tail /dev/zero` was killed: out of memory (limit 33554432 bytes)"),
        "{err}"
    );
    assert!(err.contains("Dockerfile:3"), "{err}");
}

/// `RUN --security=insecure` runs privileged only in a build given `--allow
/// security.insecure` (checked before anything runs, cached or not): every capability the
/// host has, no seccomp profile, no `no_new_privs`, mounts allowed, `/proc/sys` writable
/// and the host's devices; its namespaces stay (the hostname it sets is its own).
/// `rbuild run --privileged` is the same sandbox.
#[test]
fn insecure_steps_run_privileged_only_when_the_build_allows_it() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let probe = "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; \
                 mkdir -p /m && mount -t tmpfs none /m && echo mounted && umount /m; \
                 echo insecure-step > /proc/sys/kernel/hostname && hostname; \
                 ls /dev | wc -l";
    let context = env.context(
        "insecure",
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox\n\
                 RUN grep NoNewPrivs /proc/self/status > /sandboxed\n\
                 RUN --security=insecure sh -c \"{probe}\" > /insecure 2>&1\n"
            ),
        )],
    );
    let build = |allow: bool| {
        let mut args = vec!["build", "--progress", "plain", "-t", "insecure:1"];
        if allow {
            args.extend(["--allow", "security.insecure"]);
        }
        args.push(context.to_str().unwrap());
        env.rbuild(&args)
    };
    let refused = |out: &std::process::Output| {
        assert_failure(out);
        let err = flat(&stderr(out));
        assert!(err.contains("Dockerfile:3"), "{err}");
        assert!(err.contains("--allow security.insecure"), "{err}");
        // Refused before any step ran.
        assert!(!err.contains("[2/3]"), "{err}");
    };
    refused(&build(false));

    assert_success(&build(true));
    let host_caps = fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("CapBnd:").map(|v| v.trim().to_owned()))
        .unwrap();
    let out = env.rbuild(&["run", "insecure:1", "cat", "/sandboxed", "/insecure"]);
    assert_success(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..6],
        [
            "NoNewPrivs:\t1",
            &format!("CapEff:\t{host_caps}"),
            "NoNewPrivs:\t0",
            "Seccomp:\t0",
            "mounted",
            "insecure-step",
        ],
        "{text}"
    );
    let devices: usize = lines[6].trim().parse().unwrap();
    let sandboxed = sh(&env, &[], "ls /dev | wc -l");
    let sandboxed: usize = stdout(&sandboxed).trim().parse().unwrap();
    assert!(
        devices > sandboxed,
        "{devices} devices, {sandboxed} sandboxed"
    );

    // Cached now, and still refused without the flag.
    refused(&build(false));

    let out = sh(&env, &["--privileged"], probe);
    assert_success(&out);
    assert!(
        stdout(&out).starts_with(&format!(
            "CapEff:\t{host_caps}\nNoNewPrivs:\t0\nSeccomp:\t0\nmounted\ninsecure-step\n"
        )),
        "{}",
        stdout(&out)
    );
}
