//! Where the Dockerfile comes from, USER, EXPOSE, LABEL and target errors (BuildKit's
//! dockerfile_core_test.go).

use std::os::unix::fs::symlink;

use crate::harness::*;

// testDockerfileDirs
#[test]
fn a_dockerfile_outside_the_context_is_read_with_file() {
    let case = Case::scratch();
    let ctx = case.context("FROM scratch\nCOPY nothing /\n", &[("foo", "bar")]);
    let elsewhere = case.env.context(
        "dockerfiles",
        &[(
            "build.Dockerfile",
            "FROM scratch\nCOPY foo /foo2\nCOPY foo /\n",
        )],
    );
    let file = elsewhere.join("build.Dockerfile");
    let tree = case.tree(&ctx, &["-f", file.to_str().unwrap()]);
    assert_eq!(tree.text("foo2"), "bar");
    assert_eq!(tree.text("foo"), "bar");
}

// testSymlinkedDockerfile
#[test]
fn a_symlinked_dockerfile_is_followed() {
    let case = Case::scratch();
    let ctx = case.env.context(
        "linked",
        &[("Dockerfile.real", "FROM scratch\nENV foo bar\n")],
    );
    symlink("Dockerfile.real", ctx.join("Dockerfile")).unwrap();
    assert_success(&case.build(&ctx, "linked:latest", &[]));
    let env = &case.config("linked:latest")["config"]["Env"];
    assert!(
        env.as_array().unwrap().iter().any(|e| e == "foo=bar"),
        "{env}"
    );
}

// testSymlinkDestination
#[test]
fn a_destination_through_a_symlink_in_the_image_is_followed() {
    let case = Case::scratch();
    let ctx = case.context(
        "FROM scratch\nADD t.tar /\nCOPY foo /symlink/\n",
        &[("foo", "content0")],
    );
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar_header(tar::EntryType::Symlink, 0o755, 0);
    archive
        .append_link(&mut header, "symlink", "../tmp/symlink-target")
        .unwrap();
    std::fs::write(ctx.join("t.tar"), archive.into_inner().unwrap()).unwrap();
    let tree = case.tree(&ctx, &[]);
    assert_eq!(tree.text("tmp/symlink-target/foo"), "content0");
    assert_eq!(tree.node("symlink").kind, 'l');
}

// testContextChangeDirToFile
#[test]
fn a_context_path_that_turns_from_directory_to_file_is_copied_as_a_file() {
    let case = Case::scratch();
    let ctx = case.context("FROM scratch\nCOPY foo /\n", &[("foo/bar", "contents")]);
    assert_eq!(case.tree(&ctx, &[]).text("bar"), "contents");
    std::fs::remove_dir_all(ctx.join("foo")).unwrap();
    std::fs::write(ctx.join("foo"), "contents2").unwrap();
    let tree = case.tree(&ctx, &[]);
    assert_eq!(tree.text("foo"), "contents2");
    assert!(!tree.has("bar"), "nothing of the old directory");
}

// testExposeExpansion
#[test]
fn expose_splits_an_unquoted_variable_into_ports() {
    let case = Case::scratch();
    case.image(
        "expose:latest",
        "FROM scratch\nARG PORTS=\"3000 4000/udp\"\nEXPOSE $PORTS\nEXPOSE 5000\n",
        &[],
        &[],
    );
    let ports = &case.config("expose:latest")["config"]["ExposedPorts"];
    let mut names: Vec<&String> = ports.as_object().unwrap().keys().collect();
    names.sort();
    assert_eq!(names, ["3000/tcp", "4000/udp", "5000/tcp"]);
}

// testDockerfileLowercase
#[test]
fn a_lowercase_dockerfile_name_is_found() {
    let case = Case::scratch();
    let ctx = case
        .env
        .context("lower", &[("dockerfile", "FROM scratch\nENV lower=yes\n")]);
    assert_success(&case.build(&ctx, "lower:latest", &[]));
}

// testLabels
#[test]
fn labels_from_the_dockerfile_and_the_command_line_are_merged() {
    let case = Case::scratch();
    case.image(
        "labels:latest",
        "FROM scratch\nLABEL foo=bar\n",
        &[],
        &["--label", "bar=baz"],
    );
    let labels = &case.config("labels:latest")["config"]["Labels"];
    assert_eq!(labels["foo"], "bar");
    assert_eq!(labels["bar"], "baz");
}

/// A RUN that appends the current ids and names to /out/ids.
const IDS: &str =
    "RUN echo \"$(id -u):$(id -g)/$(id -un):$(id -gn)/$(id -G):$(id -Gn)\" >> /out/ids\n";

// testUser
#[test]
fn user_by_name_id_and_group_with_supplementary_groups() {
    require_privileges!();
    let case = Case::busybox();
    let steps = [
        "USER root",
        "USER dockerio",
        "USER 1001",
        "USER dockerio:dockerio",
        "USER 1001:dockerio",
        "USER dockerio:supplementary",
        "USER 1001:1002",
        "USER 1042:1043",
    ];
    let mut dockerfile = String::from(
        "FROM busybox AS base\n\
         RUN mkdir -m 0777 /out && touch /out/ids && chmod 666 /out/ids\n\
         RUN echo 'dockerio:x:1001:1001::/bin:/bin/false' >> /etc/passwd \\\n\
          && echo 'dockerio:x:1001:' >> /etc/group \\\n\
          && echo 'supplementary:x:1002:dockerio' >> /etc/group\n",
    );
    dockerfile.push_str(IDS);
    for step in steps {
        dockerfile.push_str(step);
        dockerfile.push('\n');
        dockerfile.push_str(IDS);
    }
    dockerfile.push_str("FROM scratch\nCOPY --from=base /out /\nUSER nobody\n");
    let ctx = case.context(&dockerfile, &[]);
    let tree = case.tree(&ctx, &[]);
    assert_eq!(
        tree.text("ids").lines().collect::<Vec<_>>(),
        [
            "0:0/root:root/0:root",
            "0:0/root:root/0:root",
            "1001:1001/dockerio:dockerio/1001 1002:dockerio supplementary",
            "1001:1001/dockerio:dockerio/1001 1002:dockerio supplementary",
            "1001:1001/dockerio:dockerio/1001:dockerio",
            "1001:1001/dockerio:dockerio/1001:dockerio",
            "1001:1002/dockerio:supplementary/1002:supplementary",
            "1001:1002/dockerio:supplementary/1002:supplementary",
            "1042:1043/1042:1043/1043:1043",
        ]
    );
    assert_eq!(
        case.config("conformance:latest")["config"]["User"],
        "nobody"
    );
}

// testUserAdditionalGids
#[test]
#[ignore = "a RUN's supplementary groups leave out the primary group (root gets none, `app` gets 50 but not 1000); BuildKit, as containerd, lists the primary gid too (runtime)"]
fn run_gets_the_groups_of_its_user_as_id_prints_them() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox AS base\n\
         RUN mkdir -m 0777 /out\n\
         RUN id > /out/root\n\
         USER 1234\n\
         RUN id > /out/uid\n\
         USER 1234:1234\n\
         RUN id > /out/uidgid\n\
         USER app\n\
         RUN id > /out/name\n\
         FROM scratch\n\
         COPY --from=base /out /\n",
        &[],
        &[],
    );
    let ids: Vec<String> = ["root", "uid", "uidgid", "name"]
        .iter()
        .map(|f| tree.text(f).trim_end().to_owned())
        .collect();
    assert_eq!(
        ids,
        [
            "uid=0(root) gid=0(root) groups=0(root)",
            "uid=1234 gid=0(root) groups=0(root)",
            "uid=1234 gid=1234 groups=1234",
            "uid=1000(app) gid=1000(app) groups=1000(app),50(staff)",
        ]
    );
}

// testTargetMistype
#[test]
fn an_unknown_target_suggests_the_closest_stage() {
    let case = Case::scratch();
    let error = case.failure(
        "FROM scratch AS build\nCOPY Dockerfile /out\nFROM scratch\nCOPY --from=build /out /\n",
        &[],
        &["--target", "bulid"],
    );
    assert!(error.contains("bulid"), "{error}");
    assert!(error.contains("build"), "a suggestion: {error}");
}
