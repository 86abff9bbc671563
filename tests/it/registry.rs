//! Registries: push and pull against a real distribution registry (Debian's
//! `docker-registry`), checked by skopeo in both directions; auth behind TLS; faults
//! injected by a proxy (each ends in a retry that works or a clear error, never a corrupt
//! store); and the build cache shared through a registry by two stores.

use std::fs;
use std::process::Command;

use crate::registry_support::*;
use crate::support::*;

fn skopeo(args: &[&str]) -> std::process::Output {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn busybox_env() -> TestEnv {
    let env = TestEnv::new();
    let tar = env.path("busybox.tar");
    write_busybox_image(&tar);
    assert_success(&rbuild(&env, &["load", "-i", tar.to_str().unwrap()]));
    env
}

/// Incompressible bytes, the same every run.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A one-file layer tar of `len` incompressible bytes.
fn noise_layer(len: usize) -> Vec<u8> {
    let data = noise(len, 42);
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    tar.append_data(&mut header, "noise.bin", data.as_slice())
        .unwrap();
    tar.into_inner().unwrap()
}

fn assert_store_clean(env: &TestEnv) {
    let out = rbuild(env, &["store", "verify"]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("no problems found"),
        "{}",
        stdout(&out)
    );
}

fn last_line(text: &str) -> String {
    text.lines().last().unwrap_or("").trim().to_owned()
}

#[test]
fn push_then_pull_keeps_digests_and_skopeo_reads_it() {
    require_privileges!();
    require_tool("skopeo");
    let registry = TestRegistry::start();
    let a = busybox_env();
    let target = registry.reference("library/busybox:1");
    let out = rbuild(&a, &["push", "busybox", &target]);
    assert_success(&out);
    let pushed = last_line(&stdout(&out));
    assert!(pushed.starts_with("sha256:"), "{}", stdout(&out));
    assert!(stderr(&out).contains("uploaded"), "{}", stderr(&out));

    // A second push uploads nothing.
    let again = rbuild(&a, &["push", "busybox", &target]);
    assert_success(&again);
    assert_eq!(last_line(&stdout(&again)), pushed);
    assert!(!stderr(&again).contains(" uploaded"), "{}", stderr(&again));

    let inspected = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]);
    let inspected: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(inspected["Digest"], pushed.as_str());

    let b = TestEnv::new();
    let out = rbuild(&b, &["pull", &target]);
    assert_success(&out);
    assert_eq!(last_line(&stdout(&out)), pushed);
    let images = stdout(&rbuild(&b, &["images", "--format", "json"]));
    assert!(images.contains(&pushed), "{images}");
    assert_store_clean(&b);
    // The pulled image runs.
    let out = rbuild(&b, &["run", &target, "echo", "pulled"]);
    assert_success(&out);
    assert_eq!(stdout(&out).trim(), "pulled");
}

#[test]
fn rbuild_pulls_what_skopeo_pushed_in_both_manifest_formats() {
    require_privileges!();
    require_tool("skopeo");
    let registry = TestRegistry::start();
    let env = TestEnv::new();
    let tar = env.path("image.tar");
    write_image(&tar, "img:1", &[noise_layer(64 * 1024)]);
    for (format, repo) in [("oci", "sk/oci:1"), ("v2s2", "sk/docker:1")] {
        let target = registry.reference(repo);
        skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            "--format",
            format,
            &format!("oci-archive:{}", tar.display()),
            &format!("docker://{target}"),
        ]);
        let inspected = skopeo(&[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{target}"),
        ]);
        let inspected: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
        let out = rbuild(&env, &["pull", &target]);
        assert_success(&out);
        assert_eq!(
            last_line(&stdout(&out)),
            inspected["Digest"].as_str().unwrap()
        );
    }
    assert_store_clean(&env);
}

/// An OCI layout directory holding an index of two single-layer images, for amd64 and
/// arm64, named `multi`.
fn write_multi_platform_layout(dir: &std::path::Path) {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = digest(bytes);
        fs::write(blobs.join(d.trim_start_matches("sha256:")), bytes).unwrap();
        (d, bytes.len())
    };
    let layer = noise_layer(1024);
    let (layer_digest, layer_size) = put(&layer);
    let mut manifests = Vec::new();
    for arch in ["amd64", "arm64"] {
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": arch, "os": "linux",
            "config": {"Env": [format!("ARCH={arch}")]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }))
        .unwrap();
        let (config_digest, config_size) = put(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
        }))
        .unwrap();
        let (manifest_digest, manifest_size) = put(&manifest);
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest_size,
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests,
    }))
    .unwrap();
    let (index_digest, index_size) = put(&index);
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": index_digest, "size": index_size,
                "annotations": {"org.opencontainers.image.ref.name": "multi"},
            }],
        }))
        .unwrap(),
    )
    .unwrap();
}

#[test]
fn pull_chooses_the_platform_from_an_index() {
    require_privileges!();
    require_tool("skopeo");
    let registry = TestRegistry::start();
    let env = TestEnv::new();
    let layout = env.path("layout");
    write_multi_platform_layout(&layout);
    let target = registry.reference("multi/app:1");
    skopeo(&[
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", layout.display()),
        &format!("docker://{target}"),
    ]);
    for (platform, arch) in [("linux/amd64", "amd64"), ("linux/arm64", "arm64")] {
        let out = rbuild(&env, &["pull", "--platform", platform, &target]);
        assert_success(&out);
        let config = stdout(&rbuild(&env, &["inspect", &target]));
        let config: serde_json::Value = serde_json::from_str(&config).unwrap();
        assert_eq!(config["architecture"], arch, "{config:#}");
    }
    let out = rbuild(&env, &["pull", "--platform", "linux/s390x", &target]);
    assert_failure(&out);
    let err = stderr(&out);
    assert!(
        err.contains("no image for linux/s390x") && err.contains("linux/arm64"),
        "{err}"
    );
    let out = rbuild(&env, &["pull", "--platform", "linux", &target]);
    assert_failure(&out);
    assert!(
        stderr(&out).contains("invalid platform"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_references_are_clear_errors() {
    let env = TestEnv::new();
    for (reference, reason) in [
        ("Busybox", "lowercase"),
        ("busybox@sha256:123", "the digest must be"),
        ("busybox:", "1 to 128"),
    ] {
        let out = rbuild(&env, &["pull", reference]);
        assert_failure(&out);
        let err = stderr(&out);
        assert!(err.contains(reason) && err.contains(reference), "{err}");
    }
}

#[test]
fn login_over_tls_then_push_pull_and_logout() {
    require_privileges!();
    let password = "s3cret-Pa55";
    let registry = TestRegistry::start_with_auth("ci", password);
    let env = busybox_env();
    write_config(
        &env,
        &format!(
            "[registry.\"{}\"]\nca = [\"{}\"]\n",
            registry.host,
            registry.ca.as_ref().unwrap().display()
        ),
    );
    let target = registry.reference("private/busybox:1");

    let out = rbuild(&env, &["push", "busybox", &target]);
    assert_failure(&out);
    assert!(
        stderr(&out).contains("authentication failed") && stderr(&out).contains("rbuild login"),
        "{}",
        stderr(&out)
    );

    let login = |password: &str| {
        let mut child = command(&env)
            .args(["login", &registry.host, "-u", "ci", "--password-stdin"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    };
    let out = login("wrong");
    assert_failure(&out);
    assert!(
        stderr(&out).contains("authentication failed"),
        "{}",
        stderr(&out)
    );
    assert!(!env.path("docker/config.json").exists());

    let out = login(password);
    assert_success(&out);
    assert!(!stderr(&out).contains(password));
    let config_path = env.path("docker/config.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&config_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(&config_path).unwrap()).unwrap();
    assert!(
        config["auths"][&registry.host]["auth"].is_string(),
        "{config:#}"
    );

    let out = rbuild(&env, &["push", "busybox", &target]);
    assert_success(&out);
    assert!(!stderr(&out).contains(password));
    let pushed = last_line(&stdout(&out));
    let other = TestEnv::new();
    fs::create_dir_all(other.path("docker")).unwrap();
    fs::copy(&config_path, other.path("docker/config.json")).unwrap();
    fs::create_dir_all(other.path("config")).unwrap();
    write_config(
        &other,
        &fs::read_to_string(env.path("config/rbuild/config.toml")).unwrap(),
    );
    let out = rbuild(&other, &["pull", &target]);
    assert_success(&out);
    assert_eq!(last_line(&stdout(&out)), pushed);

    assert_success(&rbuild(&other, &["logout", &registry.host]));
    let out = rbuild(&other, &["pull", &target]);
    assert_failure(&out);
    assert!(
        stderr(&out).contains("authentication failed"),
        "{}",
        stderr(&out)
    );

    // Without the CA the certificate is refused, clearly. (`http = false`: HTTPS even
    // though the registry is on a loopback address.)
    let untrusting = TestEnv::new();
    write_config(
        &untrusting,
        &format!("[registry.\"{}\"]\nhttp = false\n", registry.host),
    );
    let out = rbuild(&untrusting, &["pull", &target]);
    assert_failure(&out);
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach") && err.contains("certificate"),
        "{err}"
    );
}

/// A registry with a two-layer image (`faults/app:1`, one layer of 2 MiB of noise) and a
/// proxy in front of it applying `rule`.
fn faulty(
    rule: impl Fn(&Request) -> Action + Send + Sync + 'static,
) -> (TestRegistry, FaultProxy, TestEnv) {
    let registry = TestRegistry::start();
    let seed = TestEnv::new();
    let tar = seed.path("image.tar");
    write_image(&tar, "faults:1", &[noise_layer(2 << 20), noise_layer(1000)]);
    assert_success(&rbuild(&seed, &["load", "-i", tar.to_str().unwrap()]));
    assert_success(&rbuild(
        &seed,
        &["push", "faults:1", &registry.reference("faults/app:1")],
    ));
    let proxy = FaultProxy::start(&registry.host, rule);
    (registry, proxy, TestEnv::new())
}

fn is_big_blob(request: &Request) -> bool {
    request.method == "GET" && request.path.contains("/blobs/") && !request.path.contains("uploads")
}

#[test]
fn a_connection_dropped_mid_blob_is_resumed() {
    require_privileges!();
    let (_registry, proxy, env) = faulty(once(|| Action::DropMidBody, |r| is_big_blob(r)));
    let out = rbuild(&env, &["pull", &proxy.reference("faults/app:1")]);
    assert_success(&out);
    assert!(stderr(&out).contains("retrying"), "{}", stderr(&out));
    assert_store_clean(&env);
    let seen = proxy.seen.lock().unwrap();
    assert!(
        seen.iter().filter(|r| is_big_blob(r)).count() >= 3,
        "{seen:?}"
    );
}

#[test]
fn a_500_once_is_retried() {
    require_privileges!();
    let (_registry, proxy, env) = faulty(once(
        || Action::Respond {
            status: 500,
            content_type: "text/plain",
            body: b"boom".to_vec(),
        },
        |r| r.path.contains("/manifests/"),
    ));
    let out = rbuild(&env, &["pull", &proxy.reference("faults/app:1")]);
    assert_success(&out);
    assert!(stderr(&out).contains("500"), "{}", stderr(&out));
    assert_store_clean(&env);
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused() {
    require_privileges!();
    let (_registry, proxy, env) = faulty(|r: &Request| {
        if is_big_blob(r) {
            Action::Corrupt
        } else {
            Action::Forward
        }
    });
    let out = rbuild(&env, &["pull", &proxy.reference("faults/app:1")]);
    assert_failure(&out);
    let err = stderr(&out);
    assert!(
        err.contains("has digest") && err.contains("expected"),
        "{err}"
    );
    assert_store_clean(&env);
    let images = stdout(&rbuild(&env, &["images", "--format", "json"]));
    assert!(images.trim().is_empty(), "{images}");
    assert_eq!(fs::read_dir(env.root().join("ingest")).unwrap().count(), 0);
}

#[test]
fn a_manifest_over_4_mib_is_refused() {
    require_privileges!();
    let (_registry, proxy, env) = faulty(|r: &Request| {
        if r.path.contains("/manifests/") {
            let mut body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"x":""#.to_vec();
            body.resize(5 << 20, b'a');
            body.extend_from_slice(br#""}}"#);
            Action::Respond {
                status: 200,
                content_type: "application/vnd.oci.image.manifest.v1+json",
                body,
            }
        } else {
            Action::Forward
        }
    });
    let out = rbuild(&env, &["pull", &proxy.reference("faults/app:1")]);
    assert_failure(&out);
    assert!(
        stderr(&out).contains("more than the limit of 4194304"),
        "{}",
        stderr(&out)
    );
    assert_store_clean(&env);
}

#[test]
fn a_500_during_an_upload_is_retried() {
    require_privileges!();
    let registry = TestRegistry::start();
    let proxy = FaultProxy::start(
        &registry.host,
        once(
            || Action::Respond {
                status: 503,
                content_type: "text/plain",
                body: b"busy".to_vec(),
            },
            |r| r.method == "POST" && r.path.contains("/blobs/uploads/"),
        ),
    );
    let env = busybox_env();
    let out = rbuild(&env, &["push", "busybox", &proxy.reference("up/busybox:1")]);
    assert_success(&out);
    assert!(stderr(&out).contains("503"), "{}", stderr(&out));
    let out = rbuild(
        &TestEnv::new(),
        &["pull", &registry.reference("up/busybox:1")],
    );
    assert_success(&out);
}

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
    assert!(err.contains("3 step(s) cached, 0 run"), "{err}");
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
        stderr(&out).contains("3 step(s) cached, 0 run"),
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
    assert!(err.contains("0 step(s) cached, 1 run"), "{err}");
}

#[test]
fn bearer_tokens_are_fetched_with_the_login_and_refreshed_on_401() {
    require_privileges!();
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, OnceLock};
    let registry = TestRegistry::start();
    // The proxy plays a token-auth registry: a token server at /token that wants Basic
    // credentials, and every other request needs `Bearer tok`; one manifest request is
    // refused once more as if the token had expired.
    let realm: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
    let expired = AtomicBool::new(false);
    let proxy_realm = realm.clone();
    let basic = format!("Basic {}", base64_encode(b"ci:t0ken-pass"));
    let proxy = FaultProxy::start(&registry.host, move |r: &Request| {
        let realm = proxy_realm.get().unwrap().clone();
        if r.path.starts_with("/token") {
            return if r.authorization.as_deref() == Some(basic.as_str()) {
                Action::Respond {
                    status: 200,
                    content_type: "application/json",
                    body: br#"{"token":"tok"}"#.to_vec(),
                }
            } else {
                Action::Respond {
                    status: 401,
                    content_type: "application/json",
                    body: br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#
                        .to_vec(),
                }
            };
        }
        match r.authorization.as_deref() {
            Some("Bearer tok")
                if r.path.contains("/manifests/") && !expired.swap(true, Ordering::SeqCst) =>
            {
                Action::Challenge { realm }
            }
            Some("Bearer tok") => Action::Forward,
            _ => Action::Challenge { realm },
        }
    });
    realm.set(format!("http://{}/token", proxy.host)).unwrap();

    let env = busybox_env();
    let target = proxy.reference("tokens/busybox:1");
    let out = rbuild(&env, &["push", "busybox", &target]);
    assert_failure(&out);
    assert!(stderr(&out).contains("UNAUTHORIZED"), "{}", stderr(&out));

    let mut child = command(&env)
        .args(["login", &proxy.host, "-u", "ci", "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"t0ken-pass\n")
            .unwrap();
    }
    assert_success(&child.wait_with_output().unwrap());

    let out = rbuild(&env, &["push", "busybox", &target]);
    assert_success(&out);
    let pushed = last_line(&stdout(&out));
    let out = rbuild(&env, &["pull", &target]);
    assert_success(&out);
    assert_eq!(last_line(&stdout(&out)), pushed);
    let seen = proxy.seen.lock().unwrap();
    let tokens = seen.iter().filter(|r| r.path.starts_with("/token")).count();
    // login, push (once per process and scope), the refresh after the forced 401, pull
    assert!(tokens >= 4, "{seen:#?}");
    assert!(seen.iter().all(|r| !r.path.contains("t0ken-pass")));
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
