//! `rbuild run`: exit status, signals, limits.

use crate::support::*;

#[test]
fn exit_status_becomes_rbuilds() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let out = env.rbuild(&["run", "busybox", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    let out = env.rbuild(&["run", "busybox", "sh", "-c", "kill -9 $$"]);
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
    let out = env.rbuild(&["run", "busybox", "no-such-command"]);
    assert_failure(&out);
    assert!(stderr(&out).contains("no-such-command"), "{}", stderr(&out));
    let out = env.rbuild(&["run", "-u", "ghost", "busybox", "true"]);
    assert_failure(&out);
    assert!(stderr(&out).contains("ghost"), "{}", stderr(&out));
}
