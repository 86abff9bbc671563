//! `rbuild run`: its flags, exit status, signals, limits, networks and ports.

use crate::support::*;

#[test]
fn exit_status_becomes_rbuilds() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let out = env.rbuild(&["run", "busybox", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    // Under rbuild's init: as pid 1 the shell could not be killed from inside.
    let out = env.rbuild(&["run", "--init", "busybox", "sh", "-c", "kill -9 $$"]);
    assert_eq!(out.status.code(), Some(137), "killed by signal 9 → 128+9");
    let out = env.rbuild(&["run", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn run_changes_are_discarded() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let out = env.rbuild(&[
        "run",
        "busybox",
        "sh",
        "-c",
        "echo x > /etc/changed && rm /bin/vi && cat /etc/changed",
    ]);
    assert_success(&out);
    assert_eq!(stdout(&out), "x\n");
    let out = env.rbuild(&[
        "run",
        "busybox",
        "sh",
        "-c",
        "test ! -e /etc/changed && test -e /bin/vi && echo clean",
    ]);
    assert_eq!(stdout(&out), "clean\n");
}

#[test]
fn unknown_image_and_command_are_clear_errors() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let out = env.rbuild(&["run", "nothere"]);
    assert_failure(&out);
    assert!(
        stderr(&out).contains("image `nothere:latest` not found"),
        "{}",
        stderr(&out)
    );
    // docker's code for its own failures, so that scripts tell them from the command's.
    assert_eq!(out.status.code(), Some(125));
    let out = env.rbuild(&["run", "--no-such-flag", "busybox"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("--no-such-flag"), "{}", stderr(&out));
    let out = env.rbuild(&["images", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = env.rbuild(&["run", "busybox", "no-such-command"]);
    assert_failure(&out);
    assert!(stderr(&out).contains("no-such-command"), "{}", stderr(&out));
    let out = env.rbuild(&["run", "-u", "ghost", "busybox", "true"]);
    assert_failure(&out);
    assert!(stderr(&out).contains("ghost"), "{}", stderr(&out));
}

#[test]
fn environment_from_image_env_file_and_flags() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let file = env.path("vars.env");
    std::fs::write(&file, "# comment\nA=from-file\nB=file b\n\n").unwrap();
    let out = env.rbuild(&[
        "run",
        "--env-file",
        file.to_str().unwrap(),
        "-e",
        "A=from-flag",
        "-e",
        "C=c",
        "busybox",
        "sh",
        "-c",
        "echo \"$A|$B|$C|$PATH\"",
    ]);
    assert_success(&out);
    assert_eq!(
        stdout(&out),
        "from-flag|file b|c|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
}

#[test]
fn workdir_user_entrypoint_and_hostname() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let out = env.rbuild(&[
        "run",
        "-w",
        "/tmp/new/dir",
        "-u",
        "app",
        "--hostname",
        "box-7",
        "busybox",
        "sh",
        "-c",
        "pwd; id; hostname; cat /etc/hostname",
    ]);
    assert_success(&out);
    assert_eq!(
        stdout(&out),
        "/tmp/new/dir\nuid=1000(app) gid=1000(app) groups=50(staff)\nbox-7\nbox-7\n"
    );
    let out = env.rbuild(&["run", "--entrypoint", "echo", "busybox", "a", "b"]);
    assert_success(&out);
    assert_eq!(stdout(&out), "a b\n");
    let out = env.rbuild(&["run", "-u", "4242:50", "busybox", "id"]);
    assert_eq!(stdout(&out), "uid=4242 gid=50(staff)\n");
}

#[test]
fn setup_failures_have_dockers_exit_codes() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let out = env.rbuild(&["run", "busybox", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    let out = env.rbuild(&["run", "busybox", "/etc"]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    let out = env.rbuild(&["run", "-w", "/etc/passwd", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));
}

#[test]
fn read_only_tmpfs_and_volumes() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let out = env.rbuild(&[
        "run",
        "--read-only",
        "--tmpfs",
        "/scratch",
        "busybox",
        "sh",
        "-c",
        "echo x > /scratch/ok && cat /scratch/ok; echo y > /etc/nope",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "x\n");
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );

    let shared = env.path("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("in"), "from host\n").unwrap();
    let volume = format!("{}:/data", shared.display());
    let out = env.rbuild(&[
        "run",
        "-v",
        &volume,
        "busybox",
        "sh",
        "-c",
        "cat /data/in; echo back > /data/out",
    ]);
    assert_success(&out);
    assert_eq!(stdout(&out), "from host\n");
    assert_eq!(
        std::fs::read_to_string(shared.join("out")).unwrap(),
        "back\n"
    );
    let out = env.rbuild(&[
        "run",
        "-v",
        &format!("{volume}:ro"),
        "busybox",
        "sh",
        "-c",
        "echo again > /data/out",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(shared.join("out")).unwrap(),
        "back\n"
    );
}

/// An image whose `/data` is a symlink out of the root: the volume still lands inside the
/// root (`/tmp/escape` of the image), never on the host path the link names.
#[test]
fn volume_targets_are_resolved_inside_the_root() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let outside = env.path("outside");
    std::fs::create_dir(&outside).unwrap();
    let dockerfile = format!(
        "FROM busybox\nRUN mkdir -p /tmp/escape && ln -s ../../../../../..{} /link\n",
        outside.display()
    );
    let context = env.context("ctx", &[("Dockerfile", &dockerfile)]);
    assert_success(&env.build(&context, "trap:1"));
    let shared = env.path("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("in"), "mounted\n").unwrap();
    let out = env.rbuild(&[
        "run",
        "-v",
        &format!("{}:/link/sub", shared.display()),
        "trap:1",
        "sh",
        "-c",
        &format!("cat {}/sub/in", outside.display()),
    ]);
    assert_success(&out);
    assert_eq!(stdout(&out), "mounted\n");
    // Nothing was created on the host where the link points.
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn stdin_only_with_interactive() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let run = |args: &[&str]| {
        let mut child = env
            .command()
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"typed\n").unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(&["run", "-i", "busybox", "cat"]);
    assert_success(&out);
    assert_eq!(stdout(&out), "typed\n");
    let out = run(&["run", "busybox", "cat"]);
    assert_success(&out);
    assert_eq!(stdout(&out), "");
}

/// `-t` under a real terminal (script(1)): the command gets a pty of its own with the
/// terminal's window size.
#[test]
fn tty_has_the_window_size() {
    require_privileges!();
    require_tool("script");
    let env = TestEnv::with_busybox();
    let mut command = env.command();
    let program = command.get_program().to_owned();
    let args: Vec<String> = command
        .get_args()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    let quoted: Vec<String> = std::iter::once(program.to_string_lossy().into_owned())
        .chain(args)
        .map(|arg| format!("'{arg}'"))
        .collect();
    // The pty is relayed by the helper when the command is pid 1, by init with `--init`.
    let rbuild = quoted.join(" ");
    let inner = format!(
        "stty rows 33 cols 101; {rbuild} run -t busybox sh -c 'tty; stty size'; {rbuild} run -t --init busybox sh -c 'stty size; echo $$'"
    );
    command = std::process::Command::new("script");
    command
        .args(["-qec", &inner, "/dev/null"])
        .env("RBUILD_ROOT", env.root())
        .stdin(std::process::Stdio::null());
    let out = command.output().unwrap();
    assert_success(&out);
    let text = stdout(&out).replace('\r', "");
    assert!(text.contains("/dev/pts/0\n33 101\n33 101\n2\n"), "{text:?}");
}

#[test]
fn signals_reach_the_process() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let mut child = env
        .command()
        .args([
            "run",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got TERM; exit 3' TERM; echo ready; sleep 100 & wait",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout_pipe = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout_pipe, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    // SAFETY: kill(2) on the pid of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout_pipe, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(rest, "got TERM\n");
    assert_eq!(status.code(), Some(3));
}

/// As with docker: the command is pid 1 (programs that check see it), `--init` puts
/// rbuild's init there instead, and init's command line names nothing of the host.
#[test]
fn the_command_is_pid_1_unless_init_is_asked_for() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let out = env.rbuild(&["run", "busybox", "sh", "-c", "echo $$; ps -o pid,args"]);
    assert_success(&out);
    assert_eq!(
        stdout(&out)
            .lines()
            .filter(|l| !l.contains("ps -o"))
            .collect::<Vec<_>>(),
        ["1", "PID   COMMAND"],
        "only the command (and ps) run: {}",
        stdout(&out)
    );
    let out = env.rbuild(&[
        "run",
        "--init",
        "busybox",
        "sh",
        "-c",
        "echo $$; tr '\\0' ' ' < /proc/1/cmdline",
    ]);
    assert_success(&out);
    assert_eq!(stdout(&out), "2\nrbuild-init __sandbox-init ");

    // A build step runs under init too, and sees no host path either.
    let ctx = env.context(
        "pid1",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN tr '\\0' ' ' < /proc/1/cmdline > /init-cmdline; echo $$ > /pid\n",
        )],
    );
    assert_success(&env.build(&ctx, "pid1:1"));
    let out = env.rbuild(&["run", "pid1:1", "cat", "/init-cmdline", "/pid"]);
    assert_eq!(stdout(&out), "rbuild-init __sandbox-init 2\n");
    let root = env.root().display().to_string();
    assert!(!stdout(&out).contains(&root));
}

/// `--init` passes SIGTERM on to a command that has no handler, which then ends by it.
#[test]
fn init_passes_signals_to_a_command_without_handlers() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let mut child = env
        .command()
        .args([
            "run",
            "--init",
            "busybox",
            "sh",
            "-c",
            "echo ready; exec sleep 100",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout_pipe = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout_pipe, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    // Neither the shell nor sleep (after `exec`) has a handler for SIGTERM.
    // SAFETY: kill(2) on the pid of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
}

/// A command that is pid 1 and ignores SIGTERM (no handler) is killed `--stop-timeout`
/// seconds after rbuild passed it on, as `docker stop` does, and rbuild says why.
#[test]
fn a_command_that_ignores_sigterm_is_killed_after_the_stop_timeout() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let mut child = env
        .command()
        .args([
            "run",
            "--stop-timeout",
            "1",
            "busybox",
            "sh",
            "-c",
            "echo ready; exec sleep 100",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout_pipe = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout_pipe, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    // SAFETY: kill(2) on the pid of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(128 + libc::SIGKILL));
    assert!(
        flat(&stderr(&out)).contains("its command did not end within 1s of the signal (as pid 1"),
        "{}",
        stderr(&out)
    );
}

/// Removing the image and pruning while it runs takes nothing from under the sandbox:
/// `run` holds the image in its lease until it ends.
#[test]
fn a_running_image_survives_rmi_and_prune() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    // Unpacked by an earlier command, so this run's own unpacking records nothing.
    assert_success(&env.rbuild(&["run", "--network", "none", "busybox", "true"]));
    let mut child = env
        .command()
        .args([
            "run",
            "-i",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "ls /etc; echo ready; read line; ls /etc",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout_pipe = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut before = String::new();
    loop {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout_pipe, &mut line).unwrap();
        if line == "ready\n" || line.is_empty() {
            break;
        }
        before.push_str(&line);
    }
    assert!(before.contains("passwd"), "{before}");
    assert_success(&env.rbuild(&["rmi", "busybox"]));
    assert_success(&env.rbuild(&["prune", "--all"]));
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"go\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout_pipe, &mut rest).unwrap();
    assert!(child.wait().unwrap().success(), "{rest}");
    // A directory listing reads the layer's directory afresh: it is still there.
    assert_eq!(rest, before);
    // Once it has ended, the next prune takes the image's layers.
    assert_success(&env.rbuild(&["prune", "--all"]));
    let verify = env.rbuild(&["store", "verify"]);
    assert_success(&verify);
}

/// The limits as the sandbox sees them, in its own read-only cgroupfs.
#[test]
fn limits_are_applied() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let out = env.rbuild(&[
        "run",
        "-m",
        "64m",
        "--cpus",
        "0.5",
        "--cpuset-cpus",
        "0",
        "--pids-limit",
        "50",
        "busybox",
        "sh",
        "-c",
        "if [ -e /sys/fs/cgroup/cgroup.controllers ]; then \
           cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max /sys/fs/cgroup/cpuset.cpus \
               /sys/fs/cgroup/pids.max; \
         else \
           cat /sys/fs/cgroup/memory/memory.limit_in_bytes \
               /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us \
               /sys/fs/cgroup/cpuset/cpuset.cpus /sys/fs/cgroup/pids/pids.max; \
         fi",
    ]);
    assert_success(&out);
    let text = stdout(&out);
    let expected_v1 = "67108864\n50000\n100000\n0\n50\n";
    let expected_v2 = "67108864\n50000 100000\n0\n50\n";
    assert!(text == expected_v1 || text == expected_v2, "{text:?}");
}

#[test]
fn bridge_is_the_default_with_its_own_address_and_files() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let out = env.rbuild(&[
        "run",
        "--hostname",
        "web",
        "busybox",
        "sh",
        "-c",
        "ip -4 -o addr show eth0 | awk '{print $4}'; ip route | grep default; \
         grep web /etc/hosts; cat /etc/hostname; grep -c nameserver /etc/resolv.conf; \
         ping -c 1 -W 2 10.88.0.1 >/dev/null && echo gateway reachable",
    ]);
    assert_success(&out);
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("10.88.0.2/16"), "{text}");
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("default via 10.88.0.1 dev eth0"),
        "{text}"
    );
    assert_eq!(lines.next(), Some("10.88.0.2\tweb"));
    assert_eq!(lines.next(), Some("web"));
    assert_ne!(lines.next(), Some("0"), "{text}");
    assert_eq!(lines.next(), Some("gateway reachable"), "{text}");

    let out = env.rbuild(&[
        "run",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "ls /sys/class/net; ip route | wc -l",
    ]);
    assert_success(&out);
    assert_eq!(stdout(&out), "lo\n0\n");
}

/// Several rbuild processes on one bridge at once: each sandbox gets an address of its own.
/// Everything runs in a network namespace made for the test.
#[test]
fn concurrent_sandboxes_get_distinct_addresses() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let rbuild = env!("CARGO_BIN_EXE_rbuild");
    let script = format!(
        "/bin/busybox ip link set lo up; \
         for i in 1 2 3 4; do \
           '{rbuild}' run busybox sh -c 'ip -4 -o addr show eth0 | awk \"{{print \\$4}}\"; sleep 1' & \
         done; wait"
    );
    let out = std::process::Command::new("unshare")
        .args(["--net", "--", "/bin/sh", "-c", &script])
        .env("RBUILD_ROOT", env.root())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_success(&out);
    let mut addresses: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(
        addresses.len(),
        4,
        "{}\n--- stderr\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        addresses.iter().all(|a| a.starts_with("10.88.0.")),
        "{addresses:?}"
    );
}

/// `-p HOST:CONTAINER`: a client on the host side (here: in the test's own network
/// namespace, over loopback) reaches a server in the sandbox through rbuild's proxy.
#[test]
fn published_ports_reach_the_sandbox() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let rbuild = env!("CARGO_BIN_EXE_rbuild");
    let script = format!(
        "/bin/busybox ip link set lo up; \
         '{rbuild}' run --init -p 127.0.0.1:18080:80 --hostname served busybox \
           httpd -f -p 80 -h /etc & pid=$!; \
         for i in $(seq 50); do \
           /bin/busybox wget -q -O- http://127.0.0.1:18080/hostname 2>/dev/null && break; \
           sleep 0.1; \
         done; \
         kill -TERM $pid; wait $pid; echo status $?"
    );
    let out = std::process::Command::new("unshare")
        .args(["--net", "--", "/bin/sh", "-c", &script])
        .env("RBUILD_ROOT", env.root())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(stdout(&out), "served\nstatus 143\n", "{}", stderr(&out));

    let out = env.rbuild(&["run", "--network", "none", "-p", "1:2", "busybox", "true"]);
    assert_failure(&out);
    assert!(
        stderr(&out).contains("--publish needs the bridge network"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn docker_habits_rm_is_accepted_and_detach_and_name_say_why() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let out = env.rbuild(&["run", "--rm", "busybox", "echo", "gone"]);
    assert_success(&out);
    assert_eq!(stdout(&out), "gone\n");
    let out = env.rbuild(&["run", "-d", "busybox", "true"]);
    assert_failure(&out);
    assert!(
        flat(&stderr(&out)).contains("`-d`: rbuild runs sandboxes in the foreground only"),
        "{}",
        stderr(&out)
    );
    let out = env.rbuild(&["run", "--name", "web", "busybox", "true"]);
    assert_failure(&out);
    assert!(
        flat(&stderr(&out)).contains("`--name web`: rbuild keeps no containers"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_mistyped_image_name_gets_a_suggestion() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let out = env.rbuild(&["run", "busybx", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let text = flat(&stderr(&out));
    assert!(text.contains("image `busybx:latest` not found"), "{text}");
    assert!(text.contains("did you mean `busybox:latest`?"), "{text}");
    let out = env.rbuild(&["inspect", "nginx"]);
    assert_failure(&out);
    assert!(
        !flat(&stderr(&out)).contains("did you mean"),
        "{}",
        stderr(&out)
    );
}

/// docker run's flags for capabilities, resource limits, /etc/hosts and mounts.
#[test]
fn capabilities_ulimits_extra_hosts_and_mounts_as_docker() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let caps = |extra: &[&str]| {
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["busybox", "grep", "CapEff", "/proc/self/status"]);
        stdout(&env.rbuild(&args))
    };
    assert_eq!(
        caps(&[]),
        "CapEff:\t00000000a80425fb\n",
        "docker's default set"
    );
    assert_eq!(caps(&["--cap-drop", "ALL"]), "CapEff:\t0000000000000000\n");
    assert_eq!(
        caps(&["--cap-add", "net_admin", "--cap-drop", "CAP_MKNOD"]),
        format!(
            "CapEff:\t{:016x}\n",
            (0xa80425fb_u64 | 1 << 12) & !(1 << 27)
        )
    );
    let out = env.rbuild(&["run", "--cap-add", "FLY", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        flat(&stderr(&out)).contains("unknown capability `FLY`"),
        "{}",
        stderr(&out)
    );
    // With CAP_SYS_ADMIN the seccomp profile lets mount(2) through, as docker's does.
    let mount = "mkdir -p /m && mount -t tmpfs none /m && echo mounted";
    let out = env.rbuild(&["run", "busybox", "sh", "-c", mount]);
    assert_failure(&out);
    let out = env.rbuild(&[
        "run",
        "--cap-add",
        "SYS_ADMIN",
        "busybox",
        "sh",
        "-c",
        mount,
    ]);
    assert_eq!(stdout(&out), "mounted\n", "{}", stderr(&out));

    let out = env.rbuild(&[
        "run",
        "--ulimit",
        "nofile=100:200",
        "--ulimit",
        "core=0",
        "busybox",
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn; ulimit -c",
    ]);
    assert_eq!(stdout(&out), "100\n200\n0\n", "{}", stderr(&out));
    let out = env.rbuild(&["run", "--ulimit", "files=1", "busybox", "true"]);
    assert!(
        stderr(&out).contains("`files` is not a limit"),
        "{}",
        stderr(&out)
    );

    for network in ["bridge", "host", "none"] {
        let out = env.rbuild(&[
            "run",
            "--network",
            network,
            "--add-host",
            "db:10.1.2.3",
            "--add-host",
            "v6=[fd00::1]",
            "busybox",
            "sh",
            "-c",
            "grep -E 'db|v6|localhost$' /etc/hosts",
        ]);
        assert!(
            stdout(&out).lines().next().is_some_and(|line| {
                line.starts_with("127.0.0.1") && line.ends_with("localhost")
            }) && stdout(&out).ends_with("10.1.2.3\tdb\nfd00::1\tv6\n"),
            "{network}: {}",
            stdout(&out)
        );
    }

    let host = env.context("mounted", &[("file", "from the host\n")]);
    let bind = format!("type=bind,source={},target=/data,readonly", host.display());
    let out = env.rbuild(&[
        "run", "--mount", &bind, "--mount", "type=tmpfs,target=/scratch,tmpfs-size=1m",
        "busybox", "sh", "-c",
        "cat /data/file; touch /data/x 2>/dev/null || echo read-only; grep -c ' /scratch tmpfs ' /proc/mounts",
    ]);
    assert_eq!(
        stdout(&out),
        "from the host\nread-only\n1\n",
        "{}",
        stderr(&out)
    );
    let out = env.rbuild(&[
        "run",
        "--mount",
        "type=volume,target=/cache",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        flat(&stderr(&out)).contains("rbuild keeps no volumes"),
        "{}",
        stderr(&out)
    );
}

/// `--shm-size` as docker run takes it; 64 MiB without it.
#[test]
fn shm_size_sets_the_size_of_dev_shm() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    for (extra, kib) in [(vec![], "65536"), (vec!["--shm-size", "128m"], "131072")] {
        let mut args = vec!["run"];
        args.extend(&extra);
        args.extend(["busybox", "sh", "-c", "df -k /dev/shm | tail -1"]);
        let out = env.rbuild(&args);
        assert_success(&out);
        assert_eq!(
            stdout(&out).split_whitespace().nth(1),
            Some(kib),
            "{extra:?}: {}",
            stdout(&out)
        );
    }
    let out = env.rbuild(&["run", "--shm-size", "lots", "busybox", "true"]);
    assert_failure(&out);
    assert!(stderr(&out).contains("--shm-size"), "{}", stderr(&out));
}
