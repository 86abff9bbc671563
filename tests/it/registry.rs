//! Registries: push and pull against a real distribution registry (Debian's
//! `docker-registry`), checked by skopeo in both directions; auth behind TLS; faults
//! injected by a proxy (each ends in a retry that works or a clear error, never a corrupt
//! store); and the build cache shared through a registry by two stores.

use std::fs;

use crate::registry_support::*;
use crate::support::*;

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

/// A built image keeps its layers uncompressed; pushed, the registry's copy is gzip'd.
/// Pulled back (into the same store under the registry's name, or into another store), it
/// is the same image, with the same IMAGE ID and the same SIZE.
#[test]
fn a_pulled_copy_of_a_built_image_shows_the_same_size() {
    require_privileges!();
    let registry = TestRegistry::start();
    let a = busybox_env();
    let ctx = a.context(
        "sized",
        &[("Dockerfile", "FROM busybox\nRUN echo built > /built.txt\n")],
    );
    assert_success(&a.build(&ctx, "built:1"));
    let target = registry.reference("sized/built:1");
    assert_success(&rbuild(&a, &["push", "built:1", &target]));
    assert_success(&rbuild(&a, &["pull", &target]));
    let b = TestEnv::new();
    assert_success(&rbuild(&b, &["pull", &target]));

    let row = |env: &TestEnv, name: &str| -> (String, u64) {
        let out = rbuild(env, &["images", "--format", "json"]);
        assert_success(&out);
        stdout(&out)
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .find(|row| {
                format!(
                    "{}:{}",
                    row["Repository"].as_str().unwrap(),
                    row["Tag"].as_str().unwrap()
                ) == name
            })
            .map(|row| {
                (
                    row["ID"].as_str().unwrap().to_owned(),
                    row["Size"].as_u64().unwrap(),
                )
            })
            .unwrap_or_else(|| panic!("{name} in {}", stdout(&out)))
    };
    let built = row(&a, "built:1");
    assert_eq!(
        row(&a, &target),
        built,
        "pulled into the store that built it"
    );
    assert_eq!(row(&b, &target), built, "pulled into another store");
}

#[test]
fn pull_chooses_the_platform_from_an_index() {
    require_privileges!();
    require_tool("skopeo");
    let registry = TestRegistry::start();
    let env = TestEnv::new();
    let layout = env.path("layout");
    let layer = noise_layer(1024);
    write_index_layout(
        &layout,
        "multi",
        &[("amd64", layer.clone()), ("arm64", layer)],
    );
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
    // Every platform under the one name.
    let out = rbuild(&env, &["pull", "--platform", "all", &target]);
    assert_success(&out);
    let images = stdout(&rbuild(&env, &["images"]));
    assert!(images.contains("linux/amd64,linux/arm64"), "{images}");
    for arch in ["amd64", "arm64"] {
        let out = rbuild(&env, &["inspect", "--platform", arch, &target]);
        let config: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(config["architecture"], arch, "{config:#}");
    }
    assert_success(&rbuild(&env, &["prune", "--all"]));
    // Nothing of either platform was collected.
    let verified = rbuild(&env, &["store", "verify"]);
    assert_success(&verified);
    assert!(
        stdout(&verified).contains("no problems found"),
        "{}",
        stdout(&verified)
    );
    let out = rbuild(&env, &["inspect", "--platform", "arm64", &target]);
    assert_success(&out);

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

    // `insecure = true` skips the verification instead.
    let insecure = TestEnv::new();
    fs::create_dir_all(insecure.path("docker")).unwrap();
    fs::copy(&config_path, insecure.path("docker/config.json")).unwrap();
    write_config(
        &insecure,
        &format!("[registry.\"{}\"]\ninsecure = true\n", registry.host),
    );
    let out = rbuild(&insecure, &["pull", &target]);
    assert_success(&out);
    assert_eq!(last_line(&stdout(&out)), pushed);

    // Without the CA the certificate is refused, clearly, with advice about the CA.
    // (`http = false`: HTTPS even though the registry is on a loopback address.)
    let untrusting = TestEnv::new();
    write_config(
        &untrusting,
        &format!("[registry.\"{}\"]\nhttp = false\n", registry.host),
    );
    let out = rbuild(&untrusting, &["pull", &target]);
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(
        err.contains(&format!(
            "the certificate of {} is not trusted",
            registry.host
        )),
        "{err}"
    );
    assert!(err.contains("help: trust the registry's CA"), "{err}");
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

#[test]
fn mirrors_are_tried_in_order_before_the_registry() {
    require_privileges!();
    let mirror = TestRegistry::start();
    let seed = busybox_env();
    let out = rbuild(
        &seed,
        &["push", "busybox", &mirror.reference("library/busybox:1")],
    );
    assert_success(&out);
    let pushed = last_line(&stdout(&out));
    let env = TestEnv::new();
    // The registry itself does not exist; the first mirror is down; the second has it.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    write_config(
        &env,
        &format!(
            "[registry.\"registry.invalid\"]\nmirrors = [\"http://{dead}\", \"http://{}\"]\n[transfer]\nretries = 1\n",
            mirror.host
        ),
    );
    let out = rbuild(&env, &["pull", "registry.invalid/library/busybox:1"]);
    assert_success(&out);
    assert_eq!(last_line(&stdout(&out)), pushed);
    let images = stdout(&rbuild(&env, &["images"]));
    assert!(
        images.contains("registry.invalid/library/busybox"),
        "{images}"
    );
}

#[test]
fn loopback_registries_are_reached_without_the_proxy() {
    require_privileges!();
    let registry = TestRegistry::start();
    let env = busybox_env();
    // A proxy that does not exist: loopback registries must not go through it.
    let out = command(&env)
        .env("HTTP_PROXY", "http://192.0.2.1:9")
        .env("HTTPS_PROXY", "http://192.0.2.1:9")
        .args(["push", "busybox", &registry.reference("direct/busybox:1")])
        .output()
        .unwrap();
    assert_success(&out);
}
