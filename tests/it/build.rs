//! `rbuild build` end to end: the demo fixture uses every instruction of the skeleton.

use std::path::PathBuf;
use std::process::Command;

use crate::support::*;

fn demo_context() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/contexts/demo"
    ))
}

#[test]
fn demo_builds_runs_and_has_the_config_it_declares() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let out = env.build(&demo_context(), "demo:1");
    assert_success(&out);
    let log = stderr(&out);
    assert!(
        log.contains("RUN echo \"short-lived\" > /app/old.txt"),
        "{log}"
    );
    let id = stdout(&out).trim().to_owned();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "image id on stdout: {id}"
    );

    let out = env.rbuild(&["run", "demo:1"]);
    assert_success(&out);
    assert_eq!(
        stdout(&out),
        "user=app uid=1000\ncwd=/app\nhome=/app\nbuilt: hello from the builder stage\nexec form works\nadded with ADD\nargs: --verbose\n"
    );

    // Arguments replace CMD; --entrypoint replaces ENTRYPOINT and drops CMD.
    let out = env.rbuild(&["run", "demo:1", "one", "two"]);
    assert!(
        stdout(&out).ends_with("args: one two\n"),
        "{}",
        stdout(&out)
    );
    let out = env.rbuild(&[
        "run",
        "--entrypoint",
        "/bin/echo",
        "demo:1",
        "plain",
        "echo",
    ]);
    assert_eq!(stdout(&out), "plain echo\n");
    let out = env.rbuild(&[
        "run",
        "-u",
        "root",
        "-w",
        "/tmp",
        "-e",
        "X=1",
        "--entrypoint",
        "/bin/sh",
        "demo:1",
        "-c",
        "echo $(id -u) $(pwd) $X",
    ]);
    assert_eq!(stdout(&out), "0 /tmp 1\n");

    let out = env.rbuild(&["inspect", "demo:1"]);
    assert_success(&out);
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &config["config"];
    assert_eq!(c["User"], "app");
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/bin/sh", "/app/conf/start.sh"])
    );
    assert_eq!(c["Cmd"], serde_json::json!(["--verbose"]));
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({"8080/tcp": {}, "9090/udp": {}})
    );
    assert_eq!(c["Labels"]["org.opencontainers.image.title"], "rbuild demo");
    let env_list: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env_list.contains(&"APP_HOME=/app"), "{env_list:?}");
    assert!(
        env_list.iter().any(|e| e.starts_with("PATH=")),
        "{env_list:?}"
    );
    assert!(
        !env_list
            .iter()
            .any(|e| e.starts_with("GREETING=") || e.starts_with("BASE=")),
        "build args never reach the config: {env_list:?}"
    );

    // Layers: busybox + WORKDIR /app + 2 COPY + ADD + 3 RUN; the rest is metadata.
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(diff_ids.len(), 8, "{config:#}");
    let history = config["history"].as_array().unwrap();
    let with_layers = history.iter().filter(|h| h["empty_layer"] != true).count();
    assert_eq!(
        with_layers,
        diff_ids.len(),
        "one non-empty history entry per layer: {history:#?}"
    );
    assert!(history.iter().any(
        |h| h["created_by"].as_str().is_some_and(|c| c.contains("ENV")) && h["empty_layer"] == true
    ));

    // The manifest names exactly the blobs in the store, and every blob matches its digest.
    let out = env.rbuild(&["inspect", "--manifest", "demo:1"]);
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 8);
    // Blob files: busybox's manifest, config and layer, demo's manifest and config; the
    // layers the build made are kept as snapshots and rehashed by `store verify`.
    assert_eq!(verify_blobs(&env.root()), 5);
    let out = env.rbuild(&["store", "verify"]);
    assert_success(&out);
}

#[test]
fn build_args_and_shorthand_form() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    // `rbuild -t NAME CONTEXT` is `rbuild build`.
    let out = env
        .command()
        .args(["-t", "demo:args", "--build-arg", "GREETING=bonjour"])
        .arg(demo_context())
        .output()
        .unwrap();
    assert_success(&out);
    let out = env.rbuild(&["run", "demo:args"]);
    assert!(
        stdout(&out).contains("built: bonjour from the builder stage"),
        "{}",
        stdout(&out)
    );

    let out = env.rbuild(&["images"]);
    assert_success(&out);
    let table = stdout(&out);
    assert!(table.starts_with("REPOSITORY"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("demo ") && l.contains(" args ")),
        "{table}"
    );
    let out = env.rbuild(&["images", "--format", "json"]);
    let rows: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        rows.iter()
            .any(|r| r["Repository"] == "busybox" && r["Tag"] == "latest")
    );
}

#[test]
fn run_steps_are_isolated_from_the_host() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let marker = env.path("host-marker");
    std::fs::write(&marker, "host secret").unwrap();
    let dockerfile = format!(
        "FROM busybox\n\
         RUN test ! -e {marker} && echo no-host-file\n\
         RUN ps -o pid,comm > /ps.txt\n\
         RUN --network=none cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' > /ifaces.txt\n\
         RUN hostname > /hostname.txt\n",
        marker = marker.display()
    );
    let ctx = env.context("isolated", &[("Dockerfile", &dockerfile)]);
    let out = env.build(&ctx, "isolated");
    assert_success(&out);
    assert!(stderr(&out).contains("no-host-file"), "{}", stderr(&out));

    let out = env.rbuild(&[
        "run",
        "isolated",
        "cat",
        "/ps.txt",
        "/ifaces.txt",
        "/hostname.txt",
    ]);
    assert_success(&out);
    let text = stdout(&out);
    let pids: Vec<u32> = text
        .lines()
        .skip(1)
        .take_while(|l| {
            !l.trim().is_empty() && l.trim().chars().next().is_some_and(|c| c.is_ascii_digit())
        })
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(
        !pids.is_empty() && pids.iter().all(|p| *p < 10),
        "only the sandbox's own processes: {text}"
    );
    assert!(!text.contains(&std::process::id().to_string()) || pids.iter().all(|p| *p < 10));
    assert!(text.lines().any(|l| l == "lo"), "{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("eth") || l.starts_with("ens")),
        "--network=none has only lo: {text}"
    );
    assert!(
        text.lines().any(|l| l == "rbuild"),
        "RUN's hostname: {text}"
    );
}

#[test]
fn source_date_epoch_makes_rebuilds_bit_for_bit_identical() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "repro",
        &[
            ("Dockerfile", "FROM busybox\nCOPY app /app\nRUN mkdir -p /out && echo built > /out/result && rm /bin/vi\n"),
            ("app/main.sh", "echo hi\n"),
        ],
    );
    let build = |tag: &str| {
        let out = env
            .command()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args([
                "build",
                "--no-cache",
                "--progress",
                "quiet",
                "-t",
                tag,
                ctx.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert_success(&out);
        stdout(&out).trim().to_owned()
    };
    let first = build("repro:1");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = build("repro:2");
    assert_eq!(
        first, second,
        "the same image id from two builds without cache"
    );
    let a = env.rbuild(&["inspect", "--manifest", "repro:1"]).stdout;
    let b = env.rbuild(&["inspect", "--manifest", "repro:2"]).stdout;
    assert_eq!(a, b);
    let config: serde_json::Value =
        serde_json::from_slice(&env.rbuild(&["inspect", "repro:1"]).stdout).unwrap();
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
}

/// With `SOURCE_DATE_EPOCH`, the file times of `-o type=local`, `-o type=tar` and
/// `rbuild export` are clamped to it as in the image's layers: the same files, whichever
/// way they leave the store.
#[test]
fn source_date_epoch_clamps_exported_file_times() {
    use std::os::unix::fs::MetadataExt;
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "epoch-out",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN mkdir /made && echo new > /made/file\n",
        )],
    );
    let local = env.path("local");
    let archive = env.path("rootfs.tar");
    let out = env
        .command()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "--progress", "quiet", "-t", "epoch:out"])
        .arg("-o")
        .arg(format!("type=local,dest={}", local.display()))
        .arg("-o")
        .arg(format!("type=tar,dest={}", archive.display()))
        .arg(&ctx)
        .output()
        .unwrap();
    assert_success(&out);
    for path in ["made", "made/file"] {
        assert_eq!(
            std::fs::symlink_metadata(local.join(path)).unwrap().mtime(),
            1_700_000_000,
            "{path}"
        );
    }
    let tar_times = |path: &std::path::Path| -> Vec<(String, u64)> {
        tar::Archive::new(std::fs::File::open(path).unwrap())
            .entries()
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let name = entry.path().unwrap().to_string_lossy().into_owned();
                (name, entry.header().mtime().unwrap())
            })
            .filter(|(name, _)| name.starts_with("made"))
            .collect()
    };
    let built = tar_times(&archive);
    assert!(!built.is_empty());
    assert!(
        built.iter().all(|(_, time)| *time == 1_700_000_000),
        "{built:?}"
    );
    let exported = env.path("exported.tar");
    let out = env
        .command()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["export", "-o"])
        .arg(&exported)
        .arg("epoch:out")
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(tar_times(&exported), built);
}

/// `--build-arg SOURCE_DATE_EPOCH=N` (BuildKit's form, which `docker buildx` uses for the
/// variable) sets the epoch as the environment variable does, wins over it, and stays a
/// build argument for `ARG SOURCE_DATE_EPOCH`; a value that is no number of seconds is
/// refused before the build.
#[test]
fn source_date_epoch_as_a_build_arg() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "epoch-arg",
        &[(
            "Dockerfile",
            "FROM busybox\nARG SOURCE_DATE_EPOCH\nRUN echo $SOURCE_DATE_EPOCH > /epoch\n",
        )],
    );
    let build = |tag: &str, value: &str| {
        env.command()
            .env("SOURCE_DATE_EPOCH", "1")
            .args(["build", "--no-cache", "--progress", "quiet", "-t", tag])
            .args(["--build-arg", &format!("SOURCE_DATE_EPOCH={value}")])
            .arg(&ctx)
            .output()
            .unwrap()
    };
    let first = build("epoch:1", "1700000000");
    assert_success(&first);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = build("epoch:2", "1700000000");
    assert_success(&second);
    assert_eq!(stdout(&first), stdout(&second), "the same image id");
    let config: serde_json::Value =
        serde_json::from_slice(&env.rbuild(&["inspect", "epoch:1"]).stdout).unwrap();
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    let out = env.rbuild(&["run", "epoch:1", "cat", "/epoch"]);
    assert_eq!(stdout(&out), "1700000000\n");

    // The Dockerfile's global `ARG SOURCE_DATE_EPOCH=…` when nothing else gives one.
    let with_default = env.context(
        "epoch-default",
        &[(
            "Dockerfile",
            "ARG SOURCE_DATE_EPOCH=1445412480\nFROM busybox\nCOPY Dockerfile /\n",
        )],
    );
    let out = env
        .command()
        .args(["build", "--progress", "quiet", "-t", "epoch:default"])
        .arg(&with_default)
        .output()
        .unwrap();
    assert_success(&out);
    let config: serde_json::Value =
        serde_json::from_slice(&env.rbuild(&["inspect", "epoch:default"]).stdout).unwrap();
    assert_eq!(config["created"], "2015-10-21T07:28:00Z");

    // An invalid default is shown at its line.
    std::fs::write(
        with_default.join("Dockerfile"),
        "ARG SOURCE_DATE_EPOCH=soon\nFROM busybox\n",
    )
    .unwrap();
    let out = env
        .command()
        .args(["build", "--progress", "quiet"])
        .arg(&with_default)
        .output()
        .unwrap();
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(err.contains("invalid SOURCE_DATE_EPOCH: soon"), "{err}");
    assert!(err.contains("Dockerfile:1"), "{err}");

    let out = build("epoch:3", "yesterday");
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(
        err.contains("invalid SOURCE_DATE_EPOCH: yesterday (from --build-arg SOURCE_DATE_EPOCH)"),
        "{err}"
    );
}

#[test]
fn labels_outputs_and_metadata_file() {
    require_privileges!();
    require_tool("skopeo");
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "outputs",
        &[(
            "Dockerfile",
            "FROM busybox\nLABEL from.dockerfile=yes team=a\nRUN echo out > /result.txt\n",
        )],
    );
    let oci = env.path("out-oci.tar");
    let docker = env.path("out-docker.tar");
    let local = env.path("out-local");
    let rootfs = env.path("out-rootfs.tar");
    let metadata = env.path("metadata.json");
    let out = env.rbuild(&[
        "build",
        "--progress",
        "quiet",
        "--label",
        "team=b",
        "--label",
        "ci=yes",
        "-o",
        &format!("type=oci,dest={}", oci.display()),
        "-o",
        &format!("type=docker,dest={}", docker.display()),
        "-o",
        &format!("type=tar,dest={}", rootfs.display()),
        "-o",
        local.to_str().unwrap(),
        "--metadata-file",
        metadata.to_str().unwrap(),
        ctx.to_str().unwrap(),
    ]);
    assert_success(&out);
    let id = stdout(&out).trim().to_owned();
    assert_eq!(
        std::fs::read_to_string(local.join("result.txt")).unwrap(),
        "out\n"
    );
    assert!(local.join("bin/busybox").is_file());
    let listing = stdout(
        &std::process::Command::new("tar")
            .arg("-tf")
            .arg(&rootfs)
            .output()
            .unwrap(),
    );
    assert!(listing.lines().any(|l| l == "result.txt"), "{listing}");
    let inspected = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--config",
            &format!("oci-archive:{}", oci.display()),
        ])
        .output()
        .unwrap();
    assert_success(&inspected);
    let config: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["team"], "b", "--label wins over LABEL");
    assert_eq!(labels["ci"], "yes");
    assert_eq!(labels["from.dockerfile"], "yes");
    let listing = stdout(
        &std::process::Command::new("tar")
            .arg("-tf")
            .arg(&docker)
            .output()
            .unwrap(),
    );
    assert!(listing.lines().any(|l| l == "manifest.json"), "{listing}");
    let metadata: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&metadata).unwrap()).unwrap();
    assert_eq!(metadata["containerimage.config.digest"], id.as_str());
    assert!(
        metadata["containerimage.digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
}

#[test]
fn a_stack_of_many_layers_mounts() {
    require_privileges!();
    // 130 layers: their directories' names no longer fit in one page of mount options.
    let env = TestEnv::with_busybox();
    let mut dockerfile = String::from("FROM busybox\n");
    for n in 1..=130 {
        dockerfile.push_str(&format!("RUN echo {n} > /f{n}\n"));
    }
    let ctx = env.context("layers", &[("Dockerfile", &dockerfile)]);
    let out = env.rbuild(&["build", "-t", "layers:1", ctx.to_str().unwrap()]);
    assert_success(&out);
    let out = env.rbuild(&[
        "run",
        "--network",
        "none",
        "layers:1",
        "cat",
        "/f1",
        "/f130",
    ]);
    assert_success(&out);
    assert_eq!(stdout(&out), "1\n130\n");
}

/// The image's config, as `rbuild inspect` prints it.
fn inspect_config(env: &TestEnv, name: &str) -> serde_json::Value {
    let out = env.rbuild(&["inspect", name]);
    assert_success(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `MAINTAINER` is deprecated (a check says so) and still sets the config's `author`, as
/// docker does; a stage built FROM that stage keeps it.
#[test]
fn maintainer_sets_the_image_author() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "maintainer",
        &[(
            "Dockerfile",
            "FROM busybox AS base\nMAINTAINER Jane Doe <jane@example.com>\n\
             FROM base\nLABEL version=1\n",
        )],
    );
    let out = env.build(&ctx, "author:1");
    assert_success(&out);
    assert!(
        stderr(&out).contains("the `MAINTAINER` instruction is deprecated"),
        "{}",
        stderr(&out)
    );
    let config = inspect_config(&env, "author:1");
    assert_eq!(config["author"], "Jane Doe <jane@example.com>", "{config}");
    // Not a label: docker keeps the two apart.
    assert_eq!(
        config["config"]["Labels"],
        serde_json::json!({"version": "1"})
    );
}

/// `--label KEY` without `=` is an empty value, as with docker; an empty key is refused.
#[test]
fn a_label_without_a_value_is_empty() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context("labels", &[("Dockerfile", "FROM busybox\n")]);
    let ctx = ctx.to_str().unwrap();
    let out = env.rbuild(&[
        "build",
        "--progress",
        "quiet",
        "-t",
        "labels:1",
        "--label",
        "flag",
        "--label",
        "team=a=b",
        ctx,
    ]);
    assert_success(&out);
    let config = inspect_config(&env, "labels:1");
    assert_eq!(
        config["config"]["Labels"],
        serde_json::json!({"flag": "", "team": "a=b"}),
        "{config}"
    );
    let out = env.rbuild(&["build", "--progress", "quiet", "--label", "=x", ctx]);
    assert_failure(&out);
    assert!(
        flat(&stderr(&out)).contains("--label `=x`: the key is empty"),
        "{}",
        stderr(&out)
    );
}

/// `--iidfile` (and `--metadata-file`) are removed before the build starts: a build that
/// fails leaves no id of an earlier build behind for a script to pick up.
#[test]
fn a_failed_build_leaves_no_stale_iidfile() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context("iid", &[("Dockerfile", "FROM busybox\nRUN exit 3\n")]);
    let iidfile = env.path("iid.txt");
    let metadata = env.path("metadata.json");
    std::fs::write(&iidfile, "sha256:stale").unwrap();
    std::fs::write(&metadata, "{\"stale\":true}").unwrap();
    let out = env.rbuild(&[
        "build",
        "--progress",
        "quiet",
        "--iidfile",
        iidfile.to_str().unwrap(),
        "--metadata-file",
        metadata.to_str().unwrap(),
        ctx.to_str().unwrap(),
    ]);
    assert_failure(&out);
    assert!(!iidfile.exists(), "the stale id is still there");
    assert!(!metadata.exists(), "the stale metadata is still there");

    // A build that works writes them again.
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN true\n").unwrap();
    let out = env.rbuild(&[
        "build",
        "--progress",
        "quiet",
        "--iidfile",
        iidfile.to_str().unwrap(),
        ctx.to_str().unwrap(),
    ]);
    assert_success(&out);
    assert_eq!(
        std::fs::read_to_string(&iidfile).unwrap(),
        stdout(&out).trim()
    );
    let id = stdout(&out).trim().to_owned();

    // A FIFO a CI job reads stays a FIFO and gets the id; a symlink stays a link, its file
    // emptied when the build fails and written when it works.
    use std::os::unix::fs::FileTypeExt;
    let fifo = env.path("iid.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let received = env.path("iid.received");
    let mut reader = Command::new("sh")
        .arg("-c")
        .arg("cat \"$0\" > \"$1\"")
        .arg(&fifo)
        .arg(&received)
        .spawn()
        .unwrap();
    let elsewhere = env.path("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("metadata.json"), "{\"stale\":true}").unwrap();
    let link = env.path("metadata-link.json");
    std::os::unix::fs::symlink(elsewhere.join("metadata.json"), &link).unwrap();
    let out = env.rbuild(&[
        "build",
        "--progress",
        "quiet",
        "--iidfile",
        fifo.to_str().unwrap(),
        "--metadata-file",
        link.to_str().unwrap(),
        ctx.to_str().unwrap(),
    ]);
    assert_success(&out);
    assert!(reader.wait().unwrap().success());
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(std::fs::read_to_string(&received).unwrap(), id);
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    let metadata: serde_json::Value =
        serde_json::from_slice(&std::fs::read(elsewhere.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(metadata["containerimage.config.digest"], id);
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN exit 3\n").unwrap();
    let out = env.rbuild(&[
        "build",
        "--metadata-file",
        link.to_str().unwrap(),
        ctx.to_str().unwrap(),
    ]);
    assert_failure(&out);
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(std::fs::read(elsewhere.join("metadata.json")).unwrap(), b"");
}

/// Without `-f`, a context with only a lower-case `dockerfile` uses it, as docker does;
/// with both, `Dockerfile` wins.
#[test]
fn a_lowercase_dockerfile_is_found() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "lower",
        &[("dockerfile", "FROM busybox\nLABEL from=lowercase\n")],
    );
    let out = env.build(&ctx, "lower:1");
    assert_success(&out);
    let config = inspect_config(&env, "lower:1");
    assert_eq!(config["config"]["Labels"]["from"], "lowercase", "{config}");
    let out = env.rbuild(&["check", ctx.to_str().unwrap()]);
    assert_success(&out);

    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nLABEL from=capital\n").unwrap();
    let out = env.build(&ctx, "lower:2");
    assert_success(&out);
    let config = inspect_config(&env, "lower:2");
    assert_eq!(config["config"]["Labels"]["from"], "capital", "{config}");

    // Neither: the error names the file it looked for.
    let empty = env.context("empty", &[("README", "no Dockerfile here\n")]);
    let out = env.build(&empty, "lower:3");
    assert_failure(&out);
    assert!(
        stderr(&out).contains(&format!(
            "cannot read the Dockerfile {}",
            empty.join("Dockerfile").display()
        )),
        "{}",
        stderr(&out)
    );
}
