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

/// Imports the arm64 busybox as `name`, for linux/arm64.
fn import_arm64_busybox(env: &TestEnv, deb: &Path, name: &str) {
    let root = env.path("arm64-rootfs");
    let extracted = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(&root)
        .status()
        .unwrap();
    assert!(extracted.success());
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
    let out = env.rbuild(&["build", "--platform", "linux/amd64,linux/arm64", dir]);
    assert!(!out.status.success());
    assert!(
        flat(&stderr(&out)).contains("one platform per build"),
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
    let root = env.path("arm64-rootfs");
    assert!(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&root)
            .status()
            .unwrap()
            .success()
    );
    let layout = env.path("layout");
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
    let registry = crate::registry_support::TestRegistry::start();
    let base = registry.reference("busybox/multi:1");
    crate::registry_support::skopeo(&[
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", layout.display()),
        &format!("docker://{base}"),
    ]);
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
