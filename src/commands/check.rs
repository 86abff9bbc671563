//! `rbuild check`: parse, convert and lint a Dockerfile without building; and the pieces
//! `rbuild build` shares with it: reading the Dockerfile, base configs from the store,
//! printing build-check warnings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use miette::{IntoDiagnostic, Result, WrapErr};
use rbuild_builder::BuildError;
use rbuild_frontend::{
    self as frontend, Checks, ConvertOptions, Dockerfile, ImageConfig, LintScope,
};
use rbuild_store::{ImageName, Store};

use super::key_value;
use crate::report;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Rendered warnings with the Dockerfile's lines, on stderr
    Text,
    /// One JSON object per warning, on stdout
    Json,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile, else CONTEXT/dockerfile)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Set a build argument (`KEY=VALUE`, or `KEY` to take it from the environment)
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Check only this stage and what it needs (default: every stage)
    #[arg(long)]
    pub target: Option<String>,
    /// How to report warnings
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    pub format: FormatArg,
    /// The build context directory
    #[arg(value_name = "CONTEXT", default_value = ".")]
    pub context: PathBuf,
}

pub fn check(args: CheckArgs) -> Result<ExitCode> {
    let path = dockerfile_path(args.file.as_deref(), &args.context);
    let text = read_dockerfile(&path)?;
    let opts = ConvertOptions {
        build_args: args
            .build_args
            .iter()
            .filter_map(|a| key_value(a))
            .collect(),
        target: args.target.clone(),
        ..Default::default()
    };
    let ignore = read_ignore_file(&path, &args.context)?;
    check_text(&path, &text, ignore.as_deref(), opts, args.format)
}

/// Checks the Dockerfile `text` (read from `path`, which names it in messages) with the
/// context's ignore file: `rbuild check`, and `rbuild build --call check`.
pub fn check_text(
    path: &Path,
    text: &str,
    ignore: Option<&str>,
    opts: ConvertOptions,
    format: FormatArg,
) -> Result<ExitCode> {
    let scope = match opts.target {
        Some(_) => LintScope::Target,
        None => LintScope::AllStages,
    };
    let store = existing_store();
    let checks = frontend::parse(text)
        .and_then(|df| {
            // Base configs make `UndefinedVar` know the base images' variables; without
            // a store (or the image), a base counts as an empty image.
            let bases = store
                .as_ref()
                .and_then(|store| base_configs(store, &df, &opts, false).ok())
                .unwrap_or_default();
            frontend::lint(&df, &opts, &bases, scope)
        })
        .map_err(|err| report::dockerfile_error(&err, path, text))?;
    let mut checks = checks;
    if let Some(store) = &store {
        check_base_platforms(&mut checks, store);
    }
    check_ignored_sources(&mut checks, ignore);
    match format {
        FormatArg::Text => print_warnings(&checks, path, text),
        FormatArg::Json => {
            for warning in &checks.warnings {
                let (line, column) = warning.span.line_col(text);
                let object = serde_json::json!({
                    "rule": warning.rule.name(),
                    "message": warning.message,
                    "file": path.display().to_string(),
                    "line": line,
                    "column": column,
                    "help": warning.help,
                    "url": warning.rule.url(),
                });
                outln!("{object}");
            }
        }
    }
    if checks.fail() {
        return Err(failed(&checks));
    }
    Ok(ExitCode::SUCCESS)
}

/// `CopyIgnoredFile`, with the context's ignore file.
fn check_ignored_sources(checks: &mut Checks, ignore: Option<&str>) {
    let Some(ignore) = ignore else { return };
    // `read_ignore_file` refused a file that does not parse.
    let Ok(matcher) = rbuild_builder::IgnoreMatcher::parse(ignore) else {
        return;
    };
    if !matcher.is_empty() {
        checks.check_ignored_sources(|path| matcher.is_excluded(path));
    }
}

/// `InvalidBaseImagePlatform`, for the base images the store has.
fn check_base_platforms(checks: &mut Checks, store: &Store) {
    checks.check_base_platforms(|reference| {
        let name: ImageName = reference.parse().ok()?;
        let config = store.image(&name).ok()?.config;
        Some(rbuild_registry::platform_string(&config.platform()))
    });
}

/// The error when `# check=error=true` and there are warnings.
fn failed(checks: &Checks) -> miette::Report {
    let count = checks.warnings.len();
    let mut rules: Vec<&str> = checks.warnings.iter().map(|w| w.rule.name()).collect();
    rules.sort_unstable();
    rules.dedup();
    miette::miette!(
        code = "dockerfile::check_failed",
        help = "fix them, or skip rules with `# check=skip=<Rule>`",
        "build checks found {count} problem{} ({}) and `# check=error=true` makes them errors",
        if count == 1 { "" } else { "s" },
        rules.join(", ")
    )
}

/// Renders each warning to stderr, then a count.
pub fn print_warnings(checks: &Checks, path: &Path, text: &str) {
    for warning in &checks.warnings {
        eprintln!("{:?}", report::warning(warning, path, text));
    }
    match checks.warnings.len() {
        0 => {}
        1 => eprintln!("1 warning found"),
        n => eprintln!("{n} warnings found"),
    }
}

/// For `rbuild build`: the warnings for the stages the target needs, with the base
/// configs the store has, printed before the build. Fails only with `error=true`. A file
/// that does not convert is left for the build to report.
pub fn warn_before_build(
    store: &Store,
    path: &Path,
    text: &str,
    opts: &ConvertOptions,
    ignore: Option<&str>,
) -> Result<()> {
    let Ok(df) = frontend::parse(text) else {
        return Ok(());
    };
    let bases = base_configs(store, &df, opts, false).unwrap_or_default();
    let Ok(mut checks) = frontend::lint(&df, opts, &bases, LintScope::Target) else {
        return Ok(());
    };
    check_ignored_sources(&mut checks, ignore);
    check_base_platforms(&mut checks, store);
    print_warnings(&checks, path, text);
    if checks.fail() {
        return Err(failed(&checks));
    }
    Ok(())
}

/// Reads a Dockerfile as UTF-8, naming the file and the first bad byte otherwise.
/// The Dockerfile to read: `-f`'s, else `CONTEXT/Dockerfile`, else a lower-case
/// `CONTEXT/dockerfile` when only that exists (docker's CLI looks for it too). When
/// neither exists the answer is `CONTEXT/Dockerfile`, which the error then names.
pub fn dockerfile_path(file: Option<&Path>, context: &Path) -> PathBuf {
    if let Some(file) = file {
        return file.to_owned();
    }
    let default = context.join("Dockerfile");
    let lower = context.join("dockerfile");
    // `symlink_metadata`: a dangling symlink named `Dockerfile` is still the one meant.
    if default.symlink_metadata().is_err() && lower.symlink_metadata().is_ok() {
        return lower;
    }
    default
}

pub fn read_dockerfile(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read the Dockerfile {}", path.display()))?;
    decode_dockerfile(path, bytes)
}

/// A Dockerfile's text, which must be UTF-8; `path` names it in the error.
pub fn decode_dockerfile(path: &Path, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|err| {
        let valid = err.utf8_error().valid_up_to();
        let before = &err.as_bytes()[..valid];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
        miette::miette!(
            code = "dockerfile::encoding",
            help = "save the Dockerfile as UTF-8",
            "the Dockerfile {} is not valid UTF-8: invalid byte {:#04x} at line {line}, column {column}",
            path.display(),
            err.as_bytes()[valid]
        )
    })
}

/// The store, if one exists (checking never creates it).
fn existing_store() -> Option<Store> {
    let root = Store::default_root();
    if !root.join("meta.redb").exists() {
        return None;
    }
    Store::open(&root).ok()
}

/// The configs of the base images `df` needs, from the store. With `strict`, a missing
/// image is an error; otherwise it is left out.
pub fn base_configs(
    store: &Store,
    df: &Dockerfile,
    opts: &ConvertOptions,
    strict: bool,
) -> std::result::Result<BTreeMap<String, ImageConfig>, BuildError> {
    let mut bases = BTreeMap::new();
    for reference in frontend::image_references(df, opts)? {
        let name: ImageName = reference
            .parse()
            .map_err(|source| BuildError::InvalidReference {
                reference: reference.clone(),
                source,
            })?;
        match store.image(&name) {
            Ok(image) => {
                let config = rbuild_builder::frontend_config(&image.config.config);
                bases.insert(reference, config);
            }
            Err(err) if err.is_not_found() && !strict => {}
            Err(err) if err.is_not_found() => {
                return Err(BuildError::BaseImageNotFound { reference });
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(bases)
}

/// The ignore file for a build: `<Dockerfile>.dockerignore` beside the Dockerfile when it
/// exists, else `.dockerignore` at the context root.
pub fn read_ignore_file(dockerfile: &Path, context: &Path) -> Result<Option<String>> {
    let mut beside = dockerfile.as_os_str().to_owned();
    beside.push(".dockerignore");
    for path in [PathBuf::from(beside), context.join(".dockerignore")] {
        match std::fs::read(&path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                // Refused here, where the file's path is known, as Docker refuses it.
                if let Err(err) = rbuild_builder::IgnoreMatcher::parse(&text) {
                    return Err(miette::Report::from_err(err)
                        .wrap_err(format!("invalid ignore file {}", path.display())));
                }
                return Ok(Some(text));
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(miette::Report::from_err(err)
                    .wrap_err(format!("cannot read {}", path.display())));
            }
        }
    }
    Ok(None)
}
