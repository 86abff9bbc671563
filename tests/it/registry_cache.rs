//! Builds and registries: built layers compressed at push (deterministically), FROM pulling
//! what the store lacks, and the build cache shared by two stores through a registry.

use crate::registry_support::*;
use crate::support::*;

#[test]
fn built_layers_are_compressed_at_push_deterministically() {
    require_privileges!();
    require_tool("skopeo");
    let registry = TestRegistry::start();
    let env = busybox_env();
    let ctx = env.context(
        "ctx",
        &[("Dockerfile", "FROM busybox\nRUN echo made > /made.txt\n")],
    );
    let out = command(&env)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args([
            "build",
            "--progress",
            "plain",
            "-t",
            "made:1",
            ctx.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_success(&out);
    let mut digests = Vec::new();
    for (repo, compression) in [
        ("c/gzip:1", "gzip"),
        ("c/again:1", "gzip"),
        ("c/zstd:1", "zstd"),
    ] {
        let target = registry.reference(repo);
        let out = rbuild(
            &env,
            &["push", "--compression", compression, "made:1", &target],
        );
        assert_success(&out);
        digests.push(last_line(&stdout(&out)));
        let raw = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{target}"),
        ]);
        let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
        let layers = manifest["layers"].as_array().unwrap();
        assert!(
            layers.iter().all(|l| l["mediaType"]
                .as_str()
                .unwrap()
                .ends_with(&format!("+{compression}"))
                || compression == "zstd" && l["mediaType"].as_str().unwrap().ends_with("+gzip")),
            "{manifest:#}"
        );
    }
    // The same image compressed the same way has the same digest in any repository.
    assert_eq!(digests[0], digests[1]);
    assert_ne!(digests[0], digests[2]);
    // Another store, another build of the same inputs: the same push digest.
    let other = busybox_env();
    let ctx = other.context(
        "ctx",
        &[("Dockerfile", "FROM busybox\nRUN echo made > /made.txt\n")],
    );
    let out = command(&other)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args([
            "build",
            "--progress",
            "plain",
            "-t",
            &registry.reference("c/other:1"),
            "--push",
            ctx.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_success(&out);
    assert!(stderr(&out).contains(&digests[0]), "{}", stderr(&out));
}

#[test]
fn print_graph_reads_a_missing_base_config_from_the_registry_and_keeps_nothing() {
    require_privileges!();
    let registry = TestRegistry::start();
    let seed = busybox_env();
    let ctx = seed.context(
        "base",
        &[(
            "Dockerfile",
            "FROM busybox\nENV FROM_BASE=yes\nRUN echo > /layer\n",
        )],
    );
    assert_success(&rbuild(
        &seed,
        &["build", "-t", "base:1", ctx.to_str().unwrap()],
    ));
    let base = registry.reference("base/env:1");
    assert_success(&rbuild(&seed, &["push", "base:1", &base]));

    let env = TestEnv::new();
    let ctx = env.context(
        "ctx",
        &[("Dockerfile", &format!("FROM {base}\nRUN echo $FROM_BASE\n"))],
    );
    let out = rbuild(&env, &["build", "--print", "graph", ctx.to_str().unwrap()]);
    assert_success(&out);
    // The base's ENV is in the RUN's environment: its config was read.
    assert!(stdout(&out).contains("FROM_BASE=yes"), "{}", stdout(&out));
    // Nothing was pulled into the store: no image, no layer.
    let out = rbuild(&env, &["images", "--format", "json"]);
    assert_success(&out);
    assert!(!stdout(&out).contains("base/env"), "{}", stdout(&out));
    let blobs = std::fs::read_dir(env.root().join("blobs/sha256"))
        .map(|dir| dir.count())
        .unwrap_or(0);
    assert!(blobs <= 1, "only the config may be there, {blobs} blobs");
}

#[test]
fn from_pulls_a_missing_base_and_build_pull_refreshes_it() {
    require_privileges!();
    let registry = TestRegistry::start();
    let seed = busybox_env();
    let base = registry.reference("base/busybox:1");
    assert_success(&rbuild(&seed, &["push", "busybox", &base]));

    let env = TestEnv::new();
    let ctx = env.context(
        "ctx",
        &[("Dockerfile", &format!("FROM {base}\nRUN echo hi > /hi\n"))],
    );
    let out = rbuild(
        &env,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "app:1",
            ctx.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    assert!(stderr(&out).contains("resolved"), "{}", stderr(&out));
    // Now local: no registry needed.
    let out = rbuild(
        &env,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "app:1",
            ctx.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    assert!(!stderr(&out).contains("resolved"), "{}", stderr(&out));
    // `--pull` asks the registry again.
    let out = rbuild(
        &env,
        &[
            "build",
            "--pull",
            "--progress",
            "plain",
            "-t",
            "app:1",
            ctx.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    assert!(stderr(&out).contains("resolved"), "{}", stderr(&out));
    // A local name typed differently finds the same image: `docker.io/library/busybox`
    // is the `busybox` the store has.
    let ctx = seed.context(
        "long",
        &[(
            "Dockerfile",
            "FROM docker.io/library/busybox:latest\nRUN true\n",
        )],
    );
    assert_success(&rbuild(
        &seed,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "long:1",
            ctx.to_str().unwrap(),
        ],
    ));
}

const MULTI_STAGE: &str = "FROM busybox AS builder\n\
    RUN echo compiled > /artifact && head -c 100000 /dev/urandom > /scratch\n\
    FROM busybox\n\
    COPY --from=builder /artifact /app/artifact\n\
    RUN cat /app/artifact > /app/copy\n";

#[test]
fn a_second_machine_gets_cached_steps_from_the_registry() {
    require_privileges!();
    require_tool("skopeo");
    let registry = TestRegistry::start();
    let cache = registry.reference("cache/app:main");
    let a = busybox_env();
    let ctx = a.context("ctx", &[("Dockerfile", MULTI_STAGE)]);
    let out = rbuild(
        &a,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "app:1",
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max"),
            ctx.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    assert!(
        stderr(&out).contains("exported 3 cache record(s)"),
        "{}",
        stderr(&out)
    );

    // The builder stage's layer, as the cache names it.
    let config = skopeo(&[
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{cache}"),
    ]);
    let config: serde_json::Value = serde_json::from_slice(&config.stdout).unwrap();
    let builder_layer = config["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["description"].as_str().unwrap().contains("urandom"))
        .map(|r| r["layer"].as_str().unwrap().to_owned())
        .expect("the builder stage's record");

    let b = busybox_env();
    let ctx = b.context("ctx", &[("Dockerfile", MULTI_STAGE)]);
    // Another second: the image must not carry the time it was assembled.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = rbuild(
        &b,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "app:1",
            "--cache-from",
            &format!("type=registry,ref={cache}"),
            ctx.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    let err = stderr(&out);
    assert!(err.contains("0 steps run, 3 cached"), "{err}");
    // The same image as the first machine's, times included.
    let config = |env: &TestEnv| stdout(&rbuild(env, &["inspect", "app:1"]));
    assert_eq!(config(&a), config(&b));
    // Only the layers of the result were downloaded.
    let hex = builder_layer.trim_start_matches("sha256:");
    assert!(!b.root().join("blobs/sha256").join(hex).exists(), "{err}");
    let out = rbuild(&b, &["run", "app:1", "cat", "/app/copy"]);
    assert_success(&out);
    assert_eq!(stdout(&out).trim(), "compiled");
    assert_store_clean(&b);
    // A rebuild there hits the local cache now.
    let out = rbuild(
        &b,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "app:1",
            ctx.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    assert!(
        stderr(&out).contains("0 steps run, 3 cached"),
        "{}",
        stderr(&out)
    );

    // mode=min exports only the steps of the image's own stage.
    let out = rbuild(
        &a,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "app:1",
            "--cache-to",
            &format!("type=registry,ref={}", registry.reference("cache/app:min")),
            ctx.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    assert!(
        stderr(&out).contains("exported 2 cache record(s)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_step_that_runs_over_imported_steps_fetches_their_layers_first() {
    require_privileges!();
    let registry = TestRegistry::start();
    let cache = registry.reference("cache/edit:main");
    let a = busybox_env();
    let ctx = a.context("ctx", &[("Dockerfile", MULTI_STAGE)]);
    let out = rbuild(
        &a,
        &[
            "build",
            "--progress",
            "plain",
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max"),
            ctx.to_str().unwrap(),
        ],
    );
    assert_success(&out);

    // The second machine changes the last step: it runs over the COPY's and the builder
    // stage's imported layers, which must be files by then.
    let edited = MULTI_STAGE.replace(
        "RUN cat /app/artifact > /app/copy",
        "RUN cat /app/artifact /app/artifact > /app/twice",
    );
    let b = busybox_env();
    let ctx = b.context("ctx", &[("Dockerfile", &edited)]);
    let out = rbuild(
        &b,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "edited:1",
            "--cache-from",
            &format!("type=registry,ref={cache}"),
            ctx.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    let err = stderr(&out);
    assert!(err.contains("1 step run, 2 cached"), "{err}");
    let out = rbuild(&b, &["run", "edited:1", "cat", "/app/twice"]);
    assert_success(&out);
    assert_eq!(stdout(&out), "compiled\ncompiled\n");
    assert_store_clean(&b);
}

#[test]
fn a_cache_passes_on_to_another_registry_with_layers_no_build_fetched() {
    require_privileges!();
    let first = TestRegistry::start();
    let second = TestRegistry::start();
    let a = busybox_env();
    let ctx = a.context("ctx", &[("Dockerfile", MULTI_STAGE)]);
    let out = rbuild(
        &a,
        &[
            "build",
            "--cache-to",
            &format!(
                "type=registry,ref={},mode=max",
                first.reference("cache/app:1")
            ),
            ctx.to_str().unwrap(),
        ],
    );
    assert_success(&out);

    // B builds from the first registry's cache (the builder stage's layer is never
    // fetched) and exports every step to the second registry.
    let b = busybox_env();
    let ctx = b.context("ctx", &[("Dockerfile", MULTI_STAGE)]);
    let out = rbuild(
        &b,
        &[
            "build",
            "--progress",
            "plain",
            "--cache-from",
            &format!("type=registry,ref={}", first.reference("cache/app:1")),
            "--cache-to",
            &format!(
                "type=registry,ref={},mode=max",
                second.reference("cache/app:1")
            ),
            ctx.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    assert!(
        stderr(&out).contains("exported 3 cache record(s)"),
        "{}",
        stderr(&out)
    );

    // C, with only the second registry's cache, has every step cached.
    let c = busybox_env();
    let ctx = c.context("ctx", &[("Dockerfile", MULTI_STAGE)]);
    drop(first);
    let out = rbuild(
        &c,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "app:1",
            "--cache-from",
            &format!("type=registry,ref={}", second.reference("cache/app:1")),
            ctx.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    assert!(
        stderr(&out).contains("0 steps run, 3 cached"),
        "{}",
        stderr(&out)
    );
    let out = rbuild(&c, &["run", "app:1", "cat", "/app/copy"]);
    assert_success(&out);
    assert_eq!(stdout(&out).trim(), "compiled");
}

#[test]
fn cache_mount_contents_travel_with_the_cache_when_asked() {
    require_privileges!();
    let registry = TestRegistry::start();
    let a = busybox_env();
    let ctx = a.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\n\
             RUN --mount=type=cache,id=deps,target=/cache echo fetched > /cache/dep && echo done > /a\n",
        )],
    );
    for (name, mounts) in [("with", ",mounts=true"), ("without", "")] {
        let out = rbuild(
            &a,
            &[
                "build",
                "--progress",
                "plain",
                "--cache-to",
                &format!(
                    "type=registry,ref={}{mounts}",
                    registry.reference(&format!("cache/{name}:1"))
                ),
                ctx.to_str().unwrap(),
            ],
        );
        assert_success(&out);
        assert_eq!(
            stderr(&out).contains("and 1 cache mount(s)"),
            !mounts.is_empty(),
            "{}",
            stderr(&out)
        );
    }

    // Other machines run a different step over the same cache id: with the mounts in the
    // cache, the directory starts with machine A's files (and the owner this step asks for).
    let step = "FROM busybox\n\
        RUN --mount=type=cache,id=deps,target=/cache,uid=1000 \
        (cat /cache/dep 2>/dev/null || echo none) > /seen && stat -c %u /cache > /owner\n";
    for (name, seen) in [("with", "fetched"), ("without", "none")] {
        let b = busybox_env();
        let ctx = b.context("ctx", &[("Dockerfile", step)]);
        let out = rbuild(
            &b,
            &[
                "build",
                "--progress",
                "plain",
                "-t",
                "b:1",
                "--cache-from",
                &format!(
                    "type=registry,ref={}",
                    registry.reference(&format!("cache/{name}:1"))
                ),
                ctx.to_str().unwrap(),
            ],
        );
        assert_success(&out);
        let out = rbuild(&b, &["run", "b:1", "cat", "/seen", "/owner"]);
        assert_success(&out);
        assert_eq!(stdout(&out), format!("{seen}\n1000\n"), "cache/{name}");
        assert_store_clean(&b);
    }
}

#[test]
fn a_fresh_machine_says_why_a_step_missed_the_imported_cache() {
    require_privileges!();
    let registry = TestRegistry::start();
    let cache = format!("type=registry,ref={}", registry.reference("cache/why:1"));
    let dockerfile = "FROM busybox\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\n\
                      ARG TOKEN\nRUN echo $TOKEN | wc -c > /token-length\n";
    let a = busybox_env();
    let ctx = a.context("ctx", &[("Dockerfile", dockerfile), ("a.txt", "one\n")]);
    let out = rbuild(
        &a,
        &[
            "build",
            "--build-arg",
            "TOKEN=s3cr3t-token-value",
            "--cache-to",
            &cache,
            ctx.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    // The cache says how steps were made, but never a build argument's value.
    let config = skopeo(&[
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}", registry.reference("cache/why:1")),
    ]);
    let config = String::from_utf8_lossy(&config.stdout).into_owned();
    assert!(config.contains("traces"), "{config}");
    assert!(!config.contains("s3cr3t"), "{config}");

    let b = busybox_env();
    let ctx = b.context("ctx", &[("Dockerfile", dockerfile), ("a.txt", "two\n")]);
    let out = rbuild(
        &b,
        &[
            "build",
            "--progress",
            "plain",
            "--cache-from",
            &cache,
            ctx.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    let err = stderr(&out);
    assert!(err.contains("`a.txt` changed"), "{err}");
    assert!(err.contains("3 steps run, 0 cached"), "{err}");

    // Same files, another token: only the step that reads it runs, and says why.
    let c = busybox_env();
    let ctx = c.context("ctx", &[("Dockerfile", dockerfile), ("a.txt", "one\n")]);
    let out = rbuild(
        &c,
        &[
            "build",
            "--progress",
            "plain",
            "--build-arg",
            "TOKEN=another",
            "--cache-from",
            &cache,
            ctx.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    let err = stderr(&out);
    assert!(err.contains("`TOKEN` changed"), "{err}");
    assert!(err.contains("1 step run, 2 cached"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
}

#[test]
fn a_cache_import_that_fails_is_reported_and_the_build_goes_on() {
    require_privileges!();
    let registry = TestRegistry::start();
    let env = busybox_env();
    let ctx = env.context("ctx", &[("Dockerfile", "FROM busybox\nRUN echo x > /x\n")]);
    let out = rbuild(
        &env,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "app:1",
            "--cache-from",
            &format!("type=registry,ref={}", registry.reference("nothing/here:1")),
            ctx.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    let err = stderr(&out);
    assert!(
        err.contains("WARNING: cannot import the build cache") && err.contains("not found"),
        "{err}"
    );
    assert!(err.contains("1 step run, 0 cached"), "{err}");

    // An export that fails fails the build, unless `ignore-error=true` says otherwise.
    let nowhere = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let cache_to = format!("type=registry,ref=127.0.0.1:{nowhere}/cache:1");
    let out = rbuild(
        &env,
        &["build", "--cache-to", &cache_to, ctx.to_str().unwrap()],
    );
    assert_failure(&out);
    assert!(
        stderr(&out).contains("cannot export the build cache"),
        "{}",
        stderr(&out)
    );
    let out = rbuild(
        &env,
        &[
            "build",
            "--cache-to",
            &format!("{cache_to},ignore-error=true"),
            ctx.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    assert!(
        stderr(&out).contains("WARNING: the build cache was not exported"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn build_output_type_registry_pushes_the_result() {
    require_privileges!();
    let registry = TestRegistry::start();
    let env = busybox_env();
    let ctx = env.context(
        "ctx",
        &[("Dockerfile", "FROM busybox\nRUN echo out > /out\n")],
    );
    let target = registry.reference("out/app:1");
    let metadata = env.path("metadata.json");
    let out = rbuild(
        &env,
        &[
            "build",
            "--progress",
            "plain",
            "-o",
            &format!("type=registry,name={target}"),
            "--metadata-file",
            metadata.to_str().unwrap(),
            ctx.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    let metadata: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&metadata).unwrap()).unwrap();
    let pushed = metadata["rbuild.pushed"][0].as_str().unwrap().to_owned();
    let digest = pushed.rsplit('@').next().unwrap();
    // What a pipeline signs or deploys: the digest and name the registry has.
    assert_eq!(metadata["containerimage.digest"], digest, "{metadata}");
    assert_eq!(metadata["image.name"], target.as_str(), "{metadata}");
    let other = TestEnv::new();
    let out = rbuild(&other, &["pull", &target]);
    assert_success(&out);
    assert_eq!(last_line(&stdout(&out)), digest);
    let out = rbuild(&other, &["run", &target, "cat", "/out"]);
    assert_success(&out);
    assert_eq!(stdout(&out).trim(), "out");

    let out = rbuild(&env, &["build", "--push", ctx.to_str().unwrap()]);
    assert_failure(&out);
    assert!(
        stderr(&out).contains("`--push` needs a name"),
        "{}",
        stderr(&out)
    );
}
