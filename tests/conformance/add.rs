//! ADD of local archives: extraction, owners, wildcards, links through symlinks; ADD's
//! flag errors (BuildKit's dockerfile_add_test.go; ADD from URLs is in tests/it/add_url.rs).

use std::io::Write;

use crate::harness::*;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

// testDockerfileAddArchive
#[test]
fn add_extracts_local_tar_and_gzip_archives_and_copy_does_not() {
    let case = Case::scratch();
    let archive = tar_of(&[("foo", "content0")]);
    let ctx = case.context(
        "FROM scratch\nADD t.tar /plain/\nADD t.tar.gz /gz/\nCOPY t.tar.gz /copied/\n",
        &[],
    );
    std::fs::write(ctx.join("t.tar"), &archive).unwrap();
    std::fs::write(ctx.join("t.tar.gz"), gzip(&archive)).unwrap();
    let tree = case.tree(&ctx, &[]);
    assert_eq!(tree.text("plain/foo"), "content0");
    assert_eq!(tree.text("gz/foo"), "content0");
    assert_eq!(tree.node("copied/t.tar.gz").data, gzip(&archive));
}

// testDockerfileAddArchive
#[test]
fn add_unpack_false_keeps_a_local_archive_whole() {
    let case = Case::scratch();
    let archive = gzip(&tar_of(&[("foo", "content0")]));
    let ctx = case.context("FROM scratch\nADD --unpack=false t.tar.gz /\n", &[]);
    std::fs::write(ctx.join("t.tar.gz"), &archive).unwrap();
    let tree = case.tree(&ctx, &[]);
    assert_eq!(tree.node("t.tar.gz").data, archive);
    assert!(!tree.has("foo"));
}

// testDockerfileAddArchiveWithImpliedParentDir
#[test]
fn add_extracts_entries_whose_parent_directories_are_not_in_the_archive() {
    let case = Case::scratch();
    let ctx = case.context("FROM scratch\nADD t.tar.gz /\n", &[]);
    std::fs::write(
        ctx.join("t.tar.gz"),
        gzip(&tar_of(&[("d/e/foo", "content0")])),
    )
    .unwrap();
    let tree = case.tree(&ctx, &[]);
    assert_eq!(tree.text("d/e/foo"), "content0");
    assert_eq!(tree.node("d/e").kind, 'd');
}

// testDockerfileAddArchiveThroughAbsoluteSymlink
#[test]
#[ignore = "extracting a local archive does not follow a directory symlink of the image (`var/run` -> `/run`): `run` is not a directory (symlinks are not followed)"]
fn add_extracts_through_an_absolute_symlink_inside_the_image() {
    let case = Case::scratch();
    let ctx = case.context("FROM scratch\nADD rootfs.tar /\nADD payload.tar /\n", &[]);
    let mut rootfs = tar::Builder::new(Vec::new());
    for dir in ["run", "var"] {
        let mut header = tar_header(tar::EntryType::Directory, 0o755, 0);
        rootfs
            .append_data(&mut header, dir, std::io::empty())
            .unwrap();
    }
    let mut header = tar_header(tar::EntryType::Symlink, 0o777, 0);
    rootfs.append_link(&mut header, "var/run", "/run").unwrap();
    std::fs::write(ctx.join("rootfs.tar"), rootfs.into_inner().unwrap()).unwrap();
    let mut payload = tar::Builder::new(Vec::new());
    for dir in ["var/run/act", "var/run/act/.git"] {
        let mut header = tar_header(tar::EntryType::Directory, 0o755, 0);
        payload
            .append_data(&mut header, dir, std::io::empty())
            .unwrap();
    }
    let content = b"ref: refs/heads/main\n";
    let mut header = tar_header(tar::EntryType::Regular, 0o644, content.len() as u64);
    payload
        .append_data(&mut header, "var/run/act/.git/HEAD", &content[..])
        .unwrap();
    let mut header = tar_header(tar::EntryType::Link, 0o644, 0);
    payload
        .append_link(
            &mut header,
            "var/run/act/.git/HEAD.link",
            "var/run/act/.git/HEAD",
        )
        .unwrap();
    std::fs::write(ctx.join("payload.tar"), payload.into_inner().unwrap()).unwrap();
    let tree = case.tree(&ctx, &[]);
    assert_eq!(tree.node("var/run").kind, 'l', "the symlink stays");
    assert_eq!(tree.text("run/act/.git/HEAD"), "ref: refs/heads/main\n");
    assert_eq!(
        tree.text("run/act/.git/HEAD.link"),
        "ref: refs/heads/main\n"
    );
}

// testDockerfileAddChownArchive
#[test]
fn add_chown_owns_the_extracted_entries() {
    let case = Case::scratch();
    let ctx = case.context("FROM scratch\nADD --chown=100:200 t.tar /out/\n", &[]);
    std::fs::write(
        ctx.join("t.tar"),
        tar_of(&[("dir/", ""), ("dir/foo", "content0")]),
    )
    .unwrap();
    let tree = case.tree(&ctx, &[]);
    assert_eq!(tree.text("out/dir/foo"), "content0");
    assert_eq!(tree.owner("out/dir/foo"), "100:200");
    assert_eq!(tree.owner("out/dir"), "100:200");
}

// testDockerfileAddArchiveWildcard
#[test]
fn add_extracts_every_archive_a_wildcard_matches() {
    let case = Case::scratch();
    let ctx = case.context("FROM scratch\nADD *.tar /dest\n", &[]);
    std::fs::write(ctx.join("t.tar"), tar_of(&[("foo", "content0")])).unwrap();
    std::fs::write(ctx.join("b.tar"), tar_of(&[("bar", "content1")])).unwrap();
    let tree = case.tree(&ctx, &[]);
    assert_eq!(tree.text("dest/foo"), "content0");
    assert_eq!(tree.text("dest/bar"), "content1");
}

// testDockerfileAddChownExpand
#[test]
fn add_chown_expands_env_and_args() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox\nARG group\nENV owner 1000\nADD --chown=${owner}:${group} foo /\n",
        &[("foo", "foo-contents")],
        &["--build-arg", "group=nogroup"],
    );
    assert_eq!(tree.owner("foo"), "1000:65534");
}

// testAddInvalidChmod
#[test]
fn add_refuses_an_invalid_chmod() {
    let case = Case::scratch();
    for mode in ["64a", "10000"] {
        let error = case.failure(
            &format!("FROM scratch\nADD --chmod={mode} foo /\n"),
            &[("foo", "foo-contents")],
            &[],
        );
        assert!(error.contains(mode) && error.contains("chmod"), "{error}");
    }
}

// testAddChecksum
#[test]
fn add_checksum_of_a_local_file_is_refused() {
    let case = Case::scratch();
    let error = case.failure(
        &format!(
            "FROM scratch\nADD --checksum=sha256:{} foo /tmp/foo\n",
            "0".repeat(64)
        ),
        &[("foo", "foo-contents")],
        &[],
    );
    assert!(error.contains("checksum"), "{error}");
    assert!(error.contains("URL") || error.contains("HTTP"), "{error}");
}
