//! `rbuild build` as a drop-in for `docker build` in scripts: `-q`, stdin as the
//! Dockerfile or the context, `-o -`, `--allow`, `--call`, the environment docker build
//! reads, and the sandbox flags of RUN steps.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::support::*;

/// Runs `cmd` with `input` on its stdin.
fn with_stdin(mut cmd: Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rbuild");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // A thread, so that a full stdout pipe cannot block the write.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// A tar of `files` (path → content).
fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, path, content.as_bytes())
            .unwrap();
    }
    builder.into_inner().unwrap()
}

/// The regular files of a tar, by path without a leading `./` or `/`.
fn files_of(tar: &[u8]) -> BTreeMap<String, String> {
    let mut archive = tar::Archive::new(tar);
    let mut files = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let path = path.trim_start_matches("./").trim_start_matches('/');
        let mut content = String::new();
        if entry.read_to_string(&mut content).is_ok() {
            files.insert(path.to_owned(), content);
        }
    }
    files
}

/// `program` run on `input`, its stdout.
fn filter(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    let out = with_stdin(cmd, input);
    assert!(out.status.success(), "{program} failed");
    out.stdout
}

#[test]
fn quiet_prints_the_image_id_alone() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "ctx",
        &[("Dockerfile", "FROM busybox\nRUN echo building\n")],
    );
    for (flag, progress_env) in [("-q", None), ("--quiet", Some("plain"))] {
        let mut cmd = env.command();
        cmd.args(["build", flag, ctx.to_str().unwrap()]);
        if let Some(value) = progress_env {
            // `-q` wins over the environment's default, as with buildx.
            cmd.env("BUILDKIT_PROGRESS", value);
        }
        let out = cmd.output().unwrap();
        assert_success(&out);
        let text = stdout(&out);
        assert!(
            text.starts_with("sha256:") && text.len() == 72 && text.ends_with('\n'),
            "{text:?}"
        );
        assert_eq!(stderr(&out), "", "{flag}");
    }
    // An explicit progress mode contradicts `-q`.
    let out = env.rbuild(&["build", "-q", "--progress", "plain", ctx.to_str().unwrap()]);
    assert_failure(&out);
    assert!(
        stderr(&out).contains("`--progress plain` and `--quiet` cannot be used together"),
        "{}",
        stderr(&out)
    );
    // Errors still reach stderr.
    let bad = env.context("bad", &[("Dockerfile", "FROM busybox\nRUN exit 3\n")]);
    let out = env.rbuild(&["build", "-q", bad.to_str().unwrap()]);
    assert_failure(&out);
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("exit code 3"), "{}", stderr(&out));
}

#[test]
fn buildkit_progress_sets_the_default_progress() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context("ctx", &[("Dockerfile", "FROM busybox\nRUN echo hi\n")]);
    let out = env
        .command()
        .args(["build", ctx.to_str().unwrap()])
        .env("BUILDKIT_PROGRESS", "rawjson")
        .output()
        .unwrap();
    assert_success(&out);
    assert!(
        stderr(&out)
            .lines()
            .any(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "{}",
        stderr(&out)
    );
    let out = env
        .command()
        .args(["build", ctx.to_str().unwrap()])
        .env("BUILDKIT_PROGRESS", "quiet")
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(stderr(&out), "");
    let out = env
        .command()
        .args(["build", ctx.to_str().unwrap()])
        .env("BUILDKIT_PROGRESS", "fancy")
        .output()
        .unwrap();
    assert_failure(&out);
    assert!(
        stderr(&out).contains("BUILDKIT_PROGRESS: unknown progress mode `fancy`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn dockerfile_from_stdin_with_a_context_directory() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "ctx",
        &[
            ("a.txt", "from the context\n"),
            ("Dockerfile", "FROM busybox\nRUN exit 1\n"),
            (".dockerignore", "secret.txt\n"),
            ("secret.txt", "ignored\n"),
        ],
    );
    let mut cmd = env.command();
    cmd.args(["build", "-f", "-", "-o", "-", ctx.to_str().unwrap()]);
    let out = with_stdin(
        cmd,
        b"FROM busybox\nCOPY . /app/\nRUN cat /app/a.txt > /app/seen\n",
    );
    assert_success(&out);
    let files = files_of(&out.stdout);
    assert_eq!(files["app/seen"], "from the context\n");
    assert!(
        !files.contains_key("app/secret.txt"),
        "the context's .dockerignore applies"
    );
}

#[test]
fn context_tar_from_stdin_in_every_compression() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let tar = tar_of(&[
        ("Dockerfile", "FROM busybox\nCOPY a.txt /a.txt\n"),
        (
            "sub/Other.Dockerfile",
            "FROM busybox\nCOPY a.txt /other.txt\n",
        ),
        ("a.txt", "packed\n"),
    ]);
    let mut inputs = vec![("plain", tar.clone())];
    for (name, program, args) in [
        ("gzip", "gzip", &["-c"][..]),
        ("bzip2", "bzip2", &["-c"][..]),
        ("xz", "xz", &["-c"][..]),
        ("zstd", "zstd", &["-c", "-q"][..]),
    ] {
        require_tool(program);
        inputs.push((name, filter(program, args, &tar)));
    }
    for (name, input) in &inputs {
        let mut cmd = env.command();
        cmd.args(["build", "-q", "-o", "-", "-"]);
        let out = with_stdin(cmd, input);
        assert_success(&out);
        assert_eq!(files_of(&out.stdout)["a.txt"], "packed\n", "{name}");
    }
    // `-f` names a file inside the tar.
    let mut cmd = env.command();
    cmd.args(["build", "-q", "-f", "sub/Other.Dockerfile", "-o", "-", "-"]);
    let out = with_stdin(cmd, &tar);
    assert_success(&out);
    assert_eq!(files_of(&out.stdout)["other.txt"], "packed\n");
    // Both from stdin cannot be.
    let mut cmd = env.command();
    cmd.args(["build", "-f", "-", "-"]);
    let out = with_stdin(cmd, &tar);
    assert_failure(&out);
    assert!(
        flat(&stderr(&out)).contains(
            "standard input cannot be both the context (`-`) and the Dockerfile (`-f -`)"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn dockerfile_alone_on_stdin_builds_without_a_context() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let mut cmd = env.command();
    cmd.args(["build", "-t", "piped:1", "-"]);
    let out = with_stdin(cmd, b"FROM busybox\nRUN echo piped > /piped.txt\n");
    assert_success(&out);
    let out = env.rbuild(&["run", "piped:1", "cat", "/piped.txt"]);
    assert_eq!(stdout(&out), "piped\n");

    let mut cmd = env.command();
    cmd.env("COLUMNS", "200").args(["build", "-"]);
    let out = with_stdin(cmd, b"FROM busybox\nCOPY app.txt /app.txt\n");
    assert_failure(&out);
    let text = flat(&stderr(&out));
    assert!(text.contains("app.txt"), "{text}");
    assert!(
        text.contains("the Dockerfile came on standard input without a context"),
        "{text}"
    );
    // Other failures are not blamed on the missing context.
    let mut cmd = env.command();
    cmd.args(["build", "-"]);
    let out = with_stdin(cmd, b"FROM busybox\nRUN exit 4\n");
    assert_failure(&out);
    assert!(
        !stderr(&out).contains("without a context"),
        "{}",
        stderr(&out)
    );
    // A Dockerfile on stdin and another with `-f`: ambiguous.
    let mut cmd = env.command();
    cmd.args(["build", "-f", "Dockerfile", "-"]);
    let out = with_stdin(cmd, b"FROM busybox\n");
    assert_failure(&out);
    assert!(flat(&stderr(&out)).contains("which to build is ambiguous"));
}

#[test]
fn output_dash_writes_the_final_stage_filesystem_to_stdout() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox AS build\nRUN echo built > /artifact\nFROM scratch\nCOPY --from=build /artifact /artifact\n",
        )],
    );
    for output in ["-", "type=tar,dest=-", "type=tar"] {
        let out = env.rbuild(&[
            "build",
            "--progress",
            "plain",
            "-o",
            output,
            ctx.to_str().unwrap(),
        ]);
        assert_success(&out);
        let files = files_of(&out.stdout);
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            ["artifact"],
            "{output}: only the final stage's files, and nothing else on stdout"
        );
        assert_eq!(files["artifact"], "built\n");
        assert!(
            stderr(&out).contains("writing image sha256:"),
            "logs on stderr"
        );
    }
    // An image archive goes to stdout the same way.
    let out = env.rbuild(&[
        "build",
        "-q",
        "-o",
        "type=oci,dest=-",
        ctx.to_str().unwrap(),
    ]);
    assert_success(&out);
    let files = files_of(&out.stdout);
    assert!(
        files.contains_key("index.json") && files.contains_key("oci-layout"),
        "{:?}",
        files.keys()
    );
    let out = env.rbuild(&[
        "build",
        "-o",
        "-",
        "-o",
        "type=oci,dest=-",
        ctx.to_str().unwrap(),
    ]);
    assert_failure(&out);
    assert!(stderr(&out).contains("more than one `-o` output writes to standard output"));
    let out = env.rbuild(&["build", "-o", "type=local,dest=-", ctx.to_str().unwrap()]);
    assert_failure(&out);
    assert!(stderr(&out).contains("a local output cannot go to standard output"));
}

#[test]
fn output_to_stdout_refuses_a_terminal() {
    require_tool("script");
    let env = TestEnv::new();
    let ctx = env.context("ctx", &[("Dockerfile", "FROM busybox\n")]);
    let inner = format!(
        "'{}' build -o - '{}'",
        env!("CARGO_BIN_EXE_rbuild"),
        ctx.display()
    );
    let out = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env("RBUILD_ROOT", env.root())
        .env("COLUMNS", "200")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_failure(&out);
    let text = flat(&stdout(&out).replace('\r', ""));
    assert!(
        text.contains("refusing to write a tar to the terminal"),
        "{text}"
    );
}

#[test]
fn allow_network_host_is_accepted() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "ctx",
        &[("Dockerfile", "FROM busybox\nRUN --network=host true\n")],
    );
    let out = env.rbuild(&[
        "build",
        "-q",
        "--allow",
        "network.host",
        "--allow",
        "security.insecure",
        ctx.to_str().unwrap(),
    ]);
    assert_success(&out);
    let out = env.rbuild(&["build", "--allow", "network.hots", ctx.to_str().unwrap()]);
    assert_failure(&out);
    assert!(stderr(&out).contains("network.host"), "{}", stderr(&out));
}

/// `text` with each line's end marked, so that the trailing blanks of buildx's tables
/// (tabwriter pads every cell but the last) show.
fn ended(text: &str) -> String {
    text.lines().map(|line| format!("{line}|\n")).collect()
}

const DESCRIBED: &str = "\
# VERSION sets the version of the tool
ARG VERSION=1.2
ARG UNUSED=x

# base installs the tool
FROM busybox:${VERSION} AS base
# CHANNEL picks the release channel
ARG CHANNEL=stable
ARG TOKEN_NAME

FROM busybox AS Release
COPY --from=base / /
RUN --mount=type=secret,id=token,required=true true
RUN --mount=type=secret,target=/run/npmrc true
";

#[test]
fn call_targets_and_outline_print_as_buildx() {
    let env = TestEnv::new();
    let ctx = env.context("ctx", &[("Dockerfile", DESCRIBED)]);
    let out = env.rbuild(&["build", "--call", "targets", ctx.to_str().unwrap()]);
    assert_success(&out);
    insta::assert_snapshot!(ended(&stdout(&out)), @r"
    TARGET            DESCRIPTION|
    base              installs the tool|
    Release (default) |
    ");
    let out = env.rbuild(&["build", "--call", "outline", ctx.to_str().unwrap()]);
    assert_success(&out);
    insta::assert_snapshot!(ended(&stdout(&out)), @r"
    TARGET: Release|
    |
    BUILD ARG    VALUE    DESCRIPTION|
    VERSION      1.2      sets the version of the tool|
    CHANNEL      stable   picks the release channel|
    TOKEN_NAME            |
    |
    SECRET   REQUIRED|
    token    true|
    npmrc    |
    |
    ");
    let out = env.rbuild(&[
        "build",
        "--call",
        "outline",
        "--target",
        "base",
        ctx.to_str().unwrap(),
    ]);
    assert_success(&out);
    assert!(
        stdout(&out).starts_with("TARGET:      base\nDESCRIPTION: installs the tool\n"),
        "{}",
        stdout(&out)
    );
    // `--check` is `rbuild check`: warnings, and no build.
    let ctx = env.context("lint", &[("Dockerfile", "FROM busybox\nMAINTAINER me\n")]);
    let out = env.rbuild(&["build", "--check", ctx.to_str().unwrap()]);
    assert_success(&out);
    assert!(
        stderr(&out).contains("MaintainerDeprecated"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out), "");
}

#[test]
fn sandbox_flags_reach_every_run_step() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN cat /etc/hosts > /hosts && ulimit -n > /nofile && grep /dev/shm /proc/mounts > /shm\n",
        )],
    );
    let build = |extra: &[&str]| {
        let mut args = vec!["build", "--progress", "json", "-o", "-"];
        args.extend_from_slice(extra);
        args.push(ctx.to_str().unwrap());
        env.rbuild(&args)
    };
    let parent = "rbuild-it-cgroup-parent";
    let out = build(&[
        "--add-host",
        "db:10.1.2.3",
        "--ulimit",
        "nofile=1024:2048",
        "--shm-size",
        "128m",
        "--cgroup-parent",
        parent,
    ]);
    assert_success(&out);
    let files = files_of(&out.stdout);
    let added: Vec<&str> = files["hosts"]
        .lines()
        .filter(|line| line.ends_with("db"))
        .collect();
    assert_eq!(added, ["10.1.2.3\tdb"], "{}", files["hosts"]);
    assert_eq!(files["nofile"], "1024\n");
    assert!(files["shm"].contains("size=131072k"), "{}", files["shm"]);
    // The step's cgroup was made under the parent asked for.
    let made: Vec<_> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(parent))
        .chain(std::iter::once(Path::new("/sys/fs/cgroup").join(parent)))
        .filter(|p| p.is_dir())
        .collect();
    assert!(!made.is_empty(), "no cgroup {parent}");
    for dir in made {
        let _ = std::fs::remove_dir(dir);
    }

    // Cache keys, as BuildKit's: a host's address is not part of them, its name is; the
    // ulimits and the size of /dev/shm are.
    let same = ["--ulimit", "nofile=1024:2048", "--shm-size", "128m"];
    let with = |host: &str| {
        let mut args = vec!["--add-host", host];
        args.extend_from_slice(&same);
        let out = build(&args);
        assert_success(&out);
        steps_of(&out)
    };
    let (cached, ran) = with("db:10.9.9.9");
    assert_eq!((cached.len(), ran.len()), (1, 0), "{cached:?} {ran:?}");
    let (cached, _) = with("other:10.1.2.3");
    assert!(cached.is_empty(), "another host name runs the step again");
    let out = build(&["--add-host", "db:10.1.2.3", "--shm-size", "128m"]);
    assert!(
        steps_of(&out).0.is_empty(),
        "other ulimits run the step again"
    );

    // Errors name the flag and say what works.
    let out = build(&["--ulimit", "files=10"]);
    assert_failure(&out);
    assert!(
        stderr(&out).contains("--ulimit: `files` is not a limit"),
        "{}",
        stderr(&out)
    );
    let out = build(&["--add-host", "db"]);
    assert_failure(&out);
    assert!(
        stderr(&out).contains("--add-host: `db` is not `NAME:IP`"),
        "{}",
        stderr(&out)
    );
}

/// What CI scripts pass to `docker buildx build` that changes nothing for rbuild is
/// accepted: `--load` (the image is in the store anyway), `--platform` naming this
/// machine's platform by any of its names, `--provenance=false` and `--sbom=false`. What
/// rbuild cannot do yet
/// is refused with the reason, never silently done another way.
#[test]
fn buildx_habits_that_change_nothing_are_accepted() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let context = env.context("ctx", &[("Dockerfile", "FROM busybox\nRUN true\n")]);
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let host = format!("linux/{arch}");
    // The same platform by its other names, as docker normalizes them.
    let aliases = format!("{arch},linux/{}", std::env::consts::ARCH);
    let ctx = context.to_str().unwrap();
    for extra in [
        vec!["--load"],
        vec!["--platform", host.as_str()],
        vec!["--provenance=false", "--sbom=false"],
        vec!["--network=default", "--platform", aliases.as_str()],
        // buildx's exporters that load into the daemon: the store has the image already.
        vec!["-o", "type=docker", "--output=type=image"],
    ] {
        let mut args = vec!["build", "-q", "-t", "habits"];
        args.extend(&extra);
        args.push(ctx);
        let out = env.rbuild(&args);
        assert_success(&out);
        assert!(stdout(&out).starts_with("sha256:"), "{extra:?}");
    }
    for (extra, message) in [
        (
            // Two platforms, and a base image of one.
            vec!["--platform", "linux/s390x,linux/amd64"],
            "base image `busybox:latest` is for linux/amd64, and the build needs linux/s390x",
        ),
        (
            vec!["--provenance=mode=huge"],
            "--provenance: `mode=huge` is not a provenance setting rbuild knows",
        ),
        (
            vec!["--sbom=generator=docker/buildkit-syft-scanner"],
            "--sbom: rbuild makes SBOMs with its own scanner, not a scanner image",
        ),
        (
            vec!["--attest", "type=vex"],
            "--attest `type=vex`: the types are `provenance` and `sbom`",
        ),
        (
            vec!["--annotation", "index:k=v", "--provenance=false"],
            "`index:` and `manifest-descriptor:` annotations need an image index",
        ),
        (
            vec!["--annotation", "manifest[linux/arm64]:k=v"],
            "--annotation `k`: this build is not for linux/arm64",
        ),
        (
            vec!["--annotation", "index[linux/amd64]:k=v"],
            "an index is for every platform, so `index` takes no `[linux/amd64]`",
        ),
        (
            vec!["-o", "type=image,name=other"],
            "the image goes to rbuild's store under the `-t` names",
        ),
    ] {
        let mut args = vec!["build", "-q", "-t", "habits"];
        args.extend(&extra);
        args.push(ctx);
        let out = env.rbuild(&args);
        assert_failure(&out);
        assert!(flat(&stderr(&out)).contains(message), "{}", stderr(&out));
    }
    // DOCKER_DEFAULT_PLATFORM is read as docker reads it: the build is for that platform,
    // which the base image is not.
    let out = env
        .command()
        .env("DOCKER_DEFAULT_PLATFORM", "linux/riscv64")
        .args(["build", "-q", ctx])
        .output()
        .unwrap();
    assert_failure(&out);
    assert!(
        flat(&stderr(&out)).contains(
            "base image `busybox:latest` is for linux/amd64, and the build needs linux/riscv64"
        ),
        "{}",
        stderr(&out)
    );
}
