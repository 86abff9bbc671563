//! `rbuild build` end to end: the demo fixture uses every instruction of the skeleton.

use std::path::PathBuf;

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
