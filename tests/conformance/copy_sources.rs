//! COPY's sources: wildcards, symlinks, special files and odd names (BuildKit's
//! dockerfile_copy_test.go, second part).

use std::os::unix::fs::symlink;

use crate::harness::*;

// testCopyWildcards
#[test]
fn wildcards_and_directory_sources_copy_contents() {
    let case = Case::scratch();
    let tree = case.tree_of(
        "FROM scratch\n\
         COPY *.go /gofiles/\n\
         COPY f*.go foo2.go\n\
         COPY sub/* /subdest/\n\
         COPY sub/*/dir2/foo /subdest2/\n\
         COPY sub/*/dir2/foo /subdest3/bar\n\
         COPY . all/\n\
         COPY sub/dir1/ subdest4\n\
         COPY sub/dir1/. subdest5\n\
         COPY sub/dir1 subdest6\n",
        &[
            ("foo.go", "foo-contents"),
            ("bar.go", "bar-contents"),
            ("sub/dir1/dir2/foo", "foo-contents"),
        ],
        &[],
    );
    assert_eq!(tree.text("gofiles/foo.go"), "foo-contents");
    assert_eq!(tree.text("gofiles/bar.go"), "bar-contents");
    assert_eq!(
        tree.text("foo2.go"),
        "foo-contents",
        "one match: the destination is a file"
    );
    for path in [
        "subdest/dir2/foo",
        "subdest2/foo",
        "subdest3/bar",
        "all/foo.go",
        "subdest4/dir2/foo",
        "subdest5/dir2/foo",
        "subdest6/dir2/foo",
    ] {
        assert_eq!(tree.text(path), "foo-contents", "{path}");
    }
}

// testEmptyWildcard
#[test]
fn a_wildcard_matching_nothing_is_fine_beside_a_source_that_exists() {
    let case = Case::scratch();
    let tree = case.tree_of(
        "FROM scratch\nCOPY foo nomatch* /\n",
        &[("foo", "contents0")],
        &[],
    );
    assert_eq!(tree.text("foo"), "contents0");
}

// testCopyWildcardCache
#[test]
fn a_changed_file_outside_a_wildcard_keeps_the_wildcard_copy_cached() {
    require_privileges!();
    let case = Case::busybox();
    let ctx = case.context(
        "FROM busybox AS base\n\
         COPY foo* files/\n\
         RUN cat /dev/urandom | head -c 100 | sha256sum > unique\n\
         COPY bar files/\n\
         FROM scratch\n\
         COPY --from=base unique /\n",
        &[
            ("foo1", "foo1-data"),
            ("foo2", "foo2-data"),
            ("bar", "bar-data"),
        ],
    );
    let first = case.tree(&ctx, &[]).text("unique");
    std::fs::write(ctx.join("bar"), "bar-data-mod").unwrap();
    let second = case.tree(&ctx, &[]).text("unique");
    assert_eq!(
        first, second,
        "the RUN before `COPY bar` came from the cache"
    );
}

// testCopyThroughSymlinkContext
#[test]
fn a_source_path_through_a_symlinked_directory_in_the_context() {
    let case = Case::scratch();
    let ctx = case.context(
        "FROM scratch\nCOPY link/foo .\n",
        &[("sub/foo", "contents")],
    );
    symlink("sub", ctx.join("link")).unwrap();
    assert_eq!(case.tree(&ctx, &[]).text("foo"), "contents");
}

// testCopyThroughSymlinkMultiStage
#[test]
fn a_source_path_through_symlinks_in_a_stage_resolves_in_that_stage() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox AS build\n\
         RUN mkdir -p /out/sub && ln -s /out/sub /sub && ln -s out/sub /sub2 && echo -n data > /sub/foo\n\
         FROM scratch\n\
         COPY --from=build /sub/foo .\n\
         COPY --from=build /sub2/foo bar\n",
        &[],
        &[],
    );
    assert_eq!(tree.text("foo"), "data");
    assert_eq!(tree.text("bar"), "data");
}

// testCopySocket
#[test]
fn a_socket_in_the_context_does_not_fail_the_copy() {
    let case = Case::scratch();
    let ctx = case.context("FROM scratch\nCOPY . /\n", &[("keep", "k")]);
    let _listener = std::os::unix::net::UnixListener::bind(ctx.join("socket.sock")).unwrap();
    let tree = case.tree(&ctx, &[]);
    assert_eq!(tree.text("keep"), "k");
    assert_eq!(
        tree.node("socket.sock").kind,
        'f',
        "a socket becomes an empty regular file"
    );
}

// testCopyFollowAllSymlinks
#[test]
fn a_symlink_inside_a_copied_directory_stays_a_link_and_a_named_one_is_followed() {
    let case = Case::scratch();
    let ctx = case.context(
        "FROM scratch\nCOPY foo /\nCOPY foo/sub bar\n",
        &[("bar", "bar-contents"), ("foo/.keep", "")],
    );
    symlink("../bar", ctx.join("foo/sub")).unwrap();
    let tree = case.tree(&ctx, &[]);
    assert_eq!(tree.node("sub").kind, 'l');
    assert_eq!(tree.node("sub").link, "../bar");
    assert_eq!(tree.text("bar"), "bar-contents");
}

// testCopySymlinks
#[test]
fn symlink_sources_and_wildcard_matches_are_dereferenced_through_chains() {
    let case = Case::scratch();
    let ctx = case.context(
        "FROM scratch\nCOPY foo /\nCOPY sub/l* alllinks/\n",
        &[
            ("bar", "bar-contents"),
            ("sub/lfile", "lfile-contents"),
            ("sub/subfile", "subfile-contents"),
            ("sub/baz", "baz-contents"),
        ],
    );
    symlink("bar", ctx.join("foo")).unwrap();
    symlink("subfile", ctx.join("sub/l0")).unwrap();
    symlink("second", ctx.join("sub/l1")).unwrap();
    symlink("baz", ctx.join("sub/second")).unwrap();
    let tree = case.tree(&ctx, &[]);
    assert_eq!(tree.text("foo"), "bar-contents");
    assert_eq!(tree.text("alllinks/l0"), "subfile-contents");
    assert_eq!(tree.text("alllinks/lfile"), "lfile-contents");
    assert_eq!(tree.text("alllinks/l1"), "baz-contents");
}

// testCopyUnicodePath
#[test]
fn unicode_and_percent_encoded_names_are_literal() {
    let case = Case::scratch();
    let tree = case.tree_of(
        "FROM scratch\n\
         COPY test-äöü.txt /\n\
         COPY test-%C3%A4%C3%B6%C3%BC.txt /\n\
         COPY test+aou.txt /\n",
        &[
            ("test-äöü.txt", "foo"),
            ("test-%C3%A4%C3%B6%C3%BC.txt", "bar"),
            ("test+aou.txt", "baz"),
        ],
        &[],
    );
    assert_eq!(tree.text("test-äöü.txt"), "foo");
    assert_eq!(tree.text("test-%C3%A4%C3%B6%C3%BC.txt"), "bar");
    assert_eq!(tree.text("test+aou.txt"), "baz");
}
