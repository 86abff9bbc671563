//! Privileged tests of real sandboxes over a busybox root: output, exit status, isolation,
//! users, limits, and that nothing is left behind.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::Fixture;
use rbuild_runtime::{Error, ExitStatus, Limits, Mount, Network, SetupKind, StdioMode};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_output_is_captured() {
    require_privileges!();
    let fixture = Fixture::new();
    let (outcome, out, err) = fixture
        .run(&fixture.spec(&["sh", "-c", "echo hello; echo oops >&2"]))
        .await;
    let outcome = outcome.unwrap();
    assert_eq!(outcome.status, ExitStatus::Exited(0));
    assert!(!outcome.oom_killed);
    assert_eq!(out, "hello\n");
    assert_eq!(err, "oops\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_is_propagated() {
    require_privileges!();
    let fixture = Fixture::new();
    let (outcome, _, _) = fixture.run(&fixture.spec(&["sh", "-c", "exit 3"])).await;
    let status = outcome.unwrap().status;
    assert_eq!(status, ExitStatus::Exited(3));
    assert_eq!(status.code(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn death_by_signal_is_reported() {
    require_privileges!();
    let fixture = Fixture::new();
    let (outcome, _, _) = fixture
        .run(&fixture.spec(&["sh", "-c", "kill -9 $$"]))
        .await;
    let status = outcome.unwrap().status;
    assert_eq!(status, ExitStatus::Signaled(9));
    assert_eq!(status.code(), 137);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_land_in_the_upper_dir_and_stubs_are_removed() {
    require_privileges!();
    let fixture = Fixture::new();
    let mut spec = fixture.spec(&["sh", "-c", "echo data > /file; mkdir -p /mnt/cache/kept"]);
    spec.mounts.push(Mount {
        fstype: "tmpfs".into(),
        source: "tmpfs".into(),
        target: "/mnt/cache".into(),
        options: vec!["size=1m".into()],
    });
    let (outcome, _, err) = fixture.run(&spec).await;
    assert!(outcome.unwrap().status.success(), "{err}");
    assert_eq!(
        fs::read_to_string(fixture.upper.join("file")).unwrap(),
        "data\n"
    );
    // /proc, /dev, /sys and the mount point did not exist in the root: they are gone, and
    // so is the tmpfs content (it was never in the upper dir).
    let mut entries: Vec<_> = fs::read_dir(&fixture.upper)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    entries.sort();
    assert_eq!(entries, ["file"]);
    assert!(!fixture.lower.join("file").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_files_are_not_visible() {
    require_privileges!();
    let fixture = Fixture::new();
    let marker = fixture.temp.path().join("host-marker");
    fs::write(&marker, "host").unwrap();
    let script = format!(
        "test -e {} && echo visible || echo hidden; ls /",
        marker.display()
    );
    let out = fixture.output(&["sh", "-c", &script]).await;
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("hidden"));
    let mut root: Vec<&str> = lines.collect();
    root.sort();
    assert_eq!(root, ["bin", "dev", "etc", "proc", "sys"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_sandbox_processes_are_visible() {
    require_privileges!();
    let fixture = Fixture::new();
    let out = fixture
        .output(&["sh", "-c", "echo $$; cat /proc/1/comm; ls /proc"])
        .await;
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("2"), "{out}");
    assert!(lines.next().unwrap().starts_with("rbuild-sandbox"), "{out}");
    let pids: Vec<u32> = lines.filter_map(|line| line.parse().ok()).collect();
    assert!(pids.contains(&1) && pids.contains(&2), "{out}");
    assert!(pids.iter().all(|pid| *pid < 10), "{out}");
}

/// `init: false`: the command is pid 1 itself; its exit status, and a command that cannot
/// be started, are reported as with init.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_init_the_command_is_pid_1() {
    require_privileges!();
    let fixture = Fixture::new();
    let mut spec = fixture.spec(&["sh", "-c", "echo $$; cat /proc/1/comm; exit 3"]);
    spec.init = false;
    let (outcome, out, _) = fixture.run(&spec).await;
    assert_eq!(outcome.unwrap().status.code(), 3);
    assert_eq!(out, "1\nsh\n");

    let mut spec = fixture.spec(&["no-such-command"]);
    spec.init = false;
    let (outcome, _, _) = fixture.run(&spec).await;
    let err = outcome.unwrap_err();
    assert_eq!(err.setup_kind(), Some(SetupKind::Executable), "{err}");
    assert!(fixture.state_left().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostname_is_set() {
    require_privileges!();
    let fixture = Fixture::new();
    let mut spec = fixture.spec(&["hostname"]);
    spec.hostname = "builder-42".into();
    let (outcome, out, _) = fixture.run(&spec).await;
    assert!(outcome.unwrap().status.success());
    assert_eq!(out, "builder-42\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_none_has_only_loopback_up() {
    require_privileges!();
    let fixture = Fixture::new();
    let out = fixture
        .output(&[
            "sh",
            "-c",
            "ls /sys/class/net; cat /sys/class/net/lo/flags; ls /etc",
        ])
        .await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "lo", "{out}");
    let flags = u32::from_str_radix(lines[1].trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is not up: {out}");
    // No resolver files without the host network.
    assert_eq!(&lines[2..], ["group", "passwd"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_network_gets_resolver_files_that_leave_no_trace() {
    require_privileges!();
    let fixture = Fixture::new();
    let mut spec = fixture.spec(&[
        "sh",
        "-c",
        "cat /etc/resolv.conf; echo ---; ls /sys/class/net; echo x > /etc/hosts",
    ]);
    spec.network = Network::Host;
    let etc_mtime = fs::metadata(fixture.lower.join("etc"))
        .unwrap()
        .modified()
        .unwrap();
    let (outcome, out, err) = fixture.run(&spec).await;
    // The bound files are read-only.
    assert_eq!(
        outcome.unwrap().status,
        ExitStatus::Exited(1),
        "{out} {err}"
    );
    assert!(err.contains("Read-only file system"), "{err}");
    let (resolv, interfaces) = out.split_once("---\n").unwrap();
    assert_eq!(resolv, fs::read_to_string("/etc/resolv.conf").unwrap());
    let host_interfaces = fs::read_dir("/sys/class/net").unwrap().count();
    assert_eq!(interfaces.lines().count(), host_interfaces);
    // The stub files are gone and `/etc` has its times back.
    assert!(!fixture.upper.join("etc/resolv.conf").exists());
    assert!(!fixture.upper.join("etc/hosts").exists());
    let upper_etc = fixture.upper.join("etc");
    if upper_etc.exists() {
        assert_eq!(fs::read_dir(&upper_etc).unwrap().count(), 0);
        assert_eq!(
            fs::metadata(&upper_etc).unwrap().modified().unwrap(),
            etc_mtime
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_resolved_from_the_sandbox() {
    require_privileges!();
    let fixture = Fixture::new();
    let id = |user: &str| {
        let mut spec = fixture.spec(&["id"]);
        spec.process.user = user.into();
        spec
    };
    for (user, expected) in [
        ("", "uid=0(root) gid=0(root) groups=10(wheel)"),
        ("nobody", "uid=65534(nobody) gid=65534(nogroup)"),
        ("alice", "uid=1000(alice) gid=1000(alice) groups=10(wheel)"),
        // An explicit group: no supplementary groups.
        ("alice:wheel", "uid=1000(alice) gid=10(wheel)"),
        ("1000:1000", "uid=1000(alice) gid=1000(alice)"),
        // Unknown uid: gid 0 unless given.
        ("4242", "uid=4242 gid=0(root)"),
        ("4242:10", "uid=4242 gid=10(wheel)"),
    ] {
        let (outcome, out, err) = fixture.run(&id(user)).await;
        assert!(outcome.unwrap().status.success(), "{user}: {err}");
        assert_eq!(out.trim_end(), expected, "user {user:?}");
    }
    let err = fixture.run(&id("mallory")).await.0.unwrap_err();
    assert_eq!(err.setup_kind(), Some(SetupKind::User));
    assert_eq!(
        err.to_string(),
        "unable to find user mallory: no matching entries in passwd file"
    );
    assert!(fixture.cgroups_left().is_empty());
    assert!(fixture.state_left().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn working_directory_is_created() {
    require_privileges!();
    let fixture = Fixture::new();
    let mut spec = fixture.spec(&["pwd"]);
    spec.process.cwd = "/work/dir".into();
    let (outcome, out, _) = fixture.run(&spec).await;
    assert!(outcome.unwrap().status.success());
    assert_eq!(out, "/work/dir\n");
    assert!(fixture.upper.join("work/dir").is_dir());

    let mut spec = fixture.spec(&["pwd"]);
    spec.process.cwd = "/etc/passwd".into();
    let err = fixture.run(&spec).await.0.unwrap_err();
    assert_eq!(err.setup_kind(), Some(SetupKind::WorkingDirectory));
    assert_eq!(
        err.to_string(),
        "working directory /etc/passwd is not a directory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_is_exact_and_descriptors_are_closed() {
    require_privileges!();
    let fixture = Fixture::new();
    let mut spec = fixture.spec(&["sh", "-c", "env | sort; ls /proc/self/fd"]);
    spec.process.env = vec!["PATH=/bin".into(), "FOO=bar baz".into()];
    let (outcome, out, _) = fixture.run(&spec).await;
    assert!(outcome.unwrap().status.success());
    let lines: Vec<&str> = out.lines().collect();
    // sh adds PWD and SHLVL of its own.
    let vars: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|line| line.contains('='))
        .filter(|line| !line.starts_with("PWD=") && !line.starts_with("SHLVL="))
        .collect();
    // HOME comes from the user's passwd entry when the environment has none, as with runc.
    assert_eq!(vars, ["FOO=bar baz", "HOME=/root", "PATH=/bin"]);
    // ls's own directory descriptor is 3; nothing else above 2.
    let fds: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|line| !line.contains('='))
        .collect();
    assert_eq!(fds, ["0", "1", "2", "3"], "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_executable_is_a_setup_error() {
    require_privileges!();
    let fixture = Fixture::new();
    let err = fixture.run(&fixture.spec(&["nope"])).await.0.unwrap_err();
    assert_eq!(err.setup_kind(), Some(SetupKind::Executable));
    assert_eq!(
        err.to_string(),
        "exec: \"nope\": executable file not found in $PATH"
    );

    // Found but not executable: exec itself fails.
    fs::write(fixture.lower.join("bin/script"), "#!/bin/sh\n").unwrap();
    let err = fixture
        .run(&fixture.spec(&["/bin/script"]))
        .await
        .0
        .unwrap_err();
    assert_eq!(err.setup_kind(), Some(SetupKind::Executable));
    assert!(
        err.to_string()
            .starts_with("failed to exec /bin/script: EACCES"),
        "{err}"
    );
    assert!(fixture.state_left().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_root_mount_is_a_setup_error() {
    require_privileges!();
    let fixture = Fixture::new();
    let mut spec = fixture.spec(&["true"]);
    spec.root = Mount::overlay(
        &[fixture.temp.path().join("does-not-exist")],
        Some((fixture.upper.clone(), fixture.work.clone())),
        fixture.empty.clone(),
    );
    let err = fixture.run(&spec).await.0.unwrap_err();
    assert_eq!(err.setup_kind(), Some(SetupKind::Mount));
    assert!(
        err.to_string()
            .starts_with("failed to mount overlay overlay on "),
        "{err}"
    );
    assert!(fixture.cgroups_left().is_empty());
    assert!(fixture.state_left().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pids_limit_stops_a_fork_loop() {
    require_privileges!();
    let fixture = Fixture::new();
    let mut spec = fixture.spec(&[
        "sh",
        "-c",
        "for i in $(seq 50); do sleep 5 & done; echo done",
    ]);
    spec.limits = Limits {
        memory_bytes: None,
        pids: Some(20),
        ..Limits::default()
    };
    let started = Instant::now();
    let (outcome, _, err) = fixture.run(&spec).await;
    outcome.unwrap();
    assert!(err.contains("can't fork"), "{err}");
    // The background sleeps died with the sandbox.
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(fixture.cgroups_left().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_reports_oom_kill() {
    require_privileges!();
    let fixture = Fixture::new();
    let mut spec = fixture.spec(&["tail", "/dev/zero"]);
    spec.limits = Limits {
        memory_bytes: Some(32 << 20),
        pids: None,
        ..Limits::default()
    };
    let (outcome, _, err) = fixture.run(&spec).await;
    let outcome = outcome.unwrap();
    assert_eq!(outcome.status, ExitStatus::Signaled(9), "{err}");
    assert!(outcome.oom_killed);
    assert!(fixture.cgroups_left().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_left_behind() {
    require_privileges!();
    let fixture = Fixture::new();
    let mut spec = fixture.spec(&["sh", "-c", "sleep 30 & echo started"]);
    spec.limits = Limits {
        memory_bytes: Some(64 << 20),
        pids: Some(64),
        ..Limits::default()
    };
    let started = Instant::now();
    let out = {
        let (outcome, out, _) = fixture.run(&spec).await;
        assert!(outcome.unwrap().status.success());
        out
    };
    assert_eq!(out, "started\n");
    // The background sleep did not keep the sandbox (or its stdout) alive.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(host_mounts(&fixture), Vec::<String>::new());
    assert!(fixture.cgroups_left().is_empty());
    assert!(fixture.state_left().is_empty());
}

fn host_mounts(fixture: &Fixture) -> Vec<String> {
    common::host_mounts_under(fixture.temp.path())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_root_refuses_writes() {
    require_privileges!();
    let fixture = Fixture::new();
    let mut spec = fixture.spec(&["sh", "-c", "echo x > /file"]);
    spec.readonly_root = true;
    let (outcome, _, err) = fixture.run(&spec).await;
    assert_eq!(outcome.unwrap().status, ExitStatus::Exited(1));
    assert!(err.contains("Read-only file system"), "{err}");
    // The stubs created before the root became read-only are still removed.
    assert!(!fixture.upper.join("proc").exists());
    assert!(!fixture.upper.join("file").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_mounts_are_resolved_inside_the_root() {
    require_privileges!();
    let fixture = Fixture::new();
    let data = fixture.temp.path().join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("input"), "from host\n").unwrap();
    // A symlink that points out of the root: the mount must land inside it.
    std::os::unix::fs::symlink("/../../../../../tmp", fixture.lower.join("escape")).unwrap();
    let mut spec = fixture.spec(&[
        "sh",
        "-c",
        "cat /escape/data/input; echo y > /escape/data/out",
    ]);
    spec.mounts.push(Mount {
        fstype: "bind".into(),
        source: data.clone(),
        target: "/escape/data".into(),
        options: vec!["rbind".into(), "ro".into()],
    });
    let (outcome, out, err) = fixture.run(&spec).await;
    assert_eq!(outcome.unwrap().status, ExitStatus::Exited(1));
    assert_eq!(out, "from host\n");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(!data.join("out").exists());
    // The mount point was created in the root's /tmp, and removed again.
    assert!(!fixture.upper.join("tmp").exists());
    assert!(host_mounts(&fixture).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_ends_the_sandbox() {
    require_privileges!();
    let fixture = Fixture::new();
    let spec = fixture.spec(&["sh", "-c", "echo ready; sleep 100"]);
    let mut child = fixture.runtime.spawn(&spec, StdioMode::Piped).unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).await.unwrap();
    assert_eq!(line, "ready\n");
    let started = Instant::now();
    child.kill();
    let outcome = child.wait().await.unwrap();
    assert_eq!(outcome.status, ExitStatus::Signaled(9));
    assert!(!outcome.oom_killed);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(fixture.cgroups_left().is_empty());
    assert!(fixture.state_left().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_sent_to_the_child_reach_the_command() {
    require_privileges!();
    let fixture = Fixture::new();
    let spec = fixture.spec(&[
        "sh",
        "-c",
        "trap 'echo got TERM; exit 7' TERM; echo ready; sleep 100 & wait",
    ]);
    let mut child = fixture.runtime.spawn(&spec, StdioMode::Piped).unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).await.unwrap();
    assert_eq!(line, "ready\n");
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut rest = String::new();
    let (read, outcome) = tokio::join!(stdout.read_to_string(&mut rest), child.wait());
    read.unwrap();
    assert_eq!(outcome.unwrap().status, ExitStatus::Exited(7));
    assert_eq!(rest, "got TERM\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_child_kills_and_cleans_up() {
    require_privileges!();
    let fixture = Fixture::new();
    let child = fixture
        .runtime
        .spawn(&fixture.spec(&["sleep", "100"]), StdioMode::Piped)
        .unwrap();
    drop(child);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(fixture.cgroups_left().is_empty() && fixture.state_left().is_empty()) {
        assert!(
            Instant::now() < deadline,
            "sandbox not cleaned up after drop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_gives_the_command_a_controlling_tty() {
    require_privileges!();
    let fixture = Fixture::new();
    let mut spec = fixture.spec(&["sh", "-c", "tty; test -t 0 && test -t 1 && echo both"]);
    spec.process.terminal = true;
    let (outcome, out, _) = fixture.run(&spec).await;
    assert!(outcome.unwrap().status.success(), "{out}");
    assert_eq!(out, "/dev/pts/0\r\nboth\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sandboxes_do_not_interfere() {
    require_privileges!();
    let fixture = Fixture::new();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let runtime = fixture.runtime.clone();
        let mut spec = fixture.spec(&["sh", "-c", &format!("echo {i}; exit {i}")]);
        // Each its own upper dir.
        let upper = fixture.temp.path().join(format!("upper{i}"));
        let work = fixture.temp.path().join(format!("work{i}"));
        fs::create_dir(&upper).unwrap();
        fs::create_dir(&work).unwrap();
        spec.root = Mount::overlay(
            std::slice::from_ref(&fixture.lower),
            Some((upper, work)),
            fixture.empty.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut child = runtime.spawn(&spec, StdioMode::Piped).unwrap();
            let mut out = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .await
                .unwrap();
            (out, child.wait().await.unwrap())
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let (out, outcome) = task.await.unwrap();
        assert_eq!(out, format!("{i}\n"));
        assert_eq!(outcome.status, ExitStatus::Exited(i as i32));
    }
    assert!(fixture.cgroups_left().is_empty());
    assert!(fixture.state_left().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mounts_writes_through_a_private_overlay() {
    require_privileges!();
    let fixture = Fixture::new();
    let at = fixture.temp.path().join("mnt");
    fs::create_dir(&at).unwrap();
    let mount = fixture.root();
    let host_mount = rbuild_runtime::HostMount {
        mount,
        at: at.clone(),
    };
    let at_str = at.to_str().unwrap().to_owned();
    let (main_sees, thread_sees, lower_visible) =
        rbuild_runtime::with_mounts(&[host_mount], || {
            fs::write(at.join("copied"), "copied\n").unwrap();
            fs::create_dir_all(at.join("work/dir")).unwrap();
            let main = fs::read_to_string("/proc/self/mountinfo").unwrap();
            let thread = fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
            (
                main.contains(&at_str),
                thread.contains(&at_str),
                at.join("bin/busybox").exists(),
            )
        })
        .unwrap();
    assert!(!main_sees, "the mount is visible to the main thread");
    assert!(thread_sees);
    assert!(lower_visible);
    assert_eq!(
        fs::read_to_string(fixture.upper.join("copied")).unwrap(),
        "copied\n"
    );
    assert!(fixture.upper.join("work/dir").is_dir());
    assert!(!at.join("copied").exists());
    assert!(host_mounts(&fixture).is_empty());

    // Mount errors are errors; panics come back to the caller.
    let bad = rbuild_runtime::HostMount {
        mount: Mount::overlay(
            &[fixture.temp.path().join("missing")],
            None,
            fixture.empty.clone(),
        ),
        at: at.clone(),
    };
    let err = rbuild_runtime::with_mounts(&[bad], || ()).unwrap_err();
    assert!(matches!(err, Error::Mount { .. }), "{err:?}");
    let panicked = std::panic::catch_unwind(|| {
        rbuild_runtime::with_mounts(&[], || panic!("inside")).unwrap();
    });
    assert!(panicked.is_err());

    // The upper dir is free again: the same overlay can be mounted right away.
    let again = rbuild_runtime::HostMount {
        mount: fixture.root(),
        at: at.clone(),
    };
    let seen = rbuild_runtime::with_mounts(&[again], || at.join("copied").exists()).unwrap();
    assert!(seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_runtime_removes_sandboxes_left_by_a_dead_rbuild() {
    require_privileges!();
    let fixture = Fixture::new();
    // What a killed rbuild leaves: a state dir and a cgroup named after a dead pid.
    let dead = {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    let id = format!("rb-{dead}-0-00000000");
    fs::create_dir_all(fixture.state.join(&id).join("rootfs")).unwrap();
    fs::write(fixture.state.join(&id).join("config.json"), "{}").unwrap();
    let parents = fixture.cgroup_parent_paths();
    assert!(!parents.is_empty());
    for parent in &parents {
        fs::create_dir_all(parent.join(&id)).unwrap();
    }
    assert!(!fixture.cgroups_left().is_empty());
    // Something else in the state dir is left alone.
    fs::create_dir(fixture.state.join("not-a-sandbox")).unwrap();
    let runtime = rbuild_runtime::Runtime::new(rbuild_runtime::RuntimeOptions {
        helper: env!("CARGO_BIN_EXE_rbuild-sandbox-test-helper").into(),
        state_dir: fixture.state.clone(),
        cgroup_parent: fixture.cgroup_parent.clone(),
        ..Default::default()
    })
    .unwrap();
    assert!(!fixture.state.join(&id).exists());
    assert!(fixture.state.join("not-a-sandbox").exists());
    assert!(fixture.cgroups_left().is_empty());
    drop(runtime);
}

/// The v2 code on a real cgroup2 mount: on a hybrid host (v1 controllers) that is the
/// controller-less `/sys/fs/cgroup/unified`, so no limits, but joining, `cgroup.kill` and
/// removal are the real thing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cgroup2_without_controllers_runs_kills_and_cleans_up() {
    require_privileges!();
    let Some(mount) = common::cgroup2_mount() else {
        eprintln!("skipped: no cgroup2 mount");
        return;
    };
    let fixture = Fixture::new();
    let parent = format!("{}-v2", fixture.cgroup_parent);
    let runtime = rbuild_runtime::Runtime::with_cgroup2_mount(
        rbuild_runtime::RuntimeOptions {
            helper: env!("CARGO_BIN_EXE_rbuild-sandbox-test-helper").into(),
            state_dir: fixture.state.clone(),
            cgroup_parent: parent.clone(),
            ..Default::default()
        },
        mount.clone(),
    )
    .unwrap();
    assert_eq!(runtime.cgroup_version(), rbuild_runtime::CgroupVersion::V2);
    let controllers = fs::read_to_string(mount.join("cgroup.controllers")).unwrap();
    let sandbox_cgroups = || -> Vec<_> {
        fs::read_dir(mount.join(&parent))
            .map(|entries| entries.flatten().filter(|e| e.path().is_dir()).collect())
            .unwrap_or_default()
    };

    let spec = fixture.spec(&["sh", "-c", "cat /proc/self/cgroup; echo ready; sleep 100"]);
    let mut child = runtime.spawn(&spec, StdioMode::Piped).unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut text = String::new();
    while !text.ends_with("ready\n") {
        assert_ne!(stdout.read_line(&mut text).await.unwrap(), 0, "{text}");
    }
    // Inside its cgroup namespace the sandbox is at the root of the v2 hierarchy.
    assert!(text.lines().any(|line| line == "0::/"), "{text}");
    assert_eq!(sandbox_cgroups().len(), 1);
    // Init was started in the cgroup (clone3 CLONE_INTO_CGROUP); the helper stayed out.
    let procs = fs::read_to_string(sandbox_cgroups()[0].path().join("cgroup.procs")).unwrap();
    let helper = child.id().unwrap().to_string();
    assert!(!procs.lines().any(|pid| pid == helper), "{procs}");
    assert_eq!(
        procs.lines().count(),
        2,
        "init and sleep (sh execs it): {procs}"
    );
    child.kill();
    assert_eq!(child.wait().await.unwrap().status, ExitStatus::Signaled(9));
    assert!(sandbox_cgroups().is_empty());
    assert!(fixture.state_left().is_empty());

    let (outcome, out, _) = fixture_run(&runtime, &fixture.spec(&["echo", "v2"])).await;
    assert_eq!(outcome.unwrap().status, ExitStatus::Exited(0));
    assert_eq!(out, "v2\n");

    // A limit needs its controller.
    let mut limited = fixture.spec(&["true"]);
    limited.limits.pids = Some(10);
    let result = runtime.spawn(&limited, StdioMode::Piped);
    if controllers.split_whitespace().any(|c| c == "pids") {
        assert!(result.unwrap().wait().await.unwrap().status.success());
    } else {
        let err = result.unwrap_err();
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
    }
    assert!(sandbox_cgroups().is_empty());
    let _ = fs::remove_dir(mount.join(&parent));
    let _ = fs::remove_dir(mount.join(&parent).parent().unwrap());
}

async fn fixture_run(
    runtime: &rbuild_runtime::Runtime,
    spec: &rbuild_runtime::SandboxSpec,
) -> (Result<rbuild_runtime::Outcome, Error>, String, String) {
    let mut child = runtime.spawn(spec, StdioMode::Piped).unwrap();
    let mut out = String::new();
    let mut err = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (a, b, outcome) = tokio::join!(
        stdout.read_to_string(&mut out),
        stderr.read_to_string(&mut err),
        child.wait()
    );
    a.unwrap();
    b.unwrap();
    (outcome, out, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_dir_is_private_while_the_sandbox_runs() {
    require_privileges!();
    let fixture = Fixture::new();
    let mut spec = fixture.spec(&["sh", "-c", "sleep 1"]);
    spec.process.env.push("SECRET=hunter2".into());
    let child = fixture.runtime.spawn(&spec, StdioMode::Piped).unwrap();
    let dirs = fixture.state_left();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&dirs[0]).unwrap().permissions())
            & 0o777;
    assert_eq!(mode, 0o700, "the config holds the environment: owner only");
    assert!(child.wait().await.unwrap().status.success());
}
