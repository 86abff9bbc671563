//! Build checks: each rule fires where BuildKit's does, and not where it doesn't.

use std::collections::BTreeMap;

use super::*;
use crate::ImageConfig;
use crate::instructions::parse;

fn rules(text: &str) -> Vec<&'static str> {
    check(text)
        .unwrap()
        .warnings
        .iter()
        .map(|w| w.rule.name())
        .collect()
}

#[test]
fn rule_names_and_urls() {
    assert_eq!(
        Rule::parse("JSONArgsRecommended"),
        Some(Rule::JsonArgsRecommended)
    );
    assert_eq!(
        Rule::JsonArgsRecommended.url(),
        "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"
    );
    assert_eq!(
        Rule::UndefinedArgInFrom.url(),
        "https://docs.docker.com/go/dockerfile/rule/undefined-arg-in-from/"
    );
}

#[test]
fn clean_file_has_no_warnings() {
    let text = "ARG TAG=1\nFROM busybox:$TAG AS build\nWORKDIR /app\nARG V\nCOPY $V x /app/\nENV A=1\nRUN echo $UNSET_IN_SHELL\nFROM build\nCMD [\"sh\"]\nEXPOSE 80/tcp\n";
    assert_eq!(rules(text), Vec::<&str>::new());
}

#[test]
fn json_args_recommended_unless_shell_is_set() {
    assert_eq!(rules("FROM a\nCMD echo hi\n"), ["JSONArgsRecommended"]);
    assert_eq!(rules("FROM a\nENTRYPOINT run\n"), ["JSONArgsRecommended"]);
    assert!(rules("FROM a\nSHELL [\"/bin/bash\", \"-c\"]\nCMD echo hi\n").is_empty());
    // RUN's shell form is fine.
    assert!(rules("FROM a\nRUN echo hi\n").is_empty());
}

#[test]
fn consistent_instruction_casing() {
    let checks = check("FROM a\nRun echo\nrun x\nCMD [\"a\"]\n").unwrap();
    let casing: Vec<&Warning> = checks
        .warnings
        .iter()
        .filter(|w| w.rule == Rule::ConsistentInstructionCasing)
        .collect();
    // Upper wins the tie (FROM, CMD vs run); `Run` and `run` are reported.
    assert_eq!(casing.len(), 2);
    assert_eq!(casing[0].help.as_deref(), Some("write `RUN`"));
    assert!(rules("from a\nrun x\ncmd [\"a\"]\n").is_empty());
}

#[test]
fn undefined_var() {
    let checks = check("FROM a\nENV PATH=$PAHT:/app\nCOPY $foo .\n").unwrap();
    let undefined: Vec<&Warning> = checks
        .warnings
        .iter()
        .filter(|w| w.rule == Rule::UndefinedVar)
        .collect();
    assert_eq!(undefined.len(), 2);
    assert_eq!(undefined[0].message, "usage of undefined variable `$PAHT`");
    assert_eq!(undefined[0].help.as_deref(), Some("did you mean `$PATH`?"));
    // Declared without a value, or defined by a base image: fine.
    assert!(rules("FROM a\nARG foo\nCOPY $foo .\n").is_empty());
    let df = parse("FROM python\nARG VERSION=$PYTHON_VERSION\n").unwrap();
    let python = ImageConfig {
        env: vec!["PYTHON_VERSION=3.12".into()],
        ..Default::default()
    };
    let bases: BTreeMap<String, ImageConfig> = [("python:latest".to_string(), python)]
        .into_iter()
        .collect();
    let checks = lint(&df, &ConvertOptions::default(), &bases, LintScope::Target).unwrap();
    assert!(checks.warnings.is_empty(), "{:?}", checks.warnings);
    // Shell-form RUN is the shell's business; platform ARGs need redeclaring in a stage.
    assert!(rules("FROM a\nRUN echo $X\n").is_empty());
    assert_eq!(rules("FROM a\nCOPY $TARGETARCH /x\n"), ["UndefinedVar"]);
}

#[test]
fn from_line_args() {
    assert_eq!(
        rules("FROM node:22${VARIANT} AS js\n"),
        ["UndefinedArgInFrom"]
    );
    assert!(rules("ARG VARIANT=-alpine\nFROM node:22${VARIANT}\n").is_empty());
    assert!(rules("FROM --platform=$BUILDPLATFORM a\n").is_empty());
    let checks = check("FROM --platform=$BUILDPLATFROM a\n").unwrap();
    assert_eq!(
        checks.warnings[0].help.as_deref(),
        Some("did you mean `BUILDPLATFORM`?")
    );
    // Valid with `--build-arg TAG=1`, invalid without.
    let df = parse("ARG TAG\nFROM busybox:${TAG}\n").unwrap();
    let opts = ConvertOptions {
        build_args: [("TAG".to_string(), "1".to_string())].into_iter().collect(),
        ..Default::default()
    };
    let checks = lint(&df, &opts, &BTreeMap::new(), LintScope::AllStages).unwrap();
    let rules_found: Vec<Rule> = checks.warnings.iter().map(|w| w.rule).collect();
    assert_eq!(rules_found, [Rule::InvalidDefaultArgInFrom]);
    assert!(rules("ARG VARIANT\nFROM busybox:stable${VARIANT}\n").is_empty());
    assert!(rules("ARG TAG\nFROM alpine:${TAG:-3.14}\n").is_empty());
}

#[test]
fn stage_names() {
    assert_eq!(rules("FROM a AS Build\n"), ["StageNameCasing"]);
    assert_eq!(rules("FROM a AS scratch\n"), ["ReservedStageName"]);
    assert_eq!(rules("FROM a AS x\nFROM b AS x\n"), ["DuplicateStageName"]);
    assert_eq!(rules("FROM a as x\n"), ["FromAsCasing"]);
    assert_eq!(
        rules("FROM --platform=$TARGETPLATFORM a\n"),
        ["RedundantTargetPlatform"]
    );
    assert_eq!(
        rules("FROM --platform=${TARGETPLATFORM} a AS b\n"),
        ["RedundantTargetPlatform"]
    );
    assert_eq!(
        rules("FROM --platform=linux/amd64 a AS base\n"),
        ["FromPlatformFlagConstDisallowed"]
    );
    assert!(rules("FROM --platform=linux/arm64 a AS build_arm64\n").is_empty());
    assert!(rules("FROM --platform=$BUILDPLATFORM a AS base\n").is_empty());
    assert!(rules("from a as x\n").is_empty());
}

#[test]
fn workdir_relative_path() {
    assert_eq!(
        rules("FROM a\nWORKDIR app\nWORKDIR src\n"),
        ["WorkdirRelativePath"]
    );
    assert!(rules("FROM a\nWORKDIR /app\nWORKDIR src\n").is_empty());
    // An absolute WORKDIR in the base stage counts.
    assert!(rules("FROM a AS b\nWORKDIR /app\nFROM b\nWORKDIR src\n").is_empty());
}

#[test]
fn expose_formats() {
    assert_eq!(
        rules("FROM a\nEXPOSE 127.0.0.1:80:80\n"),
        ["ExposeInvalidFormat"]
    );
    assert_eq!(rules("FROM a\nEXPOSE 80/TcP\n"), ["ExposeProtoCasing"]);
}

#[test]
fn legacy_key_value_format() {
    let checks = check("FROM a\nENV DEPS curl git\nLABEL k v\n").unwrap();
    let rules: Vec<Rule> = checks.warnings.iter().map(|w| w.rule).collect();
    assert_eq!(
        rules,
        [Rule::LegacyKeyValueFormat, Rule::LegacyKeyValueFormat]
    );
    assert_eq!(
        checks.warnings[0].help.as_deref(),
        Some("write `ENV DEPS=\"curl git\"`")
    );
}

#[test]
fn empty_continuation_maintainer_and_secrets() {
    assert_eq!(rules("FROM a\nEXPOSE \\\n\n80\n"), ["NoEmptyContinuation"]);
    assert!(rules("FROM a\nEXPOSE \\\n# port\n80\n").is_empty());
    assert_eq!(rules("FROM a\nMAINTAINER me\n"), ["MaintainerDeprecated"]);
    assert_eq!(
        rules("FROM a\nARG AWS_SECRET_ACCESS_KEY\nENV GITHUB_TOKEN=x\nARG PUBLIC_KEY\n"),
        ["SecretsUsedInArgOrEnv", "SecretsUsedInArgOrEnv"]
    );
}

#[test]
fn multiple_instructions_disallowed_points_at_the_ignored_one() {
    let text = "FROM a\nCMD [\"a\"]\nCMD [\"b\"]\nHEALTHCHECK NONE\nHEALTHCHECK NONE\n";
    let checks = check(text).unwrap();
    let rules: Vec<Rule> = checks.warnings.iter().map(|w| w.rule).collect();
    assert_eq!(
        rules,
        [
            Rule::MultipleInstructionsDisallowed,
            Rule::MultipleInstructionsDisallowed
        ]
    );
    assert_eq!(checks.warnings[0].span.line_col(text), (2, 1));
    // One per stage: a new stage starts over.
    assert!(self::rules("FROM a AS b\nCMD [\"a\"]\nFROM b\nCMD [\"b\"]\n").is_empty());
}

#[test]
fn check_directive() {
    let text = "# check=skip=JSONArgsRecommended\nFROM a\nCMD x\nMAINTAINER me\n";
    assert_eq!(rules(text), ["MaintainerDeprecated"]);
    let checks = check("# check=skip=all;error=true\nFROM a\nCMD x\n").unwrap();
    assert!(checks.warnings.is_empty() && !checks.fail());
    let checks = check("# check=error=true\nFROM a\nCMD x\n").unwrap();
    assert!(checks.fail());
    let error = check("# check=bogus\nFROM a\n").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Syntax);
    assert_eq!(error.span(), Span::new(0, 13));
    assert_eq!(
        CheckConfig::parse("skip = A, B ; error = 1").unwrap(),
        CheckConfig {
            skip: vec!["A".into(), "B".into()],
            skip_all: false,
            error: true
        }
    );
    let opts = ConvertOptions {
        build_args: [(
            "BUILDKIT_DOCKERFILE_CHECK".to_string(),
            "skip=all".to_string(),
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let df = parse("FROM a\nCMD x\n").unwrap();
    let checks = lint(&df, &opts, &BTreeMap::new(), LintScope::AllStages).unwrap();
    assert!(checks.warnings.is_empty());
}

#[test]
fn scope_all_stages_or_target() {
    let text = "FROM a AS one\nCMD x\nFROM b AS two\nCMD [\"y\"]\n";
    let df = parse(text).unwrap();
    let opts = ConvertOptions {
        target: Some("two".into()),
        ..Default::default()
    };
    let target = lint(&df, &opts, &BTreeMap::new(), LintScope::Target).unwrap();
    assert!(target.warnings.is_empty());
    let all = lint(&df, &opts, &BTreeMap::new(), LintScope::AllStages).unwrap();
    assert_eq!(all.warnings.len(), 1);
}

#[test]
fn invalid_files_are_errors_not_warnings() {
    assert!(check("FROM a\nRUNN x\n").is_err());
    // A stage that copies from itself.
    assert!(check("FROM a AS s\nCOPY --from=s x y\n").is_err());
}
