//! Multi-stage builds and ONBUILD triggers (BuildKit's dockerfile_multistage_test.go and
//! dockerfile_onbuild_test.go).

use crate::harness::*;

// testMultiStageImplicitFrom
#[test]
fn copy_from_a_name_that_is_no_stage_copies_from_that_image() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM scratch\nCOPY --from=busybox /etc/passwd test\n",
        &[],
        &[],
    );
    assert!(tree.text("test").starts_with("root:"));
    let tree = case.tree_of(
        "FROM busybox AS golang\n\
         RUN mkdir -p /usr/bin && echo -n foo > /usr/bin/go\n\
         FROM scratch\n\
         COPY --from=golang /usr/bin/go go\n",
        &[],
        &[],
    );
    assert_eq!(
        tree.text("go"),
        "foo",
        "a stage wins over an image of that name"
    );
}

// testMultiStageCaseInsensitive
#[test]
fn stage_names_are_case_insensitive() {
    let case = Case::scratch();
    let tree = case.tree_of(
        "FROM scratch AS STAge0\n\
         COPY foo bar\n\
         FROM scratch AS staGE1\n\
         COPY --from=staGE0 bar baz\n\
         FROM scratch\n\
         COPY --from=stage1 baz bax\n",
        &[("foo", "foo-contents")],
        &["--target", "STAGE1"],
    );
    assert_eq!(tree.text("baz"), "foo-contents");
}

// testOutOfOrderStage
#[test]
fn copy_from_a_later_stage_is_refused() {
    require_privileges!();
    let case = Case::busybox();
    for source in ["/", "/d2"] {
        let error = case.failure(
            &format!(
                "FROM busybox AS target\n\
                 COPY --from=build {source} /out\n\
                 FROM busybox AS build\n\
                 COPY /Dockerfile /d2\n\
                 FROM target\n"
            ),
            &[],
            &[],
        );
        assert!(
            error.contains("needs to be defined before current stage")
                || error.contains("defined before"),
            "{error}"
        );
    }
}

// testEmptyStages
#[test]
fn a_dockerfile_with_only_args_has_no_stage_to_build() {
    let case = Case::scratch();
    let error = case.failure("ARG foo=bar\n", &[], &[]);
    assert!(
        error.contains("no stage") || error.contains("FROM"),
        "{error}"
    );
}

// testOnBuildCleared
#[test]
fn onbuild_triggers_run_in_children_but_not_in_grandchildren() {
    require_privileges!();
    let case = Case::busybox();
    case.image(
        "onbuild-parent:latest",
        "FROM busybox\nONBUILD RUN mkdir -p /out && echo -n 11 >> /out/foo\n",
        &[],
        &[],
    );
    case.image("onbuild-child:latest", "FROM onbuild-parent\n", &[], &[]);
    let tree = case.tree_of(
        "FROM onbuild-child AS base\nFROM scratch\nCOPY --from=base /out /\n",
        &[],
        &[],
    );
    assert_eq!(tree.text("foo"), "11");
}

// testOnBuildWithChildStage
#[test]
fn onbuild_triggers_run_once_not_again_for_a_stage_built_on_the_child() {
    require_privileges!();
    let case = Case::busybox();
    case.image(
        "onbuild-once:latest",
        "FROM busybox\nONBUILD RUN mkdir -p /out && touch /out/didrun\n",
        &[],
        &[],
    );
    let tree = case.tree_of(
        "FROM onbuild-once AS base\n\
         RUN [ -f /out/didrun ] && touch /step1\n\
         RUN rm /out/didrun\n\
         RUN [ ! -f /out/didrun ] && touch /step2\n\
         FROM base AS child\n\
         RUN [ ! -f /out/didrun ] && touch /step3\n\
         FROM scratch\n\
         COPY --from=child /step* /\n",
        &[],
        &[],
    );
    assert_eq!(tree.children(""), ["step1", "step2", "step3"]);
}

// testOnBuildInheritedStageRun
#[test]
fn onbuild_of_a_stage_runs_in_a_stage_built_on_it() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox AS base\n\
         ONBUILD RUN mkdir -p /out && echo -n 11 >> /out/foo\n\
         FROM base AS mid\n\
         RUN cp /out/foo /out/bar\n\
         FROM scratch\n\
         COPY --from=mid /out/bar /\n",
        &[],
        &[],
    );
    assert_eq!(tree.text("bar"), "11");
}

// testOnBuildInheritedStageWithFrom
#[test]
fn onbuild_copy_from_a_stage_of_the_same_dockerfile() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox AS src\n\
         RUN mkdir -p /in && echo -n 12 > /in/file\n\
         FROM busybox AS base\n\
         ONBUILD COPY --from=src /in/file /out/foo\n\
         FROM base AS mid\n\
         RUN cp /out/foo /out/bar\n\
         FROM scratch\n\
         COPY --from=mid /out/bar /\n",
        &[],
        &[],
    );
    assert_eq!(tree.text("bar"), "12");
}

// testOnBuildNewDeps
#[test]
#[ignore = "an image named only by a base image's ONBUILD trigger (`ONBUILD COPY --from=release`) is reported as not in the store although it is: the build looks base images up before it reads the triggers"]
fn an_onbuild_copy_from_an_image_brings_that_image() {
    require_privileges!();
    let case = Case::busybox();
    case.image(
        "release:latest",
        "FROM scratch\nCOPY release /etc/release\n",
        &[("release", "3.0")],
        &[],
    );
    case.image(
        "onbuild-deps:latest",
        "FROM busybox\nONBUILD COPY --from=release /etc/release /out/release2\n",
        &[],
        &[],
    );
    let tree = case.tree_of(
        "FROM onbuild-deps AS base\n\
         RUN cat /out/release2 > /out/release3\n\
         FROM scratch\n\
         COPY --from=base /out /\n",
        &[],
        &[],
    );
    assert_eq!(tree.text("release3"), "3.0");
}

// testOnBuildNewDeps
#[test]
#[ignore = "an ONBUILD `RUN --mount=from=<stage of the child>` fails with the internal error `no config was given for base image busybox:latest`: base images are resolved before the triggers are read"]
fn an_onbuild_mount_from_names_a_stage_of_the_child() {
    require_privileges!();
    let case = Case::busybox();
    case.image(
        "onbuild-mount:latest",
        "FROM busybox\n\
         ONBUILD RUN --mount=type=bind,target=/in,from=inputstage mkdir -p /out && cat /in/foo > /out/bar\n",
        &[],
        &[],
    );
    let tree = case.tree_of(
        "FROM busybox AS inputstage\n\
         RUN echo -n foo > /foo\n\
         FROM onbuild-mount AS base\n\
         RUN echo -n bar3 > /out/bar3\n\
         FROM scratch\n\
         COPY --from=base /out /\n",
        &[],
        &[],
    );
    assert_eq!(
        tree.text("bar"),
        "foo",
        "the trigger's `from` is the child's stage"
    );
    assert_eq!(tree.text("bar3"), "bar3");
}

// testOnBuildWithCacheMount
#[test]
fn an_onbuild_cache_mount_is_the_childs_cache() {
    require_privileges!();
    let case = Case::busybox();
    case.image(
        "onbuild-cache:latest",
        "FROM busybox\n\
         ONBUILD RUN --mount=type=cache,target=/cache echo -n 42 >> /cache/foo && echo -n 11 >> /bar\n",
        &[],
        &[],
    );
    case.tree_of(
        "FROM onbuild-cache\n\
         RUN --mount=type=cache,target=/cache [ \"$(cat /cache/foo)\" = \"42\" ] && [ \"$(cat /bar)\" = \"11\" ]\n",
        &[],
        &[],
    );
}
