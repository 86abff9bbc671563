//! Conversion semantics: ARG/ENV scoping, CMD/ENTRYPOINT, stages, ONBUILD, history.

use std::collections::BTreeMap;

use crate::{
    BuildGraph, ConvertOptions, CopySource, ErrorKind, ImageConfig, OpKind, convert,
    image_references, parse,
};

fn busybox() -> ImageConfig {
    ImageConfig {
        env: vec!["PATH=/bin".to_string()],
        cmd: Some(vec!["sh".to_string()]),
        ..Default::default()
    }
}

fn build_with(text: &str, opts: &ConvertOptions) -> BuildGraph {
    let df = parse(text).unwrap();
    let bases: BTreeMap<String, ImageConfig> = image_references(&df, opts)
        .unwrap()
        .into_iter()
        .map(|r| (r, busybox()))
        .collect();
    convert(&df, opts, &bases).unwrap()
}

fn build(text: &str) -> BuildGraph {
    build_with(text, &ConvertOptions::default())
}

fn execs(graph: &BuildGraph) -> Vec<&crate::ExecOp> {
    graph
        .ops
        .iter()
        .filter_map(|op| match &op.kind {
            OpKind::Exec(exec) => Some(exec),
            _ => None,
        })
        .collect()
}

fn history(graph: &BuildGraph) -> Vec<&str> {
    graph
        .output
        .history
        .iter()
        .map(|h| h.created_by.as_str())
        .collect()
}

#[test]
fn env_values_are_taken_from_before_the_instruction() {
    let graph = build("FROM busybox\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$def\n");
    let config = &graph.output.config;
    assert_eq!(config.env_value("abc"), Some("bye"));
    assert_eq!(config.env_value("def"), Some("hello"));
    assert_eq!(config.env_value("ghi"), Some("hello"));
    assert_eq!(history(&graph)[1], "ENV abc=bye def=hello");
}

#[test]
fn arg_scoping() {
    let text = "ARG TAG=1.0\nARG UNUSED=x\nFROM busybox:$TAG\nRUN echo a\nARG TAG\nARG LOCAL=l-$TAG\nRUN echo b\nENV LOCAL=env\nRUN echo c\n";
    let graph = build(text);
    assert_eq!(graph.output.base.as_deref(), Some("busybox:1.0"));
    let runs = execs(&graph);
    assert_eq!(runs[0].env, ["PATH=/bin"]);
    assert_eq!(runs[1].env, ["PATH=/bin", "TAG=1.0", "LOCAL=l-1.0"]);
    // ENV overrides the ARG of the same name.
    assert_eq!(runs[2].env, ["PATH=/bin", "LOCAL=env", "TAG=1.0"]);
    // ARGs never reach the config.
    assert_eq!(graph.output.config.env, ["PATH=/bin", "LOCAL=env"]);
    let history = history(&graph);
    assert_eq!(
        history[3],
        "RUN |2 TAG=1.0 LOCAL=l-1.0 /bin/sh -c echo b # buildkit"
    );
    assert_eq!(history[2], "ARG LOCAL=l-1.0");

    let opts = ConvertOptions {
        build_args: [
            ("TAG".to_string(), "2.0".to_string()),
            ("LOCAL".to_string(), "cli".to_string()),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let graph = build_with(text, &opts);
    assert_eq!(graph.output.base.as_deref(), Some("busybox:2.0"));
    assert_eq!(execs(&graph)[1].env, ["PATH=/bin", "TAG=2.0", "LOCAL=cli"]);
}

#[test]
fn arg_without_value_is_unset_and_empty_value_is_set() {
    let graph = build("FROM busybox\nARG FOO\nARG BAR=\nRUN env\n");
    assert_eq!(execs(&graph)[0].env, ["PATH=/bin", "BAR="]);
}

#[test]
fn args_and_env_are_inherited_from_stage_bases_only() {
    let text =
        "FROM busybox AS base\nARG A=1\nENV E=2\nFROM base AS child\nRUN x\nFROM busybox\nRUN y\n";
    let graph = build_with(
        text,
        &ConvertOptions {
            target: Some("CHILD".into()),
            ..Default::default()
        },
    );
    assert_eq!(execs(&graph)[0].env, ["PATH=/bin", "E=2", "A=1"]);
    assert_eq!(
        execs(&graph).len(),
        1,
        "the last stage is not needed for `child`"
    );
    let graph = build(text);
    assert_eq!(execs(&graph)[0].env, ["PATH=/bin"]);
}

#[test]
fn cmd_and_entrypoint() {
    // An ENTRYPOINT clears the inherited CMD.
    let graph = build("FROM busybox\nENTRYPOINT [\"/app\"]\n");
    assert_eq!(graph.output.config.cmd, None);
    assert_eq!(
        graph.output.config.entrypoint,
        Some(vec!["/app".to_string()])
    );
    // But not a CMD set in this stage.
    let graph = build("FROM busybox\nCMD [\"--help\"]\nENTRYPOINT /app run\n");
    assert_eq!(graph.output.config.cmd, Some(vec!["--help".to_string()]));
    assert_eq!(
        graph.output.config.entrypoint,
        Some(vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            "/app run".to_string()
        ])
    );
    // SHELL changes the wrapper, in the config too.
    let graph = build("FROM busybox\nSHELL [\"ls\"]\nENTRYPOINT my entrypoint\nCMD x\n");
    assert_eq!(
        graph.output.config.entrypoint,
        Some(vec!["ls".to_string(), "my entrypoint".to_string()])
    );
    assert_eq!(
        history(&graph),
        [
            "SHELL [ls]",
            "ENTRYPOINT [\"ls\" \"my entrypoint\"]",
            "CMD [\"ls\" \"x\"]"
        ]
    );
}

#[test]
fn stage_references() {
    let text = "FROM busybox AS Build\nRUN make\nFROM scratch\nCOPY --from=build /out /a\nCOPY --from=0 /out /b\nCOPY --from=alpine:3 /etc/os-release /c\n";
    let df = parse(text).unwrap();
    assert_eq!(
        image_references(&df, &ConvertOptions::default()).unwrap(),
        ["busybox:latest", "alpine:3"]
    );
    let graph = build(text);
    let copies: Vec<_> = graph
        .ops
        .iter()
        .filter_map(|op| match &op.kind {
            OpKind::Copy(copy) => Some(copy),
            _ => None,
        })
        .collect();
    let build_root = crate::OpId(1);
    assert!(matches!(copies[0].source, CopySource::Op(id) if id == build_root));
    assert!(matches!(copies[1].source, CopySource::Op(id) if id == build_root));
    let CopySource::Op(image) = copies[2].source else {
        panic!()
    };
    assert!(
        matches!(&graph.op(image).kind, OpKind::Image { reference } if reference == "alpine:3")
    );
    assert_eq!(graph.output.base, None);
    // Ops are in topological order.
    for (index, op) in graph.ops.iter().enumerate() {
        assert!(op.kind.inputs().iter().all(|input| input.0 < index));
    }
}

#[test]
fn copy_from_a_later_stage_is_an_error() {
    let df = parse("FROM busybox\nCOPY --from=later /x /y\nFROM busybox AS later\n").unwrap();
    let opts = ConvertOptions {
        target: None,
        ..Default::default()
    };
    // Only the stages the target needs are checked.
    assert!(image_references(&df, &opts).is_ok());
    let opts = ConvertOptions {
        target: Some("later".into()),
        ..Default::default()
    };
    assert!(image_references(&df, &opts).is_ok());
    let df = parse(
        "FROM busybox\nCOPY --from=later /x /y\nFROM busybox AS later\nCOPY --from=0 /a /b\n",
    )
    .unwrap();
    let error = image_references(&df, &ConvertOptions::default()).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::StageOrder);
}

#[test]
fn unknown_target() {
    let df = parse("FROM busybox AS a\n").unwrap();
    let opts = ConvertOptions {
        target: Some("b".into()),
        ..Default::default()
    };
    let error = image_references(&df, &opts).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::UnknownTarget);
    assert_eq!(error.help(), Some("named stages are `a`"));
}

#[test]
fn scratch_gets_default_path() {
    let graph = build("FROM scratch\nCOPY a /\n");
    assert_eq!(
        graph.output.config.env,
        [format!("PATH={}", crate::DEFAULT_PATH)]
    );
    assert!(matches!(graph.ops[0].kind, OpKind::Scratch));
}

#[test]
fn workdir_chains_and_creates_directories() {
    let graph = build(
        "FROM busybox\nWORKDIR /a\nENV D=c\nWORKDIR b/$D\nUSER app\nWORKDIR ../d\nWORKDIR /\nCOPY x .\nRUN pwd\n",
    );
    let mkdirs: Vec<(String, String)> = graph
        .ops
        .iter()
        .filter_map(|op| match &op.kind {
            OpKind::Mkdir(m) => Some((m.path.clone(), m.owner.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        mkdirs,
        [
            ("/a".into(), "".into()),
            ("/a/b/c".into(), "".into()),
            ("/a/b/d".into(), "app".into())
        ]
    );
    let copy = graph.ops.iter().find_map(|op| match &op.kind {
        OpKind::Copy(copy) => Some(copy),
        _ => None,
    });
    assert_eq!(copy.unwrap().destination, "/");
    assert_eq!(execs(&graph)[0].cwd, "/");
    let history = history(&graph);
    assert_eq!(history[0], "WORKDIR /a");
    assert!(
        graph.output.history[5].empty_layer,
        "WORKDIR / adds no layer"
    );
}

#[test]
fn metadata_instructions() {
    let graph = build(
        "FROM busybox\nARG PORTS=\"3000 4000/udp\"\nEXPOSE $PORTS 80\nLABEL a=b \"c d\"=e\nVOLUME /data\nSTOPSIGNAL SIGKILL\nHEALTHCHECK --interval=5s CMD true\nMAINTAINER me\n",
    );
    let config = &graph.output.config;
    let ports: Vec<&str> = config.exposed_ports.keys().map(String::as_str).collect();
    assert_eq!(ports, ["3000/tcp", "4000/udp", "80/tcp"]);
    assert_eq!(config.labels.get("c d").map(String::as_str), Some("e"));
    assert!(config.volumes.contains_key("/data"));
    assert_eq!(config.stop_signal.as_deref(), Some("SIGKILL"));
    let history = history(&graph);
    assert_eq!(history[1], "EXPOSE [3000/tcp 4000/udp 80/tcp]");
    assert_eq!(history[2], "LABEL a=b c d=e");
    assert!(graph.output.history.iter().all(|h| h.empty_layer));
    assert!(graph.ops.len() == 1);
}

#[test]
fn invalid_values_are_errors() {
    for text in [
        "FROM busybox\nEXPOSE 80/xyz\n",
        "FROM busybox\nSTOPSIGNAL SIGNOPE\n",
        "FROM busybox\nCOPY --chmod=999 a /b\n",
        "FROM busybox\nARG E\nWORKDIR $E\n",
        "FROM busybox\nRUN ${X:?}\nENV A=\"${B:?must be set}\"\n",
    ] {
        let df = parse(text).unwrap();
        let bases: BTreeMap<String, ImageConfig> = [("busybox:latest".to_string(), busybox())]
            .into_iter()
            .collect();
        assert!(
            convert(&df, &ConvertOptions::default(), &bases).is_err(),
            "{text}"
        );
    }
    let df = parse("FROM busybox\nENV A=\"${B:?must be set}\"\n").unwrap();
    let bases: BTreeMap<String, ImageConfig> = [("busybox:latest".to_string(), busybox())]
        .into_iter()
        .collect();
    let error = convert(&df, &ConvertOptions::default(), &bases).unwrap_err();
    assert_eq!(error.to_string(), "B: must be set");
    assert_eq!(error.span(), crate::Span::new(17, 38));
}

#[test]
fn missing_base_config_is_an_error() {
    let df = parse("FROM busybox\n").unwrap();
    let error = convert(&df, &ConvertOptions::default(), &BTreeMap::new()).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::MissingBaseConfig);
}

#[test]
fn onbuild_triggers_run_once() {
    let df = parse("FROM base\nRUN child\n").unwrap();
    let base = ImageConfig {
        on_build: vec!["RUN echo trigger".to_string(), "ENV T=1".to_string()],
        ..Default::default()
    };
    let bases: BTreeMap<String, ImageConfig> =
        [("base:latest".to_string(), base)].into_iter().collect();
    let graph = convert(&df, &ConvertOptions::default(), &bases).unwrap();
    let args: Vec<&str> = execs(&graph).iter().map(|e| e.args[2].as_str()).collect();
    assert_eq!(args, ["echo trigger", "child"]);
    assert!(graph.output.config.on_build.is_empty());
    assert_eq!(graph.output.config.env_value("T"), Some("1"));

    let df = parse("FROM base\nONBUILD RUN later\n").unwrap();
    let base = ImageConfig {
        on_build: vec!["ONBUILD RUN x".to_string()],
        ..Default::default()
    };
    let bases: BTreeMap<String, ImageConfig> =
        [("base:latest".to_string(), base)].into_iter().collect();
    let error = convert(&df, &ConvertOptions::default(), &bases).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidOnbuild);
}

#[test]
fn onbuild_is_stored_and_not_run() {
    let graph = build("FROM busybox\nONBUILD   RUN echo hi\n");
    assert_eq!(graph.output.config.on_build, ["RUN echo hi"]);
    assert!(execs(&graph).is_empty());
}

#[test]
fn heredocs() {
    let graph = build(
        "FROM busybox\nARG N=x\nRUN <<EOF\necho $N\nEOF\nRUN cat <<A > /f\nhi\nA\nCOPY <<F <<'G' /dst/\n$N\nF\n$N\nG\n",
    );
    let runs = execs(&graph);
    assert_eq!(runs[0].args, ["/bin/sh", "-c", "echo $N\n"]);
    assert_eq!(runs[1].args, ["/bin/sh", "-c", "cat <<A > /f\nhi\nA"]);
    let copy = graph.ops.iter().find_map(|op| match &op.kind {
        OpKind::Copy(copy) => Some(copy),
        _ => None,
    });
    let CopySource::Inline(files) = &copy.unwrap().source else {
        panic!()
    };
    assert_eq!(files[0].content, "x\n");
    assert_eq!(files[1].content, "$N\n");
    assert_eq!(history(&graph)[3], "COPY <<F <<G /dst/ # buildkit");
}

#[test]
fn copy_destinations_and_flags() {
    let graph = build(
        "FROM busybox\nWORKDIR /app\nARG U=1000\nCOPY --chown=$U:$U --chmod=755 a b ./\nCOPY f sub/file\nCOPY f $EMPTY\n",
    );
    let copies: Vec<_> = graph
        .ops
        .iter()
        .filter_map(|op| match &op.kind {
            OpKind::Copy(copy) => Some(copy),
            _ => None,
        })
        .collect();
    assert_eq!(copies[0].destination, "/app/");
    assert_eq!(copies[0].chown.as_deref(), Some("1000:1000"));
    assert_eq!(copies[1].destination, "/app/sub/file");
    assert_eq!(copies[2].destination, "/app/");
    assert_eq!(
        history(&graph)[2],
        "COPY --chown=1000:1000 --chmod=755 a b ./ # buildkit"
    );
}

#[test]
fn run_network_and_exec_form() {
    let graph = build("FROM busybox\nRUN --network=none [\"echo\", \"$HOME\"]\n");
    let run = execs(&graph)[0];
    assert_eq!(run.args, ["echo", "$HOME"]);
    assert_eq!(run.network, crate::NetworkMode::None);
    assert_eq!(history(&graph)[0], "RUN echo $HOME # buildkit");
}

#[test]
fn run_security_insecure_is_part_of_the_step() {
    let sandboxed = build("FROM busybox\nRUN --security=sandbox mount -a\n");
    let default = build("FROM busybox\nRUN mount -a\n");
    let insecure = build("FROM busybox\nRUN --security=insecure mount -a\n");
    assert!(!execs(&sandboxed)[0].insecure && !execs(&default)[0].insecure);
    assert!(execs(&insecure)[0].insecure);
    // `sandbox` is the default: the same step; `insecure` is another one.
    assert_eq!(sandboxed.ops[1].digest, default.ops[1].digest);
    assert_ne!(insecure.ops[1].digest, default.ops[1].digest);
}

#[test]
fn digests_are_stable_and_ignore_layout() {
    let a = build("FROM busybox\nRUN echo hi\n");
    let b = build("\n\nFROM busybox AS x\n\n# comment\nrun   echo hi\n");
    let digests = |g: &BuildGraph| g.ops.iter().map(|o| o.digest.clone()).collect::<Vec<_>>();
    assert_eq!(digests(&a), digests(&b));
    let c = build("FROM busybox\nRUN echo ho\n");
    assert_ne!(digests(&a)[1], digests(&c)[1]);
    assert_eq!(digests(&a)[0], digests(&c)[0]);
}

fn convert_error(text: &str) -> crate::Error {
    let df = parse(text).unwrap();
    let bases: BTreeMap<String, ImageConfig> = image_references(&df, &ConvertOptions::default())
        .unwrap()
        .into_iter()
        .map(|r| (r, busybox()))
        .collect();
    convert(&df, &ConvertOptions::default(), &bases).unwrap_err()
}

fn copies(graph: &BuildGraph) -> Vec<&crate::CopyOp> {
    graph
        .ops
        .iter()
        .filter_map(|op| match &op.kind {
            OpKind::Copy(copy) => Some(copy),
            _ => None,
        })
        .collect()
}

const SUM: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

#[test]
fn add_url_is_a_context_copy_with_url_sources() {
    let graph = build(&format!(
        "FROM busybox\nARG SUM={SUM}\nADD --checksum=$SUM https://example.com/a/foo.tar.gz?x=1 /dest/\nADD https://example.com/b local.txt /mixed/\n"
    ));
    let copies = copies(&graph);
    assert!(matches!(copies[0].source, CopySource::Context));
    assert_eq!(copies[0].sources, ["https://example.com/a/foo.tar.gz?x=1"]);
    assert_eq!(copies[0].checksum.as_deref(), Some(SUM));
    assert_eq!(copies[1].checksum, None);
    assert!(crate::CopyOp::is_url(&copies[1].sources[0]));
    assert!(!crate::CopyOp::is_url(&copies[1].sources[1]));
    assert_eq!(
        history(&graph)[1],
        format!("ADD --checksum={SUM} https://example.com/a/foo.tar.gz?x=1 /dest/ # buildkit")
    );
    // The checksum is part of the definition.
    let other = build("FROM busybox\nADD https://example.com/a/foo.tar.gz?x=1 /dest/\n");
    assert_ne!(graph.ops[1].digest, other.ops[1].digest);
}

#[test]
fn add_checksum_on_a_local_source_is_rejected() {
    let error = convert_error(&format!(
        "FROM busybox\nADD --checksum={SUM} file.txt /dest/\n"
    ));
    assert_eq!(error.kind(), ErrorKind::InvalidFlag);
    assert!(error.to_string().contains("`file.txt`"), "{error}");
    let error = convert_error(&format!(
        "FROM busybox\nADD --checksum={SUM} https://a/x https://a/y /dest/\n"
    ));
    assert!(error.to_string().contains("single source"), "{error}");
}

#[test]
fn sources_with_a_scheme_rbuild_cannot_fetch_are_refused_by_name() {
    for (text, source) in [
        (
            "ADD file:///srv/repo.git#main /src/",
            "file:///srv/repo.git#main",
        ),
        ("COPY ftp://host/x /x", "ftp://host/x"),
    ] {
        let dockerfile = format!("FROM busybox\n{text}\n");
        let error = convert_error(&dockerfile);
        assert!(
            error
                .to_string()
                .contains(&format!("cannot fetch `{source}`")),
            "{error}"
        );
        assert!(
            error.help().is_some_and(|h| h.contains("build context")),
            "{error}"
        );
        // On the instruction's line.
        assert!(
            error.span().start > dockerfile.find('\n').unwrap(),
            "{error}"
        );
    }
    // A path in the context that merely contains `://` further on is a path.
    build("FROM busybox\nCOPY dir/a://b /x\n");
}

#[test]
fn add_checksum_must_be_sha256_and_64_hex() {
    for bad in [
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha256:abc",
        "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
        "sha256:2C26B46B68FFC68FF99B453C1D30413413422D706483BFA0F98A5E886266E7AE",
        "sha256:zz26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
    ] {
        let error = convert_error(&format!(
            "FROM busybox\nADD --checksum={bad} https://a/x /x\n"
        ));
        assert_eq!(error.kind(), ErrorKind::InvalidFlag, "{bad}");
        assert!(
            error.to_string().contains("invalid `--checksum` value"),
            "{bad}: {error}"
        );
    }
}

#[test]
fn copy_from_a_url_is_rejected_and_add_from_git_reads_a_repository() {
    let error = convert_error("FROM busybox\nCOPY https://a/x /x\n");
    assert_eq!(error.kind(), ErrorKind::InvalidValue);
    let error = convert_error("FROM busybox\nCOPY git@github.com:a/b.git /src\n");
    assert_eq!(error.kind(), ErrorKind::InvalidValue);
    let error = parse("FROM busybox\nCOPY --checksum=sha256:00 x /x\n").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::UnknownFlag);

    let commit = "0123456789abcdef0123456789abcdef01234567";
    let graph = build(&format!(
        "FROM busybox\nADD --keep-git-dir --checksum={commit} https://github.com/a/b.git#main:docs /src\n"
    ));
    let OpKind::Copy(copy) = &graph.ops[1].kind else {
        panic!("{:?}", graph.ops[1].kind);
    };
    let CopySource::Git(git) = &copy.source else {
        panic!("{:?}", copy.source);
    };
    assert_eq!(git.remote, "https://github.com/a/b.git");
    assert_eq!(git.reference.as_deref(), Some("main"));
    assert_eq!(git.subdir.as_deref(), Some("docs"));
    assert_eq!(git.checksum.as_deref(), Some(commit));
    assert!(git.keep_git_dir);
    assert_eq!(copy.sources, ["."]);
    assert_eq!(copy.checksum, None);
    for (text, message) in [
        (
            "ADD https://h/r.git#main:../x /src",
            "leaves the repository",
        ),
        ("ADD https://h/r.git a.txt /src/", "must be the only source"),
        (
            "ADD --checksum=sha256:00 https://h/r.git /src",
            "is not a commit",
        ),
        ("ADD --keep-git-dir a.txt /src/", "needs a git source"),
    ] {
        let dockerfile = format!("FROM busybox\n{text}\n");
        let error = convert_error(&dockerfile);
        assert!(error.to_string().contains(message), "{text}: {error}");
    }
}

fn named(contexts: &[(&str, crate::NamedContext)]) -> ConvertOptions {
    ConvertOptions {
        named_contexts: contexts
            .iter()
            .map(|(name, context)| (name.to_string(), context.clone()))
            .collect(),
        ..Default::default()
    }
}

/// `--build-context NAME=docker-image://REF` replaces the image of that name, written
/// with or without `:latest`, in FROM, `COPY --from` and `RUN --mount=from`.
#[test]
fn a_named_image_context_replaces_the_image_of_its_name() {
    let opts = named(&[(
        "busybox",
        crate::NamedContext::Image("registry.local/busybox:1.36".into()),
    )]);
    let df = parse(
        "FROM busybox:latest\nCOPY --from=busybox /bin/sh /sh\n\
         RUN --mount=from=busybox,target=/b true\n",
    )
    .unwrap();
    assert_eq!(
        image_references(&df, &opts).unwrap(),
        ["registry.local/busybox:1.36"]
    );
    let graph = build_with(
        "FROM busybox:latest\nCOPY --from=busybox /bin/sh /sh\n",
        &opts,
    );
    let images: Vec<&str> = graph
        .ops
        .iter()
        .filter_map(|op| match &op.kind {
            OpKind::Image { reference } => Some(reference.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(images, ["registry.local/busybox:1.36"; 2]);
}

/// A local named context replaces a stage of its name (the stage is not built), and
/// `FROM NAME` starts from its files.
#[test]
fn a_local_named_context_replaces_a_stage_and_can_be_a_base() {
    let opts = named(&[("deps", crate::NamedContext::Local)]);
    let graph = build_with(
        "FROM busybox AS deps\nRUN exit 1\nFROM busybox\nCOPY --from=deps /lib /lib\n\
         RUN --mount=from=deps,target=/d true\n",
        &opts,
    );
    assert!(
        execs(&graph)
            .iter()
            .all(|exec| exec.args != ["/bin/sh", "-c", "exit 1"])
    );
    assert!(graph.ops.iter().any(|op| matches!(
        &op.kind,
        OpKind::Copy(copy) if matches!(&copy.source, CopySource::Named(n) if n == "deps")
    )));
    let graph = build_with("FROM deps\nRUN true\n", &opts);
    let OpKind::Copy(copy) = &graph.ops[1].kind else {
        panic!("{:?}", graph.ops[1].kind);
    };
    assert!(matches!(&copy.source, CopySource::Named(n) if n == "deps"));
    assert_eq!(
        (copy.sources.as_slice(), copy.destination.as_str()),
        (&[".".to_owned()][..], "/")
    );
    let df = parse("FROM busybox AS deps\nFROM busybox\nCOPY --from=deps /a /b\n").unwrap();
    assert_eq!(image_references(&df, &opts).unwrap(), ["busybox:latest"]);
    // A cache mount cannot be filled from a directory of the host.
    let df = parse("FROM busybox\nRUN --mount=type=cache,from=deps,target=/c true\n").unwrap();
    let bases = BTreeMap::from([("busybox:latest".to_string(), busybox())]);
    let error = convert(&df, &opts, &bases).unwrap_err();
    assert!(
        error.to_string().contains("named context `deps`"),
        "{error}"
    );
}
