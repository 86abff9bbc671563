//! Hostile input: each case ends in a clear error or a fast success, never a panic, a
//! stack overflow or a runaway (the time bounds are generous; they catch quadratic or
//! worse behaviour, which would take minutes).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rbuild_frontend::{
    BuildGraph, ConvertOptions, Error, ErrorKind, ImageConfig, check, convert, image_references,
    parse,
};

fn build(text: &str) -> Result<BuildGraph, Error> {
    let df = parse(text)?;
    let opts = ConvertOptions::default();
    let bases: BTreeMap<String, ImageConfig> = image_references(&df, &opts)?
        .into_iter()
        .map(|reference| (reference, ImageConfig::default()))
        .collect();
    convert(&df, &opts, &bases)
}

/// Runs `f`, checking it takes less than `limit`.
fn timed<T>(name: &str, limit: Duration, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = f();
    let elapsed = started.elapsed();
    assert!(elapsed < limit, "{name} took {elapsed:?}");
    result
}

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn a_one_mebibyte_line() {
    let text = format!("FROM a\nRUN echo {}\n", "x".repeat(1 << 20));
    let graph = timed("1 MiB RUN", LIMIT, || build(&text)).unwrap();
    assert_eq!(graph.ops.len(), 2);
    let text = format!("FROM a\n{} x\n", "Y".repeat(1 << 20));
    let error = timed("1 MiB keyword", LIMIT, || build(&text)).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::UnknownInstruction);
    assert!(error.message().len() < 200, "the message stays readable");
    let text = format!("FROM a\nCOPY --{}=x a b\n", "f".repeat(1 << 20));
    let error = timed("1 MiB flag", LIMIT, || build(&text)).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::UnknownFlag);
    assert!(error.message().len() < 200, "the message stays readable");
}

#[test]
fn a_hundred_thousand_lines() {
    // 10k RUNs (each an op with a digest) among 90k lines of labels, comments and blanks.
    let mut text = String::from("FROM a\n");
    for i in 0..10_000 {
        text.push_str(&format!("RUN echo {i}\n# comment\n\nLABEL l{i}=v\n"));
        for j in 0..6 {
            text.push_str(&format!("ENV E{j}={i}\n"));
        }
    }
    assert_eq!(text.lines().count(), 100_001);
    let graph = timed("100k lines", LIMIT, || build(&text)).unwrap();
    assert_eq!(graph.ops.len(), 10_001);
    assert_eq!(graph.output.config.labels.len(), 10_000);
    // One instruction continued over 100k lines.
    let text = format!("FROM a\nRUN echo \\\n{}done\n", "x \\\n".repeat(100_000));
    let graph = timed("100k continuation lines", LIMIT, || build(&text)).unwrap();
    assert_eq!(graph.ops.len(), 2);
    // Or a 100k-line heredoc.
    let text = format!("FROM a\nCOPY <<EOF /f\n{}EOF\n", "line\n".repeat(100_000));
    timed("100k-line heredoc", LIMIT, || build(&text)).unwrap();
}

#[test]
fn ten_thousand_nested_substitutions() {
    let text = format!(
        "FROM a\nENV A={}x{}\n",
        "${a:-".repeat(10_000),
        "}".repeat(10_000)
    );
    let error = timed("nested ${", LIMIT, || build(&text)).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Expansion);
    assert!(error.message().contains("nested more than"), "{error}");
    // Unterminated, too.
    let text = format!("FROM a\nENV A={}\n", "${".repeat(10_000));
    let error = timed("unterminated ${", LIMIT, || build(&text)).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Expansion);
    // In FROM (expanded while planning) and in a heredoc body.
    let text = format!("FROM a{}\n", "${b:-".repeat(10_000));
    assert!(timed("nested ${ in FROM", LIMIT, || build(&text)).is_err());
    let text = format!("FROM a\nCOPY <<EOF /f\n{}\nEOF\n", "${b:-".repeat(10_000));
    assert!(timed("nested ${ in a heredoc", LIMIT, || build(&text)).is_err());
}

#[test]
fn deeply_nested_json() {
    // Too deep for JSON: the shell form, as for any other invalid JSON.
    let text = format!(
        "FROM a\nCMD {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let graph = timed("nested JSON", LIMIT, || build(&text)).unwrap();
    let cmd = graph.output.config.cmd.unwrap();
    assert_eq!(cmd[..2], ["/bin/sh", "-c"]);
    // Nested but shallow enough to parse: not an array of strings, an error.
    let error = build("FROM a\nCMD [[[\"x\"]]]\n").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Syntax);
}

#[test]
fn nul_bytes() {
    let graph = build("FROM a\nRUN echo \0 \0\nLABEL k=\0\n").unwrap();
    assert_eq!(graph.ops.len(), 2);
    assert!(build("FROM a\0b\n").is_err(), "not an image reference");
    assert_eq!(
        build("\0FROM a\n").unwrap_err().kind(),
        ErrorKind::UnknownInstruction
    );
    assert!(check("FROM a\nENV \0=\0\n").is_ok());
}

#[test]
fn five_thousand_args() {
    let mut text = String::new();
    for i in 0..5_000 {
        text.push_str(&format!("ARG A{i}={i}\n"));
    }
    text.push_str("FROM a\n");
    for i in 0..5_000 {
        text.push_str(&format!("ARG A{i}\n"));
    }
    text.push_str("RUN env\n");
    let graph = timed("5,000 ARGs", LIMIT, || build(&text)).unwrap();
    let exec = graph
        .ops
        .iter()
        .find_map(|op| match &op.kind {
            rbuild_frontend::OpKind::Exec(exec) => Some(exec),
            _ => None,
        })
        .unwrap();
    assert_eq!(exec.env.len(), 5_001, "PATH and every ARG");
    let checks = timed("5,000 ARGs, checked", LIMIT, || check(&text)).unwrap();
    assert!(checks.warnings.is_empty());
}

#[test]
fn a_stage_that_copies_from_itself() {
    let error = build("FROM a AS s\nCOPY --from=s /x /y\n").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::StageOrder);
    assert_eq!(
        error.message(),
        "cannot copy from stage `s`, it needs to be defined before current stage `s`"
    );
    let error = build("FROM a\nCOPY --from=0 /x /y\n").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::StageOrder);
}

#[test]
fn a_from_loop() {
    // Only earlier stages can be a base: `b` in the first FROM is the image `b`.
    let graph = build("FROM b AS a\nFROM a AS b\n").unwrap();
    assert_eq!(graph.output.base.as_deref(), Some("b:latest"));
    // A loop through COPY --from is an ordering error.
    let error = build("FROM x AS a\nCOPY --from=b /f /f\nFROM a AS b\n").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::StageOrder);
    // A self-referencing base is an image too.
    let graph = build("FROM a AS a\n").unwrap();
    assert_eq!(graph.output.base.as_deref(), Some("a:latest"));
}

#[test]
fn many_stages_and_onbuild_triggers() {
    let mut text = String::from("FROM a AS s0\nONBUILD RUN echo 0\n");
    for i in 1..2_000 {
        text.push_str(&format!("FROM s{} AS s{i}\nONBUILD RUN echo {i}\n", i - 1));
    }
    let graph = timed("2,000 chained stages", LIMIT, || build(&text)).unwrap();
    // Each stage runs its base stage's trigger, once.
    assert_eq!(graph.ops.len(), 2_000);
}
