//! Conformance with BuildKit's own test data (`../shared/conformance/buildkit`): parse
//! trees, line numbers, and shell-word expansion.
//!
//! When the data is absent the tests print that they skipped, unless
//! `RBUILD_REQUIRE_CONFORMANCE=1`, which makes absence a failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::shell::Lexer;
use crate::syntax;

fn data_dir() -> Option<PathBuf> {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/conformance/buildkit"
    ));
    if dir.is_dir() {
        return Some(dir.to_path_buf());
    }
    if std::env::var("RBUILD_REQUIRE_CONFORMANCE").as_deref() == Ok("1") {
        panic!("conformance data missing at {}", dir.display());
    }
    eprintln!("skipped: conformance data not found at {}", dir.display());
    None
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn parser_testfiles() {
    let Some(data) = data_dir() else { return };
    let dirs = subdirs(&data.join("parser/testfiles"));
    let mut failures = Vec::new();
    for dir in &dirs {
        let text = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
        let expected = std::fs::read_to_string(dir.join("result")).unwrap();
        let actual = crate::dump_syntax(&text).unwrap_or_else(|e| format!("error: {e}\n"));
        if actual != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- actual\n{actual}",
                dir.display()
            ));
        }
    }
    eprintln!("testfiles: {}/{}", dirs.len() - failures.len(), dirs.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn parser_testfiles_negative() {
    let Some(data) = data_dir() else { return };
    let dirs = subdirs(&data.join("parser/testfiles-negative"));
    let mut failures = Vec::new();
    for dir in &dirs {
        let text = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
        // Negative files must fail at the syntax level or when given meaning.
        if crate::parse(&text).is_ok() {
            failures.push(dir.display().to_string());
        }
    }
    eprintln!("negative: {}/{}", dirs.len() - failures.len(), dirs.len());
    assert!(failures.is_empty(), "parsed without error: {failures:?}");
}

#[test]
fn parser_line_numbers() {
    let Some(data) = data_dir() else { return };
    let text = std::fs::read_to_string(data.join("parser/testfile-line/Dockerfile")).unwrap();
    let tree = syntax::parse(&text).unwrap();
    let lines: Vec<(usize, usize)> = tree
        .nodes
        .iter()
        .map(|node| {
            let start = node.span.line_col(&text).0;
            let end = crate::Span::new(node.span.end, node.span.end)
                .line_col(&text)
                .0;
            (start, end)
        })
        .collect();
    // BuildKit's TestLineInformation: FROM on 5, ENV on 11-12, RUN on 17-31.
    assert_eq!(lines, [(5, 5), (11, 12), (17, 31)]);
    eprintln!("testfile-line: 1/1");
}

#[test]
fn shell_env_var_test() {
    let Some(data) = data_dir() else { return };
    let text = std::fs::read_to_string(data.join("shell/envVarTest")).unwrap();
    // The environment BuildKit's TestShellParser4EnvVars uses.
    let env: BTreeMap<String, String> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let lexer = Lexer::new('\\');
    let (mut total, mut failures) = (0, Vec::new());
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(fields.len(), 3, "line {}", number + 1);
        let (platform, source, expected) = (fields[0].trim(), fields[1].trim(), fields[2].trim());
        if platform == "W" {
            continue;
        }
        total += 1;
        let result = lexer.process_word(source, &env);
        let ok = match (&result, expected) {
            (Err(_), "error") => true,
            (Ok(word), expected) => word == expected && expected != "error",
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "line {}: {source:?} -> {result:?}, expected {expected:?}",
                number + 1
            ));
        }
    }
    eprintln!("envVarTest rows: {}/{total}", total - failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn shell_words_test() {
    let Some(data) = data_dir() else { return };
    let text = std::fs::read_to_string(data.join("shell/wordsTest")).unwrap();
    let lexer = Lexer::new('\\');
    let mut env = BTreeMap::new();
    let (mut total, mut failures) = (0, Vec::new());
    for (number, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(assignment) = line.strip_prefix("ENV ") {
            let assignment = assignment.trim_start_matches(' ');
            let (key, value) = assignment.split_once('=').unwrap_or((assignment, ""));
            env.insert(key.to_string(), value.to_string());
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(fields.len(), 2, "line {}", number + 1);
        total += 1;
        let source = fields[0].trim();
        let expected: Vec<&str> = fields[1].trim_start_matches(' ').split(',').collect();
        let actual = lexer
            .process_words(source, &env)
            .unwrap_or_else(|_| vec!["error".to_string()]);
        if actual != expected {
            failures.push(format!(
                "line {}: {source:?} -> {actual:?}, expected {expected:?}",
                number + 1
            ));
        }
    }
    eprintln!("wordsTest: {}/{total}", total - failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
