//! WORKDIR: created, owned by USER, existing ones untouched, and not a base for
//! `COPY --from` sources (BuildKit's dockerfile_workdir_test.go).

use crate::harness::*;

// testWorkdirCreatesDir
#[test]
fn workdir_creates_the_directory_even_unused() {
    let case = Case::scratch();
    let tree = case.tree_of("FROM scratch\nWORKDIR /foo\nWORKDIR /\n", &[], &[]);
    assert_eq!(tree.node("foo").kind, 'd');
}

// testWorkdirUser
#[test]
fn workdir_is_created_owned_by_the_user() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox\nRUN echo 'user:x:2000:2000::/home/user:/bin/sh' >> /etc/passwd && echo 'user:x:2000:' >> /etc/group\nUSER user\nWORKDIR /mydir\n",
        &[],
        &[],
    );
    assert_eq!(tree.owner("mydir"), "2000:2000");
}

// testWorkdirExists
#[test]
fn workdir_keeps_the_owner_of_an_existing_directory() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox\n\
         RUN echo 'user:x:2000:2000::/home/user:/bin/sh' >> /etc/passwd && echo 'user:x:2000:' >> /etc/group\n\
         RUN mkdir /mydir && chown user:user /mydir\n\
         WORKDIR /mydir\n",
        &[],
        &[],
    );
    assert_eq!(tree.owner("mydir"), "2000:2000");
}

// testWorkdirCopyIgnoreRelative
#[test]
fn copy_from_a_stage_reads_relative_sources_from_its_root() {
    let case = Case::scratch();
    let tree = case.tree_of(
        "FROM scratch AS base\n\
         WORKDIR /foo\n\
         COPY Dockerfile /\n\
         FROM scratch\n\
         COPY --from=base Dockerfile .\n",
        &[],
        &[],
    );
    assert!(tree.text("Dockerfile").starts_with("FROM scratch AS base"));
}

// testWorkdirSourceDateEpochReproducible
#[test]
fn workdir_with_source_date_epoch_gives_the_same_image_twice() {
    let case = Case::scratch();
    let ctx = case.context("FROM scratch\nWORKDIR /mydir\n", &[]);
    let ids: Vec<String> = (0..2)
        .map(|_| {
            let out = case
                .env
                .command()
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .args([
                    "build",
                    "--no-cache",
                    "--progress",
                    "quiet",
                    ctx.to_str().unwrap(),
                ])
                .output()
                .unwrap();
            assert_success(&out);
            stdout(&out)
        })
        .collect();
    assert_eq!(ids[0], ids[1]);
}
