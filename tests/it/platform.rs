//! Building for another platform: `--platform`, `FROM --platform=$BUILDPLATFORM`, base
//! images chosen by platform, RUN under QEMU emulation (binfmt_misc).
//!
//! The arm64 base is made from Debian's busybox-static for arm64, downloaded by `.ci/run`
//! (`apt-get download busybox-static:arm64`) to [`ARM64_BUSYBOX_DEB`], and the emulator is
//! Debian's qemu-user-static, whose aarch64 handler `.ci/run` registers.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{TestEnv, assert_success, flat, stderr, stdout};

/// Where `.ci/run` puts busybox-static for arm64 (`RBUILD_TEST_ARM64_BUSYBOX` overrides).
const ARM64_BUSYBOX_DEB: &str = "/var/cache/rbuild-tests/busybox-static_arm64.deb";

/// The arm64 busybox package and a usable aarch64 emulator, or `None` (the test is then
/// skipped with the reason, a failure under `RBUILD_PRIVILEGED_TESTS=1`).
fn arm64_busybox() -> Option<PathBuf> {
    let deb = std::env::var_os("RBUILD_TEST_ARM64_BUSYBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(ARM64_BUSYBOX_DEB));
    let handler = Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64");
    let emulated = std::fs::read_to_string(handler).is_ok_and(|text| {
        text.starts_with("enabled") && text.contains("flags: ") && {
            let flags = text
                .lines()
                .find(|l| l.starts_with("flags: "))
                .unwrap_or("");
            flags.contains('F')
        }
    });
    let missing = match (deb.exists(), emulated) {
        (true, true) => return Some(deb),
        (false, _) => format!("{} (apt-get download busybox-static:arm64)", deb.display()),
        (_, false) => {
            "the qemu-aarch64 binfmt_misc handler with the F flag (qemu-user-static)".to_owned()
        }
    };
    if std::env::var_os("RBUILD_PRIVILEGED_TESTS").is_some_and(|v| v == "1") {
        panic!("RBUILD_PRIVILEGED_TESTS=1 but this test lacks {missing}");
    }
    eprintln!("skipped: needs {missing}");
    None
}

/// The files of the package `deb`, extracted under `dir` of `env`.
fn extract_deb(env: &TestEnv, deb: &Path, dir: &str) -> PathBuf {
    let root = env.path(dir);
    let extracted = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(&root)
        .status()
        .unwrap();
    assert!(extracted.success());
    root
}

/// Imports the arm64 busybox as `name`, for linux/arm64.
fn import_arm64_busybox(env: &TestEnv, deb: &Path, name: &str) {
    let root = extract_deb(env, deb, "arm64-rootfs");
    for applet in ["sh", "uname", "cat", "echo", "test"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    let tar = env.path("arm64-rootfs.tar");
    let packed = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg("bin")
        .status()
        .unwrap();
    assert!(packed.success());
    let out = env.rbuild(&[
        "import",
        "--platform",
        "linux/arm64",
        tar.to_str().unwrap(),
        name,
    ]);
    assert_success(&out);
}

fn config(env: &TestEnv, image: &str) -> serde_json::Value {
    let out = env.rbuild(&["inspect", image]);
    assert_success(&out);
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn an_arm64_build_runs_its_steps_emulated_and_its_build_platform_stage_natively() {
    require_privileges!();
    let Some(deb) = arm64_busybox() else { return };
    let env = TestEnv::with_busybox();
    import_arm64_busybox(&env, &deb, "busybox-arm64");
    let context = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "\
FROM --platform=$BUILDPLATFORM busybox AS tools
ARG BUILDARCH TARGETARCH
RUN echo \"$(uname -m) on $BUILDARCH for $TARGETARCH\" > /built-on
FROM busybox-arm64
ARG TARGETPLATFORM
COPY --from=tools /built-on /built-on
RUN echo \"$(uname -m) for $TARGETPLATFORM\" > /runs-on
",
        )],
    );
    let out = env.rbuild(&[
        "build",
        "--platform",
        "linux/arm64",
        "--progress",
        "plain",
        "-t",
        "cross",
        context.to_str().unwrap(),
    ]);
    assert_success(&out);
    // The build checks knew the platform: no warning that the base is for another.
    assert!(
        !stderr(&out).contains("InvalidBaseImagePlatform"),
        "{}",
        stderr(&out)
    );
    let out = env.rbuild(&["run", "--rm", "cross", "cat", "/built-on", "/runs-on"]);
    assert_success(&out);
    assert_eq!(
        stdout(&out),
        "x86_64 on amd64 for arm64\naarch64 for linux/arm64\n"
    );
    let inspected = config(&env, "cross");
    assert_eq!(inspected["architecture"], "arm64", "{inspected}");
    // A single-platform image asked for another platform: said, not ignored.
    let out = env.rbuild(&["run", "--rm", "--platform", "linux/amd64", "cross", "true"]);
    assert!(!out.status.success());
    assert!(
        flat(&stderr(&out)).contains("no manifest for linux/amd64 (it has linux/arm64)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(inspected["os"], "linux");

    // The same build again: every step from the cache.
    let out = env.rbuild(&[
        "build",
        "--platform",
        "aarch64",
        "--progress",
        "plain",
        "-t",
        "cross",
        context.to_str().unwrap(),
    ]);
    assert_success(&out);
    assert!(stderr(&out).contains("0 steps run"), "{}", stderr(&out));
}

#[test]
fn a_base_image_of_another_platform_is_refused_naming_both() {
    require_privileges!();
    let Some(deb) = arm64_busybox() else { return };
    let env = TestEnv::with_busybox();
    import_arm64_busybox(&env, &deb, "busybox-arm64");
    let context = env.context("ctx", &[("Dockerfile", "FROM busybox-arm64\nRUN true\n")]);
    // No --platform: this machine's, which the image is not.
    let out = env.build(&context, "wrong");
    assert!(!out.status.success());
    let err = flat(&stderr(&out));
    assert!(
        err.contains(
            "base image `busybox-arm64:latest` is for linux/arm64, and the build needs linux/amd64"
        ),
        "{err}"
    );
    assert!(err.contains("--platform linux/arm64"), "{err}");
}

#[test]
fn platform_flags_are_checked_before_anything_runs() {
    let env = TestEnv::new();
    let context = env.context("ctx", &[("Dockerfile", "FROM scratch\n")]);
    let dir = context.to_str().unwrap();
    let out = env.rbuild(&["build", "--platform", "linux//arm64", dir]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is not a platform"),
        "{}",
        stderr(&out)
    );
    let out = env.rbuild(&["import", "--platform", "linux/arm64/v8/x", "/dev/null", "x"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--platform"), "{}", stderr(&out));
}

/// A multi-platform base image in a registry: each platform's build pulls its own
/// manifest from the index; only this machine's is named in the store.
#[test]
fn a_multi_platform_base_from_a_registry_gives_each_platform_its_own_image() {
    require_privileges!();
    crate::support::require_tool("skopeo");
    let Some(deb) = arm64_busybox() else { return };
    let env = TestEnv::new();
    let registry = crate::registry_support::TestRegistry::start();
    let base = push_multi_platform_busybox(&env, &deb, &registry);
    let context = env.context(
        "ctx",
        &[(
            "Dockerfile",
            &format!("FROM {base}\nRUN echo \"$ARCH $(uname -m)\" > /arch\n"),
        )],
    );
    let dir = context.to_str().unwrap();
    for (platform, expected) in [
        ("linux/arm64", "arm64 aarch64"),
        ("linux/amd64", "amd64 x86_64"),
    ] {
        let tag = format!("multi-{}", platform.replace('/', "-"));
        let out = crate::registry_support::rbuild(
            &env,
            &[
                "build",
                "--platform",
                platform,
                "--progress",
                "plain",
                "-t",
                &tag,
                dir,
            ],
        );
        assert_success(&out);
        let out = crate::registry_support::rbuild(&env, &["run", "--rm", &tag, "cat", "/arch"]);
        assert_success(&out);
        assert_eq!(stdout(&out).trim(), expected);
    }
    // The store names the base for this machine's platform, as `rbuild pull` would.
    let inspected = config(&env, &base);
    assert_eq!(inspected["architecture"], "amd64");
}

/// Makes the multi-platform busybox (amd64 and arm64 in one index) and pushes it to
/// `registry` as `busybox/multi:1`; returns its reference.
fn push_multi_platform_busybox(
    env: &TestEnv,
    deb: &Path,
    registry: &crate::registry_support::TestRegistry,
) -> String {
    let root = extract_deb(env, deb, "arm64-busybox");
    let layout = env.path("multi-layout");
    crate::support::write_index_layout(
        &layout,
        "multi",
        &[
            ("amd64", crate::support::busybox_layer()),
            (
                "arm64",
                crate::support::busybox_layer_of(&root.join("bin/busybox")),
            ),
        ],
    );
    let base = registry.reference("busybox/multi:1");
    crate::registry_support::skopeo(&[
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", layout.display()),
        &format!("docker://{base}"),
    ]);
    base
}

/// One build, two platforms: one index in the store and in the registry, each platform's
/// RUN on its own architecture, a build-platform stage run once for both, and the same
/// index digest again with SOURCE_DATE_EPOCH.
#[test]
fn a_two_platform_build_is_one_index_pushed_whole_and_reproducible() {
    require_privileges!();
    crate::support::require_tool("skopeo");
    crate::support::require_tool("umoci");
    let Some(deb) = arm64_busybox() else { return };
    let env = TestEnv::new();
    let registry = crate::registry_support::TestRegistry::start();
    let base = push_multi_platform_busybox(&env, &deb, &registry);
    let context = env.context(
        "ctx",
        &[(
            "Dockerfile",
            &format!(
                "\
FROM --platform=$BUILDPLATFORM {base} AS tools
RUN echo \"made once on $(uname -m)\" > /tool
FROM {base}
COPY --from=tools /tool /tool
RUN uname -m > /arch
"
            ),
        )],
    );
    let dir = context.to_str().unwrap();
    let target = registry.reference("out/app:1");
    let rbuild = |args: &[&str]| crate::registry_support::rbuild(&env, args);
    let build = |extra: &[&str]| {
        let mut args = vec![
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "--progress",
            "plain",
            "-t",
            "app:multi",
        ];
        args.extend_from_slice(extra);
        args.push(dir);
        rbuild(&args)
    };
    let out = build(&["--build-arg", "SOURCE_DATE_EPOCH=1700000000"]);
    assert_success(&out);
    let log = stderr(&out);
    // The tools stage's RUN is the same op for both platforms: run once, then reused
    // (each platform's COPY and RUN run).
    assert!(log.contains("[linux/arm64] RUN uname -m > /arch"), "{log}");
    assert_eq!(log.matches("CACHED").count(), 1, "{log}");
    assert!(log.contains("5 steps run, 1 cached"), "{log}");
    let index = stdout(&out).trim().to_owned();

    for (platform, arch) in [("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")] {
        let out = rbuild(&[
            "run",
            "--rm",
            "--platform",
            platform,
            "app:multi",
            "cat",
            "/arch",
            "/tool",
        ]);
        assert_success(&out);
        assert_eq!(stdout(&out), format!("{arch}\nmade once on x86_64\n"));
    }
    let out = rbuild(&["images"]);
    assert!(
        stdout(&out).contains("linux/amd64,linux/arm64"),
        "{}",
        stdout(&out)
    );
    // Its IMAGE ID (the index's digest) names it, and another name for it has every
    // platform too.
    let id = index.trim_start_matches("sha256:")[..12].to_owned();
    assert_success(&rbuild(&["tag", &id, "app:again"]));
    let out = rbuild(&["inspect", "--platform", "linux/arm64", "app:again"]);
    assert_success(&out);
    assert!(stdout(&out).contains("\"arm64\""), "{}", stdout(&out));
    // A platform the image lacks is an error, never another platform's image.
    let out = rbuild(&[
        "run",
        "--rm",
        "--platform",
        "linux/s390x",
        "app:multi",
        "true",
    ]);
    assert!(!out.status.success());
    assert!(
        flat(&stderr(&out)).contains("no manifest for linux/s390x"),
        "{}",
        stderr(&out)
    );

    // Saved and loaded into another store: every platform comes along.
    let saved = env.path("multi.tar");
    assert_success(&rbuild(&[
        "save",
        "app:multi",
        "-o",
        saved.to_str().unwrap(),
    ]));
    let other = TestEnv::new();
    assert_success(&other.rbuild(&["load", "-i", saved.to_str().unwrap()]));
    let out = other.rbuild(&[
        "run",
        "--rm",
        "--platform",
        "linux/arm64",
        "app:multi",
        "cat",
        "/arch",
    ]);
    assert_success(&out);
    assert_eq!(stdout(&out), "aarch64\n");

    // A local output: a directory per platform, as BuildKit's; a tar or a docker-archive
    // has room for one.
    let local = env.path("local");
    let out = build(&["-o", &format!("type=local,dest={}", local.display())]);
    assert_success(&out);
    for (dir, arch) in [("linux_amd64", "x86_64\n"), ("linux_arm64", "aarch64\n")] {
        let written = std::fs::read_to_string(local.join(dir).join("arch")).unwrap();
        assert_eq!(written, arch);
    }
    let out = build(&[
        "-o",
        &format!("type=tar,dest={}", env.path("x.tar").display()),
    ]);
    assert!(!out.status.success());
    assert!(
        flat(&stderr(&out)).contains("`-o type=tar` holds one platform"),
        "{}",
        stderr(&out)
    );

    // The same build from scratch: the same index, bit for bit.
    let cache = registry.reference("cache/app:multi");
    let cache_to = format!("type=registry,ref={cache},mode=max");
    let again = build(&[
        "--build-arg",
        "SOURCE_DATE_EPOCH=1700000000",
        "--no-cache",
        "--cache-to",
        &cache_to,
    ]);
    assert_success(&again);
    assert_eq!(stdout(&again).trim(), index);

    // A fresh store takes every platform's steps from the registry cache.
    let fresh = TestEnv::new();
    let out = crate::registry_support::rbuild(
        &fresh,
        &[
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "--progress",
            "plain",
            "--build-arg",
            "SOURCE_DATE_EPOCH=1700000000",
            "--cache-from",
            &cache,
            dir,
        ],
    );
    assert_success(&out);
    assert!(stderr(&out).contains("0 steps run"), "{}", stderr(&out));

    // Pushed: an index with both platforms' manifests, each image whole.
    let out = rbuild(&["push", "app:multi", &target]);
    assert_success(&out);
    let raw = crate::registry_support::skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]);
    let raw: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(raw["mediaType"], "application/vnd.oci.image.index.v1+json");
    let platforms: Vec<String> = raw["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    let copied = env.path("arm64-oci");
    crate::registry_support::skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--override-arch",
        "arm64",
        &format!("docker://{target}"),
        &format!("oci:{}:app", copied.display()),
    ]);
    let unpacked = env.path("unpacked");
    let status = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:app", copied.display()))
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read_to_string(unpacked.join("rootfs/arch")).unwrap(),
        "aarch64\n"
    );
}
