//! COPY and ADD by Docker's rules: the files, modes, owners and links in the image.

use std::io::Write;

use crate::support::*;

/// Runs `script` in `image` and returns its stdout.
fn sh(env: &TestEnv, image: &str, script: &str) -> String {
    let out = env.rbuild(&["run", "--entrypoint", "/bin/sh", image, "-c", script]);
    assert_success(&out);
    stdout(&out)
}

#[test]
fn copy_follows_dockers_path_and_owner_rules() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "rules",
        &[
            (
                "Dockerfile",
                "FROM busybox AS stage\n\
                 RUN mkdir /made && echo from-stage > /made/f && chown 1000:1000 /made/f\n\
                 FROM busybox\n\
                 RUN mkdir -p /existing && chown 50:50 /existing && chmod 700 /existing\n\
                 COPY dir /dircontents/\n\
                 COPY file.txt /asfile\n\
                 COPY file.txt /intodir/\n\
                 WORKDIR /work\n\
                 COPY file.txt rel/\n\
                 COPY --chown=app:staff file.txt /owned/\n\
                 COPY --chown=1234 file.txt /numeric\n\
                 COPY --chmod=600 file.txt /private\n\
                 COPY file.txt /existing/\n\
                 COPY --from=stage /made/f /fromstage\n\
                 COPY f*.txt /globbed/\n\
                 COPY link-to-file /deref\n\
                 COPY dir/ /withlinks/\n",
            ),
            ("file.txt", "content\n"),
            ("fb.txt", "b\n"),
            ("dir/a", "a\n"),
            ("dir/sub/b", "b\n"),
        ],
    );
    std::os::unix::fs::symlink("file.txt", ctx.join("link-to-file")).unwrap();
    std::os::unix::fs::symlink("a", ctx.join("dir/link")).unwrap();
    assert_success(&env.build(&ctx, "rules:1"));
    let out = sh(
        &env,
        "rules:1",
        "ls /dircontents | tr '\\n' ' '; echo; \
         test -f /asfile && echo asfile-is-file; \
         cat /intodir/file.txt /work/rel/file.txt; \
         stat -c '%u:%g %a' /owned/file.txt /numeric /private /existing /existing/file.txt /fromstage /dircontents/a; \
         ls /globbed | tr '\\n' ' '; echo; \
         test -f /deref && ! test -L /deref && cat /deref; \
         readlink /withlinks/link",
    );
    assert_eq!(
        out,
        "a link sub \n\
         asfile-is-file\n\
         content\ncontent\n\
         1000:50 644\n\
         1234:1234 644\n\
         0:0 600\n\
         50:50 700\n\
         0:0 644\n\
         1000:1000 644\n\
         0:0 644\n\
         fb.txt file.txt \n\
         content\n\
         a\n",
        "directory contents, destination slash, WORKDIR, --chown by name and id, --chmod, \
         existing directories keep owner and mode, --from keeps owners, wildcards, symlink \
         sources dereferenced, links inside directories kept"
    );
}

#[test]
fn copy_errors_are_clear() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let cases = [
        (
            "COPY a.txt b.txt /notadir\n",
            "must be a directory and end with a /",
        ),
        ("COPY nothing* /dst/\n", "not found"),
        ("COPY ../outside /x\n", "not found"),
        ("COPY --chown=ghost a.txt /x\n", "unable to find user ghost"),
        (
            "COPY a.tx /x\n",
            "`a.tx` not found in the build context (did you mean `a.txt`?)",
        ),
        ("COPY sub/readme.md /x\n", "(did you mean `sub/README.md`?)"),
        // No suggestion is far from the name, or a file `.dockerignore` leaves out.
        (
            "COPY zzzz.txt /x\n",
            "`zzzz.txt` not found in the build context",
        ),
        (
            "COPY secret.tx /x\n",
            "`secret.tx` not found in the build context",
        ),
    ];
    for (line, expected) in cases {
        let dockerfile = format!("FROM busybox\n{line}");
        let ctx = env.context(
            "errs",
            &[
                ("Dockerfile", &dockerfile),
                ("a.txt", "a"),
                ("b.txt", "b"),
                ("sub/README.md", "r"),
                ("secret.txt", "s"),
                (".dockerignore", "secret.txt\n"),
            ],
        );
        let out = env.build(&ctx, "errs:1");
        assert_failure(&out);
        let text = flat(&stderr(&out));
        assert!(
            text.contains(expected) || stderr(&out).contains(expected),
            "{line}: {}",
            stderr(&out)
        );
        if line.contains("zzzz") || line.contains("secret") {
            assert!(!text.contains("did you mean"), "{line}: {text}");
        }
        assert!(
            stderr(&out).contains("Dockerfile:2:1"),
            "{line}: {}",
            stderr(&out)
        );
    }
    // A wildcard that matches a symlink to an absolute path: followed inside the context,
    // where there is no such file; the link is named, not reported missing.
    let ctx = env.context(
        "links",
        &[
            ("Dockerfile", "FROM busybox\nCOPY src/* /d/\n"),
            ("src/a", "a"),
        ],
    );
    std::os::unix::fs::symlink("/etc/passwd", ctx.join("src/abs-link")).unwrap();
    let out = env.build(&ctx, "links:1");
    assert_failure(&out);
    let text = flat(&stderr(&out));
    assert!(
        text.contains(
            "`src/abs-link` is a symlink to `/etc/passwd`, which is not in the build context"
        ),
        "{text}"
    );
}

#[test]
fn add_extracts_local_archives_and_copy_does_not() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context("archives", &[("Dockerfile", "FROM busybox\nADD app.tar.gz /opt/app/\nADD --chown=1000:1000 plain.tar /owned\nCOPY app.tar.gz /kept/\nADD notes.txt.gz /notes/\n")]);
    let tar = raw_tar(&[
        ("bin/", tar::EntryType::Directory, "", b""),
        (
            "bin/tool",
            tar::EntryType::Regular,
            "",
            b"#!/bin/sh\necho tool\n",
        ),
        ("README", tar::EntryType::Regular, "", b"readme\n"),
    ]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    std::fs::write(ctx.join("app.tar.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(ctx.join("plain.tar"), &tar).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"just notes\n").unwrap();
    std::fs::write(ctx.join("notes.txt.gz"), gz.finish().unwrap()).unwrap();
    assert_success(&env.build(&ctx, "arch:1"));
    let out = sh(
        &env,
        "arch:1",
        "cat /opt/app/README; stat -c '%u:%g' /owned/README /owned/bin/tool; ls /kept; ls /notes",
    );
    assert_eq!(
        out,
        "readme\n1000:1000\n1000:1000\napp.tar.gz\nnotes.txt.gz\n"
    );

    // A hostile archive stays inside its destination.
    let outside = env.path("outside");
    std::fs::create_dir(&outside).unwrap();
    let evil = raw_tar(&[
        (
            "link",
            tar::EntryType::Symlink,
            outside.to_str().unwrap(),
            b"",
        ),
        ("link/pwned", tar::EntryType::Regular, "", b"x"),
    ]);
    let ctx = env.context(
        "evil",
        &[("Dockerfile", "FROM busybox\nADD evil.tar /x/\n")],
    );
    std::fs::write(ctx.join("evil.tar"), evil).unwrap();
    let out = env.build(&ctx, "evil:1");
    assert_failure(&out);
    assert!(stderr(&out).contains("evil.tar"), "{}", stderr(&out));
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
}

#[test]
fn copy_parents_exclude_and_symbolic_chmod() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "flags",
        &[
            (
                "Dockerfile",
                "FROM busybox\n\
                 COPY --parents src/a/one.go src/b/two.go /keep/\n\
                 COPY --parents ./src/./a/one.go /pivot/\n\
                 COPY --parents **/*.go /globbed/\n\
                 COPY --exclude=*.md --exclude=src/b src /excluded/\n\
                 COPY --chmod=u=rwX,go=rX src/a /modes/\n\
                 COPY --chmod=a+x src/a/one.go /exec\n",
            ),
            ("src/a/one.go", "package a\n"),
            ("src/b/two.go", "package b\n"),
            ("src/README.md", "docs\n"),
            ("src/c/tool.sh", "#!/bin/sh\n"),
        ],
    );
    assert_success(&env.build(&ctx, "flags:1"));
    let out = sh(
        &env,
        "flags:1",
        "cd / && find keep pivot globbed excluded -type f | sort; stat -c '%n %a' /modes/one.go /modes /exec",
    );
    assert_eq!(
        out,
        "excluded/a/one.go\nexcluded/c/tool.sh\n\
         globbed/src/a/one.go\nglobbed/src/b/two.go\n\
         keep/src/a/one.go\nkeep/src/b/two.go\n\
         pivot/a/one.go\n\
         /modes/one.go 644\n/modes 755\n/exec 755\n"
    );
}

#[test]
fn copy_link_makes_a_layer_that_moves_to_a_new_base() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let base2 = env.context(
        "base2",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo extra > /extra && ln -s /tmp /target\n",
        )],
    );
    assert_success(&env.build(&base2, "base2:1"));
    let ctx = env.context(
        "linked",
        &[
            (
                "Dockerfile",
                "ARG BASE=busybox\nFROM ${BASE}\nCOPY --link app /app/\nCOPY --link app /target/\nRUN cat /app/x && ls /\n",
            ),
            ("app/x", "linked\n"),
        ],
    );
    let build = |extra: &[&str], tag: &str| {
        let mut args = vec!["build", "--progress", "plain", "-t", tag];
        args.extend_from_slice(extra);
        args.push(ctx.to_str().unwrap());
        let out = env.rbuild(&args);
        assert_success(&out);
        stderr(&out)
    };
    build(&[], "linked:1");
    let log = build(&["--build-arg", "BASE=base2:1"], "linked:2");
    let cached = log.lines().filter(|l| l.ends_with(" CACHED")).count();
    assert_eq!(
        cached, 2,
        "both --link copies are reused on the new base: {log}"
    );
    assert!(
        log.contains("linked"),
        "the RUN after them ran again: {log}"
    );
    let out = sh(
        &env,
        "linked:2",
        "cat /app/x /extra; test -d /target && ! test -L /target && echo target-is-a-directory",
    );
    assert_eq!(
        out, "linked\nextra\ntarget-is-a-directory\n",
        "--link does not follow the base's /target symlink: it makes a real directory over it"
    );
    assert_eq!(
        sh(
            &env,
            "linked:1",
            "cat /app/x; test -e /extra || echo no-extra"
        ),
        "linked\nno-extra\n"
    );
    assert_success(&env.rbuild(&["store", "verify"]));
    // The moved layer is described as it was built: its blob reads as its manifest says,
    // so the image can be saved (and pushed).
    let archive = env.path("linked.tar");
    assert_success(&env.rbuild(&["save", "linked:2", "-o", archive.to_str().unwrap()]));
}

#[test]
fn heredocs_in_run_and_copy() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let dockerfile = "FROM busybox\n\
        ARG NAME=world\n\
        COPY <<EOF /greeting.txt\n\
        hello $NAME\n\
        EOF\n\
        COPY <<'EOF' /literal.txt\n\
        hello $NAME\n\
        EOF\n\
        RUN <<EOF\n\
        echo first > /run1.txt\n\
        echo second >> /run1.txt\n\
        EOF\n\
        RUN <<EOF\n\
        #!/bin/sh -e\n\
        echo \"shebang $0\" > /run2.txt\n\
        EOF\n\
        RUN cat <<EOF > /run3.txt\n\
        fed to cat\n\
        EOF\n";
    let ctx = env.context("heredocs", &[("Dockerfile", dockerfile)]);
    assert_success(&env.build(&ctx, "here:1"));
    let out = sh(
        &env,
        "here:1",
        "cat /greeting.txt /literal.txt /run1.txt /run3.txt; grep -c shebang /run2.txt",
    );
    assert_eq!(
        out,
        "hello world\nhello $NAME\nfirst\nsecond\nfed to cat\n1\n"
    );
}

/// A COPY with heredocs and other sources (BuildKit's form): the heredocs are files named
/// after their delimiter, written into the destination directory with the other sources,
/// under the same `--chmod`/`--chown`, in one layer; with `--from` the paths come from
/// the stage. A single destination that is not a directory is refused, as for any COPY
/// with several sources.
#[test]
fn copy_mixes_heredocs_with_context_and_stage_sources() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "mixed",
        &[
            (
                "Dockerfile",
                "FROM busybox AS stage\n\
                 RUN echo from-stage > /s.txt\n\
                 FROM busybox\n\
                 ARG WHO=heredoc\n\
                 COPY --chmod=640 <<greeting.txt a.txt /dst/\n\
                 hello from the $WHO\n\
                 greeting.txt\n\
                 COPY --from=stage <<'note' /s.txt /dst2/\n\
                 kept as $WHO\n\
                 note\n",
            ),
            ("a.txt", "from the context\n"),
        ],
    );
    let out = env.build(&ctx, "mixed:1");
    assert_success(&out);
    assert_eq!(
        sh(
            &env,
            "mixed:1",
            "cat /dst/greeting.txt /dst/a.txt /dst2/note /dst2/s.txt; \
             stat -c %a /dst/greeting.txt /dst/a.txt"
        ),
        "hello from the heredoc\nfrom the context\nkept as $WHO\nfrom-stage\n640\n640\n"
    );
    // One layer per instruction: busybox's, the stage's none, and the two COPYs.
    let history = stdout(&env.rbuild(&["history", "--format", "json", "mixed:1"]));
    assert_eq!(history.matches("COPY").count(), 2, "{history}");

    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY <<EOF a.txt /dst\nx\nEOF\n",
    )
    .unwrap();
    let out = env.build(&ctx, "mixed:2");
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(
        err.contains("the destination must be a directory and end with a /"),
        "{err}"
    );
    assert!(err.contains("Dockerfile:2"), "{err}");
}
