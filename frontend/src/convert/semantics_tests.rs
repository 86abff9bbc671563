//! Conversion semantics from DOCKERFILE.md that BuildKit's tests pin down: predefined
//! ARGs, proxy ARGs, SHELL in the config, ONBUILD from base stages, `--target` pruning,
//! COPY sources as single words, duplicate stage names.

use std::collections::BTreeMap;

use crate::{
    BuildGraph, ConvertOptions, CopyOp, CopySource, ExecOp, ImageConfig, OpKind, convert,
    image_references, parse,
};

fn build_with(text: &str, opts: &ConvertOptions, base: &ImageConfig) -> BuildGraph {
    let df = parse(text).unwrap();
    let bases: BTreeMap<String, ImageConfig> = image_references(&df, opts)
        .unwrap()
        .into_iter()
        .map(|r| (r, base.clone()))
        .collect();
    convert(&df, opts, &bases).unwrap()
}

fn build(text: &str, opts: &ConvertOptions) -> BuildGraph {
    let base = ImageConfig {
        env: vec!["PATH=/bin".to_string()],
        ..Default::default()
    };
    build_with(text, opts, &base)
}

fn args(pairs: &[(&str, &str)]) -> ConvertOptions {
    ConvertOptions {
        build_args: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn execs(graph: &BuildGraph) -> Vec<&ExecOp> {
    graph
        .ops
        .iter()
        .filter_map(|op| match &op.kind {
            OpKind::Exec(exec) => Some(exec),
            _ => None,
        })
        .collect()
}

fn copies(graph: &BuildGraph) -> Vec<&CopyOp> {
    graph
        .ops
        .iter()
        .filter_map(|op| match &op.kind {
            OpKind::Copy(copy) => Some(copy),
            _ => None,
        })
        .collect()
}

#[test]
fn platform_args_are_global_and_need_redeclaring_in_a_stage() {
    let text = "FROM --platform=$BUILDPLATFORM busybox:$TARGETOS-$TARGETARCH\nRUN echo\nARG TARGETARCH\nARG BUILDPLATFORM\nRUN echo\n";
    let graph = build(text, &ConvertOptions::default());
    assert_eq!(graph.output.base.as_deref(), Some("busybox:linux-amd64"));
    let runs = execs(&graph);
    assert_eq!(
        runs[0].env,
        ["PATH=/bin"],
        "not in a stage's scope by default"
    );
    assert_eq!(
        runs[1].env,
        ["PATH=/bin", "TARGETARCH=amd64", "BUILDPLATFORM=linux/amd64"]
    );
    // `--build-arg` overrides a predefined ARG.
    let graph = build(text, &args(&[("TARGETARCH", "arm64")]));
    assert_eq!(graph.output.base.as_deref(), Some("busybox:linux-arm64"));
    assert_eq!(execs(&graph)[1].env[1], "TARGETARCH=arm64");
}

#[test]
fn targetstage_names_the_target() {
    let text = "FROM busybox AS build\nARG TARGETSTAGE\nRUN echo\nFROM busybox AS final\nARG TARGETSTAGE\nRUN echo\n";
    let graph = build(text, &ConvertOptions::default());
    assert_eq!(execs(&graph).len(), 1, "only the last stage is needed");
    assert_eq!(execs(&graph)[0].env[1], "TARGETSTAGE=final");
    let opts = ConvertOptions {
        target: Some("build".into()),
        ..Default::default()
    };
    let graph = build(text, &opts);
    assert_eq!(execs(&graph)[0].env[1], "TARGETSTAGE=build");
    // An unnamed last stage is `default`, as in BuildKit.
    let graph = build("FROM busybox\nARG TARGETSTAGE\nRUN echo\n", &opts_none());
    assert_eq!(execs(&graph)[0].env[1], "TARGETSTAGE=default");
}

fn opts_none() -> ConvertOptions {
    ConvertOptions::default()
}

#[test]
fn proxy_args_reach_run_but_not_the_digest_or_history() {
    let text = "FROM busybox\nRUN wget x\n";
    let plain = build(text, &opts_none());
    let proxied = build(
        text,
        &args(&[
            ("HTTP_PROXY", "http://proxy:3128"),
            ("no_proxy", "localhost"),
        ]),
    );
    let exec = execs(&proxied)[0];
    assert_eq!(
        exec.env,
        [
            "PATH=/bin",
            "HTTP_PROXY=http://proxy:3128",
            "http_proxy=http://proxy:3128",
            "NO_PROXY=localhost",
            "no_proxy=localhost"
        ]
    );
    assert_eq!(
        exec.cache_excluded_env,
        ["HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"]
    );
    assert_eq!(
        plain.ops[1].digest, proxied.ops[1].digest,
        "the proxy is not part of the cache key"
    );
    assert_eq!(
        plain.output.history[0].created_by,
        proxied.output.history[0].created_by
    );
    // Declared with ARG, it is an ordinary ARG: in history and in the digest.
    let declared = build(
        "FROM busybox\nARG HTTP_PROXY\nRUN wget x\n",
        &args(&[("HTTP_PROXY", "http://proxy:3128")]),
    );
    let exec = execs(&declared)[0];
    assert_eq!(exec.cache_excluded_env, ["http_proxy"]);
    assert_ne!(plain.ops[1].digest, declared.ops[1].digest);
    assert_eq!(
        declared.output.history[1].created_by,
        "RUN |1 HTTP_PROXY=http://proxy:3128 /bin/sh -c wget x # buildkit"
    );
}

#[test]
fn shell_from_the_base_image_wraps_run_cmd_and_entrypoint() {
    let base = ImageConfig {
        shell: Some(vec![
            "/bin/bash".into(),
            "-eo".into(),
            "pipefail".into(),
            "-c".into(),
        ]),
        ..Default::default()
    };
    let graph = build_with("FROM bash\nRUN echo hi\nCMD serve\n", &opts_none(), &base);
    assert_eq!(
        execs(&graph)[0].args,
        ["/bin/bash", "-eo", "pipefail", "-c", "echo hi"]
    );
    assert_eq!(
        graph.output.config.cmd,
        Some(vec![
            "/bin/bash".into(),
            "-eo".into(),
            "pipefail".into(),
            "-c".into(),
            "serve".into()
        ])
    );
    assert_eq!(graph.output.config.shell, base.shell, "SHELL is inherited");
}

#[test]
fn onbuild_of_a_base_stage_runs_once_in_the_child() {
    let text = "FROM busybox AS assets\nRUN make\nFROM busybox AS base\nONBUILD COPY --from=assets /out /out\nONBUILD RUN echo trigger\nFROM base AS child\nRUN echo child\nFROM child\nRUN echo grandchild\n";
    let graph = build(text, &opts_none());
    let commands: Vec<&str> = execs(&graph).iter().map(|e| e.args[2].as_str()).collect();
    assert_eq!(
        commands,
        ["make", "echo trigger", "echo child", "echo grandchild"]
    );
    let copy = copies(&graph)[0];
    assert!(
        matches!(copy.source, CopySource::Op(_)),
        "from the `assets` stage"
    );
    assert!(graph.output.config.on_build.is_empty());
    // The base stage itself keeps its triggers for images built from it.
    let opts = ConvertOptions {
        target: Some("base".into()),
        ..Default::default()
    };
    let graph = build(text, &opts);
    assert_eq!(
        graph.output.config.on_build,
        ["COPY --from=assets /out /out", "RUN echo trigger"]
    );
    assert_eq!(execs(&graph).len(), 0, "`assets` is not needed by `base`");
}

#[test]
fn target_leaves_unneeded_stages_out() {
    let text = "FROM busybox AS a\nRUN echo a\nFROM nothere AS b\nSTOPSIGNAL BOGUS\nCOPY --from=alsonothere / /\n";
    let df = parse(text).unwrap();
    let opts = ConvertOptions {
        target: Some("a".into()),
        ..Default::default()
    };
    assert_eq!(image_references(&df, &opts).unwrap(), ["busybox:latest"]);
    let graph = build(text, &opts);
    assert_eq!(
        graph.ops.len(),
        2,
        "stage `b` is neither converted nor checked"
    );
}

#[test]
fn copy_sources_are_single_words() {
    // As BuildKit: each source is expanded as one word; no word splitting.
    let graph = build(
        "FROM busybox\nARG FILES=\"a b\"\nCOPY $FILES c /dst/\n",
        &opts_none(),
    );
    assert_eq!(copies(&graph)[0].sources, ["a b", "c"]);
}

#[test]
fn duplicate_stage_names_resolve_like_buildkit() {
    let text = "FROM busybox AS x\nRUN echo first\nFROM busybox AS x\nRUN echo second\nFROM x\nCOPY --from=x /a /a\n";
    let graph = build(text, &opts_none());
    let second = graph
        .ops
        .iter()
        .position(|op| op.description == "RUN echo second")
        .unwrap();
    let copy = copies(&graph)[0];
    assert_eq!(copy.rootfs.0, second, "FROM x: the latest stage named x");
    assert!(matches!(copy.source, CopySource::Op(id) if id.0 == second));
}

fn for_target(platform: &str) -> ConvertOptions {
    ConvertOptions {
        platform: crate::Platform::parse(platform).unwrap(),
        build_platform: crate::Platform::parse("linux/amd64").unwrap(),
        ..Default::default()
    }
}

#[test]
fn platforms_are_named_as_containerd_normalizes_them() {
    let parse = |text| crate::Platform::parse(text).map(|p| p.to_string());
    assert_eq!(parse("linux/x86_64").unwrap(), "linux/amd64");
    assert_eq!(parse("amd64/v1").unwrap(), "linux/amd64");
    assert_eq!(parse("Linux/AArch64").unwrap(), "linux/arm64");
    assert_eq!(parse("linux/arm64/v8").unwrap(), "linux/arm64");
    assert_eq!(parse("linux/arm").unwrap(), "linux/arm/v7");
    assert_eq!(parse("linux/arm/6").unwrap(), "linux/arm/v6");
    assert_eq!(parse("armhf").unwrap(), "linux/arm/v7");
    assert_eq!(parse("linux/amd64/v3").unwrap(), "linux/amd64/v3");
    for bad in [
        "",
        "linux/",
        "a/b/c/d",
        "linux/arm 64",
        "foo",
        "linux/arm65",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn target_and_build_platforms_are_told_apart() {
    let text = "\
ARG TARGETPLATFORM
ARG BUILDPLATFORM
FROM --platform=$BUILDPLATFORM busybox AS tools
ARG BUILDARCH
RUN echo on $BUILDARCH
FROM tools AS still-tools
ARG TARGETARCH
RUN echo builds for $TARGETARCH
FROM busybox
COPY --from=still-tools /x /x
RUN echo target
";
    let df = parse(text).unwrap();
    let arm = for_target("linux/arm64");
    assert_eq!(
        crate::image_uses(&df, &arm)
            .unwrap()
            .into_iter()
            .map(|(r, p)| format!("{r} {p}"))
            .collect::<Vec<_>>(),
        ["busybox:latest linux/amd64", "busybox:latest linux/arm64"]
    );
    let graph = build(text, &arm);
    let runs: Vec<_> = graph
        .ops
        .iter()
        .filter(|op| matches!(op.kind, OpKind::Exec(_)))
        .collect();
    let platforms: Vec<String> = runs.iter().map(|op| op.platform.to_string()).collect();
    // A stage FROM a build-platform stage stays on the build platform.
    assert_eq!(platforms, ["linux/amd64", "linux/amd64", "linux/arm64"]);
    let env = |op: &crate::Op| match &op.kind {
        OpKind::Exec(exec) => exec.env.clone(),
        _ => unreachable!(),
    };
    assert!(env(runs[0]).iter().any(|e| e == "BUILDARCH=amd64"));
    assert!(env(runs[1]).iter().any(|e| e == "TARGETARCH=arm64"));

    // A build-platform step that reads no TARGET* is the same op for either target (so a
    // multi-platform build runs it once); one that reads TARGETARCH is not, nor is the
    // target's own step.
    let amd = build(text, &for_target("linux/amd64"));
    let digests = |graph: &BuildGraph| -> Vec<String> {
        graph
            .ops
            .iter()
            .filter(|op| matches!(op.kind, OpKind::Exec(_)))
            .map(|op| op.digest.0.clone())
            .collect()
    };
    let (arm_digests, amd_digests) = (digests(&graph), digests(&amd));
    assert_eq!(arm_digests[0], amd_digests[0]);
    assert_ne!(arm_digests[1], amd_digests[1]);
    assert_ne!(arm_digests[2], amd_digests[2]);
}

#[test]
fn a_platform_that_is_not_one_is_an_error_on_its_from_line() {
    let df = parse("FROM busybox\nFROM --platform=linux/arm/6/x busybox\n").unwrap();
    let err = crate::image_uses(&df, &ConvertOptions::default()).unwrap_err();
    assert!(err.to_string().contains("linux/arm/6/x"), "{err}");
    assert_eq!(err.span().line_col(&df_text()).0, 2);
}

fn df_text() -> String {
    "FROM busybox\nFROM --platform=linux/arm/6/x busybox\n".to_owned()
}

#[test]
fn merged_graphs_keep_every_ops_inputs() {
    // Every kind of op input: rootfs, COPY --from a stage and an image, RUN --mount from a
    // stage and a cache seeded from one.
    let text = "\
FROM busybox AS a
RUN echo a
FROM busybox
COPY --from=a /x /x
COPY --from=alpine /y /y
RUN --mount=type=bind,from=a,target=/m --mount=type=cache,target=/c,from=a echo
WORKDIR /w
";
    let amd = build(text, &for_target("linux/amd64"));
    let arm = build(text, &for_target("linux/arm64"));
    let offset = amd.ops.len();
    let (merged, outputs) = BuildGraph::merge(vec![amd.clone(), arm.clone()]);
    assert_eq!(merged.ops.len(), offset + arm.ops.len());
    assert_eq!(outputs[0].root, amd.output.root);
    assert_eq!(outputs[1].root.0, arm.output.root.0 + offset);
    assert_eq!(merged.output.root, amd.output.root);
    for (graph, start) in [(&amd, 0), (&arm, offset)] {
        for (index, op) in graph.ops.iter().enumerate() {
            let shifted: Vec<usize> = op.kind.inputs().iter().map(|id| id.0 + start).collect();
            let merged_inputs: Vec<usize> = merged.ops[start + index]
                .kind
                .inputs()
                .iter()
                .map(|id| id.0)
                .collect();
            assert_eq!(merged_inputs, shifted, "{}", op.description);
            assert_eq!(merged.ops[start + index].digest, op.digest);
        }
    }
}
