//! `.dockerignore` and `<Dockerfile>.dockerignore` (BuildKit's
//! dockerfile_dockerignore_test.go).

use crate::harness::*;

// testDockerignore
#[test]
fn dockerignore_excludes_reincludes_and_may_exclude_itself_and_the_dockerfile() {
    let case = Case::scratch();
    let tree = case.tree_of(
        "FROM scratch\nCOPY . .\n",
        &[
            ("foo", "foo-contents"),
            ("bar", "bar-contents"),
            ("baz", "baz-contents"),
            ("bay", "bay-contents"),
            (".dockerignore", "ba*\nDockerfile\n!bay\n.dockerignore\n"),
        ],
        &[],
    );
    assert_eq!(tree.text("foo"), "foo-contents");
    assert_eq!(tree.text("bay"), "bay-contents");
    for gone in ["bar", "baz", "Dockerfile", ".dockerignore"] {
        assert!(!tree.has(gone), "{gone}");
    }
}

// testDockerignoreInvalid
#[test]
fn an_invalid_dockerignore_pattern_fails_the_build() {
    let case = Case::scratch();
    let error = case.failure("FROM scratch\nCOPY . .\n", &[(".dockerignore", "!\n")], &[]);
    assert!(error.contains(".dockerignore"), "{error}");
}

// testDockerignoreOverride
#[test]
fn a_dockerfile_specific_ignore_file_wins() {
    let case = Case::scratch();
    let ctx = case.context(
        "FROM scratch\nCOPY . .\n",
        &[
            ("Dockerfile.dockerignore", "bar\n"),
            ("Dockerfile2", "FROM scratch\nCOPY . .\n"),
            ("Dockerfile2.dockerignore", "foo\n"),
            (".dockerignore", "*\n"),
            ("foo", "contents0"),
            ("bar", "contents0"),
        ],
    );
    let tree = case.tree(&ctx, &[]);
    assert!(tree.has("foo") && !tree.has("bar"));
    let file = ctx.join("Dockerfile2");
    let tree = case.tree(&ctx, &["-f", file.to_str().unwrap()]);
    assert!(!tree.has("foo") && tree.has("bar"));
}
