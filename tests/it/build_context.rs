//! `--build-context NAME=DIR|docker-image://REF|oci-layout://DIR`: extra contexts for `FROM NAME`,
//! `COPY --from=NAME` and `RUN --mount=from=NAME`, replacing a stage or an image of that
//! name, as `docker buildx build` does.

use std::fs;
use std::path::Path;
use std::process::Output;

use crate::support::*;

fn build(env: &TestEnv, context: &Path, tag: &str, extra: &[&str]) -> Output {
    let mut args = vec!["build", "--progress", "json", "-t", tag];
    args.extend_from_slice(extra);
    args.push(context.to_str().unwrap());
    env.rbuild(&args)
}

fn cat(env: &TestEnv, image: &str, path: &str) -> String {
    let out = env.rbuild(&["run", image, "cat", path]);
    assert_success(&out);
    stdout(&out)
}

/// A directory replaces the stage of its name (which is not built: it would fail), for
/// COPY and a bind mount alike; what the step reads from it is in its cache key.
#[test]
fn a_directory_replaces_a_stage_and_keys_what_is_read() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let context = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox AS deps\nRUN exit 1\n\
             FROM busybox\nCOPY --from=deps lib.txt /lib.txt\n\
             RUN --mount=from=deps,target=/d cat /d/lib.txt /d/other.txt > /mounted\n",
        )],
    );
    let deps = env.context("deps", &[("lib.txt", "v1\n"), ("other.txt", "o\n")]);
    let flag = format!("deps={}", deps.display());
    let out = build(&env, &context, "named:1", &["--build-context", &flag]);
    assert_success(&out);
    assert_eq!(cat(&env, "named:1", "/lib.txt"), "v1\n");
    assert_eq!(cat(&env, "named:1", "/mounted"), "v1\no\n");

    // Unchanged: fully cached. A file the mount reads changed: that step runs again.
    let (cached, run) = steps_of(&build(
        &env,
        &context,
        "named:1",
        &["--build-context", &flag],
    ));
    assert_eq!((cached.len(), run.len()), (2, 0), "{cached:?} {run:?}");
    fs::write(deps.join("other.txt"), "o2\n").unwrap();
    let (cached, run) = steps_of(&build(
        &env,
        &context,
        "named:1",
        &["--build-context", &flag],
    ));
    assert_eq!(cached, ["COPY --from=deps lib.txt /lib.txt"]);
    assert_eq!(run.len(), 1, "{run:?}");
    assert_eq!(cat(&env, "named:1", "/mounted"), "v1\no2\n");

    // Without the flag, the stage is built (and fails as written).
    assert_failure(&build(&env, &context, "named:2", &[]));
}

/// `FROM NAME` of a directory starts from its files.
#[test]
fn a_directory_as_a_base_is_its_files() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let context = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM files\nCOPY --from=busybox /bin/busybox /bin/busybox\n",
        )],
    );
    let files = env.context("files", &[("etc/app.conf", "port=1\n")]);
    let flag = format!("files={}", files.display());
    let out = build(&env, &context, "based:1", &["--build-context", &flag]);
    assert_success(&out);
    let run = env.rbuild(&["run", "based:1", "/bin/busybox", "cat", "/etc/app.conf"]);
    assert_success(&run);
    assert_eq!(stdout(&run), "port=1\n");
}

/// `docker-image://REF` replaces the image of that name (written with or without a tag)
/// in FROM and `COPY --from`: a base can be pinned without editing the Dockerfile.
#[test]
fn an_image_replaces_the_image_of_its_name() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let context = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM alpine:latest\nCOPY --from=alpine /bin/busybox /copied\nRUN test -x /copied\n",
        )],
    );
    // No `alpine` anywhere: without the flag the base cannot be found.
    assert_failure(&build(&env, &context, "pinned:1", &[]));
    let out = build(
        &env,
        &context,
        "pinned:1",
        &["--build-context", "alpine=docker-image://busybox"],
    );
    assert_success(&out);
}

#[test]
fn bad_build_contexts_are_named() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let context = env.context(
        "ctx",
        &[("Dockerfile", "FROM busybox\nCOPY --from=deps a /a\n")],
    );
    let missing = env.path("missing");
    let flag = format!("deps={}", missing.display());
    let out = build(&env, &context, "bad:1", &["--build-context", &flag]);
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(
        err.contains(&format!(
            "the build context `deps` ({}) is not a readable directory",
            missing.display()
        )),
        "{err}"
    );
    let out = build(&env, &context, "bad:1", &["--build-context", "deps"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(flat(&stderr(&out)).contains("--build-context `deps`: expected NAME=VALUE"));
    let out = build(
        &env,
        &context,
        "bad:1",
        &["--build-context", "deps=https://example.com/ctx.tar"],
    );
    assert!(
        flat(&stderr(&out)).contains("a URL as a build context is not supported"),
        "{}",
        stderr(&out)
    );
}

/// `oci-layout://DIR[:TAG|@DIGEST]`: an image of an OCI layout directory (one written by
/// skopeo, one by `rbuild save`) replaces the image of that name for `FROM` and
/// `COPY --from`, in a store that never had it; it is loaded unnamed (`rbuild images`
/// does not list it); a tag the layout lacks is an error listing what it has.
#[test]
fn an_oci_layout_replaces_the_image_of_its_name() {
    require_privileges!();
    require_tool("skopeo");
    // The image, made in another store and written out as layouts.
    let maker = TestEnv::with_busybox();
    let made = maker.context(
        "made",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo from the layout > /marker\n",
        )],
    );
    assert_success(&build(&maker, &made, "base:1", &[]));
    let archive = maker.path("base.tar");
    assert_success(&maker.rbuild(&["save", "-o", archive.to_str().unwrap(), "base:1"]));
    let saved = maker.path("saved");
    fs::create_dir_all(&saved).unwrap();
    let out = std::process::Command::new("tar")
        .arg("-C")
        .arg(&saved)
        .arg("-xf")
        .arg(&archive)
        .output()
        .unwrap();
    assert_success(&out);
    let copied = maker.path("copied");
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("oci:{}:v1", copied.display()))
        .output()
        .unwrap();
    assert_success(&out);

    let env = TestEnv::with_busybox();
    let context = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM base\nCOPY --from=tools /marker /copied-marker\nRUN cat /marker /copied-marker > /seen\n",
        )],
    );
    let base = format!("base=oci-layout://{}", saved.display());
    let tools = format!("tools=oci-layout://{}:v1", copied.display());
    let out = build(
        &env,
        &context,
        "uses:1",
        &["--build-context", &base, "--build-context", &tools],
    );
    assert_success(&out);
    assert_eq!(
        cat(&env, "uses:1", "/seen"),
        "from the layout\nfrom the layout\n"
    );
    let images = stdout(&env.rbuild(&["images"]));
    assert!(!images.contains("base"), "{images}");
    // An image of a layout `rbuild save` wrote is named in full (`base:1`), and by its
    // name alone.
    for selector in ["base:1", "base"] {
        let by_name = format!("base=oci-layout://{}:{selector}", saved.display());
        let out = build(
            &env,
            &context,
            "uses:named",
            &["--build-context", &by_name, "--build-context", &tools],
        );
        assert_success(&out);
    }

    let wrong = format!("tools=oci-layout://{}:v2", copied.display());
    let out = build(
        &env,
        &context,
        "uses:2",
        &["--build-context", &base, "--build-context", &wrong],
    );
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(
        err.contains("the layout has no image `v2` (it has: v1 (sha256:"),
        "{err}"
    );

    // A directory that is no layout: the context, the path and what is missing.
    let not_a_layout = env.path("ctx");
    let flag = format!("base=oci-layout://{}", not_a_layout.display());
    let out = build(
        &env,
        &context,
        "uses:3",
        &["--build-context", &flag, "--build-context", &tools],
    );
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(
        err.contains(&format!(
            "failed to load the build context `base` (oci-layout://{})",
            not_a_layout.display()
        )) && err.contains("index.json"),
        "{err}"
    );
}
