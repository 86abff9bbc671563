//! `rbuild verify-build`: an image built again from its provenance in a scratch store,
//! compared digest for digest.

use crate::supply_chain::defaults;
use crate::support::{TestEnv, assert_failure, assert_success, flat, stderr, stdout};

#[test]
fn verify_build_reproduces_an_image_and_names_the_layer_that_differs() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let files = [
        (
            "Dockerfile",
            "FROM busybox\nARG FLAVOUR\nRUN echo $FLAVOUR > /flavour\nCOPY app.txt /app.txt\n",
        ),
        ("app.txt", "the real thing\n"),
    ];
    let ctx = env.context("ctx", &files);
    let ctx_arg = ctx.to_str().unwrap();
    let build = |args: &[&str]| defaults(env.command()).args(args).output().unwrap();
    let out = build(&[
        "build",
        "-q",
        "-t",
        "app",
        "--build-arg",
        "FLAVOUR=mint",
        "--build-arg",
        "SOURCE_DATE_EPOCH=1700000000",
        ctx_arg,
    ]);
    assert_success(&out);

    // mode=min names the build argument without its value.
    let out = env.rbuild(&["verify-build", "app", ctx_arg]);
    assert_failure(&out);
    assert!(
        flat(&stderr(&out)).contains("the build was given the build arguments `FLAVOUR`, and its provenance (mode=min) does not record their values"),
        "{}",
        stderr(&out)
    );
    let out = env.rbuild(&[
        "verify-build",
        "app",
        ctx_arg,
        "--build-arg",
        "FLAVOUR=mint",
    ]);
    assert_success(&out);
    assert!(
        stdout(&out).starts_with("reproduced: app (linux/amd64) is sha256:"),
        "{}",
        stdout(&out)
    );

    // An image whose COPY layer holds other content than the context it claims.
    let forged = env.context("forged", &[files[0], ("app.txt", "something else\n")]);
    let out = build(&[
        "build",
        "-q",
        "-t",
        "forged",
        "--build-arg",
        "FLAVOUR=mint",
        "--build-arg",
        "SOURCE_DATE_EPOCH=1700000000",
        forged.to_str().unwrap(),
    ]);
    assert_success(&out);
    let out = env.rbuild(&[
        "verify-build",
        "forged",
        ctx_arg,
        "--build-arg",
        "FLAVOUR=mint",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("not reproduced: forged (linux/amd64) is sha256:"),
        "{text}"
    );
    assert!(
        text.contains(
            "layer 3 (COPY app.txt /app.txt # buildkit) differs: /app.txt: the image has mode 644"
        ),
        "{text}"
    );

    // The Dockerfile must be the one recorded.
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\n").unwrap();
    let out = env.rbuild(&[
        "verify-build",
        "app",
        ctx_arg,
        "--build-arg",
        "FLAVOUR=mint",
    ]);
    assert_failure(&out);
    assert!(
        flat(&stderr(&out))
            .contains("is not the Dockerfile the image was built from: its sha256 is")
    );

    // A base image that is gone is named.
    std::fs::write(ctx.join("Dockerfile"), files[0].1).unwrap();
    assert_success(&env.rbuild(&["rmi", "busybox"]));
    assert_success(&env.rbuild(&["prune", "--all"]));
    let out = env.rbuild(&[
        "verify-build",
        "app",
        ctx_arg,
        "--build-arg",
        "FLAVOUR=mint",
    ]);
    assert_failure(&out);
    assert!(
        flat(&stderr(&out))
            .contains("the base image busybox:latest the image was built from (sha256:"),
        "{}",
        stderr(&out)
    );
}

/// A provenance that is about another image than the one it is attached to is refused by
/// `verify-build`, which names both.
#[test]
fn verify_build_refuses_a_provenance_about_another_image() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "ctx",
        &[("Dockerfile", "FROM busybox\nRUN echo hi > /hi\n")],
    );
    let out = defaults(env.command())
        .args([
            "build",
            "-q",
            "-t",
            "app",
            "--build-arg",
            "SOURCE_DATE_EPOCH=1700000000",
        ])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_success(&out);
    let archive = env.path("app.tar");
    assert_success(&env.rbuild(&["save", "app", "-o", archive.to_str().unwrap()]));
    let layout = env.path("layout");
    std::fs::create_dir(&layout).unwrap();
    let untar = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&layout)
        .status()
        .unwrap();
    assert!(untar.success());

    // The statement now names another manifest; every digest above it follows.
    let other = format!("{:064}", 7);
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let read = |digest: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(blob(digest)).unwrap()).unwrap()
    };
    let write = |value: &serde_json::Value| -> (String, usize) {
        let bytes = serde_json::to_vec(value).unwrap();
        let digest = crate::support::digest(&bytes);
        std::fs::write(blob(&digest), &bytes).unwrap();
        (digest, bytes.len())
    };
    let mut top: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut index = read(top["manifests"][0]["digest"].as_str().unwrap());
    let mut attestation = read(index["manifests"][1]["digest"].as_str().unwrap());
    let mut statement = read(attestation["layers"][0]["digest"].as_str().unwrap());
    let genuine = statement["subject"][0]["digest"]["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    statement["subject"][0]["digest"]["sha256"] = other.clone().into();
    let (digest, size) = write(&statement);
    attestation["layers"][0]["digest"] = digest.clone().into();
    attestation["layers"][0]["size"] = size.into();
    let mut config = read(attestation["config"]["digest"].as_str().unwrap());
    config["rootfs"]["diff_ids"][0] = digest.into();
    let (digest, size) = write(&config);
    attestation["config"]["digest"] = digest.into();
    attestation["config"]["size"] = size.into();
    let (digest, size) = write(&attestation);
    index["manifests"][1]["digest"] = digest.into();
    index["manifests"][1]["size"] = size.into();
    let (digest, size) = write(&index);
    top["manifests"][0]["digest"] = digest.into();
    top["manifests"][0]["size"] = size.into();
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    let forged = env.path("forged.tar");
    let tar = std::process::Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&forged)
        .arg(".")
        .status()
        .unwrap();
    assert!(tar.success());
    assert_success(&env.rbuild(&["load", "-i", forged.to_str().unwrap(), "-t", "claimed"]));

    let out = env.rbuild(&["verify-build", "claimed", ctx.to_str().unwrap()]);
    assert_failure(&out);
    assert!(
        flat(&stderr(&out)).contains(&format!(
            "the provenance attached to `claimed` is about sha256:{other}, and the image is sha256:{genuine}: they do not belong together"
        )),
        "{}",
        stderr(&out)
    );
}

/// A fresh store repeats the build: its base imported from the same tarball with
/// `SOURCE_DATE_EPOCH` is the same image, and the context is the only other input.
#[test]
fn a_fresh_store_with_the_same_imported_base_reproduces_the_image() {
    require_privileges!();
    let rootfs = TestEnv::new();
    let tar = rootfs.path("busybox-rootfs.tar");
    std::fs::write(&tar, crate::support::busybox_layer()).unwrap();
    let import = |env: &TestEnv| {
        let out = env
            .command()
            .env("SOURCE_DATE_EPOCH", "1600000000")
            .args(["import", tar.to_str().unwrap(), "base:1"])
            .output()
            .unwrap();
        assert_success(&out);
        stdout(&out)
    };
    let builder = TestEnv::new();
    let verifier = TestEnv::new();
    assert_eq!(
        import(&builder),
        import(&verifier),
        "the same tarball, the same image"
    );

    let ctx = builder.context(
        "ctx",
        &[("Dockerfile", "FROM base:1\nRUN echo built > /built\n")],
    );
    let out = defaults(builder.command())
        .args([
            "build",
            "-q",
            "-t",
            "app",
            "--build-arg",
            "SOURCE_DATE_EPOCH=1700000000",
        ])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_success(&out);
    // Moved to the other store with its provenance, and built again there.
    let archive = builder.path("app.tar");
    assert_success(&builder.rbuild(&["save", "app", "-o", archive.to_str().unwrap()]));
    assert_success(&verifier.rbuild(&["load", "-i", archive.to_str().unwrap()]));
    let out = verifier.rbuild(&["verify-build", "app", ctx.to_str().unwrap()]);
    assert_success(&out);
    assert!(
        stdout(&out).starts_with("reproduced: app (linux/amd64) is sha256:"),
        "{}",
        stdout(&out)
    );

    // verify-build's own build arguments are checked against the provenance.
    let out = verifier.rbuild(&[
        "verify-build",
        "app",
        ctx.to_str().unwrap(),
        "--build-arg",
        "OTHER=1",
    ]);
    assert_failure(&out);
    assert!(
        flat(&stderr(&out)).contains("the image's build was not given the build argument `OTHER`")
    );
    let out = verifier.rbuild(&[
        "verify-build",
        "app",
        ctx.to_str().unwrap(),
        "--build-arg",
        "SOURCE_DATE_EPOCH=5",
    ]);
    assert_failure(&out);
    assert!(
        flat(&stderr(&out))
            .contains("SOURCE_DATE_EPOCH is the one the provenance records (1700000000)")
    );
    // The recorded value itself changes nothing.
    let out = verifier.rbuild(&[
        "verify-build",
        "app",
        ctx.to_str().unwrap(),
        "--build-arg",
        "SOURCE_DATE_EPOCH=1700000000",
    ]);
    assert_success(&out);
}
