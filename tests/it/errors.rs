//! Bad input: a clear error naming the Dockerfile line, a non-zero exit, no image tagged,
//! and a store that is still consistent.

use crate::support::*;

/// Builds `dockerfile` as `bad:1`; returns stderr after checking the build failed, left
/// no `bad` image behind, and every blob still matches its digest.
fn failing_build(env: &TestEnv, name: &str, dockerfile: &str, files: &[(&str, &str)]) -> String {
    let mut all = vec![("Dockerfile", dockerfile)];
    all.extend_from_slice(files);
    let ctx = env.context(name, &all);
    let out = env.build(&ctx, "bad:1");
    assert_failure(&out);
    assert_ne!(out.status.code(), Some(0));
    let images = stdout(&env.rbuild(&["images"]));
    assert!(
        !images.lines().any(|l| l.starts_with("bad ")),
        "no image is tagged after a failed build: {images}"
    );
    verify_blobs(&env.root());
    stderr(&out)
}

#[test]
fn unknown_instruction_names_the_line_and_suggests_a_keyword() {
    let env = TestEnv::new();
    let err = failing_build(&env, "unknown", "FROM busybox\nRUNN echo hi\n", &[]);
    assert!(err.contains("Dockerfile:2:1"), "{err}");
    assert!(err.to_lowercase().contains("unknown instruction"), "{err}");
    assert!(err.contains("RUN"), "suggests the nearest keyword: {err}");
}

#[test]
fn a_dockerfile_without_from_is_refused() {
    let env = TestEnv::new();
    let err = failing_build(&env, "nofrom", "RUN echo hi\n", &[]);
    assert!(err.contains("FROM"), "{err}");
    assert!(err.contains("Dockerfile:1:1"), "{err}");
}

#[test]
fn missing_copy_source_names_the_file_and_line() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let err = failing_build(
        &env,
        "missing",
        "FROM busybox\nCOPY present.txt /\nCOPY absent.txt /\n",
        &[("present.txt", "x")],
    );
    assert!(err.contains("absent.txt"), "{err}");
    assert!(err.contains("Dockerfile:3:1"), "{err}");
}

#[test]
fn failing_run_names_its_line_exit_code_and_output() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let err = failing_build(
        &env,
        "failing",
        "FROM busybox\nRUN echo fine\nRUN echo about to fail && echo on stderr >&2 && exit 3\nRUN echo never\n",
        &[],
    );
    assert!(err.contains("Dockerfile:3:1"), "{err}");
    assert!(err.contains("exit code 3"), "{err}");
    assert!(
        err.contains("about to fail") && err.contains("on stderr"),
        "output tail: {err}"
    );
    assert!(!err.contains("[4/4]"), "later steps do not run: {err}");
}

#[test]
fn missing_base_image_is_a_clear_error() {
    let env = TestEnv::new();
    let err = failing_build(&env, "nobase", "FROM doesnotexist:1.0\nRUN true\n", &[]);
    assert!(
        err.contains("`doesnotexist:1.0` is not in the store"),
        "{err}"
    );
}
