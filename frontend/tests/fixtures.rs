//! Golden tests over `fixtures/dockerfiles`: every `valid/*.Dockerfile` converts (with
//! synthesized base image configs) to the snapshotted graph dump, and every
//! `invalid/*.Dockerfile` fails with the snapshotted message, rendered with line:col.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rbuild_frontend::{
    ConvertOptions, Error, ImageConfig, convert, dump_graph, image_references, parse,
};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/dockerfiles"
    ))
    .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    files.sort();
    files
}

/// A base image config like a small distribution image's.
fn base_config() -> ImageConfig {
    ImageConfig {
        env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".to_string()],
        cmd: Some(vec!["sh".to_string()]),
        ..Default::default()
    }
}

fn build(text: &str) -> Result<String, Error> {
    let df = parse(text)?;
    let opts = ConvertOptions::default();
    let bases: BTreeMap<String, ImageConfig> = image_references(&df, &opts)?
        .into_iter()
        .map(|reference| (reference, base_config()))
        .collect();
    Ok(dump_graph(&convert(&df, &opts, &bases)?))
}

fn render(error: &Error, text: &str) -> String {
    let (line, column) = error.span().line_col(text);
    let mut out = format!("{line}:{column}: {}: {error}", error.code());
    if let Some(help) = error.help() {
        out.push_str(&format!("\nhelp: {help}"));
    }
    out
}

#[test]
fn valid_fixtures() {
    let files = fixtures("valid");
    assert!(!files.is_empty());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_stem().unwrap().to_string_lossy().to_string();
        let dump = build(&text).unwrap_or_else(|e| panic!("{name}: {}", render(&e, &text)));
        // Converting twice gives the same graph, digests included.
        assert_eq!(dump, build(&text).unwrap(), "{name}");
        insta::assert_snapshot!(format!("valid-{name}"), dump);
    }
}

#[test]
fn invalid_fixtures() {
    let files = fixtures("invalid");
    assert!(!files.is_empty());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_stem().unwrap().to_string_lossy().to_string();
        let error = build(&text).map(|_| ()).expect_err(&name);
        insta::assert_snapshot!(format!("invalid-{name}"), render(&error, &text));
    }
}

/// Random recombinations of tricky fragments must give a result or an error, never a panic.
#[test]
fn no_panics_on_odd_input() {
    let fragments = [
        "FROM a",
        "FROM scratch AS s",
        "RUN ",
        "<<EOF",
        "<<-'X'",
        "EOF",
        "\n",
        "\r\n",
        "\\",
        "`",
        "\\\n",
        "# escape=`\n",
        "${",
        "${a:-${b",
        "}",
        "$",
        "\"",
        "'",
        "[\"x\", ",
        "]",
        "COPY --from=",
        "--chown=$u",
        "ENV a=",
        "ARG b",
        "ONBUILD ",
        "HEALTHCHECK ",
        "WORKDIR ..",
        "é",
        "\u{feff}",
        "\t",
        " ",
        "EXPOSE 1-",
        "USER",
        "0",
        "--",
        "=",
        "LABEL \"",
        "${a/b/c}",
        "${a%%*}",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        let mut text = String::new();
        for _ in 0..(seed % 12) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            text.push_str(fragments[(seed % fragments.len() as u64) as usize]);
        }
        let _ = build(&text);
        let _ = rbuild_frontend::dump_syntax(&text);
    }
}
