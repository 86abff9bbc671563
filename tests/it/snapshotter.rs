//! The copy snapshotter, rbuild's fallback where overlayfs cannot be mounted: the same
//! Dockerfile gives the same image through copies as through overlayfs, as root and as an
//! ordinary user, and every way a build reads layers works through copies.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use crate::rootless_support::*;
use crate::support::*;

/// Stages read three ways (COPY --from, a bind mount from a stage, a cache mount filled from
/// a stage), deletes (whiteouts), a directory replaced (opaque), hard links, owners, modes.
const DOCKERFILE: &str = "FROM busybox AS tools\n\
    RUN mkdir -p /out/sub && echo tool > /out/tool && echo seed > /out/sub/seed \
        && ln /out/tool /out/tool-link\n\
    FROM busybox\n\
    WORKDIR /work/dir\n\
    COPY --from=tools /out/ /from-stage/\n\
    COPY --chmod=750 a.txt b.txt ./\n\
    RUN --mount=type=bind,from=tools,source=/out,target=/mnt cat /mnt/sub/seed > /bound\n\
    RUN --mount=type=cache,target=/cache,from=tools,source=/out/sub cat /cache/seed > /cached\n\
    RUN rm /bin/vi && rm -rf /from-stage && mkdir /from-stage && echo new > /from-stage/only \
        && chown 1000:1000 /bound && chmod 600 /cached && echo more >> /work/dir/a.txt\n\
    RUN ln /bound /bound-link && mkfifo /fifo\n";

fn context(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("Dockerfile"), DOCKERFILE).unwrap();
    fs::write(dir.join("a.txt"), "a\n").unwrap();
    fs::write(dir.join("b.txt"), "b\n").unwrap();
}

fn build(mut command: Command, ctx: &Path, snapshotter: &str, local: &Path) -> Output {
    command
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("RBUILD_SNAPSHOTTER", snapshotter)
        .args(["build", "--progress", "plain", "-t", "snap:1", "-o"])
        .arg(format!("type=local,dest={}", local.display()))
        .arg(ctx)
        .output()
        .unwrap()
}

#[test]
fn copies_give_the_image_overlayfs_gives_as_root_and_as_a_user() {
    let account = require_user!(USER);
    let root = TestEnv::with_busybox();
    let ctx = root.path("ctx");
    context(&ctx);

    let out = build(
        root.command(),
        &ctx,
        "overlayfs",
        &root.path("local-overlay"),
    );
    let overlay_id = image_id(&out);
    assert!(
        !stderr(&out).contains("layers are copied"),
        "{}",
        stderr(&out)
    );

    let copies = TestEnv::with_busybox();
    let local = copies.path("local-copy");
    let out = build(copies.command(), &ctx, "copy", &local);
    assert_eq!(image_id(&out), overlay_id, "{}", stderr(&out));
    assert!(
        flat(&stderr(&out)).contains("note: layers are copied instead of mounted with overlayfs"),
        "{}",
        stderr(&out)
    );
    // `-o type=local` through copies: the image's files.
    assert_eq!(
        fs::read_to_string(local.join("from-stage/only")).unwrap(),
        "new\n"
    );
    assert_eq!(fs::read_to_string(local.join("cached")).unwrap(), "seed\n");
    assert!(!local.join("bin/vi").exists());
    assert!(!local.join("from-stage/tool").exists());

    // `rbuild run` and `rbuild info` through copies.
    let mut command = copies.command();
    let out = command
        .env("RBUILD_SNAPSHOTTER", "copy")
        .args([
            "run",
            "snap:1",
            "cat",
            "/bound",
            "/from-stage/only",
            "/work/dir/a.txt",
        ])
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(stdout(&out), "seed\nnew\na\nmore\n");
    let out = copies
        .command()
        .env("RBUILD_SNAPSHOTTER", "copy")
        .args(["info"])
        .output()
        .unwrap();
    assert_success(&out);
    assert!(
        stdout(&out).contains(
            "snapshotter  copy (slower: each step copies its filesystem): RBUILD_SNAPSHOTTER=copy"
        ),
        "{}",
        stdout(&out)
    );

    // An ordinary user, through copies: the same image again.
    let user = UserEnv::with_busybox(&account);
    let user_ctx = user.path("ctx");
    context(&user_ctx);
    user.give(&user_ctx);
    let local = user.path("local");
    let out = build(user.command(), &user_ctx, "copy", &local);
    assert_eq!(image_id(&out), overlay_id, "{}", stderr(&out));
    assert_success(&user.rbuild(&["store", "verify"]));
    // What `-o type=local` writes for the user is the user's (root's keeps the image's
    // owners), so that they can remove it.
    use std::os::unix::fs::MetadataExt;
    let owner = |path: &Path| {
        let meta = fs::symlink_metadata(path).unwrap();
        (meta.uid(), meta.gid())
    };
    assert_eq!(
        owner(&copies.path("local-copy").join("bound")),
        (1000, 1000)
    );
    assert_eq!(owner(&local.join("bound")), (account.uid, account.gid));
    assert_eq!(
        owner(&local.join("from-stage/only")),
        (account.uid, account.gid)
    );
}
