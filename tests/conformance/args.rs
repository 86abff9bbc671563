//! ARG and ENV: global and stage scope, defaults, expansion forms, predefined args
//! (BuildKit's dockerfile_args_test.go).

use crate::harness::*;

// testGlobalArg
#[test]
fn a_global_arg_picks_the_base_image_tag_and_a_build_arg_overrides_it() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "ARG tag=nosuchtag\nFROM busybox:${tag}\nRUN echo -n based > /out\n",
        &[],
        &["--build-arg", "tag=latest"],
    );
    assert_eq!(tree.text("out"), "based");
}

// testGlobalArgErrors
#[test]
fn a_global_arg_required_with_colon_question_fails_with_its_message() {
    require_privileges!();
    let case = Case::busybox();
    let dockerfile = "ARG FOO=${FOO:?\"custom error\"}\nFROM busybox\n";
    let error = case.failure(dockerfile, &[], &[]);
    assert!(error.contains("custom error"), "{error}");
    case.tree_of(dockerfile, &[], &["--build-arg", "FOO=bar"]);
}

// testArgDefaultExpansion
#[test]
fn a_stage_arg_default_can_require_another_arg() {
    let case = Case::scratch();
    let dockerfile = "FROM scratch\nARG FOO\nARG BAR=${FOO:?\"foo missing\"}\n";
    let error = case.failure(dockerfile, &[], &[]);
    assert!(error.contains("foo missing"), "{error}");
    case.image("argdefault:1", dockerfile, &[], &["--build-arg", "FOO=123"]);
    // A value given for BAR itself means its default is never expanded.
    case.image("argdefault:2", dockerfile, &[], &["--build-arg", "BAR=123"]);
}

// testMultiArgs
#[test]
fn several_args_on_one_line_and_global_defaults_reach_the_stage() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "ARG a1=\"foo bar\" a2=box\n\
         ARG a3=\"$a2-foo\"\n\
         FROM busy$a2 AS build\n\
         ARG a3 a4=\"123 456\" a1\n\
         RUN echo -n \"$a1:$a3:$a4\" > /out\n\
         FROM scratch\n\
         COPY --from=build /out .\n",
        &[],
        &[],
    );
    assert_eq!(tree.text("out"), "foo bar:box-foo:123 456");
}

// testQuotedMetaArgs
#[test]
fn a_stage_arg_default_expands_a_redeclared_global_arg() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "ARG a1=\"box\"\n\
         ARG a2=\"$a1-foo\"\n\
         FROM busy$a1 AS build\n\
         ARG a2\n\
         ARG a3=\"bar-$a2\"\n\
         RUN echo -n $a3 > /out\n\
         FROM scratch\n\
         COPY --from=build /out .\n",
        &[],
        &[],
    );
    assert_eq!(tree.text("out"), "bar-box-foo");
}

// testTargetStageNameArg
#[test]
fn targetstage_is_the_target_name_once_declared() {
    require_privileges!();
    let case = Case::busybox();
    let dockerfile = "FROM busybox AS base\n\
                      WORKDIR /out\n\
                      RUN echo -n \"value:$TARGETSTAGE\" > /out/first\n\
                      ARG TARGETSTAGE\n\
                      RUN echo -n \"value:$TARGETSTAGE\" > /out/second\n\
                      FROM scratch AS foo\n\
                      COPY --from=base /out/ /\n\
                      FROM scratch\n\
                      COPY --from=base /out/ /\n";
    let tree = case.tree_of(dockerfile, &[], &["--target", "foo"]);
    assert_eq!(tree.text("first"), "value:", "undeclared: not in RUN's env");
    assert_eq!(tree.text("second"), "value:foo");
    let tree = case.tree_of(dockerfile, &[], &[]);
    assert_eq!(
        tree.text("second"),
        "value:default",
        "an unnamed last stage"
    );
    let named = format!("{dockerfile}FROM scratch AS final\nCOPY --from=base /out/ /\n");
    let tree = case.tree_of(&named, &[], &[]);
    assert_eq!(tree.text("second"), "value:final");
}

// testBuiltinArgs
#[test]
fn proxy_args_reach_run_without_arg_and_stay_out_of_the_cache_key() {
    require_privileges!();
    let case = Case::busybox();
    let ctx = case.context(
        "FROM busybox AS build\n\
         ARG FOO\n\
         ARG BAR\n\
         ARG BAZ=bazcontent\n\
         RUN echo -n $HTTP_PROXY::$NO_PROXY::$FOO::$BAR::$BAZ > /out\n\
         FROM scratch\n\
         COPY --from=build /out /\n",
        &[],
    );
    let args = |foo: &'static str, proxy: &'static str, no_proxy: Option<&'static str>| {
        let mut args = vec!["--build-arg", foo, "--build-arg", proxy];
        if let Some(no_proxy) = no_proxy {
            args.extend(["--build-arg", no_proxy]);
        }
        args
    };
    let tree = case.tree(
        &ctx,
        &args(
            "FOO=foocontents",
            "http_proxy=hpvalue",
            Some("NO_PROXY=npvalue"),
        ),
    );
    assert_eq!(
        tree.text("out"),
        "hpvalue::npvalue::foocontents::::bazcontent"
    );
    // Another proxy value alone is no reason to run the step again.
    let tree = case.tree(&ctx, &args("FOO=foocontents", "http_proxy=hpvalue2", None));
    assert_eq!(
        tree.text("out"),
        "hpvalue::npvalue::foocontents::::bazcontent"
    );
    // A changed declared arg is, and the step then sees the current proxy values.
    let tree = case.tree(&ctx, &args("FOO=foocontents2", "http_proxy=hpvalue2", None));
    assert_eq!(tree.text("out"), "hpvalue2::::foocontents2::::bazcontent");
}

// testDefaultEnvWithArgs
#[test]
fn env_defaults_from_args_and_pattern_trimming() {
    require_privileges!();
    let case = Case::busybox();
    let ctx = case.context(
        "ARG image=idlebox\n\
         FROM busy${image#idle} AS build\n\
         ARG my_arg\n\
         ENV my_arg \"my_arg=${my_arg:-def_val}\"\n\
         ENV my_trimmed_arg \"${my_arg%%e*}\"\n\
         COPY myscript.sh myscript.sh\n\
         RUN sh ./myscript.sh $my_arg $my_trimmed_arg\n\
         FROM scratch\n\
         COPY --from=build /out /out\n",
        &[("myscript.sh", "echo -n $my_arg $* > /out\n")],
    );
    for (args, expected) in [
        (vec![], "my_arg=def_val my_arg=def_val my_arg=d"),
        (
            vec!["--build-arg", "my_arg="],
            "my_arg=def_val my_arg=def_val my_arg=d",
        ),
        (
            vec!["--build-arg", "my_arg=override"],
            "my_arg=override my_arg=override my_arg=ov",
        ),
    ] {
        let tree = case.tree(&ctx, &args);
        assert_eq!(tree.text("out"), expected, "{args:?}");
    }
}

// testEmptyStringArgInEnv
#[test]
fn an_arg_with_an_empty_default_is_set_and_one_without_is_not() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox AS build\nARG FOO\nARG BAR=\nRUN env > env.txt\n\
         FROM scratch\nCOPY --from=build env.txt .\n",
        &[],
        &[],
    );
    let env = tree.text("env.txt");
    assert!(env.lines().any(|l| l == "BAR="), "{env}");
    assert!(!env.lines().any(|l| l.starts_with("FOO=")), "{env}");
}

// testEnvEmptyFormatting
#[test]
fn a_legacy_env_value_keeps_percent_signs() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox AS build\nENV myenv foo%sbar\nRUN echo -n \"$myenv\" > /out\n\
         FROM scratch\nCOPY --from=build /out /\n",
        &[],
        &[],
    );
    assert_eq!(tree.text("out"), "foo%sbar");
}

// testPlatformArgsExplicit
#[test]
fn target_platform_args_follow_the_platform_flag_and_build_args_override_them() {
    require_privileges!();
    let case = Case::busybox();
    let dockerfile = "FROM --platform=$BUILDPLATFORM busybox AS build\n\
         ARG TARGETPLATFORM\n\
         ARG TARGETOS\n\
         RUN mkdir /out && echo -n $TARGETPLATFORM > /out/platform && echo -n $TARGETOS > /out/os\n\
         FROM scratch\n\
         COPY --from=build out .\n";
    let args = [
        "--platform",
        "darwin/ppc64le",
        "--build-arg",
        "TARGETOS=freebsd",
    ];
    let tree = case.tree_of(dockerfile, &[], &args);
    assert_eq!(tree.text("platform"), "darwin/ppc64le");
    assert_eq!(tree.text("os"), "freebsd");
    let config = case.config("conformance:latest");
    assert_eq!(
        (config["os"].as_str(), config["architecture"].as_str()),
        (Some("darwin"), Some("ppc64le"))
    );
}

// testPlatformArgsImplicit
#[test]
fn target_platform_args_are_predefined_in_the_global_scope() {
    let case = Case::scratch();
    let tree = case.tree_of(
        "FROM scratch AS build-linux\n\
         COPY foo bar\n\
         FROM scratch AS build-windows\n\
         COPY foo2 bar\n\
         FROM build-${TARGETOS}\n\
         COPY foo2 bar2\n",
        &[("foo", "d0"), ("foo2", "d1")],
        &[],
    );
    assert_eq!(tree.text("bar"), "d0");
    assert_eq!(tree.text("bar2"), "d1");
}
