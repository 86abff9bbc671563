//! `rbuild build --on-error shell`: a shell in a failed RUN step's state.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::*;

/// `rbuild` as `TestEnv::command` makes it, as one line for a shell.
fn rbuild_line(env: &TestEnv) -> String {
    let command = env.command();
    std::iter::once(command.get_program().to_string_lossy().into_owned())
        .chain(command.get_args().map(|a| a.to_string_lossy().into_owned()))
        .map(|arg| format!("'{arg}'"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Under a real terminal (script(1)), the shell opens where the step failed: the files it
/// wrote, its mounts, variables, working directory and user; then the state is gone.
#[test]
fn a_shell_opens_in_the_failed_steps_state() {
    require_privileges!();
    require_tool("script");
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nENV GREETING=hello\nWORKDIR /work\nRUN echo kept-before > /work/before\nUSER 1234\nRUN --mount=type=cache,target=/cache,uid=1234 echo in-cache > /cache/c && echo partial > /tmp/partial && exit 7\n",
            ),
            ("input.txt", "context file\n"),
        ],
    );
    let inner = format!(
        "{} build --progress plain --on-error shell -t debug:1 '{}'; echo \"build exited $?\"",
        rbuild_line(&env),
        ctx.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env("RBUILD_ROOT", env.root())
        .env("COLUMNS", "200")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Typed ahead: the terminal keeps it until the shell reads it.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"echo \"seen: $(cat /tmp/partial) $(cat /cache/c) $(cat before) $GREETING $(pwd) $(id -u)\"; exit 3\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = stdout(&out).replace('\r', "");
    assert!(
        text.contains("did not complete successfully: exit code 7"),
        "{text}"
    );
    assert!(
        text.contains("a shell in the state `RUN --mount=type=cache"),
        "{text}"
    );
    assert!(
        text.contains("seen: partial in-cache kept-before hello /work 1234"),
        "{text}"
    );
    assert!(text.contains("build exited 1"), "{text}");
    // Nothing of the failed step is left, and nothing of it was cached or named.
    for dir in ["tmp", "sandboxes"] {
        let left: Vec<_> = std::fs::read_dir(env.root().join(dir))
            .into_iter()
            .flatten()
            .collect();
        assert!(left.is_empty(), "{dir}: {left:?}");
    }
    assert!(!stdout(&env.rbuild(&["images"])).contains("debug"));
    assert_success(&env.rbuild(&["store", "verify"]));
}

/// Where no terminal is (CI), the build fails as usual and says what would open the shell.
#[test]
fn without_a_terminal_the_command_that_opens_the_shell_is_printed() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context("ctx", &[("Dockerfile", "FROM busybox\nRUN exit 5\n")]);
    let out = env.rbuild(&[
        "build",
        "--progress",
        "plain",
        "--on-error",
        "shell",
        "--build-arg",
        "A=b c",
        ctx.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = flat(&stderr(&out));
    assert!(text.contains("exit code 5"), "{text}");
    assert!(
        text.contains(&format!(
            "build --on-error shell --progress plain --build-arg 'A=b c' {}",
            ctx.display()
        )),
        "{text}"
    );
    for dir in ["tmp", "sandboxes"] {
        let left: Vec<_> = std::fs::read_dir(env.root().join(dir))
            .into_iter()
            .flatten()
            .collect();
        assert!(left.is_empty(), "{dir}: {left:?}");
    }
}
