//! `rbuild check`, and what `rbuild build` shares with it: build-check warnings before a
//! build, `--print graph`, Dockerfiles that are not UTF-8.

use std::process::Output;

use crate::support::*;

/// Runs `rbuild check ARGS` inside a context holding `dockerfile`; paths in the output
/// are then relative (`./Dockerfile`).
fn check(env: &TestEnv, dockerfile: &[u8], args: &[&str]) -> Output {
    let dir = env.context("ctx", &[]);
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    env.command()
        .current_dir(&dir)
        .arg("check")
        .args(args)
        .output()
        .expect("run rbuild")
}

fn summary(out: &Output) -> String {
    format!(
        "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    )
}

#[test]
fn warnings_render_with_line_caret_rule_and_help_and_exit_zero() {
    let env = TestEnv::new();
    let out = check(
        &env,
        b"FROM busybox\nCOPY $SRC /app/\nCMD run --fast\n",
        &[],
    );
    insta::assert_snapshot!(summary(&out), @r#"
    exit: Some(0)
    --- stdout
    --- stderr
    UndefinedVar (https://docs.docker.com/go/dockerfile/rule/undefined-var/)

      ⚠ usage of undefined variable `$SRC`
       ╭─[./Dockerfile:2:6]
     1 │ FROM busybox
     2 │ COPY $SRC /app/
       ·      ─────┬────
       ·           ╰── here
     3 │ CMD run --fast
       ╰────
      help: declare it with `ARG SRC` or set it with `ENV SRC=<value>` before
            using it

    JSONArgsRecommended (https://docs.docker.com/go/dockerfile/rule/json-args-recommended/)

      ⚠ JSON arguments recommended for `CMD` to prevent unintended behavior
      │ related to OS signals
       ╭─[./Dockerfile:3:1]
     2 │ COPY $SRC /app/
     3 │ CMD run --fast
       · ───────┬──────
       ·        ╰── here
       ╰────
      help: write `CMD ["run", "--fast"]`, or set the shell explicitly with
            `SHELL` if a shell is wanted

    2 warnings found
    "#);
}

#[test]
fn json_format_prints_one_object_per_warning() {
    let env = TestEnv::new();
    let out = check(
        &env,
        b"FROM busybox\nMAINTAINER me\n",
        &["--format", "json"],
    );
    assert_success(&out);
    insta::assert_snapshot!(stdout(&out), @r#"{"column":1,"file":"./Dockerfile","help":"use a label instead: `LABEL org.opencontainers.image.authors=\"me\"`","line":2,"message":"the `MAINTAINER` instruction is deprecated","rule":"MaintainerDeprecated","url":"https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/"}"#);
}

#[test]
fn copying_a_file_the_dockerignore_excludes_is_reported() {
    let env = TestEnv::new();
    let dir = env.context(
        "ctx",
        &[
            (".dockerignore", "secrets/\n*.log\n!keep.log\n"),
            ("keep.log", "k"),
            ("app.log", "a"),
        ],
    );
    let dockerfile =
        "FROM busybox\nCOPY secrets/key.pem app.log keep.log /app/\nCOPY *.log /logs/\n";
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    let out = env
        .command()
        .current_dir(&dir)
        .args(["check", "--format", "json"])
        .output()
        .unwrap();
    assert_success(&out);
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let found: Vec<(&str, &str, u64)> = lines
        .iter()
        .map(|w| {
            (
                w["rule"].as_str().unwrap(),
                w["message"].as_str().unwrap(),
                w["line"].as_u64().unwrap(),
            )
        })
        .collect();
    // The re-included `keep.log` and the wildcard source are not reported.
    assert_eq!(
        found,
        [
            (
                "CopyIgnoredFile",
                "`secrets/key.pem` is excluded by .dockerignore",
                2
            ),
            (
                "CopyIgnoredFile",
                "`app.log` is excluded by .dockerignore",
                2
            ),
        ]
    );
}

#[test]
fn check_directive_skips_rules_and_turns_warnings_into_errors() {
    let env = TestEnv::new();
    let out = check(
        &env,
        b"# check=skip=MaintainerDeprecated\nFROM busybox\nMAINTAINER me\n",
        &[],
    );
    assert_success(&out);
    assert_eq!(stderr(&out), "");
    let out = check(&env, b"# check=error=true\nFROM busybox\nCMD x\n", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("build checks found 1 problem (JSONArgsRecommended)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_invalid_dockerfile_fails_with_its_error() {
    let env = TestEnv::new();
    let out = check(&env, b"FROM busybox\nCOPY --chwon=1 a /b\n", &[]);
    insta::assert_snapshot!(summary(&out), @r"
    exit: Some(1)
    --- stdout
    --- stderr
    dockerfile::unknown_flag

      × unknown flag `--chwon` for `COPY`
       ╭─[./Dockerfile:2:6]
     1 │ FROM busybox
     2 │ COPY --chwon=1 a /b
       ·      ────┬────
       ·          ╰── here
       ╰────
      help: did you mean `--chown`?
    ");
}

#[test]
fn invalid_utf8_names_the_file_and_the_byte() {
    let env = TestEnv::new();
    let out = check(&env, b"FROM busybox\nRUN echo \xff\xfe\n", &[]);
    assert_failure(&out);
    // miette wraps long messages at 80 columns.
    let err = stderr(&out).replace("\n  │ ", " ");
    assert!(
        err.contains(
            "the Dockerfile ./Dockerfile is not valid UTF-8: invalid byte 0xff at line 2, column 10"
        ),
        "{err}"
    );
    // `build` reads it the same way.
    let ctx = env.context("utf8", &[]);
    std::fs::write(ctx.join("Dockerfile"), b"FROM busybox\n\x80\n").unwrap();
    let out = env.build(&ctx, "bad:1");
    assert_failure(&out);
    assert!(
        stderr(&out).contains("is not valid UTF-8"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn print_graph_dumps_the_graph_without_building() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "graph",
        &[("Dockerfile", "FROM busybox\nWORKDIR /app\nRUN echo hi\n")],
    );
    let out = env.rbuild(&["build", "--print", "graph", ctx.to_str().unwrap()]);
    assert_success(&out);
    let dump = stdout(&out);
    let lines: Vec<&str> = dump.lines().collect();
    assert!(
        lines[0].starts_with("#0 ") && lines[0].contains("image busybox:latest"),
        "{dump}"
    );
    assert!(lines[1].contains("mkdir /app"), "{dump}");
    assert!(
        lines[2].contains(r#"exec ["/bin/sh","-c","echo hi"]"#),
        "{dump}"
    );
    assert!(
        dump.contains("history: [layer] RUN /bin/sh -c echo hi # buildkit"),
        "{dump}"
    );
    // Nothing was built or named.
    assert!(!stdout(&env.rbuild(&["images"])).contains("graph"));

    let out = env.rbuild(&["build", "--print=graph", "-t", "x", ctx.to_str().unwrap()]);
    assert_eq!(stdout(&out), dump, "the same graph every time");

    let missing = env.context("missing", &[("Dockerfile", "FROM nothere:1\n")]);
    let out = env.rbuild(&["build", "--print", "graph", missing.to_str().unwrap()]);
    assert_failure(&out);
    assert!(
        stderr(&out).contains("base image `nothere:1` is not in the store"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn build_prints_warnings_first_and_fails_only_with_error_true() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context("warn", &[("Dockerfile", "FROM busybox\nCMD echo hi\n")]);
    let out = env.build(&ctx, "warn:1");
    assert_success(&out);
    let err = stderr(&out);
    let warning = err
        .find("JSONArgsRecommended")
        .expect("the warning is printed");
    let step = err.find("[1/").expect("the build ran");
    assert!(warning < step, "warnings come before the build: {err}");

    let ctx = env.context(
        "strict",
        &[(
            "Dockerfile",
            "# check=error=true\nFROM busybox\nCMD echo hi\n",
        )],
    );
    let out = env.build(&ctx, "strict:1");
    assert_failure(&out);
    assert!(
        stderr(&out).contains("makes them errors"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&env.rbuild(&["images"])).contains("strict"));
}
