//! What the build context and local archives put in a layer, as `docker build` does:
//! wildcard sources with `--parents`, `.dockerignore`'s `**`, names a layer cannot hold,
//! sockets, and tars written by other tools.

use crate::support::*;

/// Runs `script` in `image` and returns its stdout.
fn sh(env: &TestEnv, image: &str, script: &str) -> String {
    let out = env.rbuild(&["run", "--entrypoint", "/bin/sh", image, "-c", script]);
    assert_success(&out);
    stdout(&out)
}

#[test]
fn copy_parents_keeps_the_directories_wildcards_matched() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "parents-wild",
        &[
            (
                "Dockerfile",
                "FROM busybox\n\
                 COPY --parents */b/f.txt /one/\n\
                 COPY --parents a/*/c /two/\n\
                 COPY --parents **/f.txt x/*.md /three/\n\
                 COPY --parents ./src/./*/main.go /pivot/\n\
                 COPY */b/f.txt /flat/\n",
            ),
            ("a/b/f.txt", "ab\n"),
            ("a/x/c/inner", "axc\n"),
            ("a/y/c", "ayc\n"),
            ("z/b/other", "not f.txt\n"),
            ("x/readme.md", "md\n"),
            ("src/app/main.go", "package app\n"),
            ("src/lib/main.go", "package lib\n"),
        ],
    );
    // `*/b/f.txt` also meets the file `Dockerfile`: `Dockerfile/b/f.txt` is no match.
    assert_success(&env.build(&ctx, "parents-wild:1"));
    let out = sh(
        &env,
        "parents-wild:1",
        "cd / && find one two three pivot flat -type f | sort",
    );
    assert_eq!(
        out,
        "flat/f.txt\n\
         one/a/b/f.txt\n\
         pivot/app/main.go\npivot/lib/main.go\n\
         three/a/b/f.txt\nthree/x/readme.md\n\
         two/a/x/c/inner\ntwo/a/y/c\n",
        "each match keeps its own path below the destination, the pivot's too"
    );
}

#[test]
fn dockerignore_double_star_keeps_the_directory_and_a_lone_bang_is_an_error() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "ignore-star",
        &[
            ("Dockerfile", "FROM busybox\nCOPY . /ctx/\n"),
            (".dockerignore", "cache/**\n**.log\n"),
            ("cache/a", "a\n"),
            ("cache/sub/b", "b\n"),
            ("keep.txt", "k\n"),
            ("deep/er/x.log", "log\n"),
        ],
    );
    assert_success(&env.build(&ctx, "ignore-star:1"));
    let out = sh(
        &env,
        "ignore-star:1",
        "cd /ctx && find . | sort | tr '\\n' ' '",
    );
    assert_eq!(
        out, ". ./.dockerignore ./Dockerfile ./cache ./deep ./deep/er ./keep.txt ",
        "`cache/**` leaves `cache` itself, empty; `**.log` matches at any depth"
    );

    std::fs::write(ctx.join(".dockerignore"), "cache/**\n!\n").unwrap();
    let out = env.build(&ctx, "ignore-star:2");
    assert_failure(&out);
    let text = flat(&stderr(&out));
    let path = ctx.join(".dockerignore");
    assert!(
        text.contains(&format!("invalid ignore file {}", path.display()))
            && text.contains("line 2: `!` alone is no pattern"),
        "{}",
        stderr(&out)
    );

    // The same mistake in `--exclude` names the flag and the Dockerfile line.
    std::fs::write(ctx.join(".dockerignore"), "").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY --exclude=! . /ctx/\n",
    )
    .unwrap();
    let out = env.build(&ctx, "ignore-star:3");
    assert_failure(&out);
    let text = flat(&stderr(&out));
    assert!(
        text.contains("`--exclude`: `!` alone is no pattern") && text.contains("Dockerfile:2:1"),
        "{}",
        stderr(&out)
    );
}
