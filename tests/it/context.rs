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

#[test]
fn names_that_are_whiteouts_in_a_layer_are_refused() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    // From the context, directly or inside a directory.
    let ctx = env.context(
        "whiteout-names",
        &[
            ("Dockerfile", "FROM busybox\nRUN true\nCOPY etc /etc/\n"),
            ("etc/.wh.passwd", "not a whiteout\n"),
        ],
    );
    let out = env.build(&ctx, "wh:1");
    assert_failure(&out);
    let text = flat(&stderr(&out));
    assert!(
        text.contains(
            "`/etc/.wh.passwd` in the build context cannot be copied to `/etc/.wh.passwd`"
        ) && text.contains("the image would lose both it and `passwd`")
            && text.contains("Dockerfile:3:1"),
        "{}",
        stderr(&out)
    );
    // A name the destination gives.
    std::fs::remove_dir_all(ctx.join("etc")).unwrap();
    std::fs::write(ctx.join("f"), "f\n").unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nCOPY f /bin/.wh.sh\n").unwrap();
    let out = env.build(&ctx, "wh:2");
    assert_failure(&out);
    assert!(
        flat(&stderr(&out)).contains("cannot be copied to `/bin/.wh.sh`"),
        "{}",
        stderr(&out)
    );
    // From another stage.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox AS made\nRUN mkdir /out && touch /out/.wh.sh\n\
         FROM busybox\nCOPY --from=made /out/ /bin/\n",
    )
    .unwrap();
    let out = env.build(&ctx, "wh:3");
    assert_failure(&out);
    let text = flat(&stderr(&out));
    assert!(
        text.contains("in stage `made` cannot be copied to `/bin/.wh.sh`")
            && text.contains("Dockerfile:4:1"),
        "{}",
        stderr(&out)
    );
    // Inside a local archive ADD extracts.
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nADD app.tar /bin/\n").unwrap();
    let tar = raw_tar(&[
        ("ok", tar::EntryType::Regular, "", b"ok\n"),
        (".wh.sh", tar::EntryType::Regular, "", b""),
    ]);
    std::fs::write(ctx.join("app.tar"), tar).unwrap();
    let out = env.build(&ctx, "wh:4");
    assert_failure(&out);
    let text = flat(&stderr(&out));
    assert!(
        text.contains("failed to extract `app.tar`")
            && text.contains("`.wh.sh` starts with `.wh.`")
            && text.contains("delete `sh` from the image")
            && text.contains("Dockerfile:2:1"),
        "{}",
        stderr(&out)
    );
}

/// A tar header written byte for byte: `blank` numeric fields filled with `fill`, as some
/// tar writers leave the fields of FIFOs and devices.
fn header_block(name: &str, typeflag: u8, size: u64, blank: &[&str], fill: &[u8]) -> Vec<u8> {
    let fields = [
        ("mode", 100, 8),
        ("uid", 108, 8),
        ("gid", 116, 8),
        ("size", 124, 12),
        ("mtime", 136, 12),
        ("devmajor", 329, 8),
        ("devminor", 337, 8),
    ];
    let mut block = vec![0u8; 512];
    block[..name.len()].copy_from_slice(name.as_bytes());
    for (field, offset, length) in fields {
        let bytes = &mut block[offset..offset + length];
        if blank.contains(&field) {
            for (index, byte) in bytes.iter_mut().enumerate() {
                *byte = fill[index % fill.len()];
            }
        } else {
            let value = match field {
                "mode" => 0o644,
                "size" => size,
                // A 0/0 character device is an overlay whiteout: use /dev/null's numbers.
                "devmajor" => 1,
                "devminor" => 3,
                _ => 0,
            };
            let digits = format!("{value:0width$o}", width = length - 1);
            bytes[..length - 1].copy_from_slice(digits.as_bytes());
        }
    }
    block[156] = typeflag;
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|b| u32::from(*b)).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    block
}

#[test]
fn add_reads_tars_as_gnu_tar_does_and_refuses_truncated_ones() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let all = [
        "mode", "uid", "gid", "size", "mtime", "devmajor", "devminor",
    ];
    let mut file = header_block("hello", b'0', 6, &[], b"");
    file.extend_from_slice(b"hello\n");
    file.resize(1024, 0);
    let mut tar = file.clone();
    // Empty numeric fields: NULs, or spaces ended by a NUL.
    tar.extend(header_block("pipe", b'6', 0, &all, b"\0"));
    tar.extend(header_block("null", b'3', 0, &all[..5], b"   \0"));
    tar.extend([0u8; 1024]);
    let ctx = env.context(
        "tars",
        &[("Dockerfile", "FROM busybox\nADD nodes.tar /nodes/\n")],
    );
    std::fs::write(ctx.join("nodes.tar"), &tar).unwrap();
    assert_success(&env.build(&ctx, "tars:1"));
    assert_eq!(
        sh(
            &env,
            "tars:1",
            "cd /nodes && cat hello && stat -c '%n %F %a %u:%g %Y' pipe null"
        ),
        "hello\npipe fifo 0 0:0 0\nnull character special file 0 0:0 0\n",
        "empty numeric fields are 0, as GNU tar, docker and buildah read them"
    );

    // A field of spaces only, which GNU tar refuses too.
    let mut blanks = file.clone();
    blanks.extend(header_block("pipe", b'6', 0, &["mode"], b" "));
    blanks.extend([0u8; 1024]);
    std::fs::write(ctx.join("nodes.tar"), &blanks).unwrap();
    let out = env.build(&ctx, "tars:2");
    assert_failure(&out);
    assert!(
        flat(&stderr(&out)).contains("the `mode` field of tar entry `pipe` holds"),
        "{}",
        stderr(&out)
    );

    // Cut short: in the second end block, in the first, in a file's content. The
    // archive still starts with a tar header, so ADD extracts it rather than copying it.
    for (cut, what) in [
        (
            file.len() + 512 + 100,
            "100 bytes into the second end-of-archive block",
        ),
        (file.len() + 200, "200 bytes into a header block"),
        (512 + 3, "inside the content of `hello`"),
    ] {
        let mut cut_tar = file.clone();
        cut_tar.extend([0u8; 1024]);
        cut_tar.truncate(cut);
        std::fs::write(ctx.join("nodes.tar"), &cut_tar).unwrap();
        let out = env.build(&ctx, "tars:3");
        assert_failure(&out);
        let text = flat(&stderr(&out));
        assert!(
            text.contains(what) && text.contains("truncated") && text.contains("Dockerfile:2:1"),
            "cut at {cut}: {}",
            stderr(&out)
        );
    }
    // One end block, or none, is a clean end, as with docker.
    for end in [512, 0] {
        let mut short = file.clone();
        short.extend(std::iter::repeat_n(0u8, end));
        std::fs::write(ctx.join("nodes.tar"), &short).unwrap();
        assert_success(&env.build(&ctx, "tars:4"));
    }
}

#[test]
fn sockets_and_fifos_in_the_context_copy_as_buildkit_copies_them() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "sockets",
        &[(
            "Dockerfile",
            "FROM busybox\nCOPY . /all/\nADD app.sock /added.sock\nADD pipe /added-pipe\n",
        )],
    );
    let _listener = std::os::unix::net::UnixListener::bind(ctx.join("app.sock")).unwrap();
    nix::unistd::mkfifo(
        &ctx.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    // ADD only opens regular files to look for an archive: a FIFO would block it forever.
    assert_success(&env.build(&ctx, "sockets:1"));
    assert_eq!(
        sh(
            &env,
            "sockets:1",
            "stat -c '%n %F %s' /all/app.sock /added.sock /all/pipe /added-pipe"
        ),
        "/all/app.sock regular empty file 0\n/added.sock regular empty file 0\n\
         /all/pipe fifo 0\n/added-pipe fifo 0\n",
        "a socket becomes an empty regular file (BuildKit's testCopySocket), a FIFO stays one"
    );
}
