//! RUN --mount: bind, tmpfs and cache mounts, their options and errors (BuildKit's
//! dockerfile_mount_test.go).

use crate::harness::*;

// testMountContext
#[test]
fn a_mount_without_type_binds_the_context() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox\nRUN --mount=target=/context cp /context/testfile /seen\n",
        &[("testfile", "contents0")],
        &[],
    );
    assert_eq!(tree.text("seen"), "contents0");
}

// testMountTmpfs
#[test]
fn a_tmpfs_mount_leaves_nothing_in_the_layer() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox\nRUN --mount=target=/mytmp,type=tmpfs touch /mytmp/foo\n",
        &[],
        &[],
    );
    assert!(!tree.has("mytmp/foo"));
}

// testMountInvalid
#[test]
fn misspelled_mount_flags_keys_and_types_are_named_with_suggestions() {
    let case = Case::scratch();
    for (line, named, suggestion) in [
        (
            "RUN --mont=target=/mytmp,type=tmpfs /bin/true",
            "mont",
            "mount",
        ),
        ("RUN --mount=typ=tmpfs /bin/true", "typ", "type"),
        ("RUN --mount=type=tmp /bin/true", "tmp", "tmpfs"),
    ] {
        let error = case.failure(&format!("FROM scratch\n{line}\n"), &[], &[]);
        assert!(error.contains(named), "{line}: {error}");
        // BuildKit says "did you mean"; rbuild's help may instead list what is valid.
        let help = error.split_once("help:").map_or("", |(_, help)| help);
        assert!(
            help.contains(&format!("`{suggestion}`"))
                || help.contains(&format!("`--{suggestion}`")),
            "{line}: {error}"
        );
    }
}

// testMountRWCache
#[test]
fn a_rw_bind_from_a_stage_is_cached_like_any_other() {
    require_privileges!();
    let case = Case::busybox();
    let ctx = case.context(
        "FROM busybox AS build\n\
         COPY cachebust /\n\
         RUN mkdir out && echo foo > out/foo\n\
         FROM busybox AS second\n\
         RUN --mount=from=build,src=out,target=/out,rw touch /out/bar && cat /dev/urandom | head -c 100 | sha256sum > /unique\n\
         FROM scratch\n\
         COPY --from=second /unique /unique\n",
        &[("cachebust", "0")],
    );
    let first = case.tree(&ctx, &[]).text("unique");
    let second = case.tree(&ctx, &[]).text("unique");
    assert_eq!(first, second);
}

// testCacheMountUser
#[test]
fn a_cache_mount_is_made_with_its_uid_gid_and_mode() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox\n\
         RUN --mount=type=cache,target=/mycache,uid=1001,gid=1002,mode=0751 stat -c '%u %g %f' /mycache > /seen\n",
        &[],
        &[],
    );
    assert_eq!(tree.text("seen"), "1001 1002 41e9\n");
}

// testCacheMountDefaultID
#[test]
fn a_cache_mount_without_id_is_keyed_by_its_target() {
    require_privileges!();
    let case = Case::busybox();
    case.tree_of(
        "FROM busybox\n\
         RUN --mount=type=cache,target=/mycache touch /mycache/foo\n\
         RUN --mount=type=cache,target=/mycache2 [ ! -f /mycache2/foo ]\n\
         RUN --mount=type=cache,target=/mycache [ -f /mycache/foo ]\n",
        &[],
        &[],
    );
}

// testMountEnvVar
#[test]
fn a_mount_target_expands_env() {
    require_privileges!();
    let case = Case::busybox();
    case.tree_of(
        "FROM busybox\n\
         ENV SOME_PATH=/mycache\n\
         RUN --mount=type=cache,target=/mycache touch /mycache/foo\n\
         RUN --mount=type=cache,target=$SOME_PATH [ -f $SOME_PATH/foo ]\n",
        &[],
        &[],
    );
}

// testMountArg
#[test]
fn a_mount_type_expands_an_arg() {
    require_privileges!();
    let case = Case::busybox();
    case.tree_of(
        "FROM busybox\n\
         ARG MNT_TYPE=cache\n\
         RUN --mount=type=$MNT_TYPE,target=/mycache2 touch /mycache2/foo\n\
         RUN --mount=type=cache,target=/mycache2 [ -f /mycache2/foo ]\n",
        &[],
        &[],
    );
}

// testMountEnvAcrossStages
#[test]
fn mount_options_expand_env_inherited_from_the_parent_stage() {
    require_privileges!();
    let case = Case::busybox();
    case.tree_of(
        "FROM busybox as stage1\n\
         ENV MNT_ID=mycache\n\
         ENV MNT_TYPE2=cache\n\
         RUN --mount=type=cache,id=mycache,target=/abcabc touch /abcabc/foo\n\
         RUN --mount=type=$MNT_TYPE2,id=$MNT_ID,target=/cbacba [ -f /cbacba/foo ]\n\
         FROM stage1\n\
         RUN --mount=type=$MNT_TYPE2,id=$MNT_ID,target=/whatever [ -f /whatever/foo ]\n",
        &[],
        &[],
    );
}

// testMountMetaArg
#[test]
fn a_mount_target_expands_a_redeclared_global_arg() {
    require_privileges!();
    let case = Case::busybox();
    case.tree_of(
        "ARG META_PATH=/tmp/meta\n\
         FROM busybox\n\
         ARG META_PATH\n\
         RUN --mount=type=cache,id=mycache,target=/tmp/meta touch /tmp/meta/foo\n\
         RUN --mount=type=cache,id=mycache,target=$META_PATH [ -f /tmp/meta/foo ]\n",
        &[],
        &[],
    );
}

// testMountFromError
#[test]
fn a_mount_from_a_variable_is_refused() {
    require_privileges!();
    let case = Case::busybox();
    let error = case.failure(
        "FROM busybox as test\n\
         RUN touch /tmp/test\n\
         FROM busybox\n\
         ENV ttt=test\n\
         RUN --mount=from=$ttt,type=cache,target=/tmp ls\n",
        &[],
        &[],
    );
    assert!(
        error.contains("doesn't support variable expansion")
            || error.contains("does not support variable expansion"),
        "{error}"
    );
}

// testMountTmpfsSize
#[test]
fn a_tmpfs_mount_has_its_size() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox AS base\n\
         RUN --mount=type=tmpfs,target=/dev/shm,size=128m mount | grep /dev/shm > /tmpfssize\n\
         FROM scratch\n\
         COPY --from=base /tmpfssize /\n",
        &[],
        &[],
    );
    assert!(
        tree.text("tmpfssize").contains("size=131072k"),
        "{}",
        tree.text("tmpfssize")
    );
}

// testMountDuplicate
#[test]
fn a_directory_and_a_file_of_the_context_bound_in_one_run() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox AS base\n\
         RUN --mount=source=.,target=/tmp/test \\\n\
           --mount=source=b.txt,target=/tmp/b.txt \\\n\
           cat /tmp/test/a.txt /tmp/b.txt > /combined.txt\n\
         FROM scratch\n\
         COPY --from=base /combined.txt /\n",
        &[("a.txt", "foo\n"), ("b.txt", "bar\n")],
        &[],
    );
    assert_eq!(tree.text("combined.txt"), "foo\nbar\n");
}

// testCacheMountParallel
#[test]
fn nested_cache_mounts_in_parallel_stages() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox AS b1\n\
         RUN --mount=type=cache,target=/foo/bar --mount=type=cache,target=/foo/bar/baz echo 1\n\
         FROM busybox AS b2\n\
         RUN --mount=type=cache,target=/foo/bar --mount=type=cache,target=/foo/bar/baz echo 2\n\
         FROM scratch\n\
         COPY --from=b1 /etc/passwd p1\n\
         COPY --from=b2 /etc/passwd p2\n",
        &[],
        &[],
    );
    assert!(tree.has("p1") && tree.has("p2"));
}

// testCacheMountSourceEscape
#[test]
fn a_cache_mount_source_is_a_subdirectory_that_cannot_follow_a_link_out() {
    require_privileges!();
    let case = Case::busybox();
    let init = "FROM busybox AS init\n\
         RUN --mount=type=cache,id=sourceescape,target=/cache mkdir -p /cache/sel && echo benign > /cache/sel/benign.txt\n";
    let tree = case.tree_of(
        &format!(
            "{init}FROM init AS reader\n\
             RUN --mount=type=cache,id=sourceescape,source=sel,target=/victim cp /victim/benign.txt /seen\n\
             FROM scratch\n\
             COPY --from=reader /seen /seen\n"
        ),
        &[],
        &[],
    );
    assert_eq!(
        tree.text("seen"),
        "benign\n",
        "`source` picks a directory of the cache"
    );
    let error = case.failure(
        &format!(
            "{init}FROM init AS link\n\
             RUN --mount=type=cache,id=sourceescape,target=/cache rm -rf /cache/sel && ln -s /etc /cache/sel\n\
             FROM link AS victim\n\
             RUN --mount=type=cache,id=sourceescape,source=sel,target=/victim cat /victim/hostname\n\
             FROM scratch\n\
             COPY --from=victim /etc/hostname /hostname\n"
        ),
        &[],
        &[],
    );
    assert!(
        error.contains("`sel` of cache mount `sourceescape` is a symbolic link"),
        "names the source and why: {error}"
    );
}

// testCacheMountModeNoCache
#[test]
fn a_cache_mount_keeps_its_content_when_the_step_runs_again() {
    require_privileges!();
    let case = Case::busybox();
    let ctx = case.context(
        "FROM busybox AS base\n\
         ARG FOO=abc\n\
         RUN --mount=type=cache,target=/cache,mode=0773 touch /cache/$FOO && ls -l /cache | wc -l > /out\n\
         FROM scratch\n\
         COPY --from=base /out /\n",
        &[],
    );
    // `ls -l` prints a total line and one per file.
    assert_eq!(case.tree(&ctx, &[]).text("out").trim(), "2");
    assert_eq!(case.tree(&ctx, &["--no-cache"]).text("out").trim(), "2");
    assert_eq!(
        case.tree(&ctx, &["--build-arg", "FOO=def"])
            .text("out")
            .trim(),
        "3"
    );
}
