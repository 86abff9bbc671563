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
    ];
    for (line, expected) in cases {
        let dockerfile = format!("FROM busybox\n{line}");
        let ctx = env.context(
            "errs",
            &[("Dockerfile", &dockerfile), ("a.txt", "a"), ("b.txt", "b")],
        );
        let out = env.build(&ctx, "errs:1");
        assert_failure(&out);
        assert!(stderr(&out).contains(expected), "{line}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("Dockerfile:2:1"),
            "{line}: {}",
            stderr(&out)
        );
    }
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
