//! COPY --parents (with `./` pivots and `**`) and COPY/ADD --exclude (BuildKit's
//! dockerfile_parents_test.go and exclude_patterns_test.go).

use crate::harness::*;

/// The tree of testCopyRelativeParents, under /test of a stage named `base`.
const TREE: &[(&str, &str)] = &[
    ("test/a/b/c/d/foo", ""),
    ("test/a/b/c/d/e/bay", ""),
    ("test/a/b2/c/d/e/bar", ""),
    ("test/a/b/c2/d/e/baz", ""),
    ("test/a/b/c2/d/e2/baz", ""),
];

/// Every file under `dir`, relative to it.
fn files_under(tree: &Tree, dir: &str) -> Vec<String> {
    let prefix = format!("{dir}/");
    tree.nodes
        .iter()
        .filter(|(_, node)| node.kind == 'f')
        .filter_map(|(path, _)| path.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

// testCopyParents
#[test]
fn copy_parents_keeps_the_source_directories() {
    let case = Case::scratch();
    let tree = case.tree_of(
        "FROM scratch\n\
         COPY --parents foo1/foo2/bar /\n\
         WORKDIR /test\n\
         COPY --parents foo1/foo2/ba* .\n",
        &[("foo1/foo2/bar", "testing"), ("foo1/foo2/baz", "testing2")],
        &[],
    );
    assert_eq!(tree.text("foo1/foo2/bar"), "testing");
    assert_eq!(tree.text("test/foo1/foo2/bar"), "testing");
    assert_eq!(tree.text("test/foo1/foo2/baz"), "testing2");
}

// testCopyRelativeParents
#[test]
fn copy_parents_keeps_only_what_follows_a_dot_slash_pivot() {
    let case = Case::scratch();
    let tree = case.tree_of(
        "FROM scratch AS base\n\
         COPY test /test\n\
         FROM scratch\n\
         COPY --from=base --parents /test/a/b/./c/d /middle/\n\
         COPY --from=base --parents ./test/a/b/c/d /start/\n\
         COPY --from=base --parents /test/a/./b/./c /double/\n\
         COPY --from=base --parents /test/a/./*/c /wildcard/\n",
        TREE,
        &[],
    );
    assert_eq!(files_under(&tree, "middle"), ["c/d/e/bay", "c/d/foo"]);
    assert_eq!(
        files_under(&tree, "start"),
        ["test/a/b/c/d/e/bay", "test/a/b/c/d/foo"]
    );
    assert_eq!(files_under(&tree, "double"), ["b/c/d/e/bay", "b/c/d/foo"]);
    assert_eq!(
        files_under(&tree, "wildcard"),
        ["b/c/d/e/bay", "b/c/d/foo", "b2/c/d/e/bar"]
    );
}

// testCopyRelativeParents
#[test]
fn copy_parents_with_double_star_sources() {
    let case = Case::scratch();
    let tree = case.tree_of(
        "FROM scratch AS base\n\
         COPY test /test\n\
         FROM scratch\n\
         COPY --from=base --parents /test/a/b*/./c/**/e /doublewildcard/\n\
         COPY --from=base --parents /test/a/b/c*/./d/**/baz /test/a/b*/./c/**/bar /doubleinputs/\n",
        TREE,
        &[],
    );
    assert_eq!(
        files_under(&tree, "doublewildcard"),
        ["c/d/e/bar", "c/d/e/bay"]
    );
    assert_eq!(
        files_under(&tree, "doubleinputs"),
        ["c/d/e/bar", "d/e/baz", "d/e2/baz"]
    );
}

// testCopyRelativeParents
#[test]
#[ignore = "with --parents, a source ending in `/.` is taken as a pivot: `/test/a/b/c/d/.` copies `e/bay` and `foo` instead of `test/a/b/c/d/...` (builder/src/copy.rs)"]
fn copy_parents_of_a_directory_dot_keeps_its_parents() {
    let case = Case::scratch();
    let tree = case.tree_of(
        "FROM scratch AS base\nCOPY test /test\nFROM scratch\nCOPY --from=base --parents /test/a/b/c/d/. /end/\n",
        TREE,
        &[],
    );
    assert_eq!(
        files_under(&tree, "end"),
        ["test/a/b/c/d/e/bay", "test/a/b/c/d/foo"]
    );
}

// testCopyParentsMissingDirectory
#[test]
fn copy_parents_of_a_missing_path_fails() {
    let case = Case::scratch();
    let base = "FROM scratch AS base\nCOPY test /test\n";
    let tree = case.tree_of(
        &format!(
            "{base}FROM scratch\n\
             COPY --from=base --parents /test/a/b/c/d /normal/\n"
        ),
        TREE,
        &[],
    );
    assert_eq!(
        files_under(&tree, "normal"),
        ["test/a/b/c/d/e/bay", "test/a/b/c/d/foo"]
    );
    let error = case.failure(
        &format!("{base}FROM scratch\nCOPY --from=base --parents /test/nonexistent-file /out/\n"),
        TREE,
        &[],
    );
    assert!(error.contains("nonexistent-file"), "{error}");
}

// testCopyParentsMissingDirectory
#[test]
#[ignore = "a --parents source wildcard that matches nothing fails with `not found` instead of creating the empty destination (builder/src/copy.rs)"]
fn copy_parents_of_a_wildcard_matching_nothing_makes_the_destination() {
    let case = Case::scratch();
    let tree = case.tree_of(
        "FROM scratch AS base\nCOPY test /test\nFROM scratch\nCOPY --from=base --parents /test/a/b9*/c /out/\n",
        TREE,
        &[],
    );
    assert_eq!(tree.node("out").kind, 'd');
    assert!(tree.children("out").is_empty());
}

// testExcludedFilesOnCopy
#[test]
fn copy_and_add_exclude_patterns() {
    let case = Case::scratch();
    let tree = case.tree_of(
        "FROM scratch\n\
         COPY --exclude=*/*.png --exclude=*/*.jpeg . /1\n\
         COPY --exclude=*/*.pdf --exclude=*/*.txt . /2\n\
         ADD --exclude=*.mp3 dir3/ /3/\n\
         COPY --exclude=*.mp3 --exclude=*.jpeg --exclude=*.png --exclude=*.pdf --exclude=*.txt dir* /4/\n\
         COPY --exclude=**/*.txt --exclude=!**/keep.txt . /5\n",
        &[
            ("dir1/a.png", ""),
            ("dir1/b.txt", ""),
            ("dir2/c.jpeg", ""),
            ("dir2/d.pdf", ""),
            ("dir3/e.mp3", ""),
            ("dir3/f.mpeg", ""),
            ("dir3/deep/keep.txt", ""),
        ],
        &[],
    );
    let listing = |dir: &str| {
        files_under(&tree, dir)
            .into_iter()
            .filter(|p| p != "Dockerfile")
            .collect::<Vec<_>>()
    };
    assert_eq!(
        listing("1"),
        [
            "dir1/b.txt",
            "dir2/d.pdf",
            "dir3/deep/keep.txt",
            "dir3/e.mp3",
            "dir3/f.mpeg"
        ]
    );
    assert_eq!(
        listing("2"),
        [
            "dir1/a.png",
            "dir2/c.jpeg",
            "dir3/deep/keep.txt",
            "dir3/e.mp3",
            "dir3/f.mpeg"
        ]
    );
    assert_eq!(listing("3"), ["deep/keep.txt", "f.mpeg"]);
    assert_eq!(listing("4"), ["deep/keep.txt", "f.mpeg"]);
    assert_eq!(
        listing("5"),
        [
            "dir1/a.png",
            "dir2/c.jpeg",
            "dir2/d.pdf",
            "dir3/deep/keep.txt",
            "dir3/e.mp3",
            "dir3/f.mpeg"
        ]
    );
}
