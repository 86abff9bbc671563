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

#[test]
fn a_base_image_for_another_platform_is_reported() {
    let env = TestEnv::new();
    // A one-layer image whose config says arm64 (s390x on an arm64 machine).
    let other = if std::env::consts::ARCH == "aarch64" {
        "s390x"
    } else {
        "arm64"
    };
    let rootfs = env.path("rootfs.tar");
    {
        let mut tar = tar::Builder::new(std::fs::File::create(&rootfs).unwrap());
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, "hello", &b"hi\n"[..]).unwrap();
        tar.finish().unwrap();
    }
    assert_success(&env.rbuild(&["import", rootfs.to_str().unwrap(), "native:1"]));
    let out = env.rbuild(&[
        "save",
        "native:1",
        "-o",
        env.path("native.tar").to_str().unwrap(),
    ]);
    assert_success(&out);
    let foreign = retag_architecture(&env, &env.path("native.tar"), other);
    assert_success(&env.rbuild(&["load", "-i", foreign.to_str().unwrap(), "-t", "foreign:1"]));

    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM native:1 AS a\nFROM foreign:1\nCOPY --from=a /hello /\n",
        )],
    );
    let out = env.rbuild(&["check", ctx.to_str().unwrap()]);
    assert_success(&out);
    let err = stderr(&out);
    assert!(err.contains("InvalidBaseImagePlatform"), "{err}");
    assert!(
        err.contains(&format!(
            "base image `foreign:1` is for platform linux/{other}"
        )),
        "{err}"
    );
    assert!(!err.contains("`native:1` is for"), "{err}");
    assert!(err.contains("1 warning found"), "{err}");
}

/// `archive` (an OCI layout tar) with its image config's architecture set to `arch`.
fn retag_architecture(env: &TestEnv, archive: &std::path::Path, arch: &str) -> std::path::PathBuf {
    let dir = env.path("layout");
    std::fs::create_dir_all(&dir).unwrap();
    let status = std::process::Command::new("tar")
        .args([
            "-xf",
            archive.to_str().unwrap(),
            "-C",
            dir.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let blob = |digest: &str| {
        dir.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let write_blob = |bytes: &[u8]| -> (String, usize) {
        let digest = format!("sha256:{}", sha256_hex(bytes));
        std::fs::write(blob(&digest), bytes).unwrap();
        (digest, bytes.len())
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&manifest_digest)).unwrap()).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_owned();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&config_digest)).unwrap()).unwrap();
    config["architecture"] = arch.into();
    let (digest, size) = write_blob(&serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = digest.into();
    manifest["config"]["size"] = size.into();
    let (digest, size) = write_blob(&serde_json::to_vec(&manifest).unwrap());
    let mut index = index;
    index["manifests"][0]["digest"] = digest.into();
    index["manifests"][0]["size"] = size.into();
    // No name inside: `load -t` names it (the saved one would rename `native:1`).
    index["manifests"][0]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let out = env.path("foreign.tar");
    let status = std::process::Command::new("tar")
        .args([
            "-cf",
            out.to_str().unwrap(),
            "-C",
            dir.to_str().unwrap(),
            ".",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
