//! COPY's destinations, owners and modes (BuildKit's dockerfile_copy_test.go, first part;
//! sources, wildcards and symlinks are in `copy_sources.rs`).

use crate::harness::*;

// testDockerfileCopyFromArgs
#[test]
fn copy_from_a_variable_is_refused_with_the_workaround() {
    let case = Case::scratch();
    let error = case.failure("FROM scratch\nCOPY --from=$FOO . .\n", &[], &[]);
    assert!(
        error.contains("variable expansion is not supported for `--from`"),
        "{error}"
    );
}

// testEmptyDestDir
#[test]
fn an_empty_destination_is_the_workdir() {
    let case = Case::scratch();
    let tree = case.tree_of(
        "FROM scratch\nWORKDIR /w\nENV empty=\"\"\nCOPY testfile $empty\n",
        &[("testfile", "contents0")],
        &[],
    );
    assert_eq!(tree.text("w/testfile"), "contents0");
}

// testPreserveDestDirSlash
#[test]
fn a_destination_with_a_trailing_slash_is_a_directory() {
    let case = Case::scratch();
    let tree = case.tree_of(
        "FROM scratch\nCOPY testfile /sample/\nCOPY testfile /plain\n",
        &[("testfile", "contents0")],
        &[],
    );
    assert_eq!(tree.text("sample/testfile"), "contents0");
    assert_eq!(tree.text("plain"), "contents0", "without the slash: a file");
}

// testCopyLinkDotDestDir
#[test]
fn copy_link_to_dot_is_the_workdir() {
    let case = Case::scratch();
    let tree = case.tree_of(
        "FROM scratch\nWORKDIR /var/www\nCOPY --link testfile .\n",
        &[("testfile", "contents0")],
        &[],
    );
    assert_eq!(tree.text("var/www/testfile"), "contents0");
}

// testCopyLinkEmptyDestDir
#[test]
fn copy_link_to_an_empty_destination_is_the_workdir() {
    let case = Case::scratch();
    let tree = case.tree_of(
        "FROM scratch\nWORKDIR /var/www\nENV empty=\"\"\nCOPY --link testfile $empty\n",
        &[("testfile", "contents0")],
        &[],
    );
    assert_eq!(tree.text("var/www/testfile"), "contents0");
}

/// The stages of testCopyChownExistingDir: a source with owned files and a base with
/// existing owned directories.
const OWNED_STAGES: &str = "FROM busybox AS source\n\
    RUN touch /file && chown 100:200 /file \\\n\
     && mkdir -p /dir/subdir && touch /dir/subdir/nestedfile \\\n\
     && chown 100:200 /dir && chown 101:201 /dir/subdir \\\n\
     && chown 102:202 /dir/subdir/nestedfile\n\
    FROM busybox AS test_base\n\
    RUN mkdir -p /existingdir/existingsubdir && touch /existingdir/existingfile \\\n\
     && chown 500:600 /existingdir && chown 501:601 /existingdir/existingsubdir \\\n\
     && chown 501:601 /existingdir/existingfile\n";

// testCopyChownExistingDir
#[test]
fn copy_from_a_stage_keeps_owners_but_not_over_existing_directories() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        &format!(
            "{OWNED_STAGES}FROM test_base\n\
             COPY --from=source /file .\n\
             COPY --from=source /dir /dir\n\
             COPY --from=source /dir/. /existingdir\n"
        ),
        &[],
        &[],
    );
    let owners: Vec<String> = [
        "file",
        "dir",
        "dir/subdir",
        "dir/subdir/nestedfile",
        "existingdir",
        "existingdir/existingsubdir",
        "existingdir/existingfile",
        "existingdir/subdir",
        "existingdir/subdir/nestedfile",
    ]
    .iter()
    .map(|p| format!("{p} {}", tree.owner(p)))
    .collect();
    assert_eq!(
        owners,
        [
            "file 100:200",
            // The destination COPY creates is root's; what it copies keeps its owner.
            "dir 0:0",
            "dir/subdir 101:201",
            "dir/subdir/nestedfile 102:202",
            "existingdir 500:600",
            "existingdir/existingsubdir 501:601",
            "existingdir/existingfile 501:601",
            "existingdir/subdir 101:201",
            "existingdir/subdir/nestedfile 102:202",
        ]
    );
}

// testCopyChownExistingDir
#[test]
fn copy_from_a_stage_with_chown_owns_only_what_it_creates() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        &format!(
            "{OWNED_STAGES}FROM test_base\n\
             COPY --from=source --chown=300:400 /file .\n\
             COPY --from=source --chown=300:400 /dir /dir\n\
             COPY --from=source --chown=300:400 /dir/. /existingdir\n"
        ),
        &[],
        &[],
    );
    let owners: Vec<String> = [
        "file",
        "dir",
        "dir/subdir",
        "dir/subdir/nestedfile",
        "existingdir",
        "existingdir/existingsubdir",
        "existingdir/existingfile",
        "existingdir/subdir",
        "existingdir/subdir/nestedfile",
    ]
    .iter()
    .map(|p| format!("{p} {}", tree.owner(p)))
    .collect();
    assert_eq!(
        owners,
        [
            "file 300:400",
            "dir 300:400",
            "dir/subdir 300:400",
            "dir/subdir/nestedfile 300:400",
            "existingdir 500:600",
            "existingdir/existingsubdir 501:601",
            "existingdir/existingfile 501:601",
            "existingdir/subdir 300:400",
            "existingdir/subdir/nestedfile 300:400",
        ]
    );
}

// testCopyChownCreateDest
#[test]
fn chown_names_are_looked_up_in_the_image_and_flags_expand_variables() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox\n\
         ARG group\n\
         ENV owner user01\n\
         RUN echo 'user:x:2000:2000::/home/user:/bin/sh' >> /etc/passwd && echo 'user:x:2000:' >> /etc/group\n\
         RUN echo 'user01:x:2001:2001::/home/user01:/bin/sh' >> /etc/passwd && echo 'user01:x:2001:' >> /etc/group\n\
         COPY --chown=user:user . /dest\n\
         COPY --chown=${owner}:${group} . /dest01\n",
        &[("f", "x")],
        &["--build-arg", "group=user"],
    );
    assert_eq!(tree.owner("dest"), "2000:2000");
    assert_eq!(tree.owner("dest01"), "2001:2000");
}

// testCopyChown
#[test]
fn chown_by_user_name_user_id_and_group_name() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox\n\
         ENV owner 1000\n\
         COPY --chown=app foo /\n\
         COPY --chown=1000:nogroup bar /baz\n\
         ARG group\n\
         COPY --chown=${owner}:${group} foo /foobis\n",
        &[("foo", "foo-contents"), ("bar/sub", "sub-contents")],
        &["--build-arg", "group=nogroup"],
    );
    assert_eq!(
        tree.owner("foo"),
        "1000:1000",
        "a user alone: its own group"
    );
    assert_eq!(tree.owner("baz/sub"), "1000:65534");
    assert_eq!(tree.owner("foobis"), "1000:65534");
}

// testCopyChmod
#[test]
fn chmod_sets_the_mode_but_not_of_created_parents() {
    let case = Case::scratch();
    let tree = case.tree_of(
        "FROM scratch\n\
         COPY --chmod=0644 foo /\n\
         COPY --chmod=777 bar /baz\n\
         COPY --chmod=0 foo /foobis\n\
         COPY --chmod=777 foo /parent/foo\n\
         COPY --chmod=770 foo /parent/sub/foo\n\
         ARG mode\n\
         COPY --chmod=${mode} foo /footer\n",
        &[("foo", "foo-contents"), ("bar", "bar-contents")],
        &["--build-arg", "mode=0755"],
    );
    let modes: Vec<String> = ["foo", "baz", "foobis", "parent", "parent/sub", "footer"]
        .iter()
        .map(|p| format!("{p} {}", tree.mode(p)))
        .collect();
    assert_eq!(
        modes,
        [
            "foo 0644",
            "baz 0777",
            "foobis 0000",
            "parent 0755",
            "parent/sub 0755",
            "footer 0755"
        ]
    );
}

// testCopyInvalidChmod
#[test]
fn an_invalid_chmod_is_refused() {
    let case = Case::scratch();
    for mode in ["64a", "10000"] {
        let error = case.failure(
            &format!("FROM scratch\nCOPY --chmod={mode} foo /\n"),
            &[("foo", "foo-contents")],
            &[],
        );
        assert!(error.contains(mode), "{error}");
        assert!(error.contains("chmod"), "{error}");
    }
}

// testChmodNonOctal
#[test]
fn chmod_takes_symbolic_modes_relative_to_the_source_mode() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox AS base\n\
         RUN mkdir -p /input/dirs/d && touch /input/file && chmod 666 /input/file \\\n\
          && mkdir /input/dirs/d/dir && chmod 124 /input/dirs/d/dir\n\
         FROM scratch\n\
         COPY --from=base --chmod=go-w /input/file /f1\n\
         COPY --from=base --chmod=u=rw,g=r,o=r /input/file /f2\n\
         COPY --from=base --chmod=a+X /input/file /f3\n\
         COPY --from=base --chmod=go-w /input/dirs/d /d1\n\
         COPY --from=base --chmod=u+rw,g+r,o-x,o+w /input/dirs/d /d2\n\
         COPY --from=base --chmod=a+X /input/dirs/d /d3\n",
        &[],
        &[],
    );
    let modes: Vec<String> = ["f1", "f2", "f3", "d1/dir", "d2/dir", "d3/dir"]
        .iter()
        .map(|p| format!("{p} {}", tree.mode(p)))
        .collect();
    // What `chmod MODE` does to a 0666 file and a 0124 directory.
    assert_eq!(
        modes,
        [
            "f1 0644",
            "f2 0644",
            "f3 0666",
            "d1/dir 0104",
            "d2/dir 0766",
            "d3/dir 0135"
        ]
    );
}

// testCopyRelative
#[test]
fn relative_destinations_follow_the_workdir_chain() {
    let case = Case::scratch();
    let tree = case.tree_of(
        "FROM scratch\n\
         WORKDIR /test1\n\
         WORKDIR test2\n\
         COPY foo ./\n\
         ADD foo ./bar/baz\n\
         COPY foo ./bar/baz2\n\
         WORKDIR ..\n\
         COPY foo ./\n\
         COPY foo /test3/\n\
         WORKDIR /test4\n\
         COPY . .\n\
         WORKDIR /test5/test6\n\
         COPY foo ../\n",
        &[("foo", "hello")],
        &[],
    );
    for path in [
        "test1/test2/foo",
        "test1/test2/bar/baz",
        "test1/test2/bar/baz2",
        "test1/foo",
        "test3/foo",
        "test4/foo",
        "test5/foo",
    ] {
        assert_eq!(tree.text(path), "hello", "{path}");
    }
}

// testCopyVarSubstitution
#[test]
fn copy_sources_expand_env() {
    let case = Case::scratch();
    let tree = case.tree_of(
        "FROM scratch\nENV FOO bar\nCOPY $FOO baz\n",
        &[("bar", "bar-contents")],
        &[],
    );
    assert_eq!(tree.text("baz"), "bar-contents");
}

// testCopyOverrideFiles
#[test]
fn repeated_copies_of_the_same_files_are_idempotent() {
    let case = Case::scratch();
    let tree = case.tree_of(
        "FROM scratch\n\
         COPY sub sub\n\
         COPY sub sub\n\
         COPY files/foo.go dest/foo.go\n\
         COPY files/foo.go dest/foo.go\n\
         COPY files dest\n",
        &[
            ("sub/dir1/dir2/foo", "foo-contents"),
            ("files/foo.go", "foo.go-contents"),
        ],
        &[],
    );
    assert_eq!(tree.text("sub/dir1/dir2/foo"), "foo-contents");
    assert_eq!(tree.text("dest/foo.go"), "foo.go-contents");
}
